//! [`SshContainer`]: SSH straight into containers that run their own sshd.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tracing::instrument;

use crate::{
    Cmd, ContainerExec, CtRef, CtState, ExecError, Host, Output, SshHost, SshOptions, Stopped,
};

/// Containers reached by SSH into the container itself, one [`SshHost`] connection each.
///
/// - `exec` runs the command as on any [`SshHost`] (explicit env, remote timeout).
/// - `push_file` reads `src` on the machine phoenix-gpu runs on (there is no node in between)
///   and writes it through stdin into a temporary file in the container, then `chmod` and `mv`.
/// - `state` says [`CtState::Running`] when the container's sshd answers; it cannot tell
///   stopped from unreachable, so a failure is an [`ExecError::Ssh`].
/// - `start` and `stop` are [`ExecError::Unsupported`]: lifecycle needs a backend on the node
///   (`Pct` or `LxcAttach`).
#[derive(Clone, Debug, Default)]
pub struct SshContainer {
    links: BTreeMap<CtRef, SshHost>,
}

impl SshContainer {
    /// No containers yet.
    pub fn new() -> SshContainer {
        SshContainer::default()
    }

    /// Reaches `ct` through an already open connection.
    pub fn insert(&mut self, ct: CtRef, host: SshHost) {
        self.links.insert(ct, host);
    }

    /// Connects to `dest` and reaches `ct` through it.
    pub async fn connect(
        &mut self,
        ct: CtRef,
        dest: &str,
        opts: SshOptions,
    ) -> Result<(), ExecError> {
        let host = SshHost::connect(dest, opts).await?;
        self.insert(ct, host);
        Ok(())
    }

    fn link(&self, ct: &CtRef) -> Result<&SshHost, ExecError> {
        self.links.get(ct).ok_or_else(|| ExecError::CtNotFound {
            target: "ssh".into(),
            ct: ct.to_string(),
        })
    }

    fn unsupported(&self, ct: &CtRef, what: &'static str) -> ExecError {
        ExecError::Unsupported {
            target: format!("CT {ct}"),
            backend: "ssh-into-container",
            what,
            hint: "use the pct or lxc-attach backend on the node for start and stop",
        }
    }
}

#[async_trait]
impl ContainerExec for SshContainer {
    #[instrument(level = "debug", skip(self, cmd), fields(ct = %ct, argv = ?cmd.display_argv()))]
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        self.link(ct)?.run(cmd).await
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError> {
        let host = self.link(ct)?;
        let bytes = tokio::fs::read(src).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ExecError::NotFound {
                    target: "localhost".into(),
                    path: src.to_owned(),
                }
            } else {
                ExecError::Io {
                    target: "localhost".into(),
                    op: "read",
                    path: src.to_owned(),
                    source,
                }
            }
        })?;
        let script = "set -e; t=\"$1.phoenix-push.$$\"; trap 'rm -f \"$t\"' EXIT; \
                      cat > \"$t\"; chmod \"$2\" \"$t\"; mv -f \"$t\" \"$1\"; trap - EXIT";
        let mut cmd = Cmd::new(["sh", "-c", script, "sh"]);
        cmd.argv.push(dest.as_os_str().to_owned());
        cmd.argv.push(format!("{:o}", mode & 0o7777).into());
        cmd.stdin = Some(bytes);
        cmd.timeout = Some(Duration::from_secs(600));
        host.run(&cmd).await?.check(&host.name(), &cmd).map(|_| ())
    }

    async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError> {
        let host = self.link(ct)?;
        let cmd = Cmd::new(["true"]).timeout(Duration::from_secs(30));
        host.run(&cmd).await?.check(&host.name(), &cmd)?;
        Ok(CtState::Running)
    }

    async fn start(&self, ct: &CtRef) -> Result<(), ExecError> {
        self.link(ct)?;
        Err(self.unsupported(ct, "starting a container"))
    }

    async fn stop(&self, ct: &CtRef, _grace: Duration) -> Result<Stopped, ExecError> {
        self.link(ct)?;
        Err(self.unsupported(ct, "stopping a container"))
    }
}
