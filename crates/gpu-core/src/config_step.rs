//! The config step: compute the container config with the wanted passthrough entries, show the
//! diff, write it atomically under the lock, keep a backup.

use crate::engine::Ctx;
use crate::error::Result;
use crate::inventory::{Gpu, Inventory};
use crate::report::StepStatus;
use crate::request::Request;

/// What the config step found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOutcome {
    /// Unified diff of the config (empty when unchanged).
    pub diff: String,
    /// Whether the config differs from what it should be (written unless dry run).
    pub changed: bool,
    /// Whether it was written.
    pub written: bool,
    /// Whether the container is unprivileged.
    pub unprivileged: bool,
}

/// Brings the config's passthrough entries to what `req` asks for.
pub(crate) async fn apply(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<(ConfigOutcome, StepStatus, String)> {
    let _ = (ctx, req, inv, gpus);
    todo!("issue 4: config step")
}

/// Takes the tool's lines out of the config. Returns the diff.
pub(crate) async fn remove(ctx: &Ctx<'_>, dry_run: bool) -> Result<(String, StepStatus, String)> {
    let _ = (ctx, dry_run);
    todo!("issue 4: remove")
}
