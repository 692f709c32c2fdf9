use std::path::PathBuf;
use std::time::Duration;

use crate::ExitStatus;

/// What went wrong reaching a host or a container.
///
/// `target` names where the command ran: `localhost`, an SSH node, or `CT 101`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The program could not be started.
    #[error("cannot start {argv:?} on {target}")]
    Spawn {
        /// Where.
        target: String,
        /// The argv.
        argv: Vec<String>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command ran past its timeout and its process group was killed.
    #[error("{argv:?} on {target} timed out after {after:?} and was killed")]
    Timeout {
        /// Where.
        target: String,
        /// The argv.
        argv: Vec<String>,
        /// The timeout.
        after: Duration,
    },
    /// The command exited with a non-zero status.
    #[error("{argv:?} on {target} failed with {status}: {stderr_tail}")]
    Failed {
        /// Where.
        target: String,
        /// The argv.
        argv: Vec<String>,
        /// How it ended.
        status: ExitStatus,
        /// The last bytes of stderr.
        stderr_tail: String,
    },
    /// A file or directory does not exist.
    #[error("{} does not exist on {target}", path.display())]
    NotFound {
        /// Where.
        target: String,
        /// The path.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{op} {} on {target}", path.display())]
    Io {
        /// Where.
        target: String,
        /// What was tried: `read`, `write`, `rename`, ...
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock was not acquired in time.
    #[error("lock {} on {target} not acquired within {after:?}: another process holds it", path.display())]
    LockTimeout {
        /// Where.
        target: String,
        /// The lock path.
        path: PathBuf,
        /// How long it waited.
        after: Duration,
    },
    /// The file changed between read and write (`WriteOptions::expect_previous`).
    #[error("{} on {target} changed since it was read; nothing was written, run again", path.display())]
    Conflict {
        /// Where.
        target: String,
        /// The path.
        path: PathBuf,
    },
    /// The container does not exist.
    #[error("container {ct} does not exist on {target}")]
    CtNotFound {
        /// Where.
        target: String,
        /// The container.
        ct: String,
    },
    /// The SSH transport failed (connect, authentication, host key, lost connection).
    #[error("ssh to {target}: {detail}")]
    Ssh {
        /// The node.
        target: String,
        /// What failed.
        detail: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The command cannot be run as given: empty argv, a NUL byte in an argument or in the
    /// environment, an environment name with `=`.
    #[error("invalid command {argv:?} for {target}: {detail}")]
    InvalidCmd {
        /// Where it was to run.
        target: String,
        /// The argv.
        argv: Vec<String>,
        /// What is wrong.
        detail: String,
    },
    /// The backend cannot do this (for example container lifecycle over plain SSH).
    #[error("{what} is not supported by {backend} for {target}: {hint}")]
    Unsupported {
        /// Where.
        target: String,
        /// The backend.
        backend: &'static str,
        /// The operation.
        what: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// A backend's output could not be understood.
    #[error("unexpected output from {what} on {target}: {detail}")]
    Protocol {
        /// Where.
        target: String,
        /// Which command.
        what: String,
        /// What was seen.
        detail: String,
    },
}
