//! `plan`: what `apply` would do, changing nothing.

use crate::current;
use crate::error::Result;
use crate::inventory::Inventory;
use crate::report::{Event, EventSink, Report, StepName, StepReport, StepStatus};
use crate::request::{Request, Strategy};
use crate::step::{Failure, CONFIG_ONLY};
use crate::values::CtId;

use super::Engine;

impl Engine {
    /// What `apply` would do, changing nothing: the same run with `dry_run` set.
    pub async fn plan(&self, req: &Request) -> std::result::Result<Report, Failure> {
        let mut req = req.clone();
        req.dry_run = true;
        self.apply(&req).await
    }

    /// What `apply` would do, without touching the container (so it also works on a captured
    /// host under a root): the host check and the config step run as a dry run, and the later
    /// steps are listed as `apply` would decide them, each `Skipped` with what it would do.
    /// Changes nothing. [`Engine::plan`] is the fuller dry run that also probes the container.
    pub async fn plan_config(&self, req: &Request) -> std::result::Result<Report, Failure> {
        let mut r = req.clone();
        r.dry_run = true;
        // Stopping after the config step would show in the step events; the steps are
        // announced below as this plan reports them.
        let quiet = self.clone().with_events(EventSink::none());
        let mut report = quiet.apply_until(&r, true).await?;
        report
            .steps
            .retain(|s| s.name == StepName::HostCheck || s.name == StepName::Config);
        let config_changes = report
            .step(StepName::Config)
            .is_some_and(|s| s.status == StepStatus::Planned);
        let later = |name: StepName, detail: String| StepReport {
            name,
            status: StepStatus::Skipped,
            detail,
            duration_ms: 0,
        };
        let steps: Vec<StepReport> = if req.config_only {
            [
                StepName::Restart,
                StepName::Userspace,
                StepName::Cuda,
                StepName::Tools,
                StepName::Verify,
            ]
            .into_iter()
            .map(|n| later(n, CONFIG_ONLY.into()))
            .collect()
        } else {
            let restart = if !config_changes {
                "not needed: the config does not change".to_owned()
            } else if req.restart.always {
                "apply restarts the container if it runs (as asked)".to_owned()
            } else if req.restart.no_restart {
                "restarts are off: a running container gets a change of device nodes live, anything else at its next start".to_owned()
            } else {
                "apply changes a running container's device nodes live, and restarts it when more changes (host-libs mounts, MIG nodes)".to_owned()
            };
            let strategy = match req.strategy {
                Some(s) => s,
                None => self
                    .config_strategy(&req.ct)
                    .await
                    .map_err(|error| Failure {
                        report: report.clone(),
                        error,
                    })?,
            };
            let userspace = match strategy {
                Strategy::None => "strategy none: devices only".to_owned(),
                Strategy::HostLibs => {
                    "apply runs ldconfig in the container for the host's libraries".to_owned()
                }
                Strategy::Runfile => {
                    "apply installs the runfile if the container's userspace differs".to_owned()
                }
            };
            let cuda = match &req.cuda {
                Some(v) => format!("apply installs CUDA {v} if missing"),
                None => "no CUDA asked for".to_owned(),
            };
            let tools = if req.tools.is_empty() {
                "no tools asked for".to_owned()
            } else {
                {
                    let tools: Vec<&str> = req.tools.iter().map(|t| t.as_str()).collect();
                    format!("apply installs {} if missing", tools.join(", "))
                }
            };
            vec![
                later(StepName::Restart, restart),
                later(StepName::Userspace, userspace),
                later(StepName::Cuda, cuda),
                later(StepName::Tools, tools),
                later(
                    StepName::Verify,
                    "apply opens every passed node in the container and, with a userspace, \
                     creates a CUDA context on each GPU and runs nvidia-smi"
                        .into(),
                ),
            ]
        };
        report.steps.extend(steps);
        for s in &report.steps {
            self.events.emit(Event::StepFinished {
                ct: report.ct.clone(),
                report: s.clone(),
            });
        }
        Ok(report)
    }

    /// The strategy the container's config shows (`host-libs` when it binds the host's
    /// userspace, else `runfile`): what a request that leaves it open keeps.
    async fn config_strategy(&self, ct: &CtId) -> Result<Strategy> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct.as_ct_ref());
        let inv = Inventory::read(ctx.host).await?;
        Ok(current::read(&ctx, Some(&inv), None).await?.strategy())
    }
}
