//! A Proxmox cluster: which node each container lives on (`/etc/pve/.vmlist`).

use std::collections::BTreeMap;
use std::path::Path;

use exec_backend::{ExecError, Host};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
        Err(e) => Err(Error::exec(format!("read {VMLIST_PATH}"), e)),
    }
}

/// The host's node name (`/etc/hostname`, short form), as Proxmox names nodes.
pub async fn local_node(host: &dyn Host) -> Result<String> {
    let bytes = host
        .read_file(Path::new("/etc/hostname"))
        .await
        .map_err(|e| Error::exec("read /etc/hostname", e))?;
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
}
