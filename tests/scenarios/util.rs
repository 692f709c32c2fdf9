//! Shared helpers of the scenario tests: a fresh copy of the captured H200 host per test, and
//! running the binary against it.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;

use test_support::HostTree;

/// The example container config (a Proxmox CT with a stale NVIDIA setup).
pub const EXAMPLE_101: &str = include_str!("../../examples/h200x2/etc/pve/lxc/101.conf");

/// The path of the example's config on the host.
pub const CONF_101: &str = "/etc/pve/lxc/101.conf";

/// The node record on the host.
pub const RECORD: &str = "/var/lib/phoenix-gpu/nvidia-record";

/// A node record of a run before the driver upgrade, when nvidia-uvm was 508.
pub const RECORD_508: &str = "major 195 nvidia\nmajor 508 nvidia-uvm\n";

/// A captured host in a temporary directory (its files: [`HostTree`]), and a log folder.
pub struct TestHost {
    pub tree: HostTree,
    pub log: tempfile::TempDir,
}

impl Deref for TestHost {
    type Target = HostTree;

    fn deref(&self) -> &HostTree {
        &self.tree
    }
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts the exit code and one `error:` line containing `needle`.
    pub fn assert_error(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "{self:#?}");
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{self:#?}");
        assert!(
            errors[0].contains(needle),
            "{needle:?} not in {:?}",
            errors[0]
        );
    }
}

impl TestHost {
    /// The H200 host: its captured files, /dev nodes as empty stand-in files from dev.stat,
    /// the example CT 101, and a node record ([`RECORD_508`]) by which the example's
    /// `c 508:*` is a stale NVIDIA major.
    pub fn h200x2() -> TestHost {
        let h = TestHost::h200x2_unrecorded();
        h.put(RECORD, RECORD_508);
        h
    }

    /// The H200 host as `examples/h200x2` has it: no node record, so the example's
    /// `c 508:*` (a major nobody holds now) is of doubtful origin.
    pub fn h200x2_unrecorded() -> TestHost {
        let h = TestHost {
            tree: HostTree::h200x2(),
            log: tempfile::tempdir().unwrap(),
        };
        h.put(CONF_101, EXAMPLE_101);
        h
    }

    /// Makes the host a Proxmox VE 8.2 node.
    pub fn pve_8_2(&self) {
        self.put(
            "/var/lib/dpkg/status",
            "Package: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n",
        );
    }

    /// Gives the host a cgroup v1 devices controller (hybrid layout).
    pub fn v1_devices(&self) {
        self.put(
            "/proc/self/mounts",
            "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\ncgroup /sys/fs/cgroup/devices cgroup rw,nosuid,nodev,noexec,relatime,devices 0 0\n",
        );
    }

    /// Every file under the root with its bytes (to prove nothing was written).
    pub fn tree(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        self.tree.files()
    }

    /// Backups of a container, sorted.
    pub fn backups(&self, ct: &str) -> Vec<String> {
        let dir = self.path(&format!("/var/lib/phoenix-gpu/backups/{ct}"));
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Runs `phoenix-gpu --root <host> ARGS` with a clean environment.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Like [`TestHost::run`] with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoenix-gpu"));
        cmd.arg("--root")
            .arg(self.root())
            .arg("--log-file")
            .arg(self.log.path().join("phoenix-gpu.log"))
            .args(args);
        without_tool_env(&mut cmd);
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The log file's text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path().join("phoenix-gpu.log")).unwrap_or_default()
    }
}

/// The example's main section up to its stale NVIDIA lines.
pub fn head_101() -> &'static str {
    let i = EXAMPLE_101
        .find("lxc.cgroup2.devices.allow: c 195:*")
        .unwrap();
    &EXAMPLE_101[..i]
}

/// The example's snapshot section, from the blank line before it.
pub fn snapshot_101() -> &'static str {
    let i = EXAMPLE_101.find("\n[before-driver-upgrade]").unwrap();
    &EXAMPLE_101[i..]
}

/// Takes out of `cmd`'s environment the variables the tool reads as defaults (the
/// orchestrator's `GPU_ASSIGNMENT`, `NVIDIA_*`), so the machine's own cannot leak into a test.
pub fn without_tool_env(cmd: &mut Command) {
    for v in [
        "GPU_ASSIGNMENT",
        "NVIDIA_DRIVER_VERSION",
        "NVIDIA_REPO_URL",
        "NVIDIA_RUNFILE_URL",
    ] {
        cmd.env_remove(v);
    }
}
