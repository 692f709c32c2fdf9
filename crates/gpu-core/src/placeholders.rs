//! PLACEHOLDERS FOR THE LEAD TO WIRE AT MERGE (host-side branch).
//!
//! The container side (branch `container-side`) provides the real functions. Until the branches
//! meet, these stand-ins keep the host side compiling and testable:
//! - `hostlibs_mounts`: wired (container-side branch): the config step calls
//!   `crate::container::hostlibs::mounts`.
//! - [`probe_userspace_version`] → replace with `crate::container::userspace_probe(ctx)` (same
//!   return type; it needs `state` and `exec` expectations in check's mock tests).
//!
//! Both fail loudly instead of pretending: nothing here is a finished feature.

use crate::engine::Ctx;
use crate::error::Result;
use crate::inventory::Inventory;
use crate::version::DriverVersion;

/// What the container probe said about the NVIDIA userspace inside a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UserspaceProbe {
    /// The probe did not run (why: not wired, container stopped, ...).
    Skipped(String),
    /// The userspace version found, `None` when no NVIDIA userspace is installed.
    #[allow(dead_code)] // built by the real probe, which the lead wires in
    Installed(Option<DriverVersion>),
}

/// PLACEHOLDER: the NVIDIA userspace version inside the container. The real one comes from
/// the container probe (`crate::container`); this one reports that it did not run.
pub(crate) async fn probe_userspace_version(
    ctx: &Ctx<'_>,
    inv: &Inventory,
) -> Result<UserspaceProbe> {
    let _ = (ctx, inv);
    Ok(UserspaceProbe::Skipped(
        "the container probe is not wired into this build yet".into(),
    ))
}
