//! What a run reads of a host once: its inventory, its character-device table and the run
//! states of its containers.
//!
//! An engine made for one run over many containers ([`Engine::for_run`](crate::Engine::for_run))
//! keeps them ([`HostFacts::kept`]): the first container that needs one reads it, the others
//! (on the same engine or its clones) share it, so that a node answers these questions once
//! per run, not once per container. A failed read is not kept: the next container reads again
//! and gets its own error. Any other engine reads afresh for every operation
//! ([`HostFacts::fresh`]), as a long-lived embedder expects.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use exec_backend::{ContainerExec, CtRef, CtState, CtStates, ExecError, Host, Output};
use tokio::sync::OnceCell;
use tracing::debug;

use crate::error::Result;
use crate::inventory::{read_proc_devices, Inventory, ProcDevices};

/// A host's facts for one run, or none kept.
#[derive(Debug, Default)]
pub(crate) struct HostFacts {
    /// Whether reads are kept for the run.
    kept: bool,
    inventory: OnceCell<Inventory>,
    devices: OnceCell<ProcDevices>,
    /// `None` inside: the container backend cannot answer for all containers at once.
    states: OnceCell<Option<Arc<CtStates>>>,
}

impl HostFacts {
    /// Reads afresh each time.
    pub fn fresh() -> HostFacts {
        HostFacts::default()
    }

    /// Reads once, at first need, and keeps what it read.
    pub fn kept() -> HostFacts {
        HostFacts {
            kept: true,
            ..HostFacts::default()
        }
    }

    /// Whether reads are kept.
    pub fn is_kept(&self) -> bool {
        self.kept
    }

    /// The host's inventory.
    pub async fn inventory(&self, host: &dyn Host) -> Result<Inventory> {
        if !self.kept {
            return Inventory::read(host).await;
        }
        let inv = self
            .inventory
            .get_or_try_init(|| async {
                let (inv, devices) = Inventory::read_with_devices(host).await?;
                // The table the inventory was read from is the run's table too.
                let _ = self.devices.set(devices);
                debug!(host = %host.name(), "inventory kept for the run");
                Ok::<_, crate::Error>(inv)
            })
            .await?;
        Ok(inv.clone())
    }

    /// The host's character-device table (empty without `/proc/devices`).
    pub async fn proc_devices(&self, host: &dyn Host) -> Result<ProcDevices> {
        if !self.kept {
            return read_proc_devices(host).await;
        }
        self.devices
            .get_or_try_init(|| read_proc_devices(host))
            .await
            .cloned()
    }

    /// The states of all the host's containers, asked once per run; `None` when reads are not
    /// kept, or when `cts` cannot answer for all at once or failed to (then each container is
    /// asked on its own, as without a run, and its own error is its own).
    pub async fn states(&self, cts: &dyn ContainerExec) -> Option<Arc<CtStates>> {
        if !self.kept {
            return None;
        }
        self.states
            .get_or_init(|| async {
                match cts.states().await {
                    Ok(states) => states.map(Arc::new),
                    Err(e) => {
                        debug!(error = %e, "the states of all containers could not be read at once; asking each");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

/// The container backend of a read-only operation in a run: the state of a container comes
/// from the run's [`CtStates`] (read once for the host); everything else goes to `inner`.
pub(crate) struct KnownStates<'a> {
    inner: &'a dyn ContainerExec,
    states: Option<Arc<CtStates>>,
}

impl<'a> KnownStates<'a> {
    /// `inner`, with `states` answering [`ContainerExec::state`] when given.
    pub fn new(inner: &'a dyn ContainerExec, states: Option<Arc<CtStates>>) -> KnownStates<'a> {
        KnownStates { inner, states }
    }
}

#[async_trait]
impl ContainerExec for KnownStates<'_> {
    async fn exec(
        &self,
        ct: &CtRef,
        cmd: &exec_backend::Cmd,
    ) -> std::result::Result<Output, ExecError> {
        self.inner.exec(ct, cmd).await
    }

    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> std::result::Result<(), ExecError> {
        self.inner.push_file(ct, src, dest, mode).await
    }

    async fn state(&self, ct: &CtRef) -> std::result::Result<CtState, ExecError> {
        match &self.states {
            Some(s) => Ok(s.of(ct)),
            None => self.inner.state(ct).await,
        }
    }

    async fn states(&self) -> std::result::Result<Option<CtStates>, ExecError> {
        Ok(self.states.as_deref().cloned())
    }

    async fn start(&self, ct: &CtRef) -> std::result::Result<(), ExecError> {
        self.inner.start(ct).await
    }

    async fn stop(&self, ct: &CtRef) -> std::result::Result<(), ExecError> {
        self.inner.stop(ct).await
    }
}
