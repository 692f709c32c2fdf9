//! A real LXC container given a fake GPU host's device nodes (`gpu_host`): `apply --target lxc
//! --root TREE --bind-under-root --strategy none` against a running busybox container, with a
//! restart asked for (`--restart`); `live.rs` has the same without a restart.

use std::process::Command;

use crate::gpu_host::{available, FakeGpuHost, ENXIO, EPERM};

#[test]
fn real_lxc_apply_strategy_none_with_mknod_nodes() {
    if !available("real_lxc_apply_strategy_none_with_mknod_nodes", false) {
        return;
    }
    let h = FakeGpuHost::new();
    h.start();
    assert_eq!(h.stat_in("/dev/nvidia1"), None, "no GPU before apply");
    let key = FakeGpuHost::allow_key();
    let root = h.root().display().to_string();

    // First apply: config written, container restarted once (as asked), verified inside.
    let (code, r) = h.apply(&["--gpus", "1", "--restart"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["changed"], true, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 1, "{r:#}");
    assert_eq!(r["counters"]["config_writes"], 1, "{r:#}");
    assert_eq!(r["activation"]["by"], "restart", "{r:#}");
    assert_eq!(r["activation"]["reason"], "asked", "{r:#}");
    let config = std::fs::read(h.config()).unwrap();
    let text = String::from_utf8_lossy(&config).into_owned();
    for line in [
        format!("{key} = c 195:1 rwm"),
        format!("{key} = c 195:255 rwm"),
        format!("{key} = c 238:* rwm"),
        format!("lxc.mount.entry = {root}/dev/nvidia1 dev/nvidia1 none bind,optional,create=file"),
        format!(
            "lxc.mount.entry = {root}/dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file"
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(!text.contains("nvidia0"), "{text}");
    assert_eq!(
        h.stat_in("/dev/nvidia1").as_deref(),
        Some("character special file c3:1")
    );
    assert_eq!(
        h.stat_in("/dev/nvidiactl").as_deref(),
        Some("character special file c3:ff")
    );
    assert_eq!(h.stat_in("/dev/nvidia0"), None, "GPU 0 is not assigned");
    // The device cgroup lets the container open the node; no driver holds it: ENXIO.
    let opened = h.open_in("/dev/nvidia1");
    assert!(opened.contains(ENXIO), "{opened}");

    // Second apply: nothing changes, one probe exec, no restart.
    let (code, r) = h.apply(&["--gpus", "1", "--restart"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["changed"], false, "{r:#}");
    assert!(
        r["counters"]["container_execs"].as_u64().unwrap() <= 1,
        "{r:#}"
    );
    assert_eq!(r["counters"]["restarts"], 0, "{r:#}");
    assert_eq!(r["counters"]["config_writes"], 0, "{r:#}");
    assert_eq!(std::fs::read(h.config()).unwrap(), config);

    // The allow lines make the difference: without the GPU's rule the default-deny cgroup
    // refuses the open (EPERM); apply puts the rule back and the open reaches the device.
    let rule = format!("{key} = c 195:1 rwm");
    let without: String = text
        .lines()
        .filter(|l| *l != rule)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(h.config(), &without).unwrap();
    h.restart();
    assert_eq!(
        h.stat_in("/dev/nvidia1").as_deref(),
        Some("character special file c3:1")
    );
    let denied = h.open_in("/dev/nvidia1");
    assert!(denied.contains(EPERM), "{denied}");
    // verify opens every passed node with gpu-check, which the first apply put into the
    // container; this busybox container needs glibc to run it (the host's, copied in).
    let rootfs = h.ct.rootfs();
    for (from, to) in [
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        (
            "/lib/x86_64-linux-gnu/libdl.so.2",
            "lib/x86_64-linux-gnu/libdl.so.2",
        ),
    ] {
        let to = rootfs.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
    let (code, r) = h.tool("verify", &["--gpus", "1"]);
    assert_eq!(code, 7, "{r:#}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("/dev/nvidia1 (195:1) cannot be opened in the container (EPERM: the device cgroup refuses it): the config has no allow line for c 195:1"),
        "{r:#}"
    );
    let (code, r) = h.apply(&["--gpus", "1", "--restart"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["changed"], true, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 1, "{r:#}");
    assert!(String::from_utf8_lossy(&std::fs::read(h.config()).unwrap())
        .lines()
        .any(|l| l == rule));
    let opened = h.open_in("/dev/nvidia1");
    assert!(opened.contains(ENXIO), "{opened}");
}

#[test]
fn bind_under_root_needs_root() {
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix-gpu"))
        .args([
            "plan",
            "ct1",
            "--target",
            "lxc",
            "--gpus",
            "1",
            "--bind-under-root",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--root"), "{err}");
}
