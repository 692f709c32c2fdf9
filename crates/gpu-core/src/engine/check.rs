//! `check`: the live host against a container's config, changing nothing.

use crate::check;
use crate::facts::KnownStates;
use crate::finding::CheckReport;
use crate::report::{StepName, StepStatus};
use crate::request::Request;
use crate::step::{Ctx, Failure};
use crate::values::CtId;

use super::Engine;

impl Engine {
    /// Compares the live host with the container's config: stale majors, the wrong cgroup
    /// key, missing nodes, GPUs the host lacks; with `expected`, also the GPU assignment, the
    /// whole planned config and the requested driver version. Changes nothing. On an engine
    /// [for a run](Engine::for_run), the container's state comes from the states of all the
    /// host's containers, read once for the run where the backend can.
    pub async fn check(
        &self,
        ct: &CtId,
        expected: Option<&Request>,
    ) -> std::result::Result<CheckReport, Failure> {
        let counted = self.counted();
        let states = self.facts.states(self.cts.as_ref()).await;
        let cts = KnownStates::new(&counted.cts, states);
        let ctx = Ctx {
            cts: &cts,
            ..self.ctx(&counted, ct.as_ct_ref())
        };
        let mut run = self.run(ct.as_ct_ref());
        let result = crate::counting::scope(counted.tally.clone(), async {
            self.admit(ct)?;
            let inv = run
                .step(StepName::HostCheck, async {
                    let inv = ctx.inventory().await?;
                    let detail = format!(
                        "driver {}, {} GPU(s) on host",
                        inv.driver_version,
                        inv.gpus.len()
                    );
                    Ok((inv, StepStatus::Ok, detail))
                })
                .await?;
            run.step(StepName::Config, async {
                let r = check::run(&ctx, &inv, expected).await?;
                let detail = if r.drift {
                    format!("{} finding(s)", r.findings.len())
                } else {
                    "no drift".to_owned()
                };
                Ok((r, StepStatus::Ok, detail))
            })
            .await
        })
        .await;
        run.finish_with(&counted.tally, result)
            .map(|(report, _)| report)
    }
}
