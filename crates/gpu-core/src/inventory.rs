//! What the host has: driver version, GPUs, device majors, device nodes, cgroup layout.
//!
//! Read through [`Host`], so that `--root` and SSH work the same.

use std::path::PathBuf;

use exec_backend::Host;
use serde::Serialize;

use crate::error::Result;
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
        let _ = host;
        todo!("issue 4: inventory")
    }

    /// The node at `path`, if the host has it.
    pub fn node(&self, path: &str) -> Option<&DeviceNode> {
        self.nodes.iter().find(|n| n.path.as_os_str() == path)
    }
}
