//! The engine: runs `plan`, `apply`, `verify`, `check` and `remove` for one container through
//! the [`Host`] and [`ContainerExec`] it was given.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exec_backend::{ContainerExec, CtRef, Host};

use crate::assignment::{self, CurrentAssignment};
use crate::check::{self, CheckReport};
use crate::counting::{CountingExec, CountingHost, Tally};
use crate::error::{Error, Result};
use crate::inventory::{Gpu, Inventory};
use crate::report::{Event, EventSink, Report, ReportedError, StepName, StepReport, StepStatus};
use crate::request::{Request, Strategy, Target, VersionWanted};
use crate::version::DriverVersion;
use crate::{config_step, container};

/// Host-side places the engine uses. The defaults are the documented paths; the CLI maps them
/// under `--root` through the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where runfiles are cached (`/var/cache/phoenix-gpu`).
    pub cache_dir: PathBuf,
    /// Where previous config bytes are kept (`/var/lib/phoenix-gpu/backups`).
    pub backup_root: PathBuf,
    /// How long to wait for the config lock.
    pub lock_timeout: Duration,
    /// Write the sources of bind mounts (`lxc.mount.entry`) as the paths
    /// [`Host::resolve`] gives, instead of host paths. Only for testing on a fake GPU host
    /// under a root directory (the CLI's `--bind-under-root`): LXC then binds the stand-in
    /// nodes made under that root. Off by default.
    pub resolve_mount_sources: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            cache_dir: PathBuf::from("/var/cache/phoenix-gpu"),
            backup_root: PathBuf::from("/var/lib/phoenix-gpu/backups"),
            lock_timeout: Duration::from_secs(10),
            resolve_mount_sources: false,
        }
    }
}

/// An operation that failed, with the report of what ran before it failed.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    /// The steps that ran, the last one failed.
    pub report: Report,
    /// Why.
    #[source]
    pub error: Error,
}

/// Runs operations on the containers of one host.
#[derive(Clone)]
pub struct Engine {
    host: Arc<dyn Host>,
    cts: Arc<dyn ContainerExec>,
    target: Target,
    settings: Settings,
    events: EventSink,
}

/// The host and container backends of one operation, wrapped so that they count into `tally`.
struct Counted {
    tally: Arc<Tally>,
    host: CountingHost,
    cts: CountingExec,
}

/// What a step function sees: the host and the container (both counted), and where things go.
pub(crate) struct Ctx<'a> {
    pub host: &'a dyn Host,
    pub cts: &'a dyn ContainerExec,
    pub target: &'a Target,
    pub settings: &'a Settings,
    pub events: &'a EventSink,
    pub ct: &'a CtRef,
}

/// The span around a step: log lines inside it carry the container and the step's name.
fn step_span(ct: &str, name: StepName) -> tracing::Span {
    tracing::info_span!(target: "gpu_core::step", "step", ct = %ct, step = name.as_str())
}

/// A report being built: times steps, emits events.
pub(crate) struct Run<'a> {
    pub report: Report,
    events: &'a EventSink,
    started: Instant,
}

impl<'a> Run<'a> {
    pub(crate) fn new(ct: &CtRef, events: &'a EventSink) -> Run<'a> {
        Run {
            report: Report::new(ct.as_str()),
            events,
            started: Instant::now(),
        }
    }

    /// Runs one step: emits events, records its outcome. The future gives the step's value,
    /// status and one line of detail.
    pub async fn step<T>(
        &mut self,
        name: StepName,
        fut: impl Future<Output = Result<(T, StepStatus, String)>>,
    ) -> Result<T> {
        let ct = self.report.ct.clone();
        // Log lines of the step carry its name (the CLI's log file shows the span).
        let span = step_span(&ct, name);
        span.in_scope(|| {
            self.events.emit(Event::StepStarted {
                ct: ct.clone(),
                step: name,
            })
        });
        let t0 = Instant::now();
        let out = tracing::Instrument::instrument(fut, span.clone()).await;
        let duration_ms = t0.elapsed().as_millis() as u64;
        let (value, status, detail) = match out {
            Ok((v, status, detail)) => (Ok(v), status, detail),
            Err(e) => {
                let detail = chain(&e);
                (Err(e), StepStatus::Failed, detail)
            }
        };
        if status == StepStatus::Changed {
            self.report.changed = true;
        }
        self.record(StepReport {
            name,
            status,
            detail,
            duration_ms,
        });
        value
    }

    /// Records a step that did not run through [`Run::step`] (skipped ones).
    pub fn record(&mut self, report: StepReport) {
        let ct = &self.report.ct;
        step_span(ct, report.name).in_scope(|| {
            self.events.emit(Event::StepFinished {
                ct: ct.clone(),
                report: report.clone(),
            })
        });
        self.report.steps.push(report);
    }

    /// Records a skipped step.
    pub fn skip(&mut self, name: StepName, why: impl Into<String>) {
        self.record(StepReport {
            name,
            status: StepStatus::Skipped,
            detail: why.into(),
            duration_ms: 0,
        });
    }

    fn finish(mut self, tally: &Tally, result: Result<()>) -> std::result::Result<Report, Failure> {
        self.report.counters = tally.counters();
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => Ok(self.report),
            Err(error) => {
                self.report.error = Some(ReportedError {
                    kind: error.kind(),
                    message: chain(&error),
                });
                Err(Failure {
                    report: self.report,
                    error,
                })
            }
        }
    }
}

/// The whole cause chain of an error, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Engine {
    /// An engine for containers of `target` on `host`, entered through `cts`.
    pub fn new(host: Arc<dyn Host>, cts: Arc<dyn ContainerExec>, target: Target) -> Engine {
        Engine {
            host,
            cts,
            target,
            settings: Settings::default(),
            events: EventSink::none(),
        }
    }

    /// Replaces the settings.
    pub fn with_settings(mut self, settings: Settings) -> Engine {
        self.settings = settings;
        self
    }

    /// Delivers progress events to `events`.
    pub fn with_events(mut self, events: EventSink) -> Engine {
        self.events = events;
        self
    }

    /// Fresh counting wrappers of the backends, for one operation.
    fn counted(&self) -> Counted {
        let tally = Arc::new(Tally::default());
        Counted {
            host: CountingHost::new(self.host.clone(), tally.clone()),
            cts: CountingExec::new(self.cts.clone(), tally.clone()),
            tally,
        }
    }

    /// The step context of one operation on `ct`.
    fn ctx<'a>(&'a self, counted: &'a Counted, ct: &'a CtRef) -> Ctx<'a> {
        Ctx {
            host: &counted.host,
            cts: &counted.cts,
            target: &self.target,
            settings: &self.settings,
            events: &self.events,
            ct,
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Reads the host's inventory.
    pub async fn inventory(&self) -> Result<Inventory> {
        Inventory::read(self.host.as_ref()).await
    }

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
        r.config_only = true;
        // The forced --config-only would show in the step events; the steps are announced
        // below as this plan reports them.
        let quiet = self.clone().with_events(EventSink::none());
        let mut report = quiet.plan(&r).await?;
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
            .map(|n| later(n, "--config-only".into()))
            .collect()
        } else {
            let restart = if !config_changes {
                "not needed: the config does not change".to_owned()
            } else if req.restart.no_restart {
                "--no-restart: the new config takes effect at the next start".to_owned()
            } else {
                "apply restarts the container if it runs".to_owned()
            };
            let userspace = match req.strategy {
                Strategy::None => "--strategy none".to_owned(),
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
                format!("apply installs {} if missing", req.tools.join(", "))
            };
            vec![
                later(StepName::Restart, restart),
                later(StepName::Userspace, userspace),
                later(StepName::Cuda, cuda),
                later(StepName::Tools, tools),
                later(
                    StepName::Verify,
                    "apply runs nvidia-smi in the container".into(),
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

    /// Converges one container: host check, config, restart, userspace, CUDA, tools, verify.
    /// A second run on a converged container is one probe exec and changes nothing.
    pub async fn apply(&self, req: &Request) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, &req.ct);
        let mut run = Run::new(&req.ct, &self.events);
        let result = apply_steps(&ctx, req, &mut run).await;
        run.finish(&counted.tally, result)
    }

    /// Runs `nvidia-smi` in the container and checks it lists exactly the selected GPUs at the
    /// host's driver version.
    pub async fn verify(&self, req: &Request) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, &req.ct);
        let mut run = Run::new(&req.ct, &self.events);
        let result = async {
            let (inv, gpus) = run.step(StepName::HostCheck, host_check(&ctx, req)).await?;
            run.step(StepName::Verify, container::verify(&ctx, req, &inv, &gpus))
                .await
        }
        .await;
        run.finish(&counted.tally, result)
    }

    /// Takes the tool's passthrough entries out of the container's config.
    pub async fn remove(&self, ct: &CtRef, dry_run: bool) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct);
        let mut run = Run::new(ct, &self.events);
        let result = async {
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

impl Engine {
    /// Compares the live host with the container's config: stale majors, the wrong cgroup
    /// key, missing nodes, GPUs the host lacks; with `expected`, also the GPU assignment, the
    /// whole planned config and the requested driver version. Changes nothing.
    pub async fn check(
        &self,
        ct: &CtRef,
        expected: Option<&Request>,
    ) -> std::result::Result<CheckReport, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct);
        let mut run = Run::new(ct, &self.events);
        let mut out = None;
        let result = async {
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
            let report = run
                .step(StepName::Config, async {
                    let r = check::run(&ctx, &inv, expected).await?;
                    let detail = if r.drift {
                        format!("{} finding(s)", r.findings.len())
                    } else {
                        "no drift".to_owned()
                    };
                    Ok((r, StepStatus::Ok, detail))
                })
                .await?;
            out = Some(report);
            Ok(())
        }
        .await;
        let report = run.finish(&counted.tally, result)?;
        out.ok_or_else(|| Failure {
            error: Error::Parse {
                what: "check".into(),
                detail: "no report".into(),
            },
            report,
        })
    }

    /// The GPU assignment the container's config gives it now, read back from its
    /// passthrough entries (minors mapped to GPUs through the live inventory); `None` when the
    /// config has no NVIDIA entries. Changes nothing. `sync` re-applies it after a host driver
    /// upgrade.
    pub async fn current_assignment(&self, ct: &CtRef) -> Result<Option<CurrentAssignment>> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct);
        let inv = Inventory::read(ctx.host).await?;
        assignment::read(&ctx, &inv).await
    }

    /// The containers whose configs this target's host has: the CTIDs of
    /// `/etc/pve/lxc/*.conf` (numeric order), or the names under the LXC path with a `config`.
    pub async fn list_containers(&self) -> Result<Vec<CtRef>> {
        let dir = match &self.target {
            Target::Pve => PathBuf::from("/etc/pve/lxc"),
            Target::Lxc { lxcpath } => lxcpath.clone(),
        };
        let entries = match self.host.read_dir(&dir).await {
            Ok(e) => e,
            Err(exec_backend::ExecError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Error::exec(format!("cannot list {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let name = e.name.to_string_lossy().into_owned();
            match &self.target {
                Target::Pve => {
                    if let Some(id) = name.strip_suffix(".conf") {
                        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                            out.push(CtRef::new(id));
                        }
                    }
                }
                Target::Lxc { .. } => {
                    let cfg = dir.join(&name).join("config");
                    let has =
                        self.host.stat(&cfg).await.map_err(|e| {
                            Error::exec(format!("cannot stat {}", cfg.display()), e)
                        })?;
                    if has.is_some() {
                        out.push(CtRef::new(name));
                    }
                }
            }
        }
        if self.target == Target::Pve {
            out.sort_by_key(|c| c.as_str().parse::<u64>().unwrap_or(u64::MAX));
        }
        Ok(out)
    }
}

/// Inventory, selection and version preconditions.
pub(crate) async fn host_check(
    ctx: &Ctx<'_>,
    req: &Request,
) -> Result<((Inventory, Vec<Gpu>), StepStatus, String)> {
    let inv = Inventory::read(ctx.host).await?;
    let gpus: Vec<Gpu> = req.gpus.resolve(&inv)?.into_iter().cloned().collect();
    if let VersionWanted::Exact(v) = &req.driver_version {
        check_version(ctx, req, v, &inv.driver_version)?;
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

fn check_version(
    ctx: &Ctx<'_>,
    req: &Request,
    wanted: &DriverVersion,
    host: &DriverVersion,
) -> Result<()> {
    if wanted == host || req.strategy != Strategy::Runfile {
        return Ok(());
    }
    if req.force_version {
        ctx.events.emit(Event::Notice {
            ct: ctx.ct.to_string(),
            message: format!(
                "installing userspace {wanted} although the host's module is {host} (--force-version): NVML will fail with a version mismatch until they agree"
            ),
        });
        return Ok(());
    }
    Err(Error::VersionMismatch {
        wanted: wanted.to_string(),
        host: host.to_string(),
    })
}

async fn apply_steps(ctx: &Ctx<'_>, req: &Request, run: &mut Run<'_>) -> Result<()> {
    let (inv, gpus) = run.step(StepName::HostCheck, host_check(ctx, req)).await?;
    let cfg = run
        .step(StepName::Config, config_step::apply(ctx, req, &inv, &gpus))
        .await?;
    run.report.config_diff = cfg.diff.clone();
    if req.config_only {
        for s in [
            StepName::Restart,
            StepName::Userspace,
            StepName::Cuda,
            StepName::Tools,
            StepName::Verify,
        ] {
            run.skip(s, "--config-only");
        }
        return Ok(());
    }
    container::converge(ctx, req, &inv, &gpus, &cfg, run).await
}
