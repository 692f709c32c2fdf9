//! What a reader would drop, refuse, warn about or rewrite: [`Document::lint`] and the strict
//! reader built on it, [`Document::parse_strict`].

use std::fmt;
use std::ops::Range;

use crate::document::Document;
use crate::line::{InvalidReason, Kind};
use crate::rules::{check_type, is_reserved_key, Checked, LxcValidity};
use crate::section::Effective;
use crate::types::{Dialect, EntryKind, SectionKind};

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

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {} ({:?})", self.line, self.message, self.text)
    }
}

impl Document {
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

    /// A `key: value` line that Proxmox writes back in another form.
    fn lint_rewritten_entry(
        &self,
        out: &mut Vec<Lint>,
        i: usize,
        sep: &Range<usize>,
        value: &Range<usize>,
    ) {
        if !canonical_line(&self.lines[i].text, sep, value) {
            self.lint_at(
                out,
                i,
                LintKind::NonCanonical,
                "Proxmox rewrites this line as 'key: value'".into(),
            );
        }
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
                if !lxc && validity.is_kept() {
                    self.lint_rewritten_entry(out, i, sep, value);
                }
            }
            // `Ignored` comes only from the LXC dialect
            Kind::Ignored | Kind::Plain { .. } if lxc => self.lint_at(
                out,
                i,
                LintKind::IgnoredByLxc,
                "not an lxc.* key: LXC ignores this line".into(),
            ),
            Kind::Plain { key, sep, value } => {
                let (k, v) = (&t[key.clone()], &t[value.clone()]);
                let ks = String::from_utf8_lossy(k);
                if is_reserved_key(k) {
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
                self.lint_rewritten_entry(out, i, sep, value);
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

#[cfg(test)]
mod tests {
    use crate::{Dialect, Document, LintKind};

    fn kinds(text: &str, dialect: Dialect) -> Vec<(usize, LintKind)> {
        let d = Document::parse(text.as_bytes(), dialect);
        d.lint().iter().map(|l| (l.line, l.kind)).collect()
    }

    #[test]
    fn reserved_keys_and_non_canonical_key_value_lines() {
        use LintKind::*;
        let text = "digest: x\nenv: A=1\nmemory:512\nlxc.idmap = u 0 1 2\nlxc.cap.drop:\n\
                    lxc.cap.keep: \nunknownkey: 1\ndescription:  \ndescription: x\nlxc: 1\n\
                    swap : 1\nonboot: yes\nlxc.aa_profile = x\n";
        assert_eq!(
            kinds(text, Dialect::Pve),
            vec![
                (1, ReservedKey),
                (2, ReservedKey),
                (3, NonCanonical),
                (4, NonCanonical),
                (5, NonCanonical),
                (7, UnknownKey),
                (8, ReservedKey),
                (9, NonCanonical),
                (10, ReservedKey),
                (11, Unparseable),
                (12, NormalizedValue),
                (13, DeprecatedLxcKey),
                (13, NonCanonical),
            ]
        );
    }

    #[test]
    fn lxc_dialect_lints_what_lxc_ignores_and_nothing_about_separators() {
        use LintKind::*;
        let text = "foo = bar\nhello\nlxc.uts.name=a\nlxc.cap.drop\n  # c\n";
        assert_eq!(
            kinds(text, Dialect::Lxc),
            vec![(1, IgnoredByLxc), (2, IgnoredByLxc), (4, Unparseable)]
        );
    }
}
