//! gpu-core: give NVIDIA GPUs to LXC containers and keep them working.
//!
//! The domain of phoenix-gpu as a library. It reads a host's [`Inventory`], turns a
//! [`Request`] into config edits and container steps, and runs them through the
//! [`exec_backend::Host`] and [`exec_backend::ContainerExec`] it is given, so the same logic
//! runs locally, over SSH and against mocks. It never prints, exits, reads environment
//! variables or parses flags: progress comes as [`Event`]s, results as a serde [`Report`],
//! failures as typed [`Error`]s with an [`ErrorKind`].
//!
//! # Embedding
//!
//! 1. Choose the backends once: a [`Host`](exec_backend::Host) (`LocalHost`, `SshHost`, or
//!    `LocalHost::with_root` for a captured host tree) and a way into its containers
//!    (`Pct` on Proxmox VE, `LxcAttach` on plain LXC), and build an [`Engine`] for the
//!    [`Target`].
//! 2. [`Engine::inventory`] says what the host has: GPUs, majors, nodes, driver, cgroup layout.
//! 3. A [`Request`] names the container ([`CtId`], by [`Target::ct_id`]), the GPUs
//!    ([`GpuSelection`]), the [`Mode`], the [`Strategy`] and the versions; every value is a
//!    validated type parsed with `FromStr`, so a request cannot hold an invalid one. [`Engine::plan`] runs it with `dry_run` set: the
//!    [`Report`] carries the config diff ([`Report::config_diff`]) and the steps it would
//!    take, and nothing changes.
//! 4. [`Engine::apply`] converges the container. Progress arrives on the [`EventSink`] given
//!    with [`Engine::with_events`] (a callback, or [`EventSink::channel`] for a tokio
//!    channel); the result is the [`Report`] the CLI prints with `--json` (without its
//!    `exit_code`), or a [`Failure`] with the report of the steps that ran and a typed
//!    [`Error`]. Match on [`Error::kind`] (or the variant) to tell a missing GPU
//!    ([`Error::GpuNotPresent`]) from a locked config ([`Error::Locked`],
//!    [`Error::LockBusy`]) or a failed install ([`Error::Install`]).
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use exec_backend::{LocalHost, Pct};
//! use gpu_core::{Engine, Request, StepName, StepStatus, Strategy, Target};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // The captured 2 x H200 host of the repository: its /proc, /sys, /dev and a Proxmox CT.
//! let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/h200x2");
//! let host = Arc::new(LocalHost::with_root(&root));
//! let engine = Engine::new(host.clone(), Arc::new(Pct::new(host)), Target::Pve);
//!
//! let inv = engine.inventory().await?;
//! assert_eq!(inv.driver_version.to_string(), "580.159.04");
//! assert_eq!(inv.gpus.len(), 2);
//!
//! // Plan GPU 1 for CT 101, devices only, stopping after the config step.
//! let mut req = Request::new(Target::Pve.ct_id("101")?, "1".parse()?);
//! req.strategy = Some(Strategy::None);
//! req.config_only = true;
//! let plan = engine.plan(&req).await.map_err(|f| f.error)?;
//! assert_eq!(plan.step(StepName::Config).unwrap().status, StepStatus::Planned);
//! assert!(plan.config_diff.contains("+lxc.cgroup2.devices.allow: c 195:1 rwm"));
//! assert_eq!(plan.counters.config_writes, 0);
//! # Ok::<(), gpu_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! `examples/plan_apply.rs` applies a request against mock backends with progress events;
//! `examples/inventory.rs` prints the inventory of a host tree.
#![warn(missing_docs)]
// `Error` keeps backend errors with their context by value; errors are rare and not hot.
#![allow(clippy::result_large_err)]

// The modules, from the leaves up (docs/architecture.md has the table of what each owns and
// may import): values and host facts; the step context; the config as read and its
// read-back; the steps; the operations of the engine; many containers and the cluster.
mod error;
mod finding;
mod idmap;
mod inventory;
mod passthrough;
mod record;
mod report;
mod request;
mod select;
mod settings;
mod target;
mod values;
mod version;

mod counting;
mod facts;
mod step;

mod ctconfig;
mod current;

mod assignment;
mod check;
mod config_step;
mod container;
mod host_check;
mod host_libs;

mod engine;

pub mod cluster;
pub mod fleet;
pub mod host_prepare;
pub mod orchestrator;

pub use assignment::CurrentAssignment;
pub use config_step::{ConfigOutcome, BACKUPS_KEPT};
pub use counting::{scope, BackendHost, CountingExec, CountingHost, Tally};
pub use engine::Engine;
pub use error::{
    chain, Error, ErrorKind, Holder, Input, InstallCause, NodeRefusal, PrepareFolder, RestartCause,
    Result, SmiFailure, VerifyCause, VerifyProblem,
};
pub use finding::{CheckReport, Finding, FindingKind};
pub use inventory::{
    CgroupLayout, DeviceNode, Gpu, Inventory, Majors, NodeKind, MODESET_MINOR, NVIDIACTL_MINOR,
    NVIDIA_MAJOR,
};
pub use passthrough::MountEntry;
pub use report::{
    Activation, Counters, Event, EventSink, LiveChange, Report, ReportedError, RestartReason,
    StepName, StepReport, StepStatus, SCHEMA_VERSION,
};
pub use request::{Mode, Request, RequestTemplate, RestartPolicy, RunfileSource, Strategy};
pub use select::{GpuSelection, Selector};
pub use settings::Settings;
pub use step::Failure;
pub use target::Target;
pub use values::{CtId, CudaVersion, HttpUrl, PackageName, Sha256};
pub use version::{DriverVersion, VersionWanted};
