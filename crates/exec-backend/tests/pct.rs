//! `Pct<LocalHost>` against `tests/fixtures/pct-standin` (a stand-in for Proxmox's `pct` that
//! checks its argv and forwards to lxc-* against a real busybox container; root only).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::suite;
use exec_backend::{Cmd, ContainerExec, CtRef, CtState, Host, LocalHost, Pct};
use test_support::{lxc_available, TestCt};

/// Copies the stand-in into a temporary directory with its config; returns (dir, program, log).
fn standin(ct: &TestCt, ctid: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("pct");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pct-standin"),
        &program,
    )
    .unwrap();
    let log = dir.path().join("pct.log");
    std::fs::write(
        dir.path().join("pct-standin.conf"),
        format!(
            "LXCPATH='{}'\nLOG='{}'\nCT_{ctid}='{}'\n",
            ct.lxcpath.display(),
            log.display(),
            ct.name
        ),
    )
    .unwrap();
    (dir, program, log)
}

#[tokio::test]
async fn pct_scenario_through_standin() {
    if !lxc_available("pct_scenario_through_standin") {
        return;
    }
    let ct = TestCt::start_new();
    let (_dir, program, _log) = standin(&ct, "101");
    // As the binary builds it: one Arc<dyn Host>.
    let host: Arc<dyn Host> = Arc::new(LocalHost::new());
    let pct = Pct::with_program(host, &program);
    let id = CtRef::new("101");
    let scratch = tempfile::tempdir().unwrap();
    suite::argv_fidelity(&pct, &id).await;
    suite::status_stderr_env(&pct, &id).await;
    suite::push_big_file(&pct, &id, scratch.path()).await;
    suite::timeout_kills(&pct, &id).await;
    suite::lifecycle(&pct, &id).await;
    suite::unknown_ct(&pct, &CtRef::new("999")).await;
}

#[tokio::test]
async fn pct_command_lines_are_exact() {
    if !lxc_available("pct_command_lines_are_exact") {
        return;
    }
    let ct = TestCt::start_new();
    let (dir, program, log) = standin(&ct, "105");
    let pct = Pct::with_program(LocalHost::new(), &program);
    let id = CtRef::new("105");
    let src = dir.path().join("payload");
    std::fs::write(&src, b"payload\n").unwrap();

    assert_eq!(pct.state(&id).await.unwrap(), CtState::Running);
    let out = pct
        .exec(&id, &Cmd::new(["echo", "hi"]).env("FOO", "bar"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "hi\n");
    pct.push_file(&id, &src, Path::new("/tmp/payload"), 0o600)
        .await
        .unwrap();
    let out = pct
        .exec(&id, &Cmd::new(["stat", "-c", "%a", "/tmp/payload"]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "600\n");
    pct.reboot(&id).await.unwrap();
    assert_eq!(pct.state(&id).await.unwrap(), CtState::Running);
    pct.stop(&id).await.unwrap();
    pct.start(&id).await.unwrap();

    let path = exec_backend::process::BASE_PATH;
    let expected = [
        "status 105".to_owned(),
        format!("exec 105 -- env -i PATH={path} LC_ALL=C FOO=bar echo hi"),
        format!("push 105 {} /tmp/payload --perms 600", src.display()),
        format!("exec 105 -- env -i PATH={path} LC_ALL=C stat -c %a /tmp/payload"),
        "reboot 105".into(),
        "status 105".into(),
        "status 105".into(),
        "stop 105".into(),
        "status 105".into(),
        "start 105".into(),
    ];
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged.lines().map(str::trim_end).collect();
    assert_eq!(lines, expected);
}
