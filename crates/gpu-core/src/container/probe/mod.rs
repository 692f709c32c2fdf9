//! The one probe: a POSIX `sh` script run inside the container that prints `key=value` lines
//! answering every question the container steps ask ([`parse`] reads them).
//!
//! The script is kept as shell files beside this module (`questions.sh`, then `smi.sh`), so
//! shellcheck lints them (`.ci/run`). It assumes nothing beyond a POSIX shell and what busybox
//! or a Debian minbase have (`sed`, `stat`, `df`, `uname`); every command is optional and a
//! missing one leaves its keys out. The tools to look for are passed as positional arguments,
//! never pasted into the script.
//!
//! Output keys (one per line, repeated keys allowed where noted):
//! `probe`, `os_id`, `os_version_id`, `os_codename`, `arch`, `apt_get`, `installer_missing`
//! (repeated: a program NVIDIA's installer needs that is not there), `dpkg`,
//! `disk_free_kb`, `smi_path`, `smi_version`, `lib` (repeated), `ldconfig` (repeated, `soname
//! target`), `cuda_json`, `cuda_nvcc`, `pkg` (repeated, `status name`), `cmd` (repeated),
//! `dev` (repeated, `path type [major:minor in hex]`), `smi` (repeated, nvidia-smi query output
//! with stderr), `smi_rc`.

mod parse;

use std::time::Duration;

use exec_backend::{Cmd, ExitStatus};

use crate::error::{Error, Result};
use crate::step::Ctx;
use crate::values::PackageName;

pub(crate) use parse::{CtNodeKind, Probe};

/// How long the probe may run (it runs `nvidia-smi`, which can be slow on a busy GPU).
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// The `nvidia-smi --query-gpu=index,uuid,driver_version` part of the probe (also the
/// verification's own exec).
pub(crate) const SMI_SCRIPT: &str = include_str!("smi.sh");

/// The whole probe: its own questions, then [`SMI_SCRIPT`], so that a converged run's
/// verification comes from the same exec.
pub(crate) const SCRIPT: &str = concat!(include_str!("questions.sh"), include_str!("smi.sh"));

/// Runs `script` in the container with `args` as `$1...` and returns its stdout.
pub(crate) async fn run_script(
    ctx: &Ctx<'_>,
    what: &str,
    script: &str,
    args: &[String],
    timeout: Duration,
) -> Result<exec_backend::Output> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "phoenix-gpu".to_owned(),
    ];
    argv.extend(args.iter().cloned());
    let cmd = Cmd::new(argv).timeout(timeout);
    ctx.cts
        .exec(ctx.ct, &cmd)
        .await
        .map_err(|e| Error::exec(format!("{what} in container {}", ctx.ct), e))
}

/// Asks the container everything in one exec. `tools` are the packages to look for.
pub(crate) async fn probe(ctx: &Ctx<'_>, tools: &[PackageName]) -> Result<Probe> {
    let args: Vec<String> = tools.iter().map(ToString::to_string).collect();
    let out = run_script(ctx, "probing", SCRIPT, &args, PROBE_TIMEOUT).await?;
    if out.status != ExitStatus::Code(0) {
        return Err(Error::Parse {
            what: format!("the probe in container {}", ctx.ct),
            detail: format!("it ended with {}: {}", out.status, out.stderr_tail(500)),
        });
    }
    Probe::parse(&out.stdout_str())
}

/// Runs the nodes and nvidia-smi part of the probe again (after something was installed).
pub(crate) async fn probe_smi(ctx: &Ctx<'_>) -> Result<Probe> {
    let out = run_script(ctx, "running nvidia-smi", SMI_SCRIPT, &[], PROBE_TIMEOUT).await?;
    Probe::parse(&format!("probe=1\n{}", out.stdout_str()))
}

/// The probe script itself, run by the shells it must work in (dash as Debian's `sh`, and
/// busybox), against this machine plus a stand-in `nvidia-smi` on `PATH`.
#[cfg(test)]
mod shell_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn run(shell: &[&str], script: &str, args: &[&str]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(
            &smi,
            "#!/bin/sh\ncase \"$1\" in --version) echo 'NVIDIA-SMI version  : 580.159.04';; *) echo '0, GPU-7fc3e24c, 580.159.04';; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", dir.path().display());
        let mut cmd = Command::new(shell[0]);
        cmd.args(&shell[1..])
            .arg("-c")
            .arg(script)
            .arg("phoenix-gpu")
            .args(args);
        let out = match cmd
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                let needs = format!("{} ({e})", shell[0]);
                test_support::cannot_run("probe_runs_in_dash_and_busybox", &needs);
                return None;
            }
        };
        assert!(
            out.status.success(),
            "{:?}: {}",
            shell,
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn probe_runs_in_dash_and_busybox() {
        let mut ran = 0;
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..], &["dash"][..]] {
            let Some(text) = run(shell, SCRIPT, &["dpkg", "no-such-tool"]) else {
                continue;
            };
            ran += 1;
            let p = Probe::parse(&text).unwrap();
            assert!(p.os_id.is_some(), "{shell:?}: {text}");
            assert!(p.arch.is_some(), "{shell:?}: {text}");
            assert!(p.disk_free_kb.is_some_and(|k| k > 0), "{shell:?}: {text}");
            assert_eq!(
                p.smi_version.as_ref().map(|v| v.as_str()),
                Some("580.159.04"),
                "{shell:?}: {text}"
            );
            let gpus = p.smi.as_ref().and_then(|s| s.gpus()).unwrap();
            assert_eq!(gpus[0].uuid, "GPU-7fc3e24c");
            assert!(p.tool_present("dpkg"), "{shell:?}: {text}");
            assert!(!p.tool_present("no-such-tool"));
            let v = Probe::parse(&format!(
                "probe=1\n{}",
                run(shell, SMI_SCRIPT, &[]).unwrap()
            ))
            .unwrap();
            assert_eq!(v.smi.unwrap().rc, Some(0));
        }
        assert!(ran > 0, "no POSIX shell found");
    }
}
