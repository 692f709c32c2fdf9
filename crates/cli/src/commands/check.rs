//! `check` of one or several containers, or `--all`: gpu-core compares them
//! (`gpu_core::fleet::check_many`); this renders a table or one JSON object. Drift is exit 10.

use std::io::Write;
use std::sync::Arc;

use gpu_core::cluster::Cluster;
use gpu_core::fleet::{self, CheckFailure, CheckRow, Selection};
use gpu_core::orchestrator::OrchestratorConfig;
use gpu_core::FindingKind;
use serde::Serialize;

use super::Worst;
use crate::args;
use crate::cli::CheckArgs;
use crate::error::CliError;
use crate::exit;
use crate::hints;
use crate::output::{JsonError, Printer};

/// A container `check` could not look at, as `--json` prints it.
#[derive(Serialize)]
struct JsonCheckError<'a> {
    ct: &'a str,
    node: &'a str,
    kind: gpu_core::ErrorKind,
    exit_code: u8,
    error: JsonError,
}

impl<'a> JsonCheckError<'a> {
    fn new(f: &'a CheckFailure, command: Option<&str>) -> JsonCheckError<'a> {
        JsonCheckError {
            ct: &f.ct,
            node: &f.node,
            kind: f.kind,
            exit_code: exit::code(f.kind),
            error: JsonError::core(&f.cause, command),
        }
    }
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    drift: bool,
    containers: &'a [CheckRow],
    errors: Vec<JsonCheckError<'a>>,
    /// Containers looked at that have no NVIDIA entries (with --all).
    without_gpu: usize,
    error: Option<JsonError>,
}

/// `check`: a table (or JSON) of what each container's config and userspace miss.
pub async fn run(
    c: &CheckArgs,
    orch: Option<&OrchestratorConfig>,
    cluster: &Arc<Cluster>,
    printer: &Printer,
) -> Result<Worst, CliError> {
    let which = args::selection(cluster.target(), &c.ctids, c.all, Selection::All)?;
    let expect = args::expectation(c)?;
    let jobs = args::jobs(c.jobs)?;
    let run = fleet::check_many(cluster, &which, &expect, orch, jobs).await?;
    let worst = run.worst();
    let code = exit::code_of(worst);
    let (rows, errors) = (&run.containers, &run.errors);
    if printer.json() {
        printer.json_out(
            &JsonCheck {
                drift: run.drift(),
                containers: rows,
                errors: errors
                    .iter()
                    .map(|f| JsonCheckError::new(f, printer.command()))
                    .collect(),
                without_gpu: run.without_gpu,
                error: None,
            },
            code,
        )?;
    } else if !(printer.quiet() && worst.is_none()) {
        let quiet = printer.quiet();
        printer.out(|w| {
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
                writeln!(
                    w,
                    "{:<w_ct$}  {:<w_node$}  {:<7}  FINDINGS",
                    "CTID", "NODE", "RESULT"
                )?;
                for r in rows {
                    let kinds: Vec<String> = r
                        .report
                        .findings
                        .iter()
                        .map(|f| f.kind.to_string())
                        .collect();
                    writeln!(
                        w,
                        "{:<w_ct$}  {:<w_node$}  {:<7}  {}",
                        r.report.ct,
                        r.node,
                        if r.report.drift { "drift" } else { "ok" },
                        if kinds.is_empty() {
                            "-".to_owned()
                        } else {
                            kinds.join(", ")
                        }
                    )?;
                }
                for e in errors {
                    writeln!(
                        w,
                        "{:<w_ct$}  {:<w_node$}  {:<7}  exit {}",
                        e.ct,
                        e.node,
                        "error",
                        exit::code(e.kind)
                    )?;
                }
                if c.all {
                    writeln!(
                        w,
                        "{} checked, {} with drift, {} failed, {} without NVIDIA entries; exit {code}",
                        rows.len() + errors.len(),
                        rows.iter().filter(|r| r.report.drift).count(),
                        errors.len(),
                        run.without_gpu
                    )?;
                }
            }
            for r in rows {
                if !r.report.drift && (quiet || rows.len() > 1) {
                    continue;
                }
                writeln!(
                    w,
                    "CT {}: {}",
                    r.report.ct,
                    if r.report.drift { "drift" } else { "ok" }
                )?;
                for f in &r.report.findings {
                    let see = if f.kind == FindingKind::ConfigDiffers {
                        format!("; `phoenix-gpu plan {}` shows them", r.report.ct)
                    } else {
                        String::new()
                    };
                    writeln!(w, "  {}: {}{see}", f.kind, f.detail)?;
                }
                for n in &r.report.not_checked {
                    writeln!(w, "  not checked: {n}")?;
                }
                for d in &r.report.doubtful {
                    writeln!(w, "  doubtful (kept): {d}")?;
                }
                if !r.report.doubtful.is_empty() {
                    writeln!(
                        w,
                        "  hint: if these are NVIDIA majors of an earlier boot, `phoenix-gpu apply {} --remove-doubtful` takes them out; otherwise they are someone else's and stay",
                        r.report.ct
                    )?;
                }
            }
            Ok(())
        })?;
    }
    for e in errors {
        printer.err_lines(
            &hints::render_text(&format!("CT {} on {}: {}", e.ct, e.node, e.error)),
            hints::hint_in(&e.cause, printer.command()).as_deref(),
        );
    }
    Ok(worst)
}
