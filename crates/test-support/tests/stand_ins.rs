//! The stand-ins keep the contracts their docs state, and the copies of the captured host
//! agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use exec_backend::{
    Cmd, ContainerExec, CtRef, CtState, ExecError, ExitStatus, FileKind, Host, Output, WriteOptions,
};
use test_support::testdata::{h200x2, h200x2_dev, repo};
use test_support::{sha256_hex, CallLog, CtModel, CtScript, FsHost, HostTree, ScriptedCt, Web};

fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), root, out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_owned();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn examples_h200x2_is_the_captured_host() {
    let example = repo().join("examples/h200x2");
    let mut from_example = BTreeMap::new();
    for top in ["proc", "sys"] {
        for (rel, bytes) in files_under(&example.join(top)) {
            from_example.insert(Path::new(top).join(rel), bytes);
        }
    }
    assert_eq!(from_example, files_under(&h200x2().join("root")));
    // Its stand-in nodes are the captured ones.
    for n in h200x2_dev() {
        let p = example.join(n.path.trim_start_matches('/'));
        assert_eq!(p.is_dir(), n.rdev.is_none(), "{}", p.display());
        assert!(p.exists(), "{}", p.display());
    }
}

#[test]
fn dev_stat_lists_the_captured_nodes() {
    let dev = h200x2_dev();
    assert_eq!(dev.len(), 8);
    let nvidia1 = dev.iter().find(|n| n.path == "/dev/nvidia1").unwrap();
    assert_eq!((nvidia1.rdev, nvidia1.mode), (Some((195, 1)), 0o666));
    let caps = dev
        .iter()
        .position(|n| n.path == "/dev/nvidia-caps")
        .unwrap();
    let cap1 = dev
        .iter()
        .position(|n| n.path == "/dev/nvidia-caps/nvidia-cap1")
        .unwrap();
    assert!(caps < cap1, "a directory comes before its nodes");
    assert_eq!(dev[cap1].mode, 0o400);
}

#[tokio::test]
async fn fs_host_reads_writes_and_reports_declared_devices() {
    let tree = HostTree::h200x2();
    let calls = CallLog::new();
    let host = FsHost::new(tree.root())
        .named("h")
        .with_calls(calls.clone())
        .with_char_devices(&h200x2_dev());
    let version = host
        .read_file(Path::new("/sys/module/nvidia/version"))
        .await;
    assert_eq!(version.unwrap(), b"580.159.04\n");
    let nvidia1 = host.stat(Path::new("/dev/nvidia1")).await.unwrap().unwrap();
    assert_eq!(
        (nvidia1.kind, nvidia1.rdev),
        (FileKind::CharDevice, Some((195, 1)))
    );
    let dev = host.read_dir(Path::new("/dev")).await.unwrap();
    let names: Vec<_> = dev.iter().map(|e| e.name.to_string_lossy()).collect();
    assert_eq!(
        names,
        [
            "nvidia-caps",
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia0",
            "nvidia1",
            "nvidiactl"
        ]
    );
    assert_eq!(dev[0].meta.kind, FileKind::Dir);
    assert_eq!(dev[5].meta.rdev, Some((195, 255)));
    assert!(matches!(
        host.read_file(Path::new("/nope")).await,
        Err(ExecError::NotFound { .. })
    ));

    // A write with a backup, then one that expected other previous bytes.
    let conf = Path::new("/etc/x.conf");
    host.put("/etc/x.conf", "old\n");
    let opts = WriteOptions {
        backup_to: Some(PathBuf::from("/backups/x.conf")),
        expect_previous: Some(Some(b"old\n".to_vec())),
        ..WriteOptions::default()
    };
    host.write_file_atomic(conf, b"new\n", &opts).await.unwrap();
    assert_eq!(host.get("/etc/x.conf"), "new\n");
    assert_eq!(host.get("/backups/x.conf"), "old\n");
    let e = host.write_file_atomic(conf, b"newer\n", &opts).await;
    assert!(matches!(e, Err(ExecError::Conflict { .. })), "{e:?}");
    assert_eq!(host.get("/etc/x.conf"), "new\n");
    assert_eq!(host.writes.lock().unwrap().len(), 1);
    assert_eq!(
        calls.take(),
        [
            "host read_file /sys/module/nvidia/version",
            "host stat /dev/nvidia1",
            "host read_dir /dev",
            "host read_file /nope",
            "host write_file_atomic /etc/x.conf",
            "host write_file_atomic /etc/x.conf",
        ]
    );
}

#[tokio::test]
async fn fs_host_runs_file_utilities_under_its_root_only() {
    let tree = HostTree::empty();
    let host = FsHost::new(tree.root());
    let file = host.resolve(Path::new("/var/cache/f"));
    let dir = file.parent().unwrap().as_os_str().to_owned();
    let mkdir = Cmd::new(["mkdir".into(), "-p".into(), dir]);
    assert!(host.run(&mkdir).await.unwrap().status.success());
    let tee = Cmd::new(["tee".into(), file.clone().into_os_string()]).stdin(b"bytes".to_vec());
    let out = host.run(&tee).await.unwrap();
    assert_eq!(out.stdout, b"bytes");
    assert_eq!(host.read("/var/cache/f"), b"bytes");
    let sum = host
        .run(&Cmd::new([
            "sha256sum".into(),
            file.clone().into_os_string(),
        ]))
        .await
        .unwrap();
    assert!(sum.stdout_str().starts_with(&sha256_hex(b"bytes")));
    assert_eq!(host.paths(), [PathBuf::from("/var/cache/f")]);

    // Not a file utility: not found, as on a host without the program.
    let out = host.run(&Cmd::new(["pct", "status", "101"])).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(127));
    // An answer given by the test wins.
    host.answer(&["pct", "status", "101"], Output::ok("status: running\n"));
    let out = host.run(&Cmd::new(["pct", "status", "101"])).await.unwrap();
    assert_eq!(out.stdout_str(), "status: running\n");

    // A path outside the root is refused before anything runs.
    let elsewhere = HostTree::empty();
    elsewhere.put("/keep", "kept");
    let victim = elsewhere.path("/keep").into_os_string();
    let outside = tokio::spawn(async move {
        let cmd = Cmd::new(["rm".into(), "-f".into(), victim]);
        host.run(&cmd).await
    })
    .await;
    assert!(outside.unwrap_err().is_panic());
    assert_eq!(elsewhere.get("/keep"), "kept");
}

#[tokio::test]
async fn web_answers_curl_like_curl() {
    let tree = HostTree::empty();
    let web = Arc::new(Web::default());
    web.serve("https://example.invalid/a.run", b"0123456789".to_vec());
    let host = FsHost::new(tree.root()).with_web(web.clone());
    let run = |argv: Vec<String>| {
        let host = &host;
        async move { host.run(&Cmd::new(argv)).await.unwrap() }
    };
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();

    let head = run(s(&[
        "curl",
        "-sIL",
        "--retry",
        "2",
        "https://example.invalid/a.run",
    ]))
    .await;
    assert_eq!(head.status, ExitStatus::Code(0));
    assert!(head.stdout_str().contains("Content-Length: 10\r\n"));
    let missing = run(s(&["curl", "-sIL", "https://example.invalid/b"])).await;
    assert!(missing.stdout_str().starts_with("HTTP/1.1 404"));
    let missing = run(s(&[
        "curl",
        "-fsSL",
        "--retry",
        "3",
        "https://example.invalid/b",
    ]))
    .await;
    assert_eq!(missing.status, ExitStatus::Code(22));

    let dest = host.resolve(Path::new("/a.run")).display().to_string();
    let get = s(&[
        "curl",
        "-fsSL",
        "--retry",
        "3",
        "-o",
        &dest,
        "https://example.invalid/a.run",
    ]);
    assert!(run(get.clone()).await.status.success());
    assert_eq!(host.read("/a.run"), b"0123456789");
    web.cut_downloads(true);
    let cut = run(get).await;
    assert_eq!(cut.status, ExitStatus::Code(18));
    assert_eq!(host.read("/a.run"), b"01234");
    assert_eq!(web.gets("https://example.invalid/a.run"), 2);
}

/// A container model that echoes its argv and counts starts.
#[derive(Default)]
struct Echo {
    starts: usize,
}

impl CtScript for Echo {
    fn exec(ct: &mut CtModel<Echo>, cmd: &Cmd) -> Result<Output, ExecError> {
        assert_eq!(ct.state, CtState::Running);
        Ok(Output::ok(cmd.display_argv().join(" ")))
    }

    fn started(ct: &mut CtModel<Echo>) {
        ct.starts += 1;
    }
}

#[tokio::test]
async fn scripted_ct_keeps_state_and_records_calls() {
    let calls = CallLog::new();
    let ct = ScriptedCt::new(CtState::Stopped, Echo::default())
        .named("ct1")
        .with_calls(calls.clone());
    let id = CtRef::new("ct1");
    assert_eq!(ct.state(&id).await.unwrap(), CtState::Stopped);
    ct.start(&id).await.unwrap();
    let out = ct.exec(&id, &Cmd::new(["echo", "hi"])).await.unwrap();
    assert_eq!(out.stdout_str(), "echo hi");
    ct.push_file(&id, Path::new("/src/f"), Path::new("/root/f"), 0o644)
        .await
        .unwrap();
    ct.stop(&id, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let e = ct.state(&CtRef::new("other")).await.unwrap_err();
    assert!(matches!(e, ExecError::CtNotFound { .. }), "{e}");
    ct.with(|m| {
        assert_eq!(m.state, CtState::Stopped);
        assert_eq!(m.starts, 1);
        assert_eq!(m.pushed, [PathBuf::from("/src/f")]);
        assert!(m.files.contains("/root/f"));
    });
    assert_eq!(
        calls.take(),
        [
            "ct state",
            "ct start",
            "ct exec echo hi",
            "ct push_file /src/f /root/f",
            "ct stop",
        ]
    );
}
