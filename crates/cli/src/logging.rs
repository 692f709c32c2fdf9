//! The tracing subscriber: human lines on stderr (by -v/-q), a debug log file.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
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

/// Installs the subscriber. Returns a warning to show when the log file cannot be opened.
pub fn init(verbose: u8, quiet: u8, log_file: Option<&Path>) -> Option<String> {
    let level = match (quiet, verbose) {
        (q, _) if q >= 2 => LevelFilter::ERROR,
        (1, _) => LevelFilter::WARN,
        (_, 0) => LevelFilter::INFO,
        (_, 1) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_filter(ours(level));
    let (path, explicit): (PathBuf, bool) = match log_file {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from(DEFAULT_LOG_FILE), false),
    };
    let mut warning = None;
    let file = match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(f))
                .with_ansi(false)
                .with_filter(ours(LevelFilter::DEBUG.max(level))),
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
