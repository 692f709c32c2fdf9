//! The host-check step: the inventory, the selected GPUs, and the version preconditions.

use crate::error::{Error, Result};
use crate::inventory::{Gpu, Inventory};
use crate::report::{Event, StepStatus};
use crate::request::{Request, Strategy};
use crate::select::GpuSelection;
use crate::step::Ctx;
use crate::version::DriverVersion;
use crate::version::VersionWanted;

/// What the operation that runs the host check goes on to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// `apply` (or its plan): the steps `req.config_only` leaves in, userspace included.
    Apply,
    /// `verify`: nothing is installed.
    Verify,
}

/// Whether a run of `req` with `strategy` (the request's, or the one the config step settled
/// on when the request left it open) can install the driver userspace: the runfile strategy,
/// past the config step, with GPUs to use it. Only then does an asked-for version matter; a
/// config-only run, `--gpus none` or `verify` installs nothing, so a pinned version cannot
/// block it.
pub(crate) fn installs_userspace(req: &Request, strategy: Strategy, then: Then) -> bool {
    then == Then::Apply
        && strategy == Strategy::Runfile
        && !req.config_only
        && req.gpus != GpuSelection::None
}

/// Inventory, selection and version preconditions.
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    req: &Request,
    then: Then,
) -> Result<((Inventory, Vec<Gpu>), StepStatus, String)> {
    let inv = ctx.inventory().await?;
    let gpus: Vec<Gpu> = req.gpus.resolve(&inv)?.into_iter().cloned().collect();
    // A strategy left open is decided by the config step, which checks this then.
    if let (VersionWanted::Exact(v), Some(strategy)) = (&req.driver_version, req.strategy) {
        if installs_userspace(req, strategy, then) {
            check_version(ctx, req, v, &inv.driver_version)?;
        }
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

/// The version precondition: the runfile strategy installs `wanted`, which must be the host
/// module's `host` unless the request forces it (with a notice).
pub(crate) fn check_version(
    ctx: &Ctx<'_>,
    req: &Request,
    wanted: &DriverVersion,
    host: &DriverVersion,
) -> Result<()> {
    if wanted == host {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use exec_backend::MockContainerExec;
    use test_support::FsHost;

    use super::*;
    use crate::engine::Engine;
    use crate::target::Target;
    use crate::values::CtId;
    use crate::ErrorKind;

    const EXAMPLE_101: &str = include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf");

    /// The orchestrator's pin (580.76.05) on a host whose module is 580.159.04.
    fn pinned(config_only: bool) -> Request {
        let mut r = Request::new("101".parse::<CtId>().unwrap(), "1".parse().unwrap());
        r.driver_version = "580.76.05".parse().unwrap();
        r.config_only = config_only;
        r
    }

    fn engine() -> (tempfile::TempDir, Engine) {
        let (d, host) = FsHost::h200x2();
        host.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        let e = Engine::new(
            Arc::new(host),
            Arc::new(MockContainerExec::new()),
            Target::Pve,
        );
        (d, e)
    }

    #[test]
    fn only_a_run_that_installs_userspace_needs_the_pinned_version() {
        let runfile = Strategy::Runfile;
        assert!(installs_userspace(&pinned(false), runfile, Then::Apply));
        assert!(!installs_userspace(&pinned(true), runfile, Then::Apply));
        assert!(!installs_userspace(&pinned(false), runfile, Then::Verify));
        let mut none = pinned(false);
        none.gpus = GpuSelection::None;
        assert!(!installs_userspace(&none, runfile, Then::Apply));
        assert!(!installs_userspace(
            &pinned(false),
            Strategy::HostLibs,
            Then::Apply
        ));
    }

    /// The orchestrator's one-liner (`apply --config-only` with its pinned version) writes the
    /// config; a run that would install the userspace is still refused before any change.
    #[tokio::test]
    async fn config_only_is_not_blocked_by_a_pinned_version() {
        let (_d, e) = engine();
        let r = e.apply(&pinned(true)).await.unwrap();
        assert!(r.changed, "{r:?}");
        let (_d, e) = engine();
        let f = e.plan_config(&pinned(false)).await.unwrap_err();
        assert_eq!(f.error.kind(), ErrorKind::HostPrecondition, "{}", f.error);
        assert!(matches!(f.error, Error::VersionMismatch { .. }));
        assert!(e.plan_config(&pinned(true)).await.is_ok());
    }
}
