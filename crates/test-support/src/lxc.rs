//! Real LXC containers for the tests that need them (root, `lxc`; see [`crate::require`]).
//!
//! What this needs on the machine: the `lxc` tools, and for busybox containers `lxc-templates`
//! (the `busybox` template) and `busybox-static` (the template copies the host's busybox into
//! the rootfs). A busybox container's config gets `lxc.net.0.type = empty` (no bridge needed;
//! the template copies the host's default network) and `lxc.apparmor.profile = unconfined`
//! (harmless where AppArmor is absent; where it is present the generated profile would need
//! `apparmor_parser`). No cgroup setting is needed: the template's defaults start on the
//! hybrid layout and on pure cgroup v2.
//!
//! Names are unique per process and call ([`unique_name`]) so that tests run in parallel; each
//! container lives in its own temporary LXC path unless the test gives one, and is destroyed
//! when its [`TestCt`] drops, even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::run_ok;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container name unique to this process and call: `pgt-PID-N`.
pub fn unique_name() -> String {
    format!(
        "pgt-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A real LXC container, stopped and destroyed on drop.
pub struct TestCt {
    /// The container's name.
    pub name: String,
    /// Its LXC path (a temporary directory, or the caller's).
    pub lxcpath: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestCt {
    /// A stopped busybox container in a private temporary LXC path.
    pub fn create() -> TestCt {
        let dir = tempfile::Builder::new()
            .prefix("pgt-lxc")
            .tempdir()
            .unwrap();
        let mut ct = TestCt::create_at(dir.path(), &unique_name());
        ct._tmp = Some(dir);
        ct
    }

    /// A stopped busybox container `name` under `lxcpath`, a directory the caller keeps (for
    /// tests that need a given name or an LXC path inside a host tree).
    pub fn create_at(lxcpath: &Path, name: &str) -> TestCt {
        TestCt::create_with(lxcpath, name, "")
    }

    /// An unprivileged busybox container `name` under `lxcpath` (the caller keeps it): root
    /// inside is uid and gid 100000 on the host, as Proxmox VE maps them
    /// (`lxc.idmap = u 0 100000 65536`, the same for groups; the template shifts the rootfs).
    /// Needs root's subordinate ids ([`crate::unprivileged_lxc_available`]), and every
    /// directory above `lxcpath` searchable by uid 100000.
    pub fn create_unprivileged_at(lxcpath: &Path, name: &str) -> TestCt {
        TestCt::create_with(
            lxcpath,
            name,
            "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n",
        )
    }

    /// A busybox container with `conf` (config lines) given to `lxc-create -f`.
    fn create_with(lxcpath: &Path, name: &str, conf: &str) -> TestCt {
        let ct = TestCt {
            name: name.to_owned(),
            lxcpath: lxcpath.to_owned(),
            _tmp: None,
        };
        let extra = tempfile::NamedTempFile::new().unwrap();
        let mut create = Command::new("lxc-create");
        create
            .args(["-t", "busybox", "-n", name, "-P"])
            .arg(&ct.lxcpath);
        if !conf.is_empty() {
            std::fs::write(extra.path(), conf).unwrap();
            create.arg("-f").arg(extra.path());
        }
        run_ok(&mut create);
        let text = ct.config();
        let mut kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let key = l.split('=').next().unwrap_or("").trim();
                !key.starts_with("lxc.net.") && key != "lxc.apparmor.profile"
            })
            .collect();
        kept.push("lxc.net.0.type = empty");
        kept.push("lxc.apparmor.profile = unconfined");
        std::fs::write(ct.config_path(), kept.join("\n") + "\n").unwrap();
        ct
    }

    /// A stopped container `name` under `lxcpath` whose rootfs is a copy (`cp -a`) of
    /// `rootfs` at `<lxcpath>/<name>/rootfs`, with `config` as its whole config.
    pub fn from_rootfs(lxcpath: &Path, name: &str, rootfs: &Path, config: &str) -> TestCt {
        let ct = TestCt {
            name: name.to_owned(),
            lxcpath: lxcpath.to_owned(),
            _tmp: None,
        };
        std::fs::create_dir_all(ct.dir()).unwrap();
        run_ok(Command::new("cp").arg("-a").arg(rootfs).arg(ct.rootfs()));
        std::fs::write(ct.config_path(), config).unwrap();
        ct
    }

    /// A busybox container, started.
    pub fn start_new() -> TestCt {
        let ct = TestCt::create();
        ct.start();
        ct
    }

    /// `<lxcpath>/<name>`.
    pub fn dir(&self) -> PathBuf {
        self.lxcpath.join(&self.name)
    }

    /// The rootfs on the host.
    pub fn rootfs(&self) -> PathBuf {
        self.dir().join("rootfs")
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("config")
    }

    /// The config's text.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap()
    }

    fn lxc(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["-n", &self.name, "-P"]).arg(&self.lxcpath);
        cmd
    }

    /// Starts it and waits for RUNNING (30 s at most).
    pub fn start(&self) {
        run_ok(self.lxc("lxc-start").arg("-d"));
        run_ok(self.lxc("lxc-wait").args(["-s", "RUNNING", "-t", "30"]));
    }

    /// Stops it (killed at once).
    pub fn stop(&self) {
        run_ok(self.lxc("lxc-stop").arg("-k"));
    }

    /// Runs `sh -c script` inside with a clean environment; returns the exit code and
    /// stdout followed by stderr.
    pub fn sh(&self, script: &str) -> (i32, String) {
        let out = self
            .lxc("lxc-attach")
            .args([
                "--clear-env",
                "--set-var",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap();
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), s)
    }
}

impl Drop for TestCt {
    fn drop(&mut self) {
        let _ = self
            .lxc("lxc-stop")
            .arg("-k")
            .stderr(Stdio::null())
            .status();
        let _ = self
            .lxc("lxc-destroy")
            .arg("-f")
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}
