//! A real LXC container given a fake GPU host's device nodes: `apply --target lxc --root TREE
//! --bind-under-root --strategy none` against a running busybox container.
//!
//! The host tree is a copy of the captured H200 host whose `/dev/nvidia*` are real character
//! devices made with `mknod` (195:0, 195:1, 195:255, 238:0, 238:1 and the two nvidia-caps
//! nodes: no driver holds them, so opening one fails with ENXIO where the device cgroup allows
//! it and EPERM where it does not), with a copy of this machine's `/proc/self/mounts`, so the
//! inventory sees this machine's cgroup layout and the tool writes the allow key LXC honours
//! here (`HostTree::h200x2_with_device_nodes`). The container lives at `TREE/var/lib/lxc/NAME`
//! (`--lxcpath /var/lib/lxc` under `--root`), with the network off, AppArmor unconfined and a
//! default-deny device cgroup (`deny = a` and the usual allow list, as LXC's `common.conf`),
//! and is destroyed on drop.
//!
//! Needs root, `lxc` (with `lxc-templates`), `busybox-static` and `mknod`; otherwise each test
//! says it is skipped (and fails when `CI` is set).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use test_support::{have, run_ok, unique_name, HostTree, TestCt};

/// A default-deny device cgroup, as LXC's `common.conf` writes it, for both cgroup versions.
const DEVICE_RULES: &[&str] = &[
    "deny = a",
    "allow = c *:* m",
    "allow = b *:* m",
    "allow = c 1:3 rwm",
    "allow = c 1:5 rwm",
    "allow = c 1:7 rwm",
    "allow = c 1:8 rwm",
    "allow = c 1:9 rwm",
    "allow = c 5:0 rwm",
    "allow = c 5:1 rwm",
    "allow = c 5:2 rwm",
    "allow = c 136:* rwm",
    "allow = c 10:229 rwm",
];

/// Root, LXC with the busybox template, and `mknod`.
fn lxc_available(test: &str) -> bool {
    test_support::lxc_available(test) && have(test, &["mknod"])
}

/// A fake GPU host tree with a busybox container in it; the container is destroyed on drop,
/// then the tree.
struct FakeGpuHost {
    ct: TestCt,
    tree: HostTree,
}

impl FakeGpuHost {
    /// The tree and a stopped container with a default-deny device cgroup.
    fn new() -> FakeGpuHost {
        let tree = HostTree::h200x2_with_device_nodes();
        let lxcpath = tree.path("/var/lib/lxc");
        std::fs::create_dir_all(&lxcpath).unwrap();
        let ct = TestCt::create_at(&lxcpath, &unique_name());
        let mut config = ct.config();
        for version in ["cgroup", "cgroup2"] {
            for rule in DEVICE_RULES {
                config.push_str(&format!("lxc.{version}.devices.{rule}\n"));
            }
        }
        std::fs::write(ct.config_path(), config).unwrap();
        FakeGpuHost { ct, tree }
    }

    fn root(&self) -> &Path {
        self.tree.root()
    }

    /// The real LXC path: `/var/lib/lxc` under the tree.
    fn lxcpath(&self) -> PathBuf {
        self.ct.lxcpath.clone()
    }

    fn config(&self) -> PathBuf {
        self.ct.config_path()
    }

    fn lxc(&self, tool: &str, rest: &[&str]) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["-n", &self.ct.name, "-P"])
            .arg(self.lxcpath())
            .args(rest);
        cmd
    }

    fn start(&self) {
        run_ok(&mut self.lxc("lxc-start", &["-d"]));
        run_ok(&mut self.lxc("lxc-wait", &["-s", "RUNNING", "-t", "30"]));
    }

    fn restart(&self) {
        run_ok(&mut self.lxc("lxc-stop", &["-t", "20"]));
        self.start();
    }

    /// Runs a command in the container.
    fn attach(&self, argv: &[&str]) -> Output {
        let mut cmd = self.lxc("lxc-attach", &["--clear-env", "--"]);
        cmd.args(argv);
        cmd.output().unwrap()
    }

    /// `stat -c '%F %t:%T' PATH` inside: `None` when the path does not exist.
    fn stat_in(&self, path: &str) -> Option<String> {
        let out = self.attach(&["stat", "-c", "%F %t:%T", path]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// What opening `path` for reading inside gives: the error of `head -c0`, or `opened`.
    fn open_in(&self, path: &str) -> String {
        let out = self.attach(&["head", "-c0", path]);
        if out.status.success() {
            "opened".into()
        } else {
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        }
    }

    /// `phoenix-gpu apply NAME --target lxc --lxcpath /var/lib/lxc --root TREE
    /// --bind-under-root --strategy none --gpus 1 --json`: exit code and report.
    fn apply(&self) -> (i32, Value) {
        self.tool("apply")
    }

    /// The same with another subcommand (`verify`).
    fn tool(&self, sub: &str) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_phoenix-gpu"))
            .args([
                sub,
                &self.ct.name,
                "--target",
                "lxc",
                "--lxcpath",
                "/var/lib/lxc",
            ])
            .arg("--root")
            .arg(self.root())
            .args([
                "--bind-under-root",
                "--strategy",
                "none",
                "--gpus",
                "1",
                "--json",
            ])
            .arg("--log-file")
            .arg(self.root().join("phoenix-gpu.log"))
            .env_remove("GPU_ASSIGNMENT")
            .env_remove("NVIDIA_DRIVER_VERSION")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }

    /// The allow key this machine's LXC honours (what the tool must have written).
    fn allow_key() -> &'static str {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let v1 = mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "devices")
        });
        if v1 {
            "lxc.cgroup.devices.allow"
        } else {
            "lxc.cgroup2.devices.allow"
        }
    }
}

const ENXIO: &str = "No such device or address";
const EPERM: &str = "Operation not permitted";

#[test]
fn real_lxc_apply_strategy_none_with_mknod_nodes() {
    if !lxc_available("real_lxc_apply_strategy_none_with_mknod_nodes") {
        return;
    }
    let h = FakeGpuHost::new();
    h.start();
    assert_eq!(h.stat_in("/dev/nvidia1"), None, "no GPU before apply");
    let key = FakeGpuHost::allow_key();
    let root = h.root().display().to_string();

    // First apply: config written, container restarted once, verified inside.
    let (code, r) = h.apply();
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["changed"], true, "{r:#}");
    assert_eq!(r["counters"]["restarts"], 1, "{r:#}");
    assert_eq!(r["counters"]["config_writes"], 1, "{r:#}");
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
    let (code, r) = h.apply();
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
    let (code, r) = h.tool("verify");
    assert_eq!(code, 7, "{r:#}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("/dev/nvidia1 (195:1) cannot be opened in the container (EPERM: the device cgroup refuses it): the config has no allow line for c 195:1"),
        "{r:#}"
    );
    let (code, r) = h.apply();
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
