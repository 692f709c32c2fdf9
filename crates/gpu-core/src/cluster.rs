//! A Proxmox cluster: which node each container lives on (`/etc/pve/.vmlist`), and one
//! [`Engine`] per node.
//!
//! [`Cluster`] routes each container to the engine of its node: the local engine for this
//! node's containers (and for every container outside a cluster), and for another node an
//! engine over the backends a [`NodeConnector`] opens, once per node and run, shared by all of
//! that node's containers (so their runfile is downloaded once per node). gpu-core never knows
//! how a node is reached: the caller's connector does (the CLI's opens SSH). Connections to
//! different nodes are opened in parallel; a node that cannot be reached fails only its own
//! containers.
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use exec_backend::{LocalHost, Pct};
//! use gpu_core::cluster::Cluster;
//! use gpu_core::{Engine, Target};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/h200x2");
//! let host = Arc::new(LocalHost::with_root(&root));
//! let engine = Engine::new(host.clone(), Arc::new(Pct::new(host)), Target::Pve);
//! // The example host has no /etc/pve/.vmlist: every container is this host's.
//! let cluster = Cluster::discover(engine, None).await?;
//! let ct = Target::Pve.ct_id("101")?;
//! assert_eq!(cluster.node_of(&ct), "localhost");
//! assert!(cluster.engine_for(&ct).await.1.is_ok());
//! # Ok::<(), gpu_core::Error>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use exec_backend::{ContainerExec, ExecError, Host};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::engine::Engine;
use crate::error::{chain, Error, Result};
use crate::target::Target;
use crate::values::CtId;

/// Where the cluster's guest list lives.
pub const VMLIST_PATH: &str = "/etc/pve/.vmlist";

/// One guest of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEntry {
    /// The node it lives on.
    pub node: String,
    /// `lxc` or `qemu`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The cluster's guest list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmList {
    /// Guests by id.
    #[serde(default)]
    pub ids: BTreeMap<String, VmEntry>,
}

impl VmList {
    /// Parses the JSON of `/etc/pve/.vmlist`.
    pub fn parse(bytes: &[u8]) -> Result<VmList> {
        serde_json::from_slice(bytes).map_err(|e| Error::Parse {
            what: VMLIST_PATH.into(),
            detail: e.to_string(),
        })
    }

    /// The node of container `ctid`, when the list knows it as a container.
    pub fn node_of(&self, ctid: &str) -> Option<&str> {
        self.ids
            .get(ctid)
            .filter(|e| e.kind == "lxc")
            .map(|e| e.node.as_str())
    }

    /// All containers (not VMs), by id, in id order.
    pub fn containers(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .ids
            .iter()
            .filter(|(_, e)| e.kind == "lxc")
            .map(|(id, e)| (id.as_str(), e.node.as_str()))
            .collect();
        v.sort_by_key(|(id, _)| id.parse::<u64>().unwrap_or(u64::MAX));
        v.into_iter()
    }
}

/// Reads the guest list; `None` when the host is not part of a Proxmox cluster.
pub async fn read_vmlist(host: &dyn Host) -> Result<Option<VmList>> {
    match host.read_file(Path::new(VMLIST_PATH)).await {
        Ok(b) => VmList::parse(&b).map(Some),
        Err(ExecError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::exec(format!("cannot read {VMLIST_PATH}"), e)),
    }
}

/// The host's node name (`/etc/hostname`, short form), as Proxmox names nodes.
pub async fn local_node(host: &dyn Host) -> Result<String> {
    let bytes = host
        .read_file(Path::new("/etc/hostname"))
        .await
        .map_err(|e| Error::exec("cannot read /etc/hostname", e))?;
    let text = String::from_utf8_lossy(&bytes);
    let name = text.trim().split('.').next().unwrap_or("").to_owned();
    if name.is_empty() {
        return Err(Error::Parse {
            what: "/etc/hostname".into(),
            detail: "empty".into(),
        });
    }
    Ok(name)
}

/// The backends of one cluster node.
#[derive(Clone)]
pub struct NodeBackends {
    /// The node itself.
    pub host: Arc<dyn Host>,
    /// The way into its containers.
    pub cts: Arc<dyn ContainerExec>,
}

/// Opens the backends of another node of the cluster; implemented by the caller (the CLI opens
/// one SSH connection per node). Called at most once per node of a [`Cluster`], possibly for
/// several nodes at once.
#[async_trait]
pub trait NodeConnector: Send + Sync {
    /// The backends of `node` (a node name from the guest list).
    async fn connect(&self, node: &str) -> Result<NodeBackends>;
}

/// The engine of a node, once connected (or why it cannot be).
type NodeSlot = Arc<OnceCell<std::result::Result<Engine, Arc<Error>>>>;

/// The nodes of one run: which node each container lives on, and the engine of each node.
pub struct Cluster {
    local: Engine,
    /// This node's name, when the host is a node of a cluster with a guest list.
    local_name: Option<String>,
    vmlist: Option<VmList>,
    connector: Option<Arc<dyn NodeConnector>>,
    remote: Mutex<HashMap<String, NodeSlot>>,
}

impl Cluster {
    /// A single host: every container is `local`'s.
    pub fn single(local: Engine) -> Cluster {
        Cluster {
            local,
            local_name: None,
            vmlist: None,
            connector: None,
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster as `local`'s host sees it: on Proxmox VE with a guest list, containers of
    /// other nodes go through `connector`; anywhere else it is [`Cluster::single`]. When this
    /// node's name cannot be told, every container is worked on here (with a warning).
    pub async fn discover(
        local: Engine,
        connector: Option<Arc<dyn NodeConnector>>,
    ) -> Result<Cluster> {
        if *local.target() != Target::Pve {
            return Ok(Cluster::single(local));
        }
        let Some(vmlist) = read_vmlist(local.host().as_ref()).await? else {
            return Ok(Cluster::single(local));
        };
        let name = match local_node(local.host().as_ref()).await {
            Ok(n) => n,
            Err(e) => {
                warn!(
                    "cannot tell this node's name ({}); every container is worked on here",
                    chain(&e)
                );
                return Ok(Cluster::single(local));
            }
        };
        Ok(Cluster {
            local,
            local_name: Some(name),
            vmlist: Some(vmlist),
            connector,
            remote: Mutex::new(HashMap::new()),
        })
    }

    /// The engine of this host.
    pub fn local(&self) -> &Engine {
        &self.local
    }

    /// The target of every node.
    pub fn target(&self) -> &Target {
        self.local.target()
    }

    /// This node's name (`localhost` outside a cluster).
    pub fn local_name(&self) -> &str {
        self.local_name.as_deref().unwrap_or("localhost")
    }

    /// The node `ct` lives on, by the guest list; this node when the list does not say.
    pub fn node_of(&self, ct: &CtId) -> &str {
        self.vmlist
            .as_ref()
            .and_then(|l| l.node_of(ct.as_str()))
            .unwrap_or(self.local_name())
    }

    /// Every container of the cluster with its node, in id order; `None` outside a cluster.
    pub fn containers(&self) -> Option<Vec<(CtId, String)>> {
        self.vmlist.as_ref().map(|l| {
            l.containers()
                .filter_map(|(id, node)| Some((CtId::pve(id).ok()?, node.to_owned())))
                .collect()
        })
    }

    /// The engine of `node`: the local one, or one over the connector's backends (opened
    /// once, then shared; a failure to open them is kept for the run too).
    pub async fn engine_of(&self, node: &str) -> std::result::Result<Engine, Arc<Error>> {
        if node == self.local_name() {
            return Ok(self.local.clone());
        }
        let slot = {
            let mut map = self.remote.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(node.to_owned()).or_default().clone()
        };
        slot.get_or_init(|| self.connect(node)).await.clone()
    }

    /// The node and engine of `ct`.
    pub async fn engine_for(&self, ct: &CtId) -> (String, std::result::Result<Engine, Arc<Error>>) {
        let node = self.node_of(ct).to_owned();
        let e = self.engine_of(&node).await;
        (node, e)
    }

    async fn connect(&self, node: &str) -> std::result::Result<Engine, Arc<Error>> {
        let Some(connector) = &self.connector else {
            return Err(Arc::new(Error::NodeUnreachable {
                node: node.to_owned(),
            }));
        };
        debug!(node, "opening the node's backends");
        let b = connector.connect(node).await.map_err(Arc::new)?;
        debug!(node, "node backends open");
        Ok(self.local.on_node(b.host, b.cts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
"version": 7,
"ids": {
"101": { "node": "pve1", "type": "lxc", "version": 3 },
"102": { "node": "pve2", "type": "lxc", "version": 4 },
"9000": { "node": "pve1", "type": "qemu", "version": 1 }}
}"#;

    #[test]
    fn parses_vmlist_and_places_containers() {
        let l = VmList::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(l.node_of("101"), Some("pve1"));
        assert_eq!(l.node_of("102"), Some("pve2"));
        assert_eq!(l.node_of("9000"), None, "a VM is not a container");
        assert_eq!(l.node_of("103"), None);
        let cts: Vec<_> = l.containers().collect();
        assert_eq!(cts, vec![("101", "pve1"), ("102", "pve2")]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(VmList::parse(b"{not json").is_err());
    }

    /// A stand-in for the CLI's SSH connector: counts connections per node, "reaches" a node
    /// by giving another host tree, and fails for `down`.
    struct FakeConnector {
        calls: Mutex<Vec<String>>,
        hosts: HashMap<String, Arc<test_support::FsHost>>,
    }

    #[async_trait]
    impl NodeConnector for FakeConnector {
        async fn connect(&self, node: &str) -> Result<NodeBackends> {
            self.calls.lock().unwrap().push(node.to_owned());
            // Slow enough that concurrent callers overlap.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let host = self.hosts.get(node).ok_or_else(|| Error::NodeUnreachable {
                node: node.to_owned(),
            })?;
            Ok(NodeBackends {
                host: host.clone(),
                cts: Arc::new(exec_backend::MockContainerExec::new()),
            })
        }
    }

    fn local_engine(host: Arc<test_support::FsHost>) -> Engine {
        Engine::new(
            host,
            Arc::new(exec_backend::MockContainerExec::new()),
            Target::Pve,
        )
    }

    #[tokio::test]
    async fn routes_by_the_guest_list_and_connects_each_node_once() {
        let (_d1, pve1) = test_support::FsHost::h200x2();
        pve1.put(VMLIST_PATH, SAMPLE);
        pve1.put("/etc/hostname", "pve1.example.org\n");
        let (_d2, pve2) = test_support::FsHost::h200x2();
        let connector = Arc::new(FakeConnector {
            calls: Mutex::new(Vec::new()),
            hosts: HashMap::from([("pve2".to_owned(), Arc::new(pve2))]),
        });
        let cluster = Cluster::discover(local_engine(Arc::new(pve1)), Some(connector.clone()))
            .await
            .unwrap();
        assert_eq!(cluster.local_name(), "pve1");
        let ct = |s: &str| CtId::pve(s).unwrap();
        assert_eq!(cluster.node_of(&ct("101")), "pve1");
        assert_eq!(cluster.node_of(&ct("102")), "pve2");
        assert_eq!(cluster.node_of(&ct("555")), "pve1", "unknown: this node");
        let listed: Vec<(String, String)> = cluster
            .containers()
            .unwrap()
            .into_iter()
            .map(|(c, n)| (c.to_string(), n))
            .collect();
        assert_eq!(
            listed,
            [("101".into(), "pve1".into()), ("102".into(), "pve2".into())]
        );
        assert!(cluster.engine_for(&ct("101")).await.1.is_ok());
        assert!(
            connector.calls.lock().unwrap().is_empty(),
            "local: no connection"
        );
        // Two containers of pve2 at once: one connection.
        let (a, b) = tokio::join!(cluster.engine_of("pve2"), cluster.engine_of("pve2"));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(*connector.calls.lock().unwrap(), ["pve2"]);
        // A node that cannot be reached fails its own containers, once.
        let e = cluster.engine_of("pve3").await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::HostPrecondition);
        assert!(cluster.engine_of("pve3").await.is_err());
        assert_eq!(*connector.calls.lock().unwrap(), ["pve2", "pve3"]);
        assert!(cluster.engine_of("pve2").await.is_ok());
    }

    #[tokio::test]
    async fn outside_a_cluster_everything_is_local() {
        let (_d, host) = test_support::FsHost::h200x2();
        let cluster = Cluster::discover(local_engine(Arc::new(host)), None)
            .await
            .unwrap();
        assert_eq!(cluster.local_name(), "localhost");
        assert!(cluster.containers().is_none());
        assert_eq!(cluster.node_of(&CtId::pve("102").unwrap()), "localhost");
        // Without a connector, a container routed elsewhere cannot be reached.
        let e = cluster.engine_of("pve9").await.unwrap_err();
        assert!(matches!(*e, Error::NodeUnreachable { .. }), "{e:?}");
    }
}
