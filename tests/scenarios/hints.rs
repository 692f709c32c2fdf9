//! What a person reads when something is off: hints that help, headings that say what
//! happened, and `host prepare`'s checks, through the binary against the captured host.

use crate::util::{Run, TestHost, CONF_101, EXAMPLE_101};

fn hint_of(r: &Run) -> String {
    let hints: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("hint: "))
        .collect();
    assert_eq!(hints.len(), 1, "{r:#?}");
    hints[0].to_owned()
}

/// On a host without the driver, `inventory`'s hint says what to do about the driver, not to
/// run `phoenix-gpu inventory` (before: "`phoenix-gpu inventory` shows what this host has").
#[test]
fn inventory_without_a_driver_says_to_install_it() {
    let h = TestHost::h200x2();
    std::fs::remove_file(h.path("/sys/module/nvidia/version")).unwrap();
    std::fs::remove_file(h.path("/proc/driver/nvidia/version")).unwrap();
    let r = h.run(&["inventory"]);
    r.assert_error(8, "the NVIDIA kernel module is not loaded");
    let hint = hint_of(&r);
    assert!(!hint.contains("phoenix-gpu inventory"), "{hint}");
    assert!(
        hint.contains("install the NVIDIA driver on the host"),
        "{hint}"
    );
    // Other host preconditions of other commands still point at inventory.
    let r = TestHost::h200x2().run(&["plan", "101", "--gpus", "7"]);
    assert!(hint_of(&r).contains("`phoenix-gpu inventory`"), "{r:#?}");
}

/// A missing orchestrator config is about the path, not about "accepted values"; a bad value
/// names the command's help.
#[test]
fn a_missing_config_file_hint_is_about_the_path() {
    let h = TestHost::h200x2();
    let r = h.run(&["apply", "--all", "--phoenix-config", "/nonexistent.json"]);
    r.assert_error(2, "cannot read the orchestrator config /nonexistent.json");
    let hint = hint_of(&r);
    assert!(!hint.contains("accepted values"), "{hint}");
    assert!(
        hint.contains("path of the orchestrator's phoenix_lxc_configs.json"),
        "{hint}"
    );
    let r = h.run(&["apply", "101", "--gpus", "0,0"]);
    assert!(
        hint_of(&r).contains("`phoenix-gpu help apply` lists the accepted values"),
        "{r:#?}"
    );
}

/// The diff `apply` prints is headed `(planned)` only when it was not written.
#[test]
fn the_diff_says_whether_it_was_written() {
    let h = TestHost::h200x2();
    let dry = h.run(&["apply", "101", "--gpus", "1", "--config-only", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:#?}");
    assert!(
        dry.stdout.starts_with(
            "--- /etc/pve/lxc/101.conf (current)\n+++ /etc/pve/lxc/101.conf (planned)\n"
        ),
        "{dry:#?}"
    );
    let r = h.run(&["apply", "101", "--gpus", "1", "--config-only"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(
        r.stdout.starts_with(
            "--- /etc/pve/lxc/101.conf (before)\n+++ /etc/pve/lxc/101.conf (written)\n"
        ),
        "{r:#?}"
    );
    assert!(!r.stdout.contains("(planned)"), "{r:#?}");
    // remove, likewise.
    let r = h.run(&["remove", "101"]);
    assert!(
        r.stdout.contains("+++ /etc/pve/lxc/101.conf (written)\n"),
        "{r:#?}"
    );
}

fn preparable() -> TestHost {
    let h = TestHost::h200x2();
    h.put("/usr/bin/nvidia-modprobe", "stand-in");
    std::fs::create_dir_all(h.path("/etc/systemd/system")).unwrap();
    std::fs::create_dir_all(h.path("/var/lib/vz/snippets")).unwrap();
    h
}

/// A missing folder stops `host prepare` before it writes anything, names the folder, and for
/// the snippets folder tells how Proxmox's local storage gets it (before: exit 1, "...service
/// does not exist", sometimes after writing the unit).
#[test]
fn host_prepare_checks_its_folders_first() {
    for (dir, words) in [
        (
            "/var/lib/vz/snippets",
            "pvesm set local --content <its types>,snippets",
        ),
        ("/etc/systemd/system", "on a host without systemd"),
    ] {
        let h = preparable();
        std::fs::remove_dir(h.path(dir)).unwrap();
        let before = h.tree();
        let r = h.run(&["host", "prepare", "--hookscript"]);
        r.assert_error(8, &format!("{dir} does not exist on this host"));
        assert!(r.stderr.contains("nothing was written"), "{r:#?}");
        assert!(!r.stderr.contains("service does not exist"), "{r:#?}");
        assert!(hint_of(&r).contains(words), "{r:#?}");
        assert_eq!(h.tree(), before, "{dir}: something was written");
    }
}

/// `--remove` keeps the hookscript while a container names it (Proxmox would not start it),
/// deletes it with `--force`, and never says to enable the unit it just removed.
#[test]
fn host_prepare_remove_keeps_a_hookscript_in_use() {
    let h = preparable();
    let r = h.run(&["host", "prepare", "--hookscript"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("enable the unit"), "{r:#?}");
    h.put(
        CONF_101,
        EXAMPLE_101.replacen(
            "hostname:",
            "hookscript: local:snippets/phoenix-gpu-hook.sh\nhostname:",
            1,
        ),
    );
    let before = h.tree();
    let r = h.run(&["host", "prepare", "--remove"]);
    r.assert_error(8, "container(s) 101 still name the hookscript");
    assert!(
        hint_of(&r).contains("pct set CTID --delete hookscript"),
        "{r:#?}"
    );
    assert_eq!(h.tree(), before);

    let r = h.run(&["host", "prepare", "--remove", "--force"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(
        r.stderr
            .contains("warning: container(s) 101 still name the hookscript"),
        "{r:#?}"
    );
    assert!(!r.stdout.contains("enable"), "{r:#?}");
    assert!(r.stdout.contains("systemctl disable --now"), "{r:#?}");
    assert!(!h.path("/var/lib/vz/snippets/phoenix-gpu-hook.sh").exists());
    assert!(!h
        .path("/etc/systemd/system/phoenix-gpu-nodes.service")
        .exists());
}
