//! One physical line: its bytes, its line break, and what it is. The classification follows
//! the regexes of Proxmox's `parse_pct_config` and LXC's `parse_line`, written out by hand over
//! bytes.

use std::ops::Range;

use crate::rules::{lxc_validity, LxcValidity};

/// One physical line: the bytes before its LF (a CR stays in `text`).
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub(crate) id: u64,
    pub(crate) text: Vec<u8>,
    pub(crate) newline: bool,
    pub(crate) kind: Kind,
}

impl Line {
    /// The text for messages: lossy UTF-8, without a final CR.
    pub(crate) fn display(&self) -> String {
        let t = self.text.strip_suffix(b"\r").unwrap_or(&self.text);
        String::from_utf8_lossy(t).into_owned()
    }

    /// Whether the whole line is UTF-8.
    pub(crate) fn is_utf8(&self) -> bool {
        std::str::from_utf8(&self.text).is_ok()
    }

    /// The text of `span`, when the whole line is UTF-8.
    pub(crate) fn str(&self, span: &Range<usize>) -> Option<&str> {
        if self.is_utf8() {
            std::str::from_utf8(&self.text[span.clone()]).ok()
        } else {
            None
        }
    }
}

/// A byte range inside one line's text.
pub(crate) type Span = Range<usize>;

/// What one line is, in the document's dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Whitespace only (Perl `^\s*$`, or LXC's empty line).
    Blank,
    /// `#...` (PVE: at column 0; LXC: after optional blanks).
    Comment,
    /// `[pve:pending]`.
    PendingHeader,
    /// `[name]`; the span is the name.
    SnapshotHeader { name: Span },
    /// `description: text` (rule 6); the span is the encoded text.
    Description { value: Span },
    /// Rule 7, `snapstate: prepare|delete`, anywhere in the line.
    Snapstate { value: Span },
    /// Rule 8, `delete: list`.
    Delete { value: Span },
    /// `key: value` (PVE rule 9) or a non-`lxc.` `key = value` line (LXC ignores those).
    Plain { key: Span, sep: Span, value: Span },
    /// `lxc.key: value` / `lxc.key = value`.
    Lxc {
        key: Span,
        sep: Span,
        value: Span,
        validity: LxcValidity,
    },
    /// LXC dialect: a line LXC skips without complaint (no `lxc.` prefix, no `=`).
    Ignored,
    /// A line the reader rejects.
    Invalid(InvalidReason),
}

/// Why a line is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InvalidReason {
    LeadingWhitespace,
    UppercaseKey,
    ShortSectionName,
    Unparseable,
    /// LXC dialect: an `lxc.` line without `=`.
    NoEquals,
    /// LXC dialect: a CR or NUL inside the line, which LXC treats as a line break.
    EmbeddedBreak,
}

/// Perl's `\s` on a byte string: space, TAB, LF, VT, FF, CR.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn all_ws(t: &[u8]) -> bool {
    t.iter().all(|&b| is_ws(b))
}

/// The span of `t[from..]` with Perl whitespace trimmed on both sides.
fn trimmed(t: &[u8], from: usize) -> Span {
    let mut s = from;
    while s < t.len() && is_ws(t[s]) {
        s += 1;
    }
    let mut e = t.len();
    while e > s && is_ws(t[e - 1]) {
        e -= 1;
    }
    s..e
}

/// A character of a raw lxc key after `lxc.`: `[a-z0-9_.-]`.
fn is_lxc_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
}

/// Whether `key` is a whole raw lxc key: `lxc.` and at least one key character.
pub(crate) fn is_lxc_key(key: &[u8]) -> bool {
    key.strip_prefix(b"lxc.")
        .is_some_and(|rest| !rest.is_empty() && rest.iter().all(|&b| is_lxc_key_char(b)))
}

/// The length of the plain key `[a-z][a-z_]*\d*` that `t` starts with; 0 if none.
fn plain_key_len(t: &[u8]) -> usize {
    if !t.first().is_some_and(u8::is_ascii_lowercase) {
        return 0;
    }
    let mut i = 1;
    while i < t.len() && (t[i].is_ascii_lowercase() || t[i] == b'_') {
        i += 1;
    }
    while i < t.len() && t[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Whether `key` is a whole plain key, `[a-z][a-z_]*\d*`.
pub(crate) fn is_plain_key(key: &[u8]) -> bool {
    !key.is_empty() && plain_key_len(key) == key.len()
}

/// The value of a line `prefix\s*(.*\S)\s*`, trimmed; `None` when it is blank.
fn value_after(t: &[u8], prefix: &[u8]) -> Option<Span> {
    if !t.starts_with(prefix) {
        return None;
    }
    let value = trimmed(t, prefix.len());
    (!value.is_empty()).then_some(value)
}

/// Classifies one line the way `parse_pct_config` does (the checks in its order).
pub(crate) fn classify_pve(t: &[u8]) -> Kind {
    // 1: blank
    if all_ws(t) {
        return Kind::Blank;
    }
    // 2: [pve:pending], any case
    const PENDING: &[u8] = b"[pve:pending]";
    if t.len() >= PENDING.len()
        && t[..PENDING.len()].eq_ignore_ascii_case(PENDING)
        && all_ws(&t[PENDING.len()..])
    {
        return Kind::PendingHeader;
    }
    // 3: [name], name = [a-z][a-z0-9_-]+ (case-insensitive)
    if t[0] == b'[' {
        let mut i = 1;
        while i < t.len() && (t[i].is_ascii_alphanumeric() || t[i] == b'_' || t[i] == b'-') {
            i += 1;
        }
        if i > 2 && t[1].is_ascii_alphabetic() && t.get(i) == Some(&b']') && all_ws(&t[i + 1..]) {
            return Kind::SnapshotHeader { name: 1..i };
        }
    }
    // 4: comment
    if t[0] == b'#' {
        return Kind::Comment;
    }
    // 5: lxc.key(:|\s*=)\s*(.*?)\s*$
    if t.starts_with(b"lxc.") {
        let mut i = 4;
        while i < t.len() && is_lxc_key_char(t[i]) {
            i += 1;
        }
        if i > 4 {
            let sep_end = if t.get(i) == Some(&b':') {
                Some(i + 1)
            } else {
                let mut j = i;
                while j < t.len() && is_ws(t[j]) {
                    j += 1;
                }
                (t.get(j) == Some(&b'=')).then_some(j + 1)
            };
            if let Some(sep_end) = sep_end {
                let value = trimmed(t, sep_end);
                return Kind::Lxc {
                    key: 0..i,
                    sep: i..value.start,
                    value,
                    validity: lxc_validity(&t[..i]),
                };
            }
        }
    }
    // 6: description:\s*(.*\S)\s*$
    if let Some(value) = value_after(t, b"description:") {
        return Kind::Description { value };
    }
    // 7: snapstate:\s*(prepare|delete)\s*$, not anchored
    if let Some(value) = find_snapstate(t) {
        return Kind::Snapstate { value };
    }
    // 8: ^delete:\s*(.*\S)\s*$
    if let Some(value) = value_after(t, b"delete:") {
        return Kind::Delete { value };
    }
    // 9: ^([a-z][a-z_]*\d*):\s*(.+?)\s*$
    let colon = plain_key_len(t);
    if colon > 0 && t.get(colon) == Some(&b':') {
        let rest = colon + 1;
        let value = trimmed(t, rest);
        if !value.is_empty() {
            return Kind::Plain {
                key: 0..colon,
                sep: colon..value.start,
                value,
            };
        }
        if rest < t.len() {
            // all whitespace: `.+?` takes the last whitespace character
            let last = t.len() - 1;
            return Kind::Plain {
                key: 0..colon,
                sep: colon..last,
                value: last..t.len(),
            };
        }
    }
    Kind::Invalid(pve_invalid_reason(t))
}

fn find_snapstate(t: &[u8]) -> Option<Span> {
    const NEEDLE: &[u8] = b"snapstate:";
    let mut from = 0;
    while from + NEEDLE.len() <= t.len() {
        let pos = from + t[from..].windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
        let mut j = pos + NEEDLE.len();
        while j < t.len() && is_ws(t[j]) {
            j += 1;
        }
        for word in [b"prepare".as_slice(), b"delete".as_slice()] {
            if t[j..].starts_with(word) && all_ws(&t[j + word.len()..]) {
                return Some(j..j + word.len());
            }
        }
        from = pos + 1;
    }
    None
}

fn pve_invalid_reason(t: &[u8]) -> InvalidReason {
    if t.first().is_some_and(|&b| is_ws(b)) {
        return InvalidReason::LeadingWhitespace;
    }
    if t.len() >= 3 && t[0] == b'[' && t[1].is_ascii_alphabetic() && t[2] == b']' && all_ws(&t[3..])
    {
        return InvalidReason::ShortSectionName;
    }
    // a key-like word with an uppercase letter before ':' or '='
    let key_len = t
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        .count();
    if key_len > 0
        && t[0].is_ascii_alphabetic()
        && t[..key_len].iter().any(u8::is_ascii_uppercase)
        && t[key_len..]
            .iter()
            .find(|&&b| !is_ws(b))
            .is_some_and(|&b| b == b':' || b == b'=')
    {
        return InvalidReason::UppercaseKey;
    }
    InvalidReason::Unparseable
}

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Classifies one line the way LXC's `parse_line` does.
pub(crate) fn classify_lxc(t: &[u8]) -> Kind {
    let body_end = if t.ends_with(b"\r") {
        t.len() - 1
    } else {
        t.len()
    };
    let body = &t[..body_end];
    if body.iter().any(|&b| b == b'\r' || b == 0) {
        return Kind::Invalid(InvalidReason::EmbeddedBreak);
    }
    let start = body
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if body[start..].iter().all(|&b| is_c_space(b)) {
        return Kind::Blank;
    }
    if body[start] == b'#' {
        return Kind::Comment;
    }
    let is_lxc = body[start..].starts_with(b"lxc.");
    let Some(eq) = body[start..]
        .iter()
        .position(|&b| b == b'=')
        .map(|p| p + start)
    else {
        return if is_lxc {
            Kind::Invalid(InvalidReason::NoEquals)
        } else {
            Kind::Ignored
        };
    };
    let mut key_end = eq;
    while key_end > start && matches!(body[key_end - 1], b' ' | b'\t') {
        key_end -= 1;
    }
    if key_end == start {
        return Kind::Ignored;
    }
    let mut vs = eq + 1;
    while vs < body_end && is_c_space(body[vs]) {
        vs += 1;
    }
    let mut ve = body_end;
    while ve > vs && is_c_space(body[ve - 1]) {
        ve -= 1;
    }
    let sep = key_end..vs;
    if ve - vs > 1 && (body[vs] == b'"' || body[vs] == b'\'') && body[ve - 1] == body[vs] {
        vs += 1;
        ve -= 1;
    }
    let key = start..key_end;
    if is_lxc {
        Kind::Lxc {
            key,
            sep,
            value: vs..ve,
            validity: LxcValidity::Valid,
        }
    } else {
        Kind::Plain {
            key,
            sep,
            value: vs..ve,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(t: &str) -> Option<(String, String)> {
        match classify_pve(t.as_bytes()) {
            Kind::Plain { key, value, .. } => Some((t[key].to_string(), t[value].to_string())),
            _ => None,
        }
    }

    #[test]
    fn pve_plain_value_quirks() {
        assert_eq!(
            plain("hostname:   spaced   "),
            Some(("hostname".into(), "spaced".into()))
        );
        assert_eq!(plain("memory:512"), Some(("memory".into(), "512".into())));
        // an all-blank value yields its last whitespace character
        assert_eq!(plain("key:   "), Some(("key".into(), " ".into())));
        assert_eq!(plain("key: \r"), Some(("key".into(), "\r".into())));
        assert_eq!(plain("key:"), None);
        assert_eq!(plain("mp0a: x"), None);
        assert_eq!(plain("net10: x"), Some(("net10".into(), "x".into())));
    }

    #[test]
    fn pve_headers_and_errors() {
        assert_eq!(classify_pve(b"[PVE:Pending]  \r"), Kind::PendingHeader);
        assert_eq!(
            classify_pve(b"[Snap_1]"),
            Kind::SnapshotHeader { name: 1..7 }
        );
        assert_eq!(
            classify_pve(b"[x]"),
            Kind::Invalid(InvalidReason::ShortSectionName)
        );
        assert_eq!(
            classify_pve(b" [snap]"),
            Kind::Invalid(InvalidReason::LeadingWhitespace)
        );
        assert_eq!(
            classify_pve(b"Uppercase: x"),
            Kind::Invalid(InvalidReason::UppercaseKey)
        );
        assert_eq!(
            classify_pve(b"delete:"),
            Kind::Invalid(InvalidReason::Unparseable)
        );
        assert_eq!(classify_pve(b"\t\r"), Kind::Blank);
    }

    #[test]
    fn pve_unanchored_snapstate() {
        assert_eq!(
            classify_pve(b"  junk snapstate: delete "),
            Kind::Snapstate { value: 18..24 }
        );
    }

    #[test]
    fn pve_lxc_separators() {
        let t = b"lxc.mount.entry = /a b none bind 0 0  ";
        match classify_pve(t) {
            Kind::Lxc {
                key,
                sep,
                value,
                validity,
            } => {
                assert_eq!(&t[key], b"lxc.mount.entry");
                assert_eq!(&t[sep], b" = ");
                assert_eq!(&t[value], b"/a b none bind 0 0");
                assert_eq!(validity, LxcValidity::Valid);
            }
            k => panic!("{k:?}"),
        }
        assert!(
            matches!(classify_pve(b"lxc.cap.drop:"), Kind::Lxc { value, .. } if value.is_empty())
        );
    }

    #[test]
    fn lxc_dialect_lines() {
        let t = b"  lxc.uts.name = \"web\" \r";
        match classify_lxc(t) {
            Kind::Lxc { key, value, .. } => {
                assert_eq!(&t[key], b"lxc.uts.name");
                assert_eq!(&t[value], b"web");
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(
            classify_lxc(b"lxc.cap.drop"),
            Kind::Invalid(InvalidReason::NoEquals)
        );
        assert_eq!(classify_lxc(b"hello world"), Kind::Ignored);
        assert_eq!(classify_lxc(b"   # c"), Kind::Comment);
        assert!(
            matches!(classify_lxc(b"lxc.cgroup2.devices.deny ="), Kind::Lxc { value, .. } if value.is_empty())
        );
    }
}
