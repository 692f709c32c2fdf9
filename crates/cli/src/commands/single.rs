//! `plan`, `apply` and `verify` of one container, and `remove`: on the container's node.

use gpu_core::cluster::Cluster;
use gpu_core::orchestrator::OrchestratorConfig;

use super::Worst;
use crate::args;
use crate::cli::{ApplyOpts, RemoveArgs};
use crate::error::CliError;
use crate::output::Printer;

/// Which operation.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// What apply would change, without touching the container.
    Plan,
    /// Converge the container.
    Apply,
    /// nvidia-smi in the container against its GPUs.
    Verify,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Plan => "plan",
            Op::Apply => "apply",
            Op::Verify => "verify",
        }
    }
}

/// Runs `op` on container `id`; prints its report.
pub async fn run(
    op: Op,
    id: &str,
    opts: &ApplyOpts,
    orch: Option<&OrchestratorConfig>,
    cluster: &Cluster,
    printer: &Printer,
) -> Result<Worst, CliError> {
    let ct = cluster.target().ct_id(id)?;
    let req = args::template(opts)?.request(ct, orch)?;
    let engine = cluster.engine_for(&req.ct).await.1?;
    let out = match op {
        Op::Plan => engine.plan_config(&req).await,
        Op::Apply => engine.apply(&req).await,
        Op::Verify => engine.verify(&req).await,
    };
    let report = out.map_err(|f| CliError::operation(op.word(), f))?;
    printer.report(op.word(), &report)?;
    Ok(None)
}

/// `remove`: takes the tool's lines out of the container's config.
pub async fn remove(
    r: &RemoveArgs,
    cluster: &Cluster,
    printer: &Printer,
) -> Result<Worst, CliError> {
    let ct = cluster.target().ct_id(&r.ctid)?;
    let engine = cluster.engine_for(&ct).await.1?;
    let report = engine
        .remove(&ct, r.dry_run)
        .await
        .map_err(|f| CliError::operation("remove", f))?;
    printer.report("remove", &report)?;
    Ok(None)
}
