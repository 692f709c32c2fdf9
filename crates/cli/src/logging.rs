//! The tracing subscriber: human lines on stderr (by -v/-q), a log file.
//!
//! The log file is appended to by every run, and the Proxmox pre-start hookscript runs `check`
//! at every container start, so it holds info lines by default: each run's command line and
//! exit code and each step's outcome, a few hundred bytes per container and run. `-v` and more
//! add the debug lines (every command run and file read) to it. The package rotates it
//! (`/etc/logrotate.d/phoenix-gpu`).
//!
//! Every line of the log file starts with a UTC timestamp and the level, then the span scope:
//! `run{cmd=apply}` for the whole command and, inside a step of the engine,
//! `step{ct=101 step=config}`. The stderr lines leave the spans out and, while progress bars
//! are drawn, are printed above them.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Where the log goes when `--log-file` is not given (skipped when not writable).
pub const DEFAULT_LOG_FILE: &str = "/var/log/phoenix-gpu.log";

fn ours(level: LevelFilter) -> Targets {
    Targets::new()
        .with_target("phoenix_gpu", level)
        .with_target("gpu_core", level)
        .with_target("exec_backend", level)
        .with_target("lxc_conf", level)
        .with_default(LevelFilter::WARN.min(level))
}

/// The log file's level for the stderr level that -v/-q chose: info, or with -v and more debug
/// (trace with -vvv).
fn file_level(stderr: LevelFilter) -> LevelFilter {
    if stderr >= LevelFilter::INFO {
        LevelFilter::DEBUG.max(stderr)
    } else {
        LevelFilter::INFO
    }
}

/// The target of the span the CLI opens around a whole command, and of the run's first and
/// last lines in the log file (never on stderr).
pub const RUN_SPAN_TARGET: &str = "phoenix_gpu::run";
/// The target of gpu-core's per-step spans.
const STEP_SPAN_TARGET: &str = "gpu_core::step";

/// stderr, printed above the progress bars when there are any.
#[derive(Clone)]
struct Stderr(Option<indicatif::MultiProgress>);

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf).map(|()| buf.len())),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        self.clone()
    }
}

/// Installs the subscriber. Returns a warning to show when the log file cannot be opened.
/// `progress`: the bars being drawn, if any (log lines go above them).
pub fn init(
    verbose: u8,
    quiet: u8,
    log_file: Option<&Path>,
    progress: Option<indicatif::MultiProgress>,
) -> Option<String> {
    // Without -v, stderr shows warnings and errors only: each step's outcome is already in the
    // summary on stdout (or the JSON report), and in the log file with its timestamp.
    let level = match (quiet, verbose) {
        (q, _) if q >= 2 => LevelFilter::ERROR,
        (1, _) | (_, 0) => LevelFilter::WARN,
        (_, 1) => LevelFilter::INFO,
        (_, 2) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(Stderr(progress))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_filter(
            ours(level)
                .with_target(RUN_SPAN_TARGET, LevelFilter::OFF)
                .with_target(STEP_SPAN_TARGET, LevelFilter::OFF),
        );
    let (path, explicit): (PathBuf, bool) = match log_file {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from(DEFAULT_LOG_FILE), false),
    };
    let mut warning = None;
    // Without blocking: a FIFO nobody reads at the log's path must not hold up the run
    // (opening it fails with ENXIO, a warning), nor a terminal become ours. `/dev/null` works.
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path);
    let file = match opened {
        Ok(f) => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(f))
                .with_ansi(false)
                .with_filter(ours(file_level(level))),
        ),
        Err(e) => {
            if explicit {
                warning = Some(format!("cannot open log file {}: {e}", path.display()));
            }
            None
        }
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_gets_info_and_debug_with_v() {
        assert_eq!(file_level(LevelFilter::ERROR), LevelFilter::INFO);
        assert_eq!(file_level(LevelFilter::WARN), LevelFilter::INFO);
        assert_eq!(file_level(LevelFilter::INFO), LevelFilter::DEBUG);
        assert_eq!(file_level(LevelFilter::DEBUG), LevelFilter::DEBUG);
        assert_eq!(file_level(LevelFilter::TRACE), LevelFilter::TRACE);
    }

    #[test]
    fn the_packaged_logrotate_file_names_the_default_log() {
        let conf = include_str!("../../../pkg/logrotate");
        assert!(
            conf.contains(&format!("\n{DEFAULT_LOG_FILE} {{\n")),
            "{conf}"
        );
    }
}
