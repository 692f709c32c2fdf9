//! The public value types the other modules share: the dialect, line ids, section and entry
//! kinds, and [`Entry`], one key/value line as a reader sees it.

/// Which file format a [`Document`](crate::Document) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// A Proxmox VE container config: `key: value`, raw `lxc.*` keys, sections.
    Pve,
    /// A plain LXC config: `lxc.key = value`, comments, no sections.
    Lxc,
}

/// Identifies one line of a [`Document`](crate::Document); stays valid while other lines are
/// edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId(pub(crate) u64);

/// Which section a [`SectionRef`](crate::SectionRef) is.
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
    /// The line's id, for [`Document::remove`](crate::Document::remove) and
    /// [`Document::replace_value`](crate::Document::replace_value).
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
