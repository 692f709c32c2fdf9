//! `check`: the live host against a container's config, without changing anything.

use exec_backend::{CtState, ExecError};

use crate::config_step;
use crate::container;
use crate::error::{chain, Error, Result};
use crate::finding::{CheckReport, Finding, FindingKind};
use crate::inventory::{Inventory, NVIDIA_MAJOR};
use crate::passthrough::{MajorState, Passes};
use crate::request::{Request, Strategy};
use crate::step::Ctx;
use crate::version::DriverVersion;
use crate::version::VersionWanted;

fn finding(kind: FindingKind, detail: String) -> Finding {
    Finding { kind, detail }
}

/// What the container probe said about the NVIDIA userspace inside a container.
#[derive(Clone, Debug, PartialEq, Eq)]
enum UserspaceProbe {
    /// The probe did not run (container stopped, unreachable).
    Skipped(String),
    /// The userspace version found, `None` when no NVIDIA userspace is installed.
    Installed(Option<DriverVersion>),
}

/// The NVIDIA userspace version in a running container, through the one probe exec. A probe
/// that answers says the container runs, so its state is asked only when the probe fails
/// (stopped, starting, unreachable): a running container's check is the one exec, as a
/// converged `apply` is; in a run that knows the states of all the node's containers, a
/// container known not to run is not probed. A node that does not answer is an error (the
/// whole check failed), not a note.
async fn userspace_version(ctx: &Ctx<'_>) -> Result<UserspaceProbe> {
    // In a run that read the states of all the node's containers at once, a container known
    // not to run is not probed: the answer the probe's failure would lead to, without its
    // exec (over SSH a session per container).
    if let Some(states) = ctx.facts.states(ctx.cts).await {
        match states.of(ctx.ct) {
            CtState::Running => {}
            CtState::Stopped => {
                return Ok(UserspaceProbe::Skipped("the container is stopped".into()))
            }
            CtState::Other(s) => {
                return Ok(UserspaceProbe::Skipped(format!("the container is {s}")))
            }
        }
    }
    let failed = match container::probe(ctx, &[]).await {
        Ok(p) => return Ok(UserspaceProbe::Installed(p.userspace_version())),
        Err(
            e @ Error::Exec {
                source: ExecError::Ssh { .. },
                ..
            },
        ) => return Err(e),
        Err(e) => e,
    };
    match ctx.cts.state(ctx.ct).await {
        Ok(CtState::Running) => Ok(UserspaceProbe::Skipped(format!(
            "the container probe failed: {}",
            chain(&failed)
        ))),
        Ok(CtState::Stopped) => Ok(UserspaceProbe::Skipped("the container is stopped".into())),
        Ok(CtState::Other(s)) => Ok(UserspaceProbe::Skipped(format!("the container is {s}"))),
        Err(e @ ExecError::Ssh { .. }) => Err(Error::exec(
            format!("cannot read the state of container {}", ctx.ct),
            e,
        )),
        Err(e) => Ok(UserspaceProbe::Skipped(format!(
            "the container probe failed ({}) and its state cannot be read: {}",
            chain(&failed),
            chain(&e)
        ))),
    }
}

/// Compares the live host with the config (and with `expected`, when given).
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    inv: &Inventory,
    expected: Option<&Request>,
) -> Result<CheckReport> {
    let current = config_step::read_current(ctx, expected, Some(inv)).await?;
    let mut findings = Vec::new();
    let mut not_checked = Vec::new();
    let honoured = inv.cgroup.allow_key();
    let stale = inv.stale_nodes();
    let pending = &current.scan.pending;
    for l in &current.scan.lines {
        if l.superseded {
            // A main line Proxmox drops when it applies pending; a line overridden by a later
            // one of its key passes nothing and is not news.
            if !l.pending && (pending.touches(&l.key) || l.key.starts_with("lxc.")) {
                findings.push(finding(
                    FindingKind::PendingChange,
                    format!(
                        "{} goes when Proxmox applies the pending section at the next start",
                        l.at()
                    ),
                ));
            }
            continue;
        }
        if l.pending {
            findings.push(finding(
                FindingKind::PendingChange,
                format!(
                    "{} comes into force when Proxmox applies the pending section at the next start",
                    l.at()
                ),
            ));
        }
        match &l.passes {
            Passes::Rule { major, state, .. } => {
                match state {
                    MajorState::Nvidia => {}
                    MajorState::Stale { was } => {
                        let uvm = inv
                            .majors
                            .nvidia_uvm
                            .map(|m| format!(" (nvidia-uvm is {m} now)"))
                            .unwrap_or_default();
                        findings.push(finding(
                            FindingKind::StaleMajor,
                            format!(
                                "{} allows major {major}, which {was} held on this node and no driver holds now{uvm}",
                                l.at()
                            ),
                        ));
                    }
                    MajorState::Reassigned { was, now } => findings.push(finding(
                        FindingKind::ReassignedMajor,
                        format!(
                            "{} allows major {major}, which {was} held on this node and {now} holds now: the container may open {now} devices",
                            l.at()
                        ),
                    )),
                }
                if l.key != honoured {
                    findings.push(finding(
                        FindingKind::WrongCgroupKey,
                        format!(
                            "line {} uses {} but this host's LXC honours {honoured} and ignores it",
                            l.line, l.key
                        ),
                    ));
                }
            }
            Passes::Node { path, .. } => {
                if inv.node(path).is_none() {
                    findings.push(finding(
                        FindingKind::MissingNode,
                        format!("{} passes {path}, which the host does not have", l.at()),
                    ));
                }
                if let Some((n, (ma, mi))) = stale
                    .iter()
                    .find(|(n, _)| n.path.as_os_str() == path.as_str())
                {
                    let (was_ma, was_mi) = n.rdev.unwrap_or_default();
                    findings.push(finding(
                        FindingKind::StaleNode,
                        format!(
                            "{} passes {path}, which is {was_ma}:{was_mi} on the host but the driver's is {ma}:{mi} now (a node left from before a module reload); recreate it: rm {path}; nvidia-modprobe -u -c0 (or reboot)",
                            l.at()
                        ),
                    ));
                }
            }
            Passes::Userspace => {}
        }
    }
    let mut passed_minors = current.rule_minors();
    passed_minors.extend(current.node_minors());
    passed_minors.sort_unstable();
    passed_minors.dedup();
    for m in &passed_minors {
        if !inv.gpus.iter().any(|g| g.minor == *m) {
            findings.push(finding(
                FindingKind::WrongGpus,
                format!("the config passes GPU minor {m}, which the host does not have"),
            ));
        }
    }
    if let Some(req) = expected {
        let gpus: Vec<_> = req.gpus.resolve(inv)?.into_iter().cloned().collect();
        let mut want: Vec<u32> = gpus.iter().map(|g| g.minor).collect();
        want.sort_unstable();
        if current.allows_every_gpu() && want.len() < inv.gpus.len() {
            findings.push(finding(
                FindingKind::WrongGpus,
                format!(
                    "the config allows every GPU (c {NVIDIA_MAJOR}:*), expected only minor(s) {want:?}"
                ),
            ));
        } else if passed_minors != want {
            findings.push(finding(
                FindingKind::WrongGpus,
                format!("the config passes GPU minor(s) {passed_minors:?}, expected {want:?}"),
            ));
        }
        let strategy = match config_step::planned(ctx, req, inv, &gpus, &current).await {
            Ok(planned) => {
                if planned.bytes != current.loaded.bytes {
                    findings.push(finding(
                        FindingKind::ConfigDiffers,
                        format!(
                            "apply would remove {} and add {} line(s)",
                            planned.removed, planned.added
                        ),
                    ));
                }
                planned.strategy
            }
            // Reported above, line by line: apply refuses until it is settled.
            Err(Error::PendingChange { .. }) => {
                not_checked.push(
                    "what apply would write: the pending section must be settled first".into(),
                );
                req.strategy.unwrap_or_else(|| current.strategy())
            }
            Err(e) => return Err(e),
        };
        if let VersionWanted::Exact(v) = &req.driver_version {
            if *v != inv.driver_version && strategy == Strategy::Runfile && !req.force_version {
                findings.push(finding(
                    FindingKind::DriverMismatch,
                    format!(
                        "driver version {v} is asked for but the host's kernel module is {}",
                        inv.driver_version
                    ),
                ));
            }
        }
    } else {
        not_checked.push("the GPU assignment (no expected GPUs given)".to_owned());
    }
    let doubtful = current
        .scan
        .doubtful
        .iter()
        .map(|d| {
            let section = if d.pending { " ([pve:pending])" } else { "" };
            format!(
                "line {}{section}: {} allows major {}, which no driver holds now and this node never recorded as NVIDIA's",
                d.line, d.text, d.major
            )
        })
        .collect();
    match userspace_version(ctx).await? {
        UserspaceProbe::Skipped(why) => {
            not_checked.push(format!("the userspace version in the container: {why}"))
        }
        UserspaceProbe::Installed(Some(v)) if v != inv.driver_version => findings.push(finding(
            FindingKind::DriverMismatch,
            format!(
                "the container's NVIDIA userspace is {v} but the host's kernel module is {}",
                inv.driver_version
            ),
        )),
        UserspaceProbe::Installed(_) => {}
    }
    Ok(CheckReport {
        ct: ctx.ct.to_string(),
        drift: !findings.is_empty(),
        findings,
        doubtful,
        not_checked,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::Engine;
    use crate::request::Mode;
    use crate::target::Target;
    use crate::values::CtId;
    use test_support::FsHost;

    const EXAMPLE_101: &str = include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf");

    fn setup() -> (tempfile::TempDir, Engine, Arc<FsHost>) {
        let (d, host) = FsHost::h200x2();
        host.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        let host = Arc::new(host);
        // A stopped container: the probe cannot enter it (as `pct exec` fails), its state
        // says why.
        let cts = crate::config_step::tests::stopped_ct();
        let e = Engine::new(host.clone(), Arc::new(cts), Target::Pve);
        (d, e, host)
    }

    fn req(gpus: &str) -> Request {
        let mut r = Request::new("101".parse::<CtId>().unwrap(), gpus.parse().unwrap());
        r.mode = Mode::Auto;
        r.strategy = Some(Strategy::None);
        r.config_only = true;
        r
    }

    fn kinds(r: &CheckReport) -> Vec<FindingKind> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    const RECORD: &str = "/var/lib/phoenix-gpu/nvidia-record";

    #[tokio::test]
    async fn a_recorded_uvm_major_nobody_holds_is_stale() {
        let (_d, e, h) = setup();
        h.put(RECORD, "major 508 nvidia-uvm\n");
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), None)
            .await
            .unwrap();
        assert!(r.drift);
        assert_eq!(kinds(&r), vec![FindingKind::StaleMajor]);
        assert!(
            r.findings[0]
                .detail
                .contains("major 508, which nvidia-uvm held"),
            "{:?}",
            r.findings
        );
        assert!(r.findings[0].detail.contains("nvidia-uvm is 238 now"));
        assert!(r.doubtful.is_empty());
        assert!(
            r.not_checked
                .iter()
                .any(|n| n == "the userspace version in the container: the container is stopped"),
            "{:?}",
            r.not_checked
        );
    }

    #[tokio::test]
    async fn an_unrecorded_major_nobody_holds_is_doubtful_not_drift() {
        let (_d, e, h) = setup();
        h.put(
            "/etc/pve/lxc/101.conf",
            EXAMPLE_101.replacen(
                "lxc.apparmor.profile",
                "lxc.cgroup2.devices.allow: c 226:0 rwm\nlxc.cgroup2.devices.allow: c 189:* rwm\nlxc.apparmor.profile",
                1,
            ),
        );
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), None)
            .await
            .unwrap();
        assert!(!r.drift, "{:?}", r.findings);
        assert_eq!(r.doubtful.len(), 3, "{:?}", r.doubtful);
        assert!(r.doubtful[0].contains("line 16: lxc.cgroup2.devices.allow: c 508:* rwm allows major 508, which no driver holds now"), "{:?}", r.doubtful);
        assert!(r.doubtful[1].contains("c 226:0"));
        assert!(r.doubtful[2].contains("c 189:*"));
        // The tool's own lines are checked as ever: the wildcard passes every GPU.
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), Some(&req("1")))
            .await
            .unwrap();
        assert!(
            kinds(&r).contains(&FindingKind::WrongGpus),
            "{:?}",
            r.findings
        );
    }

    #[tokio::test]
    async fn a_recorded_nvidia_major_another_driver_holds_now_is_drift() {
        let (_d, e, h) = setup();
        // 243 is hidraw on this host; the record says it was nvidia-caps at an earlier boot.
        h.put(RECORD, "major 243 nvidia-caps\n");
        h.put(
            "/etc/pve/lxc/101.conf",
            "arch: amd64\nlxc.cgroup2.devices.allow: c 195:1 rwm\nlxc.cgroup2.devices.allow: c 243:* rwm\n",
        );
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(kinds(&r), vec![FindingKind::ReassignedMajor]);
        assert!(
            r.findings[0].detail.contains("hidraw holds now"),
            "{:?}",
            r.findings
        );
        e.apply(&req("1")).await.unwrap();
        assert!(!h.get("/etc/pve/lxc/101.conf").contains("243"));
    }

    #[tokio::test]
    async fn pending_changes_of_the_passthrough_are_drift() {
        let (_d, e, h) = setup();
        h.put(
            "/etc/pve/lxc/101.conf",
            "arch: amd64\ndev0: /dev/nvidia1,mode=0666\n\n[pve:pending]\ndelete: dev0\ndev1: /dev/nvidia0\n",
        );
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), Some(&req("1")))
            .await
            .unwrap();
        let k = kinds(&r);
        assert_eq!(
            k.iter()
                .filter(|k| **k == FindingKind::PendingChange)
                .count(),
            2,
            "{:?}",
            r.findings
        );
        // After the next start the container would have GPU 0, not 1.
        assert!(k.contains(&FindingKind::WrongGpus), "{:?}", r.findings);
        assert!(
            r.not_checked.iter().any(|n| n.contains("pending")),
            "{:?}",
            r.not_checked
        );
    }

    #[tokio::test]
    async fn with_expected_gpus_finds_the_wrong_assignment_and_then_nothing() {
        let (_d, e, _h) = setup();
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), Some(&req("1")))
            .await
            .unwrap();
        let k = kinds(&r);
        assert!(k.contains(&FindingKind::WrongGpus), "{k:?}");
        assert!(k.contains(&FindingKind::ConfigDiffers), "{k:?}");
        e.apply(&req("1")).await.unwrap();
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), Some(&req("1")))
            .await
            .unwrap();
        assert!(!r.drift, "{:?}", r.findings);
    }

    #[tokio::test]
    async fn wrong_cgroup_key_and_missing_node() {
        let (_d, e, host) = setup();
        e.apply(&req("1")).await.unwrap();
        host.put(
            "/proc/self/mounts",
            "cgroup /sys/fs/cgroup/devices cgroup rw,devices 0 0\n",
        );
        std::fs::remove_file(host.path("/dev/nvidia-uvm")).unwrap();
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), None)
            .await
            .unwrap();
        let k = kinds(&r);
        assert!(k.contains(&FindingKind::WrongCgroupKey), "{k:?}");
        assert!(k.contains(&FindingKind::MissingNode), "{k:?}");
    }

    #[tokio::test]
    async fn driver_version_asked_for_differs() {
        let (_d, e, _h) = setup();
        e.apply(&req("1")).await.unwrap();
        let mut r = req("1");
        r.strategy = Some(Strategy::Runfile);
        r.driver_version = VersionWanted::Exact("580.76.05".parse().unwrap());
        let c = e
            .check(&"101".parse::<CtId>().unwrap(), Some(&r))
            .await
            .unwrap();
        assert_eq!(kinds(&c), vec![FindingKind::DriverMismatch]);
    }

    #[tokio::test]
    async fn lists_pve_containers_in_numeric_order() {
        let (_d, e, host) = setup();
        host.put("/etc/pve/lxc/1000.conf", "arch: amd64\n");
        host.put("/etc/pve/lxc/notes.txt", "x");
        let ids: Vec<String> = e
            .list_containers()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(ids, ["101", "1000"]);
    }
}

#[cfg(test)]
mod probe_tests {
    use std::sync::Arc;

    use exec_backend::{MockContainerExec, Output};

    use super::*;
    use crate::engine::Engine;
    use crate::target::Target;
    use crate::values::CtId;
    use test_support::FsHost;

    #[tokio::test]
    async fn a_running_container_with_an_old_userspace_is_drift() {
        let (_d, host) = FsHost::h200x2();
        host.put(
            "/etc/pve/lxc/101.conf",
            include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf"),
        );
        let mut cts = MockContainerExec::new();
        // The probe answering says the container runs: no state is asked.
        cts.expect_state().times(0);
        cts.expect_exec().times(1).returning(|_, _| {
            Ok(Output::ok(
                "probe=1\nsmi_path=/usr/bin/nvidia-smi\nsmi_version= 550.127.05\n",
            ))
        });
        let e = Engine::new(Arc::new(host), Arc::new(cts), Target::Pve);
        let r = e
            .check(&"101".parse::<CtId>().unwrap(), None)
            .await
            .unwrap();
        let f: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::DriverMismatch)
            .collect();
        assert_eq!(f.len(), 1, "{:?}", r.findings);
        assert!(f[0].detail.contains("550.127.05"));
        assert!(!r.not_checked.iter().any(|n| n.contains("userspace")));
    }
}
