//! phoenix-gpu: give NVIDIA GPUs to LXC containers on Proxmox VE and plain LXC hosts.
//!
//! A thin binary over `gpu-core`: parses flags into gpu-core's values, chooses backends,
//! installs logging, renders what gpu-core returns, and maps the outcome to the exit codes of
//! ARCHITECTURE.md. Every command returns a `Result` to [`main`], the one exit point, which
//! prints an error once and takes the exit code from one table (`exit.rs`).

// gpu_core::Error keeps backend errors by value; errors are rare and not hot.
#![allow(clippy::result_large_err)]

mod args;
mod assets;
mod backend;
mod cli;
mod commands;
mod error;
mod exit;
mod hints;
mod logging;
mod output;
mod progress;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use gpu_core::ErrorKind;
use tracing::{info, Instrument};

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::Printer;

/// Writes the packaging assets into `dir` and lists them on stdout.
fn generate_assets(dir: &std::path::Path) -> ExitCode {
    let files = match assets::write_all(dir) {
        Ok(files) => files,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot write the assets into {}: {e}",
                dir.display()
            );
            return ExitCode::from(exit::code(ErrorKind::Internal));
        }
    };
    let mut out = std::io::stdout().lock();
    for f in files {
        // A closed stdout only loses the list; the assets are written.
        if writeln!(out, "{}", f.display()).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
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
                let _ = writeln!(
                    std::io::stderr(),
                    "usage: phoenix-gpu {} DIR",
                    assets::SUBCOMMAND
                );
                ExitCode::from(exit::code(ErrorKind::BadInput))
            }
        };
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            // With --json anywhere on the line, the answer is JSON even when the line does
            // not parse (clap's text still goes to stderr).
            if e.use_stderr() && output::json_asked(&argv) {
                output::print_parse_error(&e);
            }
            let _ = e.print();
            // --help and --version are not failures; every other parse error is bad input.
            return ExitCode::from(if e.use_stderr() {
                exit::code(ErrorKind::BadInput)
            } else {
                0
            });
        }
    };
    let printer = Printer::new(&cli.global, command_name(&cli.command));
    let g = &cli.global;
    if let Some(w) = logging::init(g.verbose, g.quiet, g.log_file.as_deref(), printer.multi()) {
        printer.err_lines(&[format!("warning: {w}")], None);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = CliError::Runtime(e);
            printer.fail(&e);
            return ExitCode::from(exit::code(e.kind()));
        }
    };
    let span = tracing::info_span!(target: logging::RUN_SPAN_TARGET, "run", cmd = command_name(&cli.command));
    let code = rt.block_on(
        async {
            let worst = match commands::run(cli, &printer).await {
                Ok(worst) => worst,
                Err(e) => {
                    printer.fail(&e);
                    Some(e.kind())
                }
            };
            let code = exit::code_of(worst);
            info!(target: logging::RUN_SPAN_TARGET, exit_code = code, "phoenix-gpu finished");
            code
        }
        .instrument(span),
    );
    printer.clear_progress();
    // A host file read that hung was given up (it has a time limit); its blocking thread
    // must not keep the process from exiting.
    rt.shutdown_background();
    ExitCode::from(code)
}
