//! Where the engine keeps things on the host, and how long it waits.

use std::path::PathBuf;
use std::time::Duration;

/// Host-side places the engine uses. The defaults are the documented paths; the CLI maps them
/// under `--root` through the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where runfiles are cached (`/var/cache/phoenix-gpu`).
    pub cache_dir: PathBuf,
    /// Where previous config bytes are kept (`/var/lib/phoenix-gpu/backups`).
    pub backup_root: PathBuf,
    /// The node record: what the tool saw NVIDIA's driver hold on the node
    /// (`/var/lib/phoenix-gpu/nvidia-record`), the evidence by which it knows its own lines
    /// after a reboot moved a major or a driver upgrade replaced its files.
    pub record: PathBuf,
    /// How long to wait for the config lock.
    pub lock_timeout: Duration,
    /// Write the sources of bind mounts (`lxc.mount.entry`) as the paths
    /// [`Host::resolve`](exec_backend::Host::resolve) gives, instead of host paths. Only for testing on a fake GPU host
    /// under a root directory (the CLI's `--bind-under-root`): LXC then binds the stand-in
    /// nodes made under that root. Off by default.
    pub resolve_mount_sources: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            cache_dir: PathBuf::from("/var/cache/phoenix-gpu"),
            backup_root: PathBuf::from("/var/lib/phoenix-gpu/backups"),
            record: PathBuf::from("/var/lib/phoenix-gpu/nvidia-record"),
            lock_timeout: Duration::from_secs(10),
            resolve_mount_sources: false,
        }
    }
}
