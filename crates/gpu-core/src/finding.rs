//! What `check` finds: drift between the live host and a container's config, as serde types.

use serde::Serialize;

/// What kind of drift a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// An allow rule for a major that an NVIDIA driver held on this node (the node record
    /// says so) and no driver holds now: a uvm or caps major of an earlier boot.
    StaleMajor,
    /// An allow rule for a major that an NVIDIA driver held on this node and another driver
    /// holds now: the container can open that driver's devices. `apply` removes it.
    ReassignedMajor,
    /// The `[pve:pending]` section changes the NVIDIA passthrough at the next start: a
    /// pending line passes an NVIDIA device, or pending deletes or replaces one of the tool's
    /// lines.
    PendingChange,
    /// Allow rules under the cgroup key the host's LXC ignores.
    WrongCgroupKey,
    /// The config passes a node the host does not have.
    MissingNode,
    /// A device node the config passes has other numbers than the driver's now (a node left
    /// from before a module reload moved its major).
    StaleNode,
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
            FindingKind::ReassignedMajor => "reassigned major",
            FindingKind::PendingChange => "pending change",
            FindingKind::WrongCgroupKey => "wrong cgroup key",
            FindingKind::MissingNode => "missing node",
            FindingKind::StaleNode => "stale node",
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
    /// Allow rules of doubtful origin, kept and not drift: each for a character major that no
    /// driver holds now and this node never recorded as NVIDIA's (an NVIDIA major of an
    /// earlier boot, or a rule for a module that is not loaded). `apply` removes them only
    /// when asked to.
    pub doubtful: Vec<String>,
    /// Checks that did not run, and why.
    pub not_checked: Vec<String>,
}
