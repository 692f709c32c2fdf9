//! The host-check step: the inventory, the selected GPUs, and the version preconditions.

use crate::error::{Error, Result};
use crate::inventory::{Gpu, Inventory};
use crate::report::{Event, StepStatus};
use crate::request::{Request, Strategy};
use crate::step::Ctx;
use crate::version::DriverVersion;
use crate::version::VersionWanted;

/// Inventory, selection and version preconditions.
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    req: &Request,
) -> Result<((Inventory, Vec<Gpu>), StepStatus, String)> {
    let inv = ctx.inventory().await?;
    let gpus: Vec<Gpu> = req.gpus.resolve(&inv)?.into_iter().cloned().collect();
    if let VersionWanted::Exact(v) = &req.driver_version {
        check_version(ctx, req, v, &inv.driver_version)?;
    }
    let detail = format!(
        "driver {}, {} GPU(s) on host, selected [{}]",
        inv.driver_version,
        inv.gpus.len(),
        gpus.iter()
            .map(|g| g.index.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(((inv, gpus), StepStatus::Ok, detail))
}

fn check_version(
    ctx: &Ctx<'_>,
    req: &Request,
    wanted: &DriverVersion,
    host: &DriverVersion,
) -> Result<()> {
    if wanted == host || req.strategy != Strategy::Runfile {
        return Ok(());
    }
    if req.force_version {
        ctx.events.emit(Event::Notice {
            ct: ctx.ct.to_string(),
            message: format!(
                "installing userspace {wanted} although the host's module is {host} (the version is forced): NVML will fail with a version mismatch until they agree"
            ),
        });
        return Ok(());
    }
    Err(Error::VersionMismatch {
        wanted: wanted.to_string(),
        host: host.to_string(),
    })
}
