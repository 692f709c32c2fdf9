//! What an operation did, as serde types with stable field names (the CLI's `--json`), and the
//! progress events delivered while it runs.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{ErrorKind, Holder};

/// The version of the JSON contract: the field names and meanings of the serde types here
/// ([`Report`], [`StepReport`], [`Counters`], [`ReportedError`], [`Event`]) and of the
/// `phoenix-gpu` binary's `--json` output built from them, which carries it as
/// `schema_version` (`docs/schema/phoenix-gpu.schema.json` documents that output).
///
/// It goes up by one when a change can break a reader: a field removed or renamed, a type or a
/// meaning changed, a value of an enum removed. Adding a field, an optional object or an enum
/// value does not change it: readers ignore fields they do not know and treat an unknown
/// value as such.
pub const SCHEMA_VERSION: u32 = 1;

/// The steps of `apply`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StepName {
    /// Inventory and host preconditions.
    HostCheck,
    /// The container config's passthrough entries.
    Config,
    /// Restart (or start) of the container.
    Restart,
    /// The driver userspace in the container.
    Userspace,
    /// The CUDA toolkit.
    Cuda,
    /// Extra tools such as nvtop.
    Tools,
    /// nvidia-smi inside the container against the assignment.
    Verify,
    /// Taking the tool's entries out (`remove`).
    Remove,
}

impl StepName {
    /// The name as printed (`host-check`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::HostCheck => "host-check",
            StepName::Config => "config",
            StepName::Restart => "restart",
            StepName::Userspace => "userspace",
            StepName::Cuda => "cuda",
            StepName::Tools => "tools",
            StepName::Verify => "verify",
            StepName::Remove => "remove",
        }
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Looked and found nothing to do.
    Ok,
    /// Changed something.
    Changed,
    /// Would change something (plan, dry run).
    Planned,
    /// Not run (not asked for, or not needed).
    Skipped,
    /// Failed; the report's error says why.
    Failed,
}

/// One step's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Which step.
    pub name: StepName,
    /// How it ended.
    pub status: StepStatus,
    /// One line for a person: what was found or done.
    pub detail: String,
    /// Wall time of the step in milliseconds.
    pub duration_ms: u64,
}

/// How many operations a run cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Commands run inside the container (exec and push).
    pub container_execs: u64,
    /// Processes started inside the container: what the probe, the verification and the
    /// clean-up report (`/proc/sys/kernel/ns_last_pid`), one for any other exec or push.
    pub container_processes: u64,
    /// Processes started on the host: the domain's own commands and the container backend's
    /// (`lxc-attach`, `lxc-info`, `pct`; over SSH each `ssh` client).
    pub host_commands: u64,
    /// Config files written (not the node record).
    pub config_writes: u64,
    /// Container restarts and starts.
    pub restarts: u64,
}

/// How a running container got its changed config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Activation {
    /// In the running container, without a restart: its device cgroup and its device nodes
    /// were changed to what the new config gives at a start.
    Live(LiveChange),
    /// By restarting the container.
    Restart {
        /// Why it could not be changed live.
        reason: RestartReason,
        /// The reason in words.
        detail: String,
    },
    /// Not yet: a restart is needed and restarts are off (or this is a dry run); the container
    /// keeps its old devices until its next restart.
    Pending {
        /// Why it could not be changed live.
        reason: RestartReason,
        /// The reason in words.
        detail: String,
    },
}

/// What a live change did in a running container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveChange {
    /// Device nodes made (or remade with other numbers, mode or owner) inside: `/dev/nvidia1`.
    pub added: Vec<String>,
    /// Device nodes taken away inside.
    pub removed: Vec<String>,
    /// Device cgroup rules allowed: `c 195:1 rwm`.
    pub allowed: Vec<String>,
    /// Device cgroup rules denied.
    pub denied: Vec<String>,
    /// Processes that hold a taken device open and were left running (the change was forced):
    /// they keep their open handles until they exit.
    pub held: Vec<Holder>,
}

/// Why a running container is restarted instead of changed live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestartReason {
    /// The caller asked for a restart.
    Asked,
    /// Bind mounts of the host's userspace (`host-libs`) come or go: a running container
    /// cannot gain or lose a mount entry of its config.
    HostLibs,
    /// The MIG capability nodes change (a bind mount of the `/dev/nvidia-caps` directory).
    Mig,
    /// The container backend does not reach the container through LXC on its host.
    NoLxc,
    /// The container lacks a program the live change runs inside (`mount`, `umount`, `stat`).
    ContainerTools,
    /// On a cgroup v1 host, processes of the container sit in nested device cgroups, which an
    /// allow rule written to the container's cgroup does not reach.
    NestedCgroupV1,
    /// The live change was tried and failed.
    LiveFailed,
}

/// The error part of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedError {
    /// Its kind (the CLI maps it to the exit code).
    pub kind: ErrorKind,
    /// The whole cause chain, joined by `: `.
    pub message: String,
}

/// What one operation on one container did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The container.
    pub ct: String,
    /// Whether anything was changed (config written, container restarted, software installed).
    pub changed: bool,
    /// The steps in the order they ran.
    pub steps: Vec<StepReport>,
    /// Operation counts.
    pub counters: Counters,
    /// The unified diff of the config (empty when it did not change).
    pub config_diff: String,
    /// How the running container got the changed config (`None`: the config did not change,
    /// or the container was not running).
    pub activation: Option<Activation>,
    /// The failure, when the operation failed.
    pub error: Option<ReportedError>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

impl Report {
    /// An empty report for `ct`.
    pub fn new(ct: impl Into<String>) -> Report {
        Report {
            ct: ct.into(),
            changed: false,
            steps: Vec::new(),
            counters: Counters::default(),
            config_diff: String::new(),
            activation: None,
            error: None,
            duration_ms: 0,
        }
    }

    /// The report of one step, if it ran.
    pub fn step(&self, name: StepName) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// A progress event, delivered to the caller while an operation runs. gpu-core never prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A step started.
    StepStarted {
        /// The container.
        ct: String,
        /// The step.
        step: StepName,
    },
    /// A step finished.
    StepFinished {
        /// The container.
        ct: String,
        /// Its report.
        report: StepReport,
    },
    /// Progress of a long transfer or install (`done` of `total` units, bytes for downloads).
    Progress {
        /// The container (empty for host-wide work such as a download).
        ct: String,
        /// What is progressing: `download NVIDIA-Linux-x86_64-580.159.04.run`.
        what: String,
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
    },
    /// A notable thing a person should see (a forced version, a skipped step).
    Notice {
        /// The container.
        ct: String,
        /// The message.
        message: String,
    },
}

/// Where events go: a callback the caller gives. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventSink(Option<Arc<dyn Fn(Event) + Send + Sync>>);

impl EventSink {
    /// A sink that calls `f` for each event (from any task; keep it quick).
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> EventSink {
        EventSink(Some(Arc::new(f)))
    }

    /// A sink that drops events.
    pub fn none() -> EventSink {
        EventSink(None)
    }

    /// A sink that sends each event on a new tokio channel, and the channel's receiver. The
    /// channel is unbounded (an operation emits a few events per step); events sent after the
    /// receiver is dropped are dropped.
    ///
    /// ```
    /// use gpu_core::{Event, EventSink};
    ///
    /// let (sink, mut rx) = EventSink::channel();
    /// sink.emit(Event::Notice { ct: "101".into(), message: "hello".into() });
    /// assert!(matches!(rx.try_recv(), Ok(Event::Notice { .. })));
    /// ```
    pub fn channel() -> (EventSink, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink::sender(tx), rx)
    }

    /// A sink that sends each event on `tx` (dropped once the receiver is gone).
    pub fn sender(tx: mpsc::UnboundedSender<Event>) -> EventSink {
        EventSink::new(move |e| {
            let _ = tx.send(e);
        })
    }

    /// Delivers one event.
    pub fn emit(&self, event: Event) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "EventSink(callback)"
        } else {
            "EventSink(none)"
        })
    }
}
