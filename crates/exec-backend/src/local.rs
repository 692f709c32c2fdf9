//! [`LocalHost`]: this machine, optionally with every host path under a root directory.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{debug, instrument};

use crate::error::is_pmxcfs_path;
use crate::rooted::{self, Parent, Rooted};
use crate::{
    process, Cmd, DirEntry, ExecError, FileKind, FileMeta, Host, HostLock, NameMatch, Output,
    WriteOptions,
};

/// How long [`Host::write_file_atomic`] waits for its lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read, `stat` or listing of a host file may take before it is given up
/// ([`ExecError::ReadTimeout`]); [`LocalHost::with_read_timeout`] changes it.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes [`Host::read_file`] reads: far more than any config, `/proc` file or dpkg
/// status file holds, and little enough to keep in memory. A larger file is
/// [`ExecError::TooLarge`].
pub const MAX_READ: u64 = 64 * 1024 * 1024;

/// The marker in the names of temporary files written by [`LocalHost::write_file_atomic`]:
/// `.NAME.phoenix-tmp.PID.N`, in the directory of the file they replace.
pub const TEMP_MARKER: &str = ".phoenix-tmp.";

/// This machine.
///
/// With a root ([`LocalHost::with_root`]), every host path resolves under that directory
/// (`/etc/pve/lxc/101.conf` → `ROOT/etc/pve/lxc/101.conf`); commands still run on the real
/// machine, so a command that takes a path must be given [`Host::resolve`]'s answer.
///
/// Files are opened by walking their path from the root one component at a time, so a
/// symbolic link is resolved inside the root as if the root were `/` and nothing outside the
/// root is ever read or written (see `rooted.rs`). A file read or replaced must be a regular
/// file: a final link, a FIFO, a device or a socket is [`ExecError::NotRegular`], found on the
/// opened descriptor (never stat-then-open), so nothing blocks or is followed. Every read,
/// `stat` and listing has a time limit ([`DEFAULT_READ_TIMEOUT`]) and a read a size limit
/// ([`MAX_READ`]).
///
/// A replaced file keeps its owner, group and mode (`fchown`/`fchmod` of the temporary file
/// before the rename). Under `/etc/pve`, Proxmox's cluster file system sets both itself: a
/// refused `fchown`/`fchmod` there is ignored.
///
/// Orphan temporary files: a writer killed between creating its temporary file and renaming
/// it leaves `.NAME.phoenix-tmp.PID.N` beside the file (or in the backup directory). Nothing
/// reads it, and the next write picks a fresh name, so it never gets in the way. The next
/// write that holds a lock ([`WriteOptions::lock`]) removes such leftovers of a writer that is
/// no longer alive: beside the file those of the same file, in the backup directory every one.
#[derive(Clone, Debug)]
pub struct LocalHost {
    root: Option<PathBuf>,
    search_path: Option<OsString>,
    read_timeout: Duration,
}

impl Default for LocalHost {
    fn default() -> LocalHost {
        LocalHost::new()
    }
}

impl LocalHost {
    /// This machine, paths as they are.
    pub fn new() -> LocalHost {
        LocalHost {
            root: None,
            search_path: None,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }

    /// This machine, with every host path under `root` (the `--root` flag; tests and dry runs).
    pub fn with_root(root: impl Into<PathBuf>) -> LocalHost {
        LocalHost {
            root: Some(root.into()),
            ..LocalHost::new()
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

    /// Reads, `stat`s and listings give up after `timeout` instead of
    /// [`DEFAULT_READ_TIMEOUT`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> LocalHost {
        self.read_timeout = timeout;
        self
    }

    /// The root, when there is one.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    fn rooted(&self) -> Rooted {
        Rooted::new(self.root.as_deref())
    }

    /// Runs the blocking file work `f` on a blocking thread, giving up after the read timeout.
    /// A read that hangs stays behind on its thread; the caller gets its answer.
    /// `one` for each path, in order, all on one blocking thread with the time limit of one
    /// call: the batches of [`Host::read_files`] and [`Host::stat_many`].
    async fn each<T: Send + 'static>(
        &self,
        paths: &[PathBuf],
        one: fn(&Rooted, &Path) -> Result<T, ExecError>,
    ) -> Result<Vec<Result<T, ExecError>>, ExecError> {
        let Some(first) = paths.first() else {
            return Ok(Vec::new());
        };
        let rooted = self.rooted();
        let shown = paths.to_vec();
        self.bounded(first, move || {
            Ok(shown.iter().map(|p| one(&rooted, p)).collect())
        })
        .await
    }

    async fn bounded<T, F>(&self, path: &Path, f: F) -> Result<T, ExecError>
    where
        F: FnOnce() -> Result<T, ExecError> + Send + 'static,
        T: Send + 'static,
    {
        match tokio::time::timeout(self.read_timeout, blocking(TARGET, path, f)).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::ReadTimeout {
                target: TARGET.to_owned(),
                path: path.to_owned(),
                after: self.read_timeout,
            }),
        }
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

/// A `stat` as our type.
fn stat_meta(st: &libc::stat) -> FileMeta {
    let kind = match rooted::file_type(st) {
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFREG => FileKind::File,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        _ => FileKind::Other,
    };
    let rdev = matches!(kind, FileKind::CharDevice | FileKind::BlockDevice)
        .then(|| (libc::major(st.st_rdev), libc::minor(st.st_rdev)));
    FileMeta {
        kind,
        rdev,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
    }
}

/// [`Host::stat`] on the blocking thread.
fn stat_one(rooted: &Rooted, shown: &Path) -> Result<Option<FileMeta>, ExecError> {
    let st = match rooted.parent(shown, false) {
        Ok(Parent { dir, name }) => rooted::lstatat(dir.as_fd(), &name),
        // `/` itself.
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => rooted
            .open_dir(shown, false)
            .and_then(|d| rooted::fstat(d.as_fd())),
        Err(e) => Err(e),
    };
    match st {
        Ok(st) => Ok(Some(stat_meta(&st))),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(TARGET, "stat", shown, e)),
    }
}

/// [`Host::read_dir_matching`] on the blocking thread: the names from the listing, a stat of
/// each kept one, sorted by name.
fn list_matching(
    rooted: &Rooted,
    shown: &Path,
    keep: &NameMatch,
) -> Result<Vec<DirEntry>, ExecError> {
    let dir = rooted
        .open_listing(shown)
        .map_err(|e| io_err(TARGET, "list", shown, e))?;
    let rd = std::fs::read_dir(rooted::fd_path(dir.as_fd()))
        .map_err(|e| io_err(TARGET, "list", shown, e))?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err(TARGET, "list", shown, e))?;
        if !keep.matches(&entry.file_name()) {
            continue;
        }
        // `DirEntry::metadata` does not follow links.
        let md = match entry.metadata() {
            Ok(md) => md,
            // Gone between listing and stat: it is not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(TARGET, "stat", &shown.join(entry.file_name()), e)),
        };
        entries.push(DirEntry {
            name: entry.file_name(),
            meta: file_meta(&md),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// What a file that is not a regular one is, for [`ExecError::NotRegular`].
pub(crate) fn describe_type(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO (named pipe)",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFREG => "a regular file",
        _ => "a file of unknown type",
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

/// Maps an I/O error of reading, turning "not found" (also a path component that is not a
/// directory) into [`ExecError::NotFound`].
fn io_err(target: &str, op: &'static str, path: &Path, source: std::io::Error) -> ExecError {
    if source.kind() == std::io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ENOTDIR)
    {
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

/// Maps an I/O error of writing: a read-only file system (and, under `/etc/pve`, the
/// permission error Proxmox's cluster file system gives without quorum) and a full disk get
/// their own variants, the rest as [`io_err`].
fn write_err(op: &'static str, path: &Path, source: std::io::Error) -> ExecError {
    let target = TARGET.to_owned();
    let path = path.to_owned();
    match source.raw_os_error() {
        Some(libc::EROFS) => ExecError::ReadOnly {
            target,
            path,
            source,
        },
        Some(libc::EACCES | libc::EPERM) if is_pmxcfs_path(&path) => ExecError::ReadOnly {
            target,
            path,
            source,
        },
        Some(libc::ENOSPC | libc::EDQUOT) => ExecError::NoSpace {
            target,
            path,
            source,
        },
        _ => io_err(TARGET, op, &path, source),
    }
}

const TARGET: &str = "localhost";

/// Opens `name` in `dir` for reading if it is a regular file: an `O_PATH | O_NOFOLLOW`
/// descriptor first (no device is opened, no FIFO waited on, no link followed), its type
/// checked with `fstat`, then the same inode opened for reading through `/proc/self/fd`.
fn open_regular(dir: BorrowedFd<'_>, name: &CStr, shown: &Path) -> Result<File, ExecError> {
    let e = |op, err| io_err(TARGET, op, shown, err);
    let handle = rooted::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
        .map_err(|err| e("open", err))?;
    let st = rooted::fstat(handle.as_fd()).map_err(|err| e("stat", err))?;
    if rooted::file_type(&st) != libc::S_IFREG {
        return Err(ExecError::NotRegular {
            target: TARGET.to_owned(),
            path: shown.to_owned(),
            what: describe_type(st.st_mode),
        });
    }
    let proc_path = CString::new(rooted::fd_path(handle.as_fd()).into_os_string().as_bytes())
        .map_err(|_| e("open", std::io::Error::other("a NUL byte in a path")))?;
    // SAFETY: AT_FDCWD is valid for openat; the path is absolute.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    let fd = rooted::openat(
        cwd,
        &proc_path,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .map_err(|err| e("open", err))?;
    Ok(File::from(fd))
}

/// Reads at most [`MAX_READ`] bytes of an opened regular file.
fn read_capped(mut file: File, shown: &Path) -> Result<Vec<u8>, ExecError> {
    let too_large = || ExecError::TooLarge {
        target: TARGET.to_owned(),
        path: shown.to_owned(),
        limit: MAX_READ,
    };
    let size = file
        .metadata()
        .map_err(|err| io_err(TARGET, "stat", shown, err))?
        .len();
    if size > MAX_READ {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    (&mut file)
        .take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| io_err(TARGET, "read", shown, err))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads the regular file at the host path `shown` under `rooted`.
fn read_regular(rooted: &Rooted, shown: &Path) -> Result<Vec<u8>, ExecError> {
    let Parent { dir, name } = rooted
        .parent(shown, false)
        .map_err(|err| io_err(TARGET, "open", shown, err))?;
    read_capped(open_regular(dir.as_fd(), &name, shown)?, shown)
}

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
        let rooted = self.rooted();
        let shown = path.to_owned();
        self.bounded(path, move || read_regular(&rooted, &shown))
            .await
    }

    /// All the files on one blocking thread, one after the other, each as
    /// [`read_file`](Host::read_file) reads it: one hand-off to the blocking pool instead of
    /// one a file (a run's inventory reads a dozen small files under `/proc` and `/sys`). The
    /// batch has the time limit of one read; past it the outer error says so and the caller
    /// reads each file on its own, each with its own limit.
    #[instrument(level = "debug", skip(self), fields(files = paths.len()))]
    async fn read_files(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Vec<u8>, ExecError>>, ExecError> {
        self.each(paths, read_regular).await
    }

    #[instrument(level = "debug", skip(self, bytes, opts), fields(len = bytes.len(), lock = ?opts.lock))]
    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError> {
        let job = AtomicWrite {
            rooted: self.rooted(),
            shown: path.to_owned(),
            lock: opts.lock.clone(),
            lock_timeout: opts.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
            expect_previous: opts.expect_previous.clone(),
            backup_to: opts.backup_to.clone(),
            mode: opts.mode,
            keep_backups: opts.keep_backups,
            bytes: bytes.to_vec(),
        };
        blocking(TARGET, path, move || job.run()).await
    }

    #[instrument(level = "debug", skip(self))]
    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        self.read_dir_matching(path, &NameMatch::default()).await
    }

    /// Stats only the entries whose names `keep` matches (the names come from the listing
    /// itself).
    #[instrument(level = "debug", skip(self))]
    async fn read_dir_matching(
        &self,
        path: &Path,
        keep: &NameMatch,
    ) -> Result<Vec<DirEntry>, ExecError> {
        let rooted = self.rooted();
        let shown = path.to_owned();
        let keep = keep.clone();
        self.bounded(path, move || list_matching(&rooted, &shown, &keep))
            .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        let rooted = self.rooted();
        let shown = path.to_owned();
        self.bounded(path, move || stat_one(&rooted, &shown)).await
    }

    /// All on one blocking thread, one after the other, with the time limit of one.
    #[instrument(level = "debug", skip(self, paths), fields(paths = paths.len()))]
    async fn stat_many(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Option<FileMeta>, ExecError>>, ExecError> {
        self.each(paths, stat_one).await
    }

    #[instrument(level = "debug", skip(self))]
    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
        let (rooted, shown) = (self.rooted(), path.to_owned());
        let guard = blocking(TARGET, path, move || acquire_lock(&rooted, &shown, timeout)).await?;
        Ok(HostLock::new(guard))
    }
}

/// One atomic replacement, done on a blocking thread. Paths are host paths, opened under
/// `rooted`.
struct AtomicWrite {
    rooted: Rooted,
    /// The file.
    shown: PathBuf,
    /// The lock file.
    lock: Option<PathBuf>,
    lock_timeout: Duration,
    expect_previous: Option<Option<Vec<u8>>>,
    backup_to: Option<PathBuf>,
    mode: Option<u32>,
    keep_backups: Option<usize>,
    bytes: Vec<u8>,
}

/// The file a write replaces, as it was.
struct Previous {
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl AtomicWrite {
    fn run(self) -> Result<(), ExecError> {
        let _lock = match &self.lock {
            Some(lock) => Some(acquire_lock(&self.rooted, lock, self.lock_timeout)?),
            None => None,
        };
        let Parent { dir, name } = self
            .rooted
            .parent(&self.shown, false)
            .map_err(|e| io_err(TARGET, "open the directory of", &self.shown, e))?;
        let previous = match open_regular(dir.as_fd(), &name, &self.shown) {
            Ok(file) => {
                let md = file
                    .metadata()
                    .map_err(|e| io_err(TARGET, "stat", &self.shown, e))?;
                Some(Previous {
                    bytes: read_capped(file, &self.shown)?,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                })
            }
            Err(ExecError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(expected) = &self.expect_previous {
            if expected.as_deref() != previous.as_ref().map(|p| p.bytes.as_slice()) {
                return Err(ExecError::Conflict {
                    target: TARGET.to_owned(),
                    path: self.shown.clone(),
                });
            }
        }
        if self.lock.is_some() {
            remove_orphan_temps(dir.as_fd(), &temp_prefix(&name));
        }
        let pmxcfs = is_pmxcfs_path(&self.shown);
        let keep = Keep {
            mode: self
                .mode
                .or(previous.as_ref().map(|p| p.mode))
                .unwrap_or(0o644),
            owner: previous.as_ref().map(|p| (p.uid, p.gid)),
            tolerant: pmxcfs,
        };
        // The new file first (a read-only or full file system fails here, before anything
        // else is made), then the backup, then the rename: a backup is kept only for a write
        // that happened, so failed runs never push older backups out.
        let temp = prepare(dir.as_fd(), &name, &self.bytes, &keep)
            .map_err(|(op, err)| write_err(op, &self.shown, err))?;
        let backup = match (&self.backup_to, &previous) {
            (Some(b), Some(prev)) => match self.backup(b, prev) {
                Ok(made) => Some(made),
                Err(e) => {
                    temp.discard();
                    return Err(e);
                }
            },
            _ => None,
        };
        if let Err((op, err)) = temp.commit() {
            if let Some(undo) = backup {
                undo.undo();
            }
            return Err(write_err(op, &self.shown, err));
        }
        debug!(path = %self.shown.display(), mode = format_args!("{:o}", keep.mode), "replaced");
        if let (Some(undo), Some(n)) = (&backup, self.keep_backups) {
            prune_backups(undo.dir.as_fd(), &undo.name, n);
        }
        Ok(())
    }

    /// Writes the previous bytes to the backup `b` (its directory made, stale temporary files
    /// of dead writers removed); returns how to take it back. A failure takes back what it
    /// made.
    fn backup(&self, b: &Path, prev: &Previous) -> Result<Undo, ExecError> {
        let bad_name = || {
            io_err(
                TARGET,
                "name",
                b,
                std::io::Error::from_raw_os_error(libc::EINVAL),
            )
        };
        let name = b
            .file_name()
            .and_then(|n| CString::new(n.as_bytes()).ok())
            .ok_or_else(bad_name)?;
        let mut made = rooted::Made::default();
        let dir = match self
            .rooted
            .make_dir(b.parent().unwrap_or(Path::new("/")), &mut made)
        {
            Ok(dir) => dir,
            Err(e) => {
                made.undo();
                return Err(write_err("create the backup directory for", b, e));
            }
        };
        if self.lock.is_some() {
            remove_orphan_temps(dir.as_fd(), b"");
        }
        let keep = Keep {
            mode: prev.mode,
            owner: None,
            tolerant: false,
        };
        let written = prepare(dir.as_fd(), &name, &prev.bytes, &keep).and_then(Temp::commit);
        if let Err((op, e)) = written {
            made.undo();
            return Err(write_err(op, b, e));
        }
        Ok(Undo { dir, name, made })
    }
}

/// Prunes the directory `dir` of the backup `name` as [`WriteOptions::keep_backups`] says:
/// of the regular files ending as `name` does (not links, not `.`-files), sorted, the first and
/// the last `keep` stay. Failures are logged and left.
fn prune_backups(dir: BorrowedFd<'_>, name: &CStr, keep: usize) {
    let name = name.to_bytes();
    let Some(dot) = name.iter().rposition(|&c| c == b'.') else {
        return;
    };
    let ext = &name[dot..];
    let listing = match std::fs::read_dir(rooted::fd_path(dir)) {
        Ok(rd) => rd,
        Err(e) => {
            debug!(error = %e, "cannot list the backups to prune them");
            return;
        }
    };
    let mut names: Vec<Vec<u8>> = listing
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().as_bytes().to_vec())
        .filter(|n| !n.starts_with(b".") && n.ends_with(ext) && n.len() > ext.len())
        .collect();
    names.sort();
    if names.len() <= keep + 1 {
        return;
    }
    let last = names.len() - keep;
    for old in &names[1..last] {
        let Ok(c) = CString::new(old.clone()) else {
            continue;
        };
        if let Err(e) = rooted::unlinkat(dir, &c) {
            debug!(error = %e, name = %String::from_utf8_lossy(old), "cannot remove an old backup");
        }
    }
}

/// A backup that was written, and the directories made for it.
struct Undo {
    dir: OwnedFd,
    name: CString,
    made: rooted::Made,
}

impl Undo {
    /// Removes the backup and the directories made for it.
    fn undo(self) {
        let _ = rooted::unlinkat(self.dir.as_fd(), &self.name);
        self.made.undo();
    }
}

/// What a replaced file keeps.
struct Keep {
    /// Permission bits.
    mode: u32,
    /// Owner and group (`None`: the writer's).
    owner: Option<(u32, u32)>,
    /// Ignore a refused `fchown`/`fchmod` (Proxmox's cluster file system sets its own).
    tolerant: bool,
}

/// An exclusive `flock` held until dropped (closing the file releases it).
struct LockGuard {
    _file: File,
}

/// Takes an exclusive `flock` on `lock`, creating it and its directory, polling until
/// `timeout`.
fn acquire_lock(rooted: &Rooted, lock: &Path, timeout: Duration) -> Result<LockGuard, ExecError> {
    let Parent { dir, name } = rooted
        .parent(lock, true)
        .map_err(|e| write_err("create the directory of lock", lock, e))?;
    let fd = rooted::openat(
        dir.as_fd(),
        &name,
        libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        0o600,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => ExecError::NotRegular {
            target: TARGET.to_owned(),
            path: lock.to_owned(),
            what: "a symbolic link",
        },
        _ => write_err("open lock", lock, e),
    })?;
    let st = rooted::fstat(fd.as_fd()).map_err(|e| io_err(TARGET, "stat", lock, e))?;
    if rooted::file_type(&st) != libc::S_IFREG {
        return Err(ExecError::NotRegular {
            target: TARGET.to_owned(),
            path: lock.to_owned(),
            what: describe_type(st.st_mode),
        });
    }
    let file = File::from(fd);
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
            return Err(io_err(TARGET, "lock", lock, err));
        }
        if Instant::now() >= deadline {
            return Err(ExecError::LockTimeout {
                target: TARGET.to_owned(),
                path: lock.to_owned(),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The prefix of temporary files for the file `name`: `.NAME.phoenix-tmp.`.
fn temp_prefix(name: &CStr) -> Vec<u8> {
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.to_bytes());
    prefix.extend_from_slice(TEMP_MARKER.as_bytes());
    prefix
}

/// The writer's process id in a temporary file's name (`...phoenix-tmp.PID.N`).
fn temp_pid(name: &[u8]) -> Option<i32> {
    let marker = TEMP_MARKER.as_bytes();
    let at = name.windows(marker.len()).rposition(|w| w == marker)?;
    let rest = &name[at + marker.len()..];
    let pid = rest.split(|&b| b == b'.').next()?;
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// Whether process `pid` is alive (or is someone else's we may not signal).
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the temporary files in `dir` whose names start with `prefix` and carry
/// [`TEMP_MARKER`], left by writers that are dead (call only under the lock). Files of a live
/// writer, and names without a process id, stay.
fn remove_orphan_temps(dir: BorrowedFd<'_>, prefix: &[u8]) {
    let Ok(rd) = std::fs::read_dir(rooted::fd_path(dir)) else {
        return;
    };
    let me = std::process::id() as i32;
    for entry in rd.flatten() {
        let name = entry.file_name();
        let n = name.as_bytes();
        if !n.starts_with(prefix) || !n.starts_with(b".") {
            continue;
        }
        let Some(pid) = temp_pid(n) else {
            continue;
        };
        if pid == me || alive(pid) {
            continue;
        }
        debug!(orphan = %entry.path().display(), pid, "removing a temporary file a killed writer left");
        if let Ok(c) = CString::new(n) {
            let _ = rooted::unlinkat(dir, &c);
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A written and synced temporary file beside the file it will replace.
struct Temp<'a> {
    dir: BorrowedFd<'a>,
    tmp: CString,
    name: &'a CStr,
}

impl Temp<'_> {
    /// Renames it over the file and syncs the directory; on failure it is removed and the
    /// file is as it was.
    fn commit(self) -> Result<(), (&'static str, std::io::Error)> {
        if let Err(e) = rooted::renameat(self.dir, &self.tmp, self.name) {
            self.discard();
            return Err(("rename over", e));
        }
        rooted::openat(self.dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map(File::from)
            .and_then(|d| d.sync_all())
            .map_err(|e| ("fsync the directory of", e))
    }

    /// Removes it.
    fn discard(self) {
        let _ = rooted::unlinkat(self.dir, &self.tmp);
    }
}

/// Writes `bytes` into a new temporary file beside `name` in `dir` (unique name, `O_EXCL`)
/// with the owner and mode `keep` says, synced. On failure nothing is left.
fn prepare<'a>(
    dir: BorrowedFd<'a>,
    name: &'a CStr,
    bytes: &[u8],
    keep: &Keep,
) -> Result<Temp<'a>, (&'static str, std::io::Error)> {
    let (tmp, mut file) = loop {
        let mut t = temp_prefix(name);
        t.extend_from_slice(
            format!(
                "{}.{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            )
            .as_bytes(),
        );
        let t = CString::new(t).map_err(|_| ("name", std::io::Error::other("NUL in a name")))?;
        match rooted::openat(
            dir,
            &t,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(fd) => break (t, File::from(fd)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(("create a temporary file for", e)),
        }
    };
    let written = (|| {
        file.write_all(bytes).map_err(|e| ("write", e))?;
        let md = file.metadata().map_err(|e| ("stat", e))?;
        // Only what differs: a chown or chmod that would change nothing is not attempted
        // (Proxmox's /etc/pve refuses some). The owner first: a chown clears set-id bits.
        if let Some((uid, gid)) = keep.owner {
            if (md.uid(), md.gid()) != (uid, gid) {
                match rooted::fchown(file.as_fd(), uid, gid) {
                    Err(e) if keep.tolerant => debug!(error = %e, "owner left to the file system"),
                    r => r.map_err(|e| ("set the owner of", e))?,
                }
            }
        }
        let current = file.metadata().map_err(|e| ("stat", e))?.mode() & 0o7777;
        if current != keep.mode {
            match file.set_permissions(std::fs::Permissions::from_mode(keep.mode)) {
                Err(e) if keep.tolerant => debug!(error = %e, "mode left to the file system"),
                r => r.map_err(|e| ("set the mode of", e))?,
            }
        }
        file.sync_all().map_err(|e| ("fsync", e))
    })();
    drop(file);
    let temp = Temp { dir, tmp, name };
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            temp.discard();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_writer() {
        assert_eq!(temp_pid(b".101.conf.phoenix-tmp.4242.0"), Some(4242));
        assert_eq!(
            temp_pid(b".20250101T000000.000Z.conf.phoenix-tmp.7.12"),
            Some(7)
        );
        assert_eq!(temp_pid(b".101.conf.phoenix-tmp.Ab3xYz"), None);
        assert_eq!(temp_pid(b"101.conf"), None);
        assert!(alive(std::process::id() as i32));
    }

    #[tokio::test]
    async fn a_read_that_hangs_is_given_up() {
        let host = LocalHost::new().with_read_timeout(Duration::from_millis(50));
        let started = Instant::now();
        let e = host
            .bounded(Path::new("/proc/hangs"), || {
                std::thread::sleep(Duration::from_secs(1));
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(900));
        assert!(matches!(e, ExecError::ReadTimeout { .. }), "{e}");
        assert!(e.to_string().contains("/proc/hangs"), "{e}");
    }

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
