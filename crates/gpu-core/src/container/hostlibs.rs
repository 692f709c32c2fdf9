//! The `host-libs` strategy in the container: the host's own driver userspace is bind-mounted
//! read-only (the mounts come from [`crate::host_libs`], written by the config step), so its
//! version cannot drift from the module's. [`step`] creates the soname links in the container
//! and runs `ldconfig`, only when the probe finds them missing.

use std::time::Duration;

use crate::error::{Error, InstallCause, Result};
use crate::inventory::Inventory;
use crate::report::StepStatus;
use crate::step::Ctx;

use super::probe::{run_script, Probe};

/// The container part: soname links and `ldconfig`, when the probe finds them missing.
pub(crate) async fn step(
    ctx: &Ctx<'_>,
    dry_run: bool,
    pending: bool,
    inv: &Inventory,
    probe: &Probe,
) -> Result<(bool, StepStatus, String)> {
    let ver = &inv.driver_version;
    let linked = ["libcuda.so.1", "libnvidia-ml.so.1"]
        .iter()
        .all(|s| probe.ldconfig_version(s).as_ref() == Some(ver));
    if linked {
        return Ok((
            false,
            StepStatus::Ok,
            format!("host userspace {ver} mounted and linked"),
        ));
    }
    let mounted = probe
        .libs
        .iter()
        .any(|(path, v)| v == ver && path.contains("libnvidia-ml.so."));
    if !mounted {
        if pending {
            return Ok((
                false,
                StepStatus::Skipped,
                "the host's libraries appear after the pending restart".into(),
            ));
        }
        let cause = InstallCause::HostLibsNotMounted;
        if dry_run {
            return Ok((false, StepStatus::Skipped, cause.to_string()));
        }
        return Err(Error::Install {
            ct: ctx.ct.to_string(),
            what: format!("host userspace {ver}"),
            cause,
        });
    }
    if dry_run {
        return Ok((
            false,
            StepStatus::Planned,
            format!("would link libcuda.so.1 and libnvidia-ml.so.1 to {ver} and run ldconfig"),
        ));
    }
    let script = r#"set -e
cd /usr/lib/x86_64-linux-gnu
ln -sf "libcuda.so.$1" libcuda.so.1
ln -sf "libnvidia-ml.so.$1" libnvidia-ml.so.1
[ -e libcuda.so ] || ln -s libcuda.so.1 libcuda.so
ldconfig
"#;
    let out = run_script(
        ctx,
        "linking the host's libraries",
        script,
        &[ver.to_string()],
        Duration::from_secs(120),
    )
    .await?;
    if !out.status.success() {
        return Err(Error::Install {
            ct: ctx.ct.to_string(),
            what: format!("host userspace {ver}"),
            cause: InstallCause::Command {
                doing: "linking and ldconfig".to_owned(),
                status: out.status,
                output: out.stderr_tail(800),
            },
        });
    }
    Ok((
        true,
        StepStatus::Changed,
        format!("linked host userspace {ver} and ran ldconfig"),
    ))
}
