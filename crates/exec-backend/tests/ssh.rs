//! `SshHost` against a private sshd on 127.0.0.1 (root only), and `LxcAttach<SshHost>`
//! against a real container through it.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use common::{proc_alive, suite};
use exec_backend::{
    Cmd, ContainerExec, CtRef, ExecError, ExitStatus, FileKind, Host, LxcAttach, SshHost,
    WriteOptions,
};
use test_support::{lxc_available, sshd_available, Sshd, TestCt};

async fn connect(sshd: &Sshd) -> SshHost {
    SshHost::connect(&sshd.dest(), sshd.options())
        .await
        .unwrap()
}

#[tokio::test]
async fn ssh_runs_commands_faithfully() {
    if !sshd_available("ssh_runs_commands_faithfully") {
        return;
    }
    let sshd = Sshd::start();
    let host = connect(&sshd).await;
    assert_eq!(host.name(), format!("root@127.0.0.1:{}", sshd.port));

    let args = suite::tricky_args();
    let mut argv: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        "printf '%s\\0' \"$@\"".into(),
        "sh".into(),
    ];
    argv.extend(args.iter().cloned());
    let out = host.run(&Cmd::new(argv)).await.unwrap();
    let mut expected = Vec::new();
    for a in args {
        expected.extend(a.into_vec());
        expected.push(0);
    }
    assert_eq!(out.stdout, expected);

    let out = host
        .run(&Cmd::new(["sh", "-c", "cat; echo to-stderr >&2; exit 9"]).stdin(b"in\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout_str(), out.stderr_tail(100)),
        (ExitStatus::Code(9), "in\n".into(), "to-stderr".into())
    );

    let out = host
        .run(&Cmd::new(["env"]).env("FOO", "a b"))
        .await
        .unwrap();
    let mut lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "FOO=a b".to_owned(),
            "LC_ALL=C".into(),
            format!("PATH={}", exec_backend::process::BASE_PATH)
        ]
    );

    let err = host
        .run(&Cmd::new(["echo", "nul\0byte"]))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::InvalidCmd { .. }), "{err}");
}

#[tokio::test]
async fn ssh_timeout_kills_remote_command() {
    if !sshd_available("ssh_timeout_kills_remote_command") {
        return;
    }
    let sshd = Sshd::start();
    let host = connect(&sshd).await;
    let pidfile = sshd.dir.path().join("remote.pid");
    let script = format!("echo $$ > '{}'; exec sleep 1000", pidfile.display());
    let started = std::time::Instant::now();
    let err = host
        .run(&Cmd::new(["sh", "-c", &script]).timeout(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the remote timeout should fire first"
    );
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut alive = true;
    for _ in 0..50 {
        alive = proc_alive(Path::new("/proc"), pid);
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive, "remote process {pid} survived the timeout");
}

#[tokio::test]
async fn ssh_files() {
    if !sshd_available("ssh_files") {
        return;
    }
    let sshd = Sshd::start();
    let host = connect(&sshd).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // read, stat, list
    let weird = OsString::from_vec(b"we ird\n\xff'name".to_vec());
    std::fs::write(d.join(&weird), b"bytes\x00\xff").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink("sub", d.join(".hidden-link")).unwrap();
    assert_eq!(
        host.read_file(&d.join(&weird)).await.unwrap(),
        b"bytes\x00\xff"
    );
    let err = host.read_file(&d.join("missing")).await.unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
    let null = host.stat(Path::new("/dev/null")).await.unwrap().unwrap();
    assert_eq!(
        (null.kind, null.rdev, null.mode),
        (FileKind::CharDevice, Some((1, 3)), 0o666)
    );
    assert_eq!(host.stat(&d.join("missing")).await.unwrap(), None);
    let link = host.stat(&d.join(".hidden-link")).await.unwrap().unwrap();
    assert_eq!(link.kind, FileKind::Symlink);
    let listed = host.read_dir(d).await.unwrap();
    let names: Vec<OsString> = listed.iter().map(|e| e.name.clone()).collect();
    assert_eq!(
        names,
        vec![OsString::from(".hidden-link"), "sub".into(), weird.clone()]
    );
    assert_eq!(listed[2].meta.size, 7);
    assert_eq!(host.read_dir(&d.join("sub")).await.unwrap(), vec![]);
    let err = host.read_dir(&d.join("missing")).await.unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
    // Same answers as the local backend (the filtered listing and the batch of stats too).
    let local = exec_backend::LocalHost::new();
    assert_eq!(
        host.read_dir(Path::new("/dev")).await.unwrap(),
        local.read_dir(Path::new("/dev")).await.unwrap()
    );
    let tty = exec_backend::NameMatch::starting("tty");
    assert_eq!(
        host.read_dir_matching(Path::new("/dev"), &tty)
            .await
            .unwrap(),
        local
            .read_dir_matching(Path::new("/dev"), &tty)
            .await
            .unwrap()
    );
    let asked = [
        std::path::PathBuf::from("/dev/null"),
        d.join("missing"),
        d.join(".hidden-link"),
    ];
    let (theirs, ours) = (
        host.stat_many(&asked).await.unwrap(),
        local.stat_many(&asked).await.unwrap(),
    );
    assert_eq!(format!("{theirs:?}"), format!("{ours:?}"));

    // atomic writes
    let f = d.join("conf");
    let lock = d.join("locks/conf.lock");
    let mut opts = WriteOptions {
        lock: Some(lock.clone()),
        expect_previous: Some(None),
        ..WriteOptions::default()
    };
    host.write_file_atomic(&f, b"v1\n", &opts).await.unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"v1\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = host
        .write_file_atomic(&f, b"v2\n", &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Conflict { .. }), "{err}");
    opts.expect_previous = Some(Some(b"stale".to_vec()));
    let err = host
        .write_file_atomic(&f, b"v2\n", &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Conflict { .. }), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), b"v1\n");
    opts.expect_previous = Some(Some(b"v1\n".to_vec()));
    opts.backup_to = Some(d.join("bak/conf.1"));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    host.write_file_atomic(&f, &big, &opts).await.unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), big);
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o600,
        "mode kept"
    );
    assert_eq!(std::fs::read(d.join("bak/conf.1")).unwrap(), b"v1\n");
    opts = WriteOptions {
        mode: Some(0o640),
        ..WriteOptions::default()
    };
    host.write_file_atomic(&f, b"v3", &opts).await.unwrap();
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    let err = host
        .write_file_atomic(&d.join("nodir/x"), b"x", &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
    let temps: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".phoenix-tmp.")
        })
        .collect();
    assert!(temps.is_empty(), "{temps:?}");

    // A lock held locally (flock(2), as LocalHost takes it) makes the remote writer time out.
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo held; sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let opts = WriteOptions {
        lock: Some(lock.clone()),
        lock_timeout: Some(Duration::from_millis(500)),
        ..WriteOptions::default()
    };
    let err = host.write_file_atomic(&f, b"v4", &opts).await.unwrap_err();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(matches!(err, ExecError::LockTimeout { .. }), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), b"v3");
}

#[tokio::test]
async fn ssh_refuses_wrong_or_unknown_host_key() {
    if !sshd_available("ssh_refuses_wrong_or_unknown_host_key") {
        return;
    }
    let sshd = Sshd::start();
    // A known_hosts entry with some other key for the same host.
    let other = sshd.dir.path().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = other_pub.split_whitespace();
    let wrong = sshd.dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let mut opts = sshd.options();
    opts.user_known_hosts_file = Some(wrong);
    let err = SshHost::connect(&sshd.dest(), opts).await.unwrap_err();
    assert!(matches!(err, ExecError::Ssh { .. }), "{err}");
    let mut chain = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert!(chain.contains("Host key verification failed"), "{chain}");
    // An empty known_hosts under strict checking: refused too.
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut opts = sshd.options();
    opts.user_known_hosts_file = Some(empty);
    let err = SshHost::connect(&sshd.dest(), opts).await.unwrap_err();
    assert!(matches!(err, ExecError::Ssh { .. }), "{err}");
}

#[tokio::test]
async fn lxc_attach_over_ssh_scenario() {
    if !sshd_available("lxc_attach_over_ssh_scenario")
        || !lxc_available("lxc_attach_over_ssh_scenario")
    {
        return;
    }
    let sshd = Sshd::start();
    let host = connect(&sshd).await;
    let ct = TestCt::start_new();
    let lxc = LxcAttach::with_lxcpath(host, &ct.lxcpath);
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
async fn ssh_container_execs_and_pushes() {
    if !sshd_available("ssh_container_execs_and_pushes") {
        return;
    }
    // The private sshd stands in for a container's own sshd.
    let sshd = Sshd::start();
    let mut cts = exec_backend::SshContainer::new();
    let id = CtRef::new("101");
    cts.connect(id.clone(), &sshd.dest(), sshd.options())
        .await
        .unwrap();
    let out = cts
        .exec(&id, &Cmd::new(["printf", "%s|", "a b", "$x"]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "a b|$x|");
    let src = sshd.dir.path().join("src.bin");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let dest = sshd.dir.path().join("pushed dest.bin");
    cts.push_file(&id, &src, &dest, 0o640).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        cts.state(&id).await.unwrap(),
        exec_backend::CtState::Running
    );
    let err = cts.stop(&id, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, ExecError::Unsupported { .. }), "{err}");
    let err = cts
        .exec(&CtRef::new("102"), &Cmd::new(["true"]))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::CtNotFound { .. }), "{err}");
}

#[tokio::test]
async fn ssh_root_maps_every_host_path() {
    if !sshd_available("ssh_root_maps_every_host_path") {
        return;
    }
    let sshd = Sshd::start();
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    std::fs::create_dir_all(t.join("etc/pve/lxc")).unwrap();
    std::fs::write(t.join("etc/hostname"), b"pve2\n").unwrap();
    let mut opts = sshd.options();
    opts.root = Some(t.to_owned());
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    assert_eq!(host.root(), Some(t));
    assert_eq!(
        host.resolve(Path::new("/etc/pve/../pve/lxc/201.conf")),
        t.join("etc/pve/lxc/201.conf")
    );
    assert_eq!(
        host.read_file(Path::new("/etc/hostname")).await.unwrap(),
        b"pve2\n"
    );
    let w = WriteOptions {
        lock: Some("/run/lock/lxc/pve-config-201.lock".into()),
        backup_to: Some("/var/lib/phoenix-gpu/backups/201/1".into()),
        ..WriteOptions::default()
    };
    host.write_file_atomic(Path::new("/etc/pve/lxc/201.conf"), b"arch: amd64\n", &w)
        .await
        .unwrap();
    host.write_file_atomic(Path::new("/etc/pve/lxc/201.conf"), b"arch: arm64\n", &w)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(t.join("etc/pve/lxc/201.conf")).unwrap(),
        b"arch: arm64\n"
    );
    assert!(t.join("run/lock/lxc/pve-config-201.lock").exists());
    assert_eq!(
        std::fs::read(t.join("var/lib/phoenix-gpu/backups/201/1")).unwrap(),
        b"arch: amd64\n"
    );
    let names: Vec<_> = host
        .read_dir(Path::new("/etc/pve/lxc"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![OsString::from("201.conf")]);
    assert!(host
        .stat(Path::new("/etc/pve/lxc/201.conf"))
        .await
        .unwrap()
        .is_some());
    // The real /etc/pve/lxc of the machine is not what was read.
    assert_eq!(host.stat(Path::new("/etc/shadow")).await.unwrap(), None);
}

/// Runs `n` commands at once on `host`, each `sleep 0.5` between a `+` and a `-` appended to
/// `journal` on the node, each followed by a read, a stat or a listing; returns the commands'
/// outputs (their index) or the first error of each.
async fn slow_commands(host: &SshHost, n: usize, journal: &Path) -> Vec<Result<String, String>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let host = host.clone();
        let journal = journal.to_owned();
        set.spawn(async move {
            let script = "echo + >> \"$1\"; sleep 0.5; echo - >> \"$1\"; echo \"$2\"";
            let mut cmd = Cmd::new(["sh", "-c", script, "sh"]).timeout(Duration::from_secs(60));
            cmd.argv.push(journal.clone().into());
            cmd.argv.push(i.to_string().into());
            let out = host.run(&cmd).await.map_err(|e| e.to_string())?;
            let out = out.check(&host.name(), &cmd).map_err(|e| e.to_string())?;
            // Every kind of session counts: a read, a stat or a listing after each.
            let also = match i % 3 {
                0 => host.read_file(&journal).await.map(drop),
                1 => host.stat(&journal).await.map(drop),
                _ => host.read_dir(journal.parent().unwrap()).await.map(drop),
            };
            also.map_err(|e| e.to_string())?;
            Ok(out.stdout_str().trim().to_owned())
        });
    }
    let mut outs = Vec::new();
    while let Some(r) = set.join_next().await {
        outs.push(r.unwrap());
    }
    outs
}

/// The most commands that were between their `+` and `-` at once.
fn most_at_once(journal: &Path) -> usize {
    let text = std::fs::read_to_string(journal).unwrap();
    let (mut now, mut most) = (0i64, 0i64);
    for l in text.lines() {
        now += if l == "+" { 1 } else { -1 };
        most = most.max(now);
    }
    most as usize
}

/// Set when this test binary runs one test again under `strace`.
const UNDER_STRACE: &str = "PGT_UNDER_STRACE";

#[tokio::test]
async fn ssh_stays_within_the_server_session_limit() {
    let test = "ssh_stays_within_the_server_session_limit";
    if !sshd_available(test) || !test_support::have(test, &["strace"]) {
        return;
    }
    if std::env::var_os(UNDER_STRACE).is_none() {
        // This test again, in a process of its own under strace, which follows every process
        // it starts and records `connect` and the `send*` calls: a name lookup is a connect
        // or a send to port 53.
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("strace.out");
        let out = std::process::Command::new("strace")
            .args(["-f", "--seccomp-bpf", "-qq", "-e"])
            .arg("trace=connect,sendto,sendmsg,sendmmsg")
            .arg("-o")
            .arg(&trace)
            .arg(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture"])
            .env(UNDER_STRACE, "1")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}");
        assert!(said.contains("1 passed"), "{said}");
        let trace = std::fs::read_to_string(&trace).unwrap();
        // The trace saw the clients (each connects to the control socket) ...
        let to_master = trace
            .lines()
            .filter(|l| l.contains("connect(") && l.contains(".ssh-connection"))
            .count();
        assert!(to_master >= 16 * 2, "the clients were not traced:\n{trace}");
        // ... and no name lookup.
        let lookups: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("htons(53)") || l.contains("phoenix-gpu-mux"))
            .collect();
        assert!(lookups.is_empty(), "name lookups: {lookups:#?}");
        return;
    }
    // One below the server's limit, as the default 8 is below OpenSSH's 10: a session that
    // just ended can still count on the server for a moment.
    let sshd = Sshd::start_with("MaxSessions 2\n");
    let mut opts = sshd.options();
    opts.max_sessions = 1;
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    let journal = sshd.dir.path().join("journal");
    let outs = slow_commands(&host, 16, &journal).await;
    let mut got: Vec<String> = outs.into_iter().map(|r| r.unwrap()).collect();
    got.sort_by_key(|s| s.parse::<u32>().unwrap());
    let want: Vec<String> = (0..16).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(most_at_once(&journal), 1, "one at a time");
    let log = sshd.log();
    assert!(!log.contains("no more sessions"), "sshd refused: {log}");
    assert_eq!(host.session_limit(), 1);
}

#[tokio::test]
async fn ssh_retries_refused_sessions_and_learns_the_limit() {
    if !sshd_available("ssh_retries_refused_sessions_and_learns_the_limit") {
        return;
    }
    let sshd = Sshd::start_with("MaxSessions 2\n");
    // The default bound (8) is above this server's limit: the first sessions are refused.
    let host = connect(&sshd).await;
    assert_eq!(
        host.session_limit(),
        exec_backend::ssh::DEFAULT_MAX_SESSIONS
    );
    let journal = sshd.dir.path().join("journal");
    let outs = slow_commands(&host, 16, &journal).await;
    let failed: Vec<&String> = outs.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let refused = sshd.log().matches("no more sessions").count();
    assert!(refused > 0, "the server should have refused some sessions");
    assert!(host.session_limit() <= 2, "{}", host.session_limit());
    assert!(most_at_once(&journal) <= 2);
}

#[tokio::test]
async fn ssh_opens_a_new_master_when_the_connection_drops() {
    if !sshd_available("ssh_opens_a_new_master_when_the_connection_drops") {
        return;
    }
    let sshd = Sshd::start();
    let host = connect(&sshd).await;
    let echo = Cmd::new(["echo", "up"]);
    assert_eq!(host.run(&echo).await.unwrap().stdout_str(), "up\n");
    // A command running when the connection drops may have run: an error, not a rerun.
    let h = host.clone();
    let long = tokio::spawn(async move {
        h.run(&Cmd::new(["sleep", "30"]).timeout(Duration::from_secs(60)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    sshd.drop_connections();
    let err = long.await.unwrap().unwrap_err();
    assert!(matches!(err, ExecError::Ssh { .. }), "{err}");
    assert!(err.to_string().contains("may or may not have run"), "{err}");
    // Then commands and reads go through a new master.
    assert_eq!(host.run(&echo).await.unwrap().stdout_str(), "up\n");
    sshd.drop_connections();
    let f = sshd.dir.path().join("sshd_config");
    assert!(host.read_file(&f).await.unwrap().starts_with(b"Port "));
}

#[tokio::test]
async fn ssh_node_down_is_one_error_for_every_caller() {
    if !sshd_available("ssh_node_down_is_one_error_for_every_caller") {
        return;
    }
    let mut sshd = Sshd::start_with("MaxSessions 2\n");
    let mut opts = sshd.options();
    opts.max_sessions = 2;
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    let dir = sshd.dir.path().to_owned();
    // Two commands hold the sessions; reads, a stat, a listing and writes wait for one when
    // the node goes down.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let host = host.clone();
        set.spawn(async move {
            host.run(&Cmd::new(["sleep", "20"]).timeout(Duration::from_secs(60)))
                .await
                .map(drop)
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 0..8 {
        let host = host.clone();
        let dir = dir.clone();
        set.spawn(async move {
            let conf = dir.join("sshd_config");
            match i % 4 {
                0 => host.read_file(&conf).await.map(drop),
                1 => host.stat(&conf).await.map(drop),
                2 => host.read_dir(&dir).await.map(drop),
                _ => {
                    host.write_file_atomic(&dir.join("w"), b"x", &WriteOptions::default())
                        .await
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sshd.stop();
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        let err = r.unwrap().unwrap_err();
        assert!(
            matches!(&err, ExecError::Ssh { target, .. } if *target == host.name()),
            "{err:?}"
        );
        let mut chain = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(s) = src {
            chain.push_str(&format!(": {s}"));
            src = s.source();
        }
        errors.push(chain);
    }
    errors.dedup();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("cannot be opened again"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("Connection refused"), "{}", errors[0]);
}

#[tokio::test]
async fn ssh_reads_many_files_in_one_session() {
    if !sshd_available("ssh_reads_many_files_in_one_session") {
        return;
    }
    let sshd = Sshd::start_with("LogLevel DEBUG1\n");
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(t.join("bytes"), &every_byte).unwrap();
    std::fs::write(t.join("empty"), b"").unwrap();
    std::fs::write(t.join("two lines"), b"a\nb").unwrap();
    std::fs::create_dir(t.join("dir")).unwrap();
    std::os::unix::fs::symlink("bytes", t.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", t.join("out")).unwrap();
    let fifo = t.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut opts = sshd.options();
    opts.root = Some(t.to_owned());
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    let sessions = || sshd.log().matches("ctype session").count();
    let paths: Vec<std::path::PathBuf> = [
        "/bytes",
        "/empty",
        "/missing",
        "/two lines",
        "/dir",
        "/link",
        "/fifo",
        "/out/hostname",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let before = sessions();
    let got = host.read_files(&paths).await.unwrap();
    assert_eq!(sessions() - before, 1, "one session for all");
    assert_eq!(got.len(), 8);
    assert_eq!(got[0].as_deref().unwrap(), &every_byte[..]);
    assert_eq!(got[1].as_deref().unwrap(), b"");
    assert!(
        matches!(&got[2], Err(ExecError::NotFound { path, .. }) if path == Path::new("/missing")),
        "{:?}",
        got[2]
    );
    assert_eq!(got[3].as_deref().unwrap(), b"a\nb");
    for (i, what) in [(4, "a directory"), (5, "a symbolic link"), (6, "a FIFO")] {
        assert!(
            matches!(&got[i], Err(ExecError::NotRegular { what: w, .. }) if w.contains(what)),
            "{}: {:?}",
            paths[i].display(),
            got[i]
        );
    }
    assert!(
        matches!(&got[7], Err(ExecError::OutsideRoot { .. })),
        "{:?}",
        got[7]
    );
    // What read_file says of each, the batch says too, in the same words.
    for (p, batch) in paths.iter().zip(&got) {
        let one = host.read_file(p).await;
        match (one, batch) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b, "{}", p.display()),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{}", p.display()),
            (one, batch) => panic!("{}: {one:?} against {batch:?}", p.display()),
        }
    }
    assert!(host.read_files(&[]).await.unwrap().is_empty());
}

/// The write prunes the backups beside the new one in the same session, as `LocalHost` does:
/// the oldest and the newest `keep_backups` of the backup's kind stay; dot files, other
/// extensions, links and directories are never touched; a write that fails prunes nothing.
#[tokio::test]
async fn ssh_write_prunes_old_backups_in_the_same_session() {
    if !sshd_available("ssh_write_prunes_old_backups_in_the_same_session") {
        return;
    }
    let sshd = Sshd::start_with("LogLevel DEBUG1\n");
    let tree = tempfile::tempdir().unwrap();
    let mut opts = sshd.options();
    opts.root = Some(tree.path().to_owned());
    let host = SshHost::connect(&sshd.dest(), opts).await.unwrap();
    let sessions = || sshd.log().matches("ctype session").count();
    common::pruning_contract(&host, tree.path(), Some(&sessions)).await;
}
