//! The container side: restart, the one probe, userspace, CUDA, tools, verification.

use crate::config_step::ConfigOutcome;
use crate::engine::{Ctx, Run};
use crate::error::Result;
use crate::inventory::{Gpu, Inventory};
use crate::report::StepStatus;
use crate::request::Request;

/// Restart when needed, then probe once and converge userspace, CUDA and tools, then verify.
pub(crate) async fn converge(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    cfg: &ConfigOutcome,
    run: &mut Run<'_>,
) -> Result<()> {
    let _ = (ctx, req, inv, gpus, cfg, run);
    todo!("issue 5: container side")
}

/// `nvidia-smi` inside must list exactly `gpus` (by UUID) at the host's driver version.
pub(crate) async fn verify(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<((), StepStatus, String)> {
    let _ = (ctx, req, inv, gpus);
    todo!("issue 5: verify")
}
