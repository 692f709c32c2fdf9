//! `remove`: take the tool's passthrough entries out of a container's config, and what the tool
//! left inside it.
//!
//! A running container keeps its devices and bind mounts until it restarts, and the
//! placeholders LXC made for the `host-libs` mounts lie under those mounts. So `remove`
//! restarts a running container whose config changed (as `apply` with no GPU does), then takes
//! out the placeholders, their links and gpu-check, and rebuilds the loader cache. A stopped
//! container gets the config change only: the inside is cleaned when `remove` (or `apply`, for
//! the placeholders) next runs while it runs.

use exec_backend::{CtState, ExecError};

use crate::config_step;
use crate::container::{cleanup, restart};
use crate::error::{chain, Error, Result};
use crate::report::{Report, StepName, StepReport, StepStatus};
use crate::request::RestartPolicy;
use crate::step::{Ctx, Failure, Run};
use crate::values::CtId;

use super::Engine;

impl Engine {
    /// Takes the tool's passthrough entries out of the container's config; restarts a running
    /// container whose config changed, and removes the placeholders of its `host-libs` mounts
    /// and gpu-check from it.
    pub async fn remove(&self, ct: &CtId, dry_run: bool) -> std::result::Result<Report, Failure> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct.as_ct_ref());
        let mut run = self.run(ct.as_ct_ref());
        let result = crate::counting::scope(counted.tally.clone(), async {
            self.admit(ct)?;
            let diff = run
                .step(StepName::Remove, config_step::remove(&ctx, dry_run))
                .await?;
            let changed = !diff.is_empty();
            run.report.config_diff = diff;
            inside(&ctx, changed, dry_run, &mut run).await
        })
        .await;
        run.finish(&counted.tally, result)
    }
}

/// The container part of `remove`.
async fn inside(ctx: &Ctx<'_>, changed: bool, dry_run: bool, run: &mut Run<'_>) -> Result<()> {
    // The config is written: a state that cannot be read (no `pct` on a copied tree, a
    // backend error) leaves the inside as it is, said so; an unreachable node is an error.
    let state = match ctx.cts.state(ctx.ct).await {
        Ok(s) => Ok(s),
        Err(e @ ExecError::Ssh { .. }) => {
            return Err(Error::exec(
                format!("reading the state of container {}", ctx.ct),
                e,
            ))
        }
        Err(e) => Err(chain(&e)),
    };
    if state != Ok(CtState::Running) {
        let why = match &state {
            Ok(CtState::Other(s)) => format!("the container is {s}"),
            Ok(_) => "the container is stopped".to_owned(),
            Err(e) => format!("its state cannot be read ({e})"),
        };
        run.skip(
            StepName::Restart,
            format!("{why}: the config applies at its next start"),
        );
        run.skip(
            StepName::Userspace,
            format!("{why}: placeholders and gpu-check inside are removed when remove runs while it runs"),
        );
        return Ok(());
    }
    if dry_run {
        if changed {
            planned(
                run,
                StepName::Restart,
                "would restart: the devices and bind mounts stay until then",
            );
        } else {
            run.skip(StepName::Restart, "config unchanged, no restart needed");
        }
        planned(
            run,
            StepName::Userspace,
            "would remove placeholders of host-libs mounts and gpu-check inside",
        );
        return Ok(());
    }
    if changed {
        let timeout = RestartPolicy::default().timeout;
        run.step(StepName::Restart, async {
            restart::restart(ctx, timeout).await?;
            Ok((
                (),
                StepStatus::Changed,
                "restarted: the devices and bind mounts are gone".to_owned(),
            ))
        })
        .await?;
    } else {
        run.skip(StepName::Restart, "config unchanged, no restart needed");
    }
    run.step(StepName::Userspace, async {
        let removed = cleanup::run(ctx, cleanup::What::All).await?;
        let status = if removed.is_empty() {
            StepStatus::Ok
        } else {
            StepStatus::Changed
        };
        Ok(((), status, cleanup::summary(&removed)))
    })
    .await
}

/// Records a step a dry run would do.
fn planned(run: &mut Run<'_>, name: StepName, detail: &str) {
    run.record(StepReport {
        name,
        status: StepStatus::Planned,
        detail: detail.to_owned(),
        duration_ms: 0,
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use exec_backend::{Cmd, ExecError, Output};
    use test_support::{CtModel, CtScript, FsHost, ScriptedCt};

    use super::*;
    use crate::container::probe::CLEANUP_SCRIPT;
    use crate::target::Target;

    const CONF: &str = "/etc/pve/lxc/101.conf";

    /// The inside of a container: placeholders left by host-libs mounts, and gpu-check.
    struct Inside {
        placeholders: Vec<String>,
        gpu_check: bool,
    }

    impl CtScript for Inside {
        fn exec(ct: &mut CtModel<Inside>, cmd: &Cmd) -> std::result::Result<Output, ExecError> {
            let argv: Vec<String> = cmd
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(ct.state, CtState::Running, "exec in a stopped container");
            assert_eq!(argv[2], CLEANUP_SCRIPT, "{argv:?}");
            assert_eq!(argv[4..], ["/usr/local/lib/phoenix-gpu", "all"]);
            let mut out = String::new();
            for p in std::mem::take(&mut ct.placeholders) {
                out.push_str(&format!("removed={p}\n"));
            }
            if std::mem::take(&mut ct.gpu_check) {
                out.push_str("removed=/usr/local/lib/phoenix-gpu/gpu-check-0123456789abcdef\n");
            }
            Ok(Output::ok(out))
        }
    }

    fn world(state: CtState) -> (tempfile::TempDir, Arc<ScriptedCt<Inside>>, Engine) {
        let (d, host) = FsHost::h200x2();
        host.put(
            CONF,
            "arch: amd64\nlxc.cgroup2.devices.allow: c 195:1 rwm\nlxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file\nlxc.mount.entry: /usr/local/nvidia/lib64/libcuda.so.580.159.04 usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04 none ro,bind,optional,create=file\n",
        );
        let ct = Arc::new(ScriptedCt::new(
            state,
            Inside {
                placeholders: vec!["/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04".into()],
                gpu_check: true,
            },
        ));
        let e = Engine::new(Arc::new(host), ct.clone(), Target::Pve);
        (d, ct, e)
    }

    fn status(r: &Report, s: StepName) -> StepStatus {
        r.step(s).unwrap().status
    }

    /// A running container is restarted (its mounts go), then cleaned: no placeholder, no
    /// gpu-check left. A second remove restarts nothing and finds nothing.
    #[tokio::test]
    async fn a_running_container_is_restarted_then_cleaned() {
        let (_d, ct, e) = world(CtState::Running);
        let id: CtId = "101".parse().unwrap();
        let r = e.remove(&id, false).await.unwrap();
        assert_eq!(status(&r, StepName::Remove), StepStatus::Changed);
        assert_eq!(status(&r, StepName::Restart), StepStatus::Changed);
        assert_eq!(status(&r, StepName::Userspace), StepStatus::Changed);
        let detail = &r.step(StepName::Userspace).unwrap().detail;
        assert!(detail.contains("removed 1 placeholder(s)"), "{detail}");
        assert!(detail.contains("removed gpu-check"), "{detail}");
        assert_eq!((r.counters.restarts, r.counters.container_execs), (1, 1));
        let calls = ct.calls().take();
        let stop = calls.iter().position(|c| c == "ct stop").unwrap();
        let start = calls.iter().position(|c| c == "ct start").unwrap();
        let clean = calls
            .iter()
            .position(|c| c.starts_with("ct exec sh -c"))
            .unwrap();
        assert!(stop < start && start < clean, "{calls:?}");
        ct.with(|m| assert!(m.placeholders.is_empty() && !m.gpu_check));

        let r = e.remove(&id, false).await.unwrap();
        assert!(!r.changed, "{r:#?}");
        assert_eq!(status(&r, StepName::Restart), StepStatus::Skipped);
        assert_eq!(status(&r, StepName::Userspace), StepStatus::Ok);
        assert_eq!(r.counters.restarts, 0);
    }

    /// A stopped container gets the config change only, and nothing runs inside.
    #[tokio::test]
    async fn a_stopped_container_gets_the_config_only() {
        let (_d, ct, e) = world(CtState::Stopped);
        let r = e.remove(&"101".parse().unwrap(), false).await.unwrap();
        assert_eq!(status(&r, StepName::Remove), StepStatus::Changed);
        assert_eq!(status(&r, StepName::Restart), StepStatus::Skipped);
        assert_eq!(status(&r, StepName::Userspace), StepStatus::Skipped);
        assert_eq!((r.counters.restarts, r.counters.container_execs), (0, 0));
        ct.with(|m| assert!(m.gpu_check));
    }

    /// A dry run changes nothing and says what it would do.
    #[tokio::test]
    async fn a_dry_run_plans() {
        let (_d, ct, e) = world(CtState::Running);
        let r = e.remove(&"101".parse().unwrap(), true).await.unwrap();
        assert_eq!(status(&r, StepName::Restart), StepStatus::Planned);
        assert_eq!(status(&r, StepName::Userspace), StepStatus::Planned);
        assert_eq!((r.counters.restarts, r.counters.container_execs), (0, 0));
        ct.with(|m| assert!(m.gpu_check && !m.placeholders.is_empty()));
    }
}
