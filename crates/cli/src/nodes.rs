//! The nodes of a Proxmox cluster: which node each container lives on (`/etc/pve/.vmlist`),
//! and one engine per node: the local one, or `SshHost` + `Pct<SshHost>` over one SSH
//! connection per remote node, opened when first needed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use exec_backend::{ContainerExec, CtRef, Host, KnownHostsCheck, Pct, SshHost, SshOptions};
use gpu_core::cluster::{self, VmList};
use gpu_core::{Engine, Error, EventSink, Settings, Target};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::backend::{parse_ssh_url, Backends};
use crate::cli::Global;
use crate::error::CliError;

/// How remote nodes are reached.
#[derive(Clone, Debug, Default)]
struct Reach {
    ssh_user: String,
    urls: BTreeMap<String, String>,
    roots: BTreeMap<String, PathBuf>,
    ssh_config: Option<PathBuf>,
    pct_program: Option<PathBuf>,
}

/// The cluster as this run sees it.
pub struct Nodes {
    local: Engine,
    local_name: String,
    vmlist: Option<VmList>,
    reach: Reach,
    settings: Settings,
    events: EventSink,
    remote: Mutex<HashMap<String, Result<Engine, Arc<Error>>>>,
}

fn bad(what: &'static str, value: &str, hint: &str) -> CliError {
    CliError::flag(what, value, hint)
}

/// `NAME=VALUE` pairs of a repeatable flag.
fn pairs(what: &'static str, items: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for it in items {
        let Some((name, value)) = it.split_once('=') else {
            return Err(bad(what, it, "expected NAME=VALUE"));
        };
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !ok || value.is_empty() {
            return Err(bad(
                what,
                it,
                "expected NAME=VALUE with a node name of letters, digits, '-', '_' and '.'",
            ));
        }
        if out.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(bad(what, it, "this node is given twice"));
        }
    }
    Ok(out)
}

/// SSH options from the global flags: strict host-key checking, the ssh_config file.
pub fn ssh_options(g: &Global) -> SshOptions {
    let mut o = SshOptions::default();
    o.known_hosts_check = KnownHostsCheck::Strict;
    o.config_file = g.ssh_config.clone();
    o
}

impl Nodes {
    /// Reads the cluster's guest list (Proxmox only) and validates `--node`/`--node-root`.
    pub async fn new(
        g: &Global,
        b: &Backends,
        local: Engine,
        settings: Settings,
        events: EventSink,
    ) -> Result<Nodes, CliError> {
        let urls = pairs("--node", &g.nodes)?;
        for (name, url) in &urls {
            parse_ssh_url(url).map_err(|_| {
                bad(
                    "--node",
                    &format!("{name}={url}"),
                    "expected NAME=ssh://[user@]host[:port]",
                )
            })?;
        }
        let roots = pairs("--node-root", &g.node_roots)?
            .into_iter()
            .map(|(k, v)| (k, PathBuf::from(v)))
            .collect();
        let reach = Reach {
            ssh_user: g.ssh_user.clone(),
            urls,
            roots,
            ssh_config: g.ssh_config.clone(),
            pct_program: g.pct_program.clone(),
        };
        let mut vmlist = None;
        let mut local_name = String::new();
        if b.target == Target::Pve {
            vmlist = cluster::read_vmlist(b.host.as_ref()).await?;
            if vmlist.is_some() {
                match cluster::local_node(b.host.as_ref()).await {
                    Ok(n) => local_name = n,
                    Err(e) => {
                        warn!(
                            "cannot tell this node's name ({}); every container is worked on here",
                            gpu_core::chain(&e)
                        );
                        vmlist = None;
                    }
                }
            }
        }
        Ok(Nodes {
            local,
            local_name,
            vmlist,
            reach,
            settings,
            events,
            remote: Mutex::new(HashMap::new()),
        })
    }

    /// This node's name (`localhost` outside a cluster).
    pub fn local_name(&self) -> &str {
        if self.local_name.is_empty() {
            "localhost"
        } else {
            &self.local_name
        }
    }

    /// The node `ct` lives on, by the guest list; this node when the list does not say.
    pub fn node_of(&self, ct: &CtRef) -> String {
        self.vmlist
            .as_ref()
            .and_then(|l| l.node_of(ct.as_str()))
            .unwrap_or(self.local_name())
            .to_owned()
    }

    /// Every container of the cluster with its node, in id order; `None` outside a cluster.
    pub fn cluster_containers(&self) -> Option<Vec<(CtRef, String)>> {
        self.vmlist.as_ref().map(|l| {
            l.containers()
                .map(|(id, node)| (CtRef::new(id), node.to_owned()))
                .collect()
        })
    }

    /// The engine of `node`: the local one, or one over SSH (connected once, then shared).
    pub async fn engine_of(&self, node: &str) -> Result<Engine, Arc<Error>> {
        if node == self.local_name() {
            return Ok(self.local.clone());
        }
        let mut map = self.remote.lock().await;
        if let Some(r) = map.get(node) {
            return r.clone();
        }
        let r = self.connect(node).await.map_err(Arc::new);
        map.insert(node.to_owned(), r.clone());
        r
    }

    /// The node and engine of `ct`.
    pub async fn engine_for(&self, ct: &CtRef) -> (String, Result<Engine, Arc<Error>>) {
        let node = self.node_of(ct);
        let e = self.engine_of(&node).await;
        (node, e)
    }

    async fn connect(&self, node: &str) -> Result<Engine, Error> {
        let url = self
            .reach
            .urls
            .get(node)
            .cloned()
            .unwrap_or_else(|| format!("ssh://{}@{node}", self.reach.ssh_user));
        parse_ssh_url(&url).map_err(|e| Error::BadInput {
            what: gpu_core::Input::Url,
            value: url.clone(),
            hint: e.to_string(),
        })?;
        let mut opts = SshOptions::default();
        opts.known_hosts_check = KnownHostsCheck::Strict;
        opts.config_file = self.reach.ssh_config.clone();
        opts.root = self.reach.roots.get(node).cloned();
        info!(node, url = %url, "connecting to cluster node");
        let ssh = SshHost::connect(&url, opts)
            .await
            .map_err(|e| Error::exec(format!("cannot reach cluster node {node} at {url}"), e))?;
        debug!(node, "connected");
        let host: Arc<dyn Host> = Arc::new(ssh);
        let cts: Arc<dyn ContainerExec> = match &self.reach.pct_program {
            Some(p) => Arc::new(Pct::with_program(host.clone(), p.as_os_str())),
            None => Arc::new(Pct::new(host.clone())),
        };
        Ok(Engine::new(host, cts, Target::Pve)
            .with_settings(self.settings.clone())
            .with_events(self.events.clone()))
    }
}
