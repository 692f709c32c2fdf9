//! A fake GPU host with a real LXC container: the captured H200 host as a tree whose
//! `/dev/nvidia*` are real character devices made with `mknod` (195:0, 195:1, 195:255, 238:0,
//! 238:1 and the two nvidia-caps nodes: no driver holds them, so opening one fails with ENXIO
//! where the device cgroup allows it and EPERM where it does not), with a copy of this
//! machine's `/proc/self/mounts`, so the inventory sees this machine's cgroup layout and the
//! tool writes the allow key LXC honours here (`HostTree::h200x2_with_device_nodes`). The
//! container is a busybox container at `TREE/var/lib/lxc/NAME` (`--lxcpath /var/lib/lxc` under
//! `--root`), privileged or unprivileged (ids mapped to 100000.., as Proxmox VE does), with the
//! network off, AppArmor unconfined and a default-deny device cgroup (`deny = a` and the usual
//! allow list, as LXC's `common.conf`), and is destroyed on drop. The binary runs with
//! `--root TREE --bind-under-root`, so the config's mount entries bind the tree's nodes.
//!
//! Needs root, `lxc` (with `lxc-templates`), `busybox-static` and `mknod`, and for an
//! unprivileged container root's subordinate ids; otherwise each test says it is skipped (and
//! fails when `CI` is set).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use test_support::{have, run_ok, unique_name, HostTree, TestCt};

/// A default-deny device cgroup, as LXC's `common.conf` writes it, for both cgroup versions.
pub const DEVICE_RULES: &[&str] = &[
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

/// What opening a node whose device the cgroup allows (and no driver holds) says.
pub const ENXIO: &str = "No such device or address";
/// What opening a node whose device the cgroup refuses says.
pub const EPERM: &str = "Operation not permitted";

/// Root, LXC with the busybox template, and `mknod`; with `unprivileged`, root's subordinate
/// ids too.
pub fn available(test: &str, unprivileged: bool) -> bool {
    let lxc = if unprivileged {
        test_support::unprivileged_lxc_available(test)
    } else {
        test_support::lxc_available(test)
    };
    lxc && have(test, &["mknod"])
}

/// A fake GPU host tree with a busybox container in it; the container is destroyed on drop,
/// then the tree.
pub struct FakeGpuHost {
    pub ct: TestCt,
    pub tree: HostTree,
}

impl FakeGpuHost {
    /// The tree and a stopped privileged container with a default-deny device cgroup.
    pub fn new() -> FakeGpuHost {
        FakeGpuHost::in_tree(HostTree::h200x2_with_device_nodes(), false)
    }

    /// The same with an unprivileged container.
    pub fn unprivileged() -> FakeGpuHost {
        FakeGpuHost::in_tree(HostTree::h200x2_with_device_nodes(), true)
    }

    /// A stopped container in `tree` (made with `HostTree::h200x2_with_device_nodes`, perhaps
    /// changed).
    pub fn in_tree(tree: HostTree, unprivileged: bool) -> FakeGpuHost {
        // The container's root (uid 100000 when unprivileged) must reach its rootfs and the
        // nodes it binds under the tree.
        test_support::chmod(tree.root(), 0o755);
        let lxcpath = tree.path("/var/lib/lxc");
        std::fs::create_dir_all(&lxcpath).unwrap();
        let name = unique_name();
        let ct = if unprivileged {
            TestCt::create_unprivileged_at(&lxcpath, &name)
        } else {
            TestCt::create_at(&lxcpath, &name)
        };
        let mut config = ct.config();
        for version in ["cgroup", "cgroup2"] {
            for rule in DEVICE_RULES {
                config.push_str(&format!("lxc.{version}.devices.{rule}\n"));
            }
        }
        std::fs::write(ct.config_path(), config).unwrap();
        FakeGpuHost { ct, tree }
    }

    pub fn root(&self) -> &Path {
        self.tree.root()
    }

    /// The real LXC path: `/var/lib/lxc` under the tree.
    pub fn lxcpath(&self) -> PathBuf {
        self.ct.lxcpath.clone()
    }

    pub fn config(&self) -> PathBuf {
        self.ct.config_path()
    }

    pub fn lxc(&self, tool: &str, rest: &[&str]) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["-n", &self.ct.name, "-P"])
            .arg(self.lxcpath())
            .args(rest);
        cmd
    }

    pub fn start(&self) {
        run_ok(&mut self.lxc("lxc-start", &["-d"]));
        run_ok(&mut self.lxc("lxc-wait", &["-s", "RUNNING", "-t", "30"]));
    }

    pub fn restart(&self) {
        run_ok(&mut self.lxc("lxc-stop", &["-t", "20"]));
        self.start();
    }

    /// The container's init process on the host.
    pub fn init_pid(&self) -> u32 {
        run_ok(&mut self.lxc("lxc-info", &["-pH"]))
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs a command in the container.
    pub fn attach(&self, argv: &[&str]) -> Output {
        let mut cmd = self.lxc("lxc-attach", &["--clear-env", "--"]);
        cmd.args(argv);
        cmd.output().unwrap()
    }

    /// `sh -c script` in the container: exit code, stdout then stderr.
    pub fn sh(&self, script: &str) -> (i32, String) {
        self.ct.sh(script)
    }

    /// Starts `sh -c script` in the background inside and returns its pid there (it outlives
    /// the attach: its output goes nowhere).
    pub fn spawn(&self, script: &str) -> u32 {
        let (code, out) = self.sh(&format!(
            "sh -c '{script}' </dev/null >/dev/null 2>&1 & echo $!"
        ));
        assert_eq!(code, 0, "{out}");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid: {out}"))
    }

    /// Whether the process `pid` (inside) still runs.
    pub fn alive(&self, pid: u32) -> bool {
        self.sh(&format!("kill -0 {pid}")).0 == 0
    }

    /// `stat -c '%F %t:%T' PATH` inside: `None` when the path does not exist.
    pub fn stat_in(&self, path: &str) -> Option<String> {
        let out = self.attach(&["stat", "-c", "%F %t:%T", path]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `stat -c '%a %u %g' PATH` inside: mode, owner and group as the container sees them.
    pub fn owner_in(&self, path: &str) -> String {
        let out = self.attach(&["stat", "-c", "%a %u %g", path]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// What opening `path` for reading inside gives: the error of `head -c0`, or `opened`.
    pub fn open_in(&self, path: &str) -> String {
        let out = self.attach(&["head", "-c0", path]);
        if out.status.success() {
            "opened".into()
        } else {
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        }
    }

    /// What opening the device `major:minor` inside gives, whatever nodes the container has:
    /// the host makes a node for it on the container's root filesystem (`/probe-MAJ-MIN`),
    /// and the container opens it; the device cgroup decides.
    pub fn open_device(&self, major: u32, minor: u32) -> String {
        let name = format!("probe-{major}-{minor}");
        let path = format!("/proc/{}/root/{name}", self.init_pid());
        let _ = std::fs::remove_file(&path);
        run_ok(
            Command::new("mknod")
                .args(["-m", "666", &path, "c"])
                .args([major.to_string(), minor.to_string()]),
        );
        let got = self.open_in(&format!("/{name}"));
        std::fs::remove_file(&path).unwrap();
        got
    }

    /// `phoenix-gpu apply NAME --target lxc --lxcpath /var/lib/lxc --root TREE
    /// --bind-under-root --strategy none --json ARGS...`: exit code and report.
    pub fn apply(&self, args: &[&str]) -> (i32, Value) {
        self.tool("apply", args)
    }

    /// The same with another subcommand (`verify`).
    pub fn tool(&self, sub: &str, args: &[&str]) -> (i32, Value) {
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
            .args(["--bind-under-root", "--strategy", "none", "--json"])
            .args(args)
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
        // Every report follows the JSON schema (docs/schema), live changes included.
        let (schemas, idx) = crate::json::schema();
        if let Err(e) = schemas.validate(&json, idx) {
            panic!("the report does not follow the schema: {e:#}\n{json:#}");
        }
        (out.status.code().unwrap_or(-1), json)
    }

    /// Whether this machine's devices controller is cgroup v1.
    pub fn v1() -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "devices")
        })
    }

    /// The allow key this machine's LXC honours (what the tool must have written).
    pub fn allow_key() -> &'static str {
        if FakeGpuHost::v1() {
            "lxc.cgroup.devices.allow"
        } else {
            "lxc.cgroup2.devices.allow"
        }
    }
}
