//! `host prepare`: the boot unit that creates the NVIDIA nodes before guests start, and the
//! optional pre-start hookscript (`gpu_core::host_prepare` does the work).

use std::io::Write;
use std::path::PathBuf;

use exec_backend::Host;
use gpu_core::host_prepare::{self, PrepareOptions, PrepareReport, HOOKSCRIPT_VOLID};
use serde::Serialize;

use super::Worst;
use crate::cli::{Global, PrepareArgs};
use crate::error::CliError;
use crate::output::{JsonError, Printer};

#[derive(Serialize)]
struct JsonPrepare<'a> {
    #[serde(flatten)]
    report: &'a PrepareReport,
    systemctl_run: bool,
    error: Option<JsonError>,
}

/// Runs `host prepare`.
pub async fn prepare(
    host: &dyn Host,
    g: &Global,
    p: &PrepareArgs,
    printer: &Printer,
) -> Result<Worst, CliError> {
    let under_root = g.root.is_some();
    let binary = std::env::current_exe()
        .ok()
        .filter(|b| !under_root && b.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/phoenix-gpu"));
    let opts = PrepareOptions {
        modeset: p.modeset,
        hookscript: p.hookscript,
        binary,
        systemctl: !under_root,
        dry_run: p.dry_run,
        force: p.force,
    };
    let report = if p.remove {
        host_prepare::remove(host, &opts).await?
    } else {
        host_prepare::prepare(host, &opts).await?
    };
    if printer.json() {
        printer.json_out(
            &JsonPrepare {
                report: &report,
                systemctl_run: opts.systemctl && !p.dry_run,
                error: None,
            },
            0,
        )?;
        return Ok(None);
    }
    if !report.hookscript_users.is_empty() {
        printer.err_lines(
            &[format!(
                "warning: container(s) {} still name the hookscript {HOOKSCRIPT_VOLID} and will not start until it is detached: pct set CTID --delete hookscript",
                report.hookscript_users.join(", ")
            )],
            None,
        );
    }
    printer.out(|w| {
        for f in &report.files {
            let action = if p.dry_run {
                match f.action {
                    "create" => "would create",
                    "update" => "would update",
                    "remove" => "would remove",
                    a => a,
                }
            } else {
                match f.action {
                    "create" => "created",
                    "update" => "updated",
                    "remove" => "removed",
                    a => a,
                }
            };
            writeln!(w, "{action:<13} {}", f.path.display())?;
            if p.dry_run && !f.content.is_empty() && f.action != "unchanged" {
                for l in f.content.lines() {
                    writeln!(w, "    | {l}")?;
                }
            }
        }
        for c in &report.commands {
            writeln!(
                w,
                "{:<13} {c}",
                if p.dry_run { "would run" } else { "ran" }
            )?;
        }
        let unit_changed = report
            .files
            .iter()
            .any(|f| f.path == std::path::Path::new(host_prepare::UNIT_PATH) && f.action != "unchanged" && f.action != "absent");
        if under_root && unit_changed {
            if p.remove {
                writeln!(
                    w,
                    "note: under --root, systemctl is not run; on the real host, `systemctl disable --now {}` before and `systemctl daemon-reload` after removing the unit",
                    host_prepare::UNIT_NAME
                )?;
            } else {
                writeln!(
                    w,
                    "note: under --root, systemctl is not run; enable the unit on the real host with `systemctl daemon-reload && systemctl enable --now {}`",
                    host_prepare::UNIT_NAME
                )?;
            }
        }
        if p.hookscript && !p.remove {
            writeln!(
                w,
                "note: attach the hookscript to each GPU container: pct set CTID --hookscript {HOOKSCRIPT_VOLID}"
            )?;
        }
        if !report.changed {
            writeln!(w, "nothing to do")?;
        }
        Ok(())
    })?;
    Ok(None)
}
