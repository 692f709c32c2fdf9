//! Typed errors of the domain, and the kind each one is (the CLI maps kinds to exit codes).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use exec_backend::{ExecError, ExitStatus};
use serde::Serialize;

use crate::finding::Finding;

/// What kind of failure an [`Error`] is; an embedding tool matches on it instead of parsing
/// messages (or matches on the [`Error`] variant for the finer cause).
///
/// The `phoenix-gpu` binary maps each kind to one exit code, in one table
/// (`crates/cli/src/exit.rs`), the orchestrator's codes:
///
/// | kind | exit code | [`Error`] variants |
/// |---|---|---|
/// | (success) | 0 | |
/// | [`Internal`](ErrorKind::Internal) | 1 | `Internal`, `Parse`, `Exec` and `PrepareFailed` with another backend error |
/// | [`BadInput`](ErrorKind::BadInput) | 2 | `BadInput`, `OrchestratorConfig`, `NotLxcConfig`, `NoOrchestratorConfig`, `OrchestratorValue` (and every command-line parse error) |
/// | [`CtNotFound`](ErrorKind::CtNotFound) | 3 | `CtNotFound`, `Exec` with `ExecError::CtNotFound` |
/// | [`ConfigMissing`](ErrorKind::ConfigMissing) | 4 | `ConfigUnreadable`, `ConfigGarbled` |
/// | [`Install`](ErrorKind::Install) | 5 | `Install` |
/// | [`Restart`](ErrorKind::Restart) | 6 | `Restart` |
/// | [`Verify`](ErrorKind::Verify) | 7 | `Verify` |
/// | [`HostPrecondition`](ErrorKind::HostPrecondition) | 8 | `NoDriver`, `GpuNotPresent`, `GpuGone`, `NodeMissing`, `HostUserspaceMissing`, `VersionMismatch`, `PrepareFolderMissing`, `HookscriptInUse`, `BadInventory`, `Exec` with an SSH error, a host file that is not a regular file, too large or hangs, a read-only or full file system |
/// | [`Locked`](ErrorKind::Locked) | 9 | `Locked`, `LockBusy`, `PendingChange`, `DevicesHeld`, `Exec` with a lock timeout or conflict |
/// | [`Drift`](ErrorKind::Drift) | 10 | `Drift` (and `check` finding drift) |
///
/// ```
/// use gpu_core::{Error, ErrorKind};
///
/// let e = Error::GpuNotPresent { wanted: "3".into(), available: "0, 1".into() };
/// assert_eq!(e.kind(), ErrorKind::HostPrecondition);
/// assert!(matches!(e, Error::GpuNotPresent { .. }));
/// ```
///
/// Kinds are ordered from the least to the worst outcome in the order of those exit codes
/// (`Internal` < `BadInput` < ... < `Drift`), so the worst of several outcomes is the
/// greatest kind, and its exit code the highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad arguments or input values.
    ///
    /// Exit code 2.
    BadInput,
    /// The container does not exist.
    ///
    /// Exit code 3.
    CtNotFound,
    /// The container's config is missing or unreadable.
    ///
    /// Exit code 4.
    ConfigMissing,
    /// Installing the userspace, CUDA or a tool failed.
    ///
    /// Exit code 5.
    Install,
    /// Restarting (or starting) the container failed.
    ///
    /// Exit code 6.
    Restart,
    /// Verification inside the container failed.
    ///
    /// Exit code 7.
    Verify,
    /// A host precondition failed: no driver, GPU not present, node missing, version mismatch.
    ///
    /// Exit code 8.
    HostPrecondition,
    /// The config is locked (`lock:` set, or the lock was not acquired in time), a pending
    /// change must be settled first, or a device to take away from a running container is
    /// busy (held open by a process in it).
    ///
    /// Exit code 9.
    Locked,
    /// `check` found drift.
    ///
    /// Exit code 10.
    Drift,
    /// Anything else: a bug, or a failure of the machinery itself.
    ///
    /// Exit code 1.
    Internal,
}

/// A failure of a gpu-core operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input value is malformed.
    #[error("invalid {what} {value:?}: {hint}")]
    BadInput {
        /// Which input.
        what: Input,
        /// The value as given.
        value: String,
        /// What is wrong and what is accepted.
        hint: String,
    },
    /// No NVIDIA kernel module on the host.
    #[error("the NVIDIA kernel module is not loaded on this host ({host}); load it (modprobe nvidia) or install the driver first")]
    NoDriver {
        /// The host.
        host: String,
    },
    /// A selected GPU is not on the host.
    #[error("GPU {wanted} is not on this host; it has: {available}")]
    GpuNotPresent {
        /// The selector as given.
        wanted: String,
        /// The GPUs the host has, one per entry, as `index (uuid, bus id)`.
        available: String,
    },
    /// A device node the passthrough needs is missing on the host.
    #[error("{} is missing on the host; {hint}", path.display())]
    NodeMissing {
        /// The node.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
    /// The requested driver version differs from the host's kernel module.
    #[error("requested driver version {wanted} differs from the host's kernel module {host}; the container's userspace must match the module")]
    VersionMismatch {
        /// What was asked for.
        wanted: String,
        /// What the host runs.
        host: String,
    },
    /// The container does not exist.
    #[error("container {ct} does not exist ({})", path.display())]
    CtNotFound {
        /// The container.
        ct: String,
        /// Where its config was looked for.
        path: PathBuf,
    },
    /// The config cannot be read.
    #[error("cannot read the config of container {ct} at {}", path.display())]
    ConfigUnreadable {
        /// The container.
        ct: String,
        /// The config path.
        path: PathBuf,
        /// Why.
        #[source]
        source: ExecError,
    },
    /// The config file holds something that is not a container config (NUL bytes from a
    /// crash, no config line, more junk than config lines); nothing is changed.
    #[error("the config of container {ct} at {} is not a container config: {problem}; nothing was changed: restore it from one of the backups in {} (or from a backup of the container)", path.display(), backups.display())]
    ConfigGarbled {
        /// The container.
        ct: String,
        /// The config path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// Where the tool keeps this container's backups.
        backups: PathBuf,
    },
    /// The config carries `lock:`.
    #[error("container {ct} is locked ({lock}); wait for the running task or clear it with `pct unlock {ct}`")]
    Locked {
        /// The container.
        ct: String,
        /// The lock value.
        lock: String,
    },
    /// The config's `[pve:pending]` section, which Proxmox applies at the next start, would
    /// change the container's NVIDIA devices in a way no edit of the main section can settle
    /// (a pending `devN` or raw line passes an NVIDIA device nobody asked for, or pending raw
    /// lines take the place of the main section's). Nothing was changed.
    #[error("container {ct} has a pending change that Proxmox applies at its next start and that would change its NVIDIA devices: {}; apply it (restart the container) or revert it (`pct set {ct} --revert {}`) first", lines.join("; "), keys.join(","))]
    PendingChange {
        /// The container.
        ct: String,
        /// The pending lines in the way, each with what it passes.
        lines: Vec<String>,
        /// The pending keys to revert (`dev3`, `lxc`).
        keys: Vec<String>,
    },
    /// The config lock could not be taken, or the config changed under us.
    #[error("cannot update the config of container {ct}")]
    LockBusy {
        /// The container.
        ct: String,
        /// The lock or conflict error.
        #[source]
        source: ExecError,
    },
    /// Installing something in the container failed.
    #[error("{what} failed in container {ct}")]
    Install {
        /// The container.
        ct: String,
        /// What was installed: `NVIDIA userspace 580.159.04`, `CUDA 12.8`, `tools (nvtop)`.
        what: String,
        /// Why.
        #[source]
        cause: InstallCause,
    },
    /// The container could not be restarted or started.
    #[error("restarting container {ct} failed")]
    Restart {
        /// The container.
        ct: String,
        /// Why.
        #[source]
        cause: RestartCause,
    },
    /// Verification inside the container failed.
    #[error("verification failed in container {ct}")]
    Verify {
        /// The container.
        ct: String,
        /// What was seen against what was expected.
        #[source]
        cause: VerifyCause,
    },
    /// `check` found drift (for fleet and monitoring callers that want an error).
    #[error("container {ct} has drifted: {}", summary(findings))]
    Drift {
        /// The container.
        ct: String,
        /// What drifted.
        findings: Vec<Finding>,
    },
    /// A host or container operation failed where no more specific error applies.
    #[error("{context}")]
    Exec {
        /// What was being done.
        context: String,
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// A container's config passes GPUs (by device minor) that the host does not have: a GPU
    /// was removed or moved, so its assignment cannot be re-applied as it is.
    #[error("the config of container {ct} passes GPU minor(s) {minors:?}, which this host does not have")]
    GpuGone {
        /// The container.
        ct: String,
        /// The minors no GPU of the host has.
        minors: Vec<u32>,
    },
    /// The host's own driver userspace (for the `host-libs` strategy) is not there.
    #[error("the host's userspace of driver {version} was not found (looked for libnvidia-ml.so.{version} in {}); install it on the host or use the runfile strategy", looked_in.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))]
    HostUserspaceMissing {
        /// The module's version.
        version: String,
        /// The directories looked in.
        looked_in: Vec<PathBuf>,
    },
    /// What the host's driver reports does not hold together: a file cut short or holding
    /// junk where numbers belong, two GPUs with one device minor, a GPU minor that is another
    /// node's.
    #[error("the host's NVIDIA driver information cannot be right: {problem} (in {}); reload the NVIDIA driver or reboot the host, then look at these files", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    BadInventory {
        /// What is wrong.
        problem: String,
        /// The host files that say so.
        files: Vec<PathBuf>,
    },
    /// Something the host reported could not be understood.
    #[error("cannot understand {what}: {detail}")]
    Parse {
        /// Which file or output.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The orchestrator's config is not its JSON.
    #[error("the orchestrator config is not valid phoenix_lxc_configs JSON")]
    OrchestratorConfig {
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The orchestrator config is JSON, but not `phoenix_lxc_configs.json` (it has no
    /// `lxc_configs` object): the hypervisor config, say.
    #[error("the orchestrator config has no lxc_configs object: it looks like {looks_like}; expected phoenix_lxc_configs.json, with lxc_configs keyed by CTID")]
    NotLxcConfig {
        /// What the file looks like instead.
        looks_like: String,
    },
    /// The containers of the orchestrator config are asked for, and no config was given.
    #[error("the containers of the orchestrator config are asked for, and no orchestrator config was given")]
    NoOrchestratorConfig,
    /// A value of the orchestrator's config is not valid.
    #[error("the orchestrator config's {field}{} is not valid", ct.as_deref().map(|c| format!(" of container {c}")).unwrap_or_default())]
    OrchestratorValue {
        /// The field: `gpu_assignment`, `nvidia_driver_version`, ...
        field: &'static str,
        /// The container whose block it is in, for a per-container field.
        ct: Option<String>,
        /// What is wrong with it.
        #[source]
        source: Box<Error>,
    },
    /// A container lives on another cluster node and there is no way to reach it.
    #[error("cluster node {node} cannot be reached: no connection to other nodes was set up")]
    NodeUnreachable {
        /// The node.
        node: String,
    },
    /// A folder the host preparation writes into does not exist; nothing was written.
    #[error("{} does not exist on this host ({which}); nothing was written", dir.display())]
    PrepareFolderMissing {
        /// The folder.
        dir: PathBuf,
        /// What it is for.
        which: PrepareFolder,
    },
    /// The host preparation failed after it had written files; they were put back.
    #[error("{doing} failed; {}", undo_note(undone, not_undone))]
    PrepareFailed {
        /// What failed: `writing /var/lib/vz/snippets/phoenix-gpu-hook.sh`, `systemctl ...`.
        doing: String,
        /// What was undone: `removed /etc/systemd/system/phoenix-gpu-nodes.service`.
        undone: Vec<String>,
        /// Files that could not be put back, with why.
        not_undone: Vec<String>,
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// The hookscript is to be deleted while containers' configs still name it; Proxmox
    /// refuses to start a container whose hookscript is missing.
    #[error("container(s) {} still name the hookscript {volid} (hookscript: in their config); Proxmox refuses to start a container whose hookscript is missing", cts.join(", "))]
    HookscriptInUse {
        /// The hookscript's volume id.
        volid: String,
        /// The containers, in id order.
        cts: Vec<String>,
    },
    /// A live change would take devices away from a running container while its processes
    /// hold them open: they would keep using the devices while new opens fail.
    #[error("processes in container {ct} hold devices that the change takes away: {}; stop them, or restart the container", holders.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    DevicesHeld {
        /// The container.
        ct: String,
        /// Who holds what.
        holders: Vec<Holder>,
    },
    /// A bug: something that cannot happen did (a task panicked).
    #[error("internal error: {what}; this is a bug")]
    Internal {
        /// What happened.
        what: String,
    },
}

impl ErrorKind {
    /// The place of a kind in the order of the orchestrator's exit codes.
    fn rank(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::BadInput => 2,
            ErrorKind::CtNotFound => 3,
            ErrorKind::ConfigMissing => 4,
            ErrorKind::Install => 5,
            ErrorKind::Restart => 6,
            ErrorKind::Verify => 7,
            ErrorKind::HostPrecondition => 8,
            ErrorKind::Locked => 9,
            ErrorKind::Drift => 10,
        }
    }
}

impl Ord for ErrorKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for ErrorKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Error {
    /// The kind of this error (one exit code per kind in the CLI).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadInput { .. }
            | Error::OrchestratorConfig { .. }
            | Error::NotLxcConfig { .. }
            | Error::NoOrchestratorConfig
            | Error::OrchestratorValue { .. } => ErrorKind::BadInput,
            Error::NoDriver { .. }
            | Error::GpuNotPresent { .. }
            | Error::NodeMissing { .. }
            | Error::VersionMismatch { .. } => ErrorKind::HostPrecondition,
            Error::CtNotFound { .. } => ErrorKind::CtNotFound,
            Error::ConfigUnreadable { .. } | Error::ConfigGarbled { .. } => {
                ErrorKind::ConfigMissing
            }
            Error::Locked { .. }
            | Error::LockBusy { .. }
            | Error::PendingChange { .. }
            | Error::DevicesHeld { .. } => ErrorKind::Locked,
            Error::Install { .. } => ErrorKind::Install,
            Error::Restart { .. } => ErrorKind::Restart,
            Error::Verify { .. } => ErrorKind::Verify,
            Error::Drift { .. } => ErrorKind::Drift,
            Error::Exec { source, .. } | Error::PrepareFailed { source, .. } => match source {
                ExecError::CtNotFound { .. } => ErrorKind::CtNotFound,
                ExecError::LockTimeout { .. } | ExecError::Conflict { .. } => ErrorKind::Locked,
                // A node that cannot be reached (address, host key, authorization).
                ExecError::Ssh { .. } => ErrorKind::HostPrecondition,
                // A host file that is not what it must be, or a host that cannot be written.
                ExecError::NotRegular { .. }
                | ExecError::TooLarge { .. }
                | ExecError::ReadTimeout { .. }
                | ExecError::OutsideRoot { .. }
                | ExecError::ReadOnly { .. }
                | ExecError::NoSpace { .. } => ErrorKind::HostPrecondition,
                ExecError::InvalidDestination { .. } => ErrorKind::BadInput,
                _ => ErrorKind::Internal,
            },
            Error::PrepareFolderMissing { .. } | Error::HookscriptInUse { .. } => {
                ErrorKind::HostPrecondition
            }
            Error::GpuGone { .. }
            | Error::BadInventory { .. }
            | Error::HostUserspaceMissing { .. }
            | Error::NodeUnreachable { .. } => ErrorKind::HostPrecondition,
            Error::Parse { .. } | Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// Wraps a backend error with what was being done.
    pub fn exec(context: impl Into<String>, source: ExecError) -> Error {
        Error::Exec {
            context: context.into(),
            source,
        }
    }
}

/// A process in a container that holds a device open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// Its pid, as the container sees it.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// The device: its node in the container (`/dev/nvidia0`), or `c MAJOR:MINOR`.
    pub device: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({}) holds {}", self.pid, self.comm, self.device)
    }
}

/// The result type of gpu-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The whole cause chain of an error, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Which input a [`Error::BadInput`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Input {
    /// A Proxmox VE container id.
    CtId,
    /// A plain-LXC container name.
    ContainerName,
    /// A GPU selection (`none`, `all`, indices, UUIDs, PCI bus ids).
    GpuSelection,
    /// A driver version (`580.159.04`, or `auto` where a wanted version is asked for).
    DriverVersion,
    /// A CUDA toolkit version (`12.8`).
    CudaVersion,
    /// A Debian package name (a tool).
    PackageName,
    /// A list of package names.
    ToolList,
    /// A SHA-256 checksum.
    Sha256,
    /// An `http://` or `https://` URL.
    Url,
    /// A URL whose last part must name the downloaded file.
    DownloadUrl,
    /// How passthrough is written (`dev` where it cannot be).
    Mode,
    /// A container's config the tool cannot edit as asked.
    ContainerConfig,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::CtId => "CTID",
            Input::ContainerName => "container name",
            Input::GpuSelection => "GPU selection",
            Input::DriverVersion => "driver version",
            Input::CudaVersion => "CUDA version",
            Input::PackageName => "package name",
            Input::ToolList => "tool list",
            Input::Sha256 => "SHA-256 checksum",
            Input::Url => "URL",
            Input::DownloadUrl => "download URL",
            Input::Mode => "mode",
            Input::ContainerConfig => "container config",
        })
    }
}

/// Why an install in a container (or the download for it on the host) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallCause {
    /// The container is not Debian or Ubuntu with apt.
    #[error("the container runs {system}{}; only Debian and Ubuntu containers (apt) are supported", if *apt_get { "" } else { " without apt-get" })]
    NotApt {
        /// The container's system: `alpine 3.20 (x86_64)`.
        system: String,
        /// Whether it has apt-get at all.
        apt_get: bool,
    },
    /// No CUDA repository is known for the container's distribution, and none was given.
    #[error("no CUDA repository is known for {system}")]
    NoCudaRepository {
        /// The container's system.
        system: String,
    },
    /// The container is not x86_64, and the runfile is.
    #[error("the container is {arch}; the runfile is for x86_64")]
    WrongArch {
        /// `uname -m` in the container.
        arch: String,
    },
    /// Too little room on the container's root disk.
    #[error("only {free_mib} MiB free on / in the container, the install needs about {need_mib} MiB; grow its root disk")]
    DiskSpace {
        /// Free space in MiB.
        free_mib: u64,
        /// What the install needs in MiB.
        need_mib: u64,
    },
    /// Copying a file into the container failed.
    #[error("pushing {file} into the container failed")]
    Push {
        /// The file's name.
        file: String,
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// A command could not be run (in the container or on the host).
    #[error("{doing} failed")]
    Run {
        /// What was being done: `running the installer`, `fetching ...`.
        doing: String,
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// A command ran and failed.
    #[error("{doing} failed ({status}): {output}")]
    Command {
        /// What was being done: `apt-get install nvtop`, `downloading URL`.
        doing: String,
        /// Its exit status.
        status: ExitStatus,
        /// The tail of what it printed.
        output: String,
    },
    /// NVIDIA's installer failed.
    #[error("the installer ended with {status}{}; {log_path} ends with: {log}", output.as_deref().map(|o| format!(" ({o})")).unwrap_or_default())]
    Installer {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of what it printed, if anything.
        output: Option<String>,
        /// The installer's log in the container.
        log_path: &'static str,
        /// The tail of that log, or why it cannot be read.
        log: String,
    },
    /// The host's libraries are not mounted in the container (`host-libs`).
    #[error("the host's libraries are not mounted in the container (is the config step's mount list in place and the container restarted?)")]
    HostLibsNotMounted,
    /// The checksum published beside a download could not be had.
    #[error("the checksum file {url} is not usable: {why}")]
    NoPublishedChecksum {
        /// The checksum file's URL.
        url: String,
        /// Why: curl's error, or what the file holds instead of a checksum.
        why: String,
    },
    /// A download's SHA-256 is not the expected one.
    #[error("checksum mismatch for {url}: expected {expected}, got {got}; the download was removed and nothing was installed")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The expected SHA-256.
        expected: String,
        /// The SHA-256 of what was downloaded.
        got: String,
    },
    /// A host tool did not do what it should have.
    #[error("{tool} {what}")]
    Unexpected {
        /// The tool: `sha256sum`, `curl`.
        tool: &'static str,
        /// What it did instead: `printed "..."`, `left no file at ...`.
        what: String,
    },
}

/// Why a restart (or start) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestartCause {
    /// Stopping the container failed.
    #[error("stop failed")]
    Stop {
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// Starting the container failed.
    #[error("start failed")]
    Start {
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// Starting failed because a device node the config passes is missing on the host (LXC's
    /// `Could not get mode or device ID`, `Failed to mount /dev/nvidia...`).
    #[error("start failed: a device node its config passes is missing on the host")]
    DeviceNodeMissing {
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// Reading the state while waiting failed.
    #[error("reading its state failed")]
    State {
        /// The backend error.
        #[source]
        source: ExecError,
    },
    /// It did not reach RUNNING in time.
    #[error("the {action} did not bring it to RUNNING within {}s", after.as_secs())]
    Timeout {
        /// `restart`, `start` or `wait`.
        action: &'static str,
        /// The limit.
        after: Duration,
    },
    /// It was in another state (STARTING, FROZEN, ...) and did not settle as running.
    #[error("it is {state} and did not reach RUNNING within {}s; resolve its state by hand", after.as_secs())]
    Unsettled {
        /// The state it was in.
        state: String,
        /// The limit.
        after: Duration,
    },
}

impl RestartCause {
    /// A failed start, as [`RestartCause::DeviceNodeMissing`] when LXC's error says a device
    /// node to bind is missing on the host.
    pub fn start(source: ExecError) -> RestartCause {
        let text = chain(&source);
        if text.contains("Could not get mode or device ID")
            || text.contains("Failed to mount /dev/nvidia")
        {
            RestartCause::DeviceNodeMissing { source }
        } else {
            RestartCause::Start { source }
        }
    }
}

/// How `nvidia-smi` failed, as far as its output tells. Each variant is recognised by the
/// message nvidia-smi prints for it (quoted in the variant's docs, with its exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmiFailure {
    /// `Failed to initialize NVML: Driver/library version mismatch` (exit 18; newer drivers add
    /// `NVML library version: X.Y`), or the kernel's `API mismatch`: the userspace differs
    /// from the loaded module.
    VersionMismatch,
    /// `Failed to initialize NVML: Insufficient Permissions`, or a device node that cannot be
    /// opened (`Permission denied`).
    NoPermission,
    /// `NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure
    /// that the latest NVIDIA driver is installed and running.` (exit 9, NVML's "driver not
    /// loaded"): `/dev/nvidiactl` is missing in the container (its config does not pass it,
    /// or the container was not restarted since), or the host's driver is not loaded.
    DriverUnreachable,
    /// `Failed to initialize NVML: Unknown Error` (exit 255): in a container, the device
    /// cgroup denies a node it has (allow lines missing, under the cgroup key the host's LXC
    /// ignores, or for a stale major).
    UnknownError,
    /// `NVIDIA-SMI couldn't find libnvidia-ml.so library in your system.` (exit 12): the
    /// userspace libraries are not on the container's loader path.
    LibraryMissing,
    /// Anything else (no devices, ...).
    Other,
}

impl SmiFailure {
    /// Classifies nvidia-smi's output.
    pub fn classify(output: &str) -> SmiFailure {
        if output.contains("Driver/library version mismatch") || output.contains("API mismatch") {
            SmiFailure::VersionMismatch
        } else if output.contains("Insufficient Permissions")
            || (output.contains("Permission denied") && output.contains("/dev/nvidia"))
        {
            SmiFailure::NoPermission
        } else if output.contains("couldn't communicate with the NVIDIA driver") {
            SmiFailure::DriverUnreachable
        } else if output.contains("Failed to initialize NVML: Unknown Error") {
            SmiFailure::UnknownError
        } else if output.contains("couldn't find libnvidia-ml.so") {
            SmiFailure::LibraryMissing
        } else {
            SmiFailure::Other
        }
    }
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyCause {
    /// There is no `nvidia-smi` in the container.
    #[error("nvidia-smi is not in the container's PATH; the driver userspace is missing")]
    SmiMissing,
    /// `nvidia-smi` failed.
    #[error("{output}; expected GPUs [{}] at driver {driver}", expected.join(", "))]
    SmiFailed {
        /// What the failure is, as far as its output tells.
        failure: SmiFailure,
        /// Its output on one line, with its exit status.
        output: String,
        /// The UUIDs of the GPUs expected.
        expected: Vec<String>,
        /// The host's driver version.
        driver: String,
    },
    /// What the container sees differs from what it was given.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Mismatch {
        /// Each difference.
        problems: Vec<VerifyProblem>,
    },
}

/// One difference between what the container sees and what it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyProblem {
    /// nvidia-smi lists other GPUs.
    #[error("nvidia-smi lists [{}], expected [{}] (missing [{}], not assigned [{}])", seen.join(", "), expected.join(", "), missing.join(", "), extra.join(", "))]
    WrongGpus {
        /// The UUIDs listed.
        seen: Vec<String>,
        /// The UUIDs expected.
        expected: Vec<String>,
        /// Expected, not listed.
        missing: Vec<String>,
        /// Listed, not assigned.
        extra: Vec<String>,
    },
    /// nvidia-smi reports another driver version than the host's module.
    #[error("nvidia-smi reports driver {reported}, the host's module is {host}")]
    DriverVersion {
        /// What nvidia-smi reports.
        reported: String,
        /// The host's module.
        host: String,
    },
    /// The container's userspace is another version than the host's module.
    #[error("the container's userspace is {found}, the host's module is {host}")]
    UserspaceVersion {
        /// The container's userspace version.
        found: String,
        /// The host's module.
        host: String,
    },
    /// A device node is missing in the container.
    #[error("{path} is missing")]
    NodeMissing {
        /// The node.
        path: String,
    },
    /// A device node is not a character device (the bind mount failed).
    #[error("{path} is not a character device (the bind mount failed)")]
    NotCharDevice {
        /// The node.
        path: String,
    },
    /// A device node has other numbers than the host's.
    #[error("{path} is {}, expected {}:{}", found.map_or_else(|| "of unknown numbers".to_owned(), |(a, b)| format!("{a}:{b}")), expected.0, expected.1)]
    WrongNumbers {
        /// The node.
        path: String,
        /// Its `(major, minor)`, when known.
        found: Option<(u32, u32)>,
        /// The host's.
        expected: (u32, u32),
    },
    /// The node of a GPU that is not assigned is there.
    #[error("{path} is present but GPU minor {minor} is not assigned")]
    Unassigned {
        /// The node.
        path: String,
        /// Its GPU minor.
        minor: u32,
    },
    /// The device cgroup refuses a node (`open` fails with `EPERM`): the uvm case, where
    /// nvidia-smi works and every CUDA program fails.
    #[error("{path} ({}:{}) cannot be opened in the container (EPERM: the device cgroup refuses it): {cause}", rdev.0, rdev.1)]
    NodeRefused {
        /// The node.
        path: String,
        /// Its `(major, minor)` on the host.
        rdev: (u32, u32),
        /// What the container's config says about it.
        cause: NodeRefusal,
    },
    /// A node opens to no device (`ENXIO`): no driver serves its numbers.
    #[error("{path} opens to no device (ENXIO): the host's driver does not serve its numbers")]
    NodeNoDevice {
        /// The node.
        path: String,
    },
    /// A node cannot be opened for another reason.
    #[error("{path} cannot be opened in the container ({errno})")]
    NodeOpen {
        /// The node.
        path: String,
        /// The errno name gpu-check gave (`EACCES`, ...).
        errno: String,
    },
    /// `libcuda.so.1` cannot be loaded, or is not the driver's.
    #[error("libcuda.so.1 {}", match error { Some(e) => format!("cannot be loaded in the container: {e}"), None => "in the container lacks the CUDA driver API".to_owned() })]
    CudaLibrary {
        /// The loader's error (`None`: it loaded but lacks the functions).
        error: Option<String>,
    },
    /// `cuInit` failed.
    #[error("CUDA does not initialise in the container (cuInit returned {result}){}", if *nodes_open { " although every passed device node opens; check that the host's nvidia-uvm module is loaded (nvidia-modprobe -u -c0) and that the container's libcuda is the host module's version" } else { "" })]
    CudaInit {
        /// The result: `999 CUDA_ERROR_UNKNOWN`.
        result: String,
        /// Whether every node opened (else the node problems are the reason).
        nodes_open: bool,
    },
    /// CUDA lists other GPUs than the assigned ones.
    #[error("CUDA sees [{}], expected [{}]", seen.join(", "), expected.join(", "))]
    CudaGpus {
        /// The UUIDs CUDA lists.
        seen: Vec<String>,
        /// The UUIDs expected.
        expected: Vec<String>,
    },
    /// nvidia-smi (or NVML) failed as well: the effect of the node problems reported before
    /// it.
    #[error("and so {output}")]
    Smi {
        /// How it failed, as far as its output tells.
        failure: SmiFailure,
        /// Its output on one line, with its exit status.
        output: String,
    },
    /// A context (or the 1 MiB round trip in it) failed on one GPU.
    #[error("CUDA {what} on device {index} ({uuid}) failed: {result}")]
    CudaContext {
        /// The CUDA ordinal.
        index: u32,
        /// Its UUID, when known.
        uuid: String,
        /// `context creation` or `1 MiB alloc/memset/read-back`.
        what: &'static str,
        /// The result.
        result: String,
    },
}

/// What the container's config says about a node the device cgroup refuses: the likely cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeRefusal {
    /// No allow line covers the node's numbers.
    #[error("the config has no allow line for c {major}:{minor} (nor c {major}:*)")]
    NoAllowLine {
        /// The node's major.
        major: u32,
        /// Its minor.
        minor: u32,
    },
    /// The allow line is written for the other cgroup version, which this host's LXC ignores.
    #[error("its allow line uses {key}, which this host's LXC ignores (it honours {honoured})")]
    WrongCgroupKey {
        /// The key used.
        key: String,
        /// The key the host honours.
        honoured: String,
    },
    /// The config allows a major no driver holds any more (the driver was reloaded and took
    /// another dynamic major, as nvidia-uvm does after a reboot).
    #[error("the config allows major {}, which no driver holds now; the node's major is {major} (a stale major after a driver reload or reboot)", stale.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    StaleMajor {
        /// The node's major now.
        major: u32,
        /// The stale majors the config allows.
        stale: Vec<u32>,
    },
    /// The config allows it: the container still runs with an older config.
    #[error("the config allows it, so the container runs with an older config; restart it")]
    NotApplied,
    /// The config could not be read.
    #[error("the container's config could not be read to say why")]
    Unknown,
}

/// A folder the host preparation writes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrepareFolder {
    /// `/etc/systemd/system`, for the boot unit.
    SystemdUnits,
    /// `/var/lib/vz/snippets`, the `local` storage's snippets folder, for the hookscript.
    Snippets,
}

impl fmt::Display for PrepareFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrepareFolder::SystemdUnits => {
                "systemd's folder for local units, where the boot unit goes"
            }
            PrepareFolder::Snippets => {
                "the snippets folder of Proxmox's local storage, where the hookscript goes"
            }
        })
    }
}

fn undo_note(undone: &[String], not_undone: &[String]) -> String {
    match (undone, not_undone) {
        ([], []) => "nothing had been written".to_owned(),
        (u, []) => format!("nothing is left changed ({})", u.join(", ")),
        (u, n) => format!(
            "{}could not put back {}: fix by hand",
            if u.is_empty() {
                String::new()
            } else {
                format!("{}; ", u.join(", "))
            },
            n.join(", ")
        ),
    }
}

fn summary(findings: &[Finding]) -> String {
    match findings {
        [] => "no findings".to_owned(),
        [one] => one.detail.clone(),
        [first, rest @ ..] => format!("{} (and {} more)", first.detail, rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::SmiFailure;

    /// nvidia-smi's own words for each failure (the stand-in's README names the sources).
    #[test]
    fn smi_failures_are_told_apart() {
        for (output, want) in [
            (
                "nvidia-smi (exit code 9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.",
                SmiFailure::DriverUnreachable,
            ),
            (
                "nvidia-smi (exit code 255): Failed to initialize NVML: Unknown Error",
                SmiFailure::UnknownError,
            ),
            (
                "nvidia-smi (exit code 18): Failed to initialize NVML: Driver/library version mismatch / NVML library version: 570.124",
                SmiFailure::VersionMismatch,
            ),
            (
                "Failed to initialize NVML: Insufficient Permissions",
                SmiFailure::NoPermission,
            ),
            (
                "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA Display Driver is properly installed and present in your system.",
                SmiFailure::LibraryMissing,
            ),
            ("No devices were found", SmiFailure::Other),
        ] {
            assert_eq!(SmiFailure::classify(output), want, "{output}");
        }
    }
}
