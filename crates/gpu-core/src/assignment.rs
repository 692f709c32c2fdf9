//! A container's current GPU assignment, read back from the passthrough entries of its config:
//! what `sync` re-applies after a host driver upgrade.

use serde::Serialize;

use crate::current;
use crate::error::Result;
use crate::inventory::Inventory;
use crate::request::{Mode, Request, Strategy};
use crate::select::{GpuSelection, Selector};
use crate::step::Ctx;
use crate::values::CtId;

/// What a container's config gives it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CurrentAssignment {
    /// The container.
    pub ct: CtId,
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
        let mut r = Request::new(self.ct.clone(), self.gpus.clone());
        r.mode = self.mode;
        r.strategy = Some(self.strategy);
        r.mig = self.mig;
        r
    }
}

/// Reads the container's config; `None` when it has no NVIDIA entries.
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    ct: &CtId,
    inv: &Inventory,
) -> Result<Option<CurrentAssignment>> {
    let current = current::read(ctx, Some(inv), None).await?;
    if !current.any() {
        return Ok(None);
    }
    // The nodes say which GPUs are passed; without nodes, the rules do.
    let mut minors = current.node_minors();
    if minors.is_empty() {
        minors = current.rule_minors();
    }
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
    } else if minors.is_empty() && current.allows_every_gpu() {
        GpuSelection::All
    } else {
        GpuSelection::None
    };
    Ok(Some(CurrentAssignment {
        ct: ct.clone(),
        gpus,
        unknown_minors,
        mode: if current.dev_entries() {
            Mode::Dev
        } else {
            Mode::Raw
        },
        strategy: current.strategy(),
        mig: current.mig(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use exec_backend::{CtState, MockContainerExec};

    use crate::values::CtId;

    use crate::engine::Engine;
    use crate::request::{Mode, Request, Strategy};
    use crate::select::GpuSelection;
    use crate::target::Target;
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
        let mut r = Request::new("101".parse::<CtId>().unwrap(), gpus.parse().unwrap());
        r.mode = mode;
        r.strategy = Some(Strategy::None);
        r.config_only = true;
        r
    }

    #[tokio::test]
    async fn no_nvidia_entries_is_none() {
        let (_d, e, _h) = engine();
        assert_eq!(
            e.current_assignment(&"102".parse::<CtId>().unwrap())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn reads_back_what_apply_wrote_by_index() {
        let (_d, e, _h) = engine();
        // The example passes /dev/nvidia0 and a c 195:* wildcard: the nodes decide.
        let a = e
            .current_assignment(&"101".parse::<CtId>().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.gpus.to_string(), "0");
        assert_eq!(a.mode, Mode::Raw);
        assert_eq!(a.strategy, Strategy::Runfile);
        e.apply(&req("1", Mode::Raw)).await.unwrap();
        let a = e
            .current_assignment(&"101".parse::<CtId>().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.gpus, "1".parse::<GpuSelection>().unwrap());
        assert!(a.unknown_minors.is_empty());
        assert!(!a.mig);
        e.apply(&req("0,1", Mode::Raw)).await.unwrap();
        let a = e
            .current_assignment(&"101".parse::<CtId>().unwrap())
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
            .current_assignment(&"101".parse::<CtId>().unwrap())
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
            .current_assignment(&"101".parse::<CtId>().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.unknown_minors, vec![7]);
        assert_eq!(a.gpus, GpuSelection::None);
    }
}
