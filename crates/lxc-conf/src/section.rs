//! Sections: where each one starts and ends, which of same-named duplicates counts, and
//! [`SectionRef`], the read view of one section (last-wins keys, entries, the description,
//! indexed keys).

use std::ops::Range;

use crate::document::Document;
use crate::line::{Kind, Line};
use crate::rules::{check_type, decode_text, parse_index, truthy, Checked};
use crate::types::{Dialect, Entry, EntryId, EntryKind, SectionKind};

/// A section found in the file (before duplicates are resolved).
#[derive(Clone, Debug)]
pub(crate) struct RawSection {
    pub(crate) kind: SectionKind,
    pub(crate) header: Option<usize>,
    pub(crate) body: Range<usize>,
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
    pub(crate) main: usize,
    pub(crate) pending: Option<usize>,
    pub(crate) snapshots: Vec<usize>,
}

impl Effective {
    /// Resolves the duplicates among the sections of [`split_sections`].
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

/// `$conf->{description}` as `parse_pct_config` reads it from a section's lines (text and PVE
/// kind): every `#` line percent-decoded and followed by a newline, plus the `description:`
/// lines decoded, in file order. When that is false in Perl (empty or `"0"`), the value of the
/// last `description:` line with a blank value (read as a plain key) instead, if any.
pub(crate) fn read_description<'a>(
    lines: impl Iterator<Item = (&'a [u8], &'a Kind)>,
) -> Option<Vec<u8>> {
    let mut descr = String::new();
    let mut blank_key = None;
    for (t, kind) in lines {
        match kind {
            Kind::Comment => {
                descr.push_str(&decode_text(&t[1..]));
                descr.push('\n');
            }
            Kind::Description { value } => descr.push_str(&decode_text(&t[value.clone()])),
            Kind::Plain { key, value, .. } if &t[key.clone()] == b"description" => {
                blank_key = Some(t[value.clone()].to_vec());
            }
            _ => {}
        }
    }
    if truthy(descr.as_bytes()) {
        Some(descr.into_bytes())
    } else {
        blank_key
    }
}

/// An entry of a section before the UTF-8 filter: line index, key, value bytes.
pub(crate) struct RawEntry<'a> {
    pub(crate) index: usize,
    pub(crate) key: &'a [u8],
    pub(crate) value: Range<usize>,
    pub(crate) kind: EntryKind,
}

impl Document {
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

    /// The sections in file order, the main one first (the only one in the LXC dialect).
    pub(crate) fn raw_sections(&self) -> Vec<RawSection> {
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

    /// The key/value lines the reader takes from `sec`, before [`SectionRef::entries`]' UTF-8
    /// filter.
    pub(crate) fn raw_entries(&self, sec: &RawSection) -> Vec<RawEntry<'_>> {
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

    /// The indices of the main section's lines.
    pub(crate) fn main_body(&self) -> Range<usize> {
        self.raw_sections()[0].body.clone()
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
        let lines = &self.doc.lines;
        let body = self
            .body
            .clone()
            .map(|i| (lines[i].text.as_slice(), &lines[i].kind));
        read_description(body)
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use crate::document::pve;
    use crate::{Dialect, Document, LintKind};

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
    fn a_blank_description_key_counts_only_without_comments() {
        // `description:` with a blank value is a plain key whose value is its last blank
        let d = pve("description:  \n");
        assert_eq!(d.main().description(), " ");
        assert_eq!(d.to_pve_canonical(), b"# \n");
        let d = pve("#a\ndescription: \t\n[snap]\ndescription:  \n");
        assert_eq!(d.main().description(), "a\n");
        assert_eq!(d.snapshot("snap").unwrap().description(), " ");
        assert_eq!(d.to_pve_canonical(), b"#a\n\n[snap]\n# \n");
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
