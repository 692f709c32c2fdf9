//! gpu-core: give NVIDIA GPUs to LXC containers and keep them working.
//!
//! The domain of phoenix-gpu as a library. It reads a host's [`Inventory`], turns a
//! [`Request`] into config edits and container steps, and runs them through the
//! [`exec_backend::Host`] and [`exec_backend::ContainerExec`] it is given, so the same logic
//! runs locally, over SSH and against mocks. It never prints, exits, reads environment
//! variables or parses flags: progress comes as [`Event`]s, results as a serde [`Report`],
//! failures as typed [`Error`]s with an [`ErrorKind`].
#![warn(missing_docs)]
// `Error` keeps backend errors with their context by value; errors are rare and not hot.
#![allow(clippy::result_large_err)]

mod check;
pub mod cluster;
mod config_step;
mod container;
mod counting;
mod engine;
mod error;
pub mod fleet;
pub mod host_prepare;
mod inventory;
mod passthrough;
mod report;
mod request;
mod select;
mod version;

#[cfg(test)]
mod testutil;

pub use check::{CheckReport, Finding, FindingKind};
pub use config_step::{ConfigOutcome, BACKUPS_KEPT};
pub use counting::{CountingExec, CountingHost, Tally};
pub use engine::{chain, Engine, Failure, Settings};
pub use error::{Error, ErrorKind, Result};
pub use inventory::{
    CgroupLayout, DeviceNode, Gpu, Inventory, Majors, NodeKind, MODESET_MINOR, NVIDIACTL_MINOR,
    NVIDIA_MAJOR,
};
pub use passthrough::MountEntry;
pub use report::{
    Counters, Event, EventSink, Report, ReportedError, StepName, StepReport, StepStatus,
};
pub use request::{Mode, Request, RestartPolicy, RunfileSource, Strategy, Target, VersionWanted};
pub use select::{GpuSelection, Selector};
pub use version::DriverVersion;
