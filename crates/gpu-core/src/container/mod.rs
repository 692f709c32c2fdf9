//! The container side: restart, the one probe, userspace, CUDA, tools, verification.
//!
//! After the config step, [`converge`] brings a running container whose config changed to the
//! new config (live for a change of device nodes only, see [`live`]; else by a restart), or
//! starts a stopped one when asked, asks it everything in one probe exec, and runs each step only
//! where the probe says something is missing. When nothing was installed, verification reads
//! the probe's own answer (gpu-check's node opens and NVML, or `nvidia-smi`), so a converged
//! container costs exactly one exec. After a change, verification is one more exec: gpu-check
//! with a CUDA context on each GPU, and `nvidia-smi`.

pub(crate) mod apt;
pub(crate) mod cleanup;
pub(crate) mod cuda;
pub(crate) mod download;
pub(crate) mod gpucheck;
pub(crate) mod hostlibs;
pub(crate) mod live;
pub(crate) mod probe;
pub(crate) mod pushed;
pub(crate) mod restart;
pub(crate) mod runfile;
pub(crate) mod verify;

#[cfg(test)]
mod tests;

use crate::config_step::ConfigOutcome;
use crate::current;
use crate::error::Result;
use crate::inventory::{Gpu, Inventory};
use crate::report::{Event, StepName, StepStatus};
use crate::request::{Request, Strategy};
use crate::step::{Ctx, Run};

/// For `check` (drift detection): the one probe and what it found.
#[allow(unused_imports)]
pub(crate) use probe::{probe, GpuCheckRun, Probe};

/// Change the running container live or restart it when needed (`decision`, made before the
/// config was written), then probe once and converge userspace, CUDA and tools, then verify.
pub(crate) async fn converge(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    cfg: &ConfigOutcome,
    decision: (live::Decision, Option<exec_backend::CtState>),
    run: &mut Run<'_>,
) -> Result<()> {
    let nodes = verify::nodes(inv, gpus);
    let (ask, ask_verify) = asks(req.strategy_or_default());
    // The config is unchanged: a running container needs no restart, and a probe that answers
    // says it runs, so the state is asked only when the probe cannot run (stopped, starting,
    // unreachable); a converged run is then the one exec and nothing else.
    let mut early = None;
    if !cfg.changed && !gpus.is_empty() {
        early = probe::probe_gpus(ctx, &req.tools, ask, &nodes).await.ok();
    }
    let (after, activation) = if early.is_some() {
        run.step(StepName::Restart, async {
            let after = restart::After {
                running: true,
                pending: false,
                fresh: false,
            };
            let detail = "running (it answered the probe); config unchanged, no restart needed";
            Ok(((after, None), StepStatus::Ok, detail.to_owned()))
        })
        .await?
    } else {
        run.step(StepName::Restart, restart::step(ctx, req, cfg, decision))
            .await?
    };
    run.report.activation = activation;
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

    let mut apt = apt::Apt::default();
    let (probe, mut changed) = run
        .step(StepName::Userspace, async {
            let probe = match early.take() {
                Some(p) => p,
                None => probe::probe_gpus(ctx, &req.tools, ask, &nodes).await?,
            };
            // Placeholders of bind mounts that are gone (a strategy change, a driver
            // upgrade): they would pass for an installed userspace.
            let cleaned = if probe.placeholders.is_empty() || req.dry_run || after.pending {
                None
            } else {
                Some(cleanup::run(ctx, cleanup::What::Placeholders).await?)
            };
            let (changed, status, mut detail) = match req.strategy_or_default() {
                Strategy::Runfile => runfile::step(ctx, req, inv, &probe, &mut apt).await?,
                Strategy::HostLibs => {
                    hostlibs::step(ctx, req.dry_run, after.pending, inv, &probe).await?
                }
                Strategy::None => (
                    false,
                    StepStatus::Skipped,
                    "strategy none: devices only".into(),
                ),
            };
            let (changed, status) = match cleaned {
                Some(n) => {
                    detail = format!("{}; {detail}", cleanup::summary(&n));
                    (true, StepStatus::Changed)
                }
                None => (changed, status),
            };
            Ok(((probe, changed), status, detail))
        })
        .await?;

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
    // gpu-check goes in place where it is missing or damaged (the install compares the bytes).
    let install = !req.dry_run
        && gpucheck::available()
        && (probe.gpu_check == GpuCheckRun::Absent || probe.gpu_check_damaged);
    run.step(StepName::Verify, async {
        let fresh;
        // After any change (a restart too) CUDA is checked again; a converged run reads the
        // probe's answer.
        let seen = if changed || install || after.fresh {
            fresh = probe::verify_exec(ctx, ask_verify, &nodes, install).await?;
            &fresh
        } else {
            &probe
        };
        verification(ctx, req.strategy_or_default(), inv, gpus, seen).await
    })
    .await
}

/// What gpu-check is asked in the probe and in the verification, by strategy.
fn asks(strategy: Strategy) -> (gpucheck::Ask, gpucheck::Ask) {
    match strategy {
        Strategy::None => (gpucheck::Ask::Nodes, gpucheck::Ask::Nodes),
        Strategy::Runfile | Strategy::HostLibs => (gpucheck::Ask::Nvml, gpucheck::Ask::Cuda),
    }
}

/// Checks what the container answered; where the device cgroup refused a node, the config
/// is read to say why. The step's value, status and line.
async fn verification(
    ctx: &Ctx<'_>,
    strategy: Strategy,
    inv: &Inventory,
    gpus: &[Gpu],
    seen: &Probe,
) -> Result<((), StepStatus, String)> {
    let lines = if seen.opens.iter().any(|(_, e)| e == "EPERM") {
        current::read(ctx, None, None)
            .await
            .ok()
            .map(|c| verify::said(&c.scan))
    } else {
        None
    };
    let why = |path: &str, rdev| verify::refusal(lines.as_deref(), inv, path, rdev);
    let expect = verify::Expect {
        strategy,
        inv,
        gpus,
        // A captured host under a root (tests, benchmarks): no driver on this machine serves
        // the numbers its inventory lists, so the nodes inside are stand-ins.
        stand_ins: ctx.settings.resolve_mount_sources
            || crate::ctconfig::host_root(ctx.host).is_some(),
    };
    let line = verify::check(ctx.ct.as_str(), &expect, seen, &why)?;
    Ok(match seen.gpu_check_installed {
        Some(true) => (
            (),
            StepStatus::Changed,
            format!("{line}; gpu-check put in place"),
        ),
        _ => ((), StepStatus::Ok, line),
    })
}

/// Every passed node opens inside, `nvidia-smi` (and NVML) list exactly `gpus` at the host's
/// driver version and CUDA creates a context on each (with strategy `none`: the nodes). One
/// exec, which puts gpu-check in place where it is missing.
pub(crate) async fn verify(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<((), StepStatus, String)> {
    let nodes = verify::nodes(inv, gpus);
    let (_, ask) = asks(req.strategy_or_default());
    let seen = probe::verify_exec(ctx, ask, &nodes, true).await?;
    verification(ctx, req.strategy_or_default(), inv, gpus, &seen).await
}
