//! Where output goes: the result on stdout (text or one JSON object), errors and hints on
//! stderr, progress bars on a terminal. One [`Printer`] per run carries the choices (`--json`,
//! `-q`, progress) to every command.
//!
//! stdout is written with `write!`, never `println!`: a closed stdout (a reader that went away,
//! `| head -c 10`, `| true`) is noticed once, further output is dropped, and the run ends with
//! its normal exit code instead of a panic. SIGPIPE stays ignored (Rust's default), so the
//! write fails with EPIPE, which is what is handled here. Writes to stderr ignore errors.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use gpu_core::{Event, EventSink, Report, StepStatus};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::cli::Global;
use crate::error::CliError;
use crate::progress::Progress;

/// The output choices of one run, and the state of stdout.
pub struct Printer {
    json: bool,
    quiet: bool,
    progress: Option<Progress>,
    stdout_closed: AtomicBool,
}

impl Printer {
    /// The printer the global flags ask for; progress bars only when both stdout and stderr
    /// are terminals and neither `--json` nor `-q` is given.
    pub fn new(g: &Global) -> Printer {
        let progress = crate::progress::enabled(
            g.json,
            g.quiet,
            io::stdout().is_terminal(),
            io::stderr().is_terminal(),
        )
        .then(Progress::stderr);
        Printer {
            json: g.json,
            quiet: g.quiet > 0,
            progress,
            stdout_closed: AtomicBool::new(false),
        }
    }

    /// Whether the result is one JSON object.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Whether `-q` was given (a successful run over several containers prints no table).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// The progress bars' container, for log lines above them.
    pub fn multi(&self) -> Option<indicatif::MultiProgress> {
        self.progress.as_ref().map(|p| p.multi().clone())
    }

    /// Where the engine's events go: the progress bars, and log lines.
    pub fn events(&self) -> EventSink {
        let progress = self.progress.clone();
        EventSink::new(move |e: Event| {
            if let Some(p) = &progress {
                p.handle(&e);
            }
            log_event(e);
        })
    }

    /// Takes the progress bars away before something is printed for good.
    pub fn clear_progress(&self) {
        if let Some(p) = &self.progress {
            p.clear();
        }
    }

    /// Writes to stdout what `f` writes. A closed stdout is not an error: the output is
    /// dropped, now and from then on.
    pub fn out(&self, f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Result<(), CliError> {
        self.clear_progress();
        if self.stdout_closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut buf = Vec::new();
        f(&mut buf).map_err(CliError::Output)?;
        let mut out = io::stdout().lock();
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.stdout_closed.store(true, Ordering::Relaxed);
                debug!("stdout is closed; the rest of the output is dropped");
                Ok(())
            }
            Err(e) => Err(CliError::Output(e)),
        }
    }

    /// Writes `v` as pretty JSON and a newline to stdout.
    pub fn json_out(&self, v: &impl Serialize) -> Result<(), CliError> {
        self.out(|w| {
            serde_json::to_writer_pretty(&mut *w, v).map_err(io::Error::other)?;
            writeln!(w)
        })
    }

    /// Lines on stderr (an error on one screen, then its hint). Errors writing them are
    /// ignored: there is nowhere left to report them.
    pub fn err_lines(&self, lines: &[String], hint: Option<&str>) {
        self.clear_progress();
        let mut err = io::stderr().lock();
        for l in lines {
            let _ = writeln!(err, "{l}");
        }
        if let Some(h) = hint {
            let _ = writeln!(err, "hint: {h}");
        }
    }

    /// Prints a command's error: with `--json` a JSON object on stdout, always the error and
    /// its hint on stderr.
    pub fn fail(&self, e: &CliError) {
        let kind = e.kind();
        let code = crate::exit::code(kind);
        let hint = crate::hints::hint_cli(e);
        if let CliError::Operation(op) = e {
            let failure = &op.failure;
            if self.json {
                let _ = self.json_out(&JsonReport {
                    report: &failure.report,
                    exit_code: code,
                    hint: hint.clone(),
                });
            } else if !failure.report.steps.is_empty() {
                let _ = self.report(op.what, &failure.report);
            }
            self.err_lines(&crate::hints::render(&failure.error), hint.as_deref());
            return;
        }
        if self.json {
            let _ = self.json_out(&JsonError {
                error: &gpu_core::chain(e),
                kind,
                exit_code: code,
                hint: hint.as_deref(),
            });
        }
        self.err_lines(&crate::hints::render(e), hint.as_deref());
    }

    /// Prints an operation's report: the JSON report, or the diff and one line per step.
    pub fn report(&self, what: &str, report: &Report) -> Result<(), CliError> {
        if self.json {
            return self.json_out(&JsonReport {
                report,
                exit_code: 0,
                hint: None,
            });
        }
        self.out(|w| {
            if !report.config_diff.is_empty() {
                writeln!(w, "{}", report.config_diff.trim_end())?;
                writeln!(w)?;
            }
            writeln!(w, "{what} CT {}:", report.ct)?;
            for s in &report.steps {
                writeln!(
                    w,
                    "  {:<11} {:<8} {}",
                    s.name.as_str(),
                    status_word(s.status),
                    s.detail
                )?;
            }
            Ok(())
        })
    }
}

/// An operation's report as `--json` prints it.
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

/// A failure before any operation ran, as `--json` prints it.
#[derive(Serialize)]
struct JsonError<'a> {
    error: &'a str,
    kind: gpu_core::ErrorKind,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
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
