//! `host prepare` against a host tree under a temporary root.

use std::fs;
use std::path::{Path, PathBuf};

use exec_backend::LocalHost;
use gpu_core::host_prepare::{self, PrepareOptions, HOOKSCRIPT_PATH, UNIT_PATH};

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
