//! `LocalHost`: files, listings, stat, `--root`, and `write_file_atomic` under concurrency and
//! under `SIGKILL`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use exec_backend::{Cmd, ExecError, FileKind, Host, LocalHost, NameMatch, WriteOptions};

fn opts_locked(lock: &Path) -> WriteOptions {
    WriteOptions {
        lock: Some(lock.to_owned()),
        ..WriteOptions::default()
    }
}

#[tokio::test]
async fn read_stat_list() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalHost::new();
    let f = dir.path().join("f");
    std::fs::write(&f, b"abc").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink("f", dir.path().join("l")).unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();

    assert_eq!(host.read_file(&f).await.unwrap(), b"abc");
    let err = host.read_file(&dir.path().join("nope")).await.unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }), "{err}");

    let meta = host.stat(&f).await.unwrap().unwrap();
    assert_eq!(
        (meta.kind, meta.mode, meta.size, meta.rdev),
        (FileKind::File, 0o640, 3, None)
    );
    let link = host.stat(&dir.path().join("l")).await.unwrap().unwrap();
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(host.stat(&dir.path().join("nope")).await.unwrap(), None);

    let names: Vec<_> = host
        .read_dir(dir.path())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.meta.kind))
        .collect();
    assert_eq!(
        names,
        vec![
            ("d".into(), FileKind::Dir),
            ("f".into(), FileKind::File),
            ("l".into(), FileKind::Symlink)
        ]
    );
    let err = host.read_dir(&dir.path().join("nope")).await.unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
}

/// A listing that keeps some names answers as the whole listing filtered; a batch of stats
/// answers, path by path, as `stat` does (a file, a link, a missing path, a path through a
/// file, `/`), with and without a root.
#[tokio::test]
async fn matching_listings_and_batched_stats_answer_as_the_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "nvidia0",
        "nvidiactl",
        "nvme0",
        "tty1",
        "libcuda.so.580",
        "libcuda.so.1",
    ] {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    std::fs::create_dir(dir.path().join("nvidia-caps")).unwrap();
    symlink("nvidia0", dir.path().join("nvidia-link")).unwrap();
    for (host, base) in [
        (LocalHost::new(), dir.path().to_owned()),
        (LocalHost::with_root(dir.path()), PathBuf::from("/")),
    ] {
        let all = host.read_dir(&base).await.unwrap();
        for keep in [
            NameMatch::starting("nvidia"),
            NameMatch {
                prefix: "lib".into(),
                suffix: ".so.580".into(),
            },
            NameMatch::starting("none-such"),
            NameMatch::default(),
        ] {
            let got = host.read_dir_matching(&base, &keep).await.unwrap();
            let want: Vec<_> = all
                .iter()
                .filter(|e| keep.matches(&e.name))
                .cloned()
                .collect();
            assert_eq!(got, want, "{keep:?}");
        }
        let nv: Vec<_> = host
            .read_dir_matching(&base, &NameMatch::starting("nvidia"))
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.name.into_string().unwrap(), e.meta.kind))
            .collect();
        assert_eq!(
            nv,
            [
                ("nvidia-caps".to_owned(), FileKind::Dir),
                ("nvidia-link".to_owned(), FileKind::Symlink),
                ("nvidia0".to_owned(), FileKind::File),
                ("nvidiactl".to_owned(), FileKind::File),
            ]
        );
        let paths: Vec<PathBuf> = ["nvidia0", "nvidia-link", "nope", "nvidia0/under", ""]
            .iter()
            .map(|p| base.join(p))
            .chain([PathBuf::from("/")])
            .collect();
        let many = host.stat_many(&paths).await.unwrap();
        assert_eq!(many.len(), paths.len());
        for (p, got) in paths.iter().zip(many) {
            let one = host.stat(p).await;
            assert_eq!(format!("{got:?}"), format!("{one:?}"), "{}", p.display());
        }
        assert!(host.stat_many(&[]).await.unwrap().is_empty());
        let missing = host
            .read_dir_matching(&base.join("nope"), &NameMatch::starting("x"))
            .await
            .unwrap_err();
        assert!(matches!(missing, ExecError::NotFound { .. }), "{missing}");
    }
    assert!(NameMatch::starting("nv").matches("nvidia0".as_ref()));
    assert!(!NameMatch::starting("nvidia0x").matches("nvidia0".as_ref()));
    // Prefix and suffix must not overlap: "lib.so" is not lib* + *.so.1.
    let lib = NameMatch {
        prefix: "lib".into(),
        suffix: "b.so".into(),
    };
    assert!(!lib.matches("lib.so".as_ref()));
    assert!(lib.matches("libb.so".as_ref()));
}

#[tokio::test]
async fn device_numbers() {
    let host = LocalHost::new();
    let null = host.stat(Path::new("/dev/null")).await.unwrap().unwrap();
    assert_eq!((null.kind, null.rdev), (FileKind::CharDevice, Some((1, 3))));
    let dev = host.read_dir(Path::new("/dev")).await.unwrap();
    let zero = dev.iter().find(|e| e.name == "zero").unwrap();
    assert_eq!(zero.meta.rdev, Some((1, 5)));
}

#[tokio::test]
async fn root_maps_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalHost::with_root(dir.path());
    assert_eq!(
        host.resolve(Path::new("/etc/pve/lxc/101.conf")),
        dir.path().join("etc/pve/lxc/101.conf")
    );
    let opts = WriteOptions {
        lock: Some("/run/lock/phoenix.lock".into()),
        backup_to: Some("/var/backups/101.conf.bak".into()),
        ..WriteOptions::default()
    };
    // The directory of the file must exist (the lock's and the backup's are created).
    let err = host
        .write_file_atomic(Path::new("/etc/pve/lxc/101.conf"), b"one\n", &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
    std::fs::create_dir_all(dir.path().join("etc/pve/lxc")).unwrap();
    host.write_file_atomic(Path::new("/etc/pve/lxc/101.conf"), b"one\n", &opts)
        .await
        .unwrap();
    host.write_file_atomic(Path::new("/etc/pve/lxc/101.conf"), b"two\n", &opts)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("etc/pve/lxc/101.conf")).unwrap(),
        b"two\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("var/backups/101.conf.bak")).unwrap(),
        b"one\n"
    );
    assert!(dir.path().join("run/lock/phoenix.lock").exists());
    assert_eq!(
        host.read_file(Path::new("/etc/pve/lxc/101.conf"))
            .await
            .unwrap(),
        b"two\n"
    );
    // Commands run on the real machine.
    let out = host.run(&exec_backend::Cmd::new(["pwd"])).await.unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn write_keeps_mode_checks_previous_and_backs_up() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalHost::new();
    let f = dir.path().join("sub/f.conf");
    let lock = dir.path().join("locks/f.lock");
    let mut opts = opts_locked(&lock);
    opts.expect_previous = Some(None);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    host.write_file_atomic(&f, b"v1", &opts).await.unwrap();
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Must not exist, but does.
    let err = host.write_file_atomic(&f, b"v2", &opts).await.unwrap_err();
    assert!(matches!(err, ExecError::Conflict { .. }), "{err}");
    // Wrong previous bytes.
    opts.expect_previous = Some(Some(b"other".to_vec()));
    let err = host.write_file_atomic(&f, b"v2", &opts).await.unwrap_err();
    assert!(matches!(err, ExecError::Conflict { .. }), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), b"v1");

    opts.expect_previous = Some(Some(b"v1".to_vec()));
    opts.backup_to = Some(dir.path().join("bak/f.conf.1"));
    host.write_file_atomic(&f, b"v2", &opts).await.unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"v2");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o600,
        "old mode kept"
    );
    assert_eq!(
        std::fs::read(dir.path().join("bak/f.conf.1")).unwrap(),
        b"v1"
    );

    opts.expect_previous = None;
    opts.mode = Some(0o640);
    host.write_file_atomic(&f, b"v3", &opts).await.unwrap();
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    let leftovers: Vec<_> = std::fs::read_dir(f.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("f.conf")]);
}

#[tokio::test]
async fn lock_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("l");
    // Hold the lock from another process.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo held; sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n");
    let mut opts = opts_locked(&lock);
    opts.lock_timeout = Some(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = LocalHost::new()
        .write_file_atomic(&dir.path().join("f"), b"x", &opts)
        .await
        .unwrap_err();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(matches!(err, ExecError::LockTimeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!dir.path().join("f").exists());
}

/// Many writers do read-modify-write on one file at the same time. Each write must carry
/// `expect_previous` (what it read) and is checked under the lock; a writer that lost the race
/// gets `Conflict`, reads again and retries. Without the lock, two writers could both pass
/// the check and rename one after the other, and one marker would be lost: the final file
/// must hold every marker exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("counter");
    let lock = dir.path().join("counter.lock");
    let host = Arc::new(LocalHost::new());
    std::fs::write(&f, b"").unwrap();
    let writers = 8;
    let rounds = 15;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (host, f, lock) = (host.clone(), f.clone(), lock.clone());
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for r in 0..rounds {
                loop {
                    let old = host.read_file(&f).await.unwrap();
                    let mut new = old.clone();
                    new.extend_from_slice(format!("w{w}r{r}\n").as_bytes());
                    let opts = WriteOptions {
                        lock: Some(lock.clone()),
                        expect_previous: Some(Some(old)),
                        lock_timeout: Some(Duration::from_secs(30)),
                        ..WriteOptions::default()
                    };
                    match host.write_file_atomic(&f, &new, &opts).await {
                        Ok(()) => break,
                        Err(ExecError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let text = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), writers * rounds, "lost updates");
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), writers * rounds, "duplicated updates");
    eprintln!("{conflicts} conflicts were detected and retried");
}

const WRITER_ENV: &str = "EXEC_BACKEND_TEST_ATOMIC_WRITER";
const PAYLOAD_LEN: usize = 4 * 1024 * 1024;

fn payload(tag: u8) -> Vec<u8> {
    (0..PAYLOAD_LEN)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}

/// In the child: write A and B in turn, forever, until killed.
fn writer_child(path: &Path) -> ! {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = LocalHost::new();
    let (a, b) = (payload(b'A'), payload(b'B'));
    let opts = opts_locked(&path.with_extension("lock"));
    println!("ready");
    loop {
        for bytes in [&a, &b] {
            rt.block_on(host.write_file_atomic(path, bytes, &opts))
                .unwrap();
        }
    }
}

fn temps_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy()
                .contains(exec_backend::local::TEMP_MARKER)
        })
        .collect()
}

/// A writer process (this test binary, re-run with an env var) is killed with SIGKILL at random
/// moments, 120 times. After each kill the file is exactly A or exactly B, at most one orphan
/// temporary file is left, and the next locked write removes it.
#[test]
fn sigkilled_writer_never_tears() {
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        writer_child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("state");
    let (a, b) = (payload(b'A'), payload(b'B'));
    std::fs::write(&f, &a).unwrap();
    let mut seed: u64 = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut saw = [0usize; 2];
    let mut orphans = 0;
    for _round in 0..120 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkilled_writer_never_tears",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, &f)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.ends_with("ready\n") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "writer child died");
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 40_000));
        child.kill().unwrap();
        child.wait().unwrap();

        let now = std::fs::read(&f).unwrap();
        if now == a {
            saw[0] += 1;
        } else if now == b {
            saw[1] += 1;
        } else {
            panic!("torn file: {} bytes, neither A nor B", now.len());
        }
        let temps = temps_in(dir.path());
        assert!(
            temps.len() <= 1,
            "more than one temporary file left: {temps:?}"
        );
        orphans += temps.len();
    }
    eprintln!(
        "after kills: A {} times, B {} times, {orphans} orphan temp files",
        saw[0], saw[1]
    );
    assert!(
        orphans > 0 || saw[1] > 0,
        "the kills never landed while writing"
    );
    // The next locked write succeeds and clears any orphan.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(LocalHost::new().write_file_atomic(
        &f,
        b"done",
        &opts_locked(&f.with_extension("lock")),
    ))
    .unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"done");
    assert!(temps_in(dir.path()).is_empty());
}

#[tokio::test]
async fn search_path_is_used_unless_the_command_sets_path() {
    let host = LocalHost::new().with_search_path("/nonexistent/bin:/usr/bin:/bin");
    let out = host
        .run(&Cmd::new(["sh", "-c", "echo \"$PATH\""]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "/nonexistent/bin:/usr/bin:/bin\n");
    let own = Cmd::new(["sh", "-c", "echo \"$PATH\""]).env("PATH", "/bin");
    assert_eq!(host.run(&own).await.unwrap().stdout_str(), "/bin\n");
    let plain = LocalHost::new()
        .run(&Cmd::new(["sh", "-c", "echo \"$PATH\""]))
        .await
        .unwrap();
    assert_eq!(
        plain.stdout_str().trim_end(),
        exec_backend::process::BASE_PATH
    );
}

/// `read_files` reads a batch on one blocking thread and gives, file by file, what
/// `read_file` gives: the bytes, a missing file, a FIFO and a link refused (nothing opened,
/// nothing waits), a path that climbs out of the root kept inside it.
#[tokio::test]
async fn read_files_gives_what_read_file_gives() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/devices"), "195 nvidia\n").unwrap();
    std::fs::write(root.join("proc/empty"), "").unwrap();
    let status = Command::new("mkfifo")
        .arg(root.join("proc/fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "not for us\n").unwrap();
    symlink(outside.path().join("secret"), root.join("proc/link")).unwrap();
    let host = LocalHost::with_root(root);
    let paths: Vec<PathBuf> = [
        "/proc/devices",
        "/proc/missing",
        "/proc/fifo",
        "/proc/link",
        "/proc/empty",
        "/../../proc/devices",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let batch = tokio::time::timeout(Duration::from_secs(20), host.read_files(&paths))
        .await
        .expect("a FIFO in the batch must not hang it")
        .unwrap();
    assert_eq!(batch.len(), paths.len());
    for (p, got) in paths.iter().zip(&batch) {
        let alone = host.read_file(p).await;
        match (got, &alone) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", p.display()),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{}", p.display()),
            _ => panic!("{}: batch {got:?}, alone {alone:?}", p.display()),
        }
    }
    assert_eq!(batch[0].as_ref().unwrap(), b"195 nvidia\n");
    assert!(
        matches!(batch[1], Err(ExecError::NotFound { .. })),
        "{:?}",
        batch[1]
    );
    assert!(
        matches!(batch[2], Err(ExecError::NotRegular { .. })),
        "{:?}",
        batch[2]
    );
    assert!(
        matches!(batch[3], Err(ExecError::NotRegular { .. })),
        "{:?}",
        batch[3]
    );
    assert_eq!(batch[4].as_ref().unwrap(), b"");
    assert_eq!(batch[5].as_ref().unwrap(), b"195 nvidia\n");
    assert!(host.read_files(&[]).await.unwrap().is_empty());
}

/// The write prunes the backups beside the new one in the same call (see `common`).
#[tokio::test]
async fn write_prunes_old_backups_in_the_same_call() {
    let tree = tempfile::tempdir().unwrap();
    let host = LocalHost::with_root(tree.path());
    common::pruning_contract(&host, tree.path(), None).await;
}
