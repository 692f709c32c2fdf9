//! Taking out what phoenix-gpu left inside a container (`probe/cleanup.sh`): the placeholders
//! of `host-libs` bind mounts that are gone (empty files where LXC's `create=file` made them,
//! empty firmware folders, the links to them) with a new loader cache, and for `remove` also
//! gpu-check. Nothing else is touched: a real library or program is never empty, and a live
//! bind mount shows the host's file.

use std::time::Duration;

use crate::error::{Error, InstallCause, Result};
use crate::step::Ctx;

use super::gpucheck;
use super::probe::{run_script, CLEANUP_SCRIPT};

/// What to take out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// The placeholders only (a strategy change, a driver upgrade).
    Placeholders,
    /// The placeholders and gpu-check (`remove`).
    All,
}

/// Runs the clean-up in the container. Returns the paths removed.
pub(crate) async fn run(ctx: &Ctx<'_>, what: What) -> Result<Vec<String>> {
    let scope = match what {
        What::Placeholders => "placeholders",
        What::All => "all",
    };
    let args = [gpucheck::DIR.to_owned(), scope.to_owned()];
    let out = run_script(
        ctx,
        "cleaning up",
        CLEANUP_SCRIPT,
        &args,
        Duration::from_secs(120),
    )
    .await?;
    if !out.status.success() {
        return Err(Error::Install {
            ct: ctx.ct.to_string(),
            what: "the clean-up of phoenix-gpu's files".into(),
            cause: InstallCause::Command {
                doing: "removing placeholders".into(),
                status: out.status,
                output: out.stderr_tail(800),
            },
        });
    }
    Ok(out
        .stdout_str()
        .lines()
        .filter_map(|l| l.strip_prefix("removed="))
        .map(str::to_owned)
        .collect())
}

/// One line for the report: how many were removed.
pub(crate) fn summary(removed: &[String]) -> String {
    let placeholders = removed
        .iter()
        .filter(|p| !p.starts_with(gpucheck::DIR))
        .count();
    let ours = removed.len() - placeholders;
    let mut parts = Vec::new();
    if placeholders > 0 {
        parts.push(format!(
            "removed {placeholders} placeholder(s) and link(s) of host-libs mounts, rebuilt the loader cache"
        ));
    }
    if ours > 0 {
        parts.push("removed gpu-check".to_owned());
    }
    if parts.is_empty() {
        "nothing of phoenix-gpu's left inside".to_owned()
    } else {
        parts.join("; ")
    }
}
