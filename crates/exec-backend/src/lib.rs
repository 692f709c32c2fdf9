//! Every way phoenix-gpu reaches a host and a container, behind two traits.
//!
//! - [`Host`]: the node that owns the GPUs and the container configs. It runs commands, reads
//!   and atomically writes files, lists directories with device numbers.
//! - [`ContainerExec`]: a way into a container: run a command inside, push a file in, read and
//!   change its state.
//!
//! A command is always a [`Cmd`]: an argv (never a shell string), an explicit environment, an
//! optional stdin and a timeout. Its [`Output`] comes back whatever the exit status; turn a
//! non-zero status into a typed error with [`Output::check`].
//!
//! Backends (each in its own module): [`LocalHost`], [`SshHost`], [`Pct<H>`](Pct),
//! [`LxcAttach<H>`](LxcAttach), [`SshContainer`]. With the `mock` feature, mockall's `MockHost`
//! and `MockContainerExec`. `Arc<dyn Host>` and `Arc<dyn ContainerExec>` are backends too, so
//! the binary picks one once and hands it on (`Pct<Arc<dyn Host>>` is a remote or local node).
//! Every process is started by [`process::run`]; the remote shell only ever sees argv quoted
//! by [`shell_join`].
//!
//! ```
//! use exec_backend::{Cmd, Host, LocalHost};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let host = LocalHost::new();
//! let cmd = Cmd::new(["printf", "%s", "hello world"]).env("LANG", "C");
//! let out = host.run(&cmd).await?.check(&host.name(), &cmd)?;
//! assert_eq!(out.stdout, b"hello world");
//! # Ok::<(), exec_backend::ExecError>(())
//! # }).unwrap();
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

mod error;
pub mod local;
pub mod lxc;
pub mod pct;
pub mod process;
pub mod quote;
mod rooted;
pub mod ssh;
pub mod ssh_container;

pub use error::ExecError;
pub use local::LocalHost;
pub use lxc::LxcAttach;
pub use pct::Pct;
pub use quote::{shell_join, shell_quote};
pub use ssh::{KnownHostsCheck, SshHost, SshOptions};
pub use ssh_container::SshContainer;

/// The default cap on captured stdout and on captured stderr, each.
pub const DEFAULT_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// A command: argv, explicit environment, optional stdin, timeout.
///
/// The child starts with an empty environment plus `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`
/// and `LC_ALL=C`, then [`Cmd::env`] on top, so that output is parseable and nothing of the
/// caller's environment leaks in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    /// Program and arguments. Never empty.
    pub argv: Vec<OsString>,
    /// Extra environment variables, on top of the fixed base.
    pub env: Vec<(OsString, OsString)>,
    /// Bytes written to the child's stdin, then stdin is closed. `None`: stdin is /dev/null.
    pub stdin: Option<Vec<u8>>,
    /// Kill the whole process group after this long. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Keep at most this many bytes of stdout and of stderr (the tail is dropped).
    pub output_cap: usize,
}

impl Cmd {
    /// A command from a program and its arguments.
    pub fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            stdin: None,
            timeout: None,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the bytes fed to stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = Some(timeout);
        self
    }

    /// The program name (first argv element), lossily as text.
    pub fn program(&self) -> String {
        self.argv
            .first()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Checks that the command can be run: a non-empty argv, no NUL byte in an argument or in
    /// the environment, environment names non-empty and without `=`.
    pub fn validate(&self, target: &str) -> Result<(), ExecError> {
        use std::os::unix::ffi::OsStrExt;
        if self.argv.is_empty() {
            return Err(self.invalid(target, "empty argv"));
        }
        if self.argv.iter().any(|a| a.as_bytes().contains(&0)) {
            return Err(self.invalid(target, "an argument contains a NUL byte"));
        }
        for (k, v) in &self.env {
            let k = k.as_bytes();
            if k.is_empty() || k.contains(&b'=') || k.contains(&0) {
                return Err(self.invalid(target, "an environment name is empty or has '=' or NUL"));
            }
            if v.as_bytes().contains(&0) {
                return Err(self.invalid(target, "an environment value contains a NUL byte"));
            }
        }
        Ok(())
    }

    /// An [`ExecError::InvalidCmd`] for this command.
    pub(crate) fn invalid(&self, target: &str, detail: &str) -> ExecError {
        ExecError::InvalidCmd {
            target: target.to_owned(),
            argv: self.display_argv(),
            detail: detail.to_owned(),
        }
    }

    /// The argv, lossily as text, for messages and logs.
    pub fn display_argv(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What a finished command gave back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured stdout, at most the command's cap.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the command's cap.
    pub stderr: Vec<u8>,
}

impl Output {
    /// A successful output with this stdout (handy for mocks and tests).
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Output {
        Output {
            status: ExitStatus::Code(0),
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    /// Stdout as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last `max` bytes of stderr as text, for error messages.
    pub fn stderr_tail(&self, max: usize) -> String {
        tail_text(&self.stderr, max)
    }

    /// `Ok(self)` on exit code 0, else [`ExecError::Failed`] naming `target` and the argv.
    pub fn check(self, target: &str, cmd: &Cmd) -> Result<Output, ExecError> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(ExecError::Failed {
                target: target.to_owned(),
                argv: cmd.display_argv(),
                status: self.status,
                stderr_tail: self.stderr_tail(2048),
            })
        }
    }
}

/// The last `max` bytes of `bytes` as lossy text, trimmed.
pub fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// The type of a directory entry or a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A socket, fifo or anything else.
    Other,
}

/// What `stat` (without following a final symlink) says about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// File type.
    pub kind: FileKind,
    /// Device numbers `(major, minor)` for character and block devices.
    pub rdev: Option<(u32, u32)>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (not the whole path).
    pub name: OsString,
    /// Its metadata (symlinks not followed).
    pub meta: FileMeta,
}

/// Which entries of a listing [`Host::read_dir_matching`] keeps: the names that start with
/// `prefix` and end with `suffix` (an empty one matches every name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NameMatch {
    /// What a kept name starts with.
    pub prefix: String,
    /// What a kept name ends with.
    pub suffix: String,
}

impl NameMatch {
    /// The names that start with `prefix`.
    pub fn starting(prefix: impl Into<String>) -> NameMatch {
        NameMatch {
            prefix: prefix.into(),
            suffix: String::new(),
        }
    }

    /// Whether `name` is kept (a name that is not UTF-8 is kept only by an empty match).
    pub fn matches(&self, name: &OsStr) -> bool {
        if self.prefix.is_empty() && self.suffix.is_empty() {
            return true;
        }
        let b = name.as_encoded_bytes();
        b.len() >= self.prefix.len() + self.suffix.len()
            && b.starts_with(self.prefix.as_bytes())
            && b.ends_with(self.suffix.as_bytes())
    }
}

/// How [`Host::write_file_atomic`] writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Hold an exclusive `flock` on this path (created if missing) for the whole write.
    pub lock: Option<PathBuf>,
    /// Give up waiting for the lock after this long (`None`: 10 s).
    pub lock_timeout: Option<Duration>,
    /// Under the lock, the file must still hold exactly these bytes (`Some(None)`: must not
    /// exist), else [`ExecError::Conflict`] and nothing is written.
    pub expect_previous: Option<Option<Vec<u8>>>,
    /// Before replacing, copy the previous bytes to this file (its directory is created). It
    /// is kept only when the replacement happens.
    pub backup_to: Option<PathBuf>,
    /// Permission bits of the new file (`None`: those of the file it replaces, else 0o644).
    pub mode: Option<u32>,
    /// After a write that happened and left a backup, prune the backup's directory in the same
    /// go (no second round trip to the node): of the regular files there whose names end as
    /// the backup's does (its extension) and do not begin with `.`, sorted by name, keep the
    /// first (the oldest, for names that sort by time) and the last `n`, remove the others. A
    /// file that cannot be removed is left (the write has happened; it is not undone).
    pub keep_backups: Option<usize>,
}

/// The node that owns the GPUs and the container configs.
///
/// Paths are host paths; a backend may map them (`LocalHost` under `--root`). Use
/// [`Host::resolve`] to turn a host path into the path a command run on this host must use.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Host: Send + Sync {
    /// A short name for messages and logs: `localhost`, the SSH node's name.
    fn name(&self) -> String;

    /// The path a command run on this host must use for the host path `path` (identity unless
    /// the backend maps paths, as `LocalHost` does under `--root`).
    fn resolve(&self, path: &Path) -> PathBuf;

    /// Runs a command; any exit status is `Ok`. Errors are spawn failures, timeouts, transport.
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError>;

    /// Reads a whole regular file. A missing file is [`ExecError::NotFound`]; a final
    /// symbolic link (never followed), a FIFO, a socket, a device or a directory is
    /// [`ExecError::NotRegular`] (nothing is opened for reading, nothing waits); a file larger
    /// than [`local::MAX_READ`] is [`ExecError::TooLarge`]; a read that gets no answer in time
    /// is [`ExecError::ReadTimeout`]. Under a root, nothing outside it is read.
    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError>;

    /// Reads several files in one go: for each path, in order, what
    /// [`read_file`](Host::read_file) would give. The outer error: the whole batch could not
    /// be read (then each file can still be read on its own). [`SshHost`] reads them in one
    /// session; the default reads them one by one.
    async fn read_files(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Vec<u8>, ExecError>>, ExecError> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.read_file(p).await);
        }
        Ok(out)
    }

    /// Replaces a regular file atomically: lock, check, temp file in the same directory with
    /// the replaced file's owner, group and mode, fsync, then the backup, then rename and fsync
    /// of the directory. Readers see the old bytes or the new, never a mix. A file that is not
    /// a regular one is [`ExecError::NotRegular`]; a failed write leaves no temporary file and
    /// no backup; a read-only file system is [`ExecError::ReadOnly`], a full one
    /// [`ExecError::NoSpace`].
    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError>;

    /// Lists a directory (not recursive), sorted by name. A missing directory is
    /// [`ExecError::NotFound`].
    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError>;

    /// [`read_dir`](Host::read_dir), keeping only the entries whose names `keep` matches. A
    /// backend that can looks at only those (a host's `/dev` and its library folders hold
    /// hundreds of entries, of which a run needs the NVIDIA ones); the default lists all.
    async fn read_dir_matching(
        &self,
        path: &Path,
        keep: &NameMatch,
    ) -> Result<Vec<DirEntry>, ExecError> {
        let mut entries = self.read_dir(path).await?;
        entries.retain(|e| keep.matches(&e.name));
        Ok(entries)
    }

    /// Metadata of a path without following a final symlink; `Ok(None)` when it does not exist.
    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError>;

    /// Several [`stat`](Host::stat)s in one go: for each path, in order, what `stat` would
    /// give. The outer error: the batch could not be asked (then each can still be asked on
    /// its own). The default asks one by one; [`LocalHost`] asks all on one blocking thread.
    async fn stat_many(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Option<FileMeta>, ExecError>>, ExecError> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.stat(p).await);
        }
        Ok(out)
    }

    /// Takes an exclusive `flock` on the file `path` (created with its directory when
    /// missing), waiting at most `timeout` ([`ExecError::LockTimeout`]), and holds it until the
    /// returned [`HostLock`] drops. Every process on the host that locks the same path waits
    /// for it, so several runs can share work such as one download; when the holder dies, the
    /// lock is released with it.
    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError>;
}

/// A lock taken with [`Host::lock`], held until dropped.
pub struct HostLock(#[allow(dead_code)] Box<dyn std::any::Any + Send + Sync>);

impl HostLock {
    /// A lock held as long as `guard` lives (for backends: the open file, the process holding
    /// it).
    pub fn new(guard: impl Send + Sync + 'static) -> HostLock {
        HostLock(Box::new(guard))
    }
}

impl fmt::Debug for HostLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostLock")
    }
}

/// Names a container: a Proxmox CTID (`101`) or a plain LXC container name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtRef(pub String);

impl CtRef {
    /// A container reference.
    pub fn new(id: impl Into<String>) -> CtRef {
        CtRef(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CtRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How LXC on a backend's host names a container: what the host's LXC tools (`lxc-info`,
/// `lxc-cgroup`) take as `-n NAME -P LXCPATH`. A Proxmox VE container is the LXC container named
/// by its CTID under `/var/lib/lxc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LxcName {
    /// The container's LXC name.
    pub name: String,
    /// The LXC path as a command run on the host must give it (already [`Host::resolve`]d).
    pub lxcpath: PathBuf,
}

impl LxcName {
    /// `TOOL -n NAME -P LXCPATH ARGS...`, a command for the host.
    pub fn command<I, S>(&self, tool: &str, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = vec![
            tool.into(),
            "-n".into(),
            self.name.clone().into(),
            "-P".into(),
            self.lxcpath.clone().into_os_string(),
        ];
        argv.extend(args.into_iter().map(Into::into));
        Cmd::new(argv)
    }
}

/// A container's run state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Anything else the backend reported (`FROZEN`, `STARTING`, ...).
    Other(String),
}

/// The run states of all the containers of a host, read in one question
/// ([`ContainerExec::states`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtStates {
    listed: std::collections::BTreeMap<String, CtState>,
    unlisted: CtState,
}

impl CtStates {
    /// The containers in `listed` are in the state given there; every other container of the
    /// host is `unlisted` (on Proxmox VE: the running ones are listed, the rest are stopped).
    pub fn new(listed: std::collections::BTreeMap<String, CtState>, unlisted: CtState) -> CtStates {
        CtStates { listed, unlisted }
    }

    /// The state of `ct`, a container of the host.
    pub fn of(&self, ct: &CtRef) -> CtState {
        self.listed
            .get(ct.as_str())
            .cloned()
            .unwrap_or_else(|| self.unlisted.clone())
    }
}

/// A way into a container.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ContainerExec: Send + Sync {
    /// Runs `cmd` inside the container; any exit status is `Ok`.
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError>;

    /// Copies the host file `src` to `dest` inside the container with permission bits `mode`.
    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError>;

    /// The container's state. An unknown container is [`ExecError::CtNotFound`].
    async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError>;

    /// The states of all the host's containers in one question, for a caller that needs the
    /// state of many: one read instead of one [`state`](ContainerExec::state) per container.
    /// `Ok(None)` (the default): this backend cannot answer for all at once; ask per container.
    async fn states(&self) -> Result<Option<CtStates>, ExecError> {
        Ok(None)
    }

    /// Starts the container (returns once the backend says it started).
    async fn start(&self, ct: &CtRef) -> Result<(), ExecError>;

    /// Stops the container: a clean shutdown (its init is asked to power off), waiting at
    /// most `grace`, and only when it has not stopped by then, a kill. Says which it was.
    async fn stop(&self, ct: &CtRef, grace: Duration) -> Result<Stopped, ExecError>;

    /// How LXC on the backend's host knows `ct`, for work on the running container from the
    /// host (its init process, its device cgroup) with commands run on that host. `None` (the
    /// default): the backend does not reach the container through LXC on a host.
    fn lxc_name(&self, ct: &CtRef) -> Option<LxcName> {
        let _ = ct;
        None
    }
}

/// How [`ContainerExec::stop`] stopped a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running.
    Already,
    /// It shut down cleanly within the grace time.
    Clean,
    /// It had not shut down when the grace time ended, and was killed.
    Killed,
}

/// Runs `outer`, a wrapper such as `pct exec` or `lxc-attach` around `cmd`, on `host`. A
/// timeout is reported against `target` (the container) and the inner argv, which is what the
/// caller asked to run.
pub(crate) async fn run_wrapped<H: Host + ?Sized>(
    host: &H,
    outer: &Cmd,
    target: String,
    cmd: &Cmd,
) -> Result<Output, ExecError> {
    match host.run(outer).await {
        Err(ExecError::Timeout { after, .. }) => Err(ExecError::Timeout {
            target,
            argv: cmd.display_argv(),
            after,
        }),
        other => other,
    }
}

/// Lossy text of an `OsStr`, for messages.
pub fn lossy(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// Implements [`Host`] and [`ContainerExec`] for a pointer type to either, by forwarding, so
/// that `Arc<dyn Host>` (chosen once by the binary), borrowed backends and decorators compose.
macro_rules! forward_backends {
    ($($ptr:ty),+) => {$(
        #[async_trait]
        impl<T: Host + ?Sized> Host for $ptr {
            fn name(&self) -> String {
                (**self).name()
            }
            fn resolve(&self, path: &Path) -> PathBuf {
                (**self).resolve(path)
            }
            async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
                (**self).run(cmd).await
            }
            async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError> {
                (**self).read_file(path).await
            }
            async fn read_files(
                &self,
                paths: &[PathBuf],
            ) -> Result<Vec<Result<Vec<u8>, ExecError>>, ExecError> {
                (**self).read_files(paths).await
            }
            async fn write_file_atomic(
                &self,
                path: &Path,
                bytes: &[u8],
                opts: &WriteOptions,
            ) -> Result<(), ExecError> {
                (**self).write_file_atomic(path, bytes, opts).await
            }
            async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
                (**self).read_dir(path).await
            }
            async fn read_dir_matching(
                &self,
                path: &Path,
                keep: &NameMatch,
            ) -> Result<Vec<DirEntry>, ExecError> {
                (**self).read_dir_matching(path, keep).await
            }
            async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
                (**self).stat(path).await
            }
            async fn stat_many(
                &self,
                paths: &[PathBuf],
            ) -> Result<Vec<Result<Option<FileMeta>, ExecError>>, ExecError> {
                (**self).stat_many(paths).await
            }
            async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
                (**self).lock(path, timeout).await
            }
        }

        #[async_trait]
        impl<T: ContainerExec + ?Sized> ContainerExec for $ptr {
            async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
                (**self).exec(ct, cmd).await
            }
            async fn push_file(
                &self,
                ct: &CtRef,
                src: &Path,
                dest: &Path,
                mode: u32,
            ) -> Result<(), ExecError> {
                (**self).push_file(ct, src, dest, mode).await
            }
            async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError> {
                (**self).state(ct).await
            }
            async fn states(&self) -> Result<Option<CtStates>, ExecError> {
                (**self).states().await
            }
            async fn start(&self, ct: &CtRef) -> Result<(), ExecError> {
                (**self).start(ct).await
            }
            async fn stop(&self, ct: &CtRef, grace: Duration) -> Result<Stopped, ExecError> {
                (**self).stop(ct, grace).await
            }
            fn lxc_name(&self, ct: &CtRef) -> Option<LxcName> {
                (**self).lxc_name(ct)
            }
        }
    )+};
}

forward_backends!(std::sync::Arc<T>, &T);
