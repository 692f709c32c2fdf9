//! A private `sshd` on 127.0.0.1 for the tests that need one (root, `openssh-server`,
//! `openssh-client`; see [`crate::require::sshd_available`]).
//!
//! [`Sshd::start`] generates a host key and a client key, writes an `sshd_config` (127.0.0.1, a
//! free port, root login with that key only, `StrictModes no`) and runs
//! `/usr/sbin/sshd -f CFG -D -e` as a child, killed on drop. It needs `/run/sshd` (created
//! here).

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
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
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
