//! The passthrough a container's config gives it, read back from the tool's lines: the one
//! read-back that `check` (drift), the config step (what to keep), the current assignment
//! (`sync`) and the strategy a request leaves open all use.
//!
//! The tool's lines are the ones [`Evidence`] proves to be NVIDIA passthrough; each is read
//! as what it passes. Proxmox applies the `[pve:pending]` section at the next start, so the
//! read-back covers it too: a pending `devN` or raw line counts, and a main line that pending
//! replaces or deletes (`delete: dev0`) is superseded, passing nothing after that start.

use std::collections::BTreeSet;

use lxc_conf::{Dialect, Document, EntryId, EntryKind};

use crate::ctconfig::{evidence, load, Loaded};
use crate::error::Result;
use crate::inventory::{Inventory, NVIDIA_MAJOR};
use crate::passthrough::{Class, Evidence, MajorState, MountEntry, Passes};
use crate::request::Strategy;
use crate::step::Ctx;

/// One of the tool's lines, in the main or the pending section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnedLine {
    /// The line's id in the document.
    pub id: EntryId,
    /// Its line number in the file.
    pub line: usize,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What it passes.
    pub passes: Passes,
    /// Whether it is in the `[pve:pending]` section.
    pub pending: bool,
    /// Whether Proxmox drops it when it applies the pending section at the next start (a later
    /// line of the same key, a pending value or `delete:` for its key, pending `lxc.*` lines
    /// for a raw line).
    pub superseded: bool,
    /// `key: value` (`key = value` in the LXC dialect), for findings.
    pub text: String,
}

impl OwnedLine {
    /// `line N: value` (`line N ([pve:pending]): ...` for a pending line), for findings.
    pub fn at(&self) -> String {
        let section = if self.pending { " ([pve:pending])" } else { "" };
        format!("line {}{section}: {}", self.line, self.text)
    }
}

/// An allow rule of doubtful origin (see [`Class::Doubtful`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DoubtfulLine {
    /// The line's id in the document.
    pub id: EntryId,
    /// Its line number.
    pub line: usize,
    /// `key: value` (`key = value` in the LXC dialect).
    pub text: String,
    /// The major it allows.
    pub major: u32,
    /// Whether it is in the `[pve:pending]` section.
    pub pending: bool,
}

/// What the `[pve:pending]` section changes at the next start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The keys its `delete:` names.
    pub delete: BTreeSet<String>,
    /// The plain keys it sets.
    pub keys: BTreeSet<String>,
    /// Whether it holds `lxc.*` lines: Proxmox puts them in place of the main section's.
    pub lxc: bool,
}

impl Pending {
    /// Whether a `devN` (or any plain key) of this name is touched by pending: set or deleted.
    pub fn touches(&self, key: &str) -> bool {
        self.delete.contains(key) || self.keys.contains(key)
    }

    /// Whether the main section's raw lines are replaced or deleted at the next start.
    pub fn replaces_raw(&self) -> bool {
        self.lxc || self.delete.contains("lxc")
    }
}

/// The tool's lines of a document, by one evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The tool's lines, main section first, each in file order.
    pub lines: Vec<OwnedLine>,
    /// Allow rules of doubtful origin.
    pub doubtful: Vec<DoubtfulLine>,
    /// The pending section's changes.
    pub pending: Pending,
}

impl Scan {
    /// Classifies the main and pending lines of `doc`.
    pub fn of(doc: &Document, ev: &Evidence) -> Scan {
        let pve = doc.dialect() == Dialect::Pve;
        let mut scan = Scan::default();
        let pending = if pve { doc.pending() } else { None };
        let pending_entries = pending.as_ref().map(|p| p.entries()).unwrap_or_default();
        for e in &pending_entries {
            match (e.key, e.kind) {
                ("delete", _) => {
                    scan.pending.delete =
                        lxc_conf::pending_delete_keys(e.value).into_iter().collect();
                }
                (_, EntryKind::Lxc) => scan.pending.lxc = true,
                (k, EntryKind::Plain) => {
                    scan.pending.keys.insert(k.to_owned());
                }
            }
        }
        let main = doc.main().entries();
        for (section, entries) in [(false, &main), (true, &pending_entries)] {
            for (i, e) in entries.iter().enumerate() {
                if section && e.key == "delete" {
                    continue;
                }
                let text = if pve {
                    format!("{}: {}", e.key, e.value)
                } else {
                    format!("{} = {}", e.key, e.value)
                };
                let later_same_key = e.kind == EntryKind::Plain
                    && entries[i + 1..]
                        .iter()
                        .any(|l| l.kind == EntryKind::Plain && l.key == e.key);
                match ev.classify(e.key, e.value, pve) {
                    Class::Ours(passes) => {
                        let replaced = !section
                            && match e.kind {
                                EntryKind::Lxc => scan.pending.replaces_raw(),
                                EntryKind::Plain => scan.pending.touches(e.key),
                            };
                        scan.lines.push(OwnedLine {
                            id: e.id,
                            line: e.line,
                            key: e.key.to_owned(),
                            value: e.value.to_owned(),
                            passes,
                            pending: section,
                            superseded: later_same_key || replaced,
                            text,
                        });
                    }
                    Class::Doubtful { major } => scan.doubtful.push(DoubtfulLine {
                        id: e.id,
                        line: e.line,
                        text,
                        major,
                        pending: section,
                    }),
                    Class::Theirs => {}
                }
            }
        }
        scan
    }

    /// The lines that pass something after the next start.
    pub fn effective(&self) -> impl Iterator<Item = &OwnedLine> {
        self.lines.iter().filter(|l| !l.superseded)
    }
}

/// A container's config with its current passthrough.
pub(crate) struct Current {
    /// The config as read.
    pub loaded: Loaded,
    /// The evidence its lines were classified by.
    pub evidence: Evidence,
    /// Its lines, classified.
    pub scan: Scan,
}

/// Reads the container's config and its passthrough. `inv`: the host's inventory (`None`
/// when no driver is loaded); `host_files`: the files `host-libs` binds, when the caller has
/// them already.
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    inv: Option<&Inventory>,
    host_files: Option<Vec<MountEntry>>,
) -> Result<Current> {
    let loaded = load(ctx).await?;
    let evidence = evidence(ctx, &loaded.doc, inv, host_files).await?;
    let scan = Scan::of(&loaded.doc, &evidence);
    Ok(Current {
        loaded,
        evidence,
        scan,
    })
}

/// The GPU minor of `/dev/nvidia<N>`.
pub(crate) fn gpu_minor(path: &str) -> Option<u32> {
    path.strip_prefix("/dev/nvidia")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u32>().ok())
}

impl Current {
    /// Whether the config has any of the tool's lines (superseded ones included).
    pub fn any(&self) -> bool {
        !self.scan.lines.is_empty()
    }

    fn effective(&self) -> impl Iterator<Item = &OwnedLine> {
        self.scan.effective()
    }

    /// The GPU minors passed as device nodes (`/dev/nvidia<N>`) after the next start, sorted,
    /// without repeats.
    pub fn node_minors(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .effective()
            .filter_map(|l| match &l.passes {
                Passes::Node { path, .. } => gpu_minor(path),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The GPU minors the `c 195:N` rules allow (not the control minors 254 and 255), sorted,
    /// without repeats.
    pub fn rule_minors(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .effective()
            .filter_map(|l| match l.passes {
                Passes::Rule {
                    major: NVIDIA_MAJOR,
                    minor: Some(m),
                    state: MajorState::Nvidia,
                } if m < 254 => Some(m),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether a `c 195:*` rule allows every GPU.
    pub fn allows_every_gpu(&self) -> bool {
        self.effective().any(|l| {
            matches!(
                l.passes,
                Passes::Rule {
                    major: NVIDIA_MAJOR,
                    minor: None,
                    state: MajorState::Nvidia,
                }
            )
        })
    }

    /// Whether the passthrough is written as Proxmox `devN` entries.
    pub fn dev_entries(&self) -> bool {
        self.effective().any(|l| {
            matches!(
                l.passes,
                Passes::Node {
                    dev_entry: true,
                    ..
                }
            )
        })
    }

    /// Whether the host's userspace is bind-mounted (`host-libs`).
    pub fn host_userspace(&self) -> bool {
        self.effective().any(|l| l.passes == Passes::Userspace)
    }

    /// The strategy the config shows: `host-libs` when it binds the host's userspace, else
    /// the default, `runfile` (a runfile install and devices only look the same from here).
    pub fn strategy(&self) -> Strategy {
        if self.host_userspace() {
            Strategy::HostLibs
        } else {
            Strategy::Runfile
        }
    }

    /// Whether the MIG capability nodes are passed.
    pub fn mig(&self) -> bool {
        self.effective().any(
            |l| matches!(&l.passes, Passes::Node { path, .. } if path.starts_with("/dev/nvidia-caps/") || path == "/dev/nvidia-caps"),
        )
    }
}
