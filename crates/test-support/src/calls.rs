//! One ordered record of the calls made to stand-in backends, shared by a host and a container
//! so that a test can assert their interleaving.

use std::sync::{Arc, Mutex};

use exec_backend::Cmd;

/// Every call, in order, one line each (`host read_file /proc/devices`, `ct start`). Clones
/// share the record.
#[derive(Clone, Debug, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    /// An empty record.
    pub fn new() -> CallLog {
        CallLog::default()
    }

    /// Adds one line.
    pub fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    /// The lines so far, and forgets them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A command's argv as one line, an argument with a newline (a script) shown as `<script>`.
pub fn argv_line(cmd: &Cmd) -> String {
    cmd.display_argv()
        .iter()
        .map(|a| {
            if a.contains('\n') {
                "<script>".to_owned()
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
