//! A private `sshd` on 127.0.0.1 for the tests that need one (root, `openssh-server`,
//! `openssh-client`; see [`crate::require::sshd_available`]).
//!
//! [`Sshd::start`] generates a host key and a client key, writes an `sshd_config` (127.0.0.1, a
//! free port, root login with that key only, `StrictModes no`) and runs
//! `/usr/sbin/sshd -f CFG -D -e` as a child, killed on drop. It needs `/run/sshd` (created
//! here). Its sessions run with `SHLVL=1`, so the login shell (bash) counts itself nested and
//! does not source root's `~/.bashrc`: a node's stock one does nothing, a developer's may run
//! something slow or locking (`pyenv init` waits up to a minute on a stale rehash lock) in
//! every session.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::run_ok;

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
                 UsePAM no\nMaxSessions 50\nMaxStartups 50\nLogLevel ERROR\nSetEnv SHLVL=1\n",
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
