//! `check`: the live host against a container's config, changing nothing.

use crate::check;
use crate::finding::CheckReport;
use crate::inventory::Inventory;
use crate::report::{StepName, StepStatus};
use crate::request::Request;
use crate::step::Failure;
use crate::values::CtId;

use super::Engine;

impl Engine {
    /// Compares the live host with the container's config: stale majors, the wrong cgroup
    /// key, missing nodes, GPUs the host lacks; with `expected`, also the GPU assignment, the
    /// whole planned config and the requested driver version. Changes nothing.
    pub async fn check(
        &self,
        ct: &CtId,
        expected: Option<&Request>,
    ) -> std::result::Result<CheckReport, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct.as_ct_ref());
        let mut run = self.run(ct.as_ct_ref());
        let result = crate::counting::scope(counted.tally.clone(), async {
            self.admit(ct)?;
            let inv = run
                .step(StepName::HostCheck, async {
                    let inv = Inventory::read(ctx.host).await?;
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
