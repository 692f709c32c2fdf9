//! apt inside Debian and Ubuntu containers: every package the tool installs (the CUDA toolkit,
//! the tools, `kmod` for NVIDIA's installer) goes through [`install`].
//!
//! - `apt-get update` runs at most once per apply ([`Apt`]).
//! - First a simulation (`apt-get -s install --no-install-recommends PKG...`): its `Inst NAME
//!   (VERSION ...)` lines are everything the install would bring. In a container whose driver
//!   userspace the tool manages (`runfile`, `host-libs`), a driver package among them
//!   ([`driver_package`]: `libnvidia-*`, `libcuda1`, `nvidia-driver*`, `cuda-drivers*`,
//!   `nvidia-*-utils`, ...) stops the install before anything changed: it would replace the
//!   runfile's libraries with the distribution's, or hide the host's, and NVML would fail with
//!   "Driver/library version mismatch" (Ubuntu 20.04's `nvtop` depends on
//!   `libnvidia-compute-*`). A package apt cannot find is named, with the component it lives in
//!   where that is known (`nvtop`: `contrib` on Debian, `universe` on Ubuntu).
//! - Then the install, with `--no-install-recommends` (the CUDA toolkit's recommends pull in
//!   Java and X libraries) and the config files kept as they are (`--force-confdef
//!   --force-confold`), non-interactive.

use std::time::Duration;

use crate::error::{Error, InstallCause, Result};
use crate::step::Ctx;

use super::probe::{run_script, Probe};

/// The limit for one apt run.
pub(crate) const APT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The apt work of one apply.
#[derive(Debug, Default)]
pub(crate) struct Apt {
    updated: bool,
}

impl Apt {
    /// `apt-get update` has run in this apply (a script of the caller's ran it).
    pub(crate) fn mark_updated(&mut self) {
        self.updated = true;
    }
}

/// Debian or Ubuntu with apt, else [`Error::Install`] naming what the container is.
pub(crate) fn require(ctx: &Ctx<'_>, what: &str, probe: &Probe) -> Result<()> {
    let id = probe.os_id.as_deref().unwrap_or("");
    if matches!(id, "debian" | "ubuntu") && probe.apt_get && probe.dpkg {
        return Ok(());
    }
    Err(fail(
        ctx,
        what,
        InstallCause::NotApt {
            system: probe.system(),
            apt_get: probe.apt_get,
        },
    ))
}

/// Whether `name` is a package of the NVIDIA driver's userspace (a library or tool that the
/// runfile installs, or that `host-libs` mounts from the host).
pub(crate) fn driver_package(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "libnvidia-",
        "libcuda1",
        "libcuda-",
        "libnvcuvid",
        "libnvoptix",
        "libgl1-nvidia",
        "libegl-nvidia",
        "libgles-nvidia",
        "libglx-nvidia",
        "nvidia-driver",
        "nvidia-utils-",
        "nvidia-kernel-",
        "nvidia-dkms",
        "nvidia-smi",
        "nvidia-alternative",
        "nvidia-opencl-icd",
        "nvidia-vulkan-icd",
        "nvidia-egl-icd",
        "nvidia-legacy-",
        "cuda-drivers",
        "xserver-xorg-video-nvidia",
    ];
    // The container toolkit's library is not the driver's.
    if name.starts_with("libnvidia-container") {
        return false;
    }
    PREFIXES.iter().any(|p| name.starts_with(p))
        || (name.starts_with("nvidia-") && (name.ends_with("-utils") || name.contains("-utils-")))
}

/// The component of the distribution a package is known to live in, when it is not `main`.
pub(crate) fn component(package: &str, os_id: &str) -> Option<&'static str> {
    match (package, os_id) {
        ("nvtop", "debian") => Some("contrib"),
        ("nvtop", "ubuntu") => Some("universe"),
        _ => None,
    }
}

/// Installs `packages` (see the module docs); `guard`: the container's driver userspace is
/// the tool's, so an install that brings a driver package is refused. Two execs: the
/// simulation (after `apt-get update` when this apply has not run it), then the install.
pub(crate) async fn install(
    ctx: &Ctx<'_>,
    apt: &mut Apt,
    probe: &Probe,
    what: &str,
    packages: &[String],
    guard: bool,
) -> Result<()> {
    let simulate = r#"export DEBIAN_FRONTEND=noninteractive
if [ "$1" = update ]; then apt-get update >&2 || exit 100; fi
shift
exec apt-get -s install --no-install-recommends "$@"
"#;
    let mut args = vec![if apt.updated { "no-update" } else { "update" }.to_owned()];
    args.extend(packages.iter().cloned());
    let out = run_script(
        ctx,
        "simulating apt-get install",
        simulate,
        &args,
        APT_TIMEOUT,
    )
    .await?;
    apt.updated = true;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let os = probe.os_id.as_deref().unwrap_or("");
        if let Some(p) = packages.iter().find(|p| not_found(&err, p)) {
            return Err(fail(
                ctx,
                what,
                InstallCause::PackageNotFound {
                    package: p.clone(),
                    system: probe.system(),
                    component: component(p, os),
                },
            ));
        }
        return Err(fail(
            ctx,
            what,
            InstallCause::Command {
                doing: format!("apt-get -s install {}", packages.join(" ")),
                status: out.status,
                output: output_tail(&out),
            },
        ));
    }
    if guard {
        let plan = planned(&out.stdout_str());
        if let Some((name, version)) = plan.iter().find(|(n, _)| driver_package(n)) {
            return Err(fail(
                ctx,
                what,
                InstallCause::WouldReplaceDriver {
                    asked: packages.join(" "),
                    package: name.clone(),
                    version: version.clone(),
                },
            ));
        }
    }
    let install = r#"export DEBIAN_FRONTEND=noninteractive
exec apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
"#;
    let out = run_script(
        ctx,
        "installing with apt-get",
        install,
        packages,
        APT_TIMEOUT,
    )
    .await?;
    if !out.status.success() {
        return Err(fail(
            ctx,
            what,
            InstallCause::Command {
                doing: format!("apt-get install {}", packages.join(" ")),
                status: out.status,
                output: output_tail(&out),
            },
        ));
    }
    Ok(())
}

/// The packages a simulation would install: `(name, version)` of each `Inst` line
/// (`Inst libnvidia-compute-470 (470.256.02-0ubuntu0.20.04.1 Ubuntu:20.04/focal-updates [amd64])`,
/// or `Inst nvtop [1.0.0-1] (1.2.0-1 ...)` for an upgrade).
pub(crate) fn planned(simulation: &str) -> Vec<(String, String)> {
    simulation
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let version = rest
                .split_once('(')
                .and_then(|(_, v)| v.split_whitespace().next())
                .unwrap_or("")
                .trim_end_matches(')')
                .to_owned();
            Some((name.to_owned(), version))
        })
        .collect()
}

/// Whether apt's error output says it has no `package`.
fn not_found(stderr: &str, package: &str) -> bool {
    stderr.lines().any(|l| {
        l == format!("E: Unable to locate package {package}")
            || l == format!("E: Package '{package}' has no installation candidate")
    })
}

/// stderr and stdout of an apt run, on one line.
pub(crate) fn output_tail(out: &exec_backend::Output) -> String {
    let mut s = exec_backend::tail_text(&out.stderr, 800);
    let o = exec_backend::tail_text(&out.stdout, 800);
    if !o.is_empty() {
        if !s.is_empty() {
            s.push_str(" | ");
        }
        s.push_str(&o);
    }
    s.lines().collect::<Vec<_>>().join(" / ")
}

fn fail(ctx: &Ctx<'_>, what: &str, cause: InstallCause) -> Error {
    Error::Install {
        ct: ctx.ct.to_string(),
        what: what.to_owned(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_packages() {
        for p in [
            "libnvidia-compute-470",
            "libnvidia-ml1",
            "libcuda1",
            "nvidia-driver-535",
            "nvidia-driver",
            "cuda-drivers-550",
            "cuda-drivers",
            "nvidia-utils-535",
            "nvidia-compute-utils-535",
            "nvidia-smi",
            "xserver-xorg-video-nvidia-535",
            "libgl1-nvidia-glvnd-glx",
            "nvidia-kernel-common-535",
        ] {
            assert!(driver_package(p), "{p}");
        }
        for p in [
            "nvtop",
            "kmod",
            "cuda-toolkit-12-8",
            "cuda-cudart-12-8",
            "libnvidia-container1",
            "nvidia-container-toolkit",
            "libcudnn9-cuda-12",
        ] {
            assert!(!driver_package(p), "{p}");
        }
    }

    #[test]
    fn simulation_lines() {
        // apt-get -s on Ubuntu 20.04 for nvtop (the shape of its output).
        let sim = "NOTE: This is only a simulation!\n\
            Reading package lists...\n\
            Inst libnvidia-compute-470 (470.256.02-0ubuntu0.20.04.1 Ubuntu:20.04/focal-updates [amd64])\n\
            Inst nvtop (1.0.0-1ubuntu2 Ubuntu:20.04/focal/universe [amd64])\n\
            Inst kmod [27-1] (30+20221128-1 Debian:12.5/stable [amd64])\n\
            Conf nvtop (1.0.0-1ubuntu2 Ubuntu:20.04/focal/universe [amd64])\n";
        assert_eq!(
            planned(sim),
            [
                (
                    "libnvidia-compute-470".to_owned(),
                    "470.256.02-0ubuntu0.20.04.1".to_owned()
                ),
                ("nvtop".into(), "1.0.0-1ubuntu2".into()),
                ("kmod".into(), "30+20221128-1".into()),
            ]
        );
        assert!(not_found("E: Unable to locate package nvtop\n", "nvtop"));
        assert!(not_found(
            "W: x\nE: Package 'nvtop' has no installation candidate\n",
            "nvtop"
        ));
        assert!(!not_found("E: Unable to locate package nvtop2\n", "nvtop"));
        assert_eq!(component("nvtop", "debian"), Some("contrib"));
        assert_eq!(component("htop", "debian"), None);
    }
}
