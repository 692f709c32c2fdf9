//! A container's current GPU assignment, read back from the passthrough entries of its config:
//! what `sync` re-applies after a host driver upgrade.

use serde::Serialize;

use crate::config_step::{self, Loaded};
use crate::engine::Ctx;
use crate::error::Result;
use crate::inventory::{Inventory, NVIDIA_MAJOR};
use crate::passthrough::{
    dev_value_path, host_source, is_dev_key, is_nvidia_node_path, is_nvidia_userspace_path,
    parse_char_rule, ALLOW_KEYS,
};
use crate::request::{Mode, Request, Strategy};
use crate::select::{GpuSelection, Selector};
use exec_backend::CtRef;

/// What a container's config gives it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CurrentAssignment {
    /// The container.
    pub ct: String,
    /// The GPUs passed, by nvidia-smi index (from the `/dev/nvidia<minor>` nodes, else the
    /// `c 195:<minor>` rules; `all` for a `c 195:*` rule without nodes; `none` when only the
    /// control nodes are passed).
    pub gpus: GpuSelection,
    /// Device minors the config passes that no GPU of the host has (a GPU removed or moved).
    pub unknown_minors: Vec<u32>,
    /// How the passthrough is written: `dev` when it uses `devN` entries, else `raw`.
    pub mode: Mode,
    /// `host-libs` when the config bind-mounts the host's userspace files, else `runfile`.
    pub strategy: Strategy,
    /// Whether the MIG capability nodes are passed.
    pub mig: bool,
}

impl CurrentAssignment {
    /// A request that re-applies this assignment as it is (same GPUs, mode, strategy and MIG
    /// nodes), with the defaults of [`Request::new`] otherwise.
    pub fn request(&self) -> Request {
        let mut r = Request::new(CtRef::new(self.ct.as_str()), self.gpus.clone());
        r.mode = self.mode;
        r.strategy = self.strategy;
        r.mig = self.mig;
        r
    }
}

/// Reads the container's config; `None` when it has no NVIDIA entries.
pub(crate) async fn read(ctx: &Ctx<'_>, inv: &Inventory) -> Result<Option<CurrentAssignment>> {
    let Loaded { doc, .. } = config_step::load(ctx).await?;
    let devices = config_step::proc_devices(ctx.host).await?;
    let root = config_step::host_root(ctx.host);
    let owned = config_step::owned_flags(&doc, &devices, &inv.majors, root.as_deref());
    let entries = doc.main().entries();
    let mut any = false;
    let mut node_minors: Vec<u32> = Vec::new();
    let mut rule_minors: Vec<u32> = Vec::new();
    let mut wildcard = false;
    let mut dev_entries = false;
    let mut host_libs = false;
    let mut mig = false;
    for (e, _) in entries.iter().zip(&owned).filter(|(_, o)| **o) {
        any = true;
        if ALLOW_KEYS.contains(&e.key) {
            if let Some((NVIDIA_MAJOR, minor)) = parse_char_rule(e.value) {
                match minor {
                    None => wildcard = true,
                    Some(m) if m < 254 => rule_minors.push(m),
                    Some(_) => {}
                }
            }
            continue;
        }
        let path = if is_dev_key(e.key) {
            dev_entries = true;
            dev_value_path(e.value).into()
        } else {
            host_source(
                root.as_deref(),
                e.value.split_whitespace().next().unwrap_or(""),
            )
        };
        let path: &str = &path;
        if is_nvidia_userspace_path(path) {
            host_libs = true;
        }
        if !is_nvidia_node_path(path) {
            continue;
        }
        if path.starts_with("/dev/nvidia-caps") {
            mig = true;
        }
        if let Some(m) = path
            .strip_prefix("/dev/nvidia")
            .and_then(|n| n.parse::<u32>().ok())
        {
            node_minors.push(m);
        }
    }
    if !any {
        return Ok(None);
    }
    let mut minors = if node_minors.is_empty() {
        rule_minors
    } else {
        node_minors
    };
    minors.sort_unstable();
    minors.dedup();
    let mut indices = Vec::new();
    let mut unknown_minors = Vec::new();
    for m in &minors {
        match inv.gpus.iter().find(|g| g.minor == *m) {
            Some(g) => indices.push(g.index),
            None => unknown_minors.push(*m),
        }
    }
    indices.sort_unstable();
    let gpus = if !indices.is_empty() {
        GpuSelection::List(indices.into_iter().map(Selector::Index).collect())
    } else if minors.is_empty() && wildcard {
        GpuSelection::All
    } else {
        GpuSelection::None
    };
    Ok(Some(CurrentAssignment {
        ct: ctx.ct.to_string(),
        gpus,
        unknown_minors,
        mode: if dev_entries { Mode::Dev } else { Mode::Raw },
        strategy: if host_libs {
            Strategy::HostLibs
        } else {
            Strategy::Runfile
        },
        mig,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use exec_backend::{CtRef, CtState, MockContainerExec};

    use crate::engine::Engine;
    use crate::request::{Mode, Request, Strategy, Target};
    use crate::select::GpuSelection;
    use test_support::FsHost;

    const EXAMPLE_101: &str = include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf");

    fn engine() -> (tempfile::TempDir, Engine, Arc<FsHost>) {
        let (d, host) = FsHost::h200x2();
        host.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        host.put("/etc/pve/lxc/102.conf", "arch: amd64\nhostname: plain\n");
        let host = Arc::new(host);
        let mut cts = MockContainerExec::new();
        cts.expect_state().returning(|_| Ok(CtState::Stopped));
        (
            d,
            Engine::new(host.clone(), Arc::new(cts), Target::Pve),
            host,
        )
    }

    fn req(gpus: &str, mode: Mode) -> Request {
        let mut r = Request::new(CtRef::new("101"), gpus.parse().unwrap());
        r.mode = mode;
        r.strategy = Strategy::None;
        r.config_only = true;
        r
    }

    #[tokio::test]
    async fn no_nvidia_entries_is_none() {
        let (_d, e, _h) = engine();
        assert_eq!(
            e.current_assignment(&CtRef::new("102")).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn reads_back_what_apply_wrote_by_index() {
        let (_d, e, _h) = engine();
        // The example passes /dev/nvidia0 and a c 195:* wildcard: the nodes decide.
        let a = e
            .current_assignment(&CtRef::new("101"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.gpus.to_string(), "0");
        assert_eq!(a.mode, Mode::Raw);
        assert_eq!(a.strategy, Strategy::Runfile);
        e.apply(&req("1", Mode::Raw)).await.unwrap();
        let a = e
            .current_assignment(&CtRef::new("101"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.gpus, "1".parse::<GpuSelection>().unwrap());
        assert!(a.unknown_minors.is_empty());
        assert!(!a.mig);
        e.apply(&req("0,1", Mode::Raw)).await.unwrap();
        let a = e
            .current_assignment(&CtRef::new("101"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.gpus.to_string(), "0,1");
    }

    #[tokio::test]
    async fn dev_mode_and_a_gpu_the_host_lost() {
        let (_d, e, host) = engine();
        host.put(
            "/var/lib/dpkg/status",
            "Package: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n",
        );
        e.apply(&req("1", Mode::Dev)).await.unwrap();
        let a = e
            .current_assignment(&CtRef::new("101"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.mode, Mode::Dev);
        assert_eq!(a.gpus.to_string(), "1");
        let conf = std::fs::read_to_string(host.path("/etc/pve/lxc/101.conf")).unwrap();
        host.put(
            "/etc/pve/lxc/101.conf",
            conf.replace("dev0: /dev/nvidia1", "dev0: /dev/nvidia7"),
        );
        let a = e
            .current_assignment(&CtRef::new("101"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.unknown_minors, vec![7]);
        assert_eq!(a.gpus, GpuSelection::None);
    }
}
