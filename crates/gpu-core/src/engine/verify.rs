//! `verify`: `nvidia-smi` inside the container against its assignment.

use crate::container;
use crate::current;
use crate::host_check;
use crate::report::{Report, StepName};
use crate::request::Request;
use crate::step::Failure;

use super::Engine;

impl Engine {
    /// Runs `nvidia-smi` in the container and checks it lists exactly the selected GPUs at the
    /// host's driver version.
    pub async fn verify(&self, req: &Request) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ct = req.ct.as_ct_ref();
        let ctx = self.ctx(&counted, ct);
        let mut run = self.run(ct);
        let result = crate::counting::scope(counted.tally.clone(), async {
            self.admit(&req.ct)?;
            let (inv, gpus) = run
                .step(
                    StepName::HostCheck,
                    host_check::run(&ctx, req, host_check::Then::Verify),
                )
                .await?;
            // A strategy left open: the one the config shows.
            let resolved;
            let req = match req.strategy {
                Some(_) => req,
                None => {
                    let current = current::read(&ctx, Some(&inv), None).await?;
                    resolved = Request {
                        strategy: Some(current.strategy()),
                        ..req.clone()
                    };
                    &resolved
                }
            };
            run.step(StepName::Verify, container::verify(&ctx, req, &inv, &gpus))
                .await
        })
        .await;
        run.finish(&counted.tally, result)
    }
}
