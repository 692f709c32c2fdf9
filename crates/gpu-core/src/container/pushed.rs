//! Checking a pushed file inside the container before anything runs it.
//!
//! A push can fail without saying so: Proxmox's `pct push` copies in a forked worker whose
//! result the CLI discards (exit 0 after a failed copy), and does not check the copy's own
//! result at all (a full disk leaves a short file). So every script that uses a pushed file
//! starts with [`CHECK`]: the file must be there with the size and SHA-256 of the cached file,
//! or the script stops with [`RC`] and a line starting with [`MARKER`] before it runs anything,
//! and the file is removed either way. [`failure`] turns that into
//! [`InstallCause::PushedDiffers`].

use exec_backend::{ExitStatus, Output};

use crate::error::InstallCause;

use super::download::Cached;

/// The exit code of a script whose pushed file is not what was pushed.
pub(crate) const RC: i32 = 97;

/// How its stderr line starts.
pub(crate) const MARKER: &str = "phoenix-gpu: the pushed file ";

/// POSIX sh lines for the start of a script: `$1` the pushed file, `$2` its size, `$3` its
/// SHA-256; they are shifted away, so the script's own arguments follow as `$1...`. `$f` is
/// the file afterwards, and it is removed when the script exits.
pub(crate) const CHECK: &str = r#"f=$1 size=$2 sum=$3
shift 3
trap 'rm -f "$f"' EXIT
differs() { echo "phoenix-gpu: the pushed file $*" >&2; exit 97; }
[ -f "$f" ] || differs "is missing"
got=$(wc -c < "$f") || differs "cannot be read"
got=$(echo $got)
[ "$got" = "$size" ] || differs "has $got of $size bytes"
command -v sha256sum >/dev/null 2>&1 || differs "cannot be checked: the container has no sha256sum (coreutils)"
got=$(sha256sum < "$f") || differs "cannot be read"
got=${got%% *}
[ "$got" = "$sum" ] || differs "has SHA-256 $got, not $sum"
"#;

/// The arguments [`CHECK`] takes for `cached` pushed to `dest`.
pub(crate) fn args(dest: &str, cached: &Cached) -> [String; 3] {
    [
        dest.to_owned(),
        cached.size.to_string(),
        cached.sha256.clone(),
    ]
}

/// The cause when `out` is a script that stopped at [`CHECK`].
pub(crate) fn failure(out: &Output, file: &str) -> Option<InstallCause> {
    if out.status != ExitStatus::Code(RC) {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let what = text.lines().find_map(|l| l.strip_prefix(MARKER))?;
    Some(InstallCause::PushedDiffers {
        file: file.to_owned(),
        what: what.trim().to_owned(),
    })
}

/// [`CHECK`] run by the shells it must work in (dash, busybox), on this machine.
#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(shell: &str, file: &std::path::Path, size: u64, sum: &str) -> Option<Output> {
        let script = format!("{CHECK}echo ran \"$@\"\n");
        let mut cmd = Command::new(shell);
        if shell == "busybox" {
            cmd.arg("sh");
        }
        let out = cmd
            .arg("-c")
            .arg(script)
            .arg("phoenix-gpu")
            .arg(file)
            .arg(size.to_string())
            .arg(sum)
            .arg("--silent")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output();
        match out {
            Ok(o) => Some(Output {
                status: ExitStatus::Code(o.status.code().unwrap_or(-1)),
                stdout: o.stdout,
                stderr: o.stderr,
            }),
            Err(e) => {
                test_support::cannot_run(
                    "check_runs_in_dash_and_busybox",
                    &format!("{shell} ({e})"),
                );
                None
            }
        }
    }

    #[test]
    fn check_runs_in_dash_and_busybox() {
        let body = b"#!/bin/sh\necho installer\n".repeat(100);
        let sum = test_support::sha256_hex(&body);
        for shell in ["dash", "busybox"] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("x.run");
            let put = |bytes: &[u8]| std::fs::write(&file, bytes).unwrap();
            let size = body.len() as u64;

            put(&body);
            let Some(out) = run(shell, &file, size, &sum) else {
                continue;
            };
            assert_eq!(out.status, ExitStatus::Code(0), "{shell}: {out:?}");
            assert_eq!(out.stdout_str(), "ran --silent\n", "{shell}");
            assert!(!file.exists(), "{shell}: the file stays");

            put(&body[..body.len() / 2]);
            let out = run(shell, &file, size, &sum).unwrap();
            let cause = failure(&out, "x.run").unwrap_or_else(|| panic!("{shell}: {out:?}"));
            assert_eq!(
                cause.to_string(),
                format!(
                    "the pushed x.run has {} of {size} bytes in the container: the copy failed, nothing was run",
                    size / 2
                ),
                "{shell}"
            );
            assert!(out.stdout.is_empty(), "{shell}: ran anyway");
            assert!(!file.exists(), "{shell}: the short file stays");

            let mut other = body.clone();
            other[0] = b'X';
            put(&other);
            let out = run(shell, &file, size, &sum).unwrap();
            let cause = failure(&out, "x.run").unwrap();
            assert!(cause.to_string().contains(&format!("not {sum}")), "{cause}");

            let out = run(shell, &file, size, &sum).unwrap();
            assert!(
                failure(&out, "x.run")
                    .unwrap()
                    .to_string()
                    .contains("is missing"),
                "{shell}"
            );
        }
    }
}
