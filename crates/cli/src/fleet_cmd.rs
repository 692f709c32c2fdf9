//! Work on several containers at once: `apply` of several CTIDs or `--all` of the
//! orchestrator config, `check` of several or `--all`, and `sync`. Containers run in parallel
//! with a bound (`--jobs`), each on its own node; one summary ends the run.
//!
//! The exit code is the worst of the containers' codes: the highest one, so every failure
//! (1-10) outranks success (0).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exec_backend::CtRef;
use gpu_core::fleet::{self, FleetItem, FleetRow};
use gpu_core::{chain, CheckReport, Error, ErrorKind, Request, RestartPolicy, RunfileSource};
use serde::Serialize;

use crate::cli::{CheckArgs, FleetApplyArgs, StrategyArg, SyncArgs};
use crate::error::CliError;
use crate::nodes::Nodes;
use crate::phoenix_config::PhoenixConfig;
use crate::{args, clear_progress, exit, fail_err, hints, print_error, print_json};

/// The worst of several exit codes: the highest (every failure outranks 0).
pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
    codes.into_iter().max().unwrap_or(0)
}

/// The exit code of one row.
fn row_code(r: &FleetRow) -> u8 {
    r.error_kind.map(exit::code).unwrap_or(0)
}

#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    row: &'a FleetRow,
    exit_code: u8,
}

#[derive(Serialize, Default)]
struct Summary {
    total: usize,
    changed: usize,
    unchanged: usize,
    skipped: usize,
    failed: usize,
}

#[derive(Serialize)]
struct JsonFleet<'a> {
    rows: Vec<JsonRow<'a>>,
    summary: Summary,
    exit_code: u8,
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", Duration::from_millis(ms).as_secs_f64())
}

/// Prints the summary (table or JSON) and the errors of failed rows; returns the exit code.
fn finish_rows(rows: &[FleetRow], json: bool, quiet: bool) -> u8 {
    let code = worst(rows.iter().map(row_code));
    let mut summary = Summary {
        total: rows.len(),
        ..Summary::default()
    };
    for r in rows {
        match r.result {
            "changed" => summary.changed += 1,
            "unchanged" => summary.unchanged += 1,
            "skipped" => summary.skipped += 1,
            _ => summary.failed += 1,
        }
    }
    if json {
        print_json(&JsonFleet {
            rows: rows
                .iter()
                .map(|row| JsonRow {
                    row,
                    exit_code: row_code(row),
                })
                .collect(),
            summary,
            exit_code: code,
        });
    } else if !(quiet && code == 0) {
        clear_progress();
        let mut out = std::io::stdout().lock();
        let w_ct = rows.iter().map(|r| r.ct.len()).max().unwrap_or(0).max(4);
        let w_node = rows.iter().map(|r| r.node.len()).max().unwrap_or(0).max(4);
        let w_gpus = rows.iter().map(|r| r.gpus.len()).max().unwrap_or(0).max(4);
        let _ = writeln!(
            out,
            "{:<w_ct$}  {:<w_node$}  {:<w_gpus$}  {:<14}  {:>7}",
            "CTID", "NODE", "GPUS", "RESULT", "TIME"
        );
        for r in rows {
            let result = match r.error_kind {
                Some(k) => format!("failed ({})", exit::code(k)),
                None => r.result.to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<w_ct$}  {:<w_node$}  {:<w_gpus$}  {:<14}  {:>7}",
                r.ct,
                r.node,
                r.gpus,
                result,
                secs(r.duration_ms)
            );
        }
        let _ = writeln!(
            out,
            "{} container(s): {} changed, {} unchanged, {} skipped, {} failed; exit {code}",
            summary.total, summary.changed, summary.unchanged, summary.skipped, summary.failed
        );
    }
    for r in rows {
        if let Some(e) = &r.report.error {
            print_error(
                hints::render_text(&format!("CT {} on {}: {}", r.ct, r.node, e.message)),
                hints::kind_hint(e.kind, &r.ct),
            );
        }
    }
    code
}

/// The containers of the orchestrator config whose `gpu_assignment` is set and not `none`, in
/// id order.
pub fn gpu_containers(pc: &PhoenixConfig) -> Vec<String> {
    let mut ids: Vec<String> = pc
        .lxc_configs
        .iter()
        .filter(|(_, c)| {
            c.gpu_assignment
                .as_deref()
                .is_some_and(|g| !g.trim().is_empty() && !g.trim().eq_ignore_ascii_case("none"))
        })
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

/// Runs prepared items and merges them with rows that failed before they could start.
async fn run_items(slots: Vec<Result<FleetItem, FleetRow>>, jobs: usize) -> Vec<FleetRow> {
    let items: Vec<FleetItem> = slots
        .iter()
        .filter_map(|s| s.as_ref().ok().cloned())
        .collect();
    let mut done = fleet::apply_all(items, jobs).await.into_iter();
    slots
        .into_iter()
        .map(|s| match s {
            Ok(_) => done.next().unwrap_or_else(|| {
                FleetRow::failed(
                    "?",
                    "?",
                    "?",
                    &Error::Internal {
                        what: "a row of the fleet run is missing".into(),
                    },
                )
            }),
            Err(row) => row,
        })
        .collect()
}

/// `apply` of several containers, or `--all` of the orchestrator config.
pub async fn apply(
    a: &FleetApplyArgs,
    pc: Option<&PhoenixConfig>,
    nodes: &Nodes,
    target: &gpu_core::Target,
    json: bool,
    quiet: bool,
) -> u8 {
    let ids: Vec<String> = if a.all {
        match pc {
            Some(pc) => gpu_containers(pc),
            None => {
                return fail_err(
                    json,
                    CliError::flag(
                        "--all",
                        "",
                        "apply --all works on the containers of the orchestrator config: give --phoenix-config FILE",
                    ),
                )
            }
        }
    } else {
        a.ctids.clone()
    };
    if a.jobs == 0 {
        return fail_err(
            json,
            CliError::flag(
                "--jobs",
                "0",
                "give how many containers to work on at once, at least 1",
            ),
        );
    }
    // Every input is checked before anything runs: a bad one is exit 2 and nothing changes.
    let mut reqs = Vec::new();
    for id in &ids {
        let ct = match args::ct(target, id) {
            Ok(c) => c,
            Err(e) => return fail_err(json, e),
        };
        match args::request(&a.opts, ct, pc) {
            Ok(r) => reqs.push(r),
            Err(e) => return fail_err(json, e),
        }
    }
    let mut slots = Vec::new();
    for req in reqs {
        let (node, engine) = nodes.engine_for(&req.ct).await;
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
                &e,
            )),
        });
    }
    let rows = run_items(slots, a.jobs).await;
    finish_rows(&rows, json, quiet)
}

/// The containers to look at: the given ones, or every container of the cluster (by its
/// guest list), or of this host.
async fn targets(
    all: bool,
    ctids: &[String],
    nodes: &Nodes,
    target: &gpu_core::Target,
) -> Result<Vec<CtRef>, Error> {
    if !all {
        return ctids.iter().map(|s| args::ct(target, s)).collect();
    }
    if let Some(list) = nodes.cluster_containers() {
        return Ok(list.into_iter().map(|(ct, _)| ct).collect());
    }
    nodes
        .engine_of(nodes.local_name())
        .await
        .map_err(unwrap_arc)?
        .list_containers()
        .await
}

fn unwrap_arc(e: Arc<Error>) -> Error {
    Arc::try_unwrap(e).unwrap_or_else(|e| Error::Internal {
        what: format!(
            "the node connection's error is shared: {}",
            chain(e.as_ref())
        ),
    })
}

#[derive(Serialize)]
struct CheckRow {
    node: String,
    #[serde(flatten)]
    report: CheckReport,
}

#[derive(Serialize)]
struct CheckError {
    ct: String,
    node: String,
    kind: ErrorKind,
    error: String,
    exit_code: u8,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    drift: bool,
    containers: &'a [CheckRow],
    errors: &'a [CheckError],
    /// Containers looked at that have no NVIDIA entries (with --all).
    without_gpu: usize,
    exit_code: u8,
}

enum CheckOutcome {
    Report(CheckRow),
    Error(CheckError),
    NoGpu,
}

/// `check` of several containers or `--all`: a table, exit 10 on drift.
pub async fn check(
    c: &CheckArgs,
    pc: Option<&PhoenixConfig>,
    nodes: &Arc<Nodes>,
    target: &gpu_core::Target,
    json: bool,
    quiet: bool,
) -> u8 {
    let cts = match targets(c.all, &c.ctids, nodes, target).await {
        Ok(v) => v,
        Err(e) => return fail_err(json, e),
    };
    let version = match c
        .driver_version
        .as_deref()
        .map(args::driver_version)
        .transpose()
    {
        Ok(v) => v,
        Err(e) => return fail_err(json, e),
    };
    let mut work = Vec::new();
    for ct in cts {
        match expected_for(c, pc, &ct, version.clone()) {
            Ok(e) => work.push((ct, e)),
            Err(e) => return fail_err(json, e),
        }
    }
    let all = c.all;
    let n2 = nodes.clone();
    let outs = fleet::run_bounded(
        work,
        c.jobs,
        move |(ct, expected): (CtRef, Option<Request>)| {
            let nodes = n2.clone();
            async move {
                let (node, engine) = nodes.engine_for(&ct).await;
                let err = |e: &Error, node: &str| {
                    CheckOutcome::Error(CheckError {
                        ct: ct.to_string(),
                        node: node.to_owned(),
                        kind: e.kind(),
                        error: chain(e),
                        exit_code: exit::code(e.kind()),
                    })
                };
                let engine = match engine {
                    Ok(e) => e,
                    Err(e) => return err(&e, &node),
                };
                // With --all, only containers with NVIDIA entries (or GPUs expected of them).
                if all && expected.is_none() {
                    match engine.current_assignment(&ct).await {
                        Ok(None) => return CheckOutcome::NoGpu,
                        Ok(Some(_)) => {}
                        Err(e) => return err(&e, &node),
                    }
                }
                match engine.check(&ct, expected.as_ref()).await {
                    Ok(report) => CheckOutcome::Report(CheckRow { node, report }),
                    Err(f) => err(&f.error, &node),
                }
            }
        },
    )
    .await;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut without_gpu = 0;
    for o in outs {
        match o {
            Some(CheckOutcome::Report(r)) => rows.push(r),
            Some(CheckOutcome::Error(e)) => errors.push(e),
            Some(CheckOutcome::NoGpu) => without_gpu += 1,
            None => errors.push(CheckError {
                ct: "?".into(),
                node: "?".into(),
                kind: ErrorKind::Internal,
                error: "the task checking a container panicked".into(),
                exit_code: 1,
            }),
        }
    }
    let drift = rows.iter().any(|r| r.report.drift);
    let code = worst(
        rows.iter()
            .map(|r| {
                if r.report.drift {
                    exit::code(ErrorKind::Drift)
                } else {
                    0
                }
            })
            .chain(errors.iter().map(|e| e.exit_code)),
    );
    if json {
        print_json(&JsonCheck {
            drift,
            containers: &rows,
            errors: &errors,
            without_gpu,
            exit_code: code,
        });
    } else if !(quiet && code == 0) {
        clear_progress();
        let mut out = std::io::stdout().lock();
        let w_ct = rows
            .iter()
            .map(|r| r.report.ct.len())
            .chain(errors.iter().map(|e| e.ct.len()))
            .max()
            .unwrap_or(0)
            .max(4);
        let w_node = rows
            .iter()
            .map(|r| r.node.len())
            .chain(errors.iter().map(|e| e.node.len()))
            .max()
            .unwrap_or(0)
            .max(4);
        if rows.len() + errors.len() > 1 || c.all {
            let _ = writeln!(
                out,
                "{:<w_ct$}  {:<w_node$}  {:<7}  FINDINGS",
                "CTID", "NODE", "RESULT"
            );
            for r in &rows {
                let kinds: Vec<String> = r
                    .report
                    .findings
                    .iter()
                    .map(|f| format!("{:?}", f.kind))
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<w_ct$}  {:<w_node$}  {:<7}  {}",
                    r.report.ct,
                    r.node,
                    if r.report.drift { "drift" } else { "ok" },
                    if kinds.is_empty() {
                        "-".to_owned()
                    } else {
                        kinds.join(", ")
                    }
                );
            }
            for e in &errors {
                let _ = writeln!(
                    out,
                    "{:<w_ct$}  {:<w_node$}  {:<7}  exit {}",
                    e.ct, e.node, "error", e.exit_code
                );
            }
            if c.all {
                let _ = writeln!(
                    out,
                    "{} checked, {} with drift, {} failed, {} without NVIDIA entries; exit {code}",
                    rows.len() + errors.len(),
                    rows.iter().filter(|r| r.report.drift).count(),
                    errors.len(),
                    without_gpu
                );
            }
        }
        for r in &rows {
            if !r.report.drift && (quiet || rows.len() > 1) {
                continue;
            }
            let _ = writeln!(
                out,
                "CT {}: {}",
                r.report.ct,
                if r.report.drift { "drift" } else { "ok" }
            );
            for f in &r.report.findings {
                let _ = writeln!(out, "  {:?}: {}", f.kind, f.detail);
            }
            for n in &r.report.not_checked {
                let _ = writeln!(out, "  not checked: {n}");
            }
        }
    }
    for e in &errors {
        print_error(
            hints::render_text(&format!("CT {} on {}: {}", e.ct, e.node, e.error)),
            hints::kind_hint(e.kind, &e.ct),
        );
    }
    code
}

/// What `check` compares a container against: `--gpus` / `--driver-version`, else the
/// orchestrator config's `gpu_assignment` for it; `None` when neither says.
fn expected_for(
    c: &CheckArgs,
    pc: Option<&PhoenixConfig>,
    ct: &CtRef,
    version: Option<gpu_core::VersionWanted>,
) -> Result<Option<Request>, Error> {
    let from_pc = pc
        .and_then(|p| p.ct(ct.as_str()))
        .and_then(|b| b.gpu_assignment.clone());
    let Some(sel) = c.gpus.clone().or(from_pc) else {
        return Ok(None);
    };
    let mut r = Request::new(ct.clone(), sel.parse()?);
    r.strategy = gpu_core::Strategy::None;
    if let Some(v) = version {
        r.driver_version = v;
        r.strategy = gpu_core::Strategy::Runfile;
    }
    Ok(Some(r))
}

/// `sync`: re-apply every GPU container's current assignment so its userspace matches the
/// host's module again (runfile containers get the new runfile, downloaded once per node;
/// host-libs containers only get their mounts and ldconfig checked).
pub async fn sync(
    s: &SyncArgs,
    pc: Option<&PhoenixConfig>,
    nodes: &Nodes,
    target: &gpu_core::Target,
    json: bool,
    quiet: bool,
) -> u8 {
    let cts = match targets(s.all, &s.ctids, nodes, target).await {
        Ok(v) => v,
        Err(e) => return fail_err(json, e),
    };
    if s.jobs == 0 || s.restart_timeout == 0 {
        return fail_err(
            json,
            CliError::flag(
                if s.jobs == 0 {
                    "--jobs"
                } else {
                    "--restart-timeout"
                },
                "0",
                "give a number of at least 1",
            ),
        );
    }
    let runfile_url = match s
        .runfile_url
        .clone()
        .or_else(|| pc.and_then(|p| p.nvidia_runfile_url.clone()))
        .map(|u| args::url("--runfile-url", &u))
        .transpose()
    {
        Ok(u) => u,
        Err(e) => return fail_err(json, e),
    };
    let sha256 = match s.runfile_sha256.as_deref().map(args::sha256).transpose() {
        Ok(v) => v,
        Err(e) => return fail_err(json, e),
    };
    let mut slots = Vec::new();
    for ct in cts {
        let t0 = Instant::now();
        let (node, engine) = nodes.engine_for(&ct).await;
        let engine = match engine {
            Ok(e) => e,
            Err(e) => {
                slots.push(Err(FleetRow::failed(ct.as_str(), &node, "?", &e)));
                continue;
            }
        };
        let current = match engine.current_assignment(&ct).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                if !s.all {
                    let mut row = FleetRow::skipped(ct.as_str(), &node, "none");
                    row.duration_ms = t0.elapsed().as_millis() as u64;
                    slots.push(Err(row));
                }
                continue;
            }
            Err(e) => {
                slots.push(Err(FleetRow::failed(ct.as_str(), &node, "?", &e)));
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
                &e,
            )));
            continue;
        }
        let mut req = current.request();
        if req.strategy == gpu_core::Strategy::Runfile {
            req.strategy = match s.strategy {
                Some(StrategyArg::None) => gpu_core::Strategy::None,
                Some(StrategyArg::HostLibs) => gpu_core::Strategy::HostLibs,
                Some(StrategyArg::Runfile) | None => gpu_core::Strategy::Runfile,
            };
        }
        req.runfile = RunfileSource {
            url: runfile_url.clone(),
            sha256: sha256.clone(),
        };
        req.dry_run = s.dry_run;
        req.restart = RestartPolicy {
            no_restart: s.no_restart,
            start_if_stopped: s.start,
            timeout: Duration::from_secs(s.restart_timeout),
        };
        slots.push(Ok(FleetItem {
            node,
            engine,
            request: req,
        }));
    }
    let rows = run_items(slots, s.jobs).await;
    finish_rows(&rows, json, quiet)
}
