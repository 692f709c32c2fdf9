//! Typed errors of the domain, and the kind each one is (the CLI maps kinds to exit codes).

use std::path::PathBuf;

use exec_backend::ExecError;
use serde::Serialize;

/// What kind of failure an [`Error`] is; an embedding tool matches on it instead of parsing
/// messages (or matches on the [`Error`] variant for the finer cause).
///
/// The `phoenix-gpu` binary maps each kind to one exit code, in one table
/// (`crates/cli/src/exit.rs`), the orchestrator's codes:
///
/// | kind | exit code | [`Error`] variants |
/// |---|---|---|
/// | (success) | 0 | |
/// | [`Internal`](ErrorKind::Internal) | 1 | `Parse`, `Exec` with another backend error |
/// | [`BadInput`](ErrorKind::BadInput) | 2 | `BadInput` (and every command-line parse error) |
/// | [`CtNotFound`](ErrorKind::CtNotFound) | 3 | `CtNotFound`, `Exec` with `ExecError::CtNotFound` |
/// | [`ConfigMissing`](ErrorKind::ConfigMissing) | 4 | `ConfigUnreadable` |
/// | [`Install`](ErrorKind::Install) | 5 | `Install` |
/// | [`Restart`](ErrorKind::Restart) | 6 | `Restart` |
/// | [`Verify`](ErrorKind::Verify) | 7 | `Verify` |
/// | [`HostPrecondition`](ErrorKind::HostPrecondition) | 8 | `NoDriver`, `GpuNotPresent`, `NodeMissing`, `VersionMismatch` |
/// | [`Locked`](ErrorKind::Locked) | 9 | `Locked`, `LockBusy`, `Exec` with a lock timeout or conflict |
/// | [`Drift`](ErrorKind::Drift) | 10 | `Drift` (and `check` finding drift) |
///
/// ```
/// use gpu_core::{Error, ErrorKind};
///
/// let e = Error::GpuNotPresent { wanted: "3".into(), available: "0, 1".into() };
/// assert_eq!(e.kind(), ErrorKind::HostPrecondition);
/// assert!(matches!(e, Error::GpuNotPresent { .. }));
/// ```
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
    /// The config is locked (`lock:` set, or the lock was not acquired in time).
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
        /// Which input: `GPU selection`, `driver version`, `CTID`, ...
        what: &'static str,
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
    #[error("requested driver version {wanted} differs from the host's kernel module {host}; the container's userspace must match the module (use --driver-version auto, or --force-version to override)")]
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
    /// The config carries `lock:`.
    #[error("container {ct} is locked ({lock}); wait for the running task or clear it with `pct unlock {ct}`")]
    Locked {
        /// The container.
        ct: String,
        /// The lock value.
        lock: String,
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
    #[error("{what} failed in container {ct}: {detail}")]
    Install {
        /// The container.
        ct: String,
        /// What was installed: `NVIDIA userspace 580.159.04`, `CUDA 12.8`, `tools`.
        what: String,
        /// What went wrong, with the tail of the log where there is one.
        detail: String,
    },
    /// The container could not be restarted or started.
    #[error("restarting container {ct} failed: {detail}")]
    Restart {
        /// The container.
        ct: String,
        /// What went wrong.
        detail: String,
    },
    /// Verification inside the container failed.
    #[error("verification failed in container {ct}: {detail}")]
    Verify {
        /// The container.
        ct: String,
        /// What was seen against what was expected.
        detail: String,
    },
    /// `check` found drift (carried by fleet and monitoring callers that want an error).
    #[error("container {ct} has drifted: {detail}")]
    Drift {
        /// The container.
        ct: String,
        /// What drifted.
        detail: String,
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
    /// Something the host reported could not be understood.
    #[error("cannot understand {what}: {detail}")]
    Parse {
        /// Which file or output.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

impl Error {
    /// The kind of this error (one exit code per kind in the CLI).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadInput { .. } => ErrorKind::BadInput,
            Error::NoDriver { .. }
            | Error::GpuNotPresent { .. }
            | Error::NodeMissing { .. }
            | Error::VersionMismatch { .. } => ErrorKind::HostPrecondition,
            Error::CtNotFound { .. } => ErrorKind::CtNotFound,
            Error::ConfigUnreadable { .. } => ErrorKind::ConfigMissing,
            Error::Locked { .. } | Error::LockBusy { .. } => ErrorKind::Locked,
            Error::Install { .. } => ErrorKind::Install,
            Error::Restart { .. } => ErrorKind::Restart,
            Error::Verify { .. } => ErrorKind::Verify,
            Error::Drift { .. } => ErrorKind::Drift,
            Error::Exec { source, .. } => match source {
                ExecError::CtNotFound { .. } => ErrorKind::CtNotFound,
                ExecError::LockTimeout { .. } | ExecError::Conflict { .. } => ErrorKind::Locked,
                // A node that cannot be reached (address, host key, authorization).
                ExecError::Ssh { .. } => ErrorKind::HostPrecondition,
                _ => ErrorKind::Internal,
            },
            Error::Parse { .. } => ErrorKind::Internal,
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
