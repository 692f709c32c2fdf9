//! What a caller asks for: which container, which GPUs, how.

use std::path::PathBuf;
use std::time::Duration;

use exec_backend::CtRef;
use serde::Serialize;

use crate::select::GpuSelection;
use crate::version::DriverVersion;

/// Where containers live and how their configs are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// Proxmox VE: `/etc/pve/lxc/<CTID>.conf`, `pct`.
    Pve,
    /// Plain LXC: `<lxcpath>/<name>/config`, `lxc-*`.
    Lxc {
        /// The LXC path (`/var/lib/lxc`).
        lxcpath: PathBuf,
    },
}

impl Target {
    /// The config file of `ct`.
    pub fn config_path(&self, ct: &CtRef) -> PathBuf {
        match self {
            Target::Pve => PathBuf::from(format!("/etc/pve/lxc/{ct}.conf")),
            Target::Lxc { lxcpath } => lxcpath.join(ct.as_str()).join("config"),
        }
    }

    /// The lock held while the config is edited (Proxmox's own for PVE).
    pub fn lock_path(&self, ct: &CtRef) -> PathBuf {
        match self {
            Target::Pve => PathBuf::from(format!("/run/lock/lxc/pve-config-{ct}.lock")),
            Target::Lxc { .. } => PathBuf::from(format!("/run/lock/phoenix-gpu/lxc-{ct}.lock")),
        }
    }

    /// The config dialect.
    pub fn dialect(&self) -> lxc_conf::Dialect {
        match self {
            Target::Pve => lxc_conf::Dialect::Pve,
            Target::Lxc { .. } => lxc_conf::Dialect::Lxc,
        }
    }
}

/// How device passthrough is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `lxc.cgroup2.devices.allow` + `lxc.mount.entry` lines.
    Raw,
    /// Proxmox 8.1+ `devN:` entries.
    Dev,
    /// `dev` on Proxmox 8.1 or newer, `raw` otherwise and always on plain LXC.
    Auto,
}

/// How the container gets its driver userspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// NVIDIA's `.run` installer, at the host module's version.
    Runfile,
    /// Read-only bind mounts of the host's own userspace.
    HostLibs,
    /// Devices only.
    None,
}

/// Which userspace version is wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionWanted {
    /// The host module's version.
    Auto,
    /// This exact version (must equal the host's unless forced).
    Exact(DriverVersion),
}

/// Where the runfile comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunfileSource {
    /// URL of the `.run` file; `None`: NVIDIA's usual pattern for the version.
    pub url: Option<String>,
    /// Expected SHA-256 (hex); `None`: the `.sha256sum` published beside the file.
    pub sha256: Option<String>,
}

/// When the container is restarted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestartPolicy {
    /// Never restart, even when the config changed.
    pub no_restart: bool,
    /// Start a stopped container.
    pub start_if_stopped: bool,
    /// How long to wait until it is up.
    pub timeout: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            no_restart: false,
            start_if_stopped: false,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Everything `plan` and `apply` need to know about one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Request {
    /// The container.
    #[serde(serialize_with = "ser_ct")]
    pub ct: CtRef,
    /// The GPUs to give it.
    pub gpus: GpuSelection,
    /// How passthrough is written.
    pub mode: Mode,
    /// How the userspace is provided.
    pub strategy: Strategy,
    /// The userspace version wanted.
    pub driver_version: VersionWanted,
    /// Accept a version that differs from the host's (with a notice).
    pub force_version: bool,
    /// Also pass the MIG capability nodes.
    pub mig: bool,
    /// CUDA toolkit version (`12.8`), `None` for none.
    pub cuda: Option<String>,
    /// Extra apt packages such as `nvtop`.
    pub tools: Vec<String>,
    /// Where the runfile comes from.
    pub runfile: RunfileSource,
    /// The CUDA apt repository URL (`.../repos/ubuntu2404/x86_64/`), `None`: derived from the
    /// container's distribution.
    pub repo_url: Option<String>,
    /// Stop after the config step.
    pub config_only: bool,
    /// Restart behaviour.
    pub restart: RestartPolicy,
    /// Compute and report, change nothing.
    pub dry_run: bool,
}

impl Request {
    /// A request with the defaults of the CLI: `--mode auto --strategy runfile
    /// --driver-version auto`, no CUDA, no tools.
    pub fn new(ct: CtRef, gpus: GpuSelection) -> Request {
        Request {
            ct,
            gpus,
            mode: Mode::Auto,
            strategy: Strategy::Runfile,
            driver_version: VersionWanted::Auto,
            force_version: false,
            mig: false,
            cuda: None,
            tools: Vec::new(),
            runfile: RunfileSource::default(),
            repo_url: None,
            config_only: false,
            restart: RestartPolicy::default(),
            dry_run: false,
        }
    }
}

fn ser_ct<S: serde::Serializer>(ct: &CtRef, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(ct.as_str())
}
