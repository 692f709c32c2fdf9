//! `apply` of several containers (or `--all` of the orchestrator config) and `sync`: gpu-core
//! runs them (`gpu_core::fleet`); this renders the rows: a table, or one JSON object, and the
//! errors of the rows that failed.
//!
//! The exit code is the worst of the containers' codes: the highest one, so every failure
//! (1-10) outranks success (0).

use std::io::Write;
use std::time::Duration;

use gpu_core::cluster::Cluster;
use gpu_core::fleet::{self, FleetRow, FleetRun, RowResult, Selection, Summary};
use gpu_core::orchestrator::OrchestratorConfig;
use serde::Serialize;

use super::Worst;
use crate::args;
use crate::cli::{FleetApplyArgs, SyncArgs};
use crate::error::CliError;
use crate::exit;
use crate::hints;
use crate::output::{JsonError, JsonReport, Printer};

/// `apply` of several containers, or `--all` of the orchestrator config.
pub async fn apply(
    a: &FleetApplyArgs,
    orch: Option<&OrchestratorConfig>,
    cluster: &Cluster,
    printer: &Printer,
) -> Result<Worst, CliError> {
    let template = args::template(&a.opts)?;
    let jobs = args::jobs(a.jobs)?;
    let which = args::selection(cluster.target(), &a.ctids, a.all, Selection::Orchestrator)?;
    let cts = which.resolve(cluster, orch).await?;
    let run = fleet::apply_many(cluster, &cts, &template, orch, jobs).await?;
    rows(&run, printer)
}

/// `sync`: every GPU container's current assignment again, after a host driver upgrade.
pub async fn sync(
    s: &SyncArgs,
    orch: Option<&OrchestratorConfig>,
    cluster: &Cluster,
    printer: &Printer,
) -> Result<Worst, CliError> {
    let which = args::selection(cluster.target(), &s.ctids, s.all, Selection::All)?;
    let jobs = args::jobs(s.jobs)?;
    let opts = args::sync_options(s)?;
    let run = fleet::sync(cluster, &which, &opts, orch, jobs).await?;
    rows(&run, printer)
}

/// The exit code of one row.
fn row_code(r: &FleetRow) -> u8 {
    exit::code_of(r.error_kind)
}

/// A row as `--json` prints it: the fields of gpu-core's [`FleetRow`] (its report with the one
/// error shape) and the row's exit code. (A test in `output.rs` checks the fields.)
#[derive(Serialize)]
pub struct JsonRow<'a> {
    ct: &'a str,
    node: &'a str,
    gpus: &'a str,
    result: RowResult,
    error_kind: Option<gpu_core::ErrorKind>,
    duration_ms: u64,
    report: JsonReport<'a>,
    exit_code: u8,
}

/// `row` as `--json` prints it, with the hints of the command `command`.
pub fn json_row<'a>(row: &'a FleetRow, command: Option<&str>) -> JsonRow<'a> {
    let error = row.error.as_deref().map(|e| JsonError::core(e, command));
    JsonRow {
        ct: &row.ct,
        node: &row.node,
        gpus: &row.gpus,
        result: row.result,
        error_kind: row.error_kind,
        duration_ms: row.duration_ms,
        report: JsonReport::new(&row.report, error),
        exit_code: row_code(row),
    }
}

#[derive(Serialize)]
struct JsonFleet<'a> {
    rows: Vec<JsonRow<'a>>,
    summary: Summary,
    error: Option<JsonError>,
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", Duration::from_millis(ms).as_secs_f64())
}

fn result_word(r: RowResult) -> &'static str {
    match r {
        RowResult::Changed => "changed",
        RowResult::Unchanged => "unchanged",
        RowResult::Skipped => "skipped",
        RowResult::Failed => "failed",
    }
}

/// Prints the rows (table or JSON) and the errors of failed rows; returns the worst outcome.
fn rows(run: &FleetRun, printer: &Printer) -> Result<Worst, CliError> {
    let worst = run.worst();
    let code = exit::code_of(worst);
    let summary = run.summary();
    let rows = &run.rows;
    if printer.json() {
        printer.json_out(
            &JsonFleet {
                rows: rows
                    .iter()
                    .map(|row| json_row(row, printer.command()))
                    .collect(),
                summary,
                error: None,
            },
            code,
        )?;
    } else if !(printer.quiet() && worst.is_none()) {
        printer.out(|w| {
            let w_ct = rows.iter().map(|r| r.ct.len()).max().unwrap_or(0).max(4);
            let w_node = rows.iter().map(|r| r.node.len()).max().unwrap_or(0).max(4);
            let w_gpus = rows.iter().map(|r| r.gpus.len()).max().unwrap_or(0).max(4);
            writeln!(
                w,
                "{:<w_ct$}  {:<w_node$}  {:<w_gpus$}  {:<14}  {:>7}",
                "CTID", "NODE", "GPUS", "RESULT", "TIME"
            )?;
            for r in rows {
                let result = match r.error_kind {
                    Some(k) => format!("failed ({})", exit::code(k)),
                    None => result_word(r.result).to_owned(),
                };
                writeln!(
                    w,
                    "{:<w_ct$}  {:<w_node$}  {:<w_gpus$}  {:<14}  {:>7}",
                    r.ct,
                    r.node,
                    r.gpus,
                    result,
                    secs(r.duration_ms)
                )?;
            }
            writeln!(
                w,
                "{} container(s): {} changed, {} unchanged, {} skipped, {} failed; exit {code}",
                summary.total, summary.changed, summary.unchanged, summary.skipped, summary.failed
            )
        })?;
    }
    for r in rows {
        if let (Some(e), Some(reported)) = (&r.error, &r.report.error) {
            printer.err_lines(
                &hints::render_text(&format!("CT {} on {}: {}", r.ct, r.node, reported.message)),
                hints::hint_in(e, printer.command()).as_deref(),
            );
        }
    }
    Ok(worst)
}
