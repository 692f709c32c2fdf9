//! Builds the host and container backends from the global flags, once.

use std::path::Path;
use std::sync::Arc;

use exec_backend::{ContainerExec, Host, LocalHost, LxcAttach, Pct, SshHost};
use gpu_core::{Error, Target};

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

/// An `ssh://[user@]node[:port]` URL: `(user, node, port)`.
pub fn parse_ssh_url(url: &str) -> Result<(Option<String>, String, Option<u16>), CliError> {
    let bad = |hint: &str| CliError::flag("--host", url, hint);
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| bad("expected ssh://user@node[:port]"))?;
    let (user, hostport) = match rest.split_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
        Some(_) => return Err(bad("the user before @ is empty")),
        None => (None, rest),
    };
    let (node, port) = match hostport.rsplit_once(':') {
        Some((n, p)) => (
            n,
            Some(
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
        ),
        None => (hostport, None),
    };
    let ok = !node.is_empty()
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !ok {
        return Err(bad(
            "the node name is empty or has characters a host name cannot have",
        ));
    }
    Ok((user, node.to_owned(), port))
}

/// Chooses and connects the backends.
pub async fn connect(g: &Global) -> Result<Backends, CliError> {
    let host: Arc<dyn Host> = match (&g.host, &g.root) {
        (Some(url), root) => {
            let (_user, node, _port) = parse_ssh_url(url)?;
            // With --root too, the node's paths map under that directory on the node.
            let mut opts = crate::nodes::ssh_options(g);
            opts.root = root.clone();
            let ssh = SshHost::connect(url, opts)
                .await
                .map_err(|e| Error::exec(format!("cannot connect to {node}"), e))?;
            Arc::new(ssh)
        }
        (None, Some(root)) => Arc::new(LocalHost::with_root(root).with_search_path(search_path())),
        (None, None) => Arc::new(LocalHost::new().with_search_path(search_path())),
    };
    let kind = match g.target {
        Some(k) => k,
        None => detect_target(host.as_ref()).await?,
    };
    let (target, cts): (Target, Arc<dyn ContainerExec>) = match kind {
        TargetKind::Pve => (
            Target::Pve,
            match &g.pct_program {
                Some(p) => Arc::new(Pct::with_program(host.clone(), p.as_os_str())),
                None => Arc::new(Pct::new(host.clone())),
            },
        ),
        TargetKind::Lxc => (
            Target::Lxc {
                lxcpath: g.lxcpath.clone(),
            },
            Arc::new(LxcAttach::with_lxcpath(host.clone(), g.lxcpath.clone())),
        ),
    };
    Ok(Backends { host, cts, target })
}

/// `/etc/pve/lxc` on the host means Proxmox VE; anything else is plain LXC.
pub async fn detect_target(host: &dyn Host) -> Result<TargetKind, Error> {
    let meta = host
        .stat(Path::new("/etc/pve/lxc"))
        .await
        .map_err(|e| Error::exec("cannot tell whether the host runs Proxmox VE", e))?;
    Ok(if meta.is_some() {
        TargetKind::Pve
    } else {
        TargetKind::Lxc
    })
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
        for bad in [
            "pve2",
            "ssh://",
            "ssh://@pve2",
            "ssh://root@",
            "ssh://a b",
            "ssh://x:port",
        ] {
            assert!(parse_ssh_url(bad).is_err(), "{bad}");
        }
    }
}
