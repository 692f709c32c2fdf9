//! phoenix-gpu: give NVIDIA GPUs to LXC containers on Proxmox VE and plain LXC hosts.
//!
//! A thin binary over `gpu-core`: parses flags, chooses backends, installs logging, prints the
//! outcome and maps failures to the exit codes of ARCHITECTURE.md (see `exit.rs`).

// gpu_core::Error keeps backend errors by value; errors are rare and not hot.
#![allow(clippy::result_large_err)]

mod args;
mod assets;
mod backend;
mod cli;
mod error;
mod exit;
mod fleet_cmd;
mod hints;
mod host_cmd;
mod logging;
mod nodes;
mod phoenix_config;
mod progress;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::Parser;
use gpu_core::{
    chain, Engine, ErrorKind, Event, EventSink, Inventory, Report, Settings, StepStatus,
};
use serde::Serialize;
use tracing::{debug, info, warn, Instrument};

use crate::cli::{Cli, Command, HostCommand};
use crate::error::CliError;
use crate::nodes::Nodes;
use crate::phoenix_config::PhoenixConfig;
use crate::progress::Progress;

/// The progress bars of this run, when they are drawn.
static PROGRESS: OnceLock<Progress> = OnceLock::new();

/// Takes the progress bars away before something is printed for good.
fn clear_progress() {
    if let Some(p) = PROGRESS.get() {
        p.clear();
    }
}

/// Writes the packaging assets into `dir` and lists them on stdout.
fn generate_assets(dir: &std::path::Path) -> ExitCode {
    match assets::write_all(dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write the assets into {}: {e}", dir.display());
            ExitCode::from(exit::code(ErrorKind::Internal))
        }
    }
}

/// The subcommand's name, for the log's `run{cmd=...}` span.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Inventory => "inventory",
        Command::Plan(_) => "plan",
        Command::Apply(_) => "apply",
        Command::Check(_) => "check",
        Command::Verify(_) => "verify",
        Command::Remove(_) => "remove",
        Command::Sync(_) => "sync",
        Command::Host(_) => "host",
    }
}

fn main() -> ExitCode {
    // `phoenix-gpu generate-assets DIR`: packaging only, kept out of the clap definitions so
    // that it shows in no help, man page or completion.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == assets::SUBCOMMAND) {
        return match argv.get(2..) {
            Some([dir]) => generate_assets(std::path::Path::new(dir)),
            _ => {
                eprintln!("usage: phoenix-gpu {} DIR", assets::SUBCOMMAND);
                ExitCode::from(exit::code(ErrorKind::BadInput))
            }
        };
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not failures; every other parse error is bad input.
            return ExitCode::from(if e.use_stderr() {
                exit::code(ErrorKind::BadInput)
            } else {
                0
            });
        }
    };
    let g = &cli.global;
    if progress::enabled(
        g.json,
        g.quiet,
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ) {
        let _ = PROGRESS.set(Progress::stderr());
    }
    if let Some(w) = logging::init(
        g.verbose,
        g.quiet,
        g.log_file.as_deref(),
        PROGRESS.get().map(|p| p.multi().clone()),
    ) {
        eprintln!("warning: {w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::code(ErrorKind::Internal));
        }
    };
    let span = tracing::info_span!(target: logging::RUN_SPAN_TARGET, "run", cmd = command_name(&cli.command));
    let code = rt.block_on(
        async {
            let code = run(cli).await;
            debug!(exit_code = code, "phoenix-gpu finished");
            code
        }
        .instrument(span),
    );
    clear_progress();
    ExitCode::from(code)
}

/// What a command ended with: its exit code (0 on success).
async fn run(cli: Cli) -> u8 {
    let g = &cli.global;
    debug!(argv = ?std::env::args().collect::<Vec<_>>(), "phoenix-gpu started");
    let pc = match &g.phoenix_config {
        Some(p) => match PhoenixConfig::read(p) {
            Ok(c) => Some(c),
            Err(e) => return fail(g.json, ErrorKind::BadInput, &chain(&e)),
        },
        None => None,
    };
    let b = match backend::connect(g).await {
        Ok(b) => b,
        Err(e) => return fail_err(g.json, e),
    };
    let events = EventSink::new(|e: Event| {
        if let Some(p) = PROGRESS.get() {
            p.handle(&e);
        }
        log_event(e);
    });
    let settings = Settings {
        resolve_mount_sources: g.bind_under_root,
        ..Settings::default()
    };
    let engine = Engine::new(b.host.clone(), b.cts.clone(), b.target.clone())
        .with_settings(settings.clone())
        .with_events(events.clone());
    if let Command::Host(HostCommand::Prepare(p)) = &cli.command {
        return host_cmd::prepare(b.host.as_ref(), g, p).await;
    }
    let nodes = match Nodes::new(g, &b, engine.clone(), settings, events).await {
        Ok(n) => std::sync::Arc::new(n),
        Err(e) => return fail_err(g.json, e),
    };
    let quiet = g.quiet > 0;
    match &cli.command {
        Command::Inventory => inventory(&engine, g.json).await,
        Command::Apply(a) if a.all || a.ctids.len() != 1 => {
            fleet_cmd::apply(a, pc.as_ref(), &nodes, &b.target, g.json, quiet).await
        }
        Command::Apply(a) => {
            let id = a.ctids.first().map(String::as_str).unwrap_or("");
            one(&nodes, &b.target, id, &a.opts, pc.as_ref(), "apply", g.json).await
        }
        Command::Plan(a) => {
            one(
                &nodes,
                &b.target,
                &a.ctid,
                &a.opts,
                pc.as_ref(),
                "plan",
                g.json,
            )
            .await
        }
        Command::Verify(a) => {
            one(
                &nodes,
                &b.target,
                &a.ctid,
                &a.opts,
                pc.as_ref(),
                "verify",
                g.json,
            )
            .await
        }
        Command::Remove(r) => {
            let ct = match args::ct(&b.target, &r.ctid) {
                Ok(c) => c,
                Err(e) => return fail_err(g.json, e),
            };
            let engine = match nodes.engine_for(&ct).await.1 {
                Ok(e) => e,
                Err(e) => return fail_err(g.json, e),
            };
            finish(g.json, "remove", engine.remove(&ct, r.dry_run).await)
        }
        Command::Check(c) => {
            fleet_cmd::check(c, pc.as_ref(), &nodes, &b.target, g.json, quiet).await
        }
        Command::Sync(s) => fleet_cmd::sync(s, pc.as_ref(), &nodes, &b.target, g.json, quiet).await,
        Command::Host(HostCommand::Prepare(_)) => 0,
    }
}

/// plan, apply or verify of one container, on its node.
async fn one(
    nodes: &Nodes,
    target: &gpu_core::Target,
    id: &str,
    opts: &cli::ApplyOpts,
    pc: Option<&PhoenixConfig>,
    what: &str,
    json: bool,
) -> u8 {
    let ct = match args::ct(target, id) {
        Ok(c) => c,
        Err(e) => return fail_err(json, e),
    };
    let req = match args::request(opts, ct, pc) {
        Ok(r) => r,
        Err(e) => return fail_err(json, e),
    };
    let engine = match nodes.engine_for(&req.ct).await.1 {
        Ok(e) => e,
        Err(e) => return fail_err(json, e),
    };
    let out = match what {
        "plan" => engine.plan_config(&req).await,
        "apply" => engine.apply(&req).await,
        _ => engine.verify(&req).await,
    };
    finish(json, what, out)
}

/// Progress events become log lines (stderr by -v/-q, and the log file).
fn log_event(e: Event) {
    match e {
        Event::StepStarted { ct, step } => debug!(ct = %ct, step = step.as_str(), "step started"),
        Event::StepFinished { ct, report } => info!(
            ct = %ct,
            step = report.name.as_str(),
            status = ?report.status,
            ms = report.duration_ms,
            "{}",
            report.detail
        ),
        Event::Progress {
            ct,
            what,
            done,
            total,
        } => debug!(ct = %ct, done, ?total, "{what}"),
        Event::Notice { ct, message } => warn!(ct = %ct, "{message}"),
        _ => {}
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

fn print_json(v: &impl Serialize) {
    clear_progress();
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render the JSON report: {e}"),
    }
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Ok => "ok",
        StepStatus::Changed => "changed",
        StepStatus::Planned => "planned",
        StepStatus::Skipped => "skipped",
        StepStatus::Failed => "failed",
    }
}

fn print_human(what: &str, report: &Report) {
    clear_progress();
    let mut out = std::io::stdout().lock();
    if !report.config_diff.is_empty() {
        let _ = writeln!(out, "{}", report.config_diff.trim_end());
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{what} CT {}:", report.ct);
    for s in &report.steps {
        let _ = writeln!(
            out,
            "  {:<11} {:<8} {}",
            s.name.as_str(),
            status_word(s.status),
            s.detail
        );
    }
}

/// Prints an operation's outcome; returns its exit code.
fn finish(json: bool, what: &str, out: Result<Report, gpu_core::Failure>) -> u8 {
    match out {
        Ok(report) => {
            if json {
                print_json(&JsonReport {
                    report: &report,
                    exit_code: 0,
                    hint: None,
                });
            } else {
                print_human(what, &report);
            }
            0
        }
        Err(f) => {
            let code = exit::code(f.error.kind());
            let hint = hints::hint(&f.error);
            if json {
                print_json(&JsonReport {
                    report: &f.report,
                    exit_code: code,
                    hint: hint.clone(),
                });
            } else if !f.report.steps.is_empty() {
                print_human(what, &f.report);
            }
            print_error(hints::render(&f.error), hint.as_deref());
            code
        }
    }
}

/// The error on one screen, then the hint.
fn print_error(lines: Vec<String>, hint: Option<&str>) {
    clear_progress();
    let mut err = std::io::stderr().lock();
    for l in lines {
        let _ = writeln!(err, "{l}");
    }
    if let Some(h) = hint {
        let _ = writeln!(err, "hint: {h}");
    }
}

#[derive(Serialize)]
struct JsonError<'a> {
    error: &'a str,
    kind: ErrorKind,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

/// A failure before any operation ran, known by its text.
fn fail(json: bool, kind: ErrorKind, message: &str) -> u8 {
    let code = exit::code(kind);
    let hint = hints::kind_hint(kind, "CTID");
    if json {
        print_json(&JsonError {
            error: message,
            kind,
            exit_code: code,
            hint,
        });
    }
    print_error(hints::render_text(message), hint);
    code
}

/// A failure before any operation ran.
fn fail_err(json: bool, e: impl Into<CliError>) -> u8 {
    let e = e.into();
    let kind = e.kind();
    let code = exit::code(kind);
    let hint = hints::hint_cli(&e);
    if json {
        print_json(&JsonError {
            error: &chain(&e),
            kind,
            exit_code: code,
            hint: hint.as_deref(),
        });
    }
    print_error(hints::render(&e), hint.as_deref());
    code
}

async fn inventory(engine: &Engine, json: bool) -> u8 {
    let inv = match engine.inventory().await {
        Ok(i) => i,
        Err(e) => return fail_err(json, e),
    };
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            inv: &'a Inventory,
            exit_code: u8,
        }
        print_json(&Out {
            inv: &inv,
            exit_code: 0,
        });
        return 0;
    }
    clear_progress();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "driver   {}", inv.driver_version);
    let _ = writeln!(
        out,
        "host     {}",
        inv.pve_version
            .as_deref()
            .map(|v| format!("Proxmox VE {v}"))
            .unwrap_or_else(|| "not Proxmox VE".into())
    );
    let _ = writeln!(out, "cgroup   {}", inv.cgroup.allow_key());
    let opt = |m: Option<u32>| m.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "majors   nvidia {}, nvidia-uvm {}, nvidia-caps {}",
        inv.majors.nvidia,
        opt(inv.majors.nvidia_uvm),
        opt(inv.majors.nvidia_caps)
    );
    let _ = writeln!(out, "GPUs");
    for gpu in &inv.gpus {
        let _ = writeln!(
            out,
            "  {}  /dev/nvidia{}  {}  {}  {}",
            gpu.index, gpu.minor, gpu.pci_bus_id, gpu.uuid, gpu.model
        );
    }
    let _ = writeln!(out, "nodes");
    for n in &inv.nodes {
        let rdev = n
            .rdev
            .map(|(a, b)| format!("{a}:{b}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "  {:<30} {:<8} {:?}", n.path.display(), rdev, n.kind);
    }
    0
}
