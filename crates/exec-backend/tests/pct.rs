//! `Pct<LocalHost>` against `tests/fixtures/pct-standin` (a stand-in for Proxmox's `pct` that
//! checks its argv and forwards to lxc-* against a real busybox container; root only).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::suite;
use exec_backend::{Cmd, ContainerExec, CtRef, CtState, Host, LocalHost, Pct, Stopped};
use test_support::{lxc_available, TestCt};

/// Copies the stand-in into a temporary directory with its config; returns (dir, program, log).
fn standin(ct: &TestCt, ctid: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    standin_with(ct, ctid, "")
}

/// [`standin`] with `extra` settings lines (`PUSH_SHORT=1`).
fn standin_with(ct: &TestCt, ctid: &str, extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
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
            "LXCPATH='{}'\nLOG='{}'\nCT_{ctid}='{}'\n{extra}\n",
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
    let stopped = pct.stop(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(stopped, Stopped::Clean);
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
        "shutdown 105 --timeout 20".into(),
        "status 105".into(),
        "start 105".into(),
    ];
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged.lines().map(str::trim_end).collect();
    assert_eq!(lines, expected);
}

/// A container whose init ignores the halt signal: `pct shutdown --timeout 2` gives up (exit
/// 255 after the timeout and 5 s more, as pct.pm's vm_stop does), and only then is it killed
/// with `pct stop`; the caller is told it was killed.
#[tokio::test]
async fn a_shutdown_that_does_not_end_in_time_is_followed_by_a_kill() {
    if !lxc_available("a_shutdown_that_does_not_end_in_time_is_followed_by_a_kill") {
        return;
    }
    let ct = TestCt::create();
    // SIGCONT: the busybox init carries on as if nothing happened.
    let config = ct.config() + "lxc.signal.halt = SIGCONT\n";
    std::fs::write(ct.config_path(), config).unwrap();
    ct.start();
    let (_dir, program, log) = standin(&ct, "106");
    let pct = Pct::with_program(LocalHost::new(), &program);
    let id = CtRef::new("106");
    let t0 = std::time::Instant::now();
    let stopped = pct.stop(&id, Duration::from_secs(2)).await.unwrap();
    assert_eq!(stopped, Stopped::Killed);
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "status 106",
            "shutdown 106 --timeout 2",
            "status 106",
            "stop 106"
        ]
    );
    assert_eq!(pct.state(&id).await.unwrap(), CtState::Stopped);
}

/// `pct push` exits 0 whatever happens to the copy, as the real one does: a source it cannot
/// read, a destination it cannot create, and a copy cut short (`PUSH_SHORT=1`) all "succeed".
/// That is why gpu-core checks what arrived before it runs it.
#[tokio::test]
async fn pct_push_exits_0_when_the_copy_fails() {
    if !lxc_available("pct_push_exits_0_when_the_copy_fails") {
        return;
    }
    let ct = TestCt::start_new();
    let (dir, program, _log) = standin_with(&ct, "107", "PUSH_SHORT=1");
    let pct = Pct::with_program(LocalHost::new(), &program);
    let id = CtRef::new("107");
    let src = dir.path().join("payload");
    std::fs::write(&src, vec![b'x'; 4096]).unwrap();
    pct.push_file(&id, &src, Path::new("/tmp/payload"), 0o644)
        .await
        .unwrap();
    let out = pct
        .exec(&id, &Cmd::new(["stat", "-c", "%s", "/tmp/payload"]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "2048\n", "a short copy is not reported");
    let missing = dir.path().join("no-such-file");
    pct.push_file(&id, &missing, Path::new("/tmp/other"), 0o644)
        .await
        .unwrap();
    pct.push_file(&id, &src, Path::new("/no/such/dir/x"), 0o644)
        .await
        .unwrap();
    let out = pct
        .exec(&id, &Cmd::new(["ls", "/tmp/other", "/no/such/dir/x"]))
        .await
        .unwrap();
    assert!(!out.status.success(), "{}", out.stdout_str());
    // Only a stopped container makes push fail (before the worker starts).
    ct.stop();
    let err = pct
        .push_file(&id, &src, Path::new("/tmp/payload"), 0o644)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("can only push files to a running CT"),
        "{err}"
    );
}
