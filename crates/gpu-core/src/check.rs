//! `check`: the live host against a container's config, without changing anything.

use serde::Serialize;

use crate::config_step::{self, Loaded};
use crate::container;
use crate::engine::Ctx;
use crate::error::Result;
use crate::inventory::{Inventory, NVIDIA_MAJOR};
use crate::passthrough::{self, is_dev_key, is_nvidia_node_path, parse_char_rule, ALLOW_KEYS};
use crate::request::{Request, Strategy, VersionWanted};
use crate::version::DriverVersion;
use exec_backend::CtState;

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

/// The NVIDIA userspace version in a running container, through the one probe exec.
async fn userspace_version(ctx: &Ctx<'_>) -> UserspaceProbe {
    match ctx.cts.state(ctx.ct).await {
        Ok(CtState::Running) => {}
        Ok(CtState::Stopped) => return UserspaceProbe::Skipped("the container is stopped".into()),
        Ok(CtState::Other(s)) => return UserspaceProbe::Skipped(format!("the container is {s}")),
        Err(e) => {
            return UserspaceProbe::Skipped(format!(
                "cannot read the container's state: {}",
                crate::engine::chain(&e)
            ))
        }
    }
    match container::probe(ctx, &[]).await {
        Ok(p) => UserspaceProbe::Installed(
            p.smi_version
                .or_else(|| p.libs.first().map(|(_, v)| v.clone())),
        ),
        Err(e) => UserspaceProbe::Skipped(format!(
            "the container probe failed: {}",
            crate::engine::chain(&e)
        )),
    }
}

/// Compares the live host with the config (and with `expected`, when given).
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    inv: &Inventory,
    expected: Option<&Request>,
) -> Result<CheckReport> {
    let Loaded { doc, .. } = config_step::load(ctx).await?;
    let devices = config_step::proc_devices(ctx.host).await?;
    let root = config_step::host_root(ctx.host);
    let owned = config_step::owned_flags(&doc, &devices, &inv.majors, root.as_deref());
    let entries = doc.main().entries();
    let mut findings = Vec::new();
    let mut not_checked = Vec::new();
    let current = inv.majors.all();
    let honoured = inv.cgroup.allow_key();
    let mut passed_minors: Vec<u32> = Vec::new();
    let mut all_gpus_allowed = false;
    for (e, _) in entries.iter().zip(&owned).filter(|(_, o)| **o) {
        let at = format!("line {}: {}", e.line, e.value);
        if ALLOW_KEYS.contains(&e.key) {
            if let Some((major, minor)) = parse_char_rule(e.value) {
                if !current.contains(&major) {
                    let uvm = inv
                        .majors
                        .nvidia_uvm
                        .map(|m| format!(" (nvidia-uvm is {m} now)"))
                        .unwrap_or_default();
                    findings.push(finding(
                        FindingKind::StaleMajor,
                        format!("{at} allows major {major}, which no NVIDIA driver holds{uvm}"),
                    ));
                }
                if major == NVIDIA_MAJOR {
                    match minor {
                        None => all_gpus_allowed = true,
                        Some(m) if m < 254 => passed_minors.push(m),
                        Some(_) => {}
                    }
                }
            }
            if e.key != honoured {
                findings.push(finding(
                    FindingKind::WrongCgroupKey,
                    format!(
                        "line {} uses {} but this host's LXC honours {honoured} and ignores it",
                        e.line, e.key
                    ),
                ));
            }
            continue;
        }
        let path = if is_dev_key(e.key) {
            passthrough::dev_value_path(e.value).into()
        } else {
            passthrough::host_source(
                root.as_deref(),
                e.value.split_whitespace().next().unwrap_or(""),
            )
        };
        let path: &str = &path;
        if !is_nvidia_node_path(path) {
            continue;
        }
        if let Some(m) = path
            .strip_prefix("/dev/nvidia")
            .and_then(|n| n.parse::<u32>().ok())
        {
            passed_minors.push(m);
        }
        if inv.node(path).is_none() {
            findings.push(finding(
                FindingKind::MissingNode,
                format!("{at} passes {path}, which the host does not have"),
            ));
        }
    }
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
        if all_gpus_allowed && want.len() < inv.gpus.len() {
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
        let unprivileged = config_step::is_unprivileged(&doc);
        let (wanted, _) = config_step::wanted_lines(ctx, req, inv, &gpus, unprivileged).await?;
        let mut planned = doc.clone();
        let (removed, added) = config_step::reconcile(
            &mut planned,
            &wanted,
            &devices,
            &inv.majors,
            root.as_deref(),
        )?;
        if planned.to_bytes() != doc.to_bytes() {
            findings.push(finding(
                FindingKind::ConfigDiffers,
                format!("apply would remove {removed} and add {added} line(s); run `phoenix-gpu plan {}` to see them", ctx.ct),
            ));
        }
        if let VersionWanted::Exact(v) = &req.driver_version {
            if *v != inv.driver_version && req.strategy == Strategy::Runfile && !req.force_version {
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
    match userspace_version(ctx).await {
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
        not_checked,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use exec_backend::{CtRef, MockContainerExec};

    use super::*;
    use crate::engine::Engine;
    use crate::request::{Mode, Target};
    use test_support::FsHost;

    const EXAMPLE_101: &str = include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf");

    fn setup() -> (tempfile::TempDir, Engine, Arc<FsHost>) {
        let (d, host) = FsHost::h200x2();
        host.put("/etc/pve/lxc/101.conf", EXAMPLE_101);
        let host = Arc::new(host);
        let mut cts = MockContainerExec::new();
        cts.expect_state().returning(|_| Ok(CtState::Stopped));
        let e = Engine::new(host.clone(), Arc::new(cts), Target::Pve);
        (d, e, host)
    }

    fn req(gpus: &str) -> Request {
        let mut r = Request::new(CtRef::new("101"), gpus.parse().unwrap());
        r.mode = Mode::Auto;
        r.strategy = Strategy::None;
        r.config_only = true;
        r
    }

    fn kinds(r: &CheckReport) -> Vec<FindingKind> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    #[tokio::test]
    async fn finds_the_stale_uvm_major() {
        let (_d, e, _h) = setup();
        let r = e.check(&CtRef::new("101"), None).await.unwrap();
        assert!(r.drift);
        assert_eq!(kinds(&r), vec![FindingKind::StaleMajor]);
        assert!(
            r.findings[0].detail.contains("major 508"),
            "{:?}",
            r.findings
        );
        assert!(r.findings[0].detail.contains("nvidia-uvm is 238 now"));
        assert!(r.not_checked.iter().any(|n| n.contains("userspace")));
    }

    #[tokio::test]
    async fn with_expected_gpus_finds_the_wrong_assignment_and_then_nothing() {
        let (_d, e, _h) = setup();
        let r = e.check(&CtRef::new("101"), Some(&req("1"))).await.unwrap();
        let k = kinds(&r);
        assert!(k.contains(&FindingKind::WrongGpus), "{k:?}");
        assert!(k.contains(&FindingKind::ConfigDiffers), "{k:?}");
        e.apply(&req("1")).await.unwrap();
        let r = e.check(&CtRef::new("101"), Some(&req("1"))).await.unwrap();
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
        let r = e.check(&CtRef::new("101"), None).await.unwrap();
        let k = kinds(&r);
        assert!(k.contains(&FindingKind::WrongCgroupKey), "{k:?}");
        assert!(k.contains(&FindingKind::MissingNode), "{k:?}");
    }

    #[tokio::test]
    async fn driver_version_asked_for_differs() {
        let (_d, e, _h) = setup();
        e.apply(&req("1")).await.unwrap();
        let mut r = req("1");
        r.strategy = Strategy::Runfile;
        r.driver_version = VersionWanted::Exact("580.76.05".parse().unwrap());
        let c = e.check(&CtRef::new("101"), Some(&r)).await.unwrap();
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
            .map(|c| c.0)
            .collect();
        assert_eq!(ids, ["101", "1000"]);
    }
}

#[cfg(test)]
mod probe_tests {
    use std::sync::Arc;

    use exec_backend::{CtRef, CtState, MockContainerExec, Output};

    use super::*;
    use crate::engine::Engine;
    use crate::request::Target;
    use test_support::FsHost;

    #[tokio::test]
    async fn a_running_container_with_an_old_userspace_is_drift() {
        let (_d, host) = FsHost::h200x2();
        host.put(
            "/etc/pve/lxc/101.conf",
            include_str!("../../../examples/h200x2/etc/pve/lxc/101.conf"),
        );
        let mut cts = MockContainerExec::new();
        cts.expect_state().returning(|_| Ok(CtState::Running));
        cts.expect_exec().times(1).returning(|_, _| {
            Ok(Output::ok(
                "probe=1\nsmi_path=/usr/bin/nvidia-smi\nsmi_version= 550.127.05\n",
            ))
        });
        let e = Engine::new(Arc::new(host), Arc::new(cts), Target::Pve);
        let r = e.check(&CtRef::new("101"), None).await.unwrap();
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
