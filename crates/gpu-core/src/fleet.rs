//! Many containers at once: which containers ([`Selection`]), what each is asked
//! ([`RequestTemplate`], [`Expectation`], [`SyncOptions`]), the run over them in parallel with
//! a bound, each on its node ([`Cluster`]), and one typed row per container with the worst
//! outcome ([`FleetRun`], [`CheckRun`]). One container's failure never stops the others; a
//! bad input stops the whole run before anything changes. Callers only render the rows.
//!
//! - `apply` of several containers ([`apply_many`]): each gets the template's request, with the
//!   orchestrator config's values where the template has none.
//! - `check` of several containers ([`check_many`]): each is compared with what
//!   [`Expectation`] (or the orchestrator config) says it should have; with
//!   [`Selection::All`] only containers with NVIDIA entries (or GPUs expected of them) are
//!   checked, the others are counted.
//! - `sync` ([`sync`]): each container's current assignment is re-applied, so its userspace
//!   follows the host's module after a driver upgrade.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::engine::Engine;
use crate::error::{chain, Error, ErrorKind, Result};
use crate::finding::CheckReport;
use crate::orchestrator::OrchestratorConfig;
use crate::report::{Report, ReportedError};
use crate::request::{Request, RequestTemplate, RestartPolicy, RunfileSource, Strategy};
use crate::select::GpuSelection;
use crate::step::Failure;
use crate::values::{CtId, HttpUrl, Sha256};
use crate::version::VersionWanted;

/// Which containers a run works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These containers (each once, in the order given).
    Named(Vec<CtId>),
    /// Every container of the cluster (by its guest list), or of the host outside a cluster.
    All,
    /// The containers of the orchestrator config whose `gpu_assignment` is not `none`.
    Orchestrator,
}

impl Selection {
    /// The containers, each once.
    pub async fn resolve(
        &self,
        cluster: &Cluster,
        orch: Option<&OrchestratorConfig>,
    ) -> Result<Vec<CtId>> {
        let cts = match self {
            Selection::Named(v) => v.clone(),
            Selection::All => match cluster.containers() {
                Some(list) => list.into_iter().map(|(ct, _)| ct).collect(),
                None => cluster.local().list_containers().await?,
            },
            Selection::Orchestrator => match orch {
                Some(o) => o.gpu_containers(cluster.target())?,
                None => return Err(Error::NoOrchestratorConfig),
            },
        };
        let mut out: Vec<CtId> = Vec::with_capacity(cts.len());
        for ct in cts {
            cluster.target().admit(&ct)?;
            if !out.contains(&ct) {
                out.push(ct);
            }
        }
        Ok(out)
    }
}

/// One container of a fleet run: the engine of its node and what to do.
#[derive(Clone)]
pub struct FleetItem {
    /// The node's name (for the summary).
    pub node: String,
    /// The engine of that node. Give items on one node clones of one engine, so that they
    /// share its runfile cache and download lock.
    pub engine: Engine,
    /// The request.
    pub request: Request,
}

/// How one container of a fleet run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowResult {
    /// Something changed.
    Changed,
    /// Nothing needed to change.
    Unchanged,
    /// Looked at, nothing to run (`sync` of a container without NVIDIA entries).
    Skipped,
    /// Failed; the row's error says why.
    Failed,
}

/// One container of a fleet run.
#[derive(Clone, Debug, Serialize)]
pub struct FleetRow {
    /// The container.
    pub ct: String,
    /// Its node.
    pub node: String,
    /// The GPU selection.
    pub gpus: String,
    /// How it ended.
    pub result: RowResult,
    /// The error's kind when it failed.
    pub error_kind: Option<ErrorKind>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The whole report.
    pub report: Report,
    /// The error when it failed (not in the JSON: the report's `error` says it).
    #[serde(skip)]
    pub error: Option<Arc<Error>>,
}

impl FleetRow {
    fn from_outcome(
        item: &FleetItem,
        out: std::result::Result<Report, Failure>,
        ms: u64,
    ) -> FleetRow {
        let (result, error, report) = match out {
            Ok(r) if r.changed => (RowResult::Changed, None, r),
            Ok(r) => (RowResult::Unchanged, None, r),
            Err(f) => (RowResult::Failed, Some(Arc::new(f.error)), f.report),
        };
        FleetRow {
            ct: item.request.ct.to_string(),
            node: item.node.clone(),
            gpus: item.request.gpus.to_string(),
            result,
            error_kind: error.as_ref().map(|e| e.kind()),
            duration_ms: ms,
            report,
            error,
        }
    }

    /// A row for a container that failed before its apply could start (its node cannot be
    /// reached, its assignment cannot be derived, ...).
    pub fn failed(ct: &str, node: &str, gpus: &str, error: Arc<Error>) -> FleetRow {
        let mut report = Report::new(ct);
        report.error = Some(ReportedError {
            kind: error.kind(),
            message: chain(error.as_ref()),
        });
        FleetRow {
            ct: ct.to_owned(),
            node: node.to_owned(),
            gpus: gpus.to_owned(),
            result: RowResult::Failed,
            error_kind: Some(error.kind()),
            duration_ms: 0,
            report,
            error: Some(error),
        }
    }

    /// A row for a container that was looked at and needed no run.
    pub fn skipped(ct: &str, node: &str, gpus: &str) -> FleetRow {
        FleetRow {
            ct: ct.to_owned(),
            node: node.to_owned(),
            gpus: gpus.to_owned(),
            result: RowResult::Skipped,
            error_kind: None,
            duration_ms: 0,
            report: Report::new(ct),
            error: None,
        }
    }
}

/// How many rows ended how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// All rows.
    pub total: usize,
    /// Changed.
    pub changed: usize,
    /// Unchanged.
    pub unchanged: usize,
    /// Skipped.
    pub skipped: usize,
    /// Failed.
    pub failed: usize,
}

/// The rows of an `apply` or `sync` of several containers, in the containers' order.
#[derive(Clone, Debug)]
pub struct FleetRun {
    /// One row per container.
    pub rows: Vec<FleetRow>,
}

impl FleetRun {
    /// How many rows ended how.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            total: self.rows.len(),
            ..Summary::default()
        };
        for r in &self.rows {
            match r.result {
                RowResult::Changed => s.changed += 1,
                RowResult::Unchanged => s.unchanged += 1,
                RowResult::Skipped => s.skipped += 1,
                RowResult::Failed => s.failed += 1,
            }
        }
        s
    }

    /// The worst failure, `None` when every container succeeded.
    pub fn worst(&self) -> Option<ErrorKind> {
        self.rows.iter().filter_map(|r| r.error_kind).max()
    }
}

/// Runs `f` on every item, at most `jobs` at a time (at least one), and returns the outputs
/// in the items' order. An item whose task panicked gives `None`; the others still run.
pub async fn run_bounded<I, T, F, Fut>(items: Vec<I>, jobs: usize, f: F) -> Vec<Option<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    // A bound above the semaphore's limit would panic; no run has that many items anyway.
    let sem = Arc::new(Semaphore::new(jobs.clamp(1, Semaphore::MAX_PERMITS)));
    let f = Arc::new(f);
    let n = items.len();
    let mut set = JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let sem = sem.clone();
        let f = f.clone();
        set.spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = sem.acquire_owned().await;
            (i, f(item).await)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, v)) = joined {
            out[i] = Some(v);
        }
    }
    out
}

fn panicked(what: &str) -> Arc<Error> {
    Arc::new(Error::Internal {
        what: format!("the task {what} panicked"),
    })
}

/// Applies every item, at most `jobs` at a time, and returns one row per item in the items'
/// order. One container's failure does not stop the others. Items on one node should share
/// one engine (clones): the runfile is then downloaded once per node.
pub async fn apply_all(items: Vec<FleetItem>, jobs: usize) -> Vec<FleetRow> {
    let outs = run_bounded(items.clone(), jobs, |item: FleetItem| async move {
        let t0 = Instant::now();
        let out = item.engine.apply(&item.request).await;
        let ms = t0.elapsed().as_millis() as u64;
        FleetRow::from_outcome(&item, out, ms)
    })
    .await;
    // A task that panicked left no row: report it as an internal failure, never drop it.
    outs.into_iter()
        .zip(&items)
        .map(|(row, item)| {
            row.unwrap_or_else(|| {
                FleetRow::failed(
                    item.request.ct.as_str(),
                    &item.node,
                    &item.request.gpus.to_string(),
                    panicked("applying this container"),
                )
            })
        })
        .collect()
}

/// Runs the items that could start, and merges their rows with the rows of those that
/// failed before, in the containers' order.
async fn run_slots(
    slots: Vec<std::result::Result<FleetItem, FleetRow>>,
    jobs: NonZeroUsize,
) -> FleetRun {
    let items: Vec<FleetItem> = slots
        .iter()
        .filter_map(|s| s.as_ref().ok().cloned())
        .collect();
    let mut done = apply_all(items, jobs.get()).await.into_iter();
    let rows = slots
        .into_iter()
        .map(|s| match s {
            // apply_all gives exactly one row per item, in order.
            Ok(item) => done.next().unwrap_or_else(|| {
                FleetRow::failed(
                    item.request.ct.as_str(),
                    &item.node,
                    &item.request.gpus.to_string(),
                    panicked("applying this container"),
                )
            }),
            Err(row) => row,
        })
        .collect();
    FleetRun { rows }
}

/// Applies `template` to each container, on its node, at most `jobs` at a time. Every request
/// is built before anything runs: a bad input (no GPUs for a container, a bad value in the
/// orchestrator config) is the run's error and nothing changes.
pub async fn apply_many(
    cluster: &Cluster,
    cts: &[CtId],
    template: &RequestTemplate,
    orch: Option<&OrchestratorConfig>,
    jobs: NonZeroUsize,
) -> Result<FleetRun> {
    let reqs = cts
        .iter()
        .map(|ct| template.request(ct.clone(), orch))
        .collect::<Result<Vec<_>>>()?;
    cluster.read_ahead(cts, false).await;
    let mut slots = Vec::with_capacity(reqs.len());
    for req in reqs {
        let (node, engine) = cluster.engine_for(&req.ct).await;
        slots.push(match engine {
            Ok(engine) => Ok(FleetItem {
                node,
                engine,
                request: req,
            }),
            Err(e) => Err(FleetRow::failed(
                req.ct.as_str(),
                &node,
                &req.gpus.to_string(),
                e,
            )),
        });
    }
    Ok(run_slots(slots, jobs).await)
}

/// What `check` compares containers against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// The GPUs each container should have; `None`: its orchestrator `gpu_assignment`.
    pub gpus: Option<GpuSelection>,
    /// The driver version they should have.
    pub driver_version: Option<VersionWanted>,
}

impl Expectation {
    /// What `ct` should have, as a request: the GPUs expected of it (from here, else from the
    /// orchestrator config) and the driver version expected, the strategy left open (each
    /// container's config says it); `None` when neither says which GPUs.
    pub fn request(&self, ct: &CtId, orch: Option<&OrchestratorConfig>) -> Result<Option<Request>> {
        let gpus = match (&self.gpus, orch) {
            (Some(g), _) => Some(g.clone()),
            (None, Some(o)) => o.gpus(ct)?,
            (None, None) => None,
        };
        let Some(gpus) = gpus else {
            return Ok(None);
        };
        // The strategy is left open: `check` reads it back from each config.
        let mut r = Request::new(ct.clone(), gpus);
        if let Some(v) = &self.driver_version {
            r.driver_version = v.clone();
        }
        Ok(Some(r))
    }
}

/// One container `check` looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// Its node.
    pub node: String,
    /// What was found.
    #[serde(flatten)]
    pub report: CheckReport,
}

/// One container `check` could not look at.
#[derive(Clone, Debug, Serialize)]
pub struct CheckFailure {
    /// The container.
    pub ct: String,
    /// Its node.
    pub node: String,
    /// The error's kind.
    pub kind: ErrorKind,
    /// The whole cause chain.
    pub error: String,
    /// The error (not in the JSON).
    #[serde(skip)]
    pub cause: Arc<Error>,
}

impl CheckFailure {
    fn new(ct: &CtId, node: &str, e: Arc<Error>) -> CheckFailure {
        CheckFailure {
            ct: ct.to_string(),
            node: node.to_owned(),
            kind: e.kind(),
            error: chain(e.as_ref()),
            cause: e,
        }
    }
}

/// What `check` of several containers found.
#[derive(Clone, Debug)]
pub struct CheckRun {
    /// The containers looked at, in order.
    pub containers: Vec<CheckRow>,
    /// The containers that could not be looked at.
    pub errors: Vec<CheckFailure>,
    /// With [`Selection::All`]: containers without NVIDIA entries (and no GPUs expected).
    pub without_gpu: usize,
}

impl CheckRun {
    /// Whether any container drifted.
    pub fn drift(&self) -> bool {
        self.containers.iter().any(|r| r.report.drift)
    }

    /// The worst outcome: a failure's kind, or [`ErrorKind::Drift`] for drift; `None` when
    /// every container is as it should be.
    pub fn worst(&self) -> Option<ErrorKind> {
        self.errors
            .iter()
            .map(|e| e.kind)
            .chain(self.drift().then_some(ErrorKind::Drift))
            .max()
    }
}

enum Checked {
    Report(CheckRow),
    Failed(CheckFailure),
    NoGpu,
}

/// Checks each container, on its node, at most `jobs` at a time. The expected request of
/// every container is built before anything runs (a bad value is the run's error).
pub async fn check_many(
    cluster: &Arc<Cluster>,
    selection: &Selection,
    expect: &Expectation,
    orch: Option<&OrchestratorConfig>,
    jobs: NonZeroUsize,
) -> Result<CheckRun> {
    let cts = selection.resolve(cluster, orch).await?;
    let work = cts
        .into_iter()
        .map(|ct| {
            let expected = expect.request(&ct, orch)?;
            Ok((ct, expected))
        })
        .collect::<Result<Vec<_>>>()?;
    let cts: Vec<CtId> = work.iter().map(|(ct, _)| ct.clone()).collect();
    cluster.read_ahead(&cts, true).await;
    let only_gpu_containers = *selection == Selection::All;
    let c = cluster.clone();
    let outs = run_bounded(
        work.clone(),
        jobs.get(),
        move |(ct, expected): (CtId, Option<Request>)| {
            let cluster = c.clone();
            async move {
                let (node, engine) = cluster.engine_for(&ct).await;
                let engine = match engine {
                    Ok(e) => e,
                    Err(e) => return Checked::Failed(CheckFailure::new(&ct, &node, e)),
                };
                if only_gpu_containers && expected.is_none() {
                    match engine.current_assignment(&ct).await {
                        Ok(None) => return Checked::NoGpu,
                        Ok(Some(_)) => {}
                        Err(e) => {
                            return Checked::Failed(CheckFailure::new(&ct, &node, Arc::new(e)))
                        }
                    }
                }
                match engine.check(&ct, expected.as_ref()).await {
                    Ok(report) => Checked::Report(CheckRow { node, report }),
                    Err(f) => Checked::Failed(CheckFailure::new(&ct, &node, Arc::new(f.error))),
                }
            }
        },
    )
    .await;
    let mut run = CheckRun {
        containers: Vec::new(),
        errors: Vec::new(),
        without_gpu: 0,
    };
    for (out, (ct, _)) in outs.into_iter().zip(&work) {
        match out {
            Some(Checked::Report(r)) => run.containers.push(r),
            Some(Checked::Failed(e)) => run.errors.push(e),
            Some(Checked::NoGpu) => run.without_gpu += 1,
            None => run.errors.push(CheckFailure::new(
                ct,
                cluster.node_of(ct),
                panicked("checking this container"),
            )),
        }
    }
    Ok(run)
}

/// What `sync` does to each container besides re-applying its assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// The userspace of containers that do not mount the host's (`None`: the runfile).
    pub strategy: Option<Strategy>,
    /// The runfile's URL; `None`: the orchestrator's, else NVIDIA's.
    pub runfile_url: Option<HttpUrl>,
    /// The runfile's SHA-256.
    pub runfile_sha256: Option<Sha256>,
    /// Trust the first download of a runfile that has no published checksum.
    pub runfile_trust_first_download: bool,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Restart behaviour.
    pub restart: RestartPolicy,
}

/// Re-applies each container's current assignment (same GPUs, mode, strategy and MIG nodes),
/// so that its userspace matches the host's module again: runfile containers get the new
/// runfile (downloaded once per node), host-libs containers get their mounts and links
/// checked. A container without NVIDIA entries is skipped (left out with [`Selection::All`]);
/// one whose config passes a GPU the host lost fails with [`Error::GpuGone`].
pub async fn sync(
    cluster: &Cluster,
    selection: &Selection,
    opts: &SyncOptions,
    orch: Option<&OrchestratorConfig>,
    jobs: NonZeroUsize,
) -> Result<FleetRun> {
    let cts = selection.resolve(cluster, orch).await?;
    let runfile_url = match (&opts.runfile_url, orch) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(o)) => o.runfile_url()?,
        (None, None) => None,
    };
    let all = *selection == Selection::All;
    cluster.read_ahead(&cts, false).await;
    let mut slots = Vec::new();
    for ct in cts {
        let t0 = Instant::now();
        let (node, engine) = cluster.engine_for(&ct).await;
        let engine = match engine {
            Ok(e) => e,
            Err(e) => {
                slots.push(Err(FleetRow::failed(ct.as_str(), &node, "?", e)));
                continue;
            }
        };
        let current = match engine.current_assignment(&ct).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                if !all {
                    let mut row = FleetRow::skipped(ct.as_str(), &node, "none");
                    row.duration_ms = elapsed_ms(t0.elapsed());
                    slots.push(Err(row));
                }
                continue;
            }
            Err(e) => {
                slots.push(Err(FleetRow::failed(ct.as_str(), &node, "?", Arc::new(e))));
                continue;
            }
        };
        if !current.unknown_minors.is_empty() {
            let e = Error::GpuGone {
                ct: ct.to_string(),
                minors: current.unknown_minors.clone(),
            };
            slots.push(Err(FleetRow::failed(
                ct.as_str(),
                &node,
                &current.gpus.to_string(),
                Arc::new(e),
            )));
            continue;
        }
        let mut req = current.request();
        if req.strategy == Some(Strategy::Runfile) {
            req.strategy = Some(opts.strategy.unwrap_or(Strategy::Runfile));
        }
        req.runfile = RunfileSource {
            url: runfile_url.clone(),
            sha256: opts.runfile_sha256.clone(),
            trust_first_download: opts.runfile_trust_first_download,
        };
        req.dry_run = opts.dry_run;
        req.restart = opts.restart.clone();
        slots.push(Ok(FleetItem {
            node,
            engine,
            request: req,
        }));
    }
    Ok(run_slots(slots, jobs).await)
}

fn elapsed_ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn bounded_keeps_order_and_the_bound() {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (l, p) = (live.clone(), peak.clone());
        let out = run_bounded((0..20u64).collect(), 3, move |i| {
            let (l, p) = (l.clone(), p.clone());
            async move {
                let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5 * (20 - i))).await;
                l.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..20u64).map(|i| Some(i * 2)).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2, "it ran in parallel");
    }

    #[tokio::test]
    async fn a_panicking_task_gives_none_and_the_others_run() {
        let out = run_bounded(vec![1u32, 2, 3], 0, |i| async move {
            if i == 2 {
                panic!("boom");
            }
            i
        })
        .await;
        assert_eq!(out, vec![Some(1), None, Some(3)]);
    }

    fn engine(host: Arc<test_support::FsHost>) -> Engine {
        Engine::new(
            host,
            Arc::new(exec_backend::MockContainerExec::new()),
            crate::Target::Pve,
        )
    }

    fn ids(v: &[CtId]) -> Vec<&str> {
        v.iter().map(CtId::as_str).collect()
    }

    const EXAMPLE_101: &str = include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf");

    #[tokio::test]
    async fn any_bound_runs_without_panic() {
        for jobs in [0, 1, usize::MAX] {
            let out = run_bounded(vec![1, 2, 3], jobs, |n: u32| async move { n * 2 }).await;
            assert_eq!(out, vec![Some(2), Some(4), Some(6)], "jobs {jobs}");
        }
    }

    #[tokio::test]
    async fn selections_resolve_each_container_once() {
        let (_d, host) = test_support::FsHost::h200x2();
        host.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        host.put("/etc/pve/lxc/1000.conf", "arch: amd64\n");
        let cluster = Cluster::single(engine(Arc::new(host)));
        let ct = |s: &str| CtId::pve(s).unwrap();
        let named = Selection::Named(vec![ct("1000"), ct("101"), ct("1000")]);
        assert_eq!(
            ids(&named.resolve(&cluster, None).await.unwrap()),
            ["1000", "101"]
        );
        assert_eq!(
            ids(&Selection::All.resolve(&cluster, None).await.unwrap()),
            ["101", "1000"]
        );
        // A name is not a Proxmox VE container.
        let bad = Selection::Named(vec!["gpu1".parse().unwrap()]);
        assert_eq!(
            bad.resolve(&cluster, None).await.unwrap_err().kind(),
            ErrorKind::BadInput
        );
        let e = Selection::Orchestrator
            .resolve(&cluster, None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NoOrchestratorConfig), "{e:?}");
        let orch = OrchestratorConfig::parse(
            br#"{"lxc_configs": {"902": {"gpu_assignment": "0"}, "901": {"gpu_assignment": "1"},
                 "903": {"gpu_assignment": "none"}, "904": {}}}"#,
        )
        .unwrap();
        assert_eq!(
            ids(&Selection::Orchestrator
                .resolve(&cluster, Some(&orch))
                .await
                .unwrap()),
            ["901", "902"]
        );
    }

    #[test]
    fn what_check_expects() {
        let orch =
            OrchestratorConfig::parse(br#"{"lxc_configs": {"901": {"gpu_assignment": "1"}}}"#)
                .unwrap();
        let ct = CtId::pve("901").unwrap();
        let none = Expectation::default();
        assert_eq!(none.request(&ct, None).unwrap(), None);
        let r = none.request(&ct, Some(&orch)).unwrap().unwrap();
        assert_eq!((r.gpus.to_string(), r.strategy), ("1".into(), None));
        let versioned = Expectation {
            gpus: Some("0".parse().unwrap()),
            driver_version: Some("580.159.04".parse().unwrap()),
        };
        let r = versioned.request(&ct, Some(&orch)).unwrap().unwrap();
        assert_eq!(r.gpus.to_string(), "0", "the caller's GPUs win");
        assert_eq!(r.driver_version, "580.159.04".parse().unwrap());
        assert_eq!(r.strategy, None, "each config says its strategy");
    }

    #[test]
    fn the_worst_outcome() {
        let row = |kind: Option<ErrorKind>| {
            let mut r = FleetRow::skipped("101", "pve1", "0");
            if let Some(k) = kind {
                r.result = RowResult::Failed;
                r.error_kind = Some(k);
            }
            r
        };
        let run = FleetRun {
            rows: vec![
                row(None),
                row(Some(ErrorKind::Install)),
                row(Some(ErrorKind::HostPrecondition)),
                row(Some(ErrorKind::Internal)),
            ],
        };
        assert_eq!(run.worst(), Some(ErrorKind::HostPrecondition));
        let s = run.summary();
        assert_eq!((s.total, s.skipped, s.failed), (4, 1, 3));
        assert_eq!(
            FleetRun {
                rows: vec![row(None)]
            }
            .worst(),
            None
        );
        let drifted = CheckRun {
            containers: vec![CheckRow {
                node: "pve1".into(),
                report: CheckReport {
                    ct: "101".into(),
                    drift: true,
                    findings: Vec::new(),
                    doubtful: Vec::new(),
                    not_checked: Vec::new(),
                },
            }],
            errors: Vec::new(),
            without_gpu: 0,
        };
        assert_eq!(drifted.worst(), Some(ErrorKind::Drift));
    }

    #[tokio::test]
    async fn a_bad_input_stops_the_run_before_anything_changes() {
        let (_d, host) = test_support::FsHost::h200x2();
        host.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        host.put("/etc/pve/lxc/102.conf", EXAMPLE_101);
        let host = Arc::new(host);
        let cluster = Cluster::single(engine(host.clone()));
        let orch =
            OrchestratorConfig::parse(br#"{"lxc_configs": {"101": {"gpu_assignment": "1"}}}"#)
                .unwrap();
        let template = RequestTemplate {
            config_only: true,
            strategy: Some(Strategy::None),
            ..RequestTemplate::default()
        };
        let cts = [CtId::pve("101").unwrap(), CtId::pve("102").unwrap()];
        let jobs = NonZeroUsize::new(2).unwrap();
        // 102 has no GPUs anywhere: nothing runs, 101 included.
        let e = apply_many(&cluster, &cts, &template, Some(&orch), jobs)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadInput);
        assert_eq!(host.get("/etc/pve/lxc/101.conf"), EXAMPLE_101);
        // With 101 alone, its orchestrator GPUs apply.
        let run = apply_many(&cluster, &cts[..1], &template, Some(&orch), jobs)
            .await
            .unwrap();
        assert_eq!(run.rows[0].result, RowResult::Changed, "{:?}", run.rows[0]);
        assert_eq!(run.rows[0].gpus, "1");
        assert_eq!(run.worst(), None);
    }
}
