//! [`Pct`]: Proxmox VE containers through `pct`, run on a [`Host`].
//!
//! The `pct` command lines used (Proxmox VE 7 and 8):
//! - `pct exec CTID -- ARGV...`: runs ARGV in the container; its exit code passes through.
//!   `pct` does not take environment variables, so ARGV is wrapped as
//!   `env -i PATH=... LC_ALL=C K=V... ARGV...` for the explicit environment of [`Cmd`].
//! - `pct push CTID SRC DEST --perms MODE`: copies the host file SRC to DEST (MODE in octal).
//!   Its exit code says nothing about the copy: `pct.pm` runs the copy in a forked worker and
//!   its command table gives `push` no exit handler, so a failed copy prints the worker's error
//!   and still exits 0, and a short write is not even noticed (`File::Copy::copy`'s result is
//!   not checked). Callers verify what arrived (gpu-core checks size and SHA-256 inside the
//!   container before it runs anything it pushed).
//! - `pct status CTID`: prints `status: running` or `status: stopped`.
//! - `pct shutdown CTID --timeout N`: a clean shutdown (`lxc-stop --nokill --timeout N`, the
//!   container's init is asked to power off). Exit 0 once it stopped; when it has not, `pct.pm`'s
//!   `vm_stop` waits up to N+5 s more for it, then the task fails ("container did not stop")
//!   and `pct` exits 255. `pct stop CTID` is "abruptly stop all processes" (`lxc-stop --kill`):
//!   [`ContainerExec::stop`] uses it only after a shutdown that did not end in time.
//! - `pct start CTID`, `pct reboot CTID`.
//! - An unknown CTID: `Configuration file 'nodes/NODE/lxc/CTID.conf' does not exist` on stderr,
//!   exit code 2; this backend turns it into [`ExecError::CtNotFound`].
//!
//! A running Proxmox VE container is the LXC container named by its CTID under `/var/lib/lxc`
//! ([`ContainerExec::lxc_name`]), so the host's `lxc-info -n CTID` and `lxc-cgroup -n CTID`
//! reach it as they reach any LXC container.
//!
//! The states of all containers at once ([`ContainerExec::states`]) are not asked of `pct`:
//! `pct status` and `pct list` both decide "running" by Proxmox's own test
//! (`PVE::LXC::list_active_containers`): the container's LXC command socket
//! `@/var/lib/lxc/CTID/command` is listed in the node's `/proc/net/unix`. One read of that file
//! answers for every container of the node (a `pct list` also starts Perl and reads every
//! config and disk usage).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, instrument};

use crate::lxc::DEFAULT_LXCPATH;
use crate::process::BASE_PATH;
use crate::{
    Cmd, ContainerExec, CtRef, CtState, CtStates, ExecError, ExitStatus, Host, LxcName, Output,
    Stopped,
};

/// Where the node lists its unix sockets (Proxmox's test of a running container reads it).
const PROC_NET_UNIX: &str = "/proc/net/unix";

/// How long `pct start`, `stop` and `reboot` may take by default.
pub const DEFAULT_PCT_TIMEOUT: Duration = Duration::from_secs(120);

/// Proxmox VE containers through `pct` run on `H` (`Pct<LocalHost>` on the node itself,
/// `Pct<SshHost>` for a remote node, `Pct<Arc<dyn Host>>` from the binary).
#[derive(Clone, Debug)]
pub struct Pct<H> {
    host: H,
    program: OsString,
    lifecycle_timeout: Duration,
}

impl<H: Host> Pct<H> {
    /// `pct` from the `PATH` of `host`.
    pub fn new(host: H) -> Pct<H> {
        Pct::with_program(host, "pct")
    }

    /// Another `pct` program (a path on `host`; tests use a stand-in).
    pub fn with_program(host: H, program: impl Into<OsString>) -> Pct<H> {
        Pct {
            host,
            program: program.into(),
            lifecycle_timeout: DEFAULT_PCT_TIMEOUT,
        }
    }

    /// Sets how long `start`, `stop` and `reboot` may take.
    pub fn lifecycle_timeout(mut self, timeout: Duration) -> Pct<H> {
        self.lifecycle_timeout = timeout;
        self
    }

    /// The host `pct` runs on.
    pub fn host(&self) -> &H {
        &self.host
    }

    fn target(&self, ct: &CtRef) -> String {
        format!("CT {ct} on {}", self.host.name())
    }

    /// A CTID is a decimal number.
    fn check_ctid(&self, ct: &CtRef) -> Result<(), ExecError> {
        let id = ct.as_str();
        if !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(ExecError::InvalidCmd {
                target: self.host.name(),
                argv: vec!["pct".into(), id.into()],
                detail: "a Proxmox CTID is a number such as 101".into(),
            })
        }
    }

    fn pct(&self, sub: &str, ct: &CtRef) -> Cmd {
        Cmd::new([self.program.clone(), sub.into(), ct.as_str().into()])
    }

    /// True when `out` is pct's "no such container" answer.
    fn is_not_found(ct: &CtRef, out: &Output) -> bool {
        let stderr = String::from_utf8_lossy(&out.stderr);
        out.status == ExitStatus::Code(2)
            && stderr.contains("Configuration file 'nodes/")
            && stderr.contains(&format!("/lxc/{}.conf' does not exist", ct.as_str()))
    }

    fn not_found(&self, ct: &CtRef) -> ExecError {
        ExecError::CtNotFound {
            target: self.host.name(),
            ct: ct.to_string(),
        }
    }

    /// Runs a pct command, mapping "no such container" and non-zero exits.
    async fn run_checked(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        let out = self.host.run(cmd).await?;
        if Self::is_not_found(ct, &out) {
            return Err(self.not_found(ct));
        }
        out.check(&self.target(ct), cmd)
    }

    /// The `pct exec` command for `cmd`.
    fn exec_cmd(&self, ct: &CtRef, cmd: &Cmd) -> Cmd {
        let mut outer = self.pct("exec", ct);
        outer.argv.extend([
            "--".into(),
            "env".into(),
            "-i".into(),
            format!("PATH={BASE_PATH}").into(),
            "LC_ALL=C".into(),
        ]);
        for (k, v) in &cmd.env {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            outer.argv.push(kv);
        }
        outer.argv.extend(cmd.argv.iter().cloned());
        outer.stdin = cmd.stdin.clone();
        outer.timeout = cmd.timeout;
        outer.output_cap = cmd.output_cap;
        outer
    }

    /// `pct reboot CTID`.
    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    pub async fn reboot(&self, ct: &CtRef) -> Result<(), ExecError> {
        self.check_ctid(ct)?;
        let cmd = self.pct("reboot", ct).timeout(self.lifecycle_timeout);
        self.run_checked(ct, &cmd).await.map(|_| ())
    }
}

/// Parses `pct status` output.
pub(crate) fn parse_pct_status(stdout: &str) -> Option<CtState> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("status:"))?;
    Some(match line.trim() {
        "running" => CtState::Running,
        "stopped" => CtState::Stopped,
        "" => return None,
        other => CtState::Other(other.to_owned()),
    })
}

/// The CTIDs whose LXC command socket `@/var/lib/lxc/CTID/command` a `/proc/net/unix` lists:
/// the running containers, as `PVE::LXC::list_active_containers` reads them (a line of 8
/// fields: `Num: RefCount Protocol Flags Type St Inode Path`).
pub(crate) fn parse_active_containers(text: &str) -> std::collections::BTreeSet<String> {
    let mut running = std::collections::BTreeSet::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [num, _, _, _, _, _, inode, path] = f.as_slice() else {
            continue;
        };
        let hex = num
            .strip_suffix(':')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()));
        if !hex || !inode.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let id = path
            .strip_prefix("@/var/lib/lxc/")
            .and_then(|p| p.strip_suffix("/command"));
        if let Some(id) = id.filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())) {
            running.insert(id.to_owned());
        }
    }
    running
}

#[async_trait]
impl<H: Host> ContainerExec for Pct<H> {
    #[instrument(level = "debug", skip(self, cmd), fields(ct = %ct, argv = ?cmd.display_argv()))]
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        self.check_ctid(ct)?;
        cmd.validate(&self.target(ct))?;
        let outer = self.exec_cmd(ct, cmd);
        let out = crate::run_wrapped(&self.host, &outer, self.target(ct), cmd).await?;
        if Self::is_not_found(ct, &out) {
            return Err(self.not_found(ct));
        }
        Ok(out)
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError> {
        self.check_ctid(ct)?;
        let mut cmd = self.pct("push", ct);
        cmd.argv.push(self.host.resolve(src).into_os_string());
        cmd.argv.push(dest.as_os_str().to_owned());
        cmd.argv.push("--perms".into());
        cmd.argv.push(format!("{:o}", mode & 0o7777).into());
        cmd.timeout = Some(Duration::from_secs(600));
        self.run_checked(ct, &cmd).await.map(|_| ())
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError> {
        self.check_ctid(ct)?;
        let cmd = self.pct("status", ct).timeout(Duration::from_secs(60));
        let out = self.run_checked(ct, &cmd).await?;
        parse_pct_status(&out.stdout_str()).ok_or_else(|| ExecError::Protocol {
            target: self.target(ct),
            what: "pct status".into(),
            detail: format!("no 'status:' line in {:?}", out.stdout_str()),
        })
    }

    /// Every container of the node at once, from its `/proc/net/unix` (see the module docs):
    /// the listed ones run, the others are stopped. `None` when the node has no such file (a
    /// host tree under a root that does not provide one).
    #[instrument(level = "debug", skip(self))]
    async fn states(&self) -> Result<Option<CtStates>, ExecError> {
        let text = match self.host.read_file(Path::new(PROC_NET_UNIX)).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(ExecError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let listed = parse_active_containers(&text)
            .into_iter()
            .map(|id| (id, CtState::Running))
            .collect();
        Ok(Some(CtStates::new(listed, CtState::Stopped)))
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn start(&self, ct: &CtRef) -> Result<(), ExecError> {
        if self.state(ct).await? == CtState::Running {
            return Ok(());
        }
        let cmd = self.pct("start", ct).timeout(self.lifecycle_timeout);
        self.run_checked(ct, &cmd).await.map(|_| ())
    }

    /// `pct shutdown CTID --timeout GRACE`, then `pct stop CTID` when the container still runs.
    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn stop(&self, ct: &CtRef, grace: Duration) -> Result<Stopped, ExecError> {
        if self.state(ct).await? == CtState::Stopped {
            return Ok(Stopped::Already);
        }
        let secs = grace.as_secs().max(1);
        let mut shutdown = self.pct("shutdown", ct);
        shutdown
            .argv
            .extend(["--timeout".into(), secs.to_string().into()]);
        // vm_stop may wait twice the timeout and 5 s (see the module docs), and pct starts slowly.
        let shutdown = shutdown.timeout(Duration::from_secs(2 * secs + 30));
        match self.host.run(&shutdown).await {
            Ok(out) if Self::is_not_found(ct, &out) => return Err(self.not_found(ct)),
            Ok(out) if out.status.success() => return Ok(Stopped::Clean),
            Ok(out) => {
                debug!(status = %out.status, stderr = %out.stderr_tail(300), "pct shutdown did not stop it")
            }
            Err(e @ ExecError::Timeout { .. }) => debug!(error = %e, "pct shutdown ran too long"),
            Err(e) => return Err(e),
        }
        if self.state(ct).await? == CtState::Stopped {
            return Ok(Stopped::Clean);
        }
        let kill = self.pct("stop", ct).timeout(self.lifecycle_timeout);
        self.run_checked(ct, &kill).await?;
        Ok(Stopped::Killed)
    }

    fn lxc_name(&self, ct: &CtRef) -> Option<LxcName> {
        self.check_ctid(ct).ok()?;
        Some(LxcName {
            name: ct.as_str().to_owned(),
            lxcpath: self.host.resolve(Path::new(DEFAULT_LXCPATH)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_pct_status("status: running\n"),
            Some(CtState::Running)
        );
        assert_eq!(
            parse_pct_status("status: stopped\n"),
            Some(CtState::Stopped)
        );
        assert_eq!(
            parse_pct_status("status: paused\n"),
            Some(CtState::Other("paused".into()))
        );
        assert_eq!(parse_pct_status("nothing\n"), None);
    }

    #[test]
    fn running_containers_from_proc_net_unix() {
        // Lines as a Proxmox VE 8 node lists them: CT 101 and 1002 run; the monitor socket,
        // another lxcpath, a path socket and a malformed line are not containers.
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            ffff8e0a4b2c1000: 00000002 00000000 00010000 0001 01 27817 @/var/lib/lxc/101/command\n\
            ffff8e0a4b2c1400: 00000002 00000000 00010000 0001 01 27818 @/var/lib/lxc/101/monitor-sock\n\
            ffff8e0a4b2c1800: 00000003 00000000 00000000 0001 03 31990 /run/systemd/journal/stdout\n\
            ffff8e0a4b2c1c00: 00000002 00000000 00010000 0001 01 40211 @/var/lib/lxc/1002/command\n\
            ffff8e0a4b2c2000: 00000002 00000000 00010000 0001 01 40212 @/tmp/lxc/103/command\n\
            ffff8e0a4b2c2400: 00000002 00000000 00010000 0001 01 @/var/lib/lxc/104/command\n\
            ffff8e0a4b2c2800: 00000002 00000000 00010000 0001 01 40213 @/var/lib/lxc/x5/command\n\
            ffff8e0a4b2c2c00: 00000002 00000000 00010000 0001 01 40214\n";
        let running: Vec<String> = parse_active_containers(text).into_iter().collect();
        assert_eq!(running, ["1002", "101"]);
    }

    #[tokio::test]
    async fn states_from_one_read_of_proc_net_unix() {
        let mut mock = crate::MockHost::new();
        mock.expect_name().return_const("node".to_owned());
        mock.expect_read_file()
            .withf(|p| p == Path::new("/proc/net/unix"))
            .times(1)
            .returning(|_| {
                Ok(b"Num RefCount Protocol Flags Type St Inode Path\n\
                     0000000000000000: 00000002 00000000 00010000 0001 01 9 @/var/lib/lxc/101/command\n"
                    .to_vec())
            });
        let states = Pct::new(mock).states().await.unwrap().unwrap();
        assert_eq!(states.of(&CtRef::new("101")), CtState::Running);
        assert_eq!(states.of(&CtRef::new("102")), CtState::Stopped);
        // A host tree without the file: the backend cannot tell, ask per container.
        let mut mock = crate::MockHost::new();
        mock.expect_name().return_const("node".to_owned());
        mock.expect_read_file().returning(|p| {
            Err(ExecError::NotFound {
                target: "node".into(),
                path: p.to_owned(),
            })
        });
        assert_eq!(Pct::new(mock).states().await.unwrap(), None);
    }

    #[test]
    fn not_found_message() {
        let out = Output {
            status: ExitStatus::Code(2),
            stdout: Vec::new(),
            stderr: b"Configuration file 'nodes/pve1/lxc/105.conf' does not exist\n".to_vec(),
        };
        assert!(Pct::<crate::LocalHost>::is_not_found(
            &CtRef::new("105"),
            &out
        ));
        assert!(!Pct::<crate::LocalHost>::is_not_found(
            &CtRef::new("10"),
            &out
        ));
    }

    #[test]
    fn a_proxmox_container_is_lxc_named_by_its_ctid() {
        let pct = Pct::new(crate::LocalHost::new());
        let name = pct.lxc_name(&CtRef::new("101")).unwrap();
        assert_eq!(
            name.command("lxc-info", ["-pH"]).display_argv(),
            ["lxc-info", "-n", "101", "-P", "/var/lib/lxc", "-pH"]
        );
        assert_eq!(pct.lxc_name(&CtRef::new("x1")), None);
    }

    #[tokio::test]
    async fn works_with_arc_dyn_host() {
        let mut mock = crate::MockHost::new();
        mock.expect_name().return_const("node".to_owned());
        mock.expect_run()
            .withf(|cmd| cmd.display_argv() == ["pct", "status", "101"])
            .returning(|_| Ok(Output::ok("status: running\n")));
        let host: std::sync::Arc<dyn Host> = std::sync::Arc::new(mock);
        let pct = Pct::new(host);
        assert_eq!(
            pct.state(&CtRef::new("101")).await.unwrap(),
            CtState::Running
        );
        let err = pct.state(&CtRef::new("x1")).await.unwrap_err();
        assert!(matches!(err, ExecError::InvalidCmd { .. }), "{err}");
        let dynamic: std::sync::Arc<dyn ContainerExec> = std::sync::Arc::new(pct);
        assert_eq!(
            dynamic.state(&CtRef::new("101")).await.unwrap(),
            CtState::Running
        );
    }
}
