//! `remove`: take the tool's passthrough entries out of a container's config.

use crate::config_step;
use crate::report::{Report, StepName};
use crate::step::Failure;
use crate::values::CtId;

use super::Engine;

impl Engine {
    /// Takes the tool's passthrough entries out of the container's config.
    pub async fn remove(&self, ct: &CtId, dry_run: bool) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct.as_ct_ref());
        let mut run = self.run(ct.as_ct_ref());
        let result = async {
            self.admit(ct)?;
            let diff = run
                .step(StepName::Remove, config_step::remove(&ctx, dry_run))
                .await?;
            run.report.config_diff = diff;
            Ok(())
        }
        .await;
        run.finish(&counted.tally, result)
    }
}
