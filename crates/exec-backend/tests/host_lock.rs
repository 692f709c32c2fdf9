//! `Host::lock`: an exclusive `flock` held until the guard drops, with `LocalHost` and with
//! `SshHost` (a private sshd on 127.0.0.1, root only). The lock is the same `flock(2)` lock
//! util-linux's `flock` takes, so a shell on this machine sees it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use exec_backend::{ExecError, Host, LocalHost, SshHost};
use test_support::{sshd_available, Sshd};

/// Whether `flock -n PATH true` gets the lock now.
fn free(path: &Path) -> bool {
    Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

/// Waits up to 5 s for the lock at `path` to be free (an SSH holder lets go asynchronously).
async fn freed(path: &Path) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if free(path) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn local_lock_is_held_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalHost::with_root(dir.path());
    let real = dir.path().join("var/cache/x/.f.lock");
    let held = host
        .lock(Path::new("/var/cache/x/.f.lock"), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(real.exists(), "the lock file and its directory are made");
    assert!(!free(&real), "another process sees the lock");
    let t0 = Instant::now();
    let err = host
        .lock(
            Path::new("/var/cache/x/.f.lock"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::LockTimeout { path, .. } if path == Path::new("/var/cache/x/.f.lock")),
        "{err}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));
    drop(held);
    assert!(free(&real));
    let again = host
        .lock(
            Path::new("/var/cache/x/.f.lock"),
            Duration::from_millis(300),
        )
        .await;
    assert!(again.is_ok(), "{again:?}");
}

#[tokio::test]
async fn ssh_lock_is_held_until_dropped() {
    if !sshd_available("ssh_lock_is_held_until_dropped") {
        return;
    }
    let sshd = Sshd::start();
    let mut opts = sshd.options();
    opts.max_sessions = 2;
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("sub/.f.lock");
    let held = host.lock(&real, Duration::from_secs(5)).await.unwrap();
    assert!(!free(&real), "the lock is held on the node");
    let err = host
        .lock(&real, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::LockTimeout { .. }), "{err}");
    // The connection still runs commands while the lock is held.
    let out = host
        .run(&exec_backend::Cmd::new(["echo", "ok"]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "ok\n");
    drop(held);
    assert!(freed(&real).await, "the lock was not released");
    // Each holder takes one of the 2 sessions and gives it back: 5 in turn never wait.
    for _ in 0..5 {
        let again = tokio::time::timeout(
            Duration::from_secs(10),
            host.lock(&real, Duration::from_secs(5)),
        )
        .await
        .expect("a session was not given back")
        .unwrap();
        drop(again);
        assert!(freed(&real).await);
    }
}

/// The lock file is a host file like any other (`docs/reliability.md`): a symbolic link in its
/// place, or a directory link that leads out of `--root`, is refused, and nothing outside the
/// root is created.
#[tokio::test]
async fn a_lock_is_never_taken_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    std::fs::create_dir_all(root.join("var/cache/x")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(outside.join("f"), root.join("var/cache/x/.f.lock")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("var/cache/out")).unwrap();
    let wait = Duration::from_millis(300);

    let host = LocalHost::with_root(&root);
    let e = host
        .lock(Path::new("/var/cache/x/.f.lock"), wait)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExecError::NotRegular { what, .. } if what == "a symbolic link"),
        "{e:?}"
    );
    // Local access resolves the directory link inside the root: no file outside it.
    let _ = host.lock(Path::new("/var/cache/out/.g.lock"), wait).await;
    assert!(!outside.join("f").exists() && !outside.join(".g.lock").exists());

    if !sshd_available("a_lock_is_never_taken_through_a_link") {
        return;
    }
    let sshd = Sshd::start();
    let mut opts = sshd.options();
    opts.root = Some(root.clone());
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    let e = host
        .lock(Path::new("/var/cache/x/.f.lock"), wait)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExecError::NotRegular { what, .. } if what == "a symbolic link"),
        "{e:?}"
    );
    let e = host
        .lock(Path::new("/var/cache/out/.g.lock"), wait)
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::OutsideRoot { .. }), "{e:?}");
    let e = host
        .lock(Path::new("/var/cache/out/new/.h.lock"), wait)
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::OutsideRoot { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "a file was made outside the root"
    );
}
