//! The container side: restart, the one probe, userspace, CUDA, tools, verification.
//!
//! After the config step, [`converge`] restarts the container when its config changed (or
//! starts it with `--start`), asks it everything in one probe exec, and runs each step only
//! where the probe says something is missing. When nothing was installed, verification reads
//! the probe's own `nvidia-smi` answer, so a converged container costs exactly one exec.

pub(crate) mod cuda;
pub(crate) mod download;
pub(crate) mod hostlibs;
pub(crate) mod probe;
pub(crate) mod restart;
pub(crate) mod runfile;
pub(crate) mod verify;

#[cfg(test)]
mod tests;

use crate::config_step::ConfigOutcome;
use crate::error::Result;
use crate::inventory::{Gpu, Inventory};
use crate::report::{Event, StepName, StepStatus};
use crate::request::{Request, Strategy};
use crate::step::{Ctx, Run};

/// For `check` (drift detection): the one probe and what it found.
#[allow(unused_imports)]
pub(crate) use probe::{probe, Probe};

/// Restart when needed, then probe once and converge userspace, CUDA and tools, then verify.
pub(crate) async fn converge(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    cfg: &ConfigOutcome,
    run: &mut Run<'_>,
) -> Result<()> {
    let after = run
        .step(StepName::Restart, restart::step(ctx, req, cfg))
        .await?;
    if after.pending {
        ctx.events.emit(Event::Notice {
            ct: ctx.ct.to_string(),
            message: "the config changed and a restart is pending: the GPUs appear in the container after its next restart".into(),
        });
    }
    if gpus.is_empty() {
        // `--gpus none`: the config step took the passthrough out; no userspace to converge.
        for s in [
            StepName::Userspace,
            StepName::Cuda,
            StepName::Tools,
            StepName::Verify,
        ] {
            run.skip(s, "no GPU assigned");
        }
        return Ok(());
    }
    if !after.running {
        let why = if req.dry_run && req.restart.start_if_stopped {
            "container is stopped; it would be probed once started"
        } else {
            "container is not running and starting it was not asked for"
        };
        for s in [
            StepName::Userspace,
            StepName::Cuda,
            StepName::Tools,
            StepName::Verify,
        ] {
            run.skip(s, why);
        }
        return Ok(());
    }

    let (probe, mut changed) = run
        .step(StepName::Userspace, async {
            let probe = probe::probe(ctx, &req.tools).await?;
            let (changed, status, detail) = match req.strategy_or_default() {
                Strategy::Runfile => runfile::step(ctx, req, inv, &probe).await?,
                Strategy::HostLibs => {
                    hostlibs::step(ctx, req.dry_run, after.pending, inv, &probe).await?
                }
                Strategy::None => (
                    false,
                    StepStatus::Skipped,
                    "strategy none: devices only".into(),
                ),
            };
            Ok(((probe, changed), status, detail))
        })
        .await?;

    let mut apt = cuda::Apt::default();
    changed |= run
        .step(StepName::Cuda, cuda::step(ctx, req, &probe, &mut apt))
        .await?;
    changed |= run
        .step(StepName::Tools, cuda::tools(ctx, req, &probe, &mut apt))
        .await?;

    if after.pending {
        run.skip(
            StepName::Verify,
            "restart pending: verification needs the container restarted with the new config",
        );
        return Ok(());
    }
    if req.dry_run
        && run
            .report
            .steps
            .iter()
            .any(|s| s.status == StepStatus::Planned)
    {
        run.skip(StepName::Verify, "dry run: would verify after the changes");
        return Ok(());
    }
    run.step(StepName::Verify, async {
        let fresh;
        let seen = if changed {
            fresh = probe::probe_smi(ctx).await?;
            &fresh
        } else {
            &probe
        };
        let line = verify::check(ctx.ct.as_str(), req.strategy_or_default(), seen, inv, gpus)?;
        Ok(((), StepStatus::Ok, line))
    })
    .await
}

/// `nvidia-smi` inside must list exactly `gpus` (by UUID) at the host's driver version; with
/// strategy `none`, the device nodes must be there. One exec.
pub(crate) async fn verify(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<((), StepStatus, String)> {
    let seen = probe::probe_smi(ctx).await?;
    let line = verify::check(ctx.ct.as_str(), req.strategy_or_default(), &seen, inv, gpus)?;
    Ok(((), StepStatus::Ok, line))
}
