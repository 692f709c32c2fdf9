//! Files that are not what they should be, against `LocalHost` and `SshHost` (root only: it
//! makes device nodes, changes owners and mounts a read-only directory).
//!
//! Both backends keep the same promises: a file is read or replaced only when it is a regular
//! file (never through a final symbolic link, never waiting on a FIFO, never opening a
//! device); nothing outside the root is read; a replaced file keeps its owner, group and
//! mode; a write that fails leaves no backup; a read-only directory under `/etc/pve` is said
//! to be Proxmox's cluster file system without quorum; temporary files of dead writers are
//! removed, those of live ones kept.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use exec_backend::{ExecError, Host, LocalHost, SshHost, WriteOptions};
use test_support::{is_root, sshd_available, Sshd};

const CONF: &str = "/etc/pve/lxc/201.conf";

/// A host tree with a config, a secret outside the tree, and the hostile files.
struct Tree {
    dir: tempfile::TempDir,
    /// A file outside the tree that nothing may read.
    outside: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"SECRET\n").unwrap();
        let t = Tree { dir, outside };
        std::fs::create_dir_all(t.path("/etc/pve/lxc")).unwrap();
        std::fs::write(t.path(CONF), b"arch: amd64\n").unwrap();
        t
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p.trim_start_matches('/'))
    }

    fn secret(&self) -> PathBuf {
        self.outside.path().join("secret")
    }
}

fn locked(backup: &str) -> WriteOptions {
    WriteOptions {
        lock: Some("/run/lock/lxc/pve-config-201.lock".into()),
        backup_to: Some(backup.into()),
        ..WriteOptions::default()
    }
}

fn assert_not_regular(e: &ExecError, what: &str) {
    match e {
        ExecError::NotRegular { what: w, .. } => assert_eq!(*w, what, "{e}"),
        other => panic!("expected NotRegular {what:?}, got {other:?}"),
    }
}

/// A process id that is no one's (a child that has been reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// The promises every backend keeps; `host` resolves host paths under `t`.
async fn promises(host: &dyn Host, t: &Tree) {
    // A config that is a link to a file outside the tree: refused, the link kept.
    std::fs::remove_file(t.path(CONF)).unwrap();
    symlink(t.secret(), t.path(CONF)).unwrap();
    let e = host.read_file(Path::new(CONF)).await.unwrap_err();
    assert_not_regular(&e, "a symbolic link");
    let e = host
        .write_file_atomic(Path::new(CONF), b"x\n", &locked("/var/lib/b/201/1.conf"))
        .await
        .unwrap_err();
    assert_not_regular(&e, "a symbolic link");
    assert!(std::fs::symlink_metadata(t.path(CONF))
        .unwrap()
        .is_symlink());
    assert_eq!(std::fs::read(t.secret()).unwrap(), b"SECRET\n");
    assert!(!t.path("/var/lib/b/201/1.conf").exists());
    // A link to a file inside the tree is refused too (Proxmox configs are never links).
    std::fs::remove_file(t.path(CONF)).unwrap();
    std::fs::write(t.path("/etc/pve/lxc/real.conf"), b"arch: amd64\n").unwrap();
    symlink("real.conf", t.path(CONF)).unwrap();
    let e = host.read_file(Path::new(CONF)).await.unwrap_err();
    assert_not_regular(&e, "a symbolic link");
    std::fs::remove_file(t.path(CONF)).unwrap();

    // A FIFO: refused at once (nothing writes into it, a read would wait forever).
    Command::new("mkfifo").arg(t.path(CONF)).status().unwrap();
    let started = Instant::now();
    let e = host.read_file(Path::new(CONF)).await.unwrap_err();
    assert_not_regular(&e, "a FIFO (named pipe)");
    let e = host
        .write_file_atomic(Path::new(CONF), b"x\n", &locked("/var/lib/b/201/1.conf"))
        .await
        .unwrap_err();
    assert_not_regular(&e, "a FIFO (named pipe)");
    assert!(started.elapsed() < Duration::from_secs(10));
    std::fs::remove_file(t.path(CONF)).unwrap();

    // A character device (a copy of /dev/zero: a read would never end) and a directory.
    Command::new("mknod")
        .arg(t.path(CONF))
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    let e = host.read_file(Path::new(CONF)).await.unwrap_err();
    assert_not_regular(&e, "a character device");
    std::fs::remove_file(t.path(CONF)).unwrap();
    std::fs::create_dir(t.path(CONF)).unwrap();
    let e = host.read_file(Path::new(CONF)).await.unwrap_err();
    assert_not_regular(&e, "a directory");
    std::fs::remove_dir(t.path(CONF)).unwrap();

    // Owner, group and mode of the replaced file are kept; so is the backup's mode.
    std::fs::write(t.path(CONF), b"arch: amd64\n").unwrap();
    std::os::unix::fs::chown(t.path(CONF), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(t.path(CONF), std::fs::Permissions::from_mode(0o640)).unwrap();
    // Orphans: of a dead writer (go), of this live process (stay), not ours (stay).
    let dead = dead_pid();
    let me = std::process::id();
    let orphan = t.path(&format!("/etc/pve/lxc/.201.conf.phoenix-tmp.{dead}.0"));
    let live = t.path(&format!("/etc/pve/lxc/.201.conf.phoenix-tmp.{me}.99"));
    std::fs::create_dir_all(t.path("/var/lib/b/201")).unwrap();
    let b_orphan = t.path(&format!("/var/lib/b/201/.0.conf.phoenix-tmp.{dead}.0"));
    let b_other = t.path("/var/lib/b/201/notes.txt");
    for f in [&orphan, &live, &b_orphan, &b_other] {
        std::fs::write(f, b"left\n").unwrap();
    }
    host.write_file_atomic(
        Path::new(CONF),
        b"arch: arm64\n",
        &locked("/var/lib/b/201/1.conf"),
    )
    .await
    .unwrap();
    let md = std::fs::metadata(t.path(CONF)).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1000, 1000, 0o640),
        "owner and mode kept"
    );
    assert_eq!(std::fs::read(t.path(CONF)).unwrap(), b"arch: arm64\n");
    let b = std::fs::metadata(t.path("/var/lib/b/201/1.conf")).unwrap();
    assert_eq!(b.mode() & 0o7777, 0o640);
    assert!(
        !orphan.exists(),
        "a dead writer's temporary file is removed"
    );
    assert!(!b_orphan.exists(), "also in the backup directory");
    assert!(live.exists(), "a live writer's stays");
    assert!(b_other.exists(), "a file that is not ours stays");
    std::fs::remove_file(&live).unwrap();

    // A read-only /etc/pve (no quorum): the error says so, the config and the backups are as
    // they were, and no backup of the failed write is left.
    let ro = ReadOnlyMount::new(&t.path("/etc/pve/lxc"));
    let before = std::fs::read(t.path(CONF)).unwrap();
    for backup in ["/var/lib/b/201/2.conf", "/var/lib/b/new/dirs/2.conf"] {
        let e = host
            .write_file_atomic(Path::new(CONF), b"arch: x\n", &locked(backup))
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::ReadOnly { .. }), "{e:?}");
        assert!(e.to_string().contains("quorate cluster"), "{e}");
        assert_eq!(std::fs::read(t.path(CONF)).unwrap(), before);
        assert!(!t.path(backup).exists(), "no backup of a failed write");
    }
    assert!(
        !t.path("/var/lib/b/new").exists(),
        "no backup directory either"
    );
    assert!(t.path("/var/lib/b/201/1.conf").exists());
    drop(ro);

    // A full disk where the backups go: the config is as it was, no temporary file is left
    // beside it, no directory made for the backup stays.
    let full = t.path("/var/lib/full");
    let _tmpfs = Tmpfs::full(&full);
    let e = host
        .write_file_atomic(
            Path::new(CONF),
            b"arch: y\n",
            &locked("/var/lib/full/201/1.conf"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::NoSpace { .. }), "{e:?}");
    assert!(e.to_string().contains("is full"), "{e}");
    assert_eq!(std::fs::read(t.path(CONF)).unwrap(), before);
    assert!(!full.join("201").exists());
    let names: Vec<_> = std::fs::read_dir(t.path("/etc/pve/lxc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A tmpfs of one page, filled, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn full(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success());
        let _ = std::fs::write(dir.join("fill"), vec![b'x'; 8192]);
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A directory bind-mounted read-only over itself, unmounted on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(dir: &Path) -> ReadOnlyMount {
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("mount").arg("--bind").arg(dir).arg(dir));
        let m = ReadOnlyMount(dir.to_owned());
        ok(Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir));
        m
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn local_host_keeps_the_promises() {
    if !is_root("local_host_keeps_the_promises") {
        return;
    }
    let t = Tree::new();
    promises(&LocalHost::with_root(t.root()), &t).await;
}

#[tokio::test]
async fn ssh_host_keeps_the_promises() {
    if !sshd_available("ssh_host_keeps_the_promises") {
        return;
    }
    let sshd = Sshd::start();
    let t = Tree::new();
    let mut opts = sshd.options();
    opts.root = Some(t.root().to_owned());
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    promises(&host, &t).await;
}

/// A directory link that leaves the root: locally it means what it would mean to a process
/// chrooted into the root (so the file outside is not found); over SSH it is refused. The file
/// outside is never read either way.
#[tokio::test]
async fn links_never_lead_out_of_the_root() {
    if !is_root("links_never_lead_out_of_the_root") {
        return;
    }
    let t = Tree::new();
    symlink(t.outside.path(), t.path("/etc/pve/out")).unwrap();
    symlink("../../../../../../../../..", t.path("/etc/pve/up")).unwrap();
    let secret = t.secret();
    let rel = secret.strip_prefix("/").unwrap().display().to_string();
    let local = LocalHost::with_root(t.root());
    for p in [
        "/etc/pve/out/secret".to_owned(),
        format!("/etc/pve/up/{rel}"),
    ] {
        let e = local.read_file(Path::new(&p)).await.unwrap_err();
        assert!(matches!(e, ExecError::NotFound { .. }), "{p}: {e:?}");
        let e = local
            .write_file_atomic(Path::new(&p), b"x", &WriteOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::NotFound { .. }), "{p}: {e:?}");
    }
    assert_eq!(
        local.stat(Path::new("/etc/pve/out/secret")).await.unwrap(),
        None
    );
    // A backup or lock directory behind such a link is made inside the root.
    std::fs::create_dir_all(t.path("/var/lib")).unwrap();
    symlink(t.outside.path(), t.path("/var/lib/b")).unwrap();
    local
        .write_file_atomic(
            Path::new(CONF),
            b"arch: arm64\n",
            &locked("/var/lib/b/201/1.conf"),
        )
        .await
        .unwrap();
    assert!(!t.outside.path().join("201").exists());
    assert!(t
        .path(&format!("{}/201/1.conf", t.outside.path().display()))
        .exists());
    assert_eq!(std::fs::read(&secret).unwrap(), b"SECRET\n");

    if !sshd_available("links_never_lead_out_of_the_root") {
        return;
    }
    let sshd = Sshd::start();
    let mut opts = sshd.options();
    opts.root = Some(t.root().to_owned());
    let ssh = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    for p in [
        "/etc/pve/out/secret".to_owned(),
        format!("/etc/pve/up/{rel}"),
    ] {
        let e = ssh.read_file(Path::new(&p)).await.unwrap_err();
        assert!(matches!(e, ExecError::OutsideRoot { .. }), "{p}: {e:?}");
        let e = ssh.stat(Path::new(&p)).await.unwrap_err();
        assert!(matches!(e, ExecError::OutsideRoot { .. }), "{p}: {e:?}");
    }
    let e = ssh.read_dir(Path::new("/etc/pve/out")).await.unwrap_err();
    assert!(matches!(e, ExecError::OutsideRoot { .. }), "{e:?}");
    std::fs::remove_file(t.path("/var/lib/b")).unwrap();
    symlink(t.outside.path(), t.path("/var/lib/b")).unwrap();
    let e = ssh
        .write_file_atomic(
            Path::new(CONF),
            b"arch: x\n",
            &locked("/var/lib/b/202/1.conf"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::OutsideRoot { .. }), "{e:?}");
    assert!(!t.outside.path().join("202").exists());
    assert_eq!(std::fs::read(t.path(CONF)).unwrap(), b"arch: arm64\n");
}
