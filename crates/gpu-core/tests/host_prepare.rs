//! `host prepare` against a host tree under a temporary root.

use std::fs;
use std::path::{Path, PathBuf};

use exec_backend::{ExitStatus, LocalHost, Output};
use gpu_core::host_prepare::{self, PrepareOptions, HOOKSCRIPT_PATH, UNIT_PATH};
use gpu_core::{Error, ErrorKind, PrepareFolder};
use test_support::FsHost;

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in ["etc/systemd/system", "var/lib/vz/snippets", "usr/bin"] {
        fs::create_dir_all(t.path().join(d)).unwrap();
    }
    fs::write(t.path().join("usr/bin/nvidia-modprobe"), b"stand-in").unwrap();
    t
}

fn opts(dry_run: bool) -> PrepareOptions {
    PrepareOptions {
        modeset: true,
        hookscript: true,
        binary: PathBuf::from("/usr/bin/phoenix-gpu"),
        systemctl: false,
        dry_run,
        force: false,
    }
}

fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

#[tokio::test]
async fn installs_the_unit_and_hookscript_once() {
    let t = tree();
    let host = LocalHost::with_root(t.path());
    let first = host_prepare::prepare(&host, &opts(false)).await.unwrap();
    assert!(first.changed);
    let unit = fs::read_to_string(under(t.path(), UNIT_PATH)).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/nvidia-modprobe -u -c0\n"),
        "{unit}"
    );
    assert!(
        unit.contains("ExecStart=/usr/bin/nvidia-modprobe -m\n"),
        "{unit}"
    );
    assert!(unit.contains("Before=pve-guests.service"), "{unit}");
    let hook = under(t.path(), HOOKSCRIPT_PATH);
    let text = fs::read_to_string(&hook).unwrap();
    assert!(
        text.contains("/usr/bin/phoenix-gpu check \"$vmid\""),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&hook).unwrap().permissions().mode() & 0o777,
        0o755
    );

    let mtime = fs::metadata(under(t.path(), UNIT_PATH))
        .unwrap()
        .modified()
        .unwrap();
    let second = host_prepare::prepare(&host, &opts(false)).await.unwrap();
    assert!(!second.changed, "a second prepare must change nothing");
    assert!(second.files.iter().all(|f| f.action == "unchanged"));
    assert_eq!(
        fs::metadata(under(t.path(), UNIT_PATH))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[tokio::test]
async fn dry_run_shows_and_writes_nothing() {
    let t = tree();
    let host = LocalHost::with_root(t.path());
    let r = host_prepare::prepare(&host, &opts(true)).await.unwrap();
    assert!(r.changed);
    assert_eq!(r.files[0].action, "create");
    assert!(r.files[0].content.contains("nvidia-modprobe -u -c0"));
    assert!(!under(t.path(), UNIT_PATH).exists());
    assert!(!under(t.path(), HOOKSCRIPT_PATH).exists());
}

#[tokio::test]
async fn remove_undoes_prepare_and_leaves_foreign_files() {
    let t = tree();
    let host = LocalHost::with_root(t.path());
    host_prepare::prepare(&host, &opts(false)).await.unwrap();
    let r = host_prepare::remove(&host, &opts(false)).await.unwrap();
    assert!(r.changed);
    assert!(!under(t.path(), UNIT_PATH).exists());
    assert!(!under(t.path(), HOOKSCRIPT_PATH).exists());
    let again = host_prepare::remove(&host, &opts(false)).await.unwrap();
    assert!(!again.changed);

    // A file of the same name that the tool did not write stays.
    fs::write(
        under(t.path(), UNIT_PATH),
        b"[Unit]\nDescription=someone else's\n",
    )
    .unwrap();
    let r = host_prepare::remove(&host, &opts(false)).await.unwrap();
    assert!(!r.changed);
    assert!(under(t.path(), UNIT_PATH).exists());
}

#[tokio::test]
async fn missing_nvidia_modprobe_is_a_host_precondition() {
    let t = tree();
    fs::remove_file(t.path().join("usr/bin/nvidia-modprobe")).unwrap();
    let host = LocalHost::with_root(t.path());
    let e = host_prepare::prepare(&host, &opts(false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), gpu_core::ErrorKind::HostPrecondition);
    assert!(e.to_string().contains("nvidia-modprobe"), "{e}");
    assert!(!under(t.path(), UNIT_PATH).exists());
}

/// Every file under `root`, with its bytes.
fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A missing folder is found before anything is written, and named: the unit is not written
/// when the hookscript's folder is missing (before, it was, and the error said the unit
/// "does not exist").
#[tokio::test]
async fn a_missing_folder_stops_it_before_any_write() {
    for (dir, which) in [
        ("etc/systemd/system", PrepareFolder::SystemdUnits),
        ("var/lib/vz/snippets", PrepareFolder::Snippets),
    ] {
        let t = tree();
        fs::remove_dir(t.path().join(dir)).unwrap();
        let before = files(t.path());
        let host = LocalHost::with_root(t.path());
        let e = host_prepare::prepare(&host, &opts(false))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HostPrecondition, "{e}");
        assert!(
            matches!(&e, Error::PrepareFolderMissing { which: w, .. } if *w == which),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("/{dir} does not exist")), "{msg}");
        assert!(msg.contains("nothing was written"), "{msg}");
        assert!(!msg.contains("service does not exist"), "{msg}");
        assert_eq!(files(t.path()), before, "{dir}: something was written");
    }
}

/// `systemctl enable` fails after both files were written: both are put back (the unit to its
/// previous text, the new hookscript removed), so a second run does everything again.
#[tokio::test]
async fn a_failure_after_the_writes_puts_everything_back() {
    let t = tree();
    let old_unit = "# Written by phoenix-gpu host prepare\n[Unit]\nDescription=old\n";
    fs::write(under(t.path(), UNIT_PATH), old_unit).unwrap();
    let host = FsHost::new(t.path());
    host.answer(&["systemctl", "daemon-reload"], Output::ok(""));
    host.answer(
        &["systemctl", "enable", "--now", "phoenix-gpu-nodes.service"],
        Output {
            status: ExitStatus::Code(1),
            stdout: Vec::new(),
            stderr: b"Failed to enable unit: Unit file phoenix-gpu-nodes.service is masked."
                .to_vec(),
        },
    );
    let o = PrepareOptions {
        systemctl: true,
        ..opts(false)
    };
    let e = host_prepare::prepare(&host, &o).await.unwrap_err();
    let msg = gpu_core::chain(&e);
    assert!(
        msg.starts_with("systemctl enable --now phoenix-gpu-nodes.service failed; nothing is left changed (removed /var/lib/vz/snippets/phoenix-gpu-hook.sh, put back the previous /etc/systemd/system/phoenix-gpu-nodes.service)"),
        "{msg}"
    );
    assert!(msg.contains("is masked"), "{msg}");
    assert_eq!(
        fs::read_to_string(under(t.path(), UNIT_PATH)).unwrap(),
        old_unit
    );
    assert!(!under(t.path(), HOOKSCRIPT_PATH).exists());
    let reloads = host
        .commands
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.join(" ") == "systemctl daemon-reload")
        .count();
    assert_eq!(reloads, 2, "systemd reads the unit put back");

    // A new unit that `enable --now` may have enabled before failing is disabled before its
    // file goes.
    let t = tree();
    let host = FsHost::new(t.path());
    host.answer(&["systemctl", "daemon-reload"], Output::ok(""));
    let e = host_prepare::prepare(&host, &o).await.unwrap_err();
    assert!(
        gpu_core::chain(&e).contains("nothing is left changed (removed /var/lib/vz/snippets/phoenix-gpu-hook.sh, removed /etc/systemd/system/phoenix-gpu-nodes.service)"),
        "{e}"
    );
    let cmds: Vec<String> = host
        .commands
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.join(" "))
        .collect();
    let disable = cmds
        .iter()
        .position(|c| c == "systemctl disable phoenix-gpu-nodes.service")
        .unwrap_or_else(|| panic!("{cmds:#?}"));
    let rm = cmds
        .iter()
        .position(|c| c.starts_with("rm -f") && c.ends_with("phoenix-gpu-nodes.service"))
        .unwrap_or_else(|| panic!("{cmds:#?}"));
    assert!(disable < rm, "{cmds:#?}");
    assert!(!under(t.path(), UNIT_PATH).exists());
}

const HOOKED: &str = "arch: amd64\nhookscript: local:snippets/phoenix-gpu-hook.sh\nhostname: a\n";

/// `--remove` keeps the hookscript while a container's config names it (Proxmox would refuse
/// to start that container), lists them, and deletes it only when forced. A snapshot section
/// naming it does not count: a start reads the main section.
#[tokio::test]
async fn remove_refuses_while_containers_name_the_hookscript() {
    let t = tree();
    let lxc = t.path().join("etc/pve/lxc");
    fs::create_dir_all(&lxc).unwrap();
    fs::write(lxc.join("1000.conf"), HOOKED).unwrap();
    fs::write(lxc.join("200.conf"), HOOKED).unwrap();
    fs::write(
        lxc.join("300.conf"),
        "arch: amd64\n\n[snap]\nhookscript: local:snippets/phoenix-gpu-hook.sh\n",
    )
    .unwrap();
    fs::write(
        lxc.join("400.conf"),
        "hookscript: local:snippets/other.sh\n",
    )
    .unwrap();
    let host = LocalHost::with_root(t.path());
    host_prepare::prepare(&host, &opts(false)).await.unwrap();
    let before = files(t.path());

    let e = host_prepare::remove(&host, &opts(false)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostPrecondition);
    match &e {
        Error::HookscriptInUse { cts, volid } => {
            assert_eq!(cts, &["200", "1000"]);
            assert_eq!(volid, "local:snippets/phoenix-gpu-hook.sh");
        }
        e => panic!("{e:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("container(s) 200, 1000 still name the hookscript"));
    assert_eq!(files(t.path()), before, "nothing was removed");

    let forced = PrepareOptions {
        force: true,
        ..opts(false)
    };
    let r = host_prepare::remove(&host, &forced).await.unwrap();
    assert_eq!(r.hookscript_users, ["200", "1000"]);
    assert!(!under(t.path(), HOOKSCRIPT_PATH).exists());
    assert!(!under(t.path(), UNIT_PATH).exists());

    // Without the hookscript installed, the containers' lines are not this command's business.
    let r = host_prepare::remove(&host, &opts(false)).await.unwrap();
    assert!(!r.changed);
}
