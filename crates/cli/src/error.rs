//! The CLI's errors: a bad flag value, an unreadable orchestrator config, a gpu-core error, a
//! failed operation (with its report), or output that cannot be written. Each has the
//! `ErrorKind` that `exit.rs` maps to the exit code.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use gpu_core::{Error, ErrorKind, Failure};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A flag's value is not valid by a rule of the CLI's own (flag syntax).
    #[error("invalid {flag} {value:?}: {hint}")]
    Flag {
        /// The flag: `--jobs`.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong and what is accepted.
        hint: String,
    },
    /// A flag's value broke one of gpu-core's rules for such values.
    #[error("{flag}: {error}")]
    Value {
        /// The flag: `--runfile-sha256`.
        flag: &'static str,
        /// gpu-core's error (a `BadInput`, which has no source).
        error: Error,
    },
    /// The orchestrator config cannot be read.
    #[error("cannot read the orchestrator config {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The orchestrator config is not the orchestrator's JSON.
    #[error("cannot use the orchestrator config {}", path.display())]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Error,
    },
    /// gpu-core failed before an operation ran.
    #[error(transparent)]
    Core(Arc<Error>),
    /// An operation failed; its report is printed with the error.
    #[error(transparent)]
    Operation(Box<Operation>),
    /// The result cannot be written to stdout (other than a closed stdout, which is not an
    /// error).
    #[error("cannot write the output")]
    Output(#[source] io::Error),
    /// The async runtime cannot start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
}

/// An operation that failed: which (`apply`, `plan`, ...) and its failure.
#[derive(Debug)]
pub struct Operation {
    /// The command's word for it.
    pub what: &'static str,
    /// The report of the steps that ran, and the error.
    pub failure: Failure,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.failure, f)
    }
}

impl std::error::Error for Operation {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.failure)
    }
}

impl CliError {
    /// The kind, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CliError::Flag { .. }
            | CliError::Value { .. }
            | CliError::ReadConfig { .. }
            | CliError::BadConfig { .. } => ErrorKind::BadInput,
            CliError::Core(e) => e.kind(),
            CliError::Operation(op) => op.failure.error.kind(),
            CliError::Output(_) | CliError::Runtime(_) => ErrorKind::Internal,
        }
    }

    /// The gpu-core error inside, when there is one (for hints).
    pub fn core(&self) -> Option<&Error> {
        match self {
            CliError::Core(e) => Some(e),
            CliError::Value { error, .. } | CliError::BadConfig { source: error, .. } => {
                Some(error)
            }
            CliError::Operation(op) => Some(&op.failure.error),
            _ => None,
        }
    }

    /// A bad value of `flag`.
    pub fn flag(flag: &'static str, value: &str, hint: impl Into<String>) -> CliError {
        CliError::Flag {
            flag,
            value: value.to_owned(),
            hint: hint.into(),
        }
    }

    /// A failed operation.
    pub fn operation(what: &'static str, failure: Failure) -> CliError {
        CliError::Operation(Box::new(Operation { what, failure }))
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        CliError::Core(Arc::new(e))
    }
}

impl From<Arc<Error>> for CliError {
    fn from(e: Arc<Error>) -> CliError {
        CliError::Core(e)
    }
}
