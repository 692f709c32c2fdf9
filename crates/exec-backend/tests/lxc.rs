//! `LxcAttach<LocalHost>` against a real busybox container (root only).

mod common;

use std::path::Path;

use common::suite;
use exec_backend::{Cmd, ContainerExec, CtRef, CtState, LocalHost, LxcAttach};
use test_support::{lxc_available, TestCt};

#[tokio::test]
async fn lxc_attach_local_scenario() {
    if !lxc_available("lxc_attach_local_scenario") {
        return;
    }
    let ct = TestCt::start_new();
    let lxc = LxcAttach::with_lxcpath(LocalHost::new(), &ct.lxcpath);
    let id = CtRef::new(&ct.name);
    let scratch = tempfile::tempdir().unwrap();
    suite::argv_fidelity(&lxc, &id).await;
    suite::status_stderr_env(&lxc, &id).await;
    suite::push_big_file(&lxc, &id, scratch.path()).await;
    suite::timeout_kills(&lxc, &id).await;
    suite::lifecycle(&lxc, &id).await;
    suite::unknown_ct(&lxc, &CtRef::new("pgt-does-not-exist")).await;
}

#[tokio::test]
async fn lxc_push_into_stopped_rootfs() {
    if !lxc_available("lxc_push_into_stopped_rootfs") {
        return;
    }
    let ct = TestCt::create();
    let lxc = LxcAttach::with_lxcpath(LocalHost::new(), &ct.lxcpath);
    let id = CtRef::new(&ct.name);
    assert_eq!(lxc.state(&id).await.unwrap(), CtState::Stopped);
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("hello");
    std::fs::write(&src, b"hello rootfs\n").unwrap();
    lxc.push_file(&id, &src, Path::new("/etc/hello.txt"), 0o600)
        .await
        .unwrap();
    let written = ct.rootfs().join("etc/hello.txt");
    assert_eq!(std::fs::read(&written).unwrap(), b"hello rootfs\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o7777,
        0o600
    );

    // A symlink inside the rootfs is never followed out of it.
    std::os::unix::fs::symlink(scratch.path(), ct.rootfs().join("escape")).unwrap();
    let err = lxc
        .push_file(&id, &src, Path::new("/escape/owned"), 0o600)
        .await
        .unwrap_err();
    assert!(
        matches!(err, exec_backend::ExecError::Unsupported { .. }),
        "{err}"
    );
    assert!(!scratch.path().join("owned").exists());

    lxc.start(&id).await.unwrap();
    let out = lxc
        .exec(&id, &Cmd::new(["cat", "/etc/hello.txt"]))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hello rootfs\n");
}
