//! The config lines that hand NVIDIA devices (and, for `host-libs`, the host's userspace) to a
//! container, and the rule that says which existing lines belong to the tool.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Input, Result};
use crate::inventory::{
    CgroupLayout, DeviceNode, Gpu, Inventory, MigMinors, ProcDevices, MODESET_MINOR,
    NVIDIACTL_MINOR,
};
use crate::record::{is_nvidia_driver_name, NodeRecord};
use crate::request::Mode;
use crate::target::Target;

/// One `lxc.mount.entry` bind mount: `source target none options`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// Host path (`/dev/nvidia0`).
    pub source: PathBuf,
    /// Target relative to the container's root, never absolute (`dev/nvidia0`).
    pub target: String,
    /// Mount options (`bind,optional,create=file`).
    pub options: String,
}

impl MountEntry {
    /// The entry's value as written in the config.
    pub fn render(&self) -> String {
        format!(
            "{} {} none {}",
            self.source.display(),
            self.target,
            self.options
        )
    }
}

/// How the entries are written once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Allow rules under this key plus mount entries.
    Raw(CgroupLayout),
    /// Proxmox `devN` entries.
    Dev,
}

/// One wanted config line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WantedLine {
    /// An `lxc.*` line (allow rule or mount entry).
    Lxc {
        /// `lxc.cgroup2.devices.allow`, `lxc.mount.entry`.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// A `devN:` entry (index chosen when written).
    Dev {
        /// Its value: `/dev/nvidia1[,gid=..,mode=0666]`.
        value: String,
    },
}

/// Resolves `--mode` for this host and target.
pub(crate) fn resolve_mode(mode: Mode, target: &Target, inv: &Inventory) -> Result<Written> {
    let raw = Written::Raw(inv.cgroup);
    let dev_ok = matches!(target, Target::Pve) && inv.pve_at_least(8, 1);
    match mode {
        Mode::Raw => Ok(raw),
        Mode::Auto => Ok(if dev_ok { Written::Dev } else { raw }),
        Mode::Dev if dev_ok => Ok(Written::Dev),
        Mode::Dev => Err(Error::BadInput {
            what: Input::Mode,
            value: "dev".into(),
            hint: match (target, &inv.pve_version) {
                (Target::Lxc { .. }, _) => {
                    "devN entries exist only on Proxmox VE; plain LXC needs raw mode".into()
                }
                (Target::Pve, None) => {
                    "devN entries need Proxmox VE 8.1 or newer and this host is not a Proxmox VE node (no pve-manager package); use raw mode".into()
                }
                (Target::Pve, Some(v)) => format!(
                    "devN entries need Proxmox VE 8.1 or newer and this host runs {v}; use raw mode"
                ),
            },
        }),
    }
}

/// Everything the wanted entries depend on besides the inventory.
pub(crate) struct Wants<'a> {
    pub written: Written,
    pub gpus: &'a [Gpu],
    /// The MIG capability minors to pass, `None` without `--mig`.
    pub mig: Option<&'a MigMinors>,
    /// Extra mounts (the host's userspace for `--strategy host-libs`), sources as host paths.
    pub extra_mounts: &'a [MountEntry],
    /// How mount sources are written when they are resolved
    /// ([`Settings::resolve_mount_sources`](crate::Settings::resolve_mount_sources)):
    /// [`exec_backend::Host::resolve`]. `None`: as host paths.
    pub resolve: Option<&'a (dyn Fn(&Path) -> PathBuf + Sync)>,
}

impl Wants<'_> {
    fn mount_line(&self, m: &MountEntry) -> WantedLine {
        let source = match self.resolve {
            Some(resolve) => resolve(&m.source),
            None => m.source.clone(),
        };
        WantedLine::Lxc {
            key: "lxc.mount.entry",
            value: MountEntry {
                source,
                target: m.target.clone(),
                options: m.options.clone(),
            }
            .render(),
        }
    }

    fn dev_mount(&self, path: &str, create: &str) -> WantedLine {
        self.mount_line(&MountEntry {
            source: PathBuf::from(path),
            target: path.trim_start_matches('/').to_owned(),
            options: format!("bind,optional,create={create}"),
        })
    }
}

/// The host path of a mount source: with `root`, a source under it is mapped back
/// (`/tmp/h/dev/nvidia1` → `/dev/nvidia1`); anything else is returned as it is.
pub(crate) fn host_source<'s>(root: Option<&Path>, source: &'s str) -> Cow<'s, str> {
    let Some(root) = root else {
        return Cow::Borrowed(source);
    };
    match Path::new(source).strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => Cow::Owned(format!("/{}", rel.display())),
        _ => Cow::Borrowed(source),
    }
}

/// The lines a container with `w` should have, in the order they are added.
pub(crate) fn wanted(inv: &Inventory, w: &Wants<'_>) -> Result<Vec<WantedLine>> {
    let uvm = inv.majors.nvidia_uvm.ok_or_else(|| Error::NodeMissing {
        path: PathBuf::from("/dev/nvidia-uvm"),
        hint: "the nvidia-uvm module is not loaded (no nvidia-uvm in /proc/devices); load it with `nvidia-modprobe -u -c0` or `modprobe nvidia-uvm`".into(),
    })?;
    let mut paths: Vec<String> = w
        .gpus
        .iter()
        .map(|g| format!("/dev/nvidia{}", g.minor))
        .collect();
    let mut rules: Vec<String> = w
        .gpus
        .iter()
        .map(|g| format!("c {}:{} rwm", inv.majors.nvidia, g.minor))
        .collect();
    paths.push("/dev/nvidiactl".into());
    rules.push(format!("c {}:{NVIDIACTL_MINOR} rwm", inv.majors.nvidia));
    let modeset = inv.node("/dev/nvidia-modeset").is_some();
    if modeset {
        paths.push("/dev/nvidia-modeset".into());
        rules.push(format!("c {}:{MODESET_MINOR} rwm", inv.majors.nvidia));
    }
    paths.push("/dev/nvidia-uvm".into());
    paths.push("/dev/nvidia-uvm-tools".into());
    rules.push(format!("c {uvm}:* rwm"));
    let mut cap_minors = Vec::new();
    if let Some(mig) = w.mig {
        let caps = inv.majors.nvidia_caps.ok_or_else(|| Error::NodeMissing {
            path: PathBuf::from("/dev/nvidia-caps"),
            hint:
                "no nvidia-caps major in /proc/devices; MIG needs a driver with MIG support loaded"
                    .into(),
        })?;
        let minors: Vec<u32> = w.gpus.iter().map(|g| g.minor).collect();
        cap_minors = mig.for_gpus(&minors);
        rules.extend(cap_minors.iter().map(|m| format!("c {caps}:{m} rwm")));
    }
    let mut out = Vec::new();
    match w.written {
        Written::Raw(layout) => {
            let key = layout.allow_key();
            out.extend(
                rules
                    .into_iter()
                    .map(|value| WantedLine::Lxc { key, value }),
            );
            out.extend(paths.iter().map(|p| w.dev_mount(p, "file")));
            if w.mig.is_some() {
                out.push(w.dev_mount("/dev/nvidia-caps", "dir"));
            }
        }
        Written::Dev => {
            // Proxmox stats every devN node at start and refuses to start when one is missing.
            let cap_paths = cap_minors
                .iter()
                .map(|m| format!("/dev/nvidia-caps/nvidia-cap{m}"))
                .filter(|p| inv.node(p).is_some());
            for p in paths.into_iter().chain(cap_paths) {
                let node = inv.node(&p).ok_or_else(|| Error::NodeMissing {
                    path: PathBuf::from(&p),
                    hint: "Proxmox refuses to start a container whose devN node is missing; create the nodes at boot (nvidia-modprobe -u -c0 -m) or use raw mode".into(),
                })?;
                out.push(WantedLine::Dev {
                    value: dev_value(&p, node),
                });
            }
        }
    }
    out.extend(w.extra_mounts.iter().map(|m| w.mount_line(m)));
    Ok(out)
}

/// The `devN` value that gives the container `path` as the host has it: Proxmox creates the
/// node `0660 root:root` unless told otherwise, so the host node's mode is always written
/// (NVIDIA's nodes are `0666`: any user may open them), and its group when it is not root's
/// (a host that limits the nodes to a group, such as `video`, gives the container's group of
/// that id the same access). Privileged and unprivileged containers alike; Proxmox maps the
/// ids through the container's id map. A stand-in node (a plain file under a root) gives
/// the file's mode.
pub(crate) fn dev_value(path: &str, node: &DeviceNode) -> String {
    let mode = node.mode & 0o777;
    if node.gid != 0 {
        format!("{path},gid={},mode={mode:04o}", node.gid)
    } else {
        format!("{path},mode={mode:04o}")
    }
}

/// The allow-rule keys of both cgroup versions.
pub(crate) const ALLOW_KEYS: [&str; 2] = ["lxc.cgroup2.devices.allow", "lxc.cgroup.devices.allow"];

/// A `c M:N` / `c M:*` rule: `(major, minor)`, minor `None` for `*`.
pub(crate) fn parse_char_rule(value: &str) -> Option<(u32, Option<u32>)> {
    let mut it = value.split_whitespace();
    if it.next()? != "c" {
        return None;
    }
    let (maj, min) = it.next()?.split_once(':')?;
    let major = maj.parse().ok()?;
    let minor = if min == "*" {
        None
    } else {
        Some(min.parse().ok()?)
    };
    Some((major, minor))
}

/// `<prefix><digits>`.
fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a host path is an NVIDIA device node (exact names, never a prefix: a user's
/// `/dev/nvidia-stuff` or `/opt/nvidia-container` is not one): `/dev/nvidia<N>`,
/// `/dev/nvidiactl`, `/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`, `/dev/nvidia-modeset`,
/// `/dev/nvidia-caps` and its `nvidia-cap<N>`, `/dev/nvidia-caps-imex-channels` and its
/// `channel<N>`, `/dev/nvidia-nvswitchctl`, `/dev/nvidia-nvswitch<N>`, `/dev/nvidia-nvlink`.
pub(crate) fn is_nvidia_node_path(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/dev/") else {
        return false;
    };
    matches!(
        name,
        "nvidiactl"
            | "nvidia-modeset"
            | "nvidia-uvm"
            | "nvidia-uvm-tools"
            | "nvidia-caps"
            | "nvidia-caps-imex-channels"
            | "nvidia-nvswitchctl"
            | "nvidia-nvlink"
    ) || numbered(name, "nvidia")
        || numbered(name, "nvidia-nvswitch")
        || name
            .strip_prefix("nvidia-caps/")
            .is_some_and(|c| numbered(c, "nvidia-cap"))
        || name
            .strip_prefix("nvidia-caps-imex-channels/")
            .is_some_and(|c| numbered(c, "channel"))
}

/// A path with repeated and trailing slashes taken out (`/dev//nvidia0/` is `/dev/nvidia0`,
/// as the kernel resolves it). A `.` or `..` component is left as it is (and then matches
/// no NVIDIA node).
pub(crate) fn tidy_path(path: &str) -> Cow<'_, str> {
    if !path.contains("//") && (path.len() <= 1 || !path.ends_with('/')) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(part);
    }
    if !path.starts_with('/') {
        out.remove(0);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// The source and target of an `lxc.mount.entry` value (fstab form: source, target, type,
/// options).
pub(crate) fn mount_fields(value: &str) -> (&str, &str) {
    let mut it = value.split_whitespace();
    (it.next().unwrap_or(""), it.next().unwrap_or(""))
}

/// Where an allow rule's major stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MajorState {
    /// An NVIDIA driver holds it now.
    Nvidia,
    /// No driver holds it now; the node record says NVIDIA's `was` held it.
    Stale {
        /// The NVIDIA driver that held it (`nvidia-uvm`).
        was: String,
    },
    /// Another driver holds it now; the node record says NVIDIA's `was` held it before.
    Reassigned {
        /// The NVIDIA driver that held it.
        was: String,
        /// The driver that holds it now (`hidraw`).
        now: String,
    },
}

/// What one of the tool's lines passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Passes {
    /// A cgroup allow rule `c major:minor` (`minor` is `None` for `*`).
    Rule {
        /// The device major.
        major: u32,
        /// The minor, `None` for every minor.
        minor: Option<u32>,
        /// Whose the major is now.
        state: MajorState,
    },
    /// An NVIDIA device node (a mount entry or a `devN` entry), by host path.
    Node {
        /// The host path (`/dev/nvidia1`), a mount source under a root mapped back.
        path: String,
        /// Whether it is a Proxmox `devN` entry.
        dev_entry: bool,
    },
    /// A file of the host's NVIDIA userspace that the `host-libs` strategy binds.
    Userspace,
}

/// What the ownership rule makes of one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// The tool's line: it provably passes an NVIDIA device or driver file.
    Ours(Passes),
    /// An allow rule for a character major that no driver holds now and that the node record
    /// never saw NVIDIA hold: it may be an NVIDIA major of an earlier boot, or anything else.
    /// Kept unless removing such lines is asked for.
    Doubtful {
        /// The major.
        major: u32,
    },
    /// Not the tool's line.
    Theirs,
}

/// The evidence the ownership rule decides by, for one node.
///
/// A line is the tool's only when it provably passes an NVIDIA device or driver file:
/// - an allow rule (`lxc.cgroup2.devices.allow`, `lxc.cgroup.devices.allow`) `c M:N` or
///   `c M:*` where M is held now by an NVIDIA driver ([`is_nvidia_driver_name`] in
///   `/proc/devices`), or where the node record says an NVIDIA driver held M (a major of an
///   earlier boot: stale when nobody holds it now, reassigned when another driver does);
/// - an `lxc.mount.entry` whose source is an NVIDIA device node ([`is_nvidia_node_path`]);
/// - a `devN` entry whose path, read as Proxmox reads it ([`lxc_conf::parse_dev`]), is one;
/// - an `lxc.mount.entry` binding a host file to the target the `host-libs` strategy gives
///   it, where that file is one the strategy binds now (the host's driver files) or the node
///   record says it bound.
///
/// A character allow rule for a major that no driver holds now and that was never recorded
/// as NVIDIA's is doubtful. Everything else is never touched: rules for majors other drivers
/// hold (`c 226:*` iGPU, `c 10:200` TUN), block and `a` rules, deny rules, other mounts,
/// other `devN` entries, `devN` values Proxmox cannot read, other keys.
///
/// With `root` (a host under a root directory), a mount source under it counts as the host
/// path it stands for, so that lines written with resolved sources are recognised too.
pub(crate) struct Evidence {
    /// The host's `/proc/devices` now.
    pub devices: ProcDevices,
    /// The node record.
    pub record: NodeRecord,
    /// The files the `host-libs` strategy binds now (sources as host paths); `None` when
    /// they were not needed (no line binds a file to its own name) or the host has no driver.
    pub host_files: Option<Vec<MountEntry>>,
    /// The directory a host under a root maps `/` to.
    pub root: Option<PathBuf>,
}

impl Evidence {
    /// What `key: value` is, as a line of the main or pending section. `dev_keys`: whether
    /// `devN` keys mean Proxmox devices (the Proxmox dialect).
    pub fn classify(&self, key: &str, value: &str, dev_keys: bool) -> Class {
        if ALLOW_KEYS.contains(&key) {
            return match parse_char_rule(value) {
                Some((major, minor)) => self.rule(major, minor),
                None => Class::Theirs,
            };
        }
        if key == "lxc.mount.entry" {
            let (src, tgt) = mount_fields(value);
            let src = host_source(self.root.as_deref(), src);
            let src = tidy_path(&src);
            if is_nvidia_node_path(&src) {
                return Class::Ours(Passes::Node {
                    path: src.into_owned(),
                    dev_entry: false,
                });
            }
            if self.bound_by_host_libs(&src, tgt) {
                return Class::Ours(Passes::Userspace);
            }
            return Class::Theirs;
        }
        if dev_keys && is_dev_key(key) {
            if let Ok(spec) = lxc_conf::parse_dev(value) {
                let path = tidy_path(&spec.path);
                if is_nvidia_node_path(&path) {
                    return Class::Ours(Passes::Node {
                        path: path.into_owned(),
                        dev_entry: true,
                    });
                }
            }
        }
        Class::Theirs
    }

    fn rule(&self, major: u32, minor: Option<u32>) -> Class {
        let names: Vec<&str> = self
            .devices
            .chars
            .iter()
            .filter(|(m, _)| *m == major)
            .map(|(_, n)| n.as_str())
            .collect();
        let recorded = self.record.nvidia_major(major);
        let state = if names.iter().any(|n| is_nvidia_driver_name(n)) {
            MajorState::Nvidia
        } else if let Some(was) = recorded {
            match names.first() {
                None => MajorState::Stale {
                    was: was.to_owned(),
                },
                Some(now) => MajorState::Reassigned {
                    was: was.to_owned(),
                    now: (*now).to_owned(),
                },
            }
        } else if names.is_empty() {
            return Class::Doubtful { major };
        } else {
            return Class::Theirs;
        };
        Class::Ours(Passes::Rule {
            major,
            minor,
            state,
        })
    }

    /// Whether `target` is where the `host-libs` strategy binds the host file `source`, by the
    /// files it binds now or the record of those it bound.
    fn bound_by_host_libs(&self, source: &str, target: &str) -> bool {
        self.record.bound(source, target)
            || self.host_files.as_ref().is_some_and(|files| {
                files
                    .iter()
                    .any(|m| m.source.as_os_str() == source && m.target == target)
            })
    }

    /// Whether the host's `host-libs` files are needed to classify `key: value`: a mount
    /// entry that binds a host file (not a device node) to a target of the same name under the
    /// container's `usr/` (where `host-libs` binds), which the record does not already explain.
    pub fn needs_host_files(&self, key: &str, value: &str) -> bool {
        if key != "lxc.mount.entry" || self.host_files.is_some() {
            return false;
        }
        let (src, tgt) = mount_fields(value);
        let src = host_source(self.root.as_deref(), src);
        let src = tidy_path(&src);
        let base = |p: &str| p.rsplit('/').next().unwrap_or("").to_owned();
        !src.starts_with("/dev/")
            && src.starts_with('/')
            && !base(&src).is_empty()
            && tgt.starts_with("usr/")
            && base(&src) == base(tgt)
            && !self.record.bound(&src, tgt)
    }
}

/// `dev0` .. `dev255`.
pub(crate) fn is_dev_key(key: &str) -> bool {
    key.strip_prefix("dev")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::FsHost;

    async fn h200() -> Inventory {
        let (_d, host) = FsHost::h200x2();
        Inventory::read(&host).await.unwrap()
    }

    fn render(lines: &[WantedLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match l {
                WantedLine::Lxc { key, value } => format!("{key}: {value}"),
                WantedLine::Dev { value } => format!("devN: {value}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn raw_lines_for_gpu_1_on_v2() {
        let inv = h200().await;
        let w = Wants {
            written: Written::Raw(CgroupLayout::V2),
            gpus: &inv.gpus[1..2],
            mig: None,
            extra_mounts: &[],
            resolve: None,
        };
        assert_eq!(
            render(&wanted(&inv, &w).unwrap()),
            [
                "lxc.cgroup2.devices.allow: c 195:1 rwm",
                "lxc.cgroup2.devices.allow: c 195:255 rwm",
                "lxc.cgroup2.devices.allow: c 238:* rwm",
                "lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file",
                "lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file",
                "lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file",
                "lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file",
            ]
        );
    }

    #[tokio::test]
    async fn dev_lines_carry_the_host_nodes_mode_and_group() {
        let inv = h200().await;
        let w = Wants {
            written: Written::Dev,
            gpus: &inv.gpus[1..2],
            mig: None,
            extra_mounts: &[],
            resolve: None,
        };
        // The stand-in nodes are plain files: their mode stands for the node's.
        let mode = |p: &str| format!("{:04o}", inv.node(p).unwrap().mode & 0o777);
        assert_eq!(
            render(&wanted(&inv, &w).unwrap()),
            [
                format!("devN: /dev/nvidia1,mode={}", mode("/dev/nvidia1")),
                format!("devN: /dev/nvidiactl,mode={}", mode("/dev/nvidiactl")),
                format!("devN: /dev/nvidia-uvm,mode={}", mode("/dev/nvidia-uvm")),
                format!(
                    "devN: /dev/nvidia-uvm-tools,mode={}",
                    mode("/dev/nvidia-uvm-tools")
                ),
            ]
        );
        let node = |mode, gid| DeviceNode {
            path: "/dev/nvidia0".into(),
            kind: crate::inventory::NodeKind::Char,
            rdev: Some((195, 0)),
            mode,
            uid: 0,
            gid,
        };
        assert_eq!(
            dev_value("/dev/nvidia0", &node(0o20666, 0)),
            "/dev/nvidia0,mode=0666"
        );
        assert_eq!(
            dev_value("/dev/nvidia0", &node(0o20660, 44)),
            "/dev/nvidia0,gid=44,mode=0660"
        );
    }

    #[tokio::test]
    async fn mig_adds_caps_rules_and_dir_bind() {
        let inv = h200().await;
        let mig = MigMinors::parse("config 1\nmonitor 2\ngpu1/gi0/access 138\ngpu1/gi0/ci0/access 139\ngpu0/gi0/access 3\n");
        let w = Wants {
            written: Written::Raw(CgroupLayout::V1Devices),
            gpus: &inv.gpus[1..2],
            mig: Some(&mig),
            extra_mounts: &[],
            resolve: None,
        };
        let r = render(&wanted(&inv, &w).unwrap());
        for l in [
            "lxc.cgroup.devices.allow: c 241:1 rwm",
            "lxc.cgroup.devices.allow: c 241:2 rwm",
            "lxc.cgroup.devices.allow: c 241:138 rwm",
            "lxc.cgroup.devices.allow: c 241:139 rwm",
            "lxc.mount.entry: /dev/nvidia-caps dev/nvidia-caps none bind,optional,create=dir",
        ] {
            assert!(r.iter().any(|x| x == l), "{l} missing in {r:#?}");
        }
        assert!(!r.iter().any(|x| x.contains("241:3 ")));
    }

    #[tokio::test]
    async fn dev_mode_needs_the_nodes() {
        let mut inv = h200().await;
        inv.nodes
            .retain(|n| n.path.as_os_str() != "/dev/nvidia-uvm");
        let w = Wants {
            written: Written::Dev,
            gpus: &[],
            mig: None,
            extra_mounts: &[],
            resolve: None,
        };
        let e = wanted(&inv, &w).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::HostPrecondition);
    }

    #[tokio::test]
    async fn mode_resolution() {
        let mut inv = h200().await;
        let lxc = Target::Lxc {
            lxcpath: "/var/lib/lxc".into(),
        };
        assert_eq!(
            resolve_mode(Mode::Auto, &Target::Pve, &inv).unwrap(),
            Written::Raw(CgroupLayout::V2)
        );
        assert!(resolve_mode(Mode::Dev, &Target::Pve, &inv).is_err());
        inv.pve_version = Some("8.0.4".into());
        assert!(resolve_mode(Mode::Dev, &Target::Pve, &inv)
            .unwrap_err()
            .to_string()
            .contains("8.0.4"));
        inv.pve_version = Some("8.1.3".into());
        assert_eq!(
            resolve_mode(Mode::Auto, &Target::Pve, &inv).unwrap(),
            Written::Dev
        );
        assert_eq!(
            resolve_mode(Mode::Auto, &lxc, &inv).unwrap(),
            Written::Raw(CgroupLayout::V2)
        );
        assert_eq!(
            resolve_mode(Mode::Dev, &lxc, &inv).unwrap_err().kind(),
            crate::ErrorKind::BadInput
        );
    }

    fn evidence(devices: &str, record: &str) -> Evidence {
        Evidence {
            devices: ProcDevices::parse(devices),
            record: NodeRecord::parse(record),
            host_files: None,
            root: None,
        }
    }

    const DEVICES: &str = "Character devices:\n  7 vcs\n 10 misc\n116 alsa\n195 nvidia\n195 nvidiactl\n226 drm\n238 nvidia-uvm\n241 nvidia-caps\n243 hidraw\n\nBlock devices:\n  7 loop\n508 blk\n";

    #[test]
    fn ownership_by_evidence() {
        let ev = evidence(DEVICES, "major 235 nvidia-uvm\nmajor 243 nvidia-caps\n");
        let rule = |major, state| {
            Class::Ours(Passes::Rule {
                major,
                minor: None,
                state,
            })
        };
        let node = |p: &str, dev_entry| {
            Class::Ours(Passes::Node {
                path: p.into(),
                dev_entry,
            })
        };
        let cases: Vec<(&str, &str, Class)> = vec![
            (
                "lxc.cgroup2.devices.allow",
                "c 195:* rwm",
                rule(195, MajorState::Nvidia),
            ),
            (
                "lxc.cgroup.devices.allow",
                "c 238:* rw",
                rule(238, MajorState::Nvidia),
            ),
            (
                "lxc.cgroup2.devices.allow",
                "c 235:* rwm",
                rule(
                    235,
                    MajorState::Stale {
                        was: "nvidia-uvm".into(),
                    },
                ),
            ),
            (
                "lxc.cgroup2.devices.allow",
                "c 243:* rwm",
                rule(
                    243,
                    MajorState::Reassigned {
                        was: "nvidia-caps".into(),
                        now: "hidraw".into(),
                    },
                ),
            ),
            // Majors other drivers hold, never recorded as NVIDIA's: not the tool's.
            ("lxc.cgroup2.devices.allow", "c 226:128 rwm", Class::Theirs),
            ("lxc.cgroup2.devices.allow", "c 116:* rwm", Class::Theirs),
            ("lxc.cgroup2.devices.allow", "c 10:200 rwm", Class::Theirs),
            // Majors nobody holds and nobody recorded: doubtful.
            (
                "lxc.cgroup2.devices.allow",
                "c 508:* rwm",
                Class::Doubtful { major: 508 },
            ),
            (
                "lxc.cgroup2.devices.allow",
                "c 188:* rwm",
                Class::Doubtful { major: 188 },
            ),
            (
                "lxc.cgroup.devices.allow",
                "c 254:0 rm",
                Class::Doubtful { major: 254 },
            ),
            ("lxc.cgroup2.devices.allow", "b 7:* rwm", Class::Theirs),
            ("lxc.cgroup2.devices.allow", "a", Class::Theirs),
            ("lxc.cgroup2.devices.deny", "c 195:* rwm", Class::Theirs),
            (
                "lxc.mount.entry",
                "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file",
                node("/dev/nvidia0", false),
            ),
            (
                "lxc.mount.entry",
                "/dev//nvidia-uvm/ dev/nvidia-uvm none bind",
                node("/dev/nvidia-uvm", false),
            ),
            (
                "lxc.mount.entry",
                "/dev/nvidia-caps dev/nvidia-caps none bind,optional,create=dir",
                node("/dev/nvidia-caps", false),
            ),
            (
                "lxc.mount.entry",
                "/dev/nvidia-nvswitchctl dev/nvidia-nvswitchctl none bind",
                node("/dev/nvidia-nvswitchctl", false),
            ),
            (
                "lxc.mount.entry",
                "/dev/dri dev/dri none bind,optional,create=dir",
                Class::Theirs,
            ),
            (
                "lxc.mount.entry",
                "/dev/nvidia-stuff dev/x none bind",
                Class::Theirs,
            ),
            (
                "lxc.mount.entry",
                "/dev/nvidia0x dev/x none bind",
                Class::Theirs,
            ),
            (
                "lxc.mount.entry",
                "/opt/nvidia-container opt/nvidia-container none bind,optional,create=dir",
                Class::Theirs,
            ),
            // A driver file is the tool's only by evidence of what host-libs binds.
            (
                "lxc.mount.entry",
                "/usr/bin/nvidia-smi usr/bin/nvidia-smi none ro,bind,optional,create=file",
                Class::Theirs,
            ),
            ("dev0", "/dev/nvidia0,gid=44", node("/dev/nvidia0", true)),
            ("dev1", "gid=44,/dev/nvidia1", node("/dev/nvidia1", true)),
            (
                "dev2",
                "mode=0666,path=/dev/nvidia-uvm",
                node("/dev/nvidia-uvm", true),
            ),
            ("dev3", "/dev/dri/renderD128,gid=104", Class::Theirs),
            ("dev5", "/dev//nvidia0", node("/dev/nvidia0", true)),
            // Proxmox cannot read it: the container does not start, and it is not the tool's.
            ("dev4", "/dev/nvidia0, gid=44", Class::Theirs),
            ("mp0", "/dev/nvidia0,mp=/x", Class::Theirs),
        ];
        for (k, v, want) in cases {
            assert_eq!(ev.classify(k, v, true), want, "{k}: {v}");
        }
        assert_eq!(ev.classify("dev0", "/dev/nvidia0", false), Class::Theirs);
    }

    #[test]
    fn host_files_by_what_host_libs_binds_or_bound() {
        let mut ev = evidence(
            DEVICES,
            "host-file /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15 usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15\n",
        );
        let old = "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15 usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15 none ro,bind,optional,create=file";
        let now = "/usr/bin/nvidia-smi usr/bin/nvidia-smi none ro,bind,optional,create=file";
        let elsewhere = "/usr/bin/nvidia-smi opt/smi none bind";
        assert_eq!(
            ev.classify("lxc.mount.entry", old, true),
            Class::Ours(Passes::Userspace)
        );
        assert!(
            !ev.needs_host_files("lxc.mount.entry", old),
            "the record explains it"
        );
        assert!(ev.needs_host_files("lxc.mount.entry", now));
        assert!(!ev.needs_host_files("lxc.mount.entry", elsewhere));
        assert!(!ev.needs_host_files("lxc.mount.entry", "/dev/nvidia0 dev/nvidia0 none bind"));
        ev.host_files = Some(vec![MountEntry {
            source: "/usr/bin/nvidia-smi".into(),
            target: "usr/bin/nvidia-smi".into(),
            options: "ro,bind,optional,create=file".into(),
        }]);
        assert_eq!(
            ev.classify("lxc.mount.entry", now, true),
            Class::Ours(Passes::Userspace)
        );
        assert_eq!(
            ev.classify("lxc.mount.entry", elsewhere, true),
            Class::Theirs
        );
        // Under a root, a source under it stands for the host path.
        ev.root = Some(PathBuf::from("/tmp/h"));
        assert_eq!(
            ev.classify(
                "lxc.mount.entry",
                "/tmp/h/usr/bin/nvidia-smi usr/bin/nvidia-smi none ro,bind,optional,create=file",
                true
            ),
            Class::Ours(Passes::Userspace)
        );
    }

    #[test]
    fn nvidia_names_and_nodes_are_exact() {
        for n in [
            "nvidia",
            "nvidiactl",
            "nvidia-frontend",
            "nvidia-uvm",
            "nvidia-caps-imex-channels",
        ] {
            assert!(is_nvidia_driver_name(n), "{n}");
        }
        for n in ["nvidiafoo", "nv", "drm", "hidraw"] {
            assert!(!is_nvidia_driver_name(n), "{n}");
        }
        for p in [
            "/dev/nvidia0",
            "/dev/nvidia15",
            "/dev/nvidia-caps/nvidia-cap2",
            "/dev/nvidia-caps-imex-channels/channel0",
            "/dev/nvidia-nvswitch3",
        ] {
            assert!(is_nvidia_node_path(p), "{p}");
        }
        for p in [
            "/dev/nvidia",
            "/dev/nvidia0a",
            "/dev/nvidia-caps/foo",
            "/dev/nvidia-container",
            "/opt/nvidia0",
            "dev/nvidia0",
        ] {
            assert!(!is_nvidia_node_path(p), "{p}");
        }
        assert_eq!(tidy_path("/dev//nvidia0/"), "/dev/nvidia0");
        assert_eq!(tidy_path("/"), "/");
        assert_eq!(tidy_path("rel//x"), "rel/x");
    }
}
