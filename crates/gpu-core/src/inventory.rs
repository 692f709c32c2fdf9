//! What the host has: driver version, GPUs, device majors, device nodes, cgroup layout.
//!
//! Read through [`Host`], so that `--root` and SSH work the same.

use std::path::{Path, PathBuf};

use exec_backend::{DirEntry, ExecError, FileKind, FileMeta, Host, NameMatch};
use serde::Serialize;
use tracing::debug;

use crate::error::{Error, Result};
use crate::version::DriverVersion;

/// The fixed major of `/dev/nvidia*` and `/dev/nvidiactl`.
pub const NVIDIA_MAJOR: u32 = 195;
/// The minor of `/dev/nvidiactl`.
pub const NVIDIACTL_MINOR: u32 = 255;
/// The minor of `/dev/nvidia-modeset`.
pub const MODESET_MINOR: u32 = 254;

/// One GPU of the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// Its index as nvidia-smi numbers GPUs: the position in PCI bus order.
    pub index: u32,
    /// Its device minor (`/dev/nvidia<minor>`), from `Device Minor:`.
    pub minor: u32,
    /// PCI bus id as the driver writes it (`0000:00:06.0`).
    pub pci_bus_id: String,
    /// `GPU-8ec68ad8-...`.
    pub uuid: String,
    /// `NVIDIA H200`.
    pub model: String,
}

/// Device majors from `/proc/devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Majors {
    /// `nvidia` or `nvidia-frontend` (always 195 in practice).
    pub nvidia: u32,
    /// `nvidia-uvm` (dynamic), when the module is loaded.
    pub nvidia_uvm: Option<u32>,
    /// `nvidia-caps` (dynamic), when present.
    pub nvidia_caps: Option<u32>,
    /// `nvidia-modeset`, when listed.
    pub nvidia_modeset: Option<u32>,
}

/// Kind of a node under /dev as found on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A real character device.
    Char,
    /// A directory (`/dev/nvidia-caps`).
    Dir,
    /// A plain file standing in for a node (only under `--root`).
    StandIn,
}

impl std::fmt::Display for NodeKind {
    /// The kind in words, for a person; the JSON name is `char`, `dir` or `stand_in`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeKind::Char => "character device",
            NodeKind::Dir => "directory",
            NodeKind::StandIn => "stand-in file",
        })
    }
}

/// An NVIDIA device node found under `/dev`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceNode {
    /// Host path (`/dev/nvidia0`).
    pub path: PathBuf,
    /// What it is.
    pub kind: NodeKind,
    /// `(major, minor)` of a character device.
    pub rdev: Option<(u32, u32)>,
    /// Permission bits.
    pub mode: u32,
    /// Owner id (a live change gives the container a node owned as the host's).
    pub uid: u32,
    /// Group id (for `devN` entries of unprivileged containers).
    pub gid: u32,
}

/// Which cgroup key the host's LXC honours for device rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupLayout {
    /// Unified hierarchy: `lxc.cgroup2.devices.allow`.
    V2,
    /// The devices controller is still cgroup v1 (hybrid layout): `lxc.cgroup.devices.allow`.
    V1Devices,
}

impl CgroupLayout {
    /// The config key for device allow rules.
    pub fn allow_key(self) -> &'static str {
        match self {
            CgroupLayout::V2 => "lxc.cgroup2.devices.allow",
            CgroupLayout::V1Devices => "lxc.cgroup.devices.allow",
        }
    }
}

/// Everything the host has that passthrough needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The kernel module's version.
    pub driver_version: DriverVersion,
    /// GPUs in index (PCI bus) order.
    pub gpus: Vec<Gpu>,
    /// Majors from /proc/devices.
    pub majors: Majors,
    /// NVIDIA nodes under /dev, sorted by path.
    pub nodes: Vec<DeviceNode>,
    /// The cgroup layout for device rules.
    pub cgroup: CgroupLayout,
    /// The Proxmox VE version when the host is a Proxmox node (`8.2.4`), else `None`.
    pub pve_version: Option<String>,
}

impl Inventory {
    /// Reads the inventory from `host`.
    ///
    /// Fails with [`crate::Error::NoDriver`] when no NVIDIA kernel module is loaded.
    pub async fn read(host: &dyn Host) -> Result<Inventory> {
        Ok(Inventory::read_with_devices(host).await?.0)
    }

    /// [`Inventory::read`], and the character-device table it was read from (the config
    /// step classifies lines by it), so that a run that keeps both reads `/proc/devices` once.
    pub(crate) async fn read_with_devices(host: &dyn Host) -> Result<(Inventory, ProcDevices)> {
        let driver_version = read_driver_version(host).await?;
        let devices = read_text(host, PROC_DEVICES)
            .await?
            .ok_or_else(|| Error::NoDriver { host: host.name() })?;
        check_proc_devices(&devices)?;
        let table = ProcDevices::parse(&devices);
        let majors = table
            .majors()
            .ok_or_else(|| Error::NoDriver { host: host.name() })?;
        let gpus = read_gpus(host).await?;
        check_gpus(&gpus)?;
        let nodes = read_nodes(host, &majors).await?;
        let cgroup = read_cgroup_layout(host).await?;
        let pve_version = read_pve_version(host).await?;
        debug!(
            host = %host.name(),
            driver = %driver_version,
            gpus = gpus.len(),
            nodes = nodes.len(),
            ?cgroup,
            ?pve_version,
            "inventory read"
        );
        let inv = Inventory {
            driver_version,
            gpus,
            majors,
            nodes,
            cgroup,
            pve_version,
        };
        Ok((inv, table))
    }

    /// The device nodes whose numbers are not those the driver has now (`/proc/devices` and
    /// the fixed minors): a node left from before a module reload that moved a major (the
    /// uvm major is dynamic). Each with the numbers it should have. Stand-in files under a
    /// root carry the numbers their names give, so only real nodes can be stale.
    pub fn stale_nodes(&self) -> Vec<(&DeviceNode, (u32, u32))> {
        self.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Char)
            .filter_map(|n| {
                let rel = n.path.strip_prefix("/dev").ok()?.to_str()?;
                let want = rdev_from_name(rel, &self.majors)?;
                (n.rdev != Some(want)).then_some((n, want))
            })
            .collect()
    }

    /// The node at `path`, if the host has it.
    pub fn node(&self, path: &str) -> Option<&DeviceNode> {
        self.nodes.iter().find(|n| n.path.as_os_str() == path)
    }

    /// Whether the Proxmox VE version is at least `major.minor` (false when not Proxmox).
    pub fn pve_at_least(&self, major: u32, minor: u32) -> bool {
        let Some(v) = &self.pve_version else {
            return false;
        };
        let mut parts = v.split(['.', '-', '~']).map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(a), Some(b)) => (a, b) >= (major, minor),
            (Some(a), None) => a > major,
            _ => false,
        }
    }
}

const PROC_DEVICES: &str = "/proc/devices";
const SYS_MODULE_VERSION: &str = "/sys/module/nvidia/version";
const PROC_DRIVER_VERSION: &str = "/proc/driver/nvidia/version";
/// Where the driver lists the GPUs, one directory per PCI bus id.
pub(crate) const PROC_GPUS: &str = "/proc/driver/nvidia/gpus";

/// The driver's file about the GPU at `bus` (a directory name under [`PROC_GPUS`]).
pub(crate) fn gpu_information(bus: &str) -> String {
    format!("{PROC_GPUS}/{bus}/information")
}
/// Where the driver lists the MIG capability minors.
pub(crate) const MIG_MINORS: &str = "/proc/driver/nvidia-caps/mig-minors";

/// The files [`Inventory::read`] reads on any host, and the directories it lists (the GPUs'
/// own files are found in the listing): for a caller that fetches them all at once first.
pub(crate) const READ_FILES: [&str; 6] = [
    SYS_MODULE_VERSION,
    PROC_DRIVER_VERSION,
    PROC_DEVICES,
    "/proc/self/mounts",
    "/proc/mounts",
    "/var/lib/dpkg/status",
];
/// See [`READ_FILES`]: each directory with the start of the names it keeps (`""`: all).
pub(crate) const LISTED_DIRS: [(&str, &str); 3] = [
    (PROC_GPUS, ""),
    ("/dev", NODE_PREFIX),
    ("/dev/nvidia-caps", ""),
];
/// The start of the names of the driver's nodes under `/dev` (a host's `/dev` holds hundreds
/// of other entries, which are not looked at).
const NODE_PREFIX: &str = "nvidia";

/// A file's text, `None` when it does not exist.
pub(crate) async fn read_text(host: &dyn Host, path: &str) -> Result<Option<String>> {
    match host.read_file(Path::new(path)).await {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(ExecError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::exec(
            format!("cannot read {path} on {}", host.name()),
            e,
        )),
    }
}

/// The host's character-device table; empty when `/proc/devices` is missing (no driver).
pub(crate) async fn read_proc_devices(host: &dyn Host) -> Result<ProcDevices> {
    Ok(read_text(host, PROC_DEVICES)
        .await?
        .map(|t| ProcDevices::parse(&t))
        .unwrap_or_default())
}

async fn read_driver_version(host: &dyn Host) -> Result<DriverVersion> {
    for path in [SYS_MODULE_VERSION, PROC_DRIVER_VERSION] {
        if let Some(text) = read_text(host, path).await? {
            return DriverVersion::find_in(&text).ok_or_else(|| Error::BadInventory {
                problem: format!("it names no driver version: {:?}", clip(text.trim())),
                files: vec![PathBuf::from(path)],
            });
        }
    }
    Err(Error::NoDriver { host: host.name() })
}

/// At most 80 characters of `text`, for messages about files that hold junk.
fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// Refuses a `/proc/devices` that is not the kernel's table: no `Character devices:`
/// section (an empty file), or a character device line that is not `MAJOR NAME` with a
/// major the kernel can have (0 to 4095).
fn check_proc_devices(text: &str) -> Result<()> {
    let bad = |problem: String| Error::BadInventory {
        problem,
        files: vec![PathBuf::from(PROC_DEVICES)],
    };
    let mut in_chars = false;
    let mut seen = false;
    for line in text.lines() {
        let t = line.trim();
        if t.eq_ignore_ascii_case("Character devices:") {
            in_chars = true;
            seen = true;
            continue;
        }
        if t.ends_with(':') {
            in_chars = false;
            continue;
        }
        if !in_chars || t.is_empty() {
            continue;
        }
        let mut it = t.split_whitespace();
        let ok = match (it.next(), it.next(), it.next()) {
            (Some(num), Some(_), None) => num.parse::<u32>().is_ok_and(|n| n <= 4095),
            _ => false,
        };
        if !ok {
            return Err(bad(format!(
                "its line {:?} is not a character device (MAJOR NAME)",
                clip(t)
            )));
        }
    }
    if !seen {
        return Err(bad(if text.trim().is_empty() {
            "it is empty".to_owned()
        } else {
            "it has no \"Character devices:\" section".to_owned()
        }));
    }
    Ok(())
}

/// Refuses GPUs whose device minors or UUIDs cannot be right: a minor above 253 (254 is
/// `/dev/nvidia-modeset`'s, 255 `/dev/nvidiactl`'s), two GPUs with one minor or one UUID.
/// Passing such a GPU would write allow lines for another node, or the same lines twice.
fn check_gpus(gpus: &[Gpu]) -> Result<()> {
    let info = |g: &Gpu| PathBuf::from(format!("{PROC_GPUS}/{}/information", g.pci_bus_id));
    for g in gpus {
        if g.minor > MAX_GPU_MINOR {
            let whose = match g.minor {
                NVIDIACTL_MINOR => ", which is /dev/nvidiactl's",
                MODESET_MINOR => ", which is /dev/nvidia-modeset's",
                _ => "",
            };
            return Err(Error::BadInventory {
                problem: format!(
                    "GPU {} has device minor {}{whose}; GPU minors are 0 to {MAX_GPU_MINOR}",
                    g.pci_bus_id, g.minor
                ),
                files: vec![info(g)],
            });
        }
    }
    for (i, a) in gpus.iter().enumerate() {
        for b in &gpus[i + 1..] {
            let same = if a.minor == b.minor {
                format!("device minor {}", a.minor)
            } else if !a.uuid.is_empty() && a.uuid == b.uuid {
                format!("UUID {}", a.uuid)
            } else {
                continue;
            };
            return Err(Error::BadInventory {
                problem: format!(
                    "GPUs {} and {} have the same {same}",
                    a.pci_bus_id, b.pci_bus_id
                ),
                files: vec![info(a), info(b)],
            });
        }
    }
    Ok(())
}

/// The highest device minor of a GPU: 254 and 255 are the modeset and control nodes.
pub const MAX_GPU_MINOR: u32 = 253;

/// The character-device table of `/proc/devices`: `(major, name)` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcDevices {
    /// Character devices only.
    pub chars: Vec<(u32, String)>,
}

impl ProcDevices {
    pub fn parse(text: &str) -> ProcDevices {
        let mut chars = Vec::new();
        let mut in_chars = false;
        for line in text.lines() {
            let t = line.trim();
            if t.eq_ignore_ascii_case("Character devices:") {
                in_chars = true;
                continue;
            }
            if t.ends_with(':') {
                in_chars = false;
                continue;
            }
            if !in_chars {
                continue;
            }
            let mut it = t.split_whitespace();
            if let (Some(num), Some(name)) = (it.next(), it.next()) {
                if let Ok(n) = num.parse() {
                    chars.push((n, name.to_owned()));
                }
            }
        }
        ProcDevices { chars }
    }

    fn find(&self, names: &[&str]) -> Option<u32> {
        self.chars
            .iter()
            .find(|(_, n)| names.contains(&n.as_str()))
            .map(|(m, _)| *m)
    }

    /// The NVIDIA majors; `None` without an `nvidia`/`nvidia-frontend` entry.
    pub fn majors(&self) -> Option<Majors> {
        Some(Majors {
            nvidia: self.find(&["nvidia-frontend", "nvidia"])?,
            nvidia_uvm: self.find(&["nvidia-uvm"]),
            nvidia_caps: self.find(&["nvidia-caps"]),
            nvidia_modeset: self.find(&["nvidia-modeset"]),
        })
    }
}

impl Majors {
    /// The majors the tool writes rules for (nvidia, uvm, caps, modeset).
    pub fn all(&self) -> Vec<u32> {
        let mut v = vec![self.nvidia];
        v.extend(self.nvidia_uvm);
        v.extend(self.nvidia_caps);
        v.extend(self.nvidia_modeset);
        v
    }
}

/// Parses one `/proc/driver/nvidia/gpus/<bus>/information` file. `bus` is the directory name,
/// used when the file lacks `Bus Location`.
pub(crate) fn parse_gpu_information(bus: &str, text: &str) -> Result<Gpu> {
    let mut minor = None;
    let mut pci = None;
    let mut uuid = None;
    let mut model = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Device Minor" => minor = Some(v),
            "Bus Location" => pci = Some(v.to_owned()),
            "GPU UUID" => uuid = Some(v.to_owned()),
            "Model" => model = Some(v.to_owned()),
            _ => {}
        }
    }
    let bad = |problem: String| Error::BadInventory {
        problem,
        files: vec![PathBuf::from(format!("{PROC_GPUS}/{bus}/information"))],
    };
    let minor = match minor {
        Some(m) => m
            .parse::<u32>()
            .map_err(|_| bad(format!("its Device Minor {:?} is not a number", clip(m))))?,
        None if text.trim().is_empty() => return Err(bad("it is empty".into())),
        None => return Err(bad("it has no Device Minor line (is it cut short?)".into())),
    };
    if let Some(p) = &pci {
        if pci_key(p).is_none() {
            return Err(bad(format!(
                "its Bus Location {:?} is not a PCI bus id",
                clip(p)
            )));
        }
    }
    Ok(Gpu {
        index: 0,
        minor,
        pci_bus_id: pci.unwrap_or_else(|| bus.to_owned()),
        uuid: uuid.unwrap_or_default(),
        model: model.unwrap_or_default(),
    })
}

/// A PCI bus id as `(domain, bus, device, function)`, for ordering and comparing forms such as
/// `0000:00:06.0`, `00000000:00:06.0` and `00:06.0`.
pub(crate) fn pci_key(id: &str) -> Option<(u32, u32, u32, u32)> {
    let (rest, func) = id.rsplit_once('.')?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (dom, bus, dev) = match parts.as_slice() {
        [d, b, v] => (*d, *b, *v),
        [b, v] => ("0", *b, *v),
        _ => return None,
    };
    let hex = |s: &str, max: usize| -> Option<u32> {
        if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    };
    Some((hex(dom, 8)?, hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?))
}

async fn read_gpus(host: &dyn Host) -> Result<Vec<Gpu>> {
    let entries = match host.read_dir(Path::new(PROC_GPUS)).await {
        Ok(e) => e,
        Err(ExecError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::exec(
                format!("cannot list {PROC_GPUS} on {}", host.name()),
                e,
            ))
        }
    };
    let mut gpus = Vec::new();
    for e in entries {
        let bus = e.name.to_string_lossy().into_owned();
        let path = gpu_information(&bus);
        let Some(text) = read_text(host, &path).await? else {
            continue;
        };
        gpus.push(parse_gpu_information(&bus, &text)?);
    }
    gpus.sort_by(|a, b| {
        let ka = pci_key(&a.pci_bus_id);
        let kb = pci_key(&b.pci_bus_id);
        ka.cmp(&kb).then_with(|| a.pci_bus_id.cmp(&b.pci_bus_id))
    });
    for (i, g) in gpus.iter_mut().enumerate() {
        g.index = i as u32;
    }
    Ok(gpus)
}

/// The device numbers a node named `name` (relative to /dev) has on an NVIDIA host.
pub(crate) fn rdev_from_name(name: &str, majors: &Majors) -> Option<(u32, u32)> {
    match name {
        "nvidiactl" => return Some((majors.nvidia, NVIDIACTL_MINOR)),
        "nvidia-modeset" => return Some((majors.nvidia, MODESET_MINOR)),
        "nvidia-uvm" => return majors.nvidia_uvm.map(|m| (m, 0)),
        "nvidia-uvm-tools" => return majors.nvidia_uvm.map(|m| (m, 1)),
        _ => {}
    }
    if let Some(n) = name.strip_prefix("nvidia-caps/nvidia-cap") {
        let minor = digits(n)?;
        return majors.nvidia_caps.map(|m| (m, minor));
    }
    let n = name.strip_prefix("nvidia")?;
    digits(n).map(|minor| (majors.nvidia, minor))
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn node_from(path: String, rel: &str, meta: &FileMeta, majors: &Majors) -> Option<DeviceNode> {
    let (kind, rdev) = match meta.kind {
        FileKind::CharDevice => (NodeKind::Char, meta.rdev),
        FileKind::Dir => (NodeKind::Dir, None),
        FileKind::File => (NodeKind::StandIn, rdev_from_name(rel, majors)),
        _ => return None,
    };
    Some(DeviceNode {
        path: PathBuf::from(path),
        kind,
        rdev,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
    })
}

/// The entries of `path` whose names `keep` matches; a missing directory has none.
async fn list_dir(host: &dyn Host, path: &str, keep: &NameMatch) -> Result<Vec<DirEntry>> {
    match host.read_dir_matching(Path::new(path), keep).await {
        Ok(e) => Ok(e),
        Err(ExecError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(Error::exec(
            format!("cannot list {path} on {}", host.name()),
            e,
        )),
    }
}

async fn read_nodes(host: &dyn Host, majors: &Majors) -> Result<Vec<DeviceNode>> {
    let mut nodes = Vec::new();
    for e in list_dir(host, "/dev", &NameMatch::starting(NODE_PREFIX)).await? {
        let name = e.name.to_string_lossy().into_owned();
        let is_caps_dir = name == "nvidia-caps" && e.meta.kind == FileKind::Dir;
        if let Some(n) = node_from(format!("/dev/{name}"), &name, &e.meta, majors) {
            nodes.push(n);
        }
        if is_caps_dir {
            for c in list_dir(host, "/dev/nvidia-caps", &NameMatch::default()).await? {
                let cname = c.name.to_string_lossy().into_owned();
                let rel = format!("nvidia-caps/{cname}");
                if let Some(n) = node_from(format!("/dev/{rel}"), &rel, &c.meta, majors) {
                    nodes.push(n);
                }
            }
        }
    }
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(nodes)
}

/// Whether a mount table lists a cgroup v1 hierarchy with the `devices` controller.
pub(crate) fn mounts_have_v1_devices(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "devices")
    })
}

async fn read_cgroup_layout(host: &dyn Host) -> Result<CgroupLayout> {
    for path in ["/proc/self/mounts", "/proc/mounts"] {
        if let Some(text) = read_text(host, path).await? {
            return Ok(if mounts_have_v1_devices(&text) {
                CgroupLayout::V1Devices
            } else {
                CgroupLayout::V2
            });
        }
    }
    // No mount table (a captured host): the unified hierarchy at /sys/fs/cgroup means v2; a
    // v1 devices hierarchy directory means v1.
    let stat = |p: &'static str| async move {
        host.stat(Path::new(p))
            .await
            .map_err(|e| Error::exec(format!("cannot stat {p} on {}", host.name()), e))
    };
    if stat("/sys/fs/cgroup/cgroup.controllers").await?.is_some() {
        return Ok(CgroupLayout::V2);
    }
    if stat("/sys/fs/cgroup/devices").await?.is_some() {
        return Ok(CgroupLayout::V1Devices);
    }
    Ok(CgroupLayout::V2)
}

/// The `Version:` of an installed package in a dpkg status file.
pub(crate) fn dpkg_version(status: &str, package: &str) -> Option<String> {
    for stanza in status.split("\n\n") {
        // A host's status file holds thousands of stanzas; only one that names the package
        // can be its own (a quick search first, then the lines).
        if !stanza.contains(package) {
            continue;
        }
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if name == Some(package) && installed {
            return version.map(str::to_owned);
        }
    }
    None
}

async fn read_pve_version(host: &dyn Host) -> Result<Option<String>> {
    if let Some(status) = read_text(host, "/var/lib/dpkg/status").await? {
        if let Some(v) = dpkg_version(&status, "pve-manager") {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The MIG capability minors: `config`, `monitor`, and `gpu<minor>/gi<G>[/ci<C>]/access`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MigMinors {
    pub config: Option<u32>,
    pub monitor: Option<u32>,
    /// `(gpu device minor, cap minor)` of every gi/ci access entry.
    pub access: Vec<(u32, u32)>,
}

impl MigMinors {
    pub fn parse(text: &str) -> MigMinors {
        let mut m = MigMinors::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(name), Some(num)) = (it.next(), it.next()) else {
                continue;
            };
            let Ok(minor) = num.parse::<u32>() else {
                continue;
            };
            match name {
                "config" => m.config = Some(minor),
                "monitor" => m.monitor = Some(minor),
                _ => {
                    let gpu = name
                        .strip_prefix("gpu")
                        .and_then(|r| r.split('/').next())
                        .and_then(digits);
                    if let (Some(gpu), true) = (gpu, name.ends_with("/access")) {
                        m.access.push((gpu, minor));
                    }
                }
            }
        }
        m
    }

    /// The cap minors a container with GPUs of these device minors needs.
    pub fn for_gpus(&self, gpu_minors: &[u32]) -> Vec<u32> {
        let mut v: Vec<u32> = self.config.into_iter().chain(self.monitor).collect();
        v.extend(
            self.access
                .iter()
                .filter(|(g, _)| gpu_minors.contains(g))
                .map(|(_, m)| *m),
        );
        v
    }
}

#[cfg(test)]
mod tests;
