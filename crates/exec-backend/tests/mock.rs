//! The mocks as another crate sees them (`features = ["mock"]`), and backends driven by them.

use std::path::Path;
use std::sync::Arc;

use exec_backend::{
    Cmd, ContainerExec, CtRef, CtState, ExecError, ExitStatus, FileKind, FileMeta, Host, LxcAttach,
    MockContainerExec, MockHost, Output,
};

#[tokio::test]
async fn mocks_behind_dyn() {
    let mut host = MockHost::new();
    host.expect_name().return_const("mocked".to_owned());
    host.expect_read_file()
        .withf(|p| p == Path::new("/etc/pve/lxc/101.conf"))
        .returning(|_| Ok(b"arch: amd64\n".to_vec()));
    let host: Arc<dyn Host> = Arc::new(host);
    assert_eq!(host.name(), "mocked");
    assert_eq!(
        host.read_file(Path::new("/etc/pve/lxc/101.conf"))
            .await
            .unwrap(),
        b"arch: amd64\n"
    );

    let mut ct = MockContainerExec::new();
    ct.expect_state().returning(|_| Ok(CtState::Stopped));
    let ct: Arc<dyn ContainerExec> = Arc::new(ct);
    assert_eq!(
        ct.state(&CtRef::new("101")).await.unwrap(),
        CtState::Stopped
    );
}

#[tokio::test]
async fn lxc_attach_maps_missing_container() {
    let mut host = MockHost::new();
    host.expect_name().return_const("mocked".to_owned());
    host.expect_resolve().returning(|p| p.to_owned());
    host.expect_run().returning(|cmd| {
        assert_eq!(cmd.program(), "lxc-info");
        Ok(Output {
            status: ExitStatus::Code(1),
            stdout: Vec::new(),
            stderr: b"web doesn't exist\n".to_vec(),
        })
    });
    host.expect_stat()
        .withf(|p| p == Path::new("/var/lib/lxc/web/config"))
        .returning(|_| Ok(None));
    let lxc = LxcAttach::new(host);
    let err = lxc.state(&CtRef::new("web")).await.unwrap_err();
    assert!(matches!(err, ExecError::CtNotFound { .. }), "{err}");
}

#[tokio::test]
async fn lxc_attach_keeps_command_exit_codes() {
    let mut host = MockHost::new();
    host.expect_name().return_const("mocked".to_owned());
    host.expect_resolve().returning(|p| p.to_owned());
    host.expect_run().returning(|_| {
        Ok(Output {
            status: ExitStatus::Code(1),
            stdout: Vec::new(),
            stderr: b"grep found nothing\n".to_vec(),
        })
    });
    // A failing command inside is not a missing container: no stat is made.
    host.expect_stat().never().returning(|_| {
        Ok(Some(FileMeta {
            kind: FileKind::File,
            rdev: None,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
        }))
    });
    let lxc = LxcAttach::new(host);
    let out = lxc
        .exec(&CtRef::new("web"), &Cmd::new(["grep", "x", "/etc/hosts"]))
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(1));
}
