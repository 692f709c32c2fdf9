//! Shared helpers for the tests that need root, LXC or sshd.
//!
//! What this host needs for a throwaway LXC container (Debian 12, hybrid cgroup layout with the
//! devices controller on cgroup v1):
//! - packages `lxc` (tools), `lxc-templates` (the `busybox` template), `busybox-static` (the
//!   template copies the host's busybox into the rootfs);
//! - `lxc-create -t busybox -n NAME -P LXCPATH`, with LXCPATH a temporary directory;
//! - in its config: `lxc.net.0.type = empty` (no bridge needed; the template copies the host's
//!   default `veth`/`lxcbr0` network) and `lxc.apparmor.profile = unconfined` (harmless where
//!   AppArmor is absent, as here; where it is present the generated profile would need
//!   `apparmor_parser`). No cgroup setting is needed: the template's defaults start on both
//!   the hybrid layout here and on pure cgroup v2.
//!
//! Container names are unique per process and call (`pgt-PID-N`) so that tests run in
//! parallel; each container lives in its own temporary LXCPATH and [`TestCt`] destroys it
//! when dropped, even when the test panics.
//!
//! sshd: [`Sshd::start`] generates a host key and a client key, writes an `sshd_config`
//! (127.0.0.1, a free port, root login with that key only, `StrictModes no`) and runs
//! `/usr/sbin/sshd -f CFG -D -e` as a child, killed on drop. It needs `/run/sshd` (created
//! here) and the `openssh-server` and `openssh-client` packages.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when running as root; otherwise prints why the test is skipped.
pub fn is_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: {test} needs root (CI runs as root)");
    }
    root
}

/// True when every program exists; otherwise prints why the test is skipped.
pub fn have(test: &str, programs: &[&str]) -> bool {
    for p in programs {
        let found = if p.starts_with('/') {
            Path::new(p).exists()
        } else {
            std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).any(|d| d.join(p).exists()))
                .unwrap_or(false)
                || ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                    .iter()
                    .any(|d| Path::new(d).join(p).exists())
        };
        if !found {
            let why = format!("{test} needs {p} (install lxc, lxc-templates, busybox-static, openssh-server, openssh-client)");
            // CI installs everything (scripts/install-test-deps.sh): there a missing tool is a
            // broken install, never a skip.
            assert!(std::env::var_os("CI").is_none(), "CI is set but {why}");
            eprintln!("skipped: {why}");
            return false;
        }
    }
    true
}

/// Root plus the LXC tools and the busybox template.
pub fn lxc_available(test: &str) -> bool {
    is_root(test)
        && have(
            test,
            &[
                "lxc-create",
                "lxc-start",
                "lxc-attach",
                "lxc-info",
                "lxc-stop",
                "lxc-destroy",
                "lxc-wait",
                "busybox",
                "/usr/share/lxc/templates/lxc-busybox",
            ],
        )
}

/// Root plus sshd and ssh.
pub fn sshd_available(test: &str) -> bool {
    is_root(test) && have(test, &["/usr/sbin/sshd", "ssh", "ssh-keygen"])
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique container name: `pgt-PID-N`.
pub fn unique_name() -> String {
    format!(
        "pgt-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A busybox container in its own temporary LXCPATH, destroyed on drop.
pub struct TestCt {
    /// The container name.
    pub name: String,
    /// The LXCPATH (a temporary directory, or the caller's with [`TestCt::create_at`]).
    pub lxcpath: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl TestCt {
    /// Creates the container (stopped).
    pub fn create() -> TestCt {
        let dir = tempfile::Builder::new()
            .prefix("pgt-lxc")
            .tempdir()
            .unwrap();
        let mut ct = TestCt::create_at(dir.path(), &unique_name());
        ct._dir = Some(dir);
        ct
    }

    /// Creates the container `name` (stopped) under `lxcpath`, a directory the caller keeps
    /// (for tests that need a given name or an LXC path inside a host tree).
    pub fn create_at(lxcpath: &Path, name: &str) -> TestCt {
        let ct = TestCt {
            name: name.to_owned(),
            lxcpath: lxcpath.to_owned(),
            _dir: None,
        };
        run_ok(
            Command::new("lxc-create")
                .args(["-t", "busybox", "-n", name, "-P"])
                .arg(&ct.lxcpath),
        );
        let config = ct.lxcpath.join(name).join("config");
        let text = std::fs::read_to_string(&config).unwrap();
        let mut kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let key = l.split('=').next().unwrap_or("").trim();
                !key.starts_with("lxc.net.") && key != "lxc.apparmor.profile"
            })
            .collect();
        kept.push("lxc.net.0.type = empty");
        kept.push("lxc.apparmor.profile = unconfined");
        std::fs::write(&config, kept.join("\n") + "\n").unwrap();
        ct
    }

    /// Creates and starts the container, waiting for RUNNING.
    pub fn start_new() -> TestCt {
        let ct = TestCt::create();
        ct.start();
        ct
    }

    /// Starts the container, waiting for RUNNING.
    pub fn start(&self) {
        let ct = self;
        run_ok(
            Command::new("lxc-start")
                .args(["-n", &ct.name, "-d", "-P"])
                .arg(&ct.lxcpath),
        );
        run_ok(
            Command::new("lxc-wait")
                .args(["-n", &ct.name, "-s", "RUNNING", "-t", "30", "-P"])
                .arg(&ct.lxcpath),
        );
    }

    /// The container's rootfs on the host.
    pub fn rootfs(&self) -> PathBuf {
        self.lxcpath.join(&self.name).join("rootfs")
    }
}

impl Drop for TestCt {
    fn drop(&mut self) {
        let _ = Command::new("lxc-stop")
            .args(["-k", "-n", &self.name, "-P"])
            .arg(&self.lxcpath)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("lxc-destroy")
            .args(["-f", "-n", &self.name, "-P"])
            .arg(&self.lxcpath)
            .stderr(Stdio::null())
            .status();
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private sshd on 127.0.0.1, killed on drop.
pub struct Sshd {
    /// The temporary directory with keys and configs.
    pub dir: tempfile::TempDir,
    /// The port.
    pub port: u16,
    /// The client's private key.
    pub client_key: PathBuf,
    /// A known_hosts file holding the server's host key.
    pub known_hosts: PathBuf,
    /// An empty ssh_config for the client (so the user's own config is not read).
    pub ssh_config: PathBuf,
    child: Child,
}

impl Sshd {
    /// Generates keys, writes the config and starts sshd; returns once it accepts connections.
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// Like [`Sshd::start`] with `extra` lines at the top of `sshd_config` (sshd keeps the
    /// first value of a keyword, so they override the defaults here, e.g. `MaxSessions 2\n`).
    /// A refused session is logged as `no more sessions` ([`Sshd::log`]).
    pub fn start_with(extra: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("pgt-sshd")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let client_key = d.join("client_ed25519");
        for key in [&host_key, &client_key] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgt", "-f"])
                    .arg(key),
            );
        }
        let authorized = d.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 PermitRootLogin yes\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nAuthorizedKeysFile {}\nStrictModes no\n\
                 UsePAM no\nMaxSessions 50\nMaxStartups 50\nLogLevel ERROR\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        let pubkey = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut parts = pubkey.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {key}\n")).unwrap();
        let ssh_config = d.join("ssh_config");
        std::fs::write(&ssh_config, "").unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .args(["-D", "-e"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut sshd = Sshd {
            dir,
            port,
            client_key,
            known_hosts,
            ssh_config,
            child,
        };
        sshd.wait_listening();
        sshd
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let err =
                    std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
                panic!("sshd exited with {status}: {err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen on port {} within 15 s", self.port);
    }

    /// Client options: strict host key checking against [`Sshd::known_hosts`], the client key,
    /// an empty ssh_config.
    pub fn options(&self) -> exec_backend::SshOptions {
        let mut o = exec_backend::SshOptions::default();
        o.user_known_hosts_file = Some(self.known_hosts.clone());
        o.identity_file = Some(self.client_key.clone());
        o.config_file = Some(self.ssh_config.clone());
        o
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Drops every open connection as a network failure would, and leaves the listener
    /// running: kills the processes serving connections (sshd forks one per connection, in
    /// its own session) and what they run.
    pub fn drop_connections(&self) {
        let mut doomed = children(self.child.id());
        let mut i = 0;
        while i < doomed.len() {
            doomed.extend(children(doomed[i]));
            i += 1;
        }
        for pid in doomed {
            // SAFETY: kill(2) has no memory preconditions; these pids are this sshd's tree.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }

    /// Stops sshd as a node going down would: the listener and every open connection (killing
    /// the listener alone would leave the connections running).
    pub fn stop(&mut self) {
        // Stopped first, so that it forks no new connection while they are killed.
        // SAFETY: kill(2) has no memory preconditions; the pid is our child's.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGSTOP);
        }
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The destination string: `ssh://root@127.0.0.1:PORT`.
    pub fn dest(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids whose parent is `pid` (from `/proc/*/stat`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            if let Ok(child) = e.file_name().to_string_lossy().parse() {
                out.push(child);
            }
        }
    }
    out
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// True while `pid` exists and is not a zombie.
pub fn proc_alive(proc_root: &Path, pid: u32) -> bool {
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

pub mod suite;
