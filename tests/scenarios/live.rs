//! Live changes (issue 16): `apply` gives and takes GPUs of a running container without
//! restarting it, through the binary against a real LXC container on the fake GPU host
//! (`gpu_host`), privileged and unprivileged.
//!
//! What these tests prove on this machine, whose devices controller is cgroup v1 (LXC writes
//! the container's `devices.allow` and `devices.deny`): the container's init process and a
//! process started before the change live through it; the device cgroup lets the new nodes
//! open (ENXIO: allowed, no driver) and refuses what was taken away (EPERM, also through a
//! node the test makes itself, so the cgroup is what refuses, not a missing node); the nodes
//! inside are the host's numbers, mode and owner (for an unprivileged container, its
//! `/dev` tmpfs belongs to its user namespace: the nodes are bind mounts of nodes the host made
//! on its root filesystem, as a start binds the config's entries); a converged re-run is one
//! exec; a held device is not taken away unless forced, and the holder is named.
//!
//! What only the GPU run covers (`scripts/gpu-e2e.sh`, cgroup v2, docs/e2e.md): LXC's BPF
//! device program on a cgroup v2 host taking the same `lxc-cgroup` rules, and a CUDA context
//! working on a GPU given live to a container that runs a CUDA process.

use std::process::Command;

use serde_json::Value;
use test_support::{run_ok, HostTree};

use crate::gpu_host::{available, FakeGpuHost, ENXIO, EPERM};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a live change: exit 0, no restart, the config written once, `activation.by` live.
fn assert_live(code: i32, r: &Value) {
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 0, "{r:#}");
    assert_eq!(r["counters"]["config_writes"], 1, "{r:#}");
    assert_eq!(r["activation"]["by"], "live", "{r:#}");
    let restart = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "restart")
        .unwrap();
    assert_eq!(restart["status"], "changed", "{r:#}");
    assert!(
        restart["detail"]
            .as_str()
            .unwrap()
            .starts_with("changed live, no restart"),
        "{r:#}"
    );
}

fn live_gpu_changes(test: &str, unprivileged: bool) {
    if !available(test, unprivileged) {
        return;
    }
    let h = if unprivileged {
        FakeGpuHost::unprivileged()
    } else {
        FakeGpuHost::new()
    };
    h.start();
    let init = h.init_pid();
    let worker = h.spawn("exec sleep 1000");
    // The host's nodes are 0666 root:root; the host's root is nobody in an unprivileged
    // container, as it is for the nodes a start binds.
    let owner = if unprivileged {
        "666 65534 65534"
    } else {
        "666 0 0"
    };

    // A first GPU for a container that has none.
    let (code, r) = h.apply(&["--gpus", "0"]);
    assert_live(code, &r);
    let mut added = strings(&r["activation"]["added"]);
    added.sort();
    assert_eq!(
        added,
        [
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia0",
            "/dev/nvidiactl"
        ],
        "{r:#}"
    );
    assert_eq!(
        h.stat_in("/dev/nvidia0").as_deref(),
        Some("character special file c3:0")
    );
    assert_eq!(h.owner_in("/dev/nvidia0"), owner);
    assert!(h.open_in("/dev/nvidia0").contains(ENXIO));
    assert!(h.open_in("/dev/nvidia-uvm").contains(ENXIO));
    // Nothing of the staging is left on the container's root filesystem.
    let (_, listing) = h.sh("ls -a /");
    assert!(!listing.contains(".phoenix-gpu"), "{listing}");

    // Another GPU: GPU 1 given, GPU 0 taken away.
    let (code, r) = h.apply(&["--gpus", "1"]);
    assert_live(code, &r);
    assert_eq!(
        strings(&r["activation"]["added"]),
        ["/dev/nvidia1"],
        "{r:#}"
    );
    assert_eq!(
        strings(&r["activation"]["removed"]),
        ["/dev/nvidia0"],
        "{r:#}"
    );
    assert_eq!(
        strings(&r["activation"]["denied"]),
        ["c 195:0 rwm"],
        "{r:#}"
    );
    assert_eq!(h.stat_in("/dev/nvidia0"), None, "GPU 0's node is gone");
    assert!(h.open_in("/dev/nvidia1").contains(ENXIO));
    assert_eq!(h.owner_in("/dev/nvidia1"), owner);
    let refused = h.open_device(195, 0);
    assert!(refused.contains(EPERM), "GPU 0 is refused: {refused}");
    assert!(h.open_device(195, 1).contains(ENXIO));

    // Converged: one exec (the probe), nothing written, no restart.
    let (code, r) = h.apply(&["--gpus", "1"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["changed"], false, "{r:#}");
    assert_eq!(r["counters"]["container_execs"], 1, "{r:#}");
    assert_eq!(r["counters"]["config_writes"], 0, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 0, "{r:#}");
    assert_eq!(r["activation"], Value::Null, "{r:#}");

    // Both, then none.
    let (code, r) = h.apply(&["--gpus", "0,1"]);
    assert_live(code, &r);
    assert_eq!(
        strings(&r["activation"]["added"]),
        ["/dev/nvidia0"],
        "{r:#}"
    );
    assert!(h.open_in("/dev/nvidia0").contains(ENXIO));
    assert!(h.open_in("/dev/nvidia1").contains(ENXIO));
    let (code, r) = h.apply(&["--gpus", "none"]);
    assert_live(code, &r);
    let mut removed = strings(&r["activation"]["removed"]);
    removed.sort();
    assert_eq!(
        removed,
        [
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia0",
            "/dev/nvidia1",
            "/dev/nvidiactl"
        ],
        "{r:#}"
    );
    for (major, minor) in [(195, 0), (195, 1), (195, 255), (238, 0)] {
        let got = h.open_device(major, minor);
        assert!(got.contains(EPERM), "{major}:{minor}: {got}");
    }
    let (_, dev) = h.sh("ls /dev");
    assert!(!dev.contains("nvidia"), "{dev}");

    // Through all of it: the same init process, and the process started before still runs.
    assert_eq!(h.init_pid(), init);
    assert!(h.alive(worker));

    // A restart when asked for: a new init, and the restart says why.
    let (code, r) = h.apply(&["--gpus", "1", "--restart"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 1, "{r:#}");
    assert_eq!(r["activation"]["by"], "restart", "{r:#}");
    assert_eq!(r["activation"]["reason"], "asked", "{r:#}");
    assert_ne!(h.init_pid(), init);
    assert!(h.open_in("/dev/nvidia1").contains(ENXIO));
}

#[test]
fn live_gpu_changes_privileged() {
    live_gpu_changes("live_gpu_changes_privileged", false);
}

#[test]
fn live_gpu_changes_unprivileged() {
    live_gpu_changes("live_gpu_changes_unprivileged", true);
}

/// A fake GPU host whose GPU 1 is a device this machine has a driver for, so a process can
/// hold it open: the tree's `/proc/devices` names major 10 (misc) `nvidia`, GPU 1's device
/// minor is 200 (`/dev/net/tun`'s), and `/dev/nvidia200` is `c 10:200`. (The tool then owns
/// the container's own `c 10:229` rule too, as it owns every rule of an NVIDIA major.)
fn tree_with_an_openable_gpu() -> HostTree {
    let tree = HostTree::h200x2_with_device_nodes();
    let devices: String = tree
        .get("/proc/devices")
        .lines()
        .filter(|l| !l.ends_with(" nvidiactl"))
        .map(|l| match l.trim() {
            "195 nvidia" => " 10 nvidia\n".to_owned(),
            _ => format!("{l}\n"),
        })
        .collect();
    tree.put("/proc/devices", devices);
    let info = "/proc/driver/nvidia/gpus/0000:00:07.0/information";
    let text = tree
        .get(info)
        .replace("Device Minor: \t 1", "Device Minor: \t 200");
    assert!(text.contains("Device Minor: \t 200"), "{text}");
    tree.put(info, text);
    for (name, minor) in [("nvidia200", "200"), ("nvidiactl", "255")] {
        let p = tree.path(&format!("/dev/{name}"));
        let _ = std::fs::remove_file(&p);
        run_ok(
            Command::new("mknod")
                .args(["-m", "666"])
                .arg(&p)
                .args(["c", "10", minor]),
        );
    }
    tree
}

#[test]
fn live_removal_of_a_held_gpu_is_refused_unless_forced() {
    let test = "live_removal_of_a_held_gpu_is_refused_unless_forced";
    if !available(test, true) {
        return;
    }
    let misc = std::fs::read_to_string("/proc/misc").unwrap_or_default();
    if !misc.lines().any(|l| l.trim() == "200 tun") {
        test_support::cannot_run(test, "the tun driver (/proc/misc: 200 tun)");
        return;
    }
    let h = FakeGpuHost::in_tree(tree_with_an_openable_gpu(), true);
    h.start();
    let (code, r) = h.apply(&["--gpus", "1"]);
    assert_live(code, &r);
    assert_eq!(h.open_in("/dev/nvidia200"), "opened");

    // A process holds the GPU: taking it away is refused, and nothing changes.
    let holder = h.spawn("exec sleep 1000 </dev/nvidia200");
    let config = std::fs::read(h.config()).unwrap();
    let (code, r) = h.apply(&["--gpus", "none"]);
    assert_eq!(code, 9, "{r:#}");
    assert_eq!(r["error"]["kind"], "locked", "{r:#}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("pid {holder} (sleep) holds /dev/nvidia200")),
        "{message}"
    );
    assert_eq!(r["counters"]["config_writes"], 0, "{r:#}");
    assert_eq!(std::fs::read(h.config()).unwrap(), config);
    assert_eq!(h.open_in("/dev/nvidia200"), "opened");

    // Forced: taken away live; the holder keeps running (and its handle), new opens fail.
    let (code, r) = h.apply(&["--gpus", "none", "--force"]);
    assert_live(code, &r);
    assert_eq!(r["activation"]["held"][0]["pid"], holder, "{r:#}");
    assert_eq!(r["activation"]["held"][0]["comm"], "sleep", "{r:#}");
    assert!(h.alive(holder));
    assert_eq!(h.stat_in("/dev/nvidia200"), None);
    assert!(h.open_device(10, 200).contains(EPERM));

    // Given back, held again; once the holder exits, taking it away needs no force.
    let (code, r) = h.apply(&["--gpus", "1"]);
    assert_live(code, &r);
    assert_eq!(h.sh(&format!("kill {holder}")).0, 0);
    let holder = h.spawn("exec sleep 1000 </dev/nvidia200");
    assert_eq!(h.apply(&["--gpus", "none"]).0, 9);
    assert_eq!(h.sh(&format!("kill {holder}; sleep 0.2")).0, 0);
    let (code, r) = h.apply(&["--gpus", "none"]);
    assert_live(code, &r);
    assert_eq!(r["activation"]["held"], serde_json::json!([]), "{r:#}");
}

/// Where a live change cannot work it falls back to a restart and says why: on a cgroup v1
/// host, a process of the container in a nested devices cgroup (as systemd makes them), which
/// an allow written to the container's cgroup would not reach.
#[test]
fn nested_v1_device_cgroups_fall_back_to_a_restart() {
    let test = "nested_v1_device_cgroups_fall_back_to_a_restart";
    if !available(test, false) {
        return;
    }
    if !FakeGpuHost::v1() {
        test_support::cannot_run(test, "a host whose devices controller is cgroup v1");
        return;
    }
    let h = FakeGpuHost::new();
    h.start();
    let init = h.init_pid();
    // The container's devices cgroup, as its init's /proc/PID/cgroup says, and a child of it.
    let cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| l.split_once(":devices:").map(|(_, p)| p.to_owned()))
        .unwrap();
    let child = format!("/sys/fs/cgroup/devices{path}/nested");
    std::fs::create_dir(&child).unwrap();
    h.spawn("exec sleep 1000");
    // Its pid on the host: the one sleep among the init's children.
    let host_pid = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .unwrap()
        .split_whitespace()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .expect("a sleep among the init's children")
        .to_owned();
    std::fs::write(format!("{child}/cgroup.procs"), &host_pid).unwrap();

    let (code, r) = h.apply(&["--gpus", "1"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 1, "{r:#}");
    assert_eq!(r["activation"]["by"], "restart", "{r:#}");
    assert_eq!(r["activation"]["reason"], "nested_cgroup_v1", "{r:#}");
    assert!(h.open_in("/dev/nvidia1").contains(ENXIO));
}
