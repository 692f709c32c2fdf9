//! Shared helpers of the scenario tests: a fresh copy of the captured H200 host per test, and
//! running the binary against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example container config (a Proxmox CT with a stale NVIDIA setup).
pub const EXAMPLE_101: &str = include_str!("../../examples/h200x2/etc/pve/lxc/101.conf");

/// The path of the example's config on the host.
pub const CONF_101: &str = "/etc/pve/lxc/101.conf";

/// `../shared` beside the checkout (a worktree one level deeper also finds it).
pub fn shared() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in ["../../../shared", "../../../../shared"] {
        let p = here.join(up);
        if p.is_dir() {
            return p;
        }
    }
    panic!("../shared not found beside the checkout");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A captured host in a temporary directory.
pub struct TestHost {
    pub dir: tempfile::TempDir,
    pub log: tempfile::TempDir,
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
    /// and the example CT 101.
    pub fn h200x2() -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let fixture = shared().join("fixtures/hosts/h200x2");
        copy_tree(&fixture.join("root"), dir.path());
        let stat = std::fs::read_to_string(fixture.join("dev.stat")).unwrap();
        for line in stat.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let p = dir.path().join(f[0].trim_start_matches('/'));
            if f[1] == "dir" {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b"").unwrap();
            }
        }
        let h = TestHost {
            dir,
            log: tempfile::tempdir().unwrap(),
        };
        h.put(CONF_101, EXAMPLE_101);
        h
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    pub fn put(&self, p: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn get(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap()
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
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.insert(e.path(), std::fs::read(e.path()).unwrap());
                }
            }
        }
        let mut m = BTreeMap::new();
        walk(self.root(), &mut m);
        m
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
        for v in [
            "GPU_ASSIGNMENT",
            "NVIDIA_DRIVER_VERSION",
            "NVIDIA_REPO_URL",
            "NVIDIA_RUNFILE_URL",
        ] {
            cmd.env_remove(v);
        }
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
