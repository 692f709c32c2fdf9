//! Verification: what the container sees against what it was given.
//!
//! - `runfile` and `host-libs`: `nvidia-smi --query-gpu=index,uuid,driver_version` inside must
//!   list exactly the assigned GPUs (by UUID) at the host module's version.
//! - `none`: the assigned `/dev/nvidia<minor>` nodes, `/dev/nvidiactl` and (when the host has
//!   uvm) `/dev/nvidia-uvm` exist inside as character devices with the host's numbers, and no
//!   other GPU's node does.

use std::collections::BTreeSet;

use crate::error::{Error, Result, SmiFailure, VerifyCause, VerifyProblem};
use crate::inventory::{Gpu, Inventory, NVIDIACTL_MINOR};
use crate::request::Strategy;

use super::probe::{CtNodeKind, Probe};

/// Checks `probe` (the probe or the verification exec) against the assignment. Returns one
/// line for the report.
pub(crate) fn check(
    ct: &str,
    strategy: Strategy,
    probe: &Probe,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<String> {
    let fail = |cause: VerifyCause| Error::Verify {
        ct: ct.to_owned(),
        cause,
    };
    let mismatch = |problems: Vec<VerifyProblem>| fail(VerifyCause::Mismatch { problems });
    if strategy == Strategy::None {
        return check_nodes(probe, inv, gpus).map_err(mismatch);
    }
    let Some(smi) = &probe.smi else {
        return Err(fail(VerifyCause::SmiMissing));
    };
    let wanted: BTreeSet<&str> = gpus.iter().map(|g| g.uuid.as_str()).collect();
    let seen = match smi.gpus() {
        Some(seen) => seen,
        // nvidia-smi exits non-zero when it finds no GPU: right when none was assigned.
        None if gpus.is_empty()
            && smi
                .lines
                .iter()
                .any(|l| l.contains("No devices were found")) =>
        {
            Vec::new()
        }
        None => {
            let output = smi.one_line();
            return Err(fail(VerifyCause::SmiFailed {
                failure: SmiFailure::classify(&output),
                output,
                expected: owned(&wanted),
                driver: inv.driver_version.to_string(),
            }));
        }
    };
    let seen_uuids: BTreeSet<&str> = seen.iter().map(|g| g.uuid.as_str()).collect();
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
    let host = inv.driver_version.as_str();
    let versions: BTreeSet<&str> = seen.iter().map(|g| g.driver_version.as_str()).collect();
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
    if problems.is_empty() {
        Ok(format!(
            "nvidia-smi lists {} GPU(s) [{}] at driver {host}",
            seen.len(),
            seen.iter()
                .map(|g| g.uuid.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(mismatch(problems))
    }
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
            nodes: vec![],
            cgroup: CgroupLayout::V1Devices,
            pve_version: None,
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
}
