//! `host prepare`: make the host create the NVIDIA nodes at boot, before Proxmox starts guests.
//!
//! `/dev/nvidia-uvm` (and `-uvm-tools`, and `nvidia-modeset`) appear only when something loads
//! the module and creates them; CUDA does it lazily. A container whose config passes them and is
//! started at boot then starts without them (raw mode: a GPU-less container; dev mode: a start
//! failure). The unit runs `nvidia-modprobe` ordered before `pve-guests.service` and
//! `lxc.service`. Optionally a Proxmox hookscript runs `phoenix-gpu check` at pre-start.

use std::path::{Path, PathBuf};

use exec_backend::{Cmd, Host, WriteOptions};
use serde::Serialize;

use crate::error::{Error, Result};

/// The unit's path.
pub const UNIT_PATH: &str = "/etc/systemd/system/phoenix-gpu-nodes.service";
/// The unit's name.
pub const UNIT_NAME: &str = "phoenix-gpu-nodes.service";
/// Where the hookscript goes (the `local` storage's snippets folder).
pub const HOOKSCRIPT_PATH: &str = "/var/lib/vz/snippets/phoenix-gpu-hook.sh";
/// The hookscript's volume id for `pct set CTID --hookscript`.
pub const HOOKSCRIPT_VOLID: &str = "local:snippets/phoenix-gpu-hook.sh";

const MODPROBE_CANDIDATES: &[&str] = &[
    "/usr/bin/nvidia-modprobe",
    "/usr/sbin/nvidia-modprobe",
    "/usr/local/bin/nvidia-modprobe",
    "/usr/local/nvidia/bin/nvidia-modprobe",
];

/// What `host prepare` should set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Also create `/dev/nvidia-modeset` (`nvidia-modprobe -m`).
    pub modeset: bool,
    /// Also install the pre-start hookscript.
    pub hookscript: bool,
    /// The path of the phoenix-gpu binary the hookscript calls.
    pub binary: PathBuf,
    /// Run `systemctl daemon-reload` and `enable` (off under `--root`).
    pub systemctl: bool,
    /// Show, change nothing.
    pub dry_run: bool,
}

/// One file `host prepare` manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManagedFile {
    /// Host path.
    pub path: PathBuf,
    /// Its wanted content (empty for a removal).
    pub content: String,
    /// `create`, `update`, `unchanged`, `remove` or `absent`.
    pub action: &'static str,
}

/// What `host prepare` did (or would do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrepareReport {
    /// Whether anything changed.
    pub changed: bool,
    /// The managed files.
    pub files: Vec<ManagedFile>,
    /// Commands run (or that would run), as text.
    pub commands: Vec<String>,
}

/// The unit file's text for `modprobe` (the path of nvidia-modprobe).
pub fn unit_text(modprobe: &Path, modeset: bool) -> String {
    let mut s = String::from(
        "# Written by phoenix-gpu host prepare; remove with: phoenix-gpu host prepare --remove\n\
         [Unit]\n\
         Description=Create NVIDIA device nodes for GPU containers (phoenix-gpu)\n\
         After=systemd-modules-load.service\n\
         Before=pve-guests.service lxc.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n",
    );
    s.push_str(&format!("ExecStart={} -u -c0\n", modprobe.display()));
    if modeset {
        s.push_str(&format!("ExecStart={} -m\n", modprobe.display()));
    }
    s.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    s
}

/// The hookscript's text: at pre-start it runs `check` and refuses the start on drift.
pub fn hookscript_text(binary: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by phoenix-gpu host prepare. Proxmox calls it as: <script> <vmid> <phase>\n\
         # At pre-start it checks the container's GPU passthrough and refuses the start on drift\n\
         # (exit 10: stale majors, missing nodes, a userspace that no longer matches the driver).\n\
         vmid=\"$1\"; phase=\"$2\"\n\
         [ \"$phase\" = pre-start ] || exit 0\n\
         exec {} check \"$vmid\"\n",
        binary.display()
    )
}

async fn find_modprobe(host: &dyn Host) -> Result<PathBuf> {
    for c in MODPROBE_CANDIDATES {
        let meta = host
            .stat(Path::new(c))
            .await
            .map_err(|e| Error::exec(format!("stat {c}"), e))?;
        if meta.is_some() {
            return Ok(PathBuf::from(c));
        }
    }
    Err(Error::NodeMissing {
        path: PathBuf::from("nvidia-modprobe"),
        hint: format!(
            "nvidia-modprobe is not installed (looked in {}); install NVIDIA's nvidia-modprobe package",
            MODPROBE_CANDIDATES.join(", ")
        ),
    })
}

async fn current(host: &dyn Host, path: &Path) -> Result<Option<Vec<u8>>> {
    match host.read_file(path).await {
        Ok(b) => Ok(Some(b)),
        Err(exec_backend::ExecError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::exec(format!("read {}", path.display()), e)),
    }
}

async fn systemctl(
    host: &dyn Host,
    args: &[&str],
    report: &mut PrepareReport,
    run: bool,
) -> Result<()> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    report.commands.push(argv.join(" "));
    if !run {
        return Ok(());
    }
    let cmd = Cmd::new(argv.iter().copied()).timeout(std::time::Duration::from_secs(60));
    host.run(&cmd)
        .await
        .and_then(|o| o.check(&host.name(), &cmd))
        .map_err(|e| Error::exec("systemctl", e))?;
    Ok(())
}

/// Installs (or, with `dry_run`, shows) the boot unit and the optional hookscript. Idempotent:
/// files with the wanted content are left alone and no command runs for them.
pub async fn prepare(host: &dyn Host, opts: &PrepareOptions) -> Result<PrepareReport> {
    let modprobe = find_modprobe(host).await?;
    let mut wanted = vec![(
        PathBuf::from(UNIT_PATH),
        unit_text(&modprobe, opts.modeset),
        0o644,
    )];
    if opts.hookscript {
        wanted.push((
            PathBuf::from(HOOKSCRIPT_PATH),
            hookscript_text(&opts.binary),
            0o755,
        ));
    }
    let mut report = PrepareReport {
        changed: false,
        files: Vec::new(),
        commands: Vec::new(),
    };
    let mut unit_changed = false;
    for (path, content, mode) in wanted {
        let old = current(host, &path).await?;
        let action = match &old {
            Some(b) if b == content.as_bytes() => "unchanged",
            Some(_) => "update",
            None => "create",
        };
        if action != "unchanged" {
            report.changed = true;
            unit_changed |= path == Path::new(UNIT_PATH);
            if !opts.dry_run {
                let w = WriteOptions {
                    expect_previous: Some(old),
                    mode: Some(mode),
                    ..WriteOptions::default()
                };
                host.write_file_atomic(&path, content.as_bytes(), &w)
                    .await
                    .map_err(|e| Error::exec(format!("write {}", path.display()), e))?;
            }
        }
        report.files.push(ManagedFile {
            path,
            content,
            action,
        });
    }
    if unit_changed && opts.systemctl {
        let run = !opts.dry_run;
        systemctl(host, &["daemon-reload"], &mut report, run).await?;
        systemctl(host, &["enable", "--now", UNIT_NAME], &mut report, run).await?;
    }
    Ok(report)
}

/// Undoes [`prepare`]: disables the unit and deletes the files it wrote (only if they are ours).
pub async fn remove(host: &dyn Host, opts: &PrepareOptions) -> Result<PrepareReport> {
    let mut report = PrepareReport {
        changed: false,
        files: Vec::new(),
        commands: Vec::new(),
    };
    let mut unit_present = false;
    for path in [UNIT_PATH, HOOKSCRIPT_PATH] {
        let path = PathBuf::from(path);
        let old = current(host, &path).await?;
        let ours = old
            .as_deref()
            .is_some_and(|b| String::from_utf8_lossy(b).contains("phoenix-gpu host prepare"));
        let action = match (&old, ours) {
            (None, _) => "absent",
            (Some(_), false) => "unchanged",
            (Some(_), true) => "remove",
        };
        if action == "remove" {
            report.changed = true;
            unit_present |= path == Path::new(UNIT_PATH);
        }
        report.files.push(ManagedFile {
            path,
            content: String::new(),
            action,
        });
    }
    let run = !opts.dry_run;
    if unit_present && opts.systemctl {
        systemctl(host, &["disable", "--now", UNIT_NAME], &mut report, run).await?;
    }
    for f in report.files.iter().filter(|f| f.action == "remove") {
        let resolved = host.resolve(&f.path);
        let cmd = Cmd::new([
            std::ffi::OsStr::new("rm"),
            std::ffi::OsStr::new("-f"),
            resolved.as_os_str(),
        ]);
        report.commands.push(format!("rm -f {}", f.path.display()));
        if run {
            host.run(&cmd)
                .await
                .and_then(|o| o.check(&host.name(), &cmd))
                .map_err(|e| Error::exec(format!("remove {}", f.path.display()), e))?;
        }
    }
    if unit_present && opts.systemctl {
        systemctl(host, &["daemon-reload"], &mut report, run).await?;
    }
    Ok(report)
}
