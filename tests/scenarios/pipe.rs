//! A closed stdout ends a run quietly with its normal exit code: every command's output is
//! piped into a reader that goes away early (at once, and after 10 bytes as `head -c 10`
//! does), against a copy of `examples/h200x2` under `--root`. Before the exit path wrote with
//! error handling, `check --all --json | true` panicked with exit 101 every time.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// A fresh copy of the repository's captured H200 host.
fn host_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    test_support::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/h200x2"),
        dir.path(),
    );
    dir
}

/// How the reader of stdout behaves.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// Reads everything (the normal run).
    All,
    /// Closes the pipe before reading anything (`| true`).
    Closed,
    /// Reads 10 bytes, then closes it (`| head -c 10`).
    Head,
}

/// Runs `phoenix-gpu --root <fresh copy> ARGS`; returns the exit code, what was read of
/// stdout, and stderr.
fn run(args: &[&str], reader: Reader) -> (i32, Vec<u8>, String) {
    let root = host_copy();
    let log = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phoenix-gpu"))
        .arg("--root")
        .arg(root.path())
        .arg("--log-file")
        .arg(log.path().join("log"))
        .args(args)
        .env_remove("GPU_ASSIGNMENT")
        .env_remove("NVIDIA_DRIVER_VERSION")
        .env_remove("NVIDIA_RUNFILE_URL")
        .env_remove("NVIDIA_REPO_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut read = Vec::new();
    match reader {
        Reader::All => {
            out.read_to_end(&mut read).unwrap();
        }
        Reader::Closed => drop(out),
        Reader::Head => {
            let mut buf = [0u8; 10];
            let mut got = 0;
            while got < buf.len() {
                match out.read(&mut buf[got..]).unwrap() {
                    0 => break,
                    n => got += n,
                }
            }
            read.extend_from_slice(&buf[..got]);
            drop(out);
        }
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), read, err)
}

#[test]
fn a_closed_stdout_keeps_the_normal_exit_code() {
    let commands: &[&[&str]] = &[
        &["inventory"],
        &["plan", "101", "--gpus", "1"],
        &["apply", "101", "--gpus", "1", "--config-only"],
        &["check", "101"],
        &["check", "--all"],
        &["verify", "101", "--gpus", "1"],
        &["remove", "101"],
        &["sync", "--all"],
    ];
    for cmd in commands {
        for json in [false, true] {
            let mut args = cmd.to_vec();
            if json {
                args.push("--json");
            }
            let (normal, stdout, _) = run(&args, Reader::All);
            assert!(
                !stdout.is_empty(),
                "{args:?} prints nothing, so a closed stdout would prove nothing"
            );
            assert_ne!(normal, 101, "{args:?}");
            for reader in [Reader::Closed, Reader::Head] {
                let (code, _, stderr) = run(&args, reader);
                assert_eq!(code, normal, "{args:?} with {reader:?}: {stderr}");
                assert!(
                    !stderr.contains("panicked"),
                    "{args:?} with {reader:?}: {stderr}"
                );
            }
        }
    }
}
