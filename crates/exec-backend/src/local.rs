//! [`LocalHost`]: this machine, optionally with every host path under a root directory.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{debug, instrument};

use crate::{
    process, Cmd, DirEntry, ExecError, FileKind, FileMeta, Host, HostLock, Output, WriteOptions,
};

/// How long [`Host::write_file_atomic`] waits for its lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The marker in the names of temporary files written by [`LocalHost::write_file_atomic`]:
/// `.NAME.phoenix-tmp.PID.N`, in the directory of the file they replace.
pub const TEMP_MARKER: &str = ".phoenix-tmp.";

/// This machine.
///
/// With a root ([`LocalHost::with_root`]), every host path resolves under that directory
/// (`/etc/pve/lxc/101.conf` → `ROOT/etc/pve/lxc/101.conf`); commands still run on the real
/// machine, so a command that takes a path must be given [`Host::resolve`]'s answer.
///
/// Orphan temporary files: a writer killed between creating its temporary file and renaming
/// it leaves `.NAME.phoenix-tmp.PID.N` beside the file. Nothing reads it, and the next write
/// picks a fresh name, so it never gets in the way. The next write that holds a lock
/// ([`WriteOptions::lock`]) removes such leftovers for the same file: every writer of that
/// file holds the same lock, so none of them can be half-written by a live writer.
#[derive(Clone, Debug, Default)]
pub struct LocalHost {
    root: Option<PathBuf>,
    search_path: Option<OsString>,
}

impl LocalHost {
    /// This machine, paths as they are.
    pub fn new() -> LocalHost {
        LocalHost {
            root: None,
            search_path: None,
        }
    }

    /// This machine, with every host path under `root` (the `--root` flag; tests and dry runs).
    pub fn with_root(root: impl Into<PathBuf>) -> LocalHost {
        LocalHost {
            root: Some(root.into()),
            search_path: None,
        }
    }

    /// Commands find their programs through `path` (a `PATH` value) instead of the fixed
    /// [`process::BASE_PATH`], unless a [`Cmd`] sets `PATH` itself. The binary passes its own
    /// `PATH` followed by the base, so that tools installed in a private prefix (LXC unpacked
    /// under `/opt`, say) are found the way the user's shell finds them.
    pub fn with_search_path(mut self, path: impl Into<OsString>) -> LocalHost {
        self.search_path = Some(path.into());
        self
    }

    /// The root, when there is one.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }
}

/// `path` under `root`, lexically: `..` never climbs above the root.
pub(crate) fn map_under(root: &Path, path: &Path) -> PathBuf {
    let mut rel = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => rel.push(c),
            Component::ParentDir => {
                rel.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    root.join(rel)
}

/// Metadata as our type.
pub(crate) fn file_meta(md: &std::fs::Metadata) -> FileMeta {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::Other
    };
    let rdev = match kind {
        FileKind::CharDevice | FileKind::BlockDevice => {
            let dev = md.rdev() as libc::dev_t;
            Some((libc::major(dev), libc::minor(dev)))
        }
        _ => None,
    };
    FileMeta {
        kind,
        rdev,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: md.size(),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T, F>(target: &str, path: &Path, f: F) -> Result<T, ExecError>
where
    F: FnOnce() -> Result<T, ExecError> + Send + 'static,
    T: Send + 'static,
{
    // The caller's span (the step) goes along, so log lines of the work carry it.
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(r) => r,
        Err(join) => Err(ExecError::Io {
            target: target.to_owned(),
            op: "run blocking file work for",
            path: path.to_owned(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

/// Maps an I/O error, turning "not found" into [`ExecError::NotFound`].
fn io_err(target: &str, op: &'static str, path: &Path, source: std::io::Error) -> ExecError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ExecError::NotFound {
            target: target.to_owned(),
            path: path.to_owned(),
        }
    } else {
        ExecError::Io {
            target: target.to_owned(),
            op,
            path: path.to_owned(),
            source,
        }
    }
}

const TARGET: &str = "localhost";

#[async_trait]
impl Host for LocalHost {
    fn name(&self) -> String {
        TARGET.to_owned()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => map_under(root, path),
            None => path.to_owned(),
        }
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        match &self.search_path {
            Some(path) if !cmd.env.iter().any(|(k, _)| k == "PATH") => {
                let mut cmd = cmd.clone();
                cmd.env.push(("PATH".into(), path.clone()));
                process::run(TARGET, &cmd).await
            }
            _ => process::run(TARGET, cmd).await,
        }
    }

    #[instrument(level = "debug", skip(self))]
    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError> {
        let real = self.resolve(path);
        tokio::fs::read(&real)
            .await
            .map_err(|e| io_err(TARGET, "read", path, e))
    }

    #[instrument(level = "debug", skip(self, bytes, opts), fields(len = bytes.len(), lock = ?opts.lock))]
    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError> {
        let job = AtomicWrite {
            shown: path.to_owned(),
            path: self.resolve(path),
            lock: opts
                .lock
                .as_deref()
                .map(|l| (l.to_owned(), self.resolve(l))),
            lock_timeout: opts.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
            expect_previous: opts.expect_previous.clone(),
            backup_to: opts.backup_to.as_deref().map(|b| self.resolve(b)),
            mode: opts.mode,
            bytes: bytes.to_vec(),
        };
        blocking(TARGET, path, move || job.run()).await
    }

    #[instrument(level = "debug", skip(self))]
    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        let real = self.resolve(path);
        let shown = path.to_owned();
        blocking(TARGET, path, move || {
            let rd = std::fs::read_dir(&real).map_err(|e| io_err(TARGET, "list", &shown, e))?;
            let mut entries = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| io_err(TARGET, "list", &shown, e))?;
                let md = match entry.metadata() {
                    Ok(md) => md,
                    // Gone between listing and stat: it is not there any more.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(TARGET, "stat", &entry.path(), e)),
                };
                entries.push(DirEntry {
                    name: entry.file_name(),
                    meta: file_meta(&md),
                });
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        match tokio::fs::symlink_metadata(self.resolve(path)).await {
            Ok(md) => Ok(Some(file_meta(&md))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(TARGET, "stat", path, e)),
        }
    }

    #[instrument(level = "debug", skip(self))]
    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
        let (shown, real) = (path.to_owned(), self.resolve(path));
        let guard = blocking(TARGET, path, move || acquire_lock(&shown, &real, timeout)).await?;
        Ok(HostLock::new(guard))
    }
}

/// One atomic replacement, done on a blocking thread.
struct AtomicWrite {
    /// The host path, for messages.
    shown: PathBuf,
    /// The real path.
    path: PathBuf,
    /// The lock: host path (for messages) and real path.
    lock: Option<(PathBuf, PathBuf)>,
    lock_timeout: Duration,
    expect_previous: Option<Option<Vec<u8>>>,
    backup_to: Option<PathBuf>,
    mode: Option<u32>,
    bytes: Vec<u8>,
}

impl AtomicWrite {
    fn run(self) -> Result<(), ExecError> {
        let _lock = match &self.lock {
            Some((shown, real)) => Some(acquire_lock(shown, real, self.lock_timeout)?),
            None => None,
        };
        let e = |op, source| io_err(TARGET, op, &self.shown, source);
        let previous = match std::fs::read(&self.path) {
            Ok(bytes) => Some(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(e("read", err)),
        };
        if let Some(expected) = &self.expect_previous {
            if expected != &previous {
                return Err(ExecError::Conflict {
                    target: TARGET.to_owned(),
                    path: self.shown.clone(),
                });
            }
        }
        let old_mode = match std::fs::metadata(&self.path) {
            Ok(md) => Some(md.mode() & 0o7777),
            Err(_) => None,
        };
        let mode = self.mode.or(old_mode).unwrap_or(0o644);
        if self.lock.is_some() {
            remove_orphan_temps(&self.path);
        }
        if let (Some(backup), Some(previous)) = (&self.backup_to, &previous) {
            if let Some(parent) = backup.parent() {
                std::fs::create_dir_all(parent).map_err(|err| {
                    io_err(TARGET, "create the backup directory for", backup, err)
                })?;
            }
            replace(backup, previous, old_mode.unwrap_or(0o600))
                .map_err(|(op, err)| io_err(TARGET, op, backup, err))?;
        }
        replace(&self.path, &self.bytes, mode).map_err(|(op, err)| e(op, err))?;
        debug!(path = %self.shown.display(), mode = format_args!("{mode:o}"), "replaced");
        Ok(())
    }
}

/// An exclusive `flock` held until dropped (closing the file releases it).
struct LockGuard {
    _file: File,
}

/// Takes an exclusive `flock` on `real`, creating it and its directory, polling until `timeout`.
fn acquire_lock(shown: &Path, real: &Path, timeout: Duration) -> Result<LockGuard, ExecError> {
    if let Some(parent) = real.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| io_err(TARGET, "create the directory of lock", shown, e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(real)
        .map_err(|e| io_err(TARGET, "open lock", shown, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: flock(2) on a file descriptor we own; no memory is touched.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(LockGuard { _file: file });
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock
            && err.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(io_err(TARGET, "lock", shown, err));
        }
        if Instant::now() >= deadline {
            return Err(ExecError::LockTimeout {
                target: TARGET.to_owned(),
                path: shown.to_owned(),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The prefix of temporary files for `path`: `.NAME.phoenix-tmp.`.
fn temp_prefix(path: &Path) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(TEMP_MARKER);
    prefix
}

/// Removes temporary files that a killed writer of `path` left behind (call only under the lock).
fn remove_orphan_temps(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let (Some(dir), prefix) = (path.parent(), temp_prefix(path)) else {
        return;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        if entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
            debug!(orphan = %entry.path().display(), "removing a temporary file a killed writer left");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes`: temp file in the same directory (unique name, `O_EXCL`),
/// write, `fchmod`, `fsync`, rename over, `fsync` the directory.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), (&'static str, std::io::Error)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tmp, mut file) = loop {
        let mut name = temp_prefix(path);
        name.push(format!(
            "{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(("create a temporary file for", e)),
        }
    };
    let written = (|| {
        file.write_all(bytes).map_err(|e| ("write", e))?;
        // Only when it differs: Proxmox's cluster filesystem (/etc/pve) fixes each file's mode
        // and may refuse a chmod, so one that would change nothing is not attempted.
        let current = file.metadata().map_err(|e| ("stat", e))?.mode() & 0o7777;
        if current != mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| ("set the mode of", e))?;
        }
        file.sync_all().map_err(|e| ("fsync", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| ("rename over", e))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ("fsync the directory of", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_mapping_stays_under_root() {
        let root = Path::new("/tmp/r");
        assert_eq!(
            map_under(root, Path::new("/etc/pve/lxc/1.conf")),
            Path::new("/tmp/r/etc/pve/lxc/1.conf")
        );
        assert_eq!(
            map_under(root, Path::new("/../../etc")),
            Path::new("/tmp/r/etc")
        );
        assert_eq!(
            map_under(root, Path::new("rel/x")),
            Path::new("/tmp/r/rel/x")
        );
    }
}
