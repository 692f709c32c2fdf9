//! Live changes: give a running container other device nodes without restarting it.
//!
//! A change of a running container's config that only moves device nodes (another GPU, a GPU
//! added or taken away, a repaired uvm major, a first GPU) is made in the running container,
//! as the new config would make it at a start:
//!
//! 1. Before the config is written, [`decide`] classifies the tool's lines before and after
//!    ([`plan::shape`]): bind mounts of the host's userspace or MIG capability nodes coming or
//!    going need a restart. Otherwise it looks inside with one exec (`look.sh`: the container's
//!    `/dev/nvidia*` nodes, the character devices its processes hold open), and computes the
//!    [`LivePlan`]. A process holding a device that the change takes away refuses the change
//!    ([`Error::DevicesHeld`]) unless the caller takes held devices: it would keep its open
//!    handle while new opens fail.
//! 2. After the config is written, [`apply`] makes the change from the host, through the
//!    container's LXC name ([`ContainerExec::lxc_name`](exec_backend::ContainerExec::lxc_name)):
//!    - `lxc-info -pH` gives its init pid;
//!    - `lxc-cgroup devices.deny` takes the old devices away (on cgroup v1 LXC writes the
//!      container's `devices.deny`, and the kernel applies it to the cgroups below; on v2
//!      LXC's monitor updates the container's BPF device program);
//!    - the host makes each new node with `mknod` at the root of the container's root
//!      filesystem (`/proc/PID/root/.phoenix-gpu-TOKEN-nvidia1`, with the mode and owner a start
//!      would give it, `stage.sh`); one exec inside (`change.sh`) detaches and removes the old
//!      nodes and bind-mounts each staged node onto its place; the host removes the staged
//!      names;
//!    - `lxc-cgroup devices.allow` allows the new set; on v1 also in each devices cgroup down
//!      to the init's (`v1allow.sh`: a v1 allow does not reach the cgroups below).
//!
//! Why a bind mount: the container's `/dev` is a tmpfs mounted in the container's user
//! namespace for an unprivileged container, and a node on it cannot be opened (and the host
//! cannot even make one there: its uid is not mapped). A node the host makes on the root
//! filesystem (the host's filesystem) opens wherever it is bind-mounted, as the bind mounts of
//! the config's `lxc.mount.entry` lines do. The same path serves privileged containers. This is
//! also how Proxmox VE hotplugs a `devN` entry (a node in a host directory, moved into the
//! container with `open_tree`/`move_mount`); with only commands on the host, the staging place
//! must be one the container sees.
//!
//! A failed live change falls back to a restart (the config is already written, so a restart
//! gives the same result).

mod plan;

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use exec_backend::{Cmd, CtState, ExecError, LxcName};
use tracing::{debug, info};

use crate::config_step::Prepared;
use crate::error::{Error, Result};
use crate::inventory::{CgroupLayout, Inventory};
use crate::report::{LiveChange, RestartReason};
use crate::request::Request;
use crate::step::Ctx;

use plan::{staged_name, Inside, LivePlan, NodeSpec, Rule};

/// The look inside.
const LOOK: &str = include_str!("look.sh");
/// The change inside.
const CHANGE: &str = include_str!("change.sh");
/// The staging of nodes on the host.
const STAGE: &str = include_str!("stage.sh");
/// A cgroup v1 host's allow rules down to the container's init.
const V1_ALLOW: &str = include_str!("v1allow.sh");

/// How long a command of a live change may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How a running container gets a changed config.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Nothing to decide: the config does not change, or the container is not running.
    Nothing,
    /// Change it live.
    Live(Live),
    /// Restart it (or leave the change pending when restarts are off).
    Restart {
        /// Why not live.
        reason: RestartReason,
        /// The reason in words.
        detail: String,
    },
}

/// A live change ready to be made.
#[derive(Debug)]
pub(crate) struct Live {
    name: LxcName,
    plan: LivePlan,
    /// The host's devices controller is cgroup v1.
    v1: bool,
}

impl Live {
    /// What the change does, for the report.
    pub fn summary(&self) -> LiveChange {
        let p = &self.plan;
        LiveChange {
            added: p.add.iter().map(|n| n.path.clone()).collect(),
            removed: p.remove.clone(),
            allowed: p.allow.iter().map(Rule::to_string).collect(),
            denied: p.deny.iter().map(Rule::to_string).collect(),
            held: p.holders.clone(),
        }
    }
}

fn restart(reason: RestartReason, detail: impl Into<String>) -> Decision {
    Decision::Restart {
        reason,
        detail: detail.into(),
    }
}

/// Decides, before the config is written, how the running container gets the change: live
/// (the plan, made by [`apply`]), or a restart and why. Refuses a live change that would take
/// away a device a process holds open, unless the request takes held devices. Gives the
/// container's state too when it read it (the restart step goes on from it).
pub(crate) async fn decide(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    prepared: &Prepared,
) -> Result<(Decision, Option<CtState>)> {
    if !prepared.changed() {
        return Ok((Decision::Nothing, None));
    }
    let state = ctx
        .cts
        .state(ctx.ct)
        .await
        .map_err(|e| Error::exec(format!("reading the state of container {}", ctx.ct), e))?;
    if state != CtState::Running {
        return Ok((Decision::Nothing, Some(state)));
    }
    let decision = decide_running(ctx, req, inv, prepared).await?;
    Ok((decision, Some(state)))
}

/// [`decide`] for a running container.
async fn decide_running(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    prepared: &Prepared,
) -> Result<Decision> {
    if req.restart.always {
        return Ok(restart(RestartReason::Asked, "a restart was asked for"));
    }
    let lines = prepared.lines();
    let (before, after) = match plan::shape(lines, inv) {
        Ok(d) => d,
        Err((reason, detail)) => return Ok(restart(reason, detail)),
    };
    let Some(name) = ctx.cts.lxc_name(ctx.ct) else {
        return Ok(restart(
            RestartReason::NoLxc,
            "the container backend does not reach the container through LXC on its host",
        ));
    };
    let out = match super::probe::run_script(ctx, "looking at the devices", LOOK, &[], STEP_TIMEOUT)
        .await
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            return Ok(restart(
                RestartReason::LiveFailed,
                format!(
                    "looking at the container's devices failed ({}): {}",
                    out.status,
                    out.stderr_tail(512)
                ),
            ))
        }
        Err(e) => {
            return Ok(restart(
                RestartReason::LiveFailed,
                format!(
                    "looking at the container's devices failed: {}",
                    crate::chain(&e)
                ),
            ))
        }
    };
    let inside = Inside::parse(&out.stdout_str());
    if !inside.missing.is_empty() {
        return Ok(restart(
            RestartReason::ContainerTools,
            format!(
                "the container has no {} (a live change runs them inside)",
                inside.missing.join(", ")
            ),
        ));
    }
    if inv.cgroup == CgroupLayout::V1Devices && inside.device_cgroups.len() > 1 {
        return Ok(restart(
            RestartReason::NestedCgroupV1,
            "on this cgroup v1 host the container's processes sit in nested device cgroups, which a rule written to the container's cgroup does not reach",
        ));
    }
    let plan = LivePlan::compute(&before, &after, &inside, &lines.idmap);
    if !plan.holders.is_empty() && !req.restart.take_held {
        return Err(Error::DevicesHeld {
            ct: ctx.ct.to_string(),
            holders: plan.holders,
        });
    }
    debug!(ct = %ctx.ct, ?plan, "live change planned");
    Ok(Decision::Live(Live {
        name,
        plan,
        v1: inv.cgroup == CgroupLayout::V1Devices,
    }))
}

/// Makes the live change in the running container. On an error the container may be half
/// changed; the caller restarts it (its config is already written).
pub(crate) async fn apply(ctx: &Ctx<'_>, live: &Live) -> Result<LiveChange> {
    let Live { name, plan, v1 } = live;
    let pid = init_pid(ctx, name).await?;
    for rule in &plan.deny {
        cgroup(ctx, name, "devices.deny", rule).await?;
    }
    if plan.nodes_change() {
        let token = format!(
            "{:016x}",
            std::collections::hash_map::RandomState::new().hash_one(SystemTime::now())
        );
        // The running container's root as the host sees it: a path of the process, never
        // resolved under a host root (under `--root` the tree stands for the GPU host's files,
        // while the container runs on this machine's LXC).
        let root = format!("/proc/{pid}/root");
        let staged: Vec<(String, &NodeSpec)> = plan
            .add
            .iter()
            .map(|n| (staged_name(&token, n), n))
            .collect();
        let changed = async {
            if !staged.is_empty() {
                stage(ctx, &root, &staged).await?;
            }
            change_inside(ctx, &plan.remove, &staged).await
        }
        .await;
        let cleaned = unstage(ctx, &root, &staged).await;
        changed?;
        cleaned?;
    }
    for rule in &plan.allow {
        cgroup(ctx, name, "devices.allow", rule).await?;
    }
    if *v1 && !plan.allow.is_empty() {
        let mut argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            V1_ALLOW.to_owned(),
            "phoenix-gpu".to_owned(),
            pid.to_string(),
        ];
        argv.extend(plan.allow.iter().map(Rule::to_string));
        host(
            ctx,
            "allowing the devices down to the init's cgroup",
            Cmd::new(argv),
        )
        .await?;
    }
    let change = live.summary();
    info!(ct = %ctx.ct, added = ?change.added, removed = ?change.removed, "changed live");
    Ok(change)
}

/// Runs a command on the host; a non-zero exit is an error naming what was being done.
async fn host(ctx: &Ctx<'_>, doing: &str, cmd: Cmd) -> Result<exec_backend::Output> {
    let cmd = cmd.timeout(STEP_TIMEOUT);
    ctx.host
        .run(&cmd)
        .await
        .and_then(|o| o.check(&ctx.host.name(), &cmd))
        .map_err(|e| Error::exec(format!("{doing} for container {}", ctx.ct), e))
}

/// The container's init pid on the host.
async fn init_pid(ctx: &Ctx<'_>, name: &LxcName) -> Result<u32> {
    let out = host(
        ctx,
        "finding the init process",
        name.command("lxc-info", ["-pH"]),
    )
    .await?;
    let text = out.stdout_str();
    text.trim().parse().map_err(|_| Error::Parse {
        what: format!("lxc-info -pH of container {}", ctx.ct),
        detail: format!("no pid in {:?}", text.trim()),
    })
}

/// `lxc-cgroup -n NAME -P LXCPATH KEY RULE`.
async fn cgroup(ctx: &Ctx<'_>, name: &LxcName, key: &str, rule: &Rule) -> Result<()> {
    let doing = format!("{key} {rule}");
    host(
        ctx,
        &doing,
        name.command("lxc-cgroup", [key.to_owned(), rule.to_string()]),
    )
    .await
    .map(|_| ())
}

/// Makes the staged nodes under `root` (the container's root as the host sees it).
async fn stage(ctx: &Ctx<'_>, root: &str, staged: &[(String, &NodeSpec)]) -> Result<()> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        STAGE.to_owned(),
        "phoenix-gpu".to_owned(),
        root.to_owned(),
    ];
    for (file, n) in staged {
        argv.extend([
            file.clone(),
            format!("{:o}", n.mode),
            n.rdev.0.to_string(),
            n.rdev.1.to_string(),
            n.uid.to_string(),
            n.gid.to_string(),
        ]);
    }
    host(ctx, "staging the device nodes", Cmd::new(argv))
        .await
        .map(|_| ())
}

/// Removes the staged names (the bind mounts keep their nodes).
async fn unstage(ctx: &Ctx<'_>, root: &str, staged: &[(String, &NodeSpec)]) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    let mut argv = vec!["rm".to_owned(), "-f".to_owned(), "--".to_owned()];
    argv.extend(staged.iter().map(|(file, _)| format!("{root}/{file}")));
    host(ctx, "removing the staged device nodes", Cmd::new(argv))
        .await
        .map(|_| ())
}

/// The exec inside: nodes taken away, staged nodes bound onto their places.
async fn change_inside(
    ctx: &Ctx<'_>,
    remove: &[String],
    staged: &[(String, &NodeSpec)],
) -> Result<()> {
    let mut args = Vec::new();
    for path in remove {
        args.extend(["del".to_owned(), path.clone()]);
    }
    for (file, n) in staged {
        args.extend(["add".to_owned(), format!("/{file}"), n.path.clone()]);
    }
    let out = super::probe::run_script(
        ctx,
        "changing the device nodes",
        CHANGE,
        &args,
        STEP_TIMEOUT,
    )
    .await?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::exec(
        format!("changing the device nodes in container {}", ctx.ct),
        ExecError::Failed {
            target: format!("CT {}", ctx.ct),
            argv: vec!["sh".into(), "-c".into(), "<change.sh>".into()],
            status: out.status,
            stderr_tail: out.stderr_tail(2048),
        },
    ))
}
