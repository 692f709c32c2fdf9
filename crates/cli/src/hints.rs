//! What a person sees when something fails: the error and its causes on one screen, and for
//! the known failures a hint that says what to do. All hint selection lives here, keyed on the
//! `gpu_core::Error` variant, its typed cause and its `ErrorKind`, never on message text; the
//! flags and commands a hint names are the CLI's, which gpu-core's messages never name.

use std::error::Error as StdError;

use exec_backend::ExecError;

use crate::error::CliError;
use gpu_core::host_prepare::HOOKSCRIPT_DIR;
use gpu_core::{
    Error, ErrorKind, Input, InstallCause, PrepareFolder, RestartCause, SmiFailure, VerifyCause,
    VerifyProblem,
};

/// Lines kept of one multi-line message (the first, a marker, and the last ones).
const MAX_LINES_PER_MESSAGE: usize = 8;
/// Characters kept of one line.
const MAX_LINE_CHARS: usize = 300;
/// Lines of the whole error at most (before the hint).
const MAX_LINES: usize = 24;

fn cut_line(l: &str) -> String {
    if l.chars().count() <= MAX_LINE_CHARS {
        return l.to_owned();
    }
    let mut s: String = l.chars().take(MAX_LINE_CHARS).collect();
    s.push_str(" [...]");
    s
}

/// One message as lines: long ones keep their first line and their tail.
fn message_lines(msg: &str) -> Vec<String> {
    let lines: Vec<&str> = msg.trim_end().lines().collect();
    if lines.len() <= MAX_LINES_PER_MESSAGE {
        return lines.into_iter().map(cut_line).collect();
    }
    let tail = MAX_LINES_PER_MESSAGE - 2;
    let mut out = vec![cut_line(lines[0])];
    out.push(format!("[... {} lines ...]", lines.len() - 1 - tail));
    out.extend(lines[lines.len() - tail..].iter().map(|l| cut_line(l)));
    out
}

/// The error and its cause chain as lines for stderr: `error: ...`, then `  caused by: ...`
/// per cause, continuation lines indented; at most [`MAX_LINES`] lines.
pub fn render(e: &dyn StdError) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |prefix: &str, msg: &str| {
        for (i, l) in message_lines(msg).into_iter().enumerate() {
            if i == 0 {
                out.push(format!("{prefix}{l}"));
            } else {
                out.push(format!("    {l}"));
            }
        }
    };
    push("error: ", &e.to_string());
    let mut cur = e.source();
    while let Some(c) = cur {
        push("  caused by: ", &c.to_string());
        cur = c.source();
    }
    if out.len() > MAX_LINES {
        let dropped = out.len() - MAX_LINES + 1;
        out.truncate(MAX_LINES - 1);
        out.push(format!(
            "  [... {dropped} more lines: see --json or the log file]"
        ));
    }
    out
}

/// Like [`render`] for an error known only by its text.
pub fn render_text(msg: &str) -> Vec<String> {
    #[derive(Debug)]
    struct Text<'a>(&'a str);
    impl std::fmt::Display for Text<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Text<'_> {}
    render(&Text(msg))
}

/// The first `io::Error` in the cause chain, if any.
fn io_kind(e: &(dyn StdError + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = c.source();
    }
    None
}

/// The program and host of a command that could not start because it is not installed.
fn missing_program(e: &(dyn StdError + 'static)) -> Option<(String, String)> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(ExecError::Spawn {
            target,
            argv,
            source,
        }) = c.downcast_ref::<ExecError>()
        {
            if source.kind() == std::io::ErrorKind::NotFound {
                let program = argv.first()?;
                let name = program.rsplit('/').next().unwrap_or(program);
                return Some((name.to_owned(), target.clone()));
            }
        }
        cur = c.source();
    }
    None
}

/// The container an error is about, for commands in hints.
fn ct_of(e: &Error) -> Option<&str> {
    match e {
        Error::Locked { ct, .. }
        | Error::LockBusy { ct, .. }
        | Error::DevicesHeld { ct, .. }
        | Error::PendingChange { ct, .. }
        | Error::Install { ct, .. }
        | Error::Restart { ct, .. }
        | Error::Verify { ct, .. }
        | Error::Drift { ct, .. }
        | Error::GpuGone { ct, .. }
        | Error::CtNotFound { ct, .. }
        | Error::ConfigUnreadable { ct, .. } => Some(ct),
        _ => None,
    }
}

fn uvm_hint() -> String {
    "/dev/nvidia-uvm appears only once something loads nvidia-uvm (CUDA does it lazily, so it is \
     missing after a reboot): create it now with `nvidia-modprobe -u -c0`, and at every boot with \
     `phoenix-gpu host prepare` (a oneshot unit ordered before pve-guests.service)"
        .to_owned()
}

fn mismatch_hint(ct: &str) -> String {
    format!(
        "the driver userspace differs from the host's kernel module. If the host's own nvidia-smi \
         fails the same way, the host driver was upgraded without a reboot: reboot the host. \
         Otherwise `phoenix-gpu apply {ct}` reinstalls the container's userspace at the host's \
         version (or use --strategy host-libs, which cannot drift)"
    )
}

fn permission_hint(ct: &str) -> String {
    format!(
        "the container cannot open the GPU device nodes: on the host they are usually 0660 \
         root:video, which an unprivileged container's users cannot open. On Proxmox VE 8.1+ \
         use --mode dev (it writes gid=<the node's group>,mode=0666 for unprivileged \
         containers); otherwise make the host's nodes 0666 (chmod 0666 /dev/nvidia*, kept \
         across reboots by a udev rule), then `phoenix-gpu apply {ct}`"
    )
}

/// `Failed to initialize NVML: Unknown Error` in a container: its known causes.
fn unknown_error_hint(ct: &str) -> String {
    format!(
        "NVML's Unknown Error in a container means the device cgroup denies a GPU node it \
         has: allow lines missing, written under the cgroup key this host's LXC ignores \
         (lxc.cgroup2.devices.allow on a unified host, lxc.cgroup.devices.allow where the \
         devices controller is cgroup v1), or allowing a stale major (nvidia-uvm's changes when \
         the driver is reloaded). `phoenix-gpu check {ct}` names which; `phoenix-gpu apply \
         {ct}` rewrites them and restarts the container"
    )
}

/// `NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver`.
fn driver_unreachable_hint(ct: &str) -> String {
    format!(
        "nvidia-smi in the container cannot reach the driver through /dev/nvidiactl: the \
         container lacks the node (its config does not pass it, or the container was not \
         restarted since it does), or the host's driver is not loaded (then the host's own \
         nvidia-smi fails too). `phoenix-gpu check {ct}` lists what the config misses; \
         `phoenix-gpu apply {ct}` writes it and restarts the container"
    )
}

/// What to do about nvidia-smi failing so.
fn smi_hint(failure: SmiFailure, ct: &str) -> Option<String> {
    match failure {
        SmiFailure::VersionMismatch => Some(mismatch_hint(ct)),
        SmiFailure::NoPermission => Some(permission_hint(ct)),
        SmiFailure::DriverUnreachable => Some(driver_unreachable_hint(ct)),
        SmiFailure::UnknownError => Some(unknown_error_hint(ct)),
        SmiFailure::LibraryMissing => Some(format!(
            "the container has nvidia-smi but not libnvidia-ml.so on its loader path: \
             `phoenix-gpu apply {ct}` installs the userspace (runfile) or runs ldconfig \
             for the host's libraries (host-libs)"
        )),
        _ => None,
    }
}

/// What to do about a failed verification.
fn verify_hint(cause: &VerifyCause, ct: &str) -> Option<String> {
    match cause {
        VerifyCause::SmiFailed { failure, .. } => smi_hint(*failure, ct),
        VerifyCause::Mismatch { problems } => {
            let version = problems.iter().any(|p| {
                matches!(
                    p,
                    VerifyProblem::DriverVersion { .. } | VerifyProblem::UserspaceVersion { .. }
                )
            });
            let uvm = problems.iter().any(|p| {
                matches!(p, VerifyProblem::NodeMissing { path } if path.starts_with("/dev/nvidia-uvm"))
            });
            let refused = problems
                .iter()
                .any(|p| matches!(p, VerifyProblem::NodeRefused { .. }));
            let smi = problems.iter().find_map(|p| match p {
                VerifyProblem::Smi { failure, .. } => Some(*failure),
                _ => None,
            });
            if version {
                Some(mismatch_hint(ct))
            } else if uvm {
                Some(uvm_hint())
            } else if refused {
                Some(format!(
                    "`phoenix-gpu apply {ct}` writes the allow lines this host honours for its \
                     current majors and restarts the container"
                ))
            } else {
                smi.and_then(|f| smi_hint(f, ct))
            }
        }
        _ => None,
    }
}

/// What to do about `e`, an error of the command `command` (`inventory`, `apply`, ...), when
/// there is something specific to say. Chosen by the error's variant and its cause, never by
/// its wording; the flags and commands to use are named here. A general hint names the
/// command's help, and never tells to run the command that just failed.
pub fn hint_in(e: &Error, command: Option<&str>) -> Option<String> {
    let specific = match e {
        Error::NoDriver { .. } => Some(
            "install the NVIDIA driver on the host (NVIDIA's .run installer or the \
             distribution's packages) and load it (`modprobe nvidia`): the host's own nvidia-smi \
             must work before a container can use a GPU"
                .to_owned(),
        ),
        Error::VersionMismatch { host, .. } => Some(format!(
            "the host's kernel module is {host}: drop --driver-version (or \
             NVIDIA_DRIVER_VERSION, or the orchestrator config's nvidia_driver_version), or \
             set it to auto or {host} (--force-version installs it anyway). If the host was \
             just upgraded to the version you asked for, reboot it so the new module is loaded"
        )),
        Error::NodeMissing { path, .. } => {
            let p = path.to_string_lossy();
            if p.starts_with("/dev/nvidia-uvm") {
                Some(uvm_hint())
            } else if p == "/dev/nvidia-modeset" {
                Some(
                    "create it with `nvidia-modprobe -m`; `phoenix-gpu host prepare` can create it \
                     at every boot"
                        .to_owned(),
                )
            } else if p.contains("nvidia-caps") {
                Some(
                    "--mig needs MIG-capable GPUs and a driver with MIG support; leave --mig out \
                     otherwise"
                        .to_owned(),
                )
            } else if p.starts_with("/dev/nvidia") {
                Some(
                    "create the nodes at every boot with `phoenix-gpu host prepare`, or use --mode \
                     raw"
                    .to_owned(),
                )
            } else {
                None
            }
        }
        Error::HostUserspaceMissing { .. } => {
            Some("install the driver's userspace on the host, or use --strategy runfile".to_owned())
        }
        Error::GpuGone { ct, .. } => Some(format!(
            "`phoenix-gpu inventory` lists the host's GPUs; give the container its GPUs with \
             `phoenix-gpu apply {ct} --gpus LIST`"
        )),
        Error::BadInput {
            what: Input::Mode | Input::ContainerConfig,
            ..
        } => Some("use --mode raw (or --mode auto)".to_owned()),
        Error::NoOrchestratorConfig => Some(
            "apply --all works on the containers of the orchestrator config: give its \
             phoenix_lxc_configs.json with --phoenix-config FILE"
                .to_owned(),
        ),
        Error::OrchestratorConfig { .. } | Error::NotLxcConfig { .. } => Some(
            "--phoenix-config takes the orchestrator's phoenix_lxc_configs.json (v1 or v2), \
             usually /usr/local/phoenix_hypervisor/etc/phoenix_lxc_configs.json; not \
             phoenix_hypervisor_config.json"
                .to_owned(),
        ),
        Error::PrepareFolderMissing { which, .. } => Some(match which {
            PrepareFolder::Snippets => format!(
                "the hookscript lives in the snippets folder of Proxmox's local storage, which \
                 needs the snippets content type: `pvesm set local --content <its types>,snippets` \
                 (its types are on the content line under `dir: local` in /etc/pve/storage.cfg, \
                 such as iso,vztmpl,backup), and `mkdir -p {HOOKSCRIPT_DIR}` if it is still \
                 missing. Or leave out --hookscript"
            ),
            PrepareFolder::SystemdUnits => "host prepare installs a systemd unit; on a host \
                 without systemd, run `nvidia-modprobe -u -c0` (and `nvidia-modprobe -m`) from \
                 its boot scripts before containers start"
                .to_owned(),
            _ => return None,
        }),
        Error::HookscriptInUse { cts, .. } => Some(format!(
            "detach it first: `pct set CTID --delete hookscript` for {}, then run again; or \
             pass --force to delete it anyway (those containers then do not start until their \
             hookscript line goes)",
            if cts.len() == 1 {
                format!("container {}", cts[0])
            } else {
                format!("each of {}", cts.join(", "))
            }
        )),
        Error::OrchestratorValue { field, .. } => Some(format!(
            "fix {field} in the orchestrator config, or give the value with its flag, which wins"
        )),
        Error::ConfigGarbled { path, backups, .. } => Some(format!(
            "`ls -t {}` lists the backups, newest first; compare one with `diff` and copy it \
             over {} once it is right (a config that is not a config is never rewritten)",
            backups.display(),
            path.display()
        )),
        Error::Locked { ct, .. } => Some(format!(
            "a Proxmox task (backup, snapshot, migration) set the lock; when no such task \
             runs any more (see the node's task list), `pct unlock {ct}` clears it"
        )),
        Error::PendingChange { ct, keys, .. } => Some(format!(
            "`pct reboot {ct}` (`pct start {ct}` when it is stopped) lets Proxmox apply the \
             pending change, `pct set {ct} --revert {}` drops it; then run phoenix-gpu again",
            keys.join(",")
        )),
        Error::LockBusy { source, .. } => Some(match source {
            ExecError::LockTimeout { path, .. } => format!(
                "another task holds {} (a running pct command, a Proxmox task or another \
                 phoenix-gpu): wait for it and run again; `lslocks | grep {}` shows the holder",
                path.display(),
                path.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            ExecError::Conflict { .. } => "the config changed while it was being edited (pct \
                 set, the web UI, an editor); nothing was written: run again"
                .to_owned(),
            _ => "run again once the other task has finished".to_owned(),
        }),
        Error::DevicesHeld { ct, .. } => Some(format!(
            "nothing was changed. Stop the processes and run again; or --force takes the GPUs \
             away live anyway (the processes keep their open handles until they exit); or \
             --restart applies the change with a restart of {ct}, which ends them"
        )),
        Error::Verify { cause, ct } => verify_hint(cause, ct),
        Error::Restart { cause, ct } => match cause {
            RestartCause::DeviceNodeMissing { .. } => Some(format!(
                "the container's config passes a device node the host does not have right now. \
                 {}; `phoenix-gpu check {ct}` lists what is missing",
                uvm_hint()
            )),
            RestartCause::Timeout { .. } => Some(format!(
                "look at the container's log (lxc-start -l DEBUG, or journalctl -u \
                 pve-container@{ct}) and raise --restart-timeout if it is only slow"
            )),
            _ => None,
        },
        Error::Install { cause, .. } => match cause {
            InstallCause::WrongArch { .. } => {
                Some("use --strategy host-libs, which mounts the host's own userspace".to_owned())
            }
            InstallCause::NoCudaRepository { .. } => {
                Some("give the CUDA repository with --repo-url".to_owned())
            }
            InstallCause::NoPublishedChecksum { .. } => {
                Some("give the checksum with --runfile-sha256".to_owned())
            }
            _ => None,
        },
        _ => None,
    };
    if specific.is_some() {
        return specific;
    }
    if let Some((program, target)) = missing_program(e) {
        let what = match program.as_str() {
            "pct" => " (this is not a Proxmox VE node: use --target lxc for plain LXC)",
            "lxc-attach" | "lxc-info" | "lxc-start" | "lxc-stop" | "lxc-wait" => {
                " (install the lxc package, or use --target pve on Proxmox VE)"
            }
            "curl" | "sha256sum" => " (the runfile download needs curl and coreutils on the host)",
            "nvidia-modprobe" => " (install NVIDIA's nvidia-modprobe)",
            _ => "",
        };
        return Some(format!("`{program}` is not installed on {target}{what}"));
    }
    if io_kind(e) == Some(std::io::ErrorKind::PermissionDenied) {
        return Some(
            "phoenix-gpu writes container configs, /var/lib/phoenix-gpu and /var/cache/phoenix-gpu: \
             run it as root"
                .to_owned(),
        );
    }
    if ssh_failed(e) {
        return Some(
            "the node cannot be reached over SSH: check its address (--host, or --node \
             NAME=ssh://user@address), that its host key is in known_hosts (host keys are checked \
             strictly) and that the key is accepted: `ssh -o BatchMode=yes root@NODE true` must \
             work"
                .to_owned(),
        );
    }
    kind_hint(e.kind(), command, ct_of(e))
}

/// Whether an SSH connection failed somewhere in the cause chain.
fn ssh_failed(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if matches!(c.downcast_ref::<ExecError>(), Some(ExecError::Ssh { .. })) {
            return true;
        }
        cur = c.source();
    }
    false
}

/// What to do about a CLI error of the command `command`.
pub fn hint_cli(e: &CliError, command: Option<&str>) -> Option<String> {
    match (e, e.core()) {
        (CliError::ReadConfig { .. }, _) => Some(
            "--phoenix-config takes the path of the orchestrator's phoenix_lxc_configs.json, \
             usually /usr/local/phoenix_hypervisor/etc/phoenix_lxc_configs.json"
                .to_owned(),
        ),
        (_, Some(core)) => hint_in(core, command),
        (_, None) => kind_hint(e.kind(), command, None),
    }
}

/// The general hint of a kind, when nothing more specific applies; `command` is the command
/// that failed (never suggested again), `ct` the container when the error names one.
pub fn kind_hint(kind: ErrorKind, command: Option<&str>, ct: Option<&str>) -> Option<String> {
    Some(match kind {
        ErrorKind::BadInput => format!(
            "`phoenix-gpu help {}` lists the accepted values",
            command.unwrap_or("<command>")
        ),
        ErrorKind::CtNotFound => "check the CTID (`pct list`) or --target/--lxcpath".to_owned(),
        ErrorKind::ConfigMissing => {
            "check the CTID, --target and --lxcpath, and that the config is readable".to_owned()
        }
        ErrorKind::HostPrecondition if command != Some("inventory") => {
            "`phoenix-gpu inventory` shows what this host has".to_owned()
        }
        ErrorKind::Locked => "run again once the other task has finished".to_owned(),
        ErrorKind::Drift => format!(
            "`phoenix-gpu apply {}` with the same GPUs repairs it",
            ct.unwrap_or("CTID")
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn hint(e: &Error) -> Option<String> {
        hint_in(e, None)
    }

    fn verify(cause: VerifyCause) -> Error {
        Error::Verify {
            ct: "101".into(),
            cause,
        }
    }

    fn smi_failed(output: &str) -> Error {
        verify(VerifyCause::SmiFailed {
            failure: SmiFailure::classify(output),
            output: output.into(),
            expected: vec!["GPU-x".into()],
            driver: "580.159.04".into(),
        })
    }

    #[test]
    fn version_mismatch() {
        let e = Error::VersionMismatch {
            wanted: "570.1.2".into(),
            host: "580.159.04".into(),
        };
        let h = hint(&e).unwrap();
        assert!(h.contains("auto or 580.159.04"), "{h}");
        assert!(h.contains("--force-version"), "{h}");
        let h = hint(&smi_failed(
            "Failed to initialize NVML: Driver/library version mismatch",
        ))
        .unwrap();
        assert!(h.contains("`phoenix-gpu apply 101`"), "{h}");
        assert!(h.contains("reboot the host"), "{h}");
        let h = hint(&verify(VerifyCause::Mismatch {
            problems: vec![VerifyProblem::DriverVersion {
                reported: "570.1.2".into(),
                host: "580.159.04".into(),
            }],
        }))
        .unwrap();
        assert!(h.contains("reinstalls"), "{h}");
    }

    #[test]
    fn missing_uvm() {
        let e = Error::NodeMissing {
            path: PathBuf::from("/dev/nvidia-uvm"),
            hint: "x".into(),
        };
        let h = hint(&e).unwrap();
        assert!(h.contains("nvidia-modprobe -u -c0"), "{h}");
        assert!(h.contains("phoenix-gpu host prepare"), "{h}");
        let h = hint(&verify(VerifyCause::Mismatch {
            problems: vec![VerifyProblem::NodeMissing {
                path: "/dev/nvidia-uvm".into(),
            }],
        }))
        .unwrap();
        assert!(h.contains("nvidia-modprobe -u -c0"), "{h}");
        let h = hint(&verify(VerifyCause::Mismatch {
            problems: vec![VerifyProblem::NodeRefused {
                path: "/dev/nvidia-uvm".into(),
                rdev: (238, 0),
                cause: gpu_core::NodeRefusal::StaleMajor {
                    major: 238,
                    stale: vec![509],
                },
            }],
        }))
        .unwrap();
        assert!(h.contains("phoenix-gpu apply 101"), "{h}");
        let start = ExecError::Failed {
            target: "localhost".into(),
            argv: vec!["pct".into(), "start".into(), "101".into()],
            status: exec_backend::ExitStatus::Code(255),
            stderr_tail: "startup for container '101' failed: Could not get mode or device ID of /dev/nvidia-uvm".into(),
        };
        let e = Error::Restart {
            ct: "101".into(),
            cause: RestartCause::start(start),
        };
        let h = hint(&e).unwrap();
        assert!(h.contains("phoenix-gpu check 101"), "{h}");
        let e = Error::NodeMissing {
            path: PathBuf::from("/dev/nvidia-modeset"),
            hint: "x".into(),
        };
        assert!(hint(&e).unwrap().contains("nvidia-modprobe -m"));
    }

    #[test]
    fn a_node_problem_with_nvidia_smi_failing_after_it() {
        // /dev/nvidiactl missing: the node problem carries no hint of its own, nvidia-smi's
        // failure (its effect) does.
        let output = "nvidia-smi (exit code 9): NVIDIA-SMI has failed because it couldn't \
                      communicate with the NVIDIA driver.";
        let h = hint(&verify(VerifyCause::Mismatch {
            problems: vec![
                VerifyProblem::NodeMissing {
                    path: "/dev/nvidiactl".into(),
                },
                VerifyProblem::Smi {
                    failure: SmiFailure::classify(output),
                    output: output.into(),
                },
            ],
        }))
        .unwrap();
        assert!(
            h.contains("cannot reach the driver through /dev/nvidiactl"),
            "{h}"
        );
        // A refused node: the node's hint wins, and reads as one sentence.
        let h = hint(&verify(VerifyCause::Mismatch {
            problems: vec![
                VerifyProblem::NodeRefused {
                    path: "/dev/nvidiactl".into(),
                    rdev: (195, 255),
                    cause: gpu_core::NodeRefusal::NoAllowLine {
                        major: 195,
                        minor: 255,
                    },
                },
                VerifyProblem::Smi {
                    failure: SmiFailure::UnknownError,
                    output: "nvidia-smi (exit code 255): Unknown Error".into(),
                },
            ],
        }))
        .unwrap();
        assert_eq!(
            h,
            "`phoenix-gpu apply 101` writes the allow lines this host honours for its current \
             majors and restarts the container"
        );
    }

    #[test]
    fn permission_denied_in_unprivileged_ct() {
        let h = hint(&smi_failed(
            "Failed to initialize NVML: Insufficient Permissions",
        ))
        .unwrap();
        assert!(h.contains("--mode dev"), "{h}");
        assert!(h.contains("0666"), "{h}");
        let h = hint(&smi_failed("open /dev/nvidiactl: Permission denied")).unwrap();
        assert!(h.contains("--mode dev"), "{h}");
    }

    #[test]
    fn permission_denied_on_the_host_says_root() {
        let e = Error::ConfigUnreadable {
            ct: "101".into(),
            path: "/etc/pve/lxc/101.conf".into(),
            source: ExecError::Io {
                target: "localhost".into(),
                op: "read",
                path: "/etc/pve/lxc/101.conf".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
        };
        assert!(hint(&e).unwrap().contains("run it as root"));
    }

    #[test]
    fn a_garbled_config_points_to_its_backups_not_to_the_ctid() {
        let e = Error::ConfigGarbled {
            ct: "101".into(),
            path: "/etc/pve/lxc/101.conf".into(),
            problem: "it holds NUL bytes".into(),
            backups: "/var/lib/phoenix-gpu/backups/101".into(),
        };
        let h = hint(&e).unwrap();
        assert!(h.contains("ls -t /var/lib/phoenix-gpu/backups/101"), "{h}");
        assert!(h.contains("/etc/pve/lxc/101.conf"), "{h}");
        assert!(!h.contains("check the CTID"), "{h}");
    }

    #[test]
    fn locks() {
        let e = Error::Locked {
            ct: "101".into(),
            lock: "backup".into(),
        };
        assert!(hint(&e).unwrap().contains("`pct unlock 101`"));
        let e = Error::PendingChange {
            ct: "101".into(),
            lines: vec!["line 19 ([pve:pending]): dev4: /dev/nvidia0 passes /dev/nvidia0".into()],
            keys: vec!["dev4".into()],
        };
        let h = hint(&e).unwrap();
        assert!(h.contains("`pct reboot 101`"), "{h}");
        assert!(h.contains("`pct set 101 --revert dev4`"), "{h}");
        let e = Error::LockBusy {
            ct: "101".into(),
            source: ExecError::LockTimeout {
                target: "localhost".into(),
                path: "/run/lock/lxc/pve-config-101.lock".into(),
                after: Duration::from_secs(10),
            },
        };
        let h = hint(&e).unwrap();
        assert!(
            h.contains("another task holds /run/lock/lxc/pve-config-101.lock"),
            "{h}"
        );
        assert!(h.contains("lslocks | grep pve-config-101.lock"), "{h}");
        let e = Error::LockBusy {
            ct: "101".into(),
            source: ExecError::Conflict {
                target: "localhost".into(),
                path: "/etc/pve/lxc/101.conf".into(),
            },
        };
        assert!(hint(&e).unwrap().contains("nothing was written"));
    }

    #[test]
    fn a_held_gpu_names_force_and_restart() {
        let e = Error::DevicesHeld {
            ct: "101".into(),
            holders: vec![gpu_core::Holder {
                pid: 42,
                comm: "python3".into(),
                device: "/dev/nvidia0".into(),
            }],
        };
        assert!(e
            .to_string()
            .contains("pid 42 (python3) holds /dev/nvidia0"));
        assert!(
            !e.to_string().contains("--"),
            "library messages name no flag"
        );
        let h = hint(&e).unwrap();
        assert!(h.contains("--force") && h.contains("--restart"), "{h}");
        assert!(h.contains("restart of 101"), "{h}");
    }

    #[test]
    fn flags_are_named_here_for_typed_causes() {
        let e = Error::Install {
            ct: "101".into(),
            what: "NVIDIA userspace 580.159.04".into(),
            cause: InstallCause::WrongArch {
                arch: "aarch64".into(),
            },
        };
        assert!(hint(&e).unwrap().contains("--strategy host-libs"));
        let e = Error::Install {
            ct: "101".into(),
            what: "CUDA 12.8".into(),
            cause: InstallCause::NoCudaRepository {
                system: "fedora 40 (x86_64)".into(),
            },
        };
        assert!(hint(&e).unwrap().contains("--repo-url"));
        let e = Error::Restart {
            ct: "101".into(),
            cause: RestartCause::Timeout {
                action: "start",
                after: Duration::from_secs(5),
            },
        };
        let h = hint(&e).unwrap();
        assert!(h.contains("--restart-timeout"), "{h}");
        assert!(h.contains("pve-container@101"), "{h}");
        let e = Error::GpuGone {
            ct: "101".into(),
            minors: vec![7],
        };
        assert!(hint(&e).unwrap().contains("phoenix-gpu apply 101 --gpus"));
    }

    #[test]
    fn missing_program() {
        let e = Error::Restart {
            ct: "101".into(),
            cause: RestartCause::Unsettled {
                state: "FROZEN".into(),
                after: Duration::from_secs(1),
            },
        };
        assert!(!hint(&e).unwrap_or_default().contains("not installed"));
        let e = Error::exec(
            "reading the state of container 101",
            ExecError::Spawn {
                target: "localhost".into(),
                argv: vec!["pct".into(), "status".into(), "101".into()],
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        );
        let h = hint(&e).unwrap();
        assert!(h.starts_with("`pct` is not installed on localhost"), "{h}");
        assert!(h.contains("--target lxc"), "{h}");
    }

    #[test]
    fn kinds_fall_back() {
        let e = Error::CtNotFound {
            ct: "555".into(),
            path: "/etc/pve/lxc/555.conf".into(),
        };
        assert!(hint(&e).unwrap().contains("pct list"));
        let e = Error::Parse {
            what: "x".into(),
            detail: "y".into(),
        };
        assert_eq!(hint(&e), None);
    }

    fn smi(failure: SmiFailure) -> Error {
        verify(VerifyCause::SmiFailed {
            failure,
            output: "x".into(),
            expected: vec![],
            driver: "580.159.04".into(),
        })
    }

    /// Each kind of nvidia-smi failure gets its own hint (issue 20 item 5).
    #[test]
    fn nvidia_smi_failures_each_get_their_hint() {
        let h = hint(&smi(SmiFailure::UnknownError)).unwrap();
        for words in [
            "allow lines missing",
            "cgroup key this host's LXC ignores",
            "stale major",
            "`phoenix-gpu check 101`",
        ] {
            assert!(h.contains(words), "{words}: {h}");
        }
        let h = hint(&smi(SmiFailure::DriverUnreachable)).unwrap();
        assert!(h.contains("/dev/nvidiactl"), "{h}");
        assert!(h.contains("`phoenix-gpu check 101`"), "{h}");
        let h = hint(&smi(SmiFailure::LibraryMissing)).unwrap();
        assert!(h.contains("libnvidia-ml.so"), "{h}");
        assert_eq!(hint(&smi(SmiFailure::Other)), None);
    }

    /// Every hint's key words are in docs/troubleshooting.md, so the page and the hints stay in
    /// step: a hint changed without the page fails here.
    #[test]
    fn every_hint_is_in_the_troubleshooting_page() {
        // Markdown wraps lines: compare with runs of whitespace as one space.
        let page = include_str!("../../../docs/troubleshooting.md")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let exec = |argv: &[&str]| ExecError::Spawn {
            target: "localhost".into(),
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let node = |p: &str| Error::NodeMissing {
            path: PathBuf::from(p),
            hint: "x".into(),
        };
        let install = |cause| Error::Install {
            ct: "101".into(),
            what: "x".into(),
            cause,
        };
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::VersionMismatch {
                    wanted: "570.1.2".into(),
                    host: "580.159.04".into(),
                },
                "--force-version",
            ),
            (smi(SmiFailure::VersionMismatch), "reboot the host"),
            (smi(SmiFailure::NoPermission), "--mode dev"),
            (
                smi(SmiFailure::UnknownError),
                "device cgroup denies a GPU node",
            ),
            (
                smi(SmiFailure::DriverUnreachable),
                "cannot reach the driver through /dev/nvidiactl",
            ),
            (
                smi(SmiFailure::LibraryMissing),
                "libnvidia-ml.so on its loader path",
            ),
            (node("/dev/nvidia-uvm"), "nvidia-modprobe -u -c0"),
            (node("/dev/nvidia-modeset"), "nvidia-modprobe -m"),
            (node("/dev/nvidia-caps/nvidia-cap1"), "MIG-capable GPUs"),
            (
                Error::HostUserspaceMissing {
                    version: "580.159.04".into(),
                    looked_in: vec![],
                },
                "install the driver's userspace on the host",
            ),
            (
                Error::GpuGone {
                    ct: "101".into(),
                    minors: vec![7],
                },
                "--gpus LIST",
            ),
            (
                Error::NoDriver { host: "h".into() },
                "install the NVIDIA driver on the host",
            ),
            (Error::NoOrchestratorConfig, "--phoenix-config FILE"),
            (
                Error::NotLxcConfig {
                    looks_like: "x".into(),
                },
                "not phoenix_hypervisor_config.json",
            ),
            (
                Error::Locked {
                    ct: "101".into(),
                    lock: "backup".into(),
                },
                "pct unlock",
            ),
            (
                Error::LockBusy {
                    ct: "101".into(),
                    source: ExecError::LockTimeout {
                        target: "localhost".into(),
                        path: "/run/lock/lxc/pve-config-101.lock".into(),
                        after: Duration::from_secs(10),
                    },
                },
                "lslocks",
            ),
            (
                Error::Restart {
                    ct: "101".into(),
                    cause: RestartCause::Timeout {
                        action: "start",
                        after: Duration::from_secs(5),
                    },
                },
                "--restart-timeout",
            ),
            (
                install(InstallCause::WrongArch {
                    arch: "aarch64".into(),
                }),
                "--strategy host-libs",
            ),
            (
                install(InstallCause::NoCudaRepository { system: "x".into() }),
                "--repo-url",
            ),
            (
                install(InstallCause::NoPublishedChecksum {
                    url: "u".into(),
                    why: "w".into(),
                }),
                "--runfile-sha256",
            ),
            (
                Error::PrepareFolderMissing {
                    dir: "/var/lib/vz/snippets".into(),
                    which: PrepareFolder::Snippets,
                },
                "pvesm set local --content",
            ),
            (
                Error::PrepareFolderMissing {
                    dir: "/etc/systemd/system".into(),
                    which: PrepareFolder::SystemdUnits,
                },
                "on a host without systemd",
            ),
            (
                Error::HookscriptInUse {
                    volid: "local:snippets/phoenix-gpu-hook.sh".into(),
                    cts: vec!["101".into()],
                },
                "pct set CTID --delete hookscript",
            ),
            (
                Error::exec("x", exec(&["pct", "status", "101"])),
                "--target lxc",
            ),
            (
                Error::DevicesHeld {
                    ct: "101".into(),
                    holders: vec![],
                },
                "the processes keep their open handles until they exit",
            ),
            (
                Error::exec(
                    "x",
                    ExecError::Ssh {
                        target: "pve2".into(),
                        detail: "Connection refused".into(),
                        source: None,
                    },
                ),
                "ssh -o BatchMode=yes",
            ),
        ];
        for (e, words) in cases {
            let h = hint(&e).unwrap_or_else(|| panic!("no hint for {e:?}"));
            assert!(h.contains(words), "{words:?} not in the hint of {e:?}: {h}");
            assert!(
                page.contains(words),
                "{words:?} (the hint of {e:?}) is not in docs/troubleshooting.md"
            );
        }
    }

    #[test]
    fn render_fits_on_a_screen() {
        let tail: String = (0..200).map(|i| format!("installer line {i}\n")).collect();
        let e = Error::ConfigUnreadable {
            ct: "101".into(),
            path: "/etc/pve/lxc/101.conf".into(),
            source: ExecError::Failed {
                target: "CT 101".into(),
                argv: vec!["sh".into()],
                status: exec_backend::ExitStatus::Code(1),
                stderr_tail: tail,
            },
        };
        let lines = render(&e);
        assert!(lines.len() <= MAX_LINES, "{lines:#?}");
        assert!(lines[0].starts_with("error: cannot read the config of container 101"));
        assert!(lines[1].starts_with("  caused by: [\"sh\"] on CT 101 failed"));
        assert!(lines.iter().any(|l| l.contains("installer line 199")));
        assert!(lines.iter().any(|l| l.contains("lines ...]")));
        let long = "x".repeat(5000);
        let lines = render_text(&long);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].len() < 400);
    }
}
