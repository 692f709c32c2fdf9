//! The engine: the entry point of every operation on the containers of one host. Each
//! operation has its own file (`apply`, `plan`, `verify`, `check`, `remove`, and `containers`
//! for the read-only questions about a host's containers); they build a [`Run`] over the
//! step context ([`Ctx`]) and the steps below them.

mod apply;
mod check;
mod containers;
mod plan;
mod remove;
mod verify;

use std::sync::Arc;

use exec_backend::{ContainerExec, CtRef, Host};

use crate::counting::{CountingExec, CountingHost, Tally};
use crate::error::Result;
use crate::facts::HostFacts;
use crate::inventory::Inventory;
use crate::report::EventSink;
use crate::settings::Settings;
use crate::step::{Ctx, Run};
use crate::target::Target;
use crate::values::CtId;

/// Runs operations on the containers of one host.
#[derive(Clone)]
pub struct Engine {
    host: Arc<dyn Host>,
    cts: Arc<dyn ContainerExec>,
    target: Target,
    settings: Settings,
    events: EventSink,
    /// What a run reads of the host once (shared by clones), or nothing kept.
    facts: Arc<HostFacts>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host.name())
            .field("target", &self.target)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The host and container backends of one operation, wrapped so that they count into `tally`.
struct Counted {
    tally: Arc<Tally>,
    host: CountingHost,
    cts: CountingExec,
}

impl Engine {
    /// An engine for containers of `target` on `host`, entered through `cts`.
    pub fn new(host: Arc<dyn Host>, cts: Arc<dyn ContainerExec>, target: Target) -> Engine {
        Engine {
            host,
            cts,
            target,
            settings: Settings::default(),
            events: EventSink::none(),
            facts: Arc::new(HostFacts::fresh()),
        }
    }

    /// This engine for one run over many containers: the host's inventory, its device table
    /// and the run states of its containers are read once, when first needed, and shared by
    /// this engine's clones, so every container of the run (and `check` of any number of
    /// them) costs the host those questions once. What was read stays as read for the run:
    /// make a new one for the next run. A [`Cluster`](crate::cluster::Cluster) makes its
    /// engines so.
    pub fn for_run(mut self) -> Engine {
        self.facts = Arc::new(HostFacts::kept());
        self
    }

    /// Replaces the settings.
    pub fn with_settings(mut self, settings: Settings) -> Engine {
        self.settings = settings;
        self
    }

    /// Delivers progress events to `events`.
    pub fn with_events(mut self, events: EventSink) -> Engine {
        self.events = events;
        self
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The host.
    pub fn host(&self) -> &Arc<dyn Host> {
        &self.host
    }

    /// An engine like this one (same target, settings and events) for another node's
    /// backends.
    pub fn on_node(&self, host: Arc<dyn Host>, cts: Arc<dyn ContainerExec>) -> Engine {
        Engine {
            host,
            cts,
            target: self.target.clone(),
            settings: self.settings.clone(),
            events: self.events.clone(),
            facts: Arc::new(if self.facts.is_kept() {
                HostFacts::kept()
            } else {
                HostFacts::fresh()
            }),
        }
    }

    /// Reads the host's inventory (once per run with [`Engine::for_run`]).
    pub async fn inventory(&self) -> Result<Inventory> {
        self.facts.inventory(self.host.as_ref()).await
    }

    /// Reads ahead what a run over many of this host's containers asks of the host (its
    /// inventory, and with `states` the states of its containers), so that they are read
    /// once, now, before the containers are worked on. Does nothing unless the engine is
    /// [for a run](Engine::for_run); a failure is left for each container to meet.
    pub(crate) async fn read_ahead(&self, states: bool) {
        if !self.facts.is_kept() {
            return;
        }
        let inventory = self.facts.inventory(self.host.as_ref());
        let states = async {
            if states {
                self.facts.states(self.cts.as_ref()).await;
            }
        };
        let _ = tokio::join!(inventory, states);
    }

    /// Fresh counting wrappers of the backends, for one operation.
    fn counted(&self) -> Counted {
        let tally = Arc::new(Tally::default());
        Counted {
            host: CountingHost::new(self.host.clone(), tally.clone()),
            cts: CountingExec::new(self.cts.clone(), tally.clone()),
            tally,
        }
    }

    /// The step context of one operation on `ct`.
    fn ctx<'a>(&'a self, counted: &'a Counted, ct: &'a CtRef) -> Ctx<'a> {
        Ctx {
            host: &counted.host,
            cts: &counted.cts,
            target: &self.target,
            settings: &self.settings,
            events: &self.events,
            ct,
            facts: &self.facts,
        }
    }

    /// A run that reports to this engine's events.
    fn run<'a>(&'a self, ct: &CtRef) -> Run<'a> {
        Run::new(ct, &self.events)
    }

    /// Refuses a container id that is not one of this engine's target (a name on Proxmox VE).
    fn admit(&self, ct: &CtId) -> Result<()> {
        self.target.admit(ct)
    }
}
