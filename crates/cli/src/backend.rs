//! Builds the backends from the global flags, once: the host (local, under `--root`, or over
//! SSH with `--host`), the way into its containers, the target, and the connector that opens
//! other cluster nodes over SSH for gpu-core's [`Cluster`](gpu_core::cluster::Cluster).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use exec_backend::ssh::{BadDestination, Destination};
use exec_backend::{
    ContainerExec, Host, KnownHostsCheck, LocalHost, LxcAttach, Pct, SshHost, SshOptions,
};
use gpu_core::cluster::{NodeBackends, NodeConnector};
use gpu_core::{BackendHost, Error, Input, Target};
use tracing::info;

use crate::args;
use crate::cli::{Global, TargetKind};
use crate::error::CliError;

/// The chosen backends.
pub struct Backends {
    /// The node that owns the GPUs and configs.
    pub host: Arc<dyn Host>,
    /// The way into its containers.
    pub cts: Arc<dyn ContainerExec>,
    /// Where containers live.
    pub target: Target,
}

/// Why an `ssh://` URL is not one.
#[derive(Debug, PartialEq, Eq)]
pub struct BadUrl(&'static str);

/// An `ssh://[user@]node[:port]` URL, checked by exec-backend's rules for a destination (no
/// part can be taken by ssh for an option): `(user, node, port)`.
pub fn parse_ssh_url(url: &str) -> Result<(Option<String>, String, Option<u16>), BadUrl> {
    if !url.starts_with("ssh://") {
        return Err(BadUrl("expected ssh://user@node[:port]"));
    }
    let d = Destination::parse(url).map_err(|BadDestination(why)| BadUrl(why))?;
    Ok((d.user, d.host, d.port))
}

/// SSH options from the global flags: strict host-key checking, the ssh_config file, the
/// sessions open at once.
fn ssh_options(
    ssh_config: Option<PathBuf>,
    root: Option<PathBuf>,
    max_sessions: u32,
) -> SshOptions {
    let mut o = SshOptions::default();
    o.known_hosts_check = KnownHostsCheck::Strict;
    o.config_file = ssh_config;
    o.root = root;
    o.max_sessions = max_sessions as usize;
    o
}

/// `pct` on `host` (the stand-in of `--pct-program` in tests); its commands count into the
/// run they run for.
fn pct(host: Arc<dyn Host>, program: Option<&PathBuf>) -> Arc<dyn ContainerExec> {
    let host: Arc<dyn Host> = Arc::new(BackendHost::new(host));
    match program {
        Some(p) => Arc::new(Pct::with_program(host, p.as_os_str())),
        None => Arc::new(Pct::new(host)),
    }
}

/// Chooses and connects the backends.
pub async fn connect(g: &Global) -> Result<Backends, CliError> {
    let host: Arc<dyn Host> =
        match (&g.host, &g.root) {
            (Some(url), root) => {
                let (_user, node, _port) = parse_ssh_url(url)
                    .map_err(|BadUrl(hint)| CliError::flag("--host", url, hint))?;
                // With --root too, the node's paths map under that directory on the node.
                let opts = ssh_options(g.ssh_config.clone(), root.clone(), g.ssh_max_sessions);
                let ssh = SshHost::connect(url, opts)
                    .await
                    .map_err(|e| Error::exec(format!("cannot connect to {node}"), e))?;
                Arc::new(ssh)
            }
            (None, Some(root)) => {
                // Every host path resolves under it: a root that is no directory would read as a
                // host without a driver.
                match std::fs::metadata(root) {
                    Ok(md) if md.is_dir() => {}
                    Ok(_) => return Err(CliError::flag(
                        "--root",
                        &root.display().to_string(),
                        "it is not a directory; give the directory that stands for the host's /",
                    )),
                    Err(e) => {
                        return Err(CliError::flag(
                            "--root",
                            &root.display().to_string(),
                            format!(
                        "it cannot be used ({e}); give the directory that stands for the host's /"
                    ),
                        ))
                    }
                }
                Arc::new(LocalHost::with_root(root).with_search_path(search_path()))
            }
            (None, None) => Arc::new(LocalHost::new().with_search_path(search_path())),
        };
    let target = match g.target {
        Some(TargetKind::Pve) => Target::Pve,
        Some(TargetKind::Lxc) => Target::Lxc {
            lxcpath: g.lxcpath.clone(),
        },
        None => Target::detect(host.as_ref(), g.lxcpath.clone()).await?,
    };
    let cts: Arc<dyn ContainerExec> = match &target {
        Target::Pve => pct(host.clone(), g.pct_program.as_ref()),
        Target::Lxc { lxcpath } => Arc::new(LxcAttach::with_lxcpath(
            Arc::new(BackendHost::new(host.clone())) as Arc<dyn Host>,
            lxcpath.clone(),
        )),
    };
    Ok(Backends { host, cts, target })
}

/// Opens another node of a Proxmox cluster: `SshHost` + `Pct<SshHost>` over one multiplexed
/// SSH connection, at `ssh://SSH_USER@NODE` or the address `--node NAME=URL` gives.
pub struct SshConnector {
    ssh_user: String,
    urls: BTreeMap<String, String>,
    roots: BTreeMap<String, PathBuf>,
    ssh_config: Option<PathBuf>,
    max_sessions: u32,
    pct_program: Option<PathBuf>,
}

impl SshConnector {
    /// The connector of `--ssh-user`, `--node`, `--node-root`, `--ssh-config`,
    /// `--ssh-max-sessions`; every
    /// `--node` address is checked now.
    pub fn new(g: &Global) -> Result<SshConnector, CliError> {
        let urls = args::pairs("--node", &g.nodes)?;
        for (name, url) in &urls {
            parse_ssh_url(url).map_err(|BadUrl(why)| {
                CliError::flag(
                    "--node",
                    &format!("{name}={url}"),
                    format!("expected NAME=ssh://[user@]host[:port]: {why}"),
                )
            })?;
        }
        // The user of every node without a --node address.
        parse_ssh_url(&format!("ssh://{}@node", g.ssh_user))
            .map_err(|BadUrl(why)| CliError::flag("--ssh-user", &g.ssh_user, why))?;
        Ok(SshConnector {
            ssh_user: g.ssh_user.clone(),
            urls,
            roots: args::node_roots(&g.node_roots)?,
            ssh_config: g.ssh_config.clone(),
            max_sessions: g.ssh_max_sessions,
            pct_program: g.pct_program.clone(),
        })
    }
}

#[async_trait]
impl NodeConnector for SshConnector {
    async fn connect(&self, node: &str) -> gpu_core::Result<NodeBackends> {
        let url = self
            .urls
            .get(node)
            .cloned()
            .unwrap_or_else(|| format!("ssh://{}@{node}", self.ssh_user));
        parse_ssh_url(&url).map_err(|BadUrl(hint)| Error::BadInput {
            what: Input::Url,
            value: url.clone(),
            hint: hint.to_owned(),
        })?;
        info!(node, url = %url, "connecting to cluster node");
        let opts = ssh_options(
            self.ssh_config.clone(),
            self.roots.get(node).cloned(),
            self.max_sessions,
        );
        let ssh = SshHost::connect(&url, opts)
            .await
            .map_err(|e| Error::exec(format!("cannot reach cluster node {node} at {url}"), e))?;
        let host: Arc<dyn Host> = Arc::new(ssh);
        let cts = pct(host.clone(), self.pct_program.as_ref());
        Ok(NodeBackends { host, cts })
    }
}

/// The `PATH` host commands use: the caller's own, then the fixed base (so `/usr/sbin` is
/// always there), as a user's shell would find `pct` or an LXC unpacked under a private prefix.
fn search_path() -> std::ffi::OsString {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if !path.is_empty() {
        path.push(":");
    }
    path.push(exec_backend::process::BASE_PATH);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        assert_eq!(
            parse_ssh_url("ssh://root@pve2:2222").unwrap(),
            (Some("root".into()), "pve2".into(), Some(2222))
        );
        assert_eq!(
            parse_ssh_url("ssh://pve2.lan").unwrap(),
            (None, "pve2.lan".into(), None)
        );
        assert_eq!(
            parse_ssh_url("ssh://[fd00::2]:22").unwrap(),
            (None, "fd00::2".into(), Some(22))
        );
        for bad in [
            "pve2",
            "root@pve2",
            "ssh://",
            "ssh://@pve2",
            "ssh://root@",
            "ssh://a b",
            "ssh://x:port",
            "ssh://-V",
            "ssh://ro ot@x",
            "ssh://-oProxyCommand=touch /tmp/pwned@x",
        ] {
            assert!(parse_ssh_url(bad).is_err(), "{bad}");
        }
    }
}
