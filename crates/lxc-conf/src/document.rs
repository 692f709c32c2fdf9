//! [`Document`]: a config file as its lines, read without loss and written back byte for byte.
//!
//! This module owns the lines and their ids. What is derived from them lives by concern, each
//! module adding its `impl Document` block: the sections and their reading in `section`, the
//! edits in `edit`, the findings and the strict reader in `lint`, Proxmox's writer in
//! `canonical`.

use crate::line::{classify_lxc, classify_pve, Kind, Line};
use crate::types::{Dialect, EntryId};

/// A lossless config file: its lines, their parsed view, and edits on them.
#[derive(Clone, Debug)]
pub struct Document {
    pub(crate) dialect: Dialect,
    pub(crate) lines: Vec<Line>,
    next_id: u64,
}

impl Document {
    /// Reads a file leniently: every line is kept, invalid ones included. Never fails.
    pub fn parse(bytes: &[u8], dialect: Dialect) -> Document {
        let mut doc = Document {
            dialect,
            lines: Vec::new(),
            next_id: 0,
        };
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                doc.push_line(bytes[start..i].to_vec(), true);
                start = i + 1;
            }
        }
        if start < bytes.len() {
            doc.push_line(bytes[start..].to_vec(), false);
        }
        doc
    }

    /// The dialect the document was parsed as.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The file's bytes: the input unchanged, plus the edits made.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.text.len() + 1).sum());
        for line in &self.lines {
            out.extend_from_slice(&line.text);
            if line.newline {
                out.push(b'\n');
            }
        }
        out
    }

    /// What `text` is as a line of this document's dialect.
    pub(crate) fn classify(&self, text: &[u8]) -> Kind {
        match self.dialect {
            Dialect::Pve => classify_pve(text),
            Dialect::Lxc => classify_lxc(text),
        }
    }

    fn push_line(&mut self, text: Vec<u8>, newline: bool) {
        let line = self.new_line(text, newline);
        self.lines.push(line);
    }

    /// A line not yet in the document: the next id, classified in the document's dialect.
    pub(crate) fn new_line(&mut self, text: Vec<u8>, newline: bool) -> Line {
        let kind = self.classify(&text);
        let id = self.next_id;
        self.next_id += 1;
        Line {
            id,
            text,
            newline,
            kind,
        }
    }

    /// Where the line with this id is now, if it is still in the document.
    pub(crate) fn index_of(&self, id: EntryId) -> Option<usize> {
        self.lines.iter().position(|l| l.id == id.0)
    }
}

/// Test shorthand: `text` read as a Proxmox config.
#[cfg(test)]
pub(crate) fn pve(text: &str) -> Document {
    Document::parse(text.as_bytes(), Dialect::Pve)
}
