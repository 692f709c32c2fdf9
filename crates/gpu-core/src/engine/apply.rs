//! `apply`: converge one container.

use crate::config_step;
use crate::container::{self, live};
use crate::error::Result;
use crate::host_check;
use crate::report::{Report, StepName};
use crate::request::Request;
use crate::step::{Ctx, Failure, Run, CONFIG_ONLY};

use super::Engine;

impl Engine {
    /// Converges one container: host check, config, restart (or a live change of a running
    /// container's devices), userspace, CUDA, tools, verify. A second run on a converged
    /// container is one probe exec and changes nothing.
    pub async fn apply(&self, req: &Request) -> std::result::Result<Report, Failure> {
        self.apply_until(req, req.config_only).await
    }

    /// [`Engine::apply`], stopping after the config step when `config_only`. The host check
    /// still judges `req` as it is: `plan` stops after the config step of a request that
    /// would install the userspace, and its version precondition must hold.
    pub(super) async fn apply_until(
        &self,
        req: &Request,
        config_only: bool,
    ) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ct = req.ct.as_ct_ref();
        let ctx = self.ctx(&counted, ct);
        let mut run = self.run(ct);
        let result = crate::counting::scope(counted.tally.clone(), async {
            self.admit(&req.ct)?;
            steps(&ctx, req, config_only, &mut run).await
        })
        .await;
        run.finish(&counted.tally, result)
    }
}

/// The steps of `apply`, in order.
async fn steps(ctx: &Ctx<'_>, req: &Request, config_only: bool, run: &mut Run<'_>) -> Result<()> {
    let (inv, gpus) = run
        .step(
            StepName::HostCheck,
            host_check::run(ctx, req, host_check::Then::Apply),
        )
        .await?;
    // How a running container gets the change is decided before the config is written: a
    // live change that would take away a device a process holds is refused with nothing
    // written.
    let (cfg, decision) = run
        .step(StepName::Config, async {
            let prepared = config_step::prepare(ctx, req, &inv, &gpus).await?;
            let decision = if config_only {
                (live::Decision::Nothing, None)
            } else {
                live::decide(ctx, req, &inv, &prepared).await?
            };
            let (cfg, status, detail) = config_step::commit(ctx, req, prepared).await?;
            Ok(((cfg, decision), status, detail))
        })
        .await?;
    run.report.config_diff = cfg.diff.clone();
    // From here on the strategy is the one the config is written for.
    let req = &Request {
        strategy: Some(cfg.strategy),
        ..req.clone()
    };
    if config_only {
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
    container::converge(ctx, req, &inv, &gpus, &cfg, decision, run).await
}
