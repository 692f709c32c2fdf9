//! Where output goes: the result on stdout (text or one JSON object), errors and hints on
//! stderr, progress bars on a terminal. One [`Printer`] per run carries the choices (`--json`,
//! `-q`, progress) to every command.
//!
//! The JSON contract (`docs/schema/phoenix-gpu.schema.json`): every `--json` output is one
//! object, an [`Envelope`] of `schema_version` ([`gpu_core::SCHEMA_VERSION`]), the command's
//! own fields, `error` (null, or the one error shape, [`JsonError`]) and `exit_code`. Reports
//! are printed as [`JsonReport`], gpu-core's [`Report`] with that error shape.
//!
//! stdout is written with `write!`, never `println!`: a closed stdout (a reader that went away,
//! `| head -c 10`, `| true`) is noticed once, further output is dropped, and the run ends with
//! its normal exit code instead of a panic. SIGPIPE stays ignored (Rust's default), so the
//! write fails with EPIPE, which is what is handled here. Writes to stderr ignore errors.

use std::error::Error as StdError;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use gpu_core::{Activation, Counters, ErrorKind, Event, EventSink, Report, StepReport, StepStatus};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::cli::Global;
use crate::error::CliError;
use crate::progress::Progress;

/// The one shape of an error in every `--json` output: the whole command's error, a report's,
/// a fleet row's report's, a `check` row's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JsonError {
    /// The kind (`host_precondition`), one per exit code.
    pub kind: ErrorKind,
    /// The exit code of the kind.
    pub exit_code: u8,
    /// The error and its causes on one line, joined by `: ` (what stderr shows as `error:`
    /// and `caused by:` lines).
    pub message: String,
    /// The causes below the error, each one message, outermost first (empty when it has
    /// none).
    pub causes: Vec<String>,
    /// What to do about it (stderr's `hint:` line), or null.
    pub hint: Option<String>,
}

impl JsonError {
    /// `e` (of kind `kind`) with its cause chain and `hint`.
    pub fn new(e: &(dyn StdError + 'static), kind: ErrorKind, hint: Option<String>) -> JsonError {
        let mut causes = Vec::new();
        let mut cur = e.source();
        while let Some(c) = cur {
            causes.push(c.to_string());
            cur = c.source();
        }
        JsonError {
            kind,
            exit_code: crate::exit::code(kind),
            message: gpu_core::chain(e),
            causes,
            hint,
        }
    }

    /// A gpu-core error of the command `command`, with its hint.
    pub fn core(e: &gpu_core::Error, command: Option<&str>) -> JsonError {
        JsonError::new(e, e.kind(), crate::hints::hint_in(e, command))
    }

    /// An error known only as a report's [`gpu_core::ReportedError`] (no cause chain).
    fn reported(e: &gpu_core::ReportedError) -> JsonError {
        JsonError {
            kind: e.kind,
            exit_code: crate::exit::code(e.kind),
            message: e.message.clone(),
            causes: Vec::new(),
            hint: None,
        }
    }
}

/// A command's `--json` output: the contract's version, the command's fields (each command's
/// own, and `error`), and the exit code.
#[derive(Serialize)]
pub struct Envelope<T: Serialize> {
    /// [`gpu_core::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The command's fields.
    #[serde(flatten)]
    pub body: T,
    /// The exit code of the run.
    pub exit_code: u8,
}

/// An operation's report as `--json` prints it: the fields of gpu-core's [`Report`], its
/// error in the one shape. (A test checks that the fields are the same as `Report`'s.)
#[derive(Serialize)]
pub struct JsonReport<'a> {
    ct: &'a str,
    changed: bool,
    steps: &'a [StepReport],
    counters: &'a Counters,
    config_diff: &'a str,
    activation: &'a Option<Activation>,
    error: Option<JsonError>,
    duration_ms: u64,
}

impl<'a> JsonReport<'a> {
    /// `report`, with `error` as the error it failed with (else the report's own, if any).
    pub fn new(report: &'a Report, error: Option<JsonError>) -> JsonReport<'a> {
        JsonReport {
            ct: &report.ct,
            changed: report.changed,
            steps: &report.steps,
            counters: &report.counters,
            config_diff: &report.config_diff,
            activation: &report.activation,
            error: error.or_else(|| report.error.as_ref().map(JsonError::reported)),
            duration_ms: report.duration_ms,
        }
    }
}

/// The output of a failure before any result: only the error.
#[derive(Serialize)]
struct ErrorOnly {
    error: JsonError,
}

/// The error printed for a command line that cannot be parsed: clap's message and its tip.
pub fn parse_error(e: &clap::Error) -> JsonError {
    let text = e.to_string();
    let mut lines = text.lines();
    let message = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    let tip = lines
        .map(str::trim)
        .find_map(|l| l.strip_prefix("tip: "))
        .map(str::to_owned);
    JsonError {
        kind: ErrorKind::BadInput,
        exit_code: crate::exit::code(ErrorKind::BadInput),
        message,
        causes: Vec::new(),
        hint: tip.or_else(|| crate::hints::kind_hint(ErrorKind::BadInput, None, None)),
    }
}

/// Prints the JSON answer to a command line that cannot be parsed (`--json` was in it).
pub fn print_parse_error(e: &clap::Error) {
    let error = parse_error(e);
    let code = error.exit_code;
    let v = Envelope {
        schema_version: gpu_core::SCHEMA_VERSION,
        body: ErrorOnly { error },
        exit_code: code,
    };
    let mut out = io::stdout().lock();
    // A closed stdout loses the answer; the exit code and stderr still tell.
    let _ = serde_json::to_writer_pretty(&mut out, &v)
        .map_err(io::Error::other)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
}

/// Whether `--json` is among the arguments (before a `--`), for an answer to a command line
/// clap could not parse.
pub fn json_asked(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// The output choices of one run, and the state of stdout.
pub struct Printer {
    json: bool,
    quiet: bool,
    progress: Option<Progress>,
    stdout_closed: AtomicBool,
    command: Option<&'static str>,
}

impl Printer {
    /// The printer the global flags ask for; progress bars only when both stdout and stderr
    /// are terminals and neither `--json` nor `-q` is given. `command` names the command run
    /// (for hints).
    pub fn new(g: &Global, command: &'static str) -> Printer {
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
            command: Some(command),
        }
    }

    /// The command run, for hints.
    pub fn command(&self) -> Option<&'static str> {
        self.command
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

    /// Writes `body` as the command's JSON output ([`Envelope`]) and a newline to stdout.
    pub fn json_out(&self, body: &impl Serialize, exit_code: u8) -> Result<(), CliError> {
        let v = Envelope {
            schema_version: gpu_core::SCHEMA_VERSION,
            body,
            exit_code,
        };
        self.out(|w| {
            serde_json::to_writer_pretty(&mut *w, &v).map_err(io::Error::other)?;
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
        let hint = crate::hints::hint_cli(e, self.command);
        if let CliError::Operation(op) = e {
            let failure = &op.failure;
            if self.json {
                let error = JsonError::new(&failure.error, kind, hint.clone());
                let _ = self.json_out(&JsonReport::new(&failure.report, Some(error)), code);
            } else if !failure.report.steps.is_empty() {
                let _ = self.report(op.what, &failure.report);
            }
            self.err_lines(&crate::hints::render(&failure.error), hint.as_deref());
            return;
        }
        if self.json {
            let error = JsonError::new(e, kind, hint.clone());
            let _ = self.json_out(&ErrorOnly { error }, code);
        }
        self.err_lines(&crate::hints::render(e), hint.as_deref());
    }

    /// Prints an operation's report: the JSON report, or the diff and one line per step.
    pub fn report(&self, what: &str, report: &Report) -> Result<(), CliError> {
        if self.json {
            return self.json_out(&JsonReport::new(report, None), 0);
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
            status = %status_word(report.status),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use gpu_core::fleet::FleetRow;
    use gpu_core::{ReportedError, StepName};
    use serde_json::Value;

    use super::*;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn failed_report() -> Report {
        let mut r = Report::new("101");
        r.steps.push(StepReport {
            name: StepName::HostCheck,
            status: StepStatus::Failed,
            detail: "d".into(),
            duration_ms: 1,
        });
        r.error = Some(ReportedError {
            kind: ErrorKind::HostPrecondition,
            message: "m".into(),
        });
        r
    }

    /// The CLI prints reports through its own struct (for the error shape): it must have
    /// exactly the fields of gpu-core's `Report`, so a field added there is not lost here.
    #[test]
    fn json_report_has_the_fields_of_report() {
        let r = failed_report();
        let lib = serde_json::to_value(&r).unwrap();
        let cli = serde_json::to_value(JsonReport::new(&r, None)).unwrap();
        assert_eq!(keys(&lib), keys(&cli));
        assert_eq!(
            keys(&cli["error"]),
            ["causes", "exit_code", "hint", "kind", "message"]
                .map(str::to_owned)
                .into()
        );
        assert_eq!(cli["error"]["exit_code"], 8);
        for k in [
            "ct",
            "changed",
            "steps",
            "counters",
            "config_diff",
            "activation",
            "duration_ms",
        ] {
            assert_eq!(lib[k], cli[k], "{k}");
        }
    }

    /// The same for a fleet row: `commands/fleet.rs` prints gpu-core's `FleetRow` fields and
    /// `exit_code`.
    #[test]
    fn json_row_has_the_fields_of_fleet_row() {
        let e = std::sync::Arc::new(gpu_core::Error::NoDriver { host: "h".into() });
        let row = FleetRow::failed("101", "pve1", "1", e);
        let lib = serde_json::to_value(&row).unwrap();
        let cli = serde_json::to_value(crate::commands::json_row(&row, None)).unwrap();
        let mut want = keys(&lib);
        want.insert("exit_code".into());
        assert_eq!(want, keys(&cli));
        assert_eq!(keys(&lib["report"]), keys(&cli["report"]));
    }

    #[test]
    fn json_is_found_in_any_argument_before_a_double_dash() {
        let args = |a: &[&str]| -> Vec<std::ffi::OsString> {
            a.iter().map(std::ffi::OsString::from).collect()
        };
        assert!(json_asked(&args(&[
            "phoenix-gpu",
            "apply",
            "--bogus",
            "--json"
        ])));
        assert!(json_asked(&args(&["phoenix-gpu", "--json"])));
        assert!(!json_asked(&args(&[
            "phoenix-gpu",
            "apply",
            "--",
            "--json"
        ])));
        assert!(!json_asked(&args(&["--json"])), "argv[0] is the program");
        assert!(!json_asked(&args(&["phoenix-gpu", "--jsonx"])));
    }
}
