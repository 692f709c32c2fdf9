//! Lossless parse, edit and write of Proxmox VE container configs (`/etc/pve/lxc/<CTID>.conf`)
//! and plain LXC configs (`lxc.container.conf(5)`).
//!
//! A [`Document`] keeps every line's bytes, so [`Document::to_bytes`] gives back exactly the
//! input, whatever it holds (CRLF, no final newline, trailing blanks, invalid lines, bytes that
//! are not UTF-8). On top of the lines it derives what Proxmox reads from the file: the main
//! section, the snapshots, the `[pve:pending]` section, last-wins plain keys, the raw `lxc.*`
//! entries in file order and the decoded description. Edits touch only the lines they change;
//! new lines go where Proxmox would put them and use the file's line ending.
//! [`Document::to_pve_canonical`] reproduces Proxmox's own writer (`write_pct_config`), and
//! [`Document::lint`] lists what that writer would drop or rewrite.
//!
//! The crate does no I/O: callers read and write the bytes.
//!
//! ```
//! use lxc_conf::{Dialect, Document};
//!
//! let before = b"arch: amd64\nhostname: gpu\nmemory: 2048\nlxc.cgroup2.devices.allow: c 195:* rwm\n";
//! let mut doc = Document::parse(before, Dialect::Pve);
//! assert_eq!(doc.main().get("memory"), Some("2048"));
//!
//! // Bind the GPU device node: the new line goes after the last lxc.* line.
//! doc.push_lxc("lxc.mount.entry", "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file");
//! // A new plain key goes to its sorted place, an existing one is rewritten in place.
//! doc.set("cores", "4");
//! doc.set("memory", "4096");
//!
//! assert_eq!(
//!     doc.to_bytes(),
//!     b"arch: amd64\ncores: 4\nhostname: gpu\nmemory: 4096\n\
//!       lxc.cgroup2.devices.allow: c 195:* rwm\n\
//!       lxc.mount.entry: /dev/nvidia0 dev/nvidia0 none bind,optional,create=file\n"
//! );
//! assert_eq!(doc.main().lxc().len(), 2);
//! ```
#![warn(missing_docs)]

mod canonical;
mod classify;
mod rules;

use std::fmt;
use std::ops::Range;

use classify::{classify_lxc, classify_pve, InvalidReason, Kind};
use rules::{check_type, decode_text, lxc_validity, parse_index, truthy, Checked, LxcValidity};

/// Which file format a [`Document`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// A Proxmox VE container config: `key: value`, raw `lxc.*` keys, sections.
    Pve,
    /// A plain LXC config: `lxc.key = value`, comments, no sections.
    Lxc,
}

/// Identifies one line of a [`Document`]; stays valid while other lines are edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId(u64);

/// Which section a [`SectionRef`] is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// The lines before the first section header (the whole file in the LXC dialect).
    Main,
    /// A `[name]` snapshot section.
    Snapshot(String),
    /// The `[pve:pending]` section.
    Pending,
}

/// Whether an [`Entry`] is a plain key or a raw `lxc.*` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// `key: value` (PVE) or a key without the `lxc.` prefix (LXC dialect, where LXC ignores it).
    Plain,
    /// A raw `lxc.*` key.
    Lxc,
}

/// One key/value line of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The line's id, for [`Document::remove`] and [`Document::replace_value`].
    pub id: EntryId,
    /// The key as the reader sees it.
    pub key: &'a str,
    /// The value as the reader sees it (trimmed; quotes stripped in the LXC dialect).
    pub value: &'a str,
    /// 1-based line number.
    pub line: usize,
    /// Plain or `lxc.*`.
    pub kind: EntryKind,
}

/// A line that a strict reader refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config line {line} is not accepted: {message} (line: {text:?})")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The line's text (lossy UTF-8, without the line break).
    pub text: String,
    /// What is wrong and what the reader would do.
    pub message: String,
}

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

/// What [`Document::lint`] found on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LintKind {
    /// Leading whitespace: Proxmox drops the line.
    LeadingWhitespace,
    /// A key with uppercase letters: Proxmox drops the line.
    UppercaseKey,
    /// A one-character section name such as `[x]`: Proxmox drops the line.
    ShortSectionName,
    /// `delete:` outside `[pve:pending]`: Proxmox drops the line.
    DeleteOutsidePending,
    /// An `lxc.*` key that `is_valid_lxc_conf_key` rejects: Proxmox drops the line.
    InvalidLxcKey,
    /// A line no rule matches: Proxmox drops it; LXC refuses the file (LXC dialect).
    Unparseable,
    /// The line is not valid UTF-8: kept verbatim, but not offered as an entry.
    NonUtf8,
    /// A renamed or deprecated `lxc.*` key: kept, with a warning.
    DeprecatedLxcKey,
    /// A plain key that is not in Proxmox's schema: kept as written, with a warning.
    UnknownKey,
    /// A value that fails Proxmox's type check: kept as written, with a warning.
    InvalidValue,
    /// A value Proxmox normalises when it writes the file (`yes` to `1`, `0512` to `512`).
    NormalizedValue,
    /// A key or section that a later line of the same name overrides.
    Overridden,
    /// A key Proxmox handles specially (`digest`, `lxc`, `pending`, ...): its value is lost.
    ReservedKey,
    /// A line Proxmox rewrites in another form (separator, blanks, `description:` lines).
    NonCanonical,
    /// LXC dialect: a line that LXC silently skips (no `lxc.` prefix).
    IgnoredByLxc,
}

impl LintKind {
    /// Whether the reader drops the line (PVE) or refuses it (LXC).
    pub fn is_dropped(self) -> bool {
        matches!(
            self,
            Self::LeadingWhitespace
                | Self::UppercaseKey
                | Self::ShortSectionName
                | Self::DeleteOutsidePending
                | Self::InvalidLxcKey
                | Self::Unparseable
        )
    }

    /// Whether [`Document::parse_strict`] refuses a file with this finding.
    pub fn is_error(self) -> bool {
        self.is_dropped() || self == Self::NonUtf8
    }
}

/// One finding of [`Document::lint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    /// 1-based line number.
    pub line: usize,
    /// The line's text (lossy UTF-8, without the line break).
    pub text: String,
    /// What was found.
    pub kind: LintKind,
    /// A sentence for humans.
    pub message: String,
}

/// One physical line: the bytes before its LF (a CR stays in `text`).
#[derive(Clone, Debug)]
pub(crate) struct Line {
    id: u64,
    text: Vec<u8>,
    newline: bool,
    kind: Kind,
}

impl Line {
    fn display(&self) -> String {
        let t = self.text.strip_suffix(b"\r").unwrap_or(&self.text);
        String::from_utf8_lossy(t).into_owned()
    }

    fn is_utf8(&self) -> bool {
        std::str::from_utf8(&self.text).is_ok()
    }

    fn str(&self, span: &Range<usize>) -> Option<&str> {
        // only lines that are UTF-8 as a whole are offered as text
        if self.is_utf8() {
            std::str::from_utf8(&self.text[span.clone()]).ok()
        } else {
            None
        }
    }
}

/// A section found in the file (before duplicates are resolved).
#[derive(Clone, Debug)]
pub(crate) struct RawSection {
    kind: SectionKind,
    header: Option<usize>,
    body: Range<usize>,
}

/// Splits lines into sections at PVE headers.
pub(crate) fn split_sections(lines: &[Line], kinds: &[Kind]) -> Vec<RawSection> {
    let mut out = vec![RawSection {
        kind: SectionKind::Main,
        header: None,
        body: 0..lines.len(),
    }];
    for (i, kind) in kinds.iter().enumerate() {
        let sk = match kind {
            Kind::PendingHeader => SectionKind::Pending,
            Kind::SnapshotHeader { name } => SectionKind::Snapshot(
                String::from_utf8_lossy(&lines[i].text[name.clone()]).into_owned(),
            ),
            _ => continue,
        };
        if let Some(prev) = out.last_mut() {
            prev.body.end = i;
        }
        out.push(RawSection {
            kind: sk,
            header: Some(i),
            body: i + 1..lines.len(),
        });
    }
    out
}

/// Which raw sections count: later duplicates replace earlier ones.
pub(crate) struct Effective {
    main: usize,
    pending: Option<usize>,
    snapshots: Vec<usize>,
}

impl Effective {
    pub(crate) fn of(raw: &[RawSection]) -> Self {
        let pending = raw.iter().rposition(|s| s.kind == SectionKind::Pending);
        let snapshots = (0..raw.len())
            .filter(|&i| {
                matches!(raw[i].kind, SectionKind::Snapshot(_))
                    && !raw[i + 1..].iter().any(|s| s.kind == raw[i].kind)
            })
            .collect();
        Effective {
            main: 0,
            pending,
            snapshots,
        }
    }
}

/// A lossless config file: its lines, their parsed view, and edits on them.
#[derive(Clone, Debug)]
pub struct Document {
    dialect: Dialect,
    lines: Vec<Line>,
    next_id: u64,
}

/// An entry of a section before the UTF-8 filter: line index, key, value bytes.
struct RawEntry<'a> {
    index: usize,
    key: &'a [u8],
    value: Range<usize>,
    kind: EntryKind,
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

    /// Reads a file and refuses it at the first line that the lenient reader would drop (or
    /// LXC would refuse), or that is not UTF-8.
    ///
    /// Values are not type-checked here; [`Document::lint`] reports unknown keys and values
    /// that Proxmox's type check rejects.
    pub fn parse_strict(bytes: &[u8], dialect: Dialect) -> Result<Document, ParseError> {
        let doc = Document::parse(bytes, dialect);
        match doc.lint().into_iter().find(|l| l.kind.is_error()) {
            Some(l) => Err(ParseError {
                line: l.line,
                text: l.text,
                message: l.message,
            }),
            None => Ok(doc),
        }
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

    /// What Proxmox's `write_pct_config` writes after reading this file with
    /// `parse_pct_config`: description as `#` lines first, plain keys sorted bytewise with
    /// booleans and integers normalised, `lxc.environment.runtime` then the other `lxc.*`
    /// entries as `key: value`, then `[pve:pending]`, then the snapshots sorted by name.
    /// Dropped lines are gone, duplicates resolved. A plain-LXC document is read as PVE would.
    pub fn to_pve_canonical(&self) -> Vec<u8> {
        canonical::write(&self.lines, &self.pve_kinds())
    }

    fn pve_kinds(&self) -> Vec<Kind> {
        match self.dialect {
            Dialect::Pve => self.lines.iter().map(|l| l.kind.clone()).collect(),
            Dialect::Lxc => self.lines.iter().map(|l| classify_pve(&l.text)).collect(),
        }
    }

    fn classify(&self, text: &[u8]) -> Kind {
        match self.dialect {
            Dialect::Pve => classify_pve(text),
            Dialect::Lxc => classify_lxc(text),
        }
    }

    fn push_line(&mut self, text: Vec<u8>, newline: bool) {
        let kind = self.classify(&text);
        let id = self.next_id;
        self.next_id += 1;
        self.lines.push(Line {
            id,
            text,
            newline,
            kind,
        });
    }

    fn raw_sections(&self) -> Vec<RawSection> {
        match self.dialect {
            Dialect::Pve => {
                let kinds: Vec<Kind> = self.lines.iter().map(|l| l.kind.clone()).collect();
                split_sections(&self.lines, &kinds)
            }
            Dialect::Lxc => {
                vec![RawSection {
                    kind: SectionKind::Main,
                    header: None,
                    body: 0..self.lines.len(),
                }]
            }
        }
    }

    fn section_ref(&self, s: &RawSection) -> SectionRef<'_> {
        SectionRef {
            doc: self,
            kind: s.kind.clone(),
            header: s.header,
            body: s.body.clone(),
        }
    }

    /// The main section (the whole file in the LXC dialect).
    pub fn main(&self) -> SectionRef<'_> {
        let raw = self.raw_sections();
        self.section_ref(&raw[0])
    }

    /// The snapshot sections that count (a later `[name]` replaces an earlier one), in file order.
    pub fn snapshots(&self) -> Vec<SectionRef<'_>> {
        let raw = self.raw_sections();
        Effective::of(&raw)
            .snapshots
            .iter()
            .map(|&i| self.section_ref(&raw[i]))
            .collect()
    }

    /// The snapshot section `name` that counts (exact, case-sensitive name).
    pub fn snapshot(&self, name: &str) -> Option<SectionRef<'_>> {
        self.snapshots()
            .into_iter()
            .find(|s| s.name() == Some(name))
    }

    /// The `[pve:pending]` section that counts (the last one).
    pub fn pending(&self) -> Option<SectionRef<'_>> {
        let raw = self.raw_sections();
        Effective::of(&raw)
            .pending
            .map(|i| self.section_ref(&raw[i]))
    }

    /// Line numbers and texts of the lines the reader drops (PVE) or refuses (LXC).
    pub fn invalid_lines(&self) -> Vec<(usize, String)> {
        self.lint()
            .into_iter()
            .filter(|l| l.kind.is_dropped())
            .map(|l| (l.line, l.text))
            .collect()
    }

    /// Everything the reader drops, warns about or rewrites, in line order.
    pub fn lint(&self) -> Vec<Lint> {
        let mut out = Vec::new();
        let raw = self.raw_sections();
        let eff = Effective::of(&raw);
        for (si, sec) in raw.iter().enumerate() {
            let counts = si == eff.main || Some(si) == eff.pending || eff.snapshots.contains(&si);
            if let Some(h) = sec.header {
                if !counts {
                    self.lint_at(
                        &mut out,
                        h,
                        LintKind::Overridden,
                        "a later section header of the same name replaces this whole section"
                            .into(),
                    );
                }
            }
            let pending = sec.kind == SectionKind::Pending;
            let mut seen_entry = false;
            for i in sec.body.clone() {
                self.lint_line(&mut out, i, pending, seen_entry);
                seen_entry |= !matches!(
                    self.lines[i].kind,
                    Kind::Comment | Kind::Blank | Kind::Invalid(_)
                );
            }
            // overridden plain keys: every line but the last of a key
            let entries = self.raw_entries(sec);
            let mut last: std::collections::HashMap<&[u8], usize> =
                std::collections::HashMap::new();
            for e in entries.iter().filter(|e| e.kind == EntryKind::Plain) {
                last.insert(e.key, e.index);
            }
            for e in entries.iter().filter(|e| e.kind == EntryKind::Plain) {
                if let Some(&later) = last.get(e.key).filter(|&&l| l != e.index) {
                    let msg = format!(
                        "line {} sets the same key again; this value is not used",
                        later + 1
                    );
                    self.lint_at(&mut out, e.index, LintKind::Overridden, msg);
                }
            }
        }
        out.sort_by_key(|l| l.line);
        out
    }

    fn lint_at(&self, out: &mut Vec<Lint>, i: usize, kind: LintKind, message: String) {
        out.push(Lint {
            line: i + 1,
            text: self.lines[i].display(),
            kind,
            message,
        });
    }

    fn lint_line(&self, out: &mut Vec<Lint>, i: usize, pending: bool, after_entry: bool) {
        let line = &self.lines[i];
        let t = &line.text;
        if !line.is_utf8() {
            self.lint_at(
                out,
                i,
                LintKind::NonUtf8,
                "line is not valid UTF-8; kept verbatim but not offered as an entry".into(),
            );
        }
        let lxc = self.dialect == Dialect::Lxc;
        match &line.kind {
            Kind::Invalid(reason) => {
                let (kind, msg) = match reason {
                    InvalidReason::LeadingWhitespace => (LintKind::LeadingWhitespace, "leading whitespace: Proxmox drops this line; remove the indentation"),
                    InvalidReason::UppercaseKey => (LintKind::UppercaseKey, "keys are lowercase: Proxmox drops this line"),
                    InvalidReason::ShortSectionName => (LintKind::ShortSectionName, "section names need at least 2 characters: Proxmox drops this header and reads the following lines into the previous section"),
                    InvalidReason::Unparseable => (LintKind::Unparseable, "unable to parse config line: Proxmox drops it"),
                    InvalidReason::NoEquals => (LintKind::Unparseable, "lxc.* line without '=': LXC refuses the file (Invalid configuration line)"),
                    InvalidReason::EmbeddedBreak => (LintKind::Unparseable, "CR or NUL inside the line: LXC splits the line there"),
                };
                self.lint_at(out, i, kind, msg.into());
            }
            Kind::Lxc {
                key,
                sep,
                value,
                validity,
            } => {
                let k = String::from_utf8_lossy(&t[key.clone()]);
                match validity {
                    LxcValidity::Valid => {}
                    LxcValidity::Deprecated(why) => self.lint_at(
                        out,
                        i,
                        LintKind::DeprecatedLxcKey,
                        format!("{k}: {why}; kept"),
                    ),
                    LxcValidity::Rejected(why) => self.lint_at(
                        out,
                        i,
                        LintKind::InvalidLxcKey,
                        format!("{k}: {why}; Proxmox drops this line"),
                    ),
                    LxcValidity::Unknown => self.lint_at(
                        out,
                        i,
                        LintKind::InvalidLxcKey,
                        format!("{k}: not an lxc key Proxmox accepts; it drops this line"),
                    ),
                }
                if !lxc && validity.is_kept() && !canonical_line(t, sep, value) {
                    self.lint_at(
                        out,
                        i,
                        LintKind::NonCanonical,
                        "Proxmox rewrites this line as 'key: value'".into(),
                    );
                }
            }
            Kind::Plain { .. } if lxc => {
                self.lint_at(
                    out,
                    i,
                    LintKind::IgnoredByLxc,
                    "not an lxc.* key: LXC ignores this line".into(),
                );
            }
            Kind::Ignored => self.lint_at(
                out,
                i,
                LintKind::IgnoredByLxc,
                "not an lxc.* key: LXC ignores this line".into(),
            ),
            Kind::Plain { key, sep, value } => {
                let (k, v) = (&t[key.clone()], &t[value.clone()]);
                let ks = String::from_utf8_lossy(k);
                if matches!(
                    k,
                    b"digest"
                        | b"pending"
                        | b"snapshots"
                        | b"snapname"
                        | b"lxc"
                        | b"env"
                        | b"description"
                ) {
                    self.lint_at(out, i, LintKind::ReservedKey, format!("'{ks}' is handled specially by Proxmox; this line does not set it as written"));
                } else {
                    match check_type(k, v) {
                        Checked::UnknownKey => self.lint_at(
                            out,
                            i,
                            LintKind::UnknownKey,
                            format!("unknown setting '{ks}': kept as written"),
                        ),
                        Checked::Invalid(why) => self.lint_at(
                            out,
                            i,
                            LintKind::InvalidValue,
                            format!("unable to parse value of '{ks}' - {why}; kept as written"),
                        ),
                        Checked::Ok(n) if n != v => self.lint_at(
                            out,
                            i,
                            LintKind::NormalizedValue,
                            format!(
                                "Proxmox writes this value as '{}'",
                                String::from_utf8_lossy(&n)
                            ),
                        ),
                        Checked::Ok(_) => {}
                    }
                }
                if !canonical_line(t, sep, value) {
                    self.lint_at(
                        out,
                        i,
                        LintKind::NonCanonical,
                        "Proxmox rewrites this line as 'key: value'".into(),
                    );
                }
            }
            Kind::Delete { .. } if !pending => {
                self.lint_at(
                    out,
                    i,
                    LintKind::DeleteOutsidePending,
                    "property 'delete' is only allowed in [pve:pending]: Proxmox drops this line"
                        .into(),
                );
            }
            Kind::Description { .. } => {
                self.lint_at(
                    out,
                    i,
                    LintKind::NonCanonical,
                    "Proxmox moves the description to '#' lines at the top of the section".into(),
                );
            }
            Kind::Snapstate { .. } if !t.starts_with(b"snapstate:") => {
                self.lint_at(
                    out,
                    i,
                    LintKind::NonCanonical,
                    "Proxmox reads this whole line as 'snapstate'".into(),
                );
            }
            // a comment is canonical only where the writer puts it: before any entry
            Kind::Comment if !lxc && after_entry => {
                self.lint_at(
                    out,
                    i,
                    LintKind::NonCanonical,
                    "Proxmox moves this comment into the description at the top of the section"
                        .into(),
                );
            }
            _ => {}
        }
    }

    fn raw_entries(&self, sec: &RawSection) -> Vec<RawEntry<'_>> {
        let mut out = Vec::new();
        for i in sec.body.clone() {
            let t = &self.lines[i].text;
            let (key, value, kind): (&[u8], Range<usize>, EntryKind) = match &self.lines[i].kind {
                Kind::Plain { key, value, .. }
                    if self.dialect == Dialect::Lxc || &t[key.clone()] != b"description" =>
                {
                    (&t[key.clone()], value.clone(), EntryKind::Plain)
                }
                Kind::Lxc {
                    key,
                    value,
                    validity,
                    ..
                } if validity.is_kept() => (&t[key.clone()], value.clone(), EntryKind::Lxc),
                Kind::Snapstate { value } if sec.kind != SectionKind::Main => {
                    (b"snapstate", value.clone(), EntryKind::Plain)
                }
                Kind::Delete { value } if sec.kind == SectionKind::Pending => {
                    (b"delete", value.clone(), EntryKind::Plain)
                }
                _ => continue,
            };
            out.push(RawEntry {
                index: i,
                key,
                value,
                kind,
            });
        }
        out
    }

    fn main_body(&self) -> Range<usize> {
        self.raw_sections()[0].body.clone()
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

    fn index_of(&self, id: EntryId) -> Option<usize> {
        self.lines.iter().position(|l| l.id == id.0)
    }

    /// Inserts a line at `at`; gives the previous last line a line break if it had none.
    fn insert_line(&mut self, at: usize, mut text: Vec<u8>) -> EntryId {
        let crlf = self.uses_crlf();
        if at == self.lines.len() {
            if let Some(last) = self.lines.last_mut() {
                if !last.newline {
                    if crlf && !last.text.ends_with(b"\r") {
                        last.text.push(b'\r');
                    }
                    last.newline = true;
                    let kind = match self.dialect {
                        Dialect::Pve => classify_pve(&last.text),
                        Dialect::Lxc => classify_lxc(&last.text),
                    };
                    last.kind = kind;
                }
            }
        }
        if crlf {
            text.push(b'\r');
        }
        let kind = self.classify(&text);
        let id = self.next_id;
        self.next_id += 1;
        self.lines.insert(
            at,
            Line {
                id,
                text,
                newline: true,
                kind,
            },
        );
        EntryId(id)
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

    fn plain_separator(&self) -> Vec<u8> {
        match self.dialect {
            Dialect::Pve => b": ".to_vec(),
            Dialect::Lxc => self.lxc_separator(),
        }
    }

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
        if let Some(i) = found {
            let sep = if is_lxc {
                self.lxc_separator()
            } else {
                self.plain_separator()
            };
            let text = self.entry_line(key, &sep, value);
            self.rewrite_line(i, text);
            return EntryId(self.lines[i].id);
        }
        if is_lxc {
            return self.push_lxc(key, value);
        }
        let sep = self.plain_separator();
        let text = self.entry_line(key, &sep, value);
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
        if let Some(rest) = k.strip_prefix(b"lxc.") {
            if rest.is_empty()
                || !rest.iter().all(|&b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
                })
            {
                return bad_key(
                    "an lxc key is 'lxc.' followed by lowercase letters, digits, '_', '-' or '.'",
                );
            }
            if self.dialect == Dialect::Pve && !lxc_validity(k).is_kept() {
                return bad_key("Proxmox does not accept this lxc key (is_valid_lxc_conf_key)");
            }
        } else {
            let mut it = k.iter().peekable();
            let ok = it.next().is_some_and(u8::is_ascii_lowercase) && {
                let rest: Vec<u8> = it.copied().collect();
                let digits_from = rest
                    .iter()
                    .position(u8::is_ascii_digit)
                    .unwrap_or(rest.len());
                rest[..digits_from]
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b == b'_')
                    && rest[digits_from..].iter().all(u8::is_ascii_digit)
            };
            if !ok {
                return bad_key("a plain key is [a-z][a-z_]*[0-9]*");
            }
            if matches!(
                k,
                b"digest"
                    | b"pending"
                    | b"snapshots"
                    | b"snapname"
                    | b"lxc"
                    | b"env"
                    | b"description"
                    | b"delete"
                    | b"snapstate"
            ) {
                return bad_key("this key is handled specially by Proxmox");
            }
            if value.is_empty() && self.dialect == Dialect::Pve {
                return bad_value("a plain key needs a value");
            }
        }
        if value.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0) {
            return bad_value("a value cannot hold a line break or NUL");
        }
        if value.bytes().next().is_some_and(classify::is_ws)
            || value.bytes().last().is_some_and(classify::is_ws)
        {
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
            Kind::Plain { key, .. } => (line.text[key.clone()].to_vec(), false),
            Kind::Lxc { key, .. } => (line.text[key.clone()].to_vec(), true),
            _ => return false,
        };
        let sep = if is_lxc {
            self.lxc_separator()
        } else {
            self.plain_separator()
        };
        let mut text = key;
        text.extend_from_slice(&sep);
        text.extend_from_slice(one_line(value).as_bytes());
        self.rewrite_line(i, text);
        true
    }

    /// The entry with this id, in whichever section it is.
    pub fn entry(&self, id: EntryId) -> Option<Entry<'_>> {
        let i = self.index_of(id)?;
        let raw = self.raw_sections();
        let sec = raw.iter().find(|s| s.body.contains(&i))?;
        self.section_ref(sec)
            .entries()
            .into_iter()
            .find(|e| e.id == id)
    }
}

/// A line is canonical when it reads `key: value` exactly (a CR at the end aside).
fn canonical_line(t: &[u8], sep: &Range<usize>, value: &Range<usize>) -> bool {
    let body_end = if t.ends_with(b"\r") {
        t.len() - 1
    } else {
        t.len()
    };
    let sep_ok = &t[sep.clone()] == b": "
        || (value.is_empty()
            && &t[sep.clone()] == b":"
            && body_end == sep.end + 1
            && t[sep.end] == b' ');
    if value.is_empty() {
        // `key: ` is how Proxmox writes an empty lxc value
        return &t[sep.start..body_end] == b": ";
    }
    sep_ok && value.end == body_end
}

fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(s.replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A view of one section of a [`Document`].
#[derive(Clone, Debug)]
pub struct SectionRef<'a> {
    doc: &'a Document,
    kind: SectionKind,
    header: Option<usize>,
    body: Range<usize>,
}

impl<'a> SectionRef<'a> {
    /// Main, snapshot or pending.
    pub fn kind(&self) -> &SectionKind {
        &self.kind
    }

    /// `None` for the main section, the snapshot name, or `"pve:pending"`.
    pub fn name(&self) -> Option<&str> {
        match &self.kind {
            SectionKind::Main => None,
            SectionKind::Snapshot(n) => Some(n),
            SectionKind::Pending => Some("pve:pending"),
        }
    }

    /// 1-based line number of the section header (`None` for the main section).
    pub fn header_line(&self) -> Option<usize> {
        self.header.map(|h| h + 1)
    }

    /// 1-based line numbers covered by the section body (after the header).
    pub fn lines(&self) -> Range<usize> {
        self.body.start + 1..self.body.end + 1
    }

    fn raw(&self) -> RawSection {
        RawSection {
            kind: self.kind.clone(),
            header: self.header,
            body: self.body.clone(),
        }
    }

    /// The value of `key`, as Proxmox reads it: the last line wins. For an `lxc.*` key, the last
    /// entry with that key. `None` when absent or when that line is not UTF-8. The value is as
    /// written (trimmed); see [`SectionRef::get_normalized`] for Proxmox's normalised form.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let doc = self.doc;
        let e = doc
            .raw_entries(&self.raw())
            .into_iter()
            .rev()
            .find(|e| e.key == key.as_bytes())?;
        doc.lines[e.index].str(&e.value)
    }

    /// The value of `key` after Proxmox's type check (`yes` becomes `1`, `0512` becomes `512`).
    pub fn get_normalized(&self, key: &str) -> Option<String> {
        let v = self.get(key)?;
        Some(match check_type(key.as_bytes(), v.as_bytes()) {
            Checked::Ok(n) => String::from_utf8_lossy(&n).into_owned(),
            _ => v.to_string(),
        })
    }

    /// Every key/value line in file order (lines Proxmox drops and non-UTF-8 lines excluded).
    pub fn entries(&self) -> Vec<Entry<'a>> {
        let doc = self.doc;
        doc.raw_entries(&self.raw())
            .into_iter()
            .filter_map(|e| {
                let line = &doc.lines[e.index];
                Some(Entry {
                    id: EntryId(line.id),
                    key: std::str::from_utf8(e.key).ok().filter(|_| line.is_utf8())?,
                    value: line.str(&e.value)?,
                    line: e.index + 1,
                    kind: e.kind,
                })
            })
            .collect()
    }

    /// Only the `lxc.*` entries, in file order.
    pub fn lxc(&self) -> Vec<Entry<'a>> {
        self.entries()
            .into_iter()
            .filter(|e| e.kind == EntryKind::Lxc)
            .collect()
    }

    /// The `lxc.environment.runtime` values in file order (Proxmox's `env`).
    pub fn env(&self) -> Vec<&'a str> {
        self.lxc()
            .into_iter()
            .filter(|e| e.key == "lxc.environment.runtime")
            .map(|e| e.value)
            .collect()
    }

    /// The description Proxmox reads (PVE dialect): every `#` line of the section,
    /// percent-decoded, each followed by a newline, plus `description:` lines (decoded, no
    /// newline), in file order. Empty in the LXC dialect.
    pub fn description(&self) -> String {
        if self.doc.dialect == Dialect::Lxc {
            return String::new();
        }
        let mut descr = String::new();
        let mut quirk: Option<String> = None;
        for i in self.body.clone() {
            let t = &self.doc.lines[i].text;
            match &self.doc.lines[i].kind {
                Kind::Comment => {
                    descr.push_str(&decode_text(&t[1..]));
                    descr.push('\n');
                }
                Kind::Description { value } => descr.push_str(&decode_text(&t[value.clone()])),
                Kind::Plain { key, value, .. } if &t[key.clone()] == b"description" => {
                    quirk = Some(String::from_utf8_lossy(&t[value.clone()]).into_owned());
                }
                _ => {}
            }
        }
        if truthy(descr.as_bytes()) {
            descr
        } else {
            quirk.unwrap_or_default()
        }
    }

    /// Effective values of the indexed keys `<prefix><n>` (`dev0`, `mp3`, `net1`), sorted by
    /// index. `dev01` is not index 1 (Proxmox reads it as another key).
    pub fn indexed(&self, prefix: &str) -> Vec<(u32, &'a str)> {
        let mut out: Vec<(u32, &'a str)> = Vec::new();
        for n in self.used_indices(prefix) {
            if let Some(v) = self.get(&format!("{prefix}{n}")) {
                out.push((n, v));
            }
        }
        out
    }

    fn used_indices(&self, prefix: &str) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .doc
            .raw_entries(&self.raw())
            .iter()
            .filter(|e| e.kind == EntryKind::Plain)
            .filter_map(|e| e.key.strip_prefix(prefix.as_bytes()).and_then(parse_index))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The smallest index `n < max` for which `<prefix><n>` is not set in this section.
    pub fn next_free_index(&self, prefix: &str, max: u32) -> Option<u32> {
        let used = self.used_indices(prefix);
        (0..max).find(|n| used.binary_search(n).is_err())
    }
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {} ({:?})", self.line, self.message, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pve(s: &str) -> Document {
        Document::parse(s.as_bytes(), Dialect::Pve)
    }

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
    fn duplicate_sections_and_keys_resolve_like_pve() {
        let d = pve("memory: 1\nmemory: 2\n[aa]\nx: 1\n[pve:pending]\ncores: 1\n[aa]\ny: 2\n[PVE:PENDING]\ncores: 3\n");
        assert_eq!(d.main().get("memory"), Some("2"));
        let snaps = d.snapshots();
        assert_eq!(snaps.len(), 1);
        assert_eq!((snaps[0].get("x"), snaps[0].get("y")), (None, Some("2")));
        assert_eq!(d.pending().unwrap().get("cores"), Some("3"));
        let overridden: Vec<usize> = d
            .lint()
            .iter()
            .filter(|l| l.kind == LintKind::Overridden)
            .map(|l| l.line)
            .collect();
        assert_eq!(overridden, vec![1, 3, 5]);
        assert_eq!(
            d.to_pve_canonical(),
            b"memory: 2\n\n[pve:pending]\ncores: 3\n\n[aa]\ny: 2\n"
        );
    }

    #[test]
    fn description_quirks() {
        // description: lines glue onto the next # line; a lone "0" is false in Perl
        let d = pve("description: a%3Ab\n#c\n");
        assert_eq!(d.main().description(), "a:bc\n");
        assert_eq!(pve("description: 0\n").main().description(), "");
        assert_eq!(pve("description: 0\n").to_pve_canonical(), b"");
        let d = pve("#%e4%bc%98 x\n#\n#\n");
        assert_eq!(d.main().description(), "优 x\n\n\n");
        assert_eq!(d.to_pve_canonical(), "#%E4%BC%98 x\n".as_bytes());
    }

    #[test]
    fn canonical_drops_unused_volumes_still_in_use_and_orders_env() {
        let d = pve("unused1: local:vm-1-disk-1\nunused0: local:vm-1-disk-0\nlxc.idmap: u 0 1 2\n\
                     lxc.environment.runtime: A=1\nrootfs: local:vm-1-disk-0,size=8G\nsnapstate: prepare\n");
        assert_eq!(
            String::from_utf8(d.to_pve_canonical()).unwrap(),
            "rootfs: local:vm-1-disk-0,size=8G\nunused1: local:vm-1-disk-1\n\
             lxc.environment.runtime: A=1\nlxc.idmap: u 0 1 2\n"
        );
        assert_eq!(
            pve("[bb]\n[BB]\n[c]\n").to_pve_canonical(),
            b"\n[BB]\n\n[bb]\n"
        );
    }

    #[test]
    fn lxc_dialect_has_no_sections_and_keeps_quotes_out_of_values() {
        let d = Document::parse(b"[snap]\nlxc.uts.name = 'a b'\n", Dialect::Lxc);
        assert!(d.snapshots().is_empty());
        assert_eq!(d.main().get("lxc.uts.name"), Some("a b"));
        assert_eq!(d.invalid_lines(), vec![]);
        assert_eq!(d.lint()[0].kind, LintKind::IgnoredByLxc);
    }
}
