//! Edits of the main section: each touches only the lines it changes, puts a new line where
//! Proxmox would, and uses the file's line ending and separator style.

use std::ops::Range;

use crate::document::Document;
use crate::line::{is_lxc_key, is_plain_key, is_ws, Kind};
use crate::rules::{is_reserved_key, lxc_validity};
use crate::types::{Dialect, EntryId, EntryKind};

/// An edit that [`Document::try_set`] or [`Document::try_push_lxc`] refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The key would not be read back as the same key.
    #[error("key {key:?} is not accepted: {reason}; use a valid key")]
    InvalidKey {
        /// The key given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The value would not be read back unchanged.
    #[error("value {value:?} for key {key:?} is not accepted: {reason}")]
    InvalidValue {
        /// The key given.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl Document {
    /// Sets a key of the main section. An existing key has its effective (last) line rewritten
    /// in place; a new plain key is inserted at its bytewise-sorted place among the section's
    /// plain keys, before the `lxc.*` lines (PVE), or after the last entry (LXC). An `lxc.*`
    /// key in the PVE dialect is handled like [`Document::push_lxc`] when absent.
    ///
    /// Line breaks in `key` or `value` are replaced by spaces so that the edit stays one line;
    /// [`Document::try_set`] refuses such input instead.
    pub fn set(&mut self, key: &str, value: &str) -> EntryId {
        let body = self.main_body();
        let is_lxc = key.starts_with("lxc.");
        let raw = self.raw_sections();
        let found = self
            .raw_entries(&raw[0])
            .iter()
            .rev()
            .find(|e| {
                e.key == key.as_bytes()
                    && (self.dialect == Dialect::Lxc || (e.kind == EntryKind::Lxc) == is_lxc)
                    && !matches!(
                        self.lines[e.index].kind,
                        Kind::Snapstate { .. } | Kind::Delete { .. }
                    )
            })
            .map(|e| e.index);
        if is_lxc && found.is_none() {
            return self.push_lxc(key, value);
        }
        let text = self.entry_line(key, &self.separator(is_lxc), value);
        if let Some(i) = found {
            self.rewrite_line(i, text);
            return EntryId(self.lines[i].id);
        }
        let at = match self.dialect {
            Dialect::Lxc => self
                .after_last(body.clone(), |k| {
                    matches!(k, Kind::Plain { .. } | Kind::Lxc { .. })
                })
                .unwrap_or(body.end),
            Dialect::Pve => self.sorted_position(body, key.as_bytes()),
        };
        self.insert_line(at, text)
    }

    /// Like [`Document::set`], but refuses a key or value that would not read back unchanged.
    pub fn try_set(&mut self, key: &str, value: &str) -> Result<EntryId, EditError> {
        self.check_edit(key, value)?;
        Ok(self.set(key, value))
    }

    /// Adds an `lxc.*` entry to the main section after its last `lxc.*` line (or after its last
    /// entry if there is none), with the separator style the file uses for lxc lines.
    ///
    /// Line breaks in `key` or `value` are replaced by spaces; [`Document::try_push_lxc`]
    /// refuses such input instead.
    pub fn push_lxc(&mut self, key: &str, value: &str) -> EntryId {
        let body = self.main_body();
        let sep = self.lxc_separator();
        let text = self.entry_line(key, &sep, value);
        let at = self
            .after_last(body.clone(), |k| matches!(k, Kind::Lxc { .. }))
            .or_else(|| {
                self.after_last(body.clone(), |k| {
                    matches!(
                        k,
                        Kind::Plain { .. }
                            | Kind::Description { .. }
                            | Kind::Snapstate { .. }
                            | Kind::Delete { .. }
                    )
                })
            })
            .unwrap_or_else(|| self.end_of_content(body));
        self.insert_line(at, text)
    }

    /// Like [`Document::push_lxc`], but refuses a key or value that would not read back unchanged.
    pub fn try_push_lxc(&mut self, key: &str, value: &str) -> Result<EntryId, EditError> {
        if !key.starts_with("lxc.") {
            return Err(EditError::InvalidKey {
                key: key.into(),
                reason: "an lxc entry key starts with 'lxc.'",
            });
        }
        self.check_edit(key, value)?;
        Ok(self.push_lxc(key, value))
    }

    /// Removes every line of `key` in the main section; returns how many.
    pub fn remove_key(&mut self, key: &str) -> usize {
        let raw = self.raw_sections();
        let idx: Vec<usize> = self
            .raw_entries(&raw[0])
            .iter()
            .filter(|e| {
                e.key == key.as_bytes()
                    && !matches!(self.lines[e.index].kind, Kind::Snapstate { .. })
            })
            .map(|e| e.index)
            .collect();
        for &i in idx.iter().rev() {
            self.lines.remove(i);
        }
        idx.len()
    }

    /// Removes a line of the main section by id; false if the id is not a main-section line.
    pub fn remove(&mut self, id: EntryId) -> bool {
        let body = self.main_body();
        match self.index_of(id) {
            Some(i) if body.contains(&i) => {
                self.lines.remove(i);
                true
            }
            _ => false,
        }
    }

    /// Rewrites a main-section entry as `key: value` (PVE) or `key = value` (LXC; `lxc.*` lines
    /// use the file's separator style in both dialects), keeping its line ending. False if the
    /// id is not a key/value line of the main section.
    pub fn replace_value(&mut self, id: EntryId, value: &str) -> bool {
        let body = self.main_body();
        let Some(i) = self.index_of(id).filter(|i| body.contains(i)) else {
            return false;
        };
        let line = &self.lines[i];
        let (key, is_lxc) = match &line.kind {
            Kind::Plain { key, .. } => (key, false),
            Kind::Lxc { key, .. } => (key, true),
            _ => return false,
        };
        let sep = self.separator(is_lxc);
        let text = [&line.text[key.clone()], &sep, one_line(value).as_bytes()].concat();
        self.rewrite_line(i, text);
        true
    }

    fn check_edit(&self, key: &str, value: &str) -> Result<(), EditError> {
        let bad_key = |reason| {
            Err(EditError::InvalidKey {
                key: key.into(),
                reason,
            })
        };
        let bad_value = |reason| {
            Err(EditError::InvalidValue {
                key: key.into(),
                value: value.into(),
                reason,
            })
        };
        let k = key.as_bytes();
        if k.starts_with(b"lxc.") {
            if !is_lxc_key(k) {
                return bad_key(
                    "an lxc key is 'lxc.' followed by lowercase letters, digits, '_', '-' or '.'",
                );
            }
            if self.dialect == Dialect::Pve && !lxc_validity(k).is_kept() {
                return bad_key("Proxmox does not accept this lxc key (is_valid_lxc_conf_key)");
            }
        } else {
            if !is_plain_key(k) {
                return bad_key("a plain key is [a-z][a-z_]*[0-9]*");
            }
            if is_reserved_key(k) || matches!(k, b"delete" | b"snapstate") {
                return bad_key("this key is handled specially by Proxmox");
            }
            if value.is_empty() && self.dialect == Dialect::Pve {
                return bad_value("a plain key needs a value");
            }
        }
        if value.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0) {
            return bad_value("a value cannot hold a line break or NUL");
        }
        if value.bytes().next().is_some_and(is_ws) || value.bytes().last().is_some_and(is_ws) {
            return bad_value("leading or trailing whitespace is trimmed by the reader");
        }
        if self.dialect == Dialect::Lxc
            && value.len() > 1
            && (value.starts_with('"') || value.starts_with('\''))
            && value.as_bytes()[0] == value.as_bytes()[value.len() - 1]
        {
            return bad_value("LXC strips the surrounding quotes");
        }
        Ok(())
    }

    fn uses_crlf(&self) -> bool {
        let crlf = self
            .lines
            .iter()
            .filter(|l| l.newline && l.text.ends_with(b"\r"))
            .count();
        let lf = self.lines.iter().filter(|l| l.newline).count() - crlf;
        crlf > lf
    }

    /// The separator new `lxc.*` lines get: the style the file's lxc lines use.
    fn lxc_separator(&self) -> Vec<u8> {
        let default: &[u8] = match self.dialect {
            Dialect::Pve => b": ",
            Dialect::Lxc => b" = ",
        };
        let mut colon = 0usize;
        let mut equals: Vec<Vec<u8>> = Vec::new();
        for l in &self.lines {
            let (Kind::Lxc { sep, value, .. } | Kind::Plain { sep, value, .. }) = &l.kind else {
                continue;
            };
            let s = &l.text[sep.clone()];
            if s.contains(&b'=') {
                if !value.is_empty() {
                    equals.push(
                        s.iter()
                            .copied()
                            .filter(|&b| matches!(b, b' ' | b'\t' | b'='))
                            .collect(),
                    );
                }
            } else if matches!(l.kind, Kind::Lxc { .. }) {
                colon += 1;
            }
        }
        match equals.last() {
            Some(sep) if self.dialect == Dialect::Lxc || equals.len() > colon => sep.clone(),
            _ => default.to_vec(),
        }
    }

    /// The separator a new or rewritten line gets: the file's lxc style for an `lxc.*` key and
    /// in the LXC dialect, `: ` for a plain key in PVE.
    fn separator(&self, lxc_key: bool) -> Vec<u8> {
        if lxc_key || self.dialect == Dialect::Lxc {
            self.lxc_separator()
        } else {
            b": ".to_vec()
        }
    }

    /// Inserts a line at `at`; gives the previous last line a line break if it had none.
    fn insert_line(&mut self, at: usize, mut text: Vec<u8>) -> EntryId {
        let crlf = self.uses_crlf();
        if at == self.lines.len() && self.lines.last().is_some_and(|l| !l.newline) {
            let last = at - 1;
            if crlf && !self.lines[last].text.ends_with(b"\r") {
                self.lines[last].text.push(b'\r');
            }
            self.lines[last].newline = true;
            self.lines[last].kind = self.classify(&self.lines[last].text);
        }
        if crlf {
            text.push(b'\r');
        }
        let line = self.new_line(text, true);
        let id = EntryId(line.id);
        self.lines.insert(at, line);
        id
    }

    /// Rewrites line `i` as `text`, keeping its CR (if any) and its line break.
    fn rewrite_line(&mut self, i: usize, mut text: Vec<u8>) {
        if self.lines[i].text.ends_with(b"\r") {
            text.push(b'\r');
        }
        self.lines[i].kind = self.classify(&text);
        self.lines[i].text = text;
    }

    fn entry_line(&self, key: &str, sep: &[u8], value: &str) -> Vec<u8> {
        let mut t = Vec::with_capacity(key.len() + sep.len() + value.len());
        t.extend_from_slice(one_line(key).as_bytes());
        t.extend_from_slice(sep);
        t.extend_from_slice(one_line(value).as_bytes());
        t
    }

    /// The index after the last line in `range` whose kind matches.
    fn after_last(&self, range: Range<usize>, pred: impl Fn(&Kind) -> bool) -> Option<usize> {
        range
            .rev()
            .find(|&i| pred(&self.lines[i].kind))
            .map(|i| i + 1)
    }

    fn sorted_position(&self, body: Range<usize>, key: &[u8]) -> usize {
        let first_lxc = body
            .clone()
            .find(|&i| matches!(self.lines[i].kind, Kind::Lxc { .. }));
        let scope = body.start..first_lxc.unwrap_or(body.end);
        let plain: Vec<usize> = scope
            .clone()
            .filter(|&i| {
                matches!(
                    self.lines[i].kind,
                    Kind::Plain { .. } | Kind::Snapstate { .. } | Kind::Delete { .. }
                )
            })
            .collect();
        let key_of = |i: usize| -> &[u8] {
            match &self.lines[i].kind {
                Kind::Plain { key, .. } => &self.lines[i].text[key.clone()],
                Kind::Delete { .. } => b"delete",
                _ => b"snapstate",
            }
        };
        if let Some(&i) = plain.iter().find(|&&i| key_of(i) > key) {
            return i;
        }
        if let Some(&i) = plain.last() {
            return i + 1;
        }
        if let Some(i) = first_lxc {
            return i;
        }
        self.end_of_content(body)
    }

    /// After the last non-blank line of `body` (or its start).
    fn end_of_content(&self, body: Range<usize>) -> usize {
        self.after_last(body.clone(), |k| *k != Kind::Blank)
            .unwrap_or(body.start)
    }
}

fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(s.replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use crate::document::pve;
    use crate::{Dialect, Document, EditError};

    fn text(d: &Document) -> String {
        String::from_utf8(d.to_bytes()).unwrap()
    }

    #[test]
    fn new_plain_key_goes_before_lxc_lines_even_in_unsorted_files() {
        let mut d = pve("arch: amd64\nswap: 512\nlxc.idmap: u 0 1 2\n#c\nstartup: order=2\n");
        d.set("tags", "gpu");
        assert_eq!(
            text(&d),
            "arch: amd64\nswap: 512\ntags: gpu\nlxc.idmap: u 0 1 2\n#c\nstartup: order=2\n"
        );
        d.set("cores", "2");
        assert_eq!(text(&d), "arch: amd64\ncores: 2\nswap: 512\ntags: gpu\nlxc.idmap: u 0 1 2\n#c\nstartup: order=2\n");
    }

    #[test]
    fn edits_into_an_empty_main_section() {
        let mut d = pve("\n[snap]\nmemory: 1\n");
        d.set("memory", "2");
        d.push_lxc("lxc.cap.drop", "");
        assert_eq!(text(&d), "memory: 2\nlxc.cap.drop: \n\n[snap]\nmemory: 1\n");
        assert_eq!(d.snapshot("snap").unwrap().get("memory"), Some("1"));
    }

    #[test]
    fn try_set_checks_the_key_grammar_and_reserved_keys() {
        let before = "arch: amd64\nlxc.idmap: u 0 1 2\n";
        let mut d = pve(before);
        for key in [
            "digest",
            "pending",
            "snapshots",
            "snapname",
            "lxc",
            "env",
            "description",
            "delete",
            "snapstate",
            "Memory",
            "_a",
            "a1_",
            "mp0a",
            "mem-ory",
            "",
            "lxc.",
            "lxc.Cap.drop",
            "lxc.cap drop",
            "lxc.rootfs.path",
        ] {
            let refused = matches!(d.try_set(key, "1"), Err(EditError::InvalidKey { .. }));
            assert!(refused, "{key:?} accepted");
        }
        assert_eq!(text(&d), before);
        for key in [
            "a_b1",
            "mp10",
            "net0",
            "lxc.cgroup2.devices.allow",
            "lxc.net.0.type",
            "lxc.hook.pre-start",
            "lxc.apparmor.allow_nesting",
        ] {
            assert!(d.try_set(key, "1").is_ok(), "{key:?} refused");
        }
        // the LXC dialect takes any lxc key LXC can parse
        let mut d = Document::parse(b"lxc.uts.name = a\n", Dialect::Lxc);
        assert!(d.try_set("lxc.rootfs.path", "/x").is_ok());
        assert!(d.try_push_lxc("lxc.Rootfs", "/x").is_err());
    }
}
