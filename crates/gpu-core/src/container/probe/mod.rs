//! The one probe: a POSIX `sh` script run inside the container that prints `key=value` lines
//! answering every question the container steps ask ([`parse`] reads them).
//!
//! The script is kept as shell files beside this module (`head.sh`, `questions.sh`, `gpu.sh`),
//! so shellcheck lints them (`.ci/run`). Where the container has gpu-check
//! ([`super::gpucheck`]), `head.sh`'s first command execs it with `--probe` (mode `probe`) and
//! it answers every question alone: the exec is one process inside. If it does not finish
//! ([`direct_failed`]), the probe is asked again as `probe-sh`: the shell's probe, in which
//! gpu-check answers the system, device-node, library and NVML questions and the shell parts
//! skip the tools it replaces. Without it (a first run, a container without glibc) the script
//! assumes nothing beyond a POSIX shell and what busybox or a Debian minbase have (`sed`,
//! `stat`, `df`, `uname`); every command is optional and a missing one leaves its keys out. The
//! tools to look for are passed as positional arguments, never pasted into the script.
//!
//! Output keys (one per line, repeated keys allowed where noted):
//! `probe`, `os_id`, `os_version_id`, `os_codename`, `arch`, `apt_get`, `installer_missing`
//! (repeated: a program NVIDIA's installer needs that is not there), `dpkg`, `disk_free_kb`,
//! `smi_path`, `smi_version`, `lib` (repeated), `placeholder` (repeated, an empty file where a
//! driver library is named), `ldconfig` (repeated, `soname target`; from
//! gpu-check `loaded`), `cuda_json`, `cuda_nvcc`, `pkg` (repeated, `status name`), `cmd`
//! (repeated), `dev` (repeated, `path type [major:minor in hex]`), `smi` (repeated,
//! nvidia-smi query output with stderr), `smi_rc`; from gpu-check: `check_version`, `node`
//! (repeated, `path errno-name`), `nvml_lib`, `nvml_init`, `nvml_driver`, `nvml_count`,
//! `nvml_dev<i>_uuid`, `nvml_dev<i>_minor`, `cuda_lib`, `cuda_lib_error`, `cuda_init`,
//! `cuda_count`, `cuda_dev<i>_{uuid,pci,ctx,mem,error}`, `check_end`; around it
//! `gpu_check_present`, `gpu_check_installed`, `gpu_check_rc`, `gpu_check_error`; from gpu-check
//! answering alone `probe_direct` and `pids`.

mod parse;

use std::time::Duration;

use exec_backend::{Cmd, ExitStatus};

use crate::error::{Error, Result};
use crate::step::Ctx;
use crate::values::PackageName;

use super::gpucheck::{self, Ask};

pub(crate) use parse::{CtNodeKind, GpuCheckRun, LibState, Probe};

/// How long the probe may run (it runs `nvidia-smi`, which can be slow on a busy GPU).
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the verification may run (CUDA initialises and creates a context on every GPU).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(180);

/// The whole probe: gpu-check, the questions, the GPU part, so that a converged run's
/// verification comes from the same exec.
pub(crate) const SCRIPT: &str = concat!(
    include_str!("head.sh"),
    include_str!("questions.sh"),
    include_str!("gpu.sh")
);

/// The verification exec after a change: gpu-check (with a CUDA context) and nvidia-smi.
pub(crate) const VERIFY_SCRIPT: &str = concat!(include_str!("head.sh"), include_str!("gpu.sh"));

/// Takes out what phoenix-gpu left in a container (placeholders, gpu-check).
pub(crate) const CLEANUP_SCRIPT: &str = include_str!("cleanup.sh");

/// Runs `script` in the container with `args` as `$1...` and returns its stdout.
pub(crate) async fn run_script(
    ctx: &Ctx<'_>,
    what: &str,
    script: &str,
    args: &[String],
    timeout: Duration,
) -> Result<exec_backend::Output> {
    run_script_with(ctx, what, script, args, timeout, None).await
}

/// [`run_script`] with bytes on the script's stdin.
async fn run_script_with(
    ctx: &Ctx<'_>,
    what: &str,
    script: &str,
    args: &[String],
    timeout: Duration,
    stdin: Option<&[u8]>,
) -> Result<exec_backend::Output> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "phoenix-gpu".to_owned(),
    ];
    argv.extend(args.iter().cloned());
    let mut cmd = Cmd::new(argv).timeout(timeout);
    if let Some(bytes) = stdin {
        cmd = cmd.stdin(bytes);
    }
    ctx.cts
        .exec(ctx.ct, &cmd)
        .await
        .map_err(|e| Error::exec(format!("{what} in container {}", ctx.ct), e))
}

/// The three arguments of `head.sh`; `packages` are the ones to read dpkg's status for.
fn head_args(ask: Ask, nodes: &[String], packages: &[String], mode: &str) -> Vec<String> {
    let path = if gpucheck::available() {
        gpucheck::path()
    } else {
        String::new()
    };
    vec![path, gpucheck::args(ask, nodes, packages), mode.to_owned()]
}

/// Asks the container everything in one exec (`check`): the system, the userspace, the
/// packages `tools`; no device node is opened and NVML is not asked.
pub(crate) async fn probe(ctx: &Ctx<'_>, tools: &[PackageName]) -> Result<Probe> {
    probe_gpus(ctx, tools, Ask::System, &[]).await
}

/// Asks the container everything in one exec, gpu-check opening `nodes` and asking what `ask`
/// says. `tools` are the packages to look for.
pub(crate) async fn probe_gpus(
    ctx: &Ctx<'_>,
    tools: &[PackageName],
    ask: Ask,
    nodes: &[String],
) -> Result<Probe> {
    let tools: Vec<String> = tools.iter().map(ToString::to_string).collect();
    // The packages questions.sh asks dpkg-query for, read by gpu-check instead.
    let packages: Vec<String> = std::iter::once("cuda-toolkit-*".to_owned())
        .chain(tools.iter().cloned())
        .collect();
    let mut args = head_args(ask, nodes, &packages, "probe");
    args.extend(tools);
    let out = run_script(ctx, "probing", SCRIPT, &args, PROBE_TIMEOUT).await?;
    let direct = !direct_failed(&out);
    let out = if direct {
        out
    } else {
        // gpu-check was started to answer alone and did not finish (a damaged file, a glibc
        // it cannot run on): the shell's probe asks again, running it as a part it can do without.
        args[2] = "probe-sh".to_owned();
        run_script(ctx, "probing", SCRIPT, &args, PROBE_TIMEOUT).await?
    };
    if out.status != ExitStatus::Code(0) {
        return Err(Error::Parse {
            what: format!("the probe in container {}", ctx.ct),
            detail: format!("it ended with {}: {}", out.status, out.stderr_tail(500)),
        });
    }
    let mut probe = Probe::parse(&out.stdout_str())?;
    // In place, started alone and failed, and failed again from the shell: not a program that
    // runs here. Where the container has no glibc loader the shell never starts it alone.
    probe.gpu_check_damaged = !direct && matches!(probe.gpu_check, GpuCheckRun::Failed { .. });
    Ok(probe)
}

/// Whether the first probe (mode `probe`) shows gpu-check started alone and not answering:
/// it began (`probe_direct=1`) and stopped before `check_end=1` or exited non-zero; or the
/// shell could not exec it (126, 127: a cut or zeroed file for dash) or ran it as a script that
/// printed nothing (busybox with a zeroed file: exit 0), both without `probe=1`. The probe is
/// then asked again through the shell (`probe-sh`), where gpu-check is a part it can do
/// without. Any other failure (a stopped container: `pct exec` exits 255) is the probe's own,
/// not asked twice.
fn direct_failed(out: &exec_backend::Output) -> bool {
    let text = out.stdout_str();
    let has = |line: &str| text.lines().any(|l| l == line);
    if has("probe_direct=1") {
        return out.status != ExitStatus::Code(0) || !has("check_end=1");
    }
    !has("probe=1") && matches!(out.status, ExitStatus::Code(0 | 126 | 127))
}

/// The verification exec: the nodes, gpu-check with `ask` (a CUDA context on every GPU for
/// a strategy with a userspace) and nvidia-smi. With `install`, gpu-check is put in place
/// first (its bytes on stdin; other versions removed).
pub(crate) async fn verify_exec(
    ctx: &Ctx<'_>,
    ask: Ask,
    nodes: &[String],
    install: bool,
) -> Result<Probe> {
    let install = install && gpucheck::available();
    let mode = if install { "install" } else { "verify" };
    let args = head_args(ask, nodes, &[], mode);
    let stdin = install.then_some(gpucheck::BYTES);
    let out = run_script_with(
        ctx,
        "verifying",
        VERIFY_SCRIPT,
        &args,
        VERIFY_TIMEOUT,
        stdin,
    )
    .await?;
    Probe::parse(&out.stdout_str())
}

/// The probe script itself, run by the shells it must work in (dash as Debian's `sh`, and
/// busybox), against this machine plus a stand-in `nvidia-smi` on `PATH`, without gpu-check and
/// with the embedded one.
#[cfg(test)]
mod shell_tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    fn run(shell: &[&str], script: &str, args: &[&str], stdin: &[u8]) -> Option<String> {
        let (code, stdout, stderr) = run_status(shell, script, args, stdin)?;
        assert_eq!(code, Some(0), "{shell:?}: {stderr}");
        Some(stdout)
    }

    /// The script's exit code, stdout and stderr (`None` where the shell is not installed).
    fn run_status(
        shell: &[&str],
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Option<(Option<i32>, String, String)> {
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
        let child = cmd
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let needs = format!("{} ({e})", shell[0]);
                test_support::cannot_run("probe_runs_in_dash_and_busybox", &needs);
                return None;
            }
        };
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        Some((
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    #[test]
    fn probe_runs_in_dash_and_busybox() {
        let mut ran = 0;
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..], &["dash"][..]] {
            let Some(text) = run(
                shell,
                SCRIPT,
                &["", "", "probe", "dpkg", "no-such-tool"],
                b"",
            ) else {
                continue;
            };
            ran += 1;
            let p = Probe::parse(&text).unwrap();
            assert_eq!(p.gpu_check, GpuCheckRun::Absent, "{shell:?}: {text}");
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
            let v = Probe::parse(&run(shell, VERIFY_SCRIPT, &["", "", "verify"], b"").unwrap())
                .unwrap();
            assert_eq!(v.smi.unwrap().rc, Some(0));
        }
        assert!(ran > 0, "no POSIX shell found");
    }

    /// Where gpu-check is in place, the probe is gpu-check alone (`--probe`), and it answers
    /// what the shell's probe (`probe-sh`, gpu-check run from it) answers, key for key: the
    /// same parsed [`Probe`] for a converged apply's questions (NVML), `check`'s (no NVML) and
    /// strategy none's (nodes opened); it started one process, or two where NVML is missing
    /// here and it ran nvidia-smi as the shell does.
    #[test]
    fn gpu_check_alone_answers_as_the_shell_probe() {
        if !gpucheck::available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let gc = dir.path().join("gpu-check-2222222222222222");
        std::fs::write(&gc, gpucheck::BYTES).unwrap();
        test_support::chmod(&gc, 0o755);
        let gc = gc.to_str().unwrap();
        let dpkg = "--dpkg cuda-toolkit-*,dpkg,no-such-tool";
        let cases = [
            format!("--sys --dev --libs {dpkg} --nvml"),
            format!("--sys --dev --libs {dpkg}"),
            format!("--sys --dev --libs {dpkg} --open /dev/null,/dev/nvidia9"),
        ];
        let mut ran = 0;
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..], &["dash"][..]] {
            for gc_args in &cases {
                let args = [gc, gc_args.as_str(), "probe", "dpkg", "no-such-tool"];
                let Some(direct) = run(shell, SCRIPT, &args, b"") else {
                    continue;
                };
                ran += 1;
                let mut sh_args = args;
                sh_args[2] = "probe-sh";
                let via_shell = run(shell, SCRIPT, &sh_args, b"").unwrap();
                assert!(direct.starts_with("probe=1\nprobe_direct=1\n"), "{direct}");
                assert!(!via_shell.contains("probe_direct"), "{via_shell}");
                // nvidia-smi runs where NVML was asked and did not load (no driver here; on a
                // machine with one it loads and nothing else starts).
                let smi_runs =
                    gc_args.contains("--nvml") && !direct.lines().any(|l| l == "nvml_lib=ok");
                let pids = if smi_runs { 2 } else { 1 };
                assert!(
                    direct.lines().any(|l| l == format!("pids={pids}")),
                    "{gc_args}: {direct}"
                );
                let (mut d, mut s) = (
                    Probe::parse(&direct).unwrap(),
                    Probe::parse(&via_shell).unwrap(),
                );
                // What differs between two runs: the free space, and the stand-in nvidia-smi's
                // folder (each run makes its own).
                for p in [&mut d, &mut s] {
                    assert!(p.disk_free_kb.take().is_some_and(|k| k > 0));
                    let smi = p.smi_path.take().unwrap_or_default();
                    assert!(smi.ends_with("/nvidia-smi"), "{smi}");
                }
                if shell[0] == "busybox" {
                    // busybox sh's `command -v` also names its own applets (modprobe, depmod),
                    // which NVIDIA's installer cannot find on PATH; gpu-check looks at PATH only.
                    assert!(d.installer_missing.is_superset(&s.installer_missing));
                    s.installer_missing.clone_from(&d.installer_missing);
                }
                assert_eq!(d, s, "{shell:?} {gc_args}:\n{direct}\n---\n{via_shell}");
                assert_eq!(d.gpu_check, GpuCheckRun::Ran);
                assert!(
                    d.os_id.is_some() && d.tool_present("dpkg") && !d.tool_present("no-such-tool")
                );
                assert_eq!(d.smi.is_some(), smi_runs, "{direct}");
            }
        }
        assert!(ran > 0, "no POSIX shell found");
    }

    /// Which first answers are asked again through the shell: only those that show gpu-check
    /// started alone and not answering; a stopped container's failure is not asked twice.
    #[test]
    fn only_a_failed_gpu_check_is_asked_again() {
        let out = |code: i32, stdout: &str| exec_backend::Output {
            status: ExitStatus::Code(code),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        };
        let whole = "probe=1\nprobe_direct=1\ncheck_version=1\npids=1\ncheck_end=1\n";
        let cut = "probe=1\nprobe_direct=1\ngpu_check_present=1\n";
        let shell = "probe=1\nos_id=debian\npids=4\n";
        for (o, again) in [
            (out(0, whole), false),
            (out(0, shell), false),
            (out(0, cut), true),
            (out(139, cut), true),
            (out(2, whole), true),
            (out(126, ""), true),
            (out(127, ""), true),
            (out(0, ""), true),
            // pct exec into a stopped container; lxc-attach's own failure.
            (out(255, ""), false),
            (out(1, ""), false),
        ] {
            assert_eq!(direct_failed(&o), again, "{o:?}");
        }
        let signalled = exec_backend::Output {
            status: ExitStatus::Signal(9),
            stdout: cut.as_bytes().to_vec(),
            stderr: Vec::new(),
        };
        assert!(direct_failed(&signalled));
    }

    /// The install mode compares what is at the path with the bytes on stdin: the same program
    /// is left (nothing reported), a zeroed file or a link is replaced (the link's target is
    /// not written), a directory is refused; the program then answers the probe alone.
    #[test]
    fn install_replaces_what_is_not_the_program() {
        if !gpucheck::available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let gc = dir.path().join("gpu-check-3333333333333333");
        let gcs = gc.to_str().unwrap();
        let other = dir.path().join("elsewhere");
        let args = [gcs, "--sys", "install"];
        let mut ran = 0;
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..]] {
            let _ = std::fs::remove_dir_all(&gc);
            let _ = std::fs::remove_file(&gc);
            std::fs::write(&gc, vec![0u8; gpucheck::BYTES.len()]).unwrap();
            let Some(text) = run(shell, VERIFY_SCRIPT, &args, gpucheck::BYTES) else {
                continue;
            };
            ran += 1;
            let v = Probe::parse(&text).unwrap();
            assert_eq!(v.gpu_check_installed, Some(true), "{shell:?}: {text}");
            assert_eq!(v.gpu_check, GpuCheckRun::Ran, "{text}");
            assert_eq!(std::fs::read(&gc).unwrap(), gpucheck::BYTES);
            // The same bytes: left as they are.
            let text = run(shell, VERIFY_SCRIPT, &args, gpucheck::BYTES).unwrap();
            assert_eq!(
                Probe::parse(&text).unwrap().gpu_check_installed,
                None,
                "{text}"
            );
            // A link at the path: replaced by the program; what it pointed at is not written.
            std::fs::write(&other, b"keep").unwrap();
            std::fs::remove_file(&gc).unwrap();
            std::os::unix::fs::symlink(&other, &gc).unwrap();
            let text = run(shell, VERIFY_SCRIPT, &args, gpucheck::BYTES).unwrap();
            assert_eq!(Probe::parse(&text).unwrap().gpu_check_installed, Some(true));
            assert!(!std::fs::symlink_metadata(&gc)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(std::fs::read(&other).unwrap(), b"keep");
            // A directory at the path: refused, left, nothing written into it.
            std::fs::remove_file(&gc).unwrap();
            std::fs::create_dir(&gc).unwrap();
            let text = run(shell, VERIFY_SCRIPT, &args, gpucheck::BYTES).unwrap();
            assert_eq!(
                Probe::parse(&text).unwrap().gpu_check_installed,
                Some(false),
                "{text}"
            );
            assert_eq!(std::fs::read_dir(&gc).unwrap().count(), 0);
            assert!(!dir.path().join("gpu-check-3333333333333333.new").exists());
        }
        assert!(ran > 0, "no POSIX shell found");
    }

    /// The install mode puts gpu-check in place from stdin and removes other versions; the
    /// probe then runs it instead of uname, df, stat and nvidia-smi --version.
    #[test]
    fn gpu_check_is_installed_then_answers_the_probe() {
        if !gpucheck::available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib/phoenix-gpu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("gpu-check-0000000000000000"), b"old").unwrap();
        let gc = lib.join("gpu-check-1111111111111111");
        let gc = gc.to_str().unwrap();
        let args = "--sys --dev --libs --nvml --ctx --open /dev/null,/dev/no-such-node";
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..]] {
            let _ = std::fs::remove_file(gc);
            let Some(text) = run(
                shell,
                VERIFY_SCRIPT,
                &[gc, args, "install"],
                gpucheck::BYTES,
            ) else {
                continue;
            };
            let v = Probe::parse(&text).unwrap();
            assert_eq!(v.gpu_check_installed, Some(true), "{text}");
            assert_eq!(v.gpu_check, GpuCheckRun::Ran, "{text}");
            assert_eq!(std::fs::read(gc).unwrap(), gpucheck::BYTES);
            let left: Vec<_> = std::fs::read_dir(&lib)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                left,
                [std::ffi::OsString::from("gpu-check-1111111111111111")]
            );
            assert_eq!(v.opens[0], ("/dev/null".into(), "ok".into()), "{text}");
            assert_eq!(v.opens[1].1, "ENOENT", "{text}");
            assert_eq!(v.nvml.as_ref().unwrap().lib, LibState::Missing, "{text}");
            assert_eq!(v.cuda.as_ref().unwrap().lib, LibState::Missing, "{text}");
            // Verification runs nvidia-smi too.
            assert_eq!(v.smi.unwrap().rc, Some(0), "{text}");

            let text = run(
                shell,
                SCRIPT,
                &[gc, "--sys --dev --libs --nvml", "probe"],
                b"",
            )
            .unwrap();
            let p = Probe::parse(&text).unwrap();
            assert_eq!(p.gpu_check, GpuCheckRun::Ran, "{text}");
            assert_eq!(p.arch.as_deref(), Some("x86_64"));
            assert!(p.disk_free_kb.is_some(), "{text}");
            // gpu-check replaced nvidia-smi --version; NVML is missing here, so the probe
            // asked nvidia-smi for the GPUs.
            assert_eq!(p.smi_version, None, "{text}");
            assert_eq!(p.smi.unwrap().rc, Some(0), "{text}");
        }
        // A gpu-check that cannot run: the shell's exec of it fails with nothing printed (the
        // caller then asks again as probe-sh), and there it is reported and the shell parts answer.
        std::fs::write(gc, b"#!/no/such/interpreter\n").unwrap();
        let (code, stdout, _) =
            run_status(&["/bin/sh"], SCRIPT, &[gc, "--sys", "probe"], b"").unwrap();
        assert!(
            matches!(code, Some(126 | 127)) && stdout.is_empty(),
            "{code:?} {stdout}"
        );
        let failed = exec_backend::Output {
            status: ExitStatus::Code(code.unwrap()),
            stdout: stdout.into_bytes(),
            stderr: Vec::new(),
        };
        assert!(direct_failed(&failed));
        // A zeroed file: the shell runs it as a script (ENOEXEC), which prints nothing.
        let zeroed = format!("{gc}-zeroed");
        std::fs::write(&zeroed, [0u8; 4096]).unwrap();
        test_support::chmod(std::path::Path::new(&zeroed), 0o755);
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..]] {
            let Some((code, stdout, _)) =
                run_status(shell, SCRIPT, &[&zeroed, "--sys", "probe"], b"")
            else {
                continue;
            };
            let out = exec_backend::Output {
                status: code.map_or(ExitStatus::Signal(0), ExitStatus::Code),
                stdout: stdout.into_bytes(),
                stderr: Vec::new(),
            };
            assert!(direct_failed(&out), "{shell:?}: {out:?}");
        }
        let text = run(&["/bin/sh"], SCRIPT, &[gc, "--sys", "probe-sh"], b"").unwrap();
        let p = Probe::parse(&text).unwrap();
        assert!(
            matches!(
                p.gpu_check,
                GpuCheckRun::Failed {
                    rc: Some(126 | 127),
                    ..
                }
            ),
            "{text}"
        );
        assert!(p.arch.is_some() && p.smi_version.is_some(), "{text}");
    }
}
