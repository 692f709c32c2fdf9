//! What `check` finds: drift between the live host and a container's config, as serde types.

use serde::Serialize;

/// What kind of drift a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// An allow rule for a major no NVIDIA driver holds now (moved uvm/caps major).
    StaleMajor,
    /// Allow rules under the cgroup key the host's LXC ignores.
    WrongCgroupKey,
    /// The config passes a node the host does not have.
    MissingNode,
    /// The config passes other GPUs than expected, or GPUs the host lacks.
    WrongGpus,
    /// The config differs from what `apply` would write.
    ConfigDiffers,
    /// The driver version asked for, or found in the container, differs from the host's module.
    DriverMismatch,
}

impl std::fmt::Display for FindingKind {
    /// The kind in words, for a person (`stale major`); the JSON name is `stale_major`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FindingKind::StaleMajor => "stale major",
            FindingKind::WrongCgroupKey => "wrong cgroup key",
            FindingKind::MissingNode => "missing node",
            FindingKind::WrongGpus => "wrong GPUs",
            FindingKind::ConfigDiffers => "config differs",
            FindingKind::DriverMismatch => "driver mismatch",
        })
    }
}

/// One piece of drift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Its kind.
    pub kind: FindingKind,
    /// What was found, for a person (with the config line where there is one).
    pub detail: String,
}

/// What `check` found for one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The container.
    pub ct: String,
    /// Whether anything drifted (the CLI exits 10).
    pub drift: bool,
    /// The drift found.
    pub findings: Vec<Finding>,
    /// Checks that did not run, and why.
    pub not_checked: Vec<String>,
}
