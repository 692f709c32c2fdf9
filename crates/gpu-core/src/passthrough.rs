//! The config lines that hand NVIDIA devices (and, for `host-libs`, the host's userspace) to a
//! container, and the rule that says which existing lines belong to the tool.

use std::path::PathBuf;

use serde::Serialize;

/// One `lxc.mount.entry` bind mount: `source target none options`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// Host path (`/dev/nvidia0`).
    pub source: PathBuf,
    /// Target relative to the container's root, never absolute (`dev/nvidia0`).
    pub target: String,
    /// Mount options (`bind,optional,create=file`).
    pub options: String,
}

impl MountEntry {
    /// The entry's value as written in the config.
    pub fn render(&self) -> String {
        format!(
            "{} {} none {}",
            self.source.display(),
            self.target,
            self.options
        )
    }
}
