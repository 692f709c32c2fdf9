//! Host paths opened under a root directory that no symbolic link can leave.
//!
//! [`Rooted::open_dir`] walks a path one component at a time from a descriptor of the root:
//! each component is opened with `openat(O_PATH | O_NOFOLLOW)` relative to the one before; a
//! symbolic link is read with `readlinkat` and its target walked in its place, an absolute
//! target from the root again, `..` never above the root. That is the rule of `openat2(2)`'s
//! `RESOLVE_IN_ROOT` (a link means what it would mean to a process chrooted into the root),
//! done in user space so that kernels without `openat2` (before 5.6: Ubuntu 20.04's 5.4) get
//! the same answer. Every step is relative to a descriptor already held, so a component
//! swapped for a link while we walk is read as the link it now is, never followed out.
//!
//! Files are then opened relative to their directory's descriptor with `O_NOFOLLOW`: a final
//! component that is a link is never opened through.
//!
//! Without a root the walk starts at `/`, which has nothing above it: links are followed as
//! the kernel follows them (`/etc/pve/lxc` is a link on a Proxmox node).

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links one walk may follow (the kernel's limit too).
const MAX_LINKS: u32 = 40;

/// A root directory: `/`, or the directory of `--root`.
#[derive(Clone, Debug)]
pub(crate) struct Rooted {
    root: PathBuf,
}

/// What a directory's parent walk gives: the directory and the final name in it.
pub(crate) struct Parent {
    /// The directory (an `O_PATH` descriptor).
    pub dir: OwnedFd,
    /// The last component of the path.
    pub name: CString,
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

/// `-1` → the last OS error.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `openat(2)`, close-on-exec.
pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: a valid descriptor and a NUL-terminated name; the result is a new descriptor
        // that we own.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        match check(fd) {
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a pointer to a `stat` we own.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `fstatat(2)` without following a final link.
pub(crate) fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: as in `fstat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, a NUL-terminated name, a pointer to a `stat` we own.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// The target of the link `fd` was opened on (`O_PATH | O_NOFOLLOW`).
fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: a valid descriptor, the empty name (the link itself), a buffer of `buf.len()`.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `mkdirat(2)`.
fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a valid descriptor and a NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(|_| ())
}

/// `renameat(2)` within one directory.
pub(crate) fn renameat(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: a valid descriptor and NUL-terminated names.
    check(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })
        .map(|_| ())
}

/// `unlinkat(2)` of a file.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid descriptor and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(|_| ())
}

/// `fchown(2)`.
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: a valid descriptor; no memory is touched.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(|_| ())
}

/// The file type bits of a `stat`.
pub(crate) fn file_type(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// A path's components for the walk: names and `..`; `/` and `.` say nothing.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

impl Rooted {
    /// Paths under `root` (`None`: `/`).
    pub(crate) fn new(root: Option<&Path>) -> Rooted {
        Rooted {
            root: root.map_or_else(|| PathBuf::from("/"), Path::to_owned),
        }
    }

    /// The root itself, opened as the user gave it.
    fn open_root(&self) -> io::Result<OwnedFd> {
        let c = cstr(self.root.as_os_str().as_bytes())?;
        // An absolute root ignores the directory descriptor; a relative one is from the
        // working directory.
        // SAFETY: AT_FDCWD is a valid directory descriptor for openat.
        let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
        openat(cwd, &c, libc::O_PATH | libc::O_DIRECTORY, 0)
    }

    /// The directory `dir` (a host path), every link on the way resolved inside the root.
    /// `create`: make missing directories (mode 0755) on the way, as `mkdir -p` would.
    pub(crate) fn open_dir(&self, dir: &Path, create: bool) -> io::Result<OwnedFd> {
        let mut made = Made::default();
        self.walk(dir, create.then_some(&mut made))
    }

    /// [`Rooted::open_dir`] making missing directories, each recorded in `made`.
    pub(crate) fn make_dir(&self, dir: &Path, made: &mut Made) -> io::Result<OwnedFd> {
        self.walk(dir, Some(made))
    }

    fn walk(&self, dir: &Path, mut made: Option<&mut Made>) -> io::Result<OwnedFd> {
        let create = made.is_some();
        let mut stack = vec![self.open_root()?];
        let mut todo: VecDeque<Vec<u8>> = components(dir.as_os_str().as_bytes())
            .map(<[u8]>::to_vec)
            .collect();
        let mut links = 0;
        while let Some(comp) = todo.pop_front() {
            if comp == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let name = cstr(&comp)?;
            let cur = stack.last().expect("the root stays on the stack");
            let fd = match openat(cur.as_fd(), &name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Ok(fd) => fd,
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    match mkdirat(cur.as_fd(), &name, 0o755) {
                        Ok(()) => {
                            if let Some(made) = made.as_deref_mut() {
                                made.0.push((cur.try_clone()?, name.clone()));
                            }
                        }
                        // Made by someone else meanwhile: walk whatever is there now.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                    todo.push_front(comp);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let st = fstat(fd.as_fd())?;
            match file_type(&st) {
                libc::S_IFDIR => stack.push(fd),
                libc::S_IFLNK => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = readlink_fd(fd.as_fd())?;
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for c in components(&target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(c.to_vec());
                    }
                }
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            }
        }
        Ok(stack.pop().expect("the root stays on the stack"))
    }

    /// The directory of `path` and its last component. A path without a last component (`/`,
    /// `..`) is `EISDIR`.
    pub(crate) fn parent(&self, path: &Path, create: bool) -> io::Result<Parent> {
        let name = match path.components().next_back() {
            Some(Component::Normal(n)) => n,
            _ => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        Ok(Parent {
            dir: self.open_dir(dir, create)?,
            name: cstr(name.as_bytes())?,
        })
    }

    /// The directory `dir` opened for listing (`O_RDONLY`, through the walk).
    pub(crate) fn open_listing(&self, dir: &Path) -> io::Result<OwnedFd> {
        let d = self.open_dir(dir, false)?;
        openat(d.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
    }
}

/// The directories a walk made, to take back (deepest first, each only while empty).
#[derive(Default)]
pub(crate) struct Made(Vec<(OwnedFd, CString)>);

impl Made {
    /// Removes the directories made, deepest first; one that is not empty any more stays.
    pub(crate) fn undo(self) {
        for (parent, name) in self.0.into_iter().rev() {
            // SAFETY: a valid descriptor and a NUL-terminated name.
            unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
        }
    }
}

/// The name of a descriptor in `/proc/self/fd`, for the standard library's path-based calls
/// (listing a directory we hold).
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// The path a descriptor names now (through `/proc/self/fd`).
    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd.as_fd())).unwrap()
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("etc/pve/nodes/a/lxc")).unwrap();
        std::fs::create_dir_all(root.join("inside")).unwrap();
        // Relative, as pmxcfs makes it; absolute, as a captured host's links are.
        symlink("nodes/a/lxc", root.join("etc/pve/lxc")).unwrap();
        symlink("/etc/pve/nodes/a", root.join("etc/pve/local")).unwrap();
        // Out of the root: absolute, and by climbing.
        symlink("/tmp", root.join("abs-out")).unwrap();
        symlink("../../../../../../..", root.join("up-out")).unwrap();
        let r = Rooted::new(Some(&root));
        assert_eq!(
            real(&r.open_dir(Path::new("/etc/pve/lxc"), false).unwrap()),
            root.join("etc/pve/nodes/a/lxc")
        );
        assert_eq!(
            real(&r.open_dir(Path::new("/etc/pve/local/lxc"), false).unwrap()),
            root.join("etc/pve/nodes/a/lxc")
        );
        // `/tmp` of the root, which does not exist: never this machine's /tmp.
        let e = r.open_dir(Path::new("/abs-out"), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(
            real(&r.open_dir(Path::new("/up-out/inside"), false).unwrap()),
            root.join("inside")
        );
        assert_eq!(
            real(&r.open_dir(Path::new("/../../inside/.."), false).unwrap()),
            root
        );
    }

    #[test]
    fn loops_files_and_creation() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        let r = Rooted::new(Some(&root));
        let e = r.open_dir(Path::new("/a"), false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let e = r.open_dir(Path::new("/f/x"), false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
        // What a walk made can be taken back; what was there before stays.
        std::fs::create_dir(root.join("was")).unwrap();
        let mut made = Made::default();
        r.make_dir(Path::new("/was/n1/n2"), &mut made).unwrap();
        assert!(root.join("was/n1/n2").is_dir());
        made.undo();
        assert!(root.join("was").is_dir() && !root.join("was/n1").exists());
        // Creation goes through links inside the root, and stays inside.
        symlink("/made", root.join("to-made")).unwrap();
        let d = r.open_dir(Path::new("/to-made/x/y"), true).unwrap();
        assert_eq!(real(&d), root.join("made/x/y"));
        // The parent of a final link is walked; the link is the name, not followed.
        symlink("f", root.join("made/lf")).unwrap();
        let p = r.parent(Path::new("/to-made/lf"), false).unwrap();
        assert_eq!(real(&p.dir), root.join("made"));
        assert_eq!(p.name.as_bytes(), b"lf");
    }
}
