//! `host prepare`: make the host create the NVIDIA nodes at boot, before Proxmox starts guests.
//!
//! `/dev/nvidia-uvm` (and `-uvm-tools`, and `nvidia-modeset`) appear only when something loads
//! the module and creates them; CUDA does it lazily. A container whose config passes them and is
//! started at boot then starts without them (raw mode: a GPU-less container; dev mode: a start
//! failure). The unit runs `nvidia-modprobe` ordered before `pve-guests.service` and
//! `lxc.service`. Optionally a Proxmox hookscript runs `phoenix-gpu check` at pre-start.
//!
//! All or nothing: every precondition (nvidia-modprobe, the folders the files go into, no
//! container still naming the hookscript when it is removed) is checked before the first
//! change, and a failure after it puts back what was written.

use std::path::{Path, PathBuf};

use exec_backend::{Cmd, ExecError, FileKind, Host, WriteOptions};
use serde::Serialize;

use crate::error::{Error, PrepareFolder, Result};

/// The folder of local systemd units.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The unit's path.
pub const UNIT_PATH: &str = "/etc/systemd/system/phoenix-gpu-nodes.service";
/// The unit's name.
pub const UNIT_NAME: &str = "phoenix-gpu-nodes.service";
/// The `local` storage's snippets folder (it exists when the storage has the `snippets`
/// content type).
pub const HOOKSCRIPT_DIR: &str = "/var/lib/vz/snippets";
/// Where the hookscript goes (the `local` storage's snippets folder).
pub const HOOKSCRIPT_PATH: &str = "/var/lib/vz/snippets/phoenix-gpu-hook.sh";
/// The hookscript's volume id for `pct set CTID --hookscript`.
pub const HOOKSCRIPT_VOLID: &str = "local:snippets/phoenix-gpu-hook.sh";
/// Where Proxmox VE keeps the configs of this node's containers.
const PVE_LXC_DIR: &str = "/etc/pve/lxc";

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
    /// [`remove`]: delete the hookscript even while containers name it (they then fail to
    /// start until their `hookscript:` line goes).
    pub force: bool,
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
    /// Containers whose config still names the hookscript ([`remove`] with `force`: they will
    /// not start until the line goes).
    pub hookscript_users: Vec<String>,
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
) -> std::result::Result<(), ExecError> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    report.commands.push(argv.join(" "));
    if !run {
        return Ok(());
    }
    let cmd = Cmd::new(argv.iter().copied()).timeout(std::time::Duration::from_secs(60));
    host.run(&cmd)
        .await
        .and_then(|o| o.check(&host.name(), &cmd))?;
    Ok(())
}

/// The folder `dir` must exist (as a folder) before anything is written into it.
async fn require_folder(host: &dyn Host, dir: &str, which: PrepareFolder) -> Result<()> {
    let meta = host
        .stat(Path::new(dir))
        .await
        .map_err(|e| Error::exec(format!("stat {dir}"), e))?;
    match meta {
        Some(m) if matches!(m.kind, FileKind::Dir | FileKind::Symlink) => Ok(()),
        _ => Err(Error::PrepareFolderMissing {
            dir: PathBuf::from(dir),
            which,
        }),
    }
}

/// `rm -f PATH` on the host.
async fn rm(host: &dyn Host, path: &Path) -> std::result::Result<(), ExecError> {
    let resolved = host.resolve(path);
    let cmd = Cmd::new([
        std::ffi::OsStr::new("rm"),
        std::ffi::OsStr::new("-f"),
        resolved.as_os_str(),
    ]);
    host.run(&cmd)
        .await
        .and_then(|o| o.check(&host.name(), &cmd))
        .map(|_| ())
}

/// One file written by [`prepare`]: what was there before, to put it back.
struct Written {
    path: PathBuf,
    previous: Option<Vec<u8>>,
    mode: u32,
}

/// Puts back what `written` changed (newest first): the previous bytes, or no file. Returns
/// what was undone and what could not be, for the error.
async fn undo(host: &dyn Host, written: &[Written]) -> (Vec<String>, Vec<String>) {
    let (mut undone, mut left) = (Vec::new(), Vec::new());
    for w in written.iter().rev() {
        let r = match &w.previous {
            Some(old) => {
                let opts = WriteOptions {
                    mode: Some(w.mode),
                    ..WriteOptions::default()
                };
                host.write_file_atomic(&w.path, old, &opts)
                    .await
                    .map(|()| format!("put back the previous {}", w.path.display()))
            }
            None => rm(host, &w.path)
                .await
                .map(|()| format!("removed {}", w.path.display())),
        };
        match r {
            Ok(done) => undone.push(done),
            Err(e) => left.push(format!("{} ({e})", w.path.display())),
        }
    }
    (undone, left)
}

/// Installs (or, with `dry_run`, shows) the boot unit and the optional hookscript. Idempotent:
/// files with the wanted content are left alone and no command runs for them. Every
/// precondition is checked before the first write; when a write or `systemctl` fails, the
/// files written are put back ([`Error::PrepareFailed`] says what was undone).
pub async fn prepare(host: &dyn Host, opts: &PrepareOptions) -> Result<PrepareReport> {
    let modprobe = find_modprobe(host).await?;
    let mut wanted = vec![(
        PathBuf::from(UNIT_PATH),
        unit_text(&modprobe, opts.modeset),
        0o644,
    )];
    require_folder(host, UNIT_DIR, PrepareFolder::SystemdUnits).await?;
    if opts.hookscript {
        require_folder(host, HOOKSCRIPT_DIR, PrepareFolder::Snippets).await?;
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
        hookscript_users: Vec::new(),
    };
    let mut writes: Vec<(PathBuf, String, Option<Vec<u8>>, u32)> = Vec::new();
    for (path, content, mode) in wanted {
        let old = current(host, &path).await?;
        let action = match &old {
            Some(b) if b == content.as_bytes() => "unchanged",
            Some(_) => "update",
            None => "create",
        };
        if action != "unchanged" {
            report.changed = true;
            writes.push((path.clone(), content.clone(), old, mode));
        }
        report.files.push(ManagedFile {
            path,
            content,
            action,
        });
    }
    let unit_changed = writes.iter().any(|(p, ..)| p == Path::new(UNIT_PATH));
    let run_systemctl = unit_changed && opts.systemctl;
    if opts.dry_run {
        if run_systemctl {
            for args in SYSTEMCTL_ENABLE {
                report
                    .commands
                    .push(format!("systemctl {}", args.join(" ")));
            }
        }
        return Ok(report);
    }
    let mut written: Vec<Written> = Vec::new();
    let mut failure = None;
    for (path, content, previous, mode) in writes {
        let w = WriteOptions {
            expect_previous: Some(previous.clone()),
            mode: Some(mode),
            ..WriteOptions::default()
        };
        match host.write_file_atomic(&path, content.as_bytes(), &w).await {
            Ok(()) => written.push(Written {
                path,
                previous,
                mode,
            }),
            Err(e) => {
                failure = Some((format!("writing {}", path.display()), e));
                break;
            }
        }
    }
    let mut ran = Vec::new();
    if failure.is_none() && run_systemctl {
        for args in SYSTEMCTL_ENABLE {
            ran.push(args);
            if let Err(e) = systemctl(host, args, &mut report, true).await {
                failure = Some((format!("systemctl {}", args.join(" ")), e));
                break;
            }
        }
    }
    let Some((doing, source)) = failure else {
        return Ok(report);
    };
    // Undo, best effort: the error that stopped the run is the one to report. A new unit that
    // `enable --now` may have enabled before failing is disabled while its file is there.
    let new_unit = written
        .iter()
        .any(|w| w.path == Path::new(UNIT_PATH) && w.previous.is_none());
    if new_unit && ran.len() == SYSTEMCTL_ENABLE.len() {
        let _ = systemctl(host, &["disable", UNIT_NAME], &mut report, true).await;
    }
    let (undone, not_undone) = undo(host, &written).await;
    if !ran.is_empty() {
        // systemd read the unit that is now put back: let it read it again.
        let _ = systemctl(host, &["daemon-reload"], &mut report, true).await;
    }
    Err(Error::PrepareFailed {
        doing,
        undone,
        not_undone,
        source,
    })
}

/// What `systemctl` runs after the unit changed.
const SYSTEMCTL_ENABLE: [&[&str]; 2] = [&["daemon-reload"], &["enable", "--now", UNIT_NAME]];

/// The containers of this node whose config names the hookscript (`hookscript:` in the main
/// section, the one a start uses), in id order. None on a host without `/etc/pve/lxc`.
pub async fn hookscript_users(host: &dyn Host) -> Result<Vec<String>> {
    let entries = match host.read_dir(Path::new(PVE_LXC_DIR)).await {
        Ok(e) => e,
        Err(ExecError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(Error::exec(format!("list {PVE_LXC_DIR}"), e)),
    };
    let mut users: Vec<(u64, String)> = Vec::new();
    for entry in entries {
        let name = entry.name.to_string_lossy();
        let Some(id) = name.strip_suffix(".conf") else {
            continue;
        };
        let Ok(n) = id.parse::<u64>() else {
            continue;
        };
        let path = Path::new(PVE_LXC_DIR).join(&*name);
        let Some(bytes) = current(host, &path).await? else {
            continue;
        };
        let doc = lxc_conf::Document::parse(&bytes, lxc_conf::Dialect::Pve);
        if doc
            .main()
            .get("hookscript")
            .is_some_and(|v| v.trim() == HOOKSCRIPT_VOLID)
        {
            users.push((n, id.to_owned()));
        }
    }
    users.sort();
    Ok(users.into_iter().map(|(_, id)| id).collect())
}

/// Undoes [`prepare`]: disables the unit and deletes the files it wrote (only if they are
/// ours). The hookscript stays while containers name it ([`Error::HookscriptInUse`]: Proxmox
/// refuses to start a container whose hookscript is missing), unless `force`.
pub async fn remove(host: &dyn Host, opts: &PrepareOptions) -> Result<PrepareReport> {
    let mut report = PrepareReport {
        changed: false,
        files: Vec::new(),
        commands: Vec::new(),
        hookscript_users: Vec::new(),
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
    let hook_goes = report
        .files
        .iter()
        .any(|f| f.action == "remove" && f.path == Path::new(HOOKSCRIPT_PATH));
    if hook_goes {
        report.hookscript_users = hookscript_users(host).await?;
        if !report.hookscript_users.is_empty() && !opts.force {
            return Err(Error::HookscriptInUse {
                volid: HOOKSCRIPT_VOLID.to_owned(),
                cts: report.hookscript_users,
            });
        }
    }
    let run = !opts.dry_run;
    let exec = |what: &str, e| Error::exec(what.to_owned(), e);
    if unit_present && opts.systemctl {
        systemctl(host, &["disable", "--now", UNIT_NAME], &mut report, run)
            .await
            .map_err(|e| exec("systemctl", e))?;
    }
    for f in report.files.iter().filter(|f| f.action == "remove") {
        report.commands.push(format!("rm -f {}", f.path.display()));
    }
    if run {
        for f in report.files.iter().filter(|f| f.action == "remove") {
            rm(host, &f.path)
                .await
                .map_err(|e| exec(&format!("remove {}", f.path.display()), e))?;
        }
    }
    if unit_present && opts.systemctl {
        systemctl(host, &["daemon-reload"], &mut report, run)
            .await
            .map_err(|e| exec("systemctl", e))?;
    }
    Ok(report)
}
