//! The restart step: bring a running container whose config changed to the new config (live
//! where the [`Decision`] says so, else by a restart), start a stopped one when asked, and wait
//! until it runs.

use std::time::Duration;

use exec_backend::CtState;

use crate::config_step::ConfigOutcome;
use crate::error::{chain, Error, RestartCause, Result};
use crate::report::{Activation, Event, RestartReason, StepStatus};
use crate::request::Request;
use crate::step::Ctx;

use super::live::{self, Decision};

/// How often the state is polled while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Where the container stands after the restart step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct After {
    /// It runs, so it can be probed.
    pub running: bool,
    /// This step changed what the container sees (a restart, a start, a live change):
    /// verification must look again.
    pub fresh: bool,
    /// The config changed but the container still runs with the old one (`--no-restart`, or a
    /// dry run that would restart): the devices and mounts appear after the next restart.
    pub pending: bool,
}

/// What the restart step gives: where the container stands, and how a running container got
/// the changed config.
pub(crate) type Outcome = (After, Option<Activation>);

/// Runs the restart step. `decision` is how a running container whose config changed gets the
/// change, and `seen` the state it was decided on ([`live::decide`], before the config was
/// written); without one, the state is read here.
pub(crate) async fn step(
    ctx: &Ctx<'_>,
    req: &Request,
    cfg: &ConfigOutcome,
    (decision, seen): (Decision, Option<CtState>),
) -> Result<(Outcome, StepStatus, String)> {
    let state =
        match seen {
            Some(s) => s,
            None => ctx.cts.state(ctx.ct).await.map_err(|e| {
                Error::exec(format!("reading the state of container {}", ctx.ct), e)
            })?,
        };
    let policy = &req.restart;
    // `pending`: the change waits for a restart; `fresh`: this step changed what the
    // container sees.
    let running = |pending, fresh| After {
        running: true,
        fresh,
        pending,
    };
    match state {
        CtState::Running if !cfg.changed => Ok((
            (running(false, false), None),
            StepStatus::Ok,
            "running; config unchanged, no restart needed".into(),
        )),
        CtState::Running => {
            let (reason, detail) = match decision {
                Decision::Live(change) if req.dry_run => {
                    let summary = change.summary();
                    let line = format!("would change live, without a restart: {}", describe(&summary));
                    return Ok((
                        (running(false, false), Some(Activation::Live(summary))),
                        StepStatus::Planned,
                        line,
                    ));
                }
                Decision::Live(change) => match live::apply(ctx, &change).await {
                    Ok(done) => {
                        for h in &done.held {
                            ctx.events.emit(Event::Notice {
                                ct: ctx.ct.to_string(),
                                message: format!("{h}, taken away by force: it keeps its open handle until it exits"),
                            });
                        }
                        let line = format!("changed live, no restart: {}", describe(&done));
                        return Ok((
                            (running(false, true), Some(Activation::Live(done))),
                            StepStatus::Changed,
                            line,
                        ));
                    }
                    Err(e) => {
                        let detail = format!("the live change failed: {}", chain(&e));
                        ctx.events.emit(Event::Notice {
                            ct: ctx.ct.to_string(),
                            message: format!("{detail}; the container needs a restart"),
                        });
                        (RestartReason::LiveFailed, detail)
                    }
                },
                Decision::Restart { reason, detail } => (reason, detail),
                Decision::Nothing => (
                    RestartReason::LiveFailed,
                    "the container was not running when the change was planned".to_owned(),
                ),
            };
            if policy.no_restart {
                return Ok((
                    (running(true, false), Some(Activation::Pending { reason, detail: detail.clone() })),
                    StepStatus::Skipped,
                    format!("restart pending ({detail}): restarts are off; the devices change at the next restart"),
                ));
            }
            if req.dry_run {
                return Ok((
                    (running(true, false), Some(Activation::Restart { reason, detail: detail.clone() })),
                    StepStatus::Planned,
                    format!("would restart: {detail}"),
                ));
            }
            restart(ctx, policy.timeout).await?;
            Ok((
                (running(false, true), Some(Activation::Restart { reason, detail: detail.clone() })),
                StepStatus::Changed,
                format!("restarted: {detail}"),
            ))
        }
        CtState::Stopped if !policy.start_if_stopped => Ok((
            (
                After {
                    running: false,
                    fresh: false,
                    pending: false,
                },
                None,
            ),
            StepStatus::Skipped,
            "container is stopped and starting it was not asked for; the config applies at its next start".into(),
        )),
        CtState::Stopped if req.dry_run => Ok((
            (
                After {
                    running: false,
                    fresh: false,
                    pending: false,
                },
                None,
            ),
            StepStatus::Planned,
            "would start the stopped container (as asked)".into(),
        )),
        CtState::Stopped => {
            bounded(ctx, policy.timeout, "start", start_and_wait(ctx)).await?;
            Ok((
                (
                    After {
                        running: true,
                        fresh: true,
                        pending: false,
                    },
                    None,
                ),
                StepStatus::Changed,
                "started (as asked)".into(),
            ))
        }
        CtState::Other(s) => {
            // STARTING, STOPPING, FROZEN...: wait for it to settle as running, never act on it.
            if req.dry_run {
                return Ok((
                    (
                        After {
                            running: false,
                            fresh: false,
                            pending: cfg.changed,
                        },
                        None,
                    ),
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
                (
                    After {
                        running: true,
                        fresh: false,
                        pending,
                    },
                    None,
                ),
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

/// Restarts a running container: stop, wait until stopped, start, wait until running, within
/// `timeout`.
pub(crate) async fn restart(ctx: &Ctx<'_>, timeout: Duration) -> Result<()> {
    bounded(ctx, timeout, "restart", async {
        ctx.cts
            .stop(ctx.ct)
            .await
            .map_err(|source| restart_error(ctx, RestartCause::Stop { source }))?;
        wait_for(ctx, |s| s == &CtState::Stopped).await?;
        start_and_wait(ctx).await
    })
    .await
}

/// A live change in words: `gave /dev/nvidia1; took /dev/nvidia0; cgroup: allowed c 195:1 rwm,
/// denied c 195:0 rwm`.
fn describe(c: &crate::report::LiveChange) -> String {
    let mut parts = Vec::new();
    if !c.added.is_empty() {
        parts.push(format!("gave {}", c.added.join(", ")));
    }
    if !c.removed.is_empty() {
        parts.push(format!("took {}", c.removed.join(", ")));
    }
    let mut rules = Vec::new();
    if !c.allowed.is_empty() {
        rules.push(format!("allowed {}", c.allowed.join(", ")));
    }
    if !c.denied.is_empty() {
        rules.push(format!("denied {}", c.denied.join(", ")));
    }
    if !rules.is_empty() {
        parts.push(format!("device cgroup {}", rules.join("; ")));
    }
    if !c.held.is_empty() {
        let held: Vec<String> = c.held.iter().map(ToString::to_string).collect();
        parts.push(format!("left running: {}", held.join(", ")));
    }
    parts.join("; ")
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
async fn bounded(
    ctx: &Ctx<'_>,
    timeout: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
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
