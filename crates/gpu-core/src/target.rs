//! Where containers live: Proxmox VE or plain LXC, their config files and locks, which
//! container ids are valid, and how a host tells which it is.

use std::path::{Path, PathBuf};

use exec_backend::{CtRef, Host};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::values::CtId;

/// Where containers live and how their configs are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// Proxmox VE: `/etc/pve/lxc/<CTID>.conf`, `pct`.
    Pve,
    /// Plain LXC: `<lxcpath>/<name>/config`, `lxc-*`.
    Lxc {
        /// The LXC path (`/var/lib/lxc`).
        lxcpath: PathBuf,
    },
}

impl Target {
    /// The config file of `ct`.
    pub fn config_path(&self, ct: &CtRef) -> PathBuf {
        match self {
            Target::Pve => PathBuf::from(format!("/etc/pve/lxc/{ct}.conf")),
            Target::Lxc { lxcpath } => lxcpath.join(ct.as_str()).join("config"),
        }
    }

    /// The lock held while the config is edited (Proxmox's own for PVE).
    pub fn lock_path(&self, ct: &CtRef) -> PathBuf {
        match self {
            Target::Pve => PathBuf::from(format!("/run/lock/lxc/pve-config-{ct}.lock")),
            Target::Lxc { .. } => PathBuf::from(format!("/run/lock/phoenix-gpu/lxc-{ct}.lock")),
        }
    }

    /// The config dialect.
    pub fn dialect(&self) -> lxc_conf::Dialect {
        match self {
            Target::Pve => lxc_conf::Dialect::Pve,
            Target::Lxc { .. } => lxc_conf::Dialect::Lxc,
        }
    }
}

impl Target {
    /// What `host` is: Proxmox VE when it has `/etc/pve/lxc`, else plain LXC with containers
    /// under `lxcpath`.
    pub async fn detect(host: &dyn Host, lxcpath: PathBuf) -> Result<Target> {
        let meta = host
            .stat(Path::new(PVE_LXC_DIR))
            .await
            .map_err(|e| Error::exec("cannot tell whether the host runs Proxmox VE", e))?;
        Ok(if meta.is_some() {
            Target::Pve
        } else {
            Target::Lxc { lxcpath }
        })
    }

    /// A container id by this target's rule: a CTID (100 to 999999999) on Proxmox VE, a
    /// container name on plain LXC.
    pub fn ct_id(&self, s: &str) -> Result<CtId> {
        match self {
            Target::Pve => CtId::pve(s),
            Target::Lxc { .. } => CtId::lxc(s),
        }
    }

    /// Refuses an id that is not one of this target's (a name on Proxmox VE).
    pub fn admit(&self, ct: &CtId) -> Result<()> {
        match self {
            Target::Pve if !ct.is_pve() => CtId::pve(ct.as_str()).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The directory whose entries are the containers' configs (Proxmox VE) or folders (LXC).
    pub fn containers_dir(&self) -> PathBuf {
        match self {
            Target::Pve => PathBuf::from(PVE_LXC_DIR),
            Target::Lxc { lxcpath } => lxcpath.clone(),
        }
    }
}

/// Where Proxmox VE keeps this node's container configs.
const PVE_LXC_DIR: &str = "/etc/pve/lxc";
