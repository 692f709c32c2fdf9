//! `apply`: converge one container.

use crate::config_step;
use crate::container;
use crate::error::Result;
use crate::host_check;
use crate::report::{Report, StepName};
use crate::request::Request;
use crate::step::{Ctx, Failure, Run, CONFIG_ONLY};

use super::Engine;

impl Engine {
    /// Converges one container: host check, config, restart, userspace, CUDA, tools, verify.
    /// A second run on a converged container is one probe exec and changes nothing.
    pub async fn apply(&self, req: &Request) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ct = req.ct.as_ct_ref();
        let ctx = self.ctx(&counted, ct);
        let mut run = self.run(ct);
        let result = match self.admit(&req.ct) {
            Ok(()) => steps(&ctx, req, &mut run).await,
            Err(e) => Err(e),
        };
        run.finish(&counted.tally, result)
    }
}

/// The steps of `apply`, in order.
async fn steps(ctx: &Ctx<'_>, req: &Request, run: &mut Run<'_>) -> Result<()> {
    let (inv, gpus) = run
        .step(StepName::HostCheck, host_check::run(ctx, req))
        .await?;
    let cfg = run
        .step(StepName::Config, config_step::apply(ctx, req, &inv, &gpus))
        .await?;
    run.report.config_diff = cfg.diff.clone();
    // From here on the strategy is the one the config is written for.
    let req = &Request {
        strategy: Some(cfg.strategy),
        ..req.clone()
    };
    if req.config_only {
        for s in [
            StepName::Restart,
            StepName::Userspace,
            StepName::Cuda,
            StepName::Tools,
            StepName::Verify,
        ] {
            run.skip(s, CONFIG_ONLY);
        }
        return Ok(());
    }
    container::converge(ctx, req, &inv, &gpus, &cfg, run).await
}
