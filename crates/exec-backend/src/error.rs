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
    /// The path is not a regular file (a symbolic link, a FIFO, a directory, a device, a
    /// socket): nothing is read from it or written over it, and a link is never followed.
    #[error("{} on {target} is {what}, not a regular file; it was not read or written", path.display())]
    NotRegular {
        /// Where.
        target: String,
        /// The path.
        path: PathBuf,
        /// What it is: `a symbolic link`, `a FIFO`, `a directory`, ...
        what: &'static str,
    },
    /// The file is larger than a read takes.
    #[error("{} on {target} is larger than {limit} bytes, more than such a file ever holds; it was not read", path.display())]
    TooLarge {
        /// Where.
        target: String,
        /// The path.
        path: PathBuf,
        /// The most bytes a read takes.
        limit: u64,
    },
    /// A read got no answer in time (a hung file system, a blocking kernel file).
    #[error("reading {} on {target} gave no answer within {after:?}; the file system may hang", path.display())]
    ReadTimeout {
        /// Where.
        target: String,
        /// The path.
        path: PathBuf,
        /// How long it waited.
        after: Duration,
    },
    /// A write failed because the file system is read-only. Under `/etc/pve` that is Proxmox's
    /// cluster file system without quorum.
    #[error("{}", read_only_message(target, path))]
    ReadOnly {
        /// Where.
        target: String,
        /// The path written.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A write failed because the disk is full (or the quota is reached).
    #[error("the disk holding {} on {target} is full; free some space and run again (nothing was changed)", path.display())]
    NoSpace {
        /// Where.
        target: String,
        /// The path written.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A path leads out of the root the backend keeps every path under (a symbolic link to
    /// somewhere else).
    #[error("{} on {target} leads out of {} through a symbolic link; nothing outside it is read or written", path.display(), root.display())]
    OutsideRoot {
        /// Where.
        target: String,
        /// The host path.
        path: PathBuf,
        /// The root.
        root: PathBuf,
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
    /// An SSH destination that is not one (see [`Destination`](crate::ssh::Destination)):
    /// nothing was run.
    #[error("invalid ssh destination {dest:?}: {detail}")]
    InvalidDestination {
        /// The destination as given.
        dest: String,
        /// What is wrong and what is accepted.
        detail: &'static str,
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

/// Whether `path` is on Proxmox's cluster file system.
pub(crate) fn is_pmxcfs_path(path: &std::path::Path) -> bool {
    path.starts_with("/etc/pve")
}

fn read_only_message(target: &str, path: &std::path::Path) -> String {
    if is_pmxcfs_path(path) {
        format!(
            "{} on {target} cannot be written: /etc/pve is read-only, which it is when this \
             node is not part of a quorate cluster; check `pvecm status` and run again once the \
             cluster has quorum (nothing was changed)",
            path.display()
        )
    } else {
        format!(
            "{} on {target} is on a read-only file system (nothing was changed)",
            path.display()
        )
    }
}
