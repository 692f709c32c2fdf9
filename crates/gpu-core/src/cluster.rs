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
//! A cluster is one run, and the work on a node costs it a handful of questions, not a handful
//! per container:
//! - every engine is [for the run](Engine::for_run): a node's inventory, its device table and
//!   the states of its containers are read once and shared by all of its containers;
//! - [`Cluster::read_ahead`] opens the nodes of a run's containers and reads those facts, all
//!   nodes at once, before any container is worked on;
//! - where this host sees the cluster's `/etc/pve` (pmxcfs shows every node's configs under
//!   `/etc/pve/nodes/NODE/`), another node's configs (and every other read under `/etc/pve`)
//!   are read here, not over its connection; writes still go to the node, which holds the
//!   container's config lock.
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
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use exec_backend::{
    Cmd, ContainerExec, DirEntry, ExecError, FileKind, FileMeta, Host, HostLock, NameMatch, Output,
    WriteOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::engine::Engine;
use crate::error::{chain, Error, Result};
use crate::target::Target;
use crate::values::CtId;

/// Where the cluster's guest list lives.
pub const VMLIST_PATH: &str = "/etc/pve/.vmlist";

/// The cluster file system (pmxcfs), the same on every node.
pub const ETC_PVE: &str = "/etc/pve";

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
    /// A single host: every container is `local`'s (its engine made [for the
    /// run](Engine::for_run)).
    pub fn single(local: Engine) -> Cluster {
        Cluster {
            local: local.for_run(),
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
            local: local.for_run(),
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

    /// Opens the nodes of `cts` and reads what a run over them asks each node once (its
    /// inventory; with `states`, the run states of its containers), all nodes at once, so that
    /// no node's connection or inventory waits behind another's. What fails here is met again,
    /// and reported, by each container of that node.
    pub async fn read_ahead(&self, cts: &[CtId], states: bool) {
        let mut nodes: Vec<&str> = cts.iter().map(|ct| self.node_of(ct)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        futures_util::future::join_all(nodes.into_iter().map(|node| async move {
            if let Ok(engine) = self.engine_of(node).await {
                engine.read_ahead(states).await;
            }
        }))
        .await;
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
        let host = match self.shared_etc_pve(node).await {
            Some(dir) => {
                debug!(node, dir = %dir.display(), "the node's /etc/pve is read here");
                Arc::new(SharedEtcPve {
                    node: node.to_owned(),
                    remote: b.host,
                    local: self.local.host().clone(),
                })
            }
            None => b.host,
        };
        Ok(self.local.on_node(host, b.cts))
    }

    /// `/etc/pve/nodes/NODE/lxc` when this host sees it (this host is a node of the cluster
    /// and pmxcfs shows it every node's directory).
    async fn shared_etc_pve(&self, node: &str) -> Option<PathBuf> {
        if self.local_name.is_none() || !is_node_name(node) {
            return None;
        }
        let dir = Path::new(ETC_PVE).join("nodes").join(node).join("lxc");
        match self.local.host().stat(&dir).await {
            Ok(Some(m)) if m.kind == FileKind::Dir => Some(dir),
            _ => None,
        }
    }
}

/// Whether `node` can name a directory under `/etc/pve/nodes` (a host name).
fn is_node_name(node: &str) -> bool {
    !node.is_empty()
        && !node.starts_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Another node of a cluster whose `/etc/pve` this host sees too: pmxcfs shows the same files
/// on every node, and the node's own links in it (`lxc`, `qemu-server`, `openvz` and `local`)
/// point into `nodes/NODE`. Reads under `/etc/pve` (its container configs, the guest list) are
/// answered from this host's view, without a session on the node; writes and everything else
/// go to the node, which holds its containers' config locks. Paths outside `/etc/pve`, or with
/// anything but plain components, always go to the node.
struct SharedEtcPve {
    node: String,
    remote: Arc<dyn Host>,
    local: Arc<dyn Host>,
}

impl SharedEtcPve {
    /// The path on this host that shows the node's `path`, when `path` is under `/etc/pve`.
    fn here(&self, path: &Path) -> Option<PathBuf> {
        let rest = path.strip_prefix(ETC_PVE).ok()?;
        let mut parts = Vec::new();
        for c in rest.components() {
            match c {
                Component::Normal(p) => parts.push(p),
                _ => return None,
            }
        }
        let mut here = PathBuf::from(ETC_PVE);
        match parts.first().and_then(|p| p.to_str()) {
            Some("lxc" | "qemu-server" | "openvz") => {
                here.extend(["nodes", &self.node]);
            }
            Some("local") => {
                here.extend(["nodes", &self.node]);
                parts.remove(0);
            }
            _ => {}
        }
        here.extend(parts);
        Some(here)
    }
}

impl SharedEtcPve {
    /// A batch over both places: the node's paths asked at once (`on_node`, one session), the
    /// ones under `/etc/pve` here one by one (`here_one`); the answers in the order of `paths`.
    /// `what` names the batch and its items for the error of a node that answers too few.
    async fn split_batch<T, N, NF, H, HF>(
        &self,
        paths: &[PathBuf],
        what: (&str, &str),
        on_node: N,
        here_one: H,
    ) -> std::result::Result<Vec<std::result::Result<T, ExecError>>, ExecError>
    where
        N: FnOnce(Vec<PathBuf>) -> NF,
        NF: std::future::Future<
            Output = std::result::Result<Vec<std::result::Result<T, ExecError>>, ExecError>,
        >,
        H: Fn(PathBuf) -> HF,
        HF: std::future::Future<Output = std::result::Result<T, ExecError>>,
    {
        let theirs: Vec<PathBuf> = paths
            .iter()
            .filter(|p| self.here(p).is_none())
            .cloned()
            .collect();
        let mut from_node = on_node(theirs).await?.into_iter();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(match self.here(p) {
                Some(here) => here_one(here).await,
                None => from_node.next().unwrap_or_else(|| {
                    Err(ExecError::Protocol {
                        target: self.remote.name(),
                        what: what.0.into(),
                        detail: format!("fewer answers than {}", what.1),
                    })
                }),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Host for SharedEtcPve {
    fn name(&self) -> String {
        self.remote.name()
    }

    /// Locks are the node's (the runfile cache lives on the node, not in `/etc/pve`).
    async fn lock(
        &self,
        path: &Path,
        timeout: Duration,
    ) -> std::result::Result<HostLock, ExecError> {
        self.remote.lock(path, timeout).await
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.remote.resolve(path)
    }

    async fn run(&self, cmd: &Cmd) -> std::result::Result<Output, ExecError> {
        self.remote.run(cmd).await
    }

    async fn read_file(&self, path: &Path) -> std::result::Result<Vec<u8>, ExecError> {
        match self.here(path) {
            Some(here) => self.local.read_file(&here).await,
            None => self.remote.read_file(path).await,
        }
    }

    /// The node's files in one batch on the node, the ones under `/etc/pve` here.
    async fn read_files(
        &self,
        paths: &[PathBuf],
    ) -> std::result::Result<Vec<std::result::Result<Vec<u8>, ExecError>>, ExecError> {
        self.split_batch(
            paths,
            ("a batch of reads", "files"),
            |theirs| async move { self.remote.read_files(&theirs).await },
            |here| async move { self.local.read_file(&here).await },
        )
        .await
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> std::result::Result<(), ExecError> {
        self.remote.write_file_atomic(path, bytes, opts).await
    }

    async fn read_dir(&self, path: &Path) -> std::result::Result<Vec<DirEntry>, ExecError> {
        match self.here(path) {
            Some(here) => self.local.read_dir(&here).await,
            None => self.remote.read_dir(path).await,
        }
    }

    async fn read_dir_matching(
        &self,
        path: &Path,
        keep: &NameMatch,
    ) -> std::result::Result<Vec<DirEntry>, ExecError> {
        match self.here(path) {
            Some(here) => self.local.read_dir_matching(&here, keep).await,
            None => self.remote.read_dir_matching(path, keep).await,
        }
    }

    async fn stat(&self, path: &Path) -> std::result::Result<Option<FileMeta>, ExecError> {
        match self.here(path) {
            Some(here) => self.local.stat(&here).await,
            None => self.remote.stat(path).await,
        }
    }

    /// The node's paths in one batch on the node, the ones under `/etc/pve` here.
    async fn stat_many(
        &self,
        paths: &[PathBuf],
    ) -> std::result::Result<Vec<std::result::Result<Option<FileMeta>, ExecError>>, ExecError> {
        self.split_batch(
            paths,
            ("a batch of stats", "paths"),
            |theirs| async move { self.remote.stat_many(&theirs).await },
            |here| async move { self.local.stat(&here).await },
        )
        .await
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
    /// by giving another host tree (and a container backend), and fails for any other node.
    struct FakeConnector {
        calls: Mutex<Vec<String>>,
        hosts: HashMap<String, (Arc<test_support::FsHost>, Arc<dyn ContainerExec>)>,
    }

    impl FakeConnector {
        fn new(
            hosts: impl IntoIterator<Item = (&'static str, Arc<test_support::FsHost>)>,
        ) -> FakeConnector {
            FakeConnector {
                calls: Mutex::new(Vec::new()),
                hosts: hosts
                    .into_iter()
                    .map(|(n, h)| {
                        let cts: Arc<dyn ContainerExec> =
                            Arc::new(exec_backend::MockContainerExec::new());
                        (n.to_owned(), (h, cts))
                    })
                    .collect(),
            }
        }
    }

    #[async_trait]
    impl NodeConnector for FakeConnector {
        async fn connect(&self, node: &str) -> Result<NodeBackends> {
            self.calls.lock().unwrap().push(node.to_owned());
            // Slow enough that concurrent callers overlap.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let (host, cts) = self.hosts.get(node).ok_or_else(|| Error::NodeUnreachable {
                node: node.to_owned(),
            })?;
            Ok(NodeBackends {
                host: host.clone(),
                cts: cts.clone(),
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
        let connector = Arc::new(FakeConnector::new([("pve2", Arc::new(pve2))]));
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

    #[test]
    fn the_shared_etc_pve_as_this_host_shows_it() {
        let (_d, h) = test_support::FsHost::h200x2();
        let h: Arc<dyn Host> = Arc::new(h);
        let shared = SharedEtcPve {
            node: "pve2".into(),
            remote: h.clone(),
            local: h,
        };
        let here = |p: &str| shared.here(Path::new(p)).map(|p| p.display().to_string());
        assert_eq!(
            here("/etc/pve/lxc/102.conf").as_deref(),
            Some("/etc/pve/nodes/pve2/lxc/102.conf")
        );
        assert_eq!(
            here("/etc/pve/lxc").as_deref(),
            Some("/etc/pve/nodes/pve2/lxc")
        );
        assert_eq!(
            here("/etc/pve/local/lxc/7.conf").as_deref(),
            Some("/etc/pve/nodes/pve2/lxc/7.conf")
        );
        assert_eq!(
            here("/etc/pve/.vmlist").as_deref(),
            Some("/etc/pve/.vmlist")
        );
        assert_eq!(
            here("/etc/pve/nodes/pve3/lxc/9.conf").as_deref(),
            Some("/etc/pve/nodes/pve3/lxc/9.conf")
        );
        for node_only in [
            "/etc/pve/../shadow",
            "/etc/pve/lxc/../../x",
            "/etc/pvex/lxc/1.conf",
            "/run/lock/lxc/pve-config-102.lock",
            "/proc/devices",
        ] {
            assert_eq!(here(node_only), None, "{node_only}");
        }
        assert!(is_node_name("pve2") && is_node_name("node-7"));
        for bad in ["", "..", ".hidden", "a/b", "a b"] {
            assert!(!is_node_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_batch_of_reads_is_split_between_here_and_the_node() {
        let (_d1, here) = test_support::FsHost::h200x2();
        let here = Arc::new(here.with_calls(test_support::CallLog::new()));
        here.put("/etc/pve/nodes/pve2/lxc/7.conf", "here\n");
        let (_d2, node) = test_support::FsHost::h200x2();
        let node = Arc::new(node.with_calls(test_support::CallLog::new()));
        node.put("/etc/hostname", "pve2\n");
        let shared = SharedEtcPve {
            node: "pve2".into(),
            remote: node.clone(),
            local: here.clone(),
        };
        let paths: Vec<PathBuf> = ["/etc/hostname", "/etc/pve/lxc/7.conf", "/nonexistent"]
            .iter()
            .map(Into::into)
            .collect();
        let got = shared.read_files(&paths).await.unwrap();
        assert_eq!(got[0].as_deref().unwrap(), b"pve2\n");
        assert_eq!(got[1].as_deref().unwrap(), b"here\n");
        assert!(matches!(got[2], Err(ExecError::NotFound { .. })));
        assert_eq!(
            node.calls().lines(),
            [
                "host read_file /etc/hostname",
                "host read_file /nonexistent"
            ]
        );
        assert_eq!(
            here.calls().lines(),
            ["host read_file /etc/pve/nodes/pve2/lxc/7.conf"]
        );
        // A batch of stats is split the same way, the answers in the order asked.
        node.calls().take();
        here.calls().take();
        let got = shared.stat_many(&paths).await.unwrap();
        assert!(got[0].as_ref().unwrap().is_some());
        assert!(got[1].as_ref().unwrap().is_some());
        assert_eq!(got[2].as_ref().unwrap(), &None);
        assert_eq!(
            node.calls().lines(),
            ["host stat /etc/hostname", "host stat /nonexistent"]
        );
        assert_eq!(
            here.calls().lines(),
            ["host stat /etc/pve/nodes/pve2/lxc/7.conf"]
        );
    }

    const EXAMPLE_101: &str = include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf");

    /// What pve2's container backend answers: CT 103 runs (its probe says userspace
    /// 550.127.05), 102 and 104 are stopped; all at once (`states`) when `batched`, else only
    /// one by one.
    fn pve2_cts(batched: bool) -> exec_backend::MockContainerExec {
        use exec_backend::{CtState, CtStates, Output};
        let mut cts = exec_backend::MockContainerExec::new();
        // Not an LXC container on a host the tests see (as Pct over SSH would say: the node's).
        cts.expect_lxc_name().returning(|_| None);
        let state = |ct: &str| {
            if ct == "103" {
                CtState::Running
            } else {
                CtState::Stopped
            }
        };
        if batched {
            cts.expect_states().times(1).returning(|| {
                Ok(Some(CtStates::new(
                    [("103".to_owned(), CtState::Running)].into(),
                    CtState::Stopped,
                )))
            });
            cts.expect_state().never();
        } else {
            cts.expect_states().returning(|| Ok(None));
            // The stopped two, after their probes fail (103's probe answers: it runs).
            cts.expect_state()
                .times(2)
                .returning(move |ct| Ok(state(ct.as_str())));
        }
        cts.expect_exec()
            .withf(|ct, _| ct.as_str() == "103")
            .times(1)
            .returning(|_, _| {
                Ok(Output::ok(
                    "probe=1\nsmi_path=/usr/bin/nvidia-smi\nsmi_version= 550.127.05\n",
                ))
            });
        // Without the states of all, a stopped container is probed first (the probe fails,
        // then its state is asked); with them it is not probed at all.
        cts.expect_exec()
            .withf(|ct, _| ct.as_str() != "103")
            .times(if batched { 0 } else { 2 })
            .returning(|_, _| Err(stopped_exec()));
        cts
    }

    /// What `pct exec` into a stopped container fails with.
    fn stopped_exec() -> ExecError {
        ExecError::Failed {
            target: "pve2".into(),
            argv: vec!["pct".into(), "exec".into()],
            status: exec_backend::ExitStatus::Code(255),
            stderr_tail: "container is not running".into(),
        }
    }

    /// `check` of 101 (pve1) and 102..104 (pve2) in one run: the rows as JSON, and what pve2
    /// was asked. `shared`: pve1 shows pve2's configs under /etc/pve/nodes/pve2 (pmxcfs);
    /// `batched`: pve2's backend answers the states of all its containers at once.
    async fn check_pve2(shared: bool, batched: bool) -> (serde_json::Value, Vec<String>) {
        let (_d1, pve1) = test_support::FsHost::h200x2();
        pve1.put(
            VMLIST_PATH,
            r#"{"ids": {"101": {"node": "pve1", "type": "lxc"}, "102": {"node": "pve2", "type": "lxc"},
                "103": {"node": "pve2", "type": "lxc"}, "104": {"node": "pve2", "type": "lxc"}}}"#,
        );
        pve1.put("/etc/hostname", "pve1\n");
        pve1.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        let (_d2, pve2) = test_support::FsHost::h200x2();
        let pve2 = pve2.with_calls(test_support::CallLog::new());
        for id in ["102", "103", "104"] {
            // pmxcfs shows the same file on both nodes.
            pve2.put(&format!("/etc/pve/lxc/{id}.conf"), EXAMPLE_101);
            if shared {
                pve1.put(&format!("/etc/pve/nodes/pve2/lxc/{id}.conf"), EXAMPLE_101);
            }
        }
        let pve2 = Arc::new(pve2);
        let mut connector = FakeConnector::new([("pve2", pve2.clone())]);
        connector.hosts.get_mut("pve2").unwrap().1 = Arc::new(pve2_cts(batched));
        let mut local_cts = exec_backend::MockContainerExec::new();
        // The local host tree has no /proc/net/unix: asked one by one.
        local_cts.expect_states().returning(|| Ok(None));
        local_cts.expect_lxc_name().returning(|_| None);
        local_cts
            .expect_exec()
            .times(1)
            .returning(|_, _| Err(stopped_exec()));
        local_cts
            .expect_state()
            .times(1)
            .returning(|_| Ok(exec_backend::CtState::Stopped));
        let local = Engine::new(Arc::new(pve1), Arc::new(local_cts), Target::Pve);
        let cluster = Arc::new(
            Cluster::discover(local, Some(Arc::new(connector)))
                .await
                .unwrap(),
        );
        let run = crate::fleet::check_many(
            &cluster,
            &crate::fleet::Selection::All,
            &crate::fleet::Expectation::default(),
            None,
            std::num::NonZeroUsize::new(4).unwrap(),
        )
        .await
        .unwrap();
        assert!(run.errors.is_empty(), "{:?}", run.errors);
        let rows = serde_json::to_value(&run.containers).unwrap();
        (rows, pve2.calls().lines())
    }

    #[tokio::test]
    async fn a_run_asks_each_node_once_and_finds_the_same() {
        let (batched, calls) = check_pve2(true, true).await;
        let (one_by_one, calls_one_by_one) = check_pve2(false, false).await;
        assert_eq!(batched, one_by_one, "the same rows either way");
        let rows = batched.as_array().unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r["ct"].as_str().unwrap()).collect();
        assert_eq!(ids, ["101", "102", "103", "104"]);
        for r in rows {
            // The old uvm major: no driver holds it, no node record saw it.
            assert!(r["doubtful"].to_string().contains("508"), "{r:#}");
        }
        assert!(rows[1]["not_checked"]
            .to_string()
            .contains("the container is stopped"));
        assert!(
            rows[2]["findings"].to_string().contains("550.127.05"),
            "{:#}",
            rows[2]
        );
        // pve2 read its inventory once for three containers, and no config: pve1 showed them.
        let count =
            |calls: &[String], what: &str| calls.iter().filter(|c| c.contains(what)).count();
        assert_eq!(count(&calls, "read_file /proc/devices"), 1, "{calls:#?}");
        assert_eq!(
            count(&calls, "read_file /sys/module/nvidia/version"),
            1,
            "{calls:#?}"
        );
        assert_eq!(count(&calls, "/etc/pve"), 0, "{calls:#?}");
        // Without pve1's view, each config is read on pve2 (twice: whether it passes GPUs at
        // all, then the check); the inventory still once.
        assert_eq!(count(&calls_one_by_one, "read_file /etc/pve/lxc/"), 6);
        assert_eq!(count(&calls_one_by_one, "read_file /proc/devices"), 1);
    }

    #[tokio::test]
    async fn writes_go_to_the_node_that_holds_the_lock() {
        let (_d1, pve1) = test_support::FsHost::h200x2();
        pve1.put(
            VMLIST_PATH,
            r#"{"ids": {"102": {"node": "pve2", "type": "lxc"}}}"#,
        );
        pve1.put("/etc/hostname", "pve1\n");
        pve1.put("/etc/pve/nodes/pve2/lxc/102.conf", EXAMPLE_101);
        let pve1 = Arc::new(pve1.with_calls(test_support::CallLog::new()));
        let (_d2, pve2) = test_support::FsHost::h200x2();
        pve2.put("/etc/pve/lxc/102.conf", EXAMPLE_101);
        let pve2 = Arc::new(pve2.with_calls(test_support::CallLog::new()));
        let connector = Arc::new(FakeConnector::new([("pve2", pve2.clone())]));
        let local = Engine::new(
            pve1.clone(),
            Arc::new(exec_backend::MockContainerExec::new()),
            Target::Pve,
        );
        let cluster = Cluster::discover(local, Some(connector)).await.unwrap();
        let ct = CtId::pve("102").unwrap();
        let mut req = crate::Request::new(ct.clone(), "1".parse().unwrap());
        req.config_only = true;
        req.strategy = Some(crate::Strategy::None);
        let report = cluster
            .engine_for(&ct)
            .await
            .1
            .unwrap()
            .apply(&req)
            .await
            .unwrap();
        assert!(report.changed);
        assert_eq!(report.counters.config_writes, 1);
        let written = pve2.get("/etc/pve/lxc/102.conf");
        assert!(written.contains("c 195:1 rwm"), "{written}");
        let calls = pve2.calls().lines();
        assert!(
            calls.contains(&"host write_file_atomic /etc/pve/lxc/102.conf".to_owned()),
            "{calls:#?}"
        );
        assert!(
            !calls.iter().any(|c| c.contains("read_file /etc/pve")),
            "{calls:#?}"
        );
        assert!(pve1
            .calls()
            .lines()
            .contains(&"host read_file /etc/pve/nodes/pve2/lxc/102.conf".to_owned()));
        assert!(!pve1
            .calls()
            .lines()
            .iter()
            .any(|c| c.contains("write_file")));
    }
}
