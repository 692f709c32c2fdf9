//! What a caller asks for: which container, which GPUs, how.

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Input, Result};
use crate::orchestrator::OrchestratorConfig;
use crate::select::GpuSelection;
use crate::values::{CtId, CudaVersion, HttpUrl, PackageName, Sha256};
use crate::version::VersionWanted;

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// NVIDIA's `.run` installer, at the host module's version (the default).
    #[default]
    Runfile,
    /// Read-only bind mounts of the host's own userspace.
    HostLibs,
    /// Devices only.
    None,
}

/// Where the runfile comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunfileSource {
    /// URL of the `.run` file; `None`: NVIDIA's usual pattern for the version.
    pub url: Option<HttpUrl>,
    /// Expected SHA-256; `None`: the `.sha256sum` published beside the file.
    pub sha256: Option<Sha256>,
}

/// When the container is restarted, and how a running container gets a changed config.
///
/// A running container whose change is only in device nodes (another GPU, a GPU added or
/// taken away, a repaired uvm major) is changed live, without a restart; anything else that a
/// running container cannot take (bind mounts of the host's userspace coming or going) needs a
/// restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestartPolicy {
    /// Never restart, even when the config changed (a live change still happens).
    pub no_restart: bool,
    /// Restart a running container whose config changed even when the change could be made
    /// live.
    pub always: bool,
    /// Take devices away from a running container even while its processes hold them open;
    /// they keep their open handles until they exit. Otherwise such a change is refused
    /// ([`Error::DevicesHeld`]).
    pub take_held: bool,
    /// Start a stopped container.
    pub start_if_stopped: bool,
    /// How long to wait until it is up.
    pub timeout: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            no_restart: false,
            always: false,
            take_held: false,
            start_if_stopped: false,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Everything `plan` and `apply` need to know about one container. Every field is a
/// validated value, so a request cannot hold an invalid one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Request {
    /// The container.
    pub ct: CtId,
    /// The GPUs to give it.
    pub gpus: GpuSelection,
    /// How passthrough is written.
    pub mode: Mode,
    /// How the userspace is provided; `None`: as the container has it, read back from its
    /// config (`host-libs` when it bind-mounts the host's userspace, else `runfile`).
    pub strategy: Option<Strategy>,
    /// The userspace version wanted.
    pub driver_version: VersionWanted,
    /// Accept a version that differs from the host's (with a notice).
    pub force_version: bool,
    /// Also pass the MIG capability nodes.
    pub mig: bool,
    /// CUDA toolkit version, `None` for none.
    pub cuda: Option<CudaVersion>,
    /// Extra apt packages such as `nvtop`.
    pub tools: Vec<PackageName>,
    /// Where the runfile comes from.
    pub runfile: RunfileSource,
    /// The CUDA apt repository URL (`.../repos/ubuntu2404/x86_64/`), `None`: derived from the
    /// container's distribution.
    pub repo_url: Option<HttpUrl>,
    /// Stop after the config step.
    pub config_only: bool,
    /// Restart behaviour.
    pub restart: RestartPolicy,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Also take out allow rules of doubtful origin: rules for a character major no driver
    /// holds now and the node record never saw NVIDIA hold (they may be an NVIDIA major of an
    /// earlier boot, or a rule for a module that is not loaded). Kept otherwise.
    pub remove_doubtful: bool,
}

impl Request {
    /// A request with the defaults: passthrough mode `auto`, the strategy the container has
    /// (`runfile` unless it binds the host's userspace), the host module's driver version, no
    /// CUDA, no tools.
    pub fn new(ct: CtId, gpus: GpuSelection) -> Request {
        Request {
            ct,
            gpus,
            mode: Mode::Auto,
            strategy: None,
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
            remove_doubtful: false,
        }
    }

    /// The strategy asked for, else the default, `runfile`. The engine fills in a strategy
    /// the request leaves open from the container's config before any container step runs,
    /// so the steps see the one the config is written for.
    pub fn strategy_or_default(&self) -> Strategy {
        self.strategy.unwrap_or_default()
    }
}

/// What a caller asks of each container of a `plan`, `apply` or `verify`, before the
/// orchestrator's config fills in what it leaves open: the GPUs (its `gpu_assignment`), the
/// driver version (`nvidia_driver_version`), the runfile URL (`nvidia_runfile_url`) and the
/// CUDA repository (`nvidia_repo_url`). What the template gives wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTemplate {
    /// The GPUs; `None`: the container's `gpu_assignment`.
    pub gpus: Option<GpuSelection>,
    /// How passthrough is written.
    pub mode: Mode,
    /// How the userspace is provided; `None`: as each container has it.
    pub strategy: Option<Strategy>,
    /// The userspace version; `None`: the orchestrator's, else the host module's.
    pub driver_version: Option<VersionWanted>,
    /// Accept a version that differs from the host's.
    pub force_version: bool,
    /// Also pass the MIG capability nodes.
    pub mig: bool,
    /// CUDA toolkit version.
    pub cuda: Option<CudaVersion>,
    /// Extra apt packages.
    pub tools: Vec<PackageName>,
    /// The runfile's URL; `None`: the orchestrator's, else NVIDIA's.
    pub runfile_url: Option<HttpUrl>,
    /// The runfile's SHA-256.
    pub runfile_sha256: Option<Sha256>,
    /// The CUDA repository; `None`: the orchestrator's, else the distribution's.
    pub repo_url: Option<HttpUrl>,
    /// Stop after the config step.
    pub config_only: bool,
    /// Restart behaviour.
    pub restart: RestartPolicy,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Also take out allow rules of doubtful origin ([`Request::remove_doubtful`]).
    pub remove_doubtful: bool,
}

impl Default for RequestTemplate {
    fn default() -> RequestTemplate {
        RequestTemplate {
            gpus: None,
            mode: Mode::Auto,
            strategy: None,
            driver_version: None,
            force_version: false,
            mig: false,
            cuda: None,
            tools: Vec::new(),
            runfile_url: None,
            runfile_sha256: None,
            repo_url: None,
            config_only: false,
            restart: RestartPolicy::default(),
            dry_run: false,
            remove_doubtful: false,
        }
    }
}

impl RequestTemplate {
    /// The request for `ct`, with the orchestrator config's values where the template has
    /// none. No GPUs from either is [`Error::BadInput`]; so is an invalid value in the
    /// orchestrator config ([`Error::OrchestratorValue`]).
    pub fn request(&self, ct: CtId, orch: Option<&OrchestratorConfig>) -> Result<Request> {
        let gpus = match (&self.gpus, orch) {
            (Some(g), _) => Some(g.clone()),
            (None, Some(o)) => o.gpus(&ct)?,
            (None, None) => None,
        };
        let gpus = gpus.ok_or_else(|| Error::BadInput {
            what: Input::GpuSelection,
            value: String::new(),
            hint: format!(
                "none given: name the GPUs for container {ct}, or give an orchestrator config with its gpu_assignment"
            ),
        })?;
        let mut r = Request::new(ct, gpus);
        r.mode = self.mode;
        r.strategy = self.strategy;
        r.driver_version = match (&self.driver_version, orch) {
            (Some(v), _) => v.clone(),
            (None, Some(o)) => o.driver_version()?.unwrap_or(VersionWanted::Auto),
            (None, None) => VersionWanted::Auto,
        };
        r.force_version = self.force_version;
        r.mig = self.mig;
        r.cuda = self.cuda.clone();
        r.tools = self.tools.clone();
        r.runfile = RunfileSource {
            url: match (&self.runfile_url, orch) {
                (Some(u), _) => Some(u.clone()),
                (None, Some(o)) => o.runfile_url()?,
                (None, None) => None,
            },
            sha256: self.runfile_sha256.clone(),
        };
        r.repo_url = match (&self.repo_url, orch) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(o)) => o.repo_url()?,
            (None, None) => None,
        };
        r.config_only = self.config_only;
        r.restart = self.restart.clone();
        r.dry_run = self.dry_run;
        r.remove_doubtful = self.remove_doubtful;
        Ok(r)
    }
}
