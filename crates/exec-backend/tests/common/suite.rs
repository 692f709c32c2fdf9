//! One scenario for any `ContainerExec` that reaches a running busybox container: argv
//! fidelity, exit codes, stderr, env, a 50 MB push, a timeout, stop/start/state, unknown CT.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use exec_backend::{Cmd, ContainerExec, CtRef, CtState, ExecError, ExitStatus, Stopped};

/// Arguments that a shell would mangle.
pub fn tricky_args() -> Vec<OsString> {
    vec![
        "a b".into(),
        "it's".into(),
        "\"quoted\"".into(),
        "$HOME and ${PATH}".into(),
        "line1\nline2".into(),
        OsString::from_vec(b"\xff\xfe not utf-8 \x80".to_vec()),
        "".into(),
        "*".into(),
        "-n".into(),
        "back\\slash".into(),
        "`id`;$(id)".into(),
    ]
}

/// `printf '%s\0' "$@"` inside; the bytes must come back exactly.
pub async fn argv_fidelity<C: ContainerExec>(c: &C, ct: &CtRef) {
    let args = tricky_args();
    let mut argv: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        "printf '%s\\0' \"$@\"".into(),
        "sh".into(),
    ];
    argv.extend(args.iter().cloned());
    let out = c.exec(ct, &Cmd::new(argv)).await.unwrap();
    assert!(out.status.success(), "{}", out.stderr_tail(500));
    let mut expected = Vec::new();
    for a in args {
        expected.extend(a.into_vec());
        expected.push(0);
    }
    assert_eq!(out.stdout, expected);
}

/// Exit codes, stderr and env come back; the caller's environment does not leak in.
pub async fn status_stderr_env<C: ContainerExec>(c: &C, ct: &CtRef) {
    let out = c
        .exec(ct, &Cmd::new(["sh", "-c", "echo to-stderr >&2; exit 7"]))
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(7));
    assert_eq!(out.stderr_tail(100), "to-stderr");

    std::env::set_var("PGT_SHOULD_NOT_LEAK", "1");
    let cmd = Cmd::new([
        "sh",
        "-c",
        "printf '%s|%s|%s' \"$FOO\" \"$LC_ALL\" \"${PGT_SHOULD_NOT_LEAK-unset}\"",
    ])
    .env("FOO", "bar baz $x");
    let out = c.exec(ct, &cmd).await.unwrap();
    assert_eq!(out.stdout_str(), "bar baz $x|C|unset");
}

/// A 50 MB file pushed in has the same SHA-256 inside, and the mode asked for.
pub async fn push_big_file<C: ContainerExec>(c: &C, ct: &CtRef, host_dir: &Path) {
    let mut data = vec![0u8; 50 * 1024 * 1024];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let src = host_dir.join("big.bin");
    std::fs::write(&src, &data).unwrap();
    c.push_file(ct, &src, Path::new("/tmp/big file.bin"), 0o640)
        .await
        .unwrap();
    let out = c
        .exec(ct, &Cmd::new(["sha256sum", "/tmp/big file.bin"]))
        .await
        .unwrap();
    let inside = out.stdout_str();
    assert_eq!(
        inside.split_whitespace().next(),
        Some(test_support::sha256_hex(&data).as_str())
    );
    let out = c
        .exec(ct, &Cmd::new(["stat", "-c", "%a", "/tmp/big file.bin"]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "640");
    c.exec(ct, &Cmd::new(["rm", "-f", "/tmp/big file.bin"]))
        .await
        .unwrap();
}

/// A timeout kills the command, says so, and the process is gone inside.
pub async fn timeout_kills<C: ContainerExec>(c: &C, ct: &CtRef) {
    let cmd = Cmd::new([
        "sh",
        "-c",
        "echo $$ > /tmp/pgt-timeout.pid; exec sleep 1000",
    ])
    .timeout(Duration::from_secs(2));
    let err = c.exec(ct, &cmd).await.unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    let pid = c
        .exec(ct, &Cmd::new(["cat", "/tmp/pgt-timeout.pid"]))
        .await
        .unwrap()
        .stdout_str();
    let pid = pid.trim().to_owned();
    assert!(!pid.is_empty());
    // Gone: no /proc entry, or a zombie waiting for init.
    let check = format!(
        "s=$(cat /proc/{pid}/stat 2>/dev/null) || exit 0; case \"${{s##*) }}\" in Z*) exit 0;; esac; exit 1"
    );
    let mut gone = false;
    for _ in 0..50 {
        let out = c.exec(ct, &Cmd::new(["sh", "-c", &check])).await.unwrap();
        if out.status.success() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "process {pid} still alive inside after the timeout");
}

/// Stop, state, start, state; exec works again.
pub async fn lifecycle<C: ContainerExec>(c: &C, ct: &CtRef) {
    assert_eq!(c.state(ct).await.unwrap(), CtState::Running);
    let grace = Duration::from_secs(10);
    assert_eq!(c.stop(ct, grace).await.unwrap(), Stopped::Clean);
    assert_eq!(c.state(ct).await.unwrap(), CtState::Stopped);
    assert_eq!(c.stop(ct, grace).await.unwrap(), Stopped::Already);
    c.start(ct).await.unwrap();
    assert_eq!(c.state(ct).await.unwrap(), CtState::Running);
    let out = c.exec(ct, &Cmd::new(["echo", "back"])).await.unwrap();
    assert_eq!(out.stdout_str(), "back\n");
}

/// An unknown container (`nope`) is `CtNotFound` everywhere.
pub async fn unknown_ct<C: ContainerExec>(c: &C, nope: &CtRef) {
    let nope = nope.clone();
    let err = c.state(&nope).await.unwrap_err();
    assert!(matches!(err, ExecError::CtNotFound { .. }), "{err}");
    let err = c.exec(&nope, &Cmd::new(["true"])).await.unwrap_err();
    assert!(matches!(err, ExecError::CtNotFound { .. }), "{err}");
    let err = c.start(&nope).await.unwrap_err();
    assert!(matches!(err, ExecError::CtNotFound { .. }), "{err}");
    let err = c.stop(&nope, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, ExecError::CtNotFound { .. }), "{err}");
}
