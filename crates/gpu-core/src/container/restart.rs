//! The restart step: restart a running container whose config changed, start a stopped one when
//! asked, and wait until it runs.

use std::time::Duration;

use exec_backend::{CtState, Stopped};

use crate::config_step::ConfigOutcome;
use crate::error::{Error, RestartCause, Result};
use crate::report::{Event, StepStatus};
use crate::request::Request;
use crate::step::Ctx;

/// How often the state is polled while waiting.
const POLL: Duration = Duration::from_millis(250);

/// How long a running container is given to shut down cleanly before it is killed: a quarter
/// of the restart's time (30 s of the default 120 s), at least 1 s. A quarter, because Proxmox's
/// `pct shutdown --timeout N` may take twice N and 5 s before it gives up, and the kill and
/// the start must still fit in the restart's time.
pub(crate) fn shutdown_grace(restart_timeout: Duration) -> Duration {
    (restart_timeout / 4).max(Duration::from_secs(1))
}

/// Where the container stands after the restart step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct After {
    /// It runs, so it can be probed.
    pub running: bool,
    /// This step (re)started it: verification must look again.
    pub fresh: bool,
    /// The config changed but the container still runs with the old one (`--no-restart`, or a
    /// dry run that would restart): the devices and mounts appear after the next restart.
    pub pending: bool,
}

/// Runs the restart step.
pub(crate) async fn step(
    ctx: &Ctx<'_>,
    req: &Request,
    cfg: &ConfigOutcome,
) -> Result<(After, StepStatus, String)> {
    let state = ctx
        .cts
        .state(ctx.ct)
        .await
        .map_err(|e| Error::exec(format!("reading the state of container {}", ctx.ct), e))?;
    let policy = &req.restart;
    match state {
        CtState::Running if !cfg.changed => Ok((
            After {
                running: true,
                fresh: false,
                pending: false,
            },
            StepStatus::Ok,
            "running; config unchanged, no restart needed".into(),
        )),
        CtState::Running if policy.no_restart => Ok((
            After {
                running: true,
                fresh: false,
                pending: true,
            },
            StepStatus::Skipped,
            "restart pending: the config changed but restarts are off; the devices appear after the next restart".into(),
        )),
        CtState::Running if req.dry_run => Ok((
            After {
                running: true,
                fresh: false,
                pending: true,
            },
            StepStatus::Planned,
            "would restart: the config changed".into(),
        )),
        CtState::Running => {
            let mut detail = "restarted: the config changed".to_owned();
            if let Some(killed) = restart(ctx, policy.timeout).await? {
                detail = format!("{detail}; {killed}");
            }
            Ok((
                After {
                    running: true,
                    fresh: true,
                    pending: false,
                },
                StepStatus::Changed,
                detail,
            ))
        }
        CtState::Stopped if !policy.start_if_stopped => Ok((
            After {
                running: false,
                fresh: false,
                pending: false,
            },
            StepStatus::Skipped,
            "container is stopped and starting it was not asked for; the config applies at its next start".into(),
        )),
        CtState::Stopped if req.dry_run => Ok((
            After {
                running: false,
                fresh: false,
                pending: false,
            },
            StepStatus::Planned,
            "would start the stopped container (as asked)".into(),
        )),
        CtState::Stopped => {
            bounded(ctx, policy.timeout, "start", start_and_wait(ctx)).await?;
            Ok((
                After {
                    running: true,
                    fresh: true,
                    pending: false,
                },
                StepStatus::Changed,
                "started (as asked)".into(),
            ))
        }
        CtState::Other(s) => {
            // STARTING, STOPPING, FROZEN...: wait for it to settle as running, never act on it.
            if req.dry_run {
                return Ok((
                    After {
                        running: false,
                        fresh: false,
                        pending: cfg.changed,
                    },
                    StepStatus::Skipped,
                    format!("container is {s}; nothing probed"),
                ));
            }
            bounded(ctx, policy.timeout, "wait", wait_for(ctx, |s| s == &CtState::Running))
                .await
                .map_err(|_| {
                    restart_error(
                        ctx,
                        RestartCause::Unsettled {
                            state: s.clone(),
                            after: policy.timeout,
                        },
                    )
                })?;
            let pending = cfg.changed;
            Ok((
                After {
                    running: true,
                    fresh: false,
                    pending,
                },
                if pending {
                    StepStatus::Skipped
                } else {
                    StepStatus::Ok
                },
                format!("container was {s}, now running"),
            ))
        }
    }
}

/// Restarts a running container: a clean stop (killed after a grace time of
/// [`shutdown_grace`]), wait until stopped, start, wait until running, within `timeout`. When it
/// had to be killed, says so in a notice and returns the words for the step's detail.
pub(crate) async fn restart(ctx: &Ctx<'_>, timeout: Duration) -> Result<Option<String>> {
    let grace = shutdown_grace(timeout);
    let how = bounded(ctx, timeout, "restart", async {
        let how = ctx
            .cts
            .stop(ctx.ct, grace)
            .await
            .map_err(|source| restart_error(ctx, RestartCause::Stop { source }))?;
        wait_for(ctx, |s| s == &CtState::Stopped).await?;
        start_and_wait(ctx).await?;
        Ok(how)
    })
    .await?;
    if how != Stopped::Killed {
        return Ok(None);
    }
    let killed = format!(
        "it did not shut down within {}s and was killed",
        grace.as_secs()
    );
    ctx.events.emit(Event::Notice {
        ct: ctx.ct.to_string(),
        message: format!("restart: {killed}; its processes had no clean shutdown"),
    });
    Ok(Some(killed))
}

async fn start_and_wait(ctx: &Ctx<'_>) -> Result<()> {
    ctx.cts
        .start(ctx.ct)
        .await
        .map_err(|source| restart_error(ctx, RestartCause::start(source)))?;
    wait_for(ctx, |s| s == &CtState::Running).await
}

/// Polls the state until `done` says so (unbounded: callers wrap it in [`bounded`]).
async fn wait_for(ctx: &Ctx<'_>, done: impl Fn(&CtState) -> bool) -> Result<()> {
    loop {
        let s = ctx
            .cts
            .state(ctx.ct)
            .await
            .map_err(|source| restart_error(ctx, RestartCause::State { source }))?;
        if done(&s) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `fut` with the restart timeout; running past it is [`Error::Restart`].
async fn bounded<T>(
    ctx: &Ctx<'_>,
    timeout: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(restart_error(
            ctx,
            RestartCause::Timeout {
                action: what,
                after: timeout,
            },
        )),
    }
}

fn restart_error(ctx: &Ctx<'_>, cause: RestartCause) -> Error {
    Error::Restart {
        ct: ctx.ct.to_string(),
        cause,
    }
}
