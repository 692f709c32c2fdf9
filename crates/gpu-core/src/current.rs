//! The passthrough a container's config gives it now, read back from the tool's lines: the
//! one read-back that `check` (drift) and the current assignment (`sync`) both use.
//!
//! The tool's lines are the ones [`Ownership`](crate::passthrough::Ownership) describes; each
//! is read as what it passes: an allow rule, a device node, or a file of the host's userspace.

use std::path::PathBuf;

use crate::ctconfig::{host_root, load, owned_flags, Loaded};
use crate::error::Result;
use crate::inventory::{Majors, ProcDevices, NVIDIA_MAJOR};
use crate::passthrough::{
    dev_value_path, host_source, is_dev_key, is_nvidia_node_path, parse_char_rule, ALLOW_KEYS,
};
use crate::step::Ctx;

/// What one of the tool's lines passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Passes {
    /// A cgroup allow rule `c major:minor` (`minor` is `None` for `*`).
    Rule {
        /// The device major.
        major: u32,
        /// The minor, `None` for every minor.
        minor: Option<u32>,
    },
    /// An NVIDIA device node (a mount entry or a `devN` entry), by host path.
    Node {
        /// The host path (`/dev/nvidia1`), a mount source under a root mapped back.
        path: String,
        /// Whether it is a Proxmox `devN` entry.
        dev_entry: bool,
    },
    /// A file of the host's NVIDIA userspace (a `host-libs` bind mount).
    Userspace,
}

/// One of the tool's lines of the main section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnedLine {
    /// Its line number in the file.
    pub line: usize,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What it passes.
    pub passes: Passes,
}

impl OwnedLine {
    /// `line N: value`, for findings.
    pub fn at(&self) -> String {
        format!("line {}: {}", self.line, self.value)
    }
}

/// A container's config with its current passthrough.
pub(crate) struct Current {
    /// The config as read.
    pub loaded: Loaded,
    /// The host's device table the lines were classified with.
    pub devices: ProcDevices,
    /// The tool's lines, in file order.
    pub lines: Vec<OwnedLine>,
}

/// Reads the container's config and its passthrough. `majors` are the host's NVIDIA majors
/// (from the inventory).
pub(crate) async fn read(ctx: &Ctx<'_>, majors: &Majors) -> Result<Current> {
    let loaded = load(ctx).await?;
    let devices = ctx.proc_devices().await?;
    let root = host_root(ctx.host);
    let owned = owned_flags(&loaded.doc, &devices, majors, root.as_deref());
    let lines = loaded
        .doc
        .main()
        .entries()
        .iter()
        .zip(&owned)
        .filter(|(_, o)| **o)
        .filter_map(|(e, _)| {
            let passes = passes(e.key, e.value, root.as_ref())?;
            Some(OwnedLine {
                line: e.line,
                key: e.key.to_owned(),
                value: e.value.to_owned(),
                passes,
            })
        })
        .collect();
    Ok(Current {
        loaded,
        devices,
        lines,
    })
}

/// What an owned line passes (`None` only for a line the ownership rule would not own).
fn passes(key: &str, value: &str, root: Option<&PathBuf>) -> Option<Passes> {
    if ALLOW_KEYS.contains(&key) {
        let (major, minor) = parse_char_rule(value)?;
        return Some(Passes::Rule { major, minor });
    }
    let dev_entry = is_dev_key(key);
    let path = if dev_entry {
        dev_value_path(value).to_owned()
    } else {
        host_source(
            root.map(PathBuf::as_path),
            value.split_whitespace().next().unwrap_or(""),
        )
        .into_owned()
    };
    Some(if is_nvidia_node_path(&path) {
        Passes::Node { path, dev_entry }
    } else {
        Passes::Userspace
    })
}

/// The GPU minor of `/dev/nvidia<N>`.
pub(crate) fn gpu_minor(path: &str) -> Option<u32> {
    path.strip_prefix("/dev/nvidia")
        .and_then(|n| n.parse::<u32>().ok())
}

impl Current {
    /// Whether the config has any of the tool's lines.
    pub fn any(&self) -> bool {
        !self.lines.is_empty()
    }

    /// The GPU minors passed as device nodes (`/dev/nvidia<N>`), sorted, without repeats.
    pub fn node_minors(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .lines
            .iter()
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
            .lines
            .iter()
            .filter_map(|l| match l.passes {
                Passes::Rule {
                    major: NVIDIA_MAJOR,
                    minor: Some(m),
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
        self.lines.iter().any(|l| {
            l.passes
                == Passes::Rule {
                    major: NVIDIA_MAJOR,
                    minor: None,
                }
        })
    }

    /// Whether the passthrough is written as Proxmox `devN` entries.
    pub fn dev_entries(&self) -> bool {
        self.lines.iter().any(|l| {
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
        self.lines.iter().any(|l| l.passes == Passes::Userspace)
    }

    /// Whether the MIG capability nodes are passed.
    pub fn mig(&self) -> bool {
        self.lines.iter().any(
            |l| matches!(&l.passes, Passes::Node { path, .. } if path.starts_with("/dev/nvidia-caps")),
        )
    }
}
