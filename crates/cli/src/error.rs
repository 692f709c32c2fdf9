//! The CLI's errors: a bad flag value, or a gpu-core error. Each has the `ErrorKind` that
//! `exit.rs` maps to the exit code.

use std::sync::Arc;

use gpu_core::{Error, ErrorKind};

/// Why a command failed before (or instead of) an operation's report.
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
    /// gpu-core failed.
    #[error(transparent)]
    Core(Arc<Error>),
}

impl CliError {
    /// The kind, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CliError::Flag { .. } => ErrorKind::BadInput,
            CliError::Core(e) => e.kind(),
        }
    }

    /// The gpu-core error, when it is one (for hints).
    pub fn core(&self) -> Option<&Error> {
        match self {
            CliError::Core(e) => Some(e),
            CliError::Flag { .. } => None,
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
