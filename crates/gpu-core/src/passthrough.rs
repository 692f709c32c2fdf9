//! The config lines that hand NVIDIA devices (and, for `host-libs`, the host's userspace) to a
//! container, and the rule that says which existing lines belong to the tool.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Input, Result};
use crate::inventory::{
    CgroupLayout, Gpu, Inventory, Majors, MigMinors, ProcDevices, MODESET_MINOR, NVIDIACTL_MINOR,
};
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
    pub unprivileged: bool,
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
                let value = if w.unprivileged {
                    format!("{p},gid={},mode=0666", node.gid)
                } else {
                    p
                };
                out.push(WantedLine::Dev { value });
            }
        }
    }
    out.extend(w.extra_mounts.iter().map(|m| w.mount_line(m)));
    Ok(out)
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

/// Whether a host path is one of the NVIDIA device nodes the tool passes.
pub(crate) fn is_nvidia_node_path(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/dev/") else {
        return false;
    };
    matches!(
        name,
        "nvidiactl" | "nvidia-modeset" | "nvidia-uvm" | "nvidia-uvm-tools" | "nvidia-caps"
    ) || name.starts_with("nvidia-caps/")
        || name
            .strip_prefix("nvidia")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a mount source is a file of the NVIDIA driver's userspace (`host-libs`).
pub(crate) fn is_nvidia_userspace_path(path: &str) -> bool {
    if path.contains("/firmware/nvidia") {
        return true;
    }
    let base = path.rsplit('/').next().unwrap_or(path);
    const PREFIXES: [&str; 10] = [
        "libnvidia-",
        "libcuda",
        "libnvcuvid",
        "libGLX_nvidia",
        "libEGL_nvidia",
        "libGLESv1_CM_nvidia",
        "libGLESv2_nvidia",
        "libvdpau_nvidia",
        "libnvoptix",
        "nvidia-",
    ];
    PREFIXES.iter().any(|p| base.starts_with(p)) && !path.starts_with("/dev/")
}

/// The device path of a `devN` value (`/dev/nvidia0,gid=44` or `path=/dev/nvidia0,...`).
pub(crate) fn dev_value_path(value: &str) -> &str {
    let first = value.split(',').next().unwrap_or("").trim();
    first.strip_prefix("path=").unwrap_or(first)
}

/// Which existing lines the tool owns, given the host's device table.
///
/// The tool owns, in the main section only:
/// - allow rules (`lxc.cgroup2.devices.allow` or `lxc.cgroup.devices.allow`) of the form
///   `c M:N` or `c M:*` where M is a current NVIDIA major (nvidia/nvidia-frontend, nvidia-uvm,
///   nvidia-caps, nvidia-modeset);
/// - stale allow rules `c M:N`/`c M:*` where **no driver on the host holds M** (M is absent
///   from `/proc/devices`), but only in a config that also passes NVIDIA nodes (an owned mount
///   entry, `devN` or current-major rule): that is the old uvm/caps major left behind by a
///   driver update or reboot. A rule for a major some driver holds (10, 226, 7, ...) is never
///   touched, nor is `a` or a block rule;
/// - `lxc.mount.entry` lines whose source is an NVIDIA node (`/dev/nvidia<N>`, nvidiactl,
///   nvidia-modeset, nvidia-uvm, nvidia-uvm-tools, nvidia-caps and its contents) or a file of
///   the NVIDIA userspace (libnvidia-*, libcuda*, ..., nvidia-* binaries, firmware/nvidia);
/// - `devN` entries whose path is such an NVIDIA node.
///
/// With `root` (a host under a root directory), a mount source under it counts as the host
/// path it stands for, so the lines written with resolved sources are recognised too.
pub(crate) struct Ownership<'a> {
    pub devices: &'a ProcDevices,
    pub majors: &'a Majors,
    pub root: Option<&'a Path>,
}

/// One line as the ownership rule sees it.
pub(crate) struct LineRef<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

impl Ownership<'_> {
    fn direct(&self, l: &LineRef<'_>) -> bool {
        if ALLOW_KEYS.contains(&l.key) {
            return parse_char_rule(l.value).is_some_and(|(m, _)| self.majors.all().contains(&m));
        }
        if l.key == "lxc.mount.entry" {
            let src = host_source(self.root, l.value.split_whitespace().next().unwrap_or(""));
            return is_nvidia_node_path(&src) || is_nvidia_userspace_path(&src);
        }
        if is_dev_key(l.key) {
            return is_nvidia_node_path(dev_value_path(l.value));
        }
        false
    }

    fn stale_major(&self, l: &LineRef<'_>) -> bool {
        ALLOW_KEYS.contains(&l.key)
            && parse_char_rule(l.value).is_some_and(|(m, _)| !self.devices.has_major(m))
    }

    /// For each line, whether the tool owns it.
    pub fn classify(&self, lines: &[LineRef<'_>]) -> Vec<bool> {
        let direct: Vec<bool> = lines.iter().map(|l| self.direct(l)).collect();
        let nvidia_present = direct.iter().any(|d| *d);
        lines
            .iter()
            .zip(direct)
            .map(|(l, d)| d || (nvidia_present && self.stale_major(l)))
            .collect()
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
            unprivileged: false,
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
    async fn dev_lines_with_gid_and_mode_for_unprivileged() {
        let inv = h200().await;
        let w = Wants {
            written: Written::Dev,
            gpus: &inv.gpus[1..2],
            unprivileged: true,
            mig: None,
            extra_mounts: &[],
            resolve: None,
        };
        let gid = inv.node("/dev/nvidia1").unwrap().gid;
        assert_eq!(
            render(&wanted(&inv, &w).unwrap()),
            [
                format!("devN: /dev/nvidia1,gid={gid},mode=0666"),
                format!("devN: /dev/nvidiactl,gid={gid},mode=0666"),
                format!("devN: /dev/nvidia-uvm,gid={gid},mode=0666"),
                format!("devN: /dev/nvidia-uvm-tools,gid={gid},mode=0666"),
            ]
        );
    }

    #[tokio::test]
    async fn mig_adds_caps_rules_and_dir_bind() {
        let inv = h200().await;
        let mig = MigMinors::parse("config 1\nmonitor 2\ngpu1/gi0/access 138\ngpu1/gi0/ci0/access 139\ngpu0/gi0/access 3\n");
        let w = Wants {
            written: Written::Raw(CgroupLayout::V1Devices),
            gpus: &inv.gpus[1..2],
            unprivileged: false,
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
            unprivileged: false,
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

    #[test]
    fn ownership_rule() {
        let devices = ProcDevices::parse(
            "Character devices:\n  7 vcs\n 10 misc\n195 nvidia\n226 drm\n238 nvidia-uvm\n241 nvidia-caps\n\nBlock devices:\n  7 loop\n508 blk\n",
        );
        let majors = devices.majors().unwrap();
        let own = Ownership {
            devices: &devices,
            majors: &majors,
            root: None,
        };
        let cases: &[(&str, &str, bool)] = &[
            ("lxc.cgroup2.devices.allow", "c 195:* rwm", true),
            ("lxc.cgroup.devices.allow", "c 238:0 rw", true),
            ("lxc.cgroup2.devices.allow", "c 508:* rwm", true),
            ("lxc.cgroup2.devices.allow", "c 226:128 rwm", false),
            ("lxc.cgroup2.devices.allow", "c 10:200 rwm", false),
            ("lxc.cgroup2.devices.allow", "b 7:* rwm", false),
            ("lxc.cgroup2.devices.allow", "a", false),
            ("lxc.cgroup2.devices.deny", "c 195:* rwm", false),
            ("lxc.mount.entry", "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file", true),
            ("lxc.mount.entry", "/dev/nvidia-caps dev/nvidia-caps none bind,optional,create=dir", true),
            ("lxc.mount.entry", "/dev/dri dev/dri none bind,optional,create=dir", false),
            ("lxc.mount.entry", "/dev/nvidia-nvswitchctl dev/nvidia-nvswitchctl none bind", false),
            ("lxc.mount.entry", "/usr/lib/x86_64-linux-gnu/libcuda.so.1 usr/lib/x86_64-linux-gnu/libcuda.so.1 none bind,ro,create=file", true),
            ("lxc.mount.entry", "/usr/bin/nvidia-smi usr/bin/nvidia-smi none bind,ro,create=file", true),
            ("lxc.mount.entry", "/lib/firmware/nvidia/580.159.04 lib/firmware/nvidia/580.159.04 none bind,ro,create=dir", true),
            ("lxc.mount.entry", "/srv/data srv/data none bind", false),
            ("dev0", "/dev/nvidia0,gid=44", true),
            ("dev1", "path=/dev/nvidia-uvm", true),
            ("dev2", "/dev/dri/renderD128,gid=104", false),
            ("mp0", "/dev/nvidia0,mp=/x", false),
        ];
        let lines: Vec<LineRef<'_>> = cases
            .iter()
            .map(|(key, value, _)| LineRef { key, value })
            .collect();
        let got = own.classify(&lines);
        for ((k, v, want), got) in cases.iter().zip(got) {
            assert_eq!(got, *want, "{k}: {v}");
        }
        // Without any NVIDIA line, an unknown major is not ours.
        let lone = [LineRef {
            key: "lxc.cgroup2.devices.allow",
            value: "c 508:* rwm",
        }];
        assert_eq!(own.classify(&lone), vec![false]);
    }
}
