//! Verification: what the container sees against what it was given.
//!
//! - Every node the config passes (the GPUs' `/dev/nvidia<minor>`, `nvidiactl`, `nvidia-modeset`,
//!   `nvidia-uvm`, `nvidia-uvm-tools`) must open read-write inside (gpu-check; `EPERM` is the
//!   device cgroup refusing it, and the container's config says why).
//! - `runfile` and `host-libs`: `nvidia-smi --query-gpu=index,uuid,driver_version` inside (or,
//!   in a converged probe, NVML through gpu-check, which asks the same) must list exactly the
//!   assigned GPUs (by UUID) at the host module's version; after a change, CUDA must
//!   initialise and create a context, with a 1 MiB round trip, on each assigned GPU.
//! - `none`: the assigned `/dev/nvidia<minor>` nodes, `/dev/nvidiactl` and (when the host has
//!   uvm) `/dev/nvidia-uvm` exist inside as character devices with the host's numbers, and no
//!   other GPU's node does.
//!
//! On a fake GPU host (a captured host under a root, its nodes `mknod` stand-ins, bound from
//! there with [`Settings::resolve_mount_sources`](crate::Settings::resolve_mount_sources) or
//! made in the container by a hook) no driver backs the nodes: a node the cgroup lets through
//! opens with `ENXIO`, which counts as open there (never on a real host, where it means the
//! driver does not serve those numbers), and stand-in libraries without the NVML or CUDA
//! functions are noted, not failed.

use std::collections::BTreeSet;

use crate::current::Scan;
use crate::error::{Error, NodeRefusal, Result, SmiFailure, VerifyCause, VerifyProblem};
use crate::inventory::{Gpu, Inventory, NVIDIACTL_MINOR};
use crate::passthrough::Passes;
use crate::request::Strategy;

use super::probe::{CtNodeKind, GpuCheckRun, LibState, Probe};

/// What verification expects.
pub(crate) struct Expect<'a> {
    /// The userspace strategy.
    pub strategy: Strategy,
    /// The host.
    pub inv: &'a Inventory,
    /// The assigned GPUs.
    pub gpus: &'a [Gpu],
    /// A fake GPU host: `ENXIO` counts as open, stand-in libraries are noted.
    pub stand_ins: bool,
}

/// The nodes a container with `gpus` is given and the host has: the ones gpu-check opens.
pub(crate) fn nodes(inv: &Inventory, gpus: &[Gpu]) -> Vec<String> {
    if gpus.is_empty() {
        return Vec::new();
    }
    let mut paths: Vec<String> = gpus
        .iter()
        .map(|g| format!("/dev/nvidia{}", g.minor))
        .collect();
    paths.extend(
        [
            "/dev/nvidiactl",
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
        ]
        .map(String::from),
    );
    paths.retain(|p| inv.node(p).is_some());
    paths
}

/// A line of the container's config as [`refusal`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SaidLine {
    /// An allow rule: its key, its major, its minor (`None`: every minor).
    Rule {
        /// `lxc.cgroup2.devices.allow` or `lxc.cgroup.devices.allow`.
        key: String,
        /// The major.
        major: u32,
        /// The minor.
        minor: Option<u32>,
    },
    /// A Proxmox `devN` entry passing this host node (Proxmox writes its allow rule at start).
    DevEntry {
        /// The host path.
        path: String,
    },
}

/// The lines of `scan` that say why a node may be refused: the tool's allow rules and `devN`
/// entries, and the allow rules of doubtful origin (a stale major may be one of them). The
/// pending section's lines count too: the container runs the config of its last start, so a
/// pending line that would allow the node means "not applied yet".
pub(crate) fn said(scan: &Scan) -> Vec<SaidLine> {
    let mut said: Vec<SaidLine> = scan
        .lines
        .iter()
        .filter_map(|l| match &l.passes {
            Passes::Rule { major, minor, .. } => Some(SaidLine::Rule {
                key: l.key.clone(),
                major: *major,
                minor: *minor,
            }),
            Passes::Node {
                path,
                dev_entry: true,
            } => Some(SaidLine::DevEntry { path: path.clone() }),
            _ => None,
        })
        .collect();
    said.extend(scan.doubtful.iter().map(|d| {
        SaidLine::Rule {
            key: d
                .text
                .split([':', '='])
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            major: d.major,
            minor: None,
        }
    }));
    said
}

/// Why the device cgroup refuses `path` (`rdev` on the host), from the container's config.
pub(crate) fn refusal(
    lines: Option<&[SaidLine]>,
    inv: &Inventory,
    path: &str,
    rdev: (u32, u32),
) -> NodeRefusal {
    let Some(lines) = lines else {
        return NodeRefusal::Unknown;
    };
    let (major, minor) = rdev;
    let honoured = inv.cgroup.allow_key();
    let mut covering = Vec::new();
    let mut stale = Vec::new();
    let held = inv.majors.all();
    for l in lines {
        match l {
            SaidLine::Rule {
                key,
                major: m,
                minor: n,
            } => {
                if *m == major && (n.is_none() || *n == Some(minor)) {
                    covering.push(key.as_str());
                } else if !held.contains(m) && !stale.contains(m) {
                    stale.push(*m);
                }
            }
            // Proxmox writes the allow rule of a devN entry itself, at start.
            SaidLine::DevEntry { path: p } if p == path => return NodeRefusal::NotApplied,
            SaidLine::DevEntry { .. } => {}
        }
    }
    if covering.contains(&honoured) {
        NodeRefusal::NotApplied
    } else if let Some(key) = covering.first() {
        NodeRefusal::WrongCgroupKey {
            key: (*key).to_owned(),
            honoured: honoured.to_owned(),
        }
    } else if !stale.is_empty() {
        NodeRefusal::StaleMajor { major, stale }
    } else {
        NodeRefusal::NoAllowLine { major, minor }
    }
}

/// Checks `probe` (the probe or the verification exec) against `e`. `why` says why the cgroup
/// refuses a node. Returns one line for the report.
pub(crate) fn check(
    ct: &str,
    e: &Expect<'_>,
    probe: &Probe,
    why: &dyn Fn(&str, (u32, u32)) -> NodeRefusal,
) -> Result<String> {
    let fail = |cause: VerifyCause| Error::Verify {
        ct: ct.to_owned(),
        cause,
    };
    let mut problems = Vec::new();
    let mut line = Vec::new();
    if e.strategy == Strategy::None {
        match check_nodes(probe, e.inv, e.gpus) {
            Ok(l) => line.push(l),
            Err(p) => problems.extend(p),
        }
    }
    let nodes_open = opens(e, probe, why, &mut problems, &mut line);
    if e.strategy != Strategy::None {
        match gpu_list(e, probe) {
            Ok((l, p)) => {
                line.insert(0, l);
                problems.extend(p);
            }
            // The node problems come first: nvidia-smi failing is their effect.
            Err(VerifyCause::SmiFailed {
                failure, output, ..
            }) if !problems.is_empty() => problems.push(VerifyProblem::Smi { failure, output }),
            Err(_) if !problems.is_empty() => {}
            Err(cause) => return Err(fail(cause)),
        }
        cuda(e, probe, nodes_open, &mut problems, &mut line);
    }
    if problems.is_empty() {
        Ok(line.join("; "))
    } else {
        Err(fail(VerifyCause::Mismatch { problems }))
    }
}

/// The nodes gpu-check opened. Returns whether all opened (or none were asked).
fn opens(
    e: &Expect<'_>,
    probe: &Probe,
    why: &dyn Fn(&str, (u32, u32)) -> NodeRefusal,
    problems: &mut Vec<VerifyProblem>,
    line: &mut Vec<String>,
) -> bool {
    match &probe.gpu_check {
        GpuCheckRun::Ran => {}
        GpuCheckRun::Absent => return true,
        GpuCheckRun::Failed { rc, output } => {
            line.push(format!(
                "gpu-check cannot run in this container (exit {}: {}): nodes not opened, CUDA not checked",
                rc.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                output.lines().next().unwrap_or("no output")
            ));
            return true;
        }
    }
    let mut all = true;
    let mut no_device = 0;
    for (path, errno) in &probe.opens {
        let rdev = e
            .inv
            .node(path)
            .and_then(|n| n.rdev)
            .unwrap_or((e.inv.majors.nvidia, 0));
        let problem = match errno.as_str() {
            "ok" => None,
            "ENXIO" if e.stand_ins => {
                no_device += 1;
                None
            }
            "ENXIO" => Some(VerifyProblem::NodeNoDevice { path: path.clone() }),
            "EPERM" => Some(VerifyProblem::NodeRefused {
                path: path.clone(),
                rdev,
                cause: why(path, rdev),
            }),
            "ENOENT" => Some(VerifyProblem::NodeMissing { path: path.clone() }),
            other => Some(VerifyProblem::NodeOpen {
                path: path.clone(),
                errno: other.to_owned(),
            }),
        };
        if let Some(p) = problem {
            all = false;
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    }
    if all && !probe.opens.is_empty() {
        line.push(if no_device > 0 {
            format!(
                "{} device node(s) open ({no_device} stand-in(s) with no driver: ENXIO)",
                probe.opens.len()
            )
        } else {
            format!("{} device node(s) open", probe.opens.len())
        });
    }
    all
}

/// The GPUs the container lists, by nvidia-smi when it ran, else by NVML through gpu-check:
/// the report line and the problems, or why no list could be had.
fn gpu_list(
    e: &Expect<'_>,
    probe: &Probe,
) -> std::result::Result<(String, Vec<VerifyProblem>), VerifyCause> {
    let wanted: BTreeSet<&str> = e.gpus.iter().map(|g| g.uuid.as_str()).collect();
    let host = e.inv.driver_version.as_str();
    let failed = |output: String| VerifyCause::SmiFailed {
        failure: SmiFailure::classify(&output),
        output,
        expected: owned(&wanted),
        driver: host.to_owned(),
    };
    if probe.smi_path.is_none() && probe.smi.is_none() {
        return Err(VerifyCause::SmiMissing);
    }
    let nvml = probe.nvml.as_ref().filter(|n| n.lib == LibState::Ok);
    let (who, seen): (&str, Vec<(String, String)>) = match (&probe.smi, nvml) {
        (Some(smi), _) => {
            let seen = match smi.gpus() {
                Some(seen) => seen,
                // nvidia-smi exits non-zero when it finds no GPU: right when none was assigned.
                None if e.gpus.is_empty()
                    && smi
                        .lines
                        .iter()
                        .any(|l| l.contains("No devices were found")) =>
                {
                    Vec::new()
                }
                None => return Err(failed(smi.one_line())),
            };
            (
                "nvidia-smi",
                seen.into_iter()
                    .map(|g| (g.uuid, g.driver_version))
                    .collect(),
            )
        }
        (None, Some(n)) => {
            match &n.init {
                Some(c) if c.ok() => {}
                Some(c) => {
                    return Err(failed(format!(
                        "NVML through gpu-check: Failed to initialize NVML: {} (nvmlInit_v2 returned {})",
                        c.name, c.code
                    )))
                }
                None => return Err(failed("NVML through gpu-check gave no answer".into())),
            }
            let driver = n.driver.clone().unwrap_or_default();
            (
                "NVML",
                n.gpus
                    .values()
                    .map(|(uuid, _)| (uuid.clone(), driver.clone()))
                    .collect(),
            )
        }
        (None, None) => {
            return Err(failed(
                "nvidia-smi did not run and NVML did not answer".into(),
            ))
        }
    };
    let seen_uuids: BTreeSet<&str> = seen.iter().map(|(u, _)| u.as_str()).collect();
    let mut problems = Vec::new();
    if seen_uuids != wanted {
        problems.push(VerifyProblem::WrongGpus {
            seen: owned(&seen_uuids),
            expected: owned(&wanted),
            missing: wanted
                .difference(&seen_uuids)
                .map(|s| (*s).to_owned())
                .collect(),
            extra: seen_uuids
                .difference(&wanted)
                .map(|s| (*s).to_owned())
                .collect(),
        });
    }
    let versions: BTreeSet<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
    if let Some(v) = versions.iter().find(|v| **v != host) {
        problems.push(VerifyProblem::DriverVersion {
            reported: (*v).to_owned(),
            host: host.to_owned(),
        });
    }
    if let Some(us) = probe.userspace_version() {
        if us.as_str() != host {
            problems.push(VerifyProblem::UserspaceVersion {
                found: us.to_string(),
                host: host.to_owned(),
            });
        }
    }
    let line = format!(
        "{who} lists {} GPU(s) [{}] at driver {host}",
        seen.len(),
        seen.iter()
            .map(|(u, _)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((line, problems))
}

/// CUDA, when the exec asked for it (verification after a change).
fn cuda(
    e: &Expect<'_>,
    probe: &Probe,
    nodes_open: bool,
    problems: &mut Vec<VerifyProblem>,
    line: &mut Vec<String>,
) {
    let Some(c) = &probe.cuda else {
        return;
    };
    match c.lib {
        LibState::Ok => {}
        LibState::Incomplete if e.stand_ins => {
            line.push("stand-in libcuda without the CUDA API: CUDA not checked".into());
            return;
        }
        LibState::Incomplete => {
            problems.push(VerifyProblem::CudaLibrary { error: None });
            return;
        }
        LibState::Missing | LibState::Unknown => {
            problems.push(VerifyProblem::CudaLibrary {
                error: Some(c.lib_error.clone().unwrap_or_else(|| "not found".into())),
            });
            return;
        }
    }
    let failed_init = match (&c.init, &c.count_error) {
        (Some(i), _) if !i.ok() => Some(i.to_string()),
        (None, _) => Some("no answer".to_owned()),
        (_, Some(ce)) => Some(format!("{ce} from cuDeviceGetCount")),
        _ => None,
    };
    if let Some(result) = failed_init {
        problems.push(VerifyProblem::CudaInit { result, nodes_open });
        return;
    }
    let wanted: BTreeSet<&str> = e.gpus.iter().map(|g| g.uuid.as_str()).collect();
    let seen: BTreeSet<&str> = c.gpus.values().filter_map(|g| g.uuid.as_deref()).collect();
    if seen != wanted {
        problems.push(VerifyProblem::CudaGpus {
            seen: owned(&seen),
            expected: owned(&wanted),
        });
    }
    let mut contexts = 0;
    for (i, g) in &c.gpus {
        let uuid = g.uuid.clone().unwrap_or_else(|| "unknown UUID".into());
        let fail = [
            ("device lookup", &g.error),
            ("context creation", &g.ctx),
            ("1 MiB alloc/memset/read-back", &g.mem),
        ]
        .into_iter()
        .find_map(|(what, r)| r.as_ref().filter(|r| !r.ok()).map(|r| (what, r)));
        match fail {
            Some((what, r)) => problems.push(VerifyProblem::CudaContext {
                index: *i,
                uuid,
                what,
                result: r.to_string(),
            }),
            None if g.ctx.is_some() => contexts += 1,
            None => {}
        }
    }
    line.push(format!(
        "CUDA context and 1 MiB round trip on {contexts} GPU(s)"
    ));
}

fn owned(set: &BTreeSet<&str>) -> Vec<String> {
    set.iter().map(|s| (*s).to_owned()).collect()
}

/// The node check of strategy `none`.
fn check_nodes(
    probe: &Probe,
    inv: &Inventory,
    gpus: &[Gpu],
) -> std::result::Result<String, Vec<VerifyProblem>> {
    let mut want: Vec<(String, (u32, u32))> = gpus
        .iter()
        .map(|g| {
            (
                format!("/dev/nvidia{}", g.minor),
                (inv.majors.nvidia, g.minor),
            )
        })
        .collect();
    if !gpus.is_empty() {
        want.push((
            "/dev/nvidiactl".into(),
            (inv.majors.nvidia, NVIDIACTL_MINOR),
        ));
        if let Some(uvm) = inv.majors.nvidia_uvm {
            want.push(("/dev/nvidia-uvm".into(), (uvm, 0)));
        }
    }
    let mut problems = Vec::new();
    for (path, rdev) in &want {
        let path = path.clone();
        match probe.node(&path) {
            None => problems.push(VerifyProblem::NodeMissing { path }),
            Some(n) if n.kind != CtNodeKind::Char => {
                problems.push(VerifyProblem::NotCharDevice { path })
            }
            Some(n) if n.rdev != Some(*rdev) => problems.push(VerifyProblem::WrongNumbers {
                path,
                found: n.rdev,
                expected: *rdev,
            }),
            Some(_) => {}
        }
    }
    let assigned: BTreeSet<u32> = gpus.iter().map(|g| g.minor).collect();
    for n in &probe.nodes {
        let minor = n
            .path
            .strip_prefix("/dev/nvidia")
            .and_then(|m| m.parse::<u32>().ok());
        if let Some(m) = minor {
            if !assigned.contains(&m) && n.kind == CtNodeKind::Char {
                problems.push(VerifyProblem::Unassigned {
                    path: n.path.clone(),
                    minor: m,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{} device node(s) present with the host's numbers",
            want.len()
        ))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{CgroupLayout, Majors};

    fn inv() -> Inventory {
        Inventory {
            driver_version: "580.159.04".parse().unwrap(),
            gpus: vec![gpu(0, 0, "GPU-aaa"), gpu(1, 1, "GPU-bbb")],
            majors: Majors {
                nvidia: 195,
                nvidia_uvm: Some(238),
                nvidia_caps: Some(241),
                nvidia_modeset: None,
            },
            nodes: [
                "/dev/nvidia0",
                "/dev/nvidia1",
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools",
            ]
            .iter()
            .map(|p| node(p))
            .collect(),
            cgroup: CgroupLayout::V1Devices,
            pve_version: None,
        }
    }

    fn node(path: &str) -> crate::inventory::DeviceNode {
        let rdev = match path {
            "/dev/nvidiactl" => (195, 255),
            "/dev/nvidia-uvm" => (238, 0),
            "/dev/nvidia-uvm-tools" => (238, 1),
            p => (195, p.trim_start_matches("/dev/nvidia").parse().unwrap()),
        };
        crate::inventory::DeviceNode {
            path: path.into(),
            kind: crate::inventory::NodeKind::Char,
            rdev: Some(rdev),
            mode: 0o666,
            uid: 0,
            gid: 0,
        }
    }

    fn gpu(index: u32, minor: u32, uuid: &str) -> Gpu {
        Gpu {
            index,
            minor,
            pci_bus_id: format!("0000:00:0{}.0", index + 6),
            uuid: uuid.into(),
            model: "NVIDIA H200".into(),
        }
    }

    fn probe(text: &str) -> Probe {
        Probe::parse(&format!("probe=1\n{text}")).unwrap()
    }

    fn check(
        ct: &str,
        strategy: Strategy,
        p: &Probe,
        inv: &Inventory,
        gpus: &[Gpu],
    ) -> Result<String> {
        check_with(ct, strategy, p, inv, gpus, false)
    }

    fn check_with(
        ct: &str,
        strategy: Strategy,
        p: &Probe,
        inv: &Inventory,
        gpus: &[Gpu],
        stand_ins: bool,
    ) -> Result<String> {
        let e = Expect {
            strategy,
            inv,
            gpus,
            stand_ins,
        };
        super::check(ct, &e, p, &|_, _| NodeRefusal::NoAllowLine {
            major: 238,
            minor: 0,
        })
    }

    #[test]
    fn exactly_the_assigned_gpus_pass() {
        let inv = inv();
        let p = probe("smi=0, GPU-bbb, 580.159.04\nsmi_rc=0\n");
        let line = check("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..]).unwrap();
        assert!(line.contains("GPU-bbb"), "{line}");
    }

    #[test]
    fn an_extra_gpu_fails() {
        let inv = inv();
        let p = probe("smi=0, GPU-aaa, 580.159.04\nsmi=1, GPU-bbb, 580.159.04\nsmi_rc=0\n");
        let e = check("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Verify);
        assert!(
            crate::error::chain(&e).contains("not assigned [GPU-aaa]"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_version_fails() {
        let inv = inv();
        let p = probe("smi=0, GPU-aaa, 550.54.14\nsmi=1, GPU-bbb, 550.54.14\nsmi_rc=0\n");
        let e = check("101", Strategy::HostLibs, &p, &inv, &inv.gpus).unwrap_err();
        assert!(
            crate::error::chain(&e).contains("reports driver 550.54.14"),
            "{e}"
        );
    }

    #[test]
    fn nvml_errors_are_quoted() {
        let inv = inv();
        let p = probe("smi=Failed to initialize NVML: Unknown Error\nsmi_rc=255\n");
        let e = check("101", Strategy::Runfile, &p, &inv, &inv.gpus).unwrap_err();
        assert!(
            crate::error::chain(&e).contains("Failed to initialize NVML: Unknown Error"),
            "{e}"
        );
        let e = check("101", Strategy::Runfile, &probe(""), &inv, &inv.gpus).unwrap_err();
        assert!(
            crate::error::chain(&e).contains("not in the container's PATH"),
            "{e}"
        );
    }

    #[test]
    fn no_gpu_assigned_accepts_no_devices() {
        let inv = inv();
        let p = probe("smi=No devices were found\nsmi_rc=6\n");
        check("101", Strategy::Runfile, &p, &inv, &[]).unwrap();
    }

    #[test]
    fn nodes_for_strategy_none() {
        let inv = inv();
        let good = probe(
            "dev=/dev/nvidia1 c c3:1\ndev=/dev/nvidiactl c c3:ff\ndev=/dev/nvidia-uvm c ee:0\n",
        );
        check("101", Strategy::None, &good, &inv, &inv.gpus[1..]).unwrap();
        let bad =
            probe("dev=/dev/nvidia1 f\ndev=/dev/nvidia0 c c3:0\ndev=/dev/nvidia-uvm c ef:0\n");
        let e = crate::error::chain(
            &check("101", Strategy::None, &bad, &inv, &inv.gpus[1..]).unwrap_err(),
        );
        assert!(e.contains("/dev/nvidia1 is not a character device"), "{e}");
        assert!(e.contains("/dev/nvidiactl is missing"), "{e}");
        assert!(
            e.contains("/dev/nvidia-uvm is 239:0, expected 238:0"),
            "{e}"
        );
        assert!(e.contains("GPU minor 0 is not assigned"), "{e}");
    }

    const GC_OK: &str =
        "check_version=1\nnvml_lib=ok\nnvml_init=0 Success\nnvml_driver=580.159.04\n\
        nvml_dev0_uuid=GPU-bbb\nnvml_dev0_minor=1\nsmi_path=/usr/bin/nvidia-smi\n";

    #[test]
    fn the_nodes_passed_are_the_ones_opened() {
        let inv = inv();
        assert_eq!(
            nodes(&inv, &inv.gpus[1..]),
            [
                "/dev/nvidia1",
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools"
            ]
        );
        assert!(nodes(&inv, &[]).is_empty());
    }

    #[test]
    fn nvml_through_gpu_check_stands_for_nvidia_smi() {
        let inv = inv();
        let p = probe(&format!(
            "{GC_OK}node=/dev/nvidia1 ok\nnode=/dev/nvidia-uvm ok\ncheck_end=1\n"
        ));
        let line = check("101", Strategy::HostLibs, &p, &inv, &inv.gpus[1..]).unwrap();
        assert_eq!(
            line,
            "NVML lists 1 GPU(s) [GPU-bbb] at driver 580.159.04; 2 device node(s) open"
        );
        let p = probe("check_version=1\nnvml_lib=ok\nnvml_init=18 Driver/library version mismatch\nsmi_path=/x\ncheck_end=1\n");
        let e = check("101", Strategy::HostLibs, &p, &inv, &inv.gpus[1..]).unwrap_err();
        let Error::Verify {
            cause: VerifyCause::SmiFailed { failure, .. },
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*failure, SmiFailure::VersionMismatch);
    }

    /// The uvm case: nvidia-smi lists the GPU, the cgroup refuses /dev/nvidia-uvm, CUDA fails.
    #[test]
    fn a_refused_uvm_node_fails_although_nvidia_smi_works() {
        let inv = inv();
        let p = probe(&format!(
            "{GC_OK}node=/dev/nvidia1 ok\nnode=/dev/nvidia-uvm EPERM\n\
             cuda_lib=ok\ncuda_init=999 CUDA_ERROR_UNKNOWN\ncheck_end=1\n\
             smi=0, GPU-bbb, 580.159.04\nsmi_rc=0\n"
        ));
        let e = check("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Verify);
        let text = crate::error::chain(&e);
        assert!(
            text.contains("/dev/nvidia-uvm (238:0) cannot be opened in the container (EPERM: the device cgroup refuses it): the config has no allow line for c 238:0"),
            "{text}"
        );
        assert!(
            text.contains("cuInit returned 999 CUDA_ERROR_UNKNOWN)"),
            "{text}"
        );
        assert!(!text.contains("although"), "{text}");
    }

    #[test]
    fn cuinit_failing_with_every_node_open_says_so() {
        let inv = inv();
        let p = probe(&format!(
            "{GC_OK}node=/dev/nvidia1 ok\nnode=/dev/nvidia-uvm ok\n\
             cuda_lib=ok\ncuda_init=999 CUDA_ERROR_UNKNOWN\ncheck_end=1\n"
        ));
        let text = crate::error::chain(
            &check("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..]).unwrap_err(),
        );
        assert!(
            text.contains("although every passed device node opens"),
            "{text}"
        );
    }

    #[test]
    fn contexts_on_each_gpu() {
        let inv = inv();
        let good = probe(&format!(
            "{GC_OK}cuda_lib=ok\ncuda_init=0 CUDA_SUCCESS\ncuda_count=1\ncuda_dev0_uuid=GPU-bbb\n\
             cuda_dev0_ctx=0 CUDA_SUCCESS\ncuda_dev0_mem=0 CUDA_SUCCESS\ncheck_end=1\n"
        ));
        let line = check("101", Strategy::Runfile, &good, &inv, &inv.gpus[1..]).unwrap();
        assert!(
            line.ends_with("CUDA context and 1 MiB round trip on 1 GPU(s)"),
            "{line}"
        );
        let bad = probe(&format!(
            "{GC_OK}cuda_lib=ok\ncuda_init=0 CUDA_SUCCESS\ncuda_dev0_uuid=GPU-aaa\n\
             cuda_dev0_ctx=2 CUDA_ERROR_OUT_OF_MEMORY\ncheck_end=1\n"
        ));
        let text = crate::error::chain(
            &check("101", Strategy::Runfile, &bad, &inv, &inv.gpus[1..]).unwrap_err(),
        );
        assert!(
            text.contains("CUDA sees [GPU-aaa], expected [GPU-bbb]"),
            "{text}"
        );
        assert!(
            text.contains(
                "CUDA context creation on device 0 (GPU-aaa) failed: 2 CUDA_ERROR_OUT_OF_MEMORY"
            ),
            "{text}"
        );
        let empty = probe(&format!(
            "{GC_OK}cuda_lib=missing\ncuda_lib_error=libcuda.so.1: file too short\ncheck_end=1\n"
        ));
        let text = crate::error::chain(
            &check("101", Strategy::HostLibs, &empty, &inv, &inv.gpus[1..]).unwrap_err(),
        );
        assert!(
            text.contains(
                "libcuda.so.1 cannot be loaded in the container: libcuda.so.1: file too short"
            ),
            "{text}"
        );
    }

    /// ENXIO (no driver behind the numbers) passes only on a fake GPU host; stand-in libraries
    /// without the API are noted there and fail on a real host.
    #[test]
    fn enxio_and_stand_in_libraries_only_on_a_fake_host() {
        let inv = inv();
        let p = probe(
            "check_version=1\nnode=/dev/nvidia1 ENXIO\nnode=/dev/nvidiactl ENXIO\nnvml_lib=incomplete\n\
             cuda_lib=incomplete\ncheck_end=1\nsmi_path=/usr/bin/nvidia-smi\nsmi=0, GPU-bbb, 580.159.04\nsmi_rc=0\n",
        );
        let line = check_with("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..], true).unwrap();
        assert!(
            line.contains("2 device node(s) open (2 stand-in(s) with no driver: ENXIO)"),
            "{line}"
        );
        assert!(
            line.contains("stand-in libcuda without the CUDA API: CUDA not checked"),
            "{line}"
        );
        let text = crate::error::chain(
            &check_with("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..], false).unwrap_err(),
        );
        assert!(
            text.contains("/dev/nvidia1 opens to no device (ENXIO)"),
            "{text}"
        );
        assert!(
            text.contains("libcuda.so.1 in the container lacks the CUDA driver API"),
            "{text}"
        );
    }

    #[test]
    fn a_gpu_check_that_cannot_run_is_noted() {
        let inv = inv();
        let p = probe(
            "gpu_check_rc=127\ngpu_check_error=not found\nsmi=0, GPU-bbb, 580.159.04\nsmi_rc=0\n",
        );
        let line = check("101", Strategy::Runfile, &p, &inv, &inv.gpus[1..]).unwrap();
        assert!(
            line.contains("gpu-check cannot run in this container (exit 127: not found)"),
            "{line}"
        );
    }

    #[test]
    fn why_the_cgroup_refuses() {
        let inv = inv();
        let rule = |key: &str, major: u32, minor: Option<u32>| SaidLine::Rule {
            key: key.into(),
            major,
            minor,
        };
        let v1 = "lxc.cgroup.devices.allow";
        let v2 = "lxc.cgroup2.devices.allow";
        let uvm = (238, 0);
        let r = |lines: Vec<SaidLine>| refusal(Some(&lines), &inv, "/dev/nvidia-uvm", uvm);
        assert_eq!(
            r(vec![rule(v1, 195, Some(1))]),
            NodeRefusal::NoAllowLine {
                major: 238,
                minor: 0
            }
        );
        assert_eq!(
            r(vec![rule(v2, 238, None)]),
            NodeRefusal::WrongCgroupKey {
                key: v2.into(),
                honoured: v1.into()
            }
        );
        assert_eq!(
            r(vec![rule(v1, 509, None)]),
            NodeRefusal::StaleMajor {
                major: 238,
                stale: vec![509]
            }
        );
        assert_eq!(r(vec![rule(v1, 238, None)]), NodeRefusal::NotApplied);
        assert_eq!(
            refusal(None, &inv, "/dev/nvidia-uvm", uvm),
            NodeRefusal::Unknown
        );
    }
}
