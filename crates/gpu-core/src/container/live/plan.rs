//! What a live change does, computed without I/O: the devices the tool's lines give a
//! container, what the container has and holds now (the look script's answer), and from both
//! the nodes to make and take away and the cgroup rules to allow and deny.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use crate::config_step::{LineChange, ToolLine};
use crate::error::Holder;
use crate::idmap::{Id, IdMap};
use crate::inventory::Inventory;
use crate::passthrough::{is_nvidia_node_path, mount_fields, Passes};
use crate::report::RestartReason;

/// A device cgroup rule of the tool: `c MAJOR:MINOR rwm`, `minor` `None` for `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Rule {
    pub major: u32,
    pub minor: Option<u32>,
}

impl Rule {
    /// The rule for exactly one device.
    pub fn exact((major, minor): (u32, u32)) -> Rule {
        Rule {
            major,
            minor: Some(minor),
        }
    }

    /// Whether it lets the device `(major, minor)` through.
    pub fn covers(&self, (major, minor): (u32, u32)) -> bool {
        self.major == major && self.minor.map_or(true, |m| m == minor)
    }

    /// Whether everything `other` lets through, this rule does too.
    fn covers_rule(&self, other: &Rule) -> bool {
        self.major == other.major && (self.minor.is_none() || self.minor == other.minor)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minor {
            Some(m) => write!(f, "c {}:{m} rwm", self.major),
            None => write!(f, "c {}:* rwm", self.major),
        }
    }
}

/// A device node as the container should have it: where, which device, and its mode and
/// owner as host ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeSpec {
    /// The path inside (`/dev/nvidia1`).
    pub path: String,
    /// `(major, minor)`.
    pub rdev: (u32, u32),
    /// Permission bits.
    pub mode: u32,
    /// Owner, a host uid.
    pub uid: u32,
    /// Group, a host gid.
    pub gid: u32,
}

/// The devices a config's tool lines give a running container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Devices {
    /// The cgroup rules.
    pub rules: BTreeSet<Rule>,
    /// The nodes by path inside (MIG capability nodes are not among them: a change of those
    /// is a restart).
    pub nodes: BTreeMap<String, NodeSpec>,
}

/// The devices before and after a change that a running container can take live, or why it
/// cannot.
pub(crate) type Shape = std::result::Result<(Devices, Devices), (RestartReason, String)>;

/// Whether a node path is a MIG capability node or their directory.
fn is_mig_path(path: &str) -> bool {
    path == "/dev/nvidia-caps" || path.starts_with("/dev/nvidia-caps/")
}

/// Classifies the tool's lines before and after: the devices each gives, or the reason the
/// change needs a restart (bind mounts of the host's userspace or MIG capability nodes come
/// or go).
pub(crate) fn shape(lines: &LineChange, inv: &Inventory) -> Shape {
    let side = |l: &[ToolLine]| -> (BTreeSet<String>, BTreeSet<String>) {
        let mut userspace = BTreeSet::new();
        let mut mig = BTreeSet::new();
        for line in l {
            match &line.passes {
                Passes::Userspace => {
                    userspace.insert(line.value.clone());
                }
                Passes::Node { path, dev_entry } if is_mig_path(path) => {
                    mig.insert(format!("{dev_entry} {path}"));
                }
                _ => {}
            }
        }
        (userspace, mig)
    };
    let (us_before, mig_before) = side(&lines.before);
    let (us_after, mig_after) = side(&lines.after);
    if us_before != us_after {
        return Err((
            RestartReason::HostLibs,
            "bind mounts of the host's driver userspace come or go, and a running container cannot gain or lose a mount of its config".into(),
        ));
    }
    if mig_before != mig_after {
        return Err((
            RestartReason::Mig,
            "the MIG capability nodes change (a bind mount of /dev/nvidia-caps)".into(),
        ));
    }
    let before = devices(&lines.before, inv, &lines.idmap)?;
    let after = devices(&lines.after, inv, &lines.idmap)?;
    Ok((before, after))
}

/// The devices of one side's lines.
fn devices(
    lines: &[ToolLine],
    inv: &Inventory,
    idmap: &IdMap,
) -> std::result::Result<Devices, (RestartReason, String)> {
    let mut d = Devices::default();
    for line in lines {
        match &line.passes {
            Passes::Rule { major, minor, .. } => {
                d.rules.insert(Rule {
                    major: *major,
                    minor: *minor,
                });
            }
            Passes::Node { path, dev_entry } if !is_mig_path(path) => {
                // The host's node: its numbers, and (a bind mount shows it as it is) its mode
                // and owner. An optional mount of a node the host lacks gives nothing.
                let Some(host) = inv.node(path) else {
                    continue;
                };
                let Some(rdev) = host.rdev else {
                    continue;
                };
                let spec = if *dev_entry {
                    // Proxmox makes a devN node itself: `mode=` (default 0660), `uid=` and
                    // `gid=` (default 0) as ids inside, mapped to the host's. The line is the
                    // tool's, so Proxmox reads it (`parse_dev` succeeds).
                    let Ok(dev) = lxc_conf::parse_dev(&line.value) else {
                        continue;
                    };
                    let id = |name: &str, value: Option<&str>, kind: Id| {
                        let inside: u32 = value.and_then(|v| v.parse().ok()).unwrap_or(0);
                        idmap.to_host(kind, inside).ok_or_else(|| {
                            (
                                RestartReason::LiveFailed,
                                format!(
                                    "{path}: {name} {inside} is outside the container's id map"
                                ),
                            )
                        })
                    };
                    NodeSpec {
                        path: path.clone(),
                        rdev,
                        mode: dev.mode_bits(),
                        uid: id("uid", dev.uid.as_deref(), Id::User)?,
                        gid: id("gid", dev.gid.as_deref(), Id::Group)?,
                    }
                } else {
                    // The mount's target is where it shows inside (`dev/nvidia1`).
                    let (_, target) = mount_fields(&line.value);
                    NodeSpec {
                        path: format!("/{}", target.trim_start_matches('/')),
                        rdev,
                        mode: host.mode,
                        uid: host.uid,
                        gid: host.gid,
                    }
                };
                if *dev_entry {
                    d.rules.insert(Rule::exact(rdev));
                }
                d.nodes.insert(spec.path.clone(), spec);
            }
            _ => {}
        }
    }
    Ok(d)
}

/// A node inside the container as `stat` saw it (ids as the container sees them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeenNode {
    /// A character device (else something else stands at the path).
    pub char_device: bool,
    pub rdev: (u32, u32),
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What the look script saw in the container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Inside {
    /// `/dev/nvidia*` by path.
    pub nodes: BTreeMap<String, SeenNode>,
    /// Open character devices: `(pid, (major, minor))`.
    pub open: Vec<(u32, (u32, u32))>,
    /// Command names by pid.
    pub comm: BTreeMap<u32, String>,
    /// The device cgroup (a path in the container's cgroup namespace) of each process, on a
    /// cgroup v1 host.
    pub device_cgroups: BTreeSet<String>,
    /// Programs the change needs that the container lacks.
    pub missing: Vec<String>,
}

/// `st_mode` bits of a character device.
const S_IFCHR: u32 = 0o020000;
const S_IFMT: u32 = 0o170000;

impl Inside {
    /// Parses the look script's lines:
    /// `node RAWMODE MAJOR MINOR UID GID PATH` (hex mode and numbers, as `stat %f %t %T`),
    /// `fd RAWMODE MAJOR MINOR /proc/PID/fd/N`, `comm PID NAME`, `cg PID PATH`, `missing PROG`.
    pub fn parse(text: &str) -> Inside {
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let mut inside = Inside::default();
        for line in text.lines() {
            let Some((tag, rest)) = line.split_once(' ') else {
                continue;
            };
            match tag {
                "node" => {
                    let f: Vec<&str> = rest.splitn(6, ' ').collect();
                    let [raw, maj, min, uid, gid, path] = f[..] else {
                        continue;
                    };
                    let (Some(raw), Some(maj), Some(min), Ok(uid), Ok(gid)) =
                        (hex(raw), hex(maj), hex(min), uid.parse(), gid.parse())
                    else {
                        continue;
                    };
                    inside.nodes.insert(
                        path.to_owned(),
                        SeenNode {
                            char_device: raw & S_IFMT == S_IFCHR,
                            rdev: (maj, min),
                            mode: raw & 0o7777,
                            uid,
                            gid,
                        },
                    );
                }
                "fd" => {
                    let f: Vec<&str> = rest.splitn(4, ' ').collect();
                    let [raw, maj, min, path] = f[..] else {
                        continue;
                    };
                    let pid = path
                        .strip_prefix("/proc/")
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok());
                    if let (Some(raw), Some(maj), Some(min), Some(pid)) =
                        (hex(raw), hex(maj), hex(min), pid)
                    {
                        if raw & S_IFMT == S_IFCHR {
                            inside.open.push((pid, (maj, min)));
                        }
                    }
                }
                "comm" => {
                    if let Some((pid, name)) = rest.split_once(' ') {
                        if let Ok(pid) = pid.parse() {
                            inside.comm.insert(pid, name.to_owned());
                        }
                    }
                }
                "cg" => {
                    if let Some((_, path)) = rest.split_once(' ') {
                        inside.device_cgroups.insert(path.to_owned());
                    }
                }
                "missing" => inside.missing.push(rest.trim().to_owned()),
                _ => {}
            }
        }
        inside
    }
}

/// A live change: what to do in the running container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LivePlan {
    /// Nodes to make (or remake), as the host must make them.
    pub add: Vec<NodeSpec>,
    /// Node paths to take away.
    pub remove: Vec<String>,
    /// Rules to deny (before the nodes change).
    pub deny: Vec<Rule>,
    /// Rules to allow (after).
    pub allow: Vec<Rule>,
    /// Processes holding a device the change takes away.
    pub holders: Vec<Holder>,
}

impl LivePlan {
    /// The change that brings a container that has `inside` from `before` to `after`.
    pub fn compute(before: &Devices, after: &Devices, inside: &Inside, idmap: &IdMap) -> LivePlan {
        let mut plan = LivePlan::default();
        let allowed_after = |rdev: (u32, u32)| after.rules.iter().any(|r| r.covers(rdev));
        let mut deny: BTreeSet<Rule> = before.rules.clone();
        for (path, want) in &after.nodes {
            let looks_right = inside.nodes.get(path).is_some_and(|seen| {
                seen.char_device
                    && seen.rdev == want.rdev
                    && seen.mode == want.mode
                    && seen.uid == idmap.seen_inside(Id::User, want.uid)
                    && seen.gid == idmap.seen_inside(Id::Group, want.gid)
            });
            if !looks_right {
                plan.add.push(want.clone());
            }
            if let Some(seen) = inside.nodes.get(path) {
                if seen.char_device && seen.rdev != want.rdev {
                    deny.insert(Rule::exact(seen.rdev));
                }
            }
        }
        for (path, seen) in &inside.nodes {
            if is_nvidia_node_path(path) && !is_mig_path(path) && !after.nodes.contains_key(path) {
                plan.remove.push(path.clone());
                if seen.char_device {
                    deny.insert(Rule::exact(seen.rdev));
                }
            }
        }
        // What stays allowed is not denied, nor what another denied rule already covers.
        plan.deny = deny
            .iter()
            .filter(|d| !after.rules.iter().any(|a| a.covers_rule(d)))
            .filter(|d| !deny.iter().any(|o| o != *d && o.covers_rule(d)))
            .copied()
            .collect();
        plan.allow = after.rules.iter().copied().collect();
        let name = |rdev: (u32, u32)| {
            inside
                .nodes
                .iter()
                .find(|(_, n)| n.char_device && n.rdev == rdev)
                .map(|(p, _)| p.clone())
                .unwrap_or_else(|| format!("c {}:{}", rdev.0, rdev.1))
        };
        let mut seen = BTreeSet::new();
        for &(pid, rdev) in &inside.open {
            let taken = plan.deny.iter().any(|d| d.covers(rdev)) && !allowed_after(rdev);
            if taken && seen.insert((pid, rdev)) {
                plan.holders.push(Holder {
                    pid,
                    comm: inside.comm.get(&pid).cloned().unwrap_or_default(),
                    device: name(rdev),
                });
            }
        }
        plan
    }

    /// Whether the container's nodes change (an exec inside is needed).
    pub fn nodes_change(&self) -> bool {
        !self.add.is_empty() || !self.remove.is_empty()
    }
}

/// The file name a node is staged under: `/.phoenix-gpu-TOKEN-nvidia1` at the root of the
/// container's root filesystem.
pub(crate) fn staged_name(token: &str, node: &NodeSpec) -> String {
    let base = Path::new(&node.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".phoenix-gpu-{token}-{base}")
}

#[cfg(test)]
mod tests;
