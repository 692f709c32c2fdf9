//! The `runfile` strategy: NVIDIA's `.run` installer, downloaded once on the host, pushed into
//! the container and run there without its kernel-module parts.
//!
//! Installer flags (see `docs/prior-art.md`, nvidia-installer's option table):
//! - `--no-kernel-module` (singular): the plural `--no-kernel-modules` exists only since
//!   515.43.04; the singular is accepted by every version as an alias.
//! - `--silent` implies `--ui=none --no-questions`.
//! - `--no-nouveau-check --no-x-check --no-nvidia-modprobe --no-dkms --no-systemd
//!   --no-distro-scripts --no-backup --no-check-for-alternate-installs`: nothing a container
//!   can use or needs.
//! - Not `--no-install-compat32-libs`: an installer stops at an option it does not know, and
//!   that it is accepted by every version in use could not be confirmed; the 32-bit
//!   libraries it would skip only cost disk space.
//!
//! An older userspace in the container is replaced by the installer itself (it uninstalls the
//! previous installation); verification runs afterwards either way.

use std::path::PathBuf;
use std::time::Duration;

use exec_backend::{tail_text, Cmd, ExitStatus};

use crate::error::{chain, Error, InstallCause, Result};
use crate::inventory::Inventory;
use crate::report::StepStatus;
use crate::request::Request;
use crate::settings::Settings;
use crate::step::Ctx;
use crate::version::DriverVersion;
use crate::version::VersionWanted;

use super::apt::{self, Apt};
use super::download::{self, Checksum, Fetch, Source};
use super::probe::Probe;
use super::pushed;

/// The flags every install gets.
pub const INSTALLER_FLAGS: &[&str] = &[
    "--no-kernel-module",
    "--silent",
    "--no-nouveau-check",
    "--no-x-check",
    "--no-nvidia-modprobe",
    "--no-dkms",
    "--no-systemd",
    "--no-distro-scripts",
    "--no-backup",
    "--no-check-for-alternate-installs",
];

/// Where the runfile goes inside the container (removed after the install).
const CT_DIR: &str = "/root";
/// The installer's log inside the container.
pub const INSTALLER_LOG: &str = "/var/log/nvidia-installer.log";
/// The limit for one install.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Room the install needs beyond three times the runfile's size (unpacked copy, installed files).
const SPARE_KB: u64 = 100 * 1024;

/// The userspace version the request wants.
pub(crate) fn wanted(req: &Request, inv: &Inventory) -> DriverVersion {
    match &req.driver_version {
        VersionWanted::Auto => inv.driver_version.clone(),
        VersionWanted::Exact(v) => v.clone(),
    }
}

/// Where NVIDIA publishes the x86_64 runfile of `version`, under `base`
/// (`https://us.download.nvidia.com`), in the order they are tried:
///
/// 1. `XFree86/Linux-x86_64/<ver>/`, NVIDIA's Unix driver archive. First, because NVIDIA
///    publishes a `.sha256sum` beside every runfile there: a version found there is checked
///    against NVIDIA's own checksum.
/// 2. `tesla/<ver>/`, the datacenter ("Tesla") releases, many of which exist only there
///    (580.159.04, the driver of an H200 host, is one; the XFree86 archive has 580.159.03). No
///    `.sha256sum` is relied on there: where none is published, the download needs a checksum
///    from the caller, or the caller's explicit trust in the first download.
///
/// One HEAD each, until one has it (`download::fetch`).
pub(crate) fn nvidia_sources(base: &str, version: &DriverVersion) -> Vec<Source> {
    let base = base.trim_end_matches('/');
    let name = format!("NVIDIA-Linux-x86_64-{version}.run");
    vec![
        Source {
            url: format!("{base}/XFree86/Linux-x86_64/{version}/{name}"),
            label: "NVIDIA's driver archive (XFree86)".into(),
        },
        Source {
            url: format!("{base}/tesla/{version}/{name}"),
            label: "NVIDIA's datacenter (tesla) downloads".into(),
        },
    ]
}

/// Where the runfile comes from and its cache file name, for `version`.
pub(crate) fn source(
    req: &Request,
    settings: &Settings,
    version: &DriverVersion,
) -> (Vec<Source>, String) {
    match &req.runfile.url {
        Some(url) => {
            let name = url
                .as_str()
                .split(['?', '#'])
                .next()
                .unwrap_or(url.as_str())
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let given = Source {
                url: url.to_string(),
                label: "the given URL".into(),
            };
            (vec![given], name)
        }
        None => (
            nvidia_sources(&settings.nvidia_downloads, version),
            format!("NVIDIA-Linux-x86_64-{version}.run"),
        ),
    }
}

/// How the runfile's checksum is known.
fn checksum(req: &Request) -> Checksum {
    match &req.runfile.sha256 {
        Some(s) => Checksum::Given(s.clone()),
        None => Checksum::Published {
            trust_first: req.runfile.trust_first_download,
        },
    }
}

/// What NVIDIA's installer looks up first and stops without, even with
/// `--no-kernel-module` (nvidia-installer's `find_system_utils` and `find_module_utils`), and
/// the Debian package of each.
const INSTALLER_NEEDS: &[(&str, &str)] = &[
    ("ldconfig", "libc-bin"),
    ("grep", "grep"),
    ("dmesg", "util-linux"),
    ("tail", "coreutils"),
    ("modprobe", "kmod"),
    ("rmmod", "kmod"),
    ("lsmod", "kmod"),
    ("depmod", "kmod"),
];

/// The installer's programs the container lacks (the probe's `installer_missing`), and the
/// packages that have them.
fn installer_needs(probe: &Probe) -> (Vec<String>, Vec<String>) {
    let mut tools = Vec::new();
    let mut packages: Vec<String> = Vec::new();
    for (tool, package) in INSTALLER_NEEDS {
        if probe.installer_missing.contains(*tool) {
            tools.push((*tool).to_owned());
            if !packages.iter().any(|p| p == package) {
                packages.push((*package).to_owned());
            }
        }
    }
    (tools, packages)
}

/// The userspace step for `runfile`: installs the installer's missing programs first (`kmod`:
/// debootstrap's minbase and images made from OCI containers have none), then downloads,
/// pushes, checks and runs the installer.
pub(crate) async fn step(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    probe: &Probe,
    apt: &mut Apt,
) -> Result<(bool, StepStatus, String)> {
    let want = wanted(req, inv);
    let have = probe.userspace_version();
    if have.as_ref() == Some(&want) {
        return Ok((false, StepStatus::Ok, format!("userspace {want} installed")));
    }
    let (sources, name) = source(req, ctx.settings, &want);
    download::check_file_name(&name, &sources[0].url)?;
    let found = have.map_or_else(|| "none".to_owned(), |v| v.to_string());
    let (tools, packages) = installer_needs(probe);
    if req.dry_run {
        let from = match sources.as_slice() {
            [only] => only.url.clone(),
            _ => format!("NVIDIA's downloads ({name})"),
        };
        let first = if packages.is_empty() {
            String::new()
        } else {
            format!("install {} for the installer, then ", packages.join(", "))
        };
        return Ok((
            false,
            StepStatus::Planned,
            format!("would {first}install userspace {want} from {from} (found {found})"),
        ));
    }
    let what = format!("NVIDIA userspace {want}");
    let fail = |cause: InstallCause| Error::Install {
        ct: ctx.ct.to_string(),
        what: what.clone(),
        cause,
    };
    if let Some(arch) = probe.arch.as_deref() {
        if arch != "x86_64" {
            return Err(fail(InstallCause::WrongArch {
                arch: arch.to_owned(),
            }));
        }
    }
    if !packages.is_empty() {
        if apt::require(ctx, &what, probe).is_err() {
            return Err(fail(InstallCause::InstallerNeeds {
                tools,
                packages,
                system: probe.system(),
            }));
        }
        apt::install(ctx, apt, probe, &what, &packages, true).await?;
    }
    let cached = download::fetch(
        ctx,
        &Fetch {
            sources,
            file_name: name.clone(),
            checksum: checksum(req),
        },
    )
    .await?;
    let need_kb = cached.size / 1024 * 3 + SPARE_KB;
    if let Some(free) = probe.disk_free_kb {
        if free < need_kb {
            return Err(fail(InstallCause::DiskSpace {
                free_mib: free / 1024,
                need_mib: need_kb / 1024,
            }));
        }
    }
    let dest = PathBuf::from(CT_DIR).join(&name);
    ctx.cts
        .push_file(ctx.ct, &cached.path, &dest, 0o755)
        .await
        .map_err(|source| {
            fail(InstallCause::Push {
                file: name.clone(),
                source,
            })
        })?;
    let dest = dest.display().to_string();
    let script = format!("{}sh \"$f\" \"$@\"\n", pushed::CHECK);
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), script, "phoenix-gpu".into()];
    argv.extend(pushed::args(&dest, &cached));
    argv.extend(INSTALLER_FLAGS.iter().map(|s| (*s).to_owned()));
    let cmd = Cmd::new(argv).timeout(INSTALL_TIMEOUT);
    let out = ctx.cts.exec(ctx.ct, &cmd).await.map_err(|source| {
        fail(InstallCause::Run {
            doing: "running the installer".to_owned(),
            source,
        })
    })?;
    if let Some(cause) = pushed::failure(&out, &name) {
        return Err(fail(cause));
    }
    if out.status != ExitStatus::Code(0) {
        let mut said = tail_text(&out.stdout, 600);
        let err = out.stderr_tail(600);
        if !err.is_empty() {
            if !said.is_empty() {
                said.push_str(" | ");
            }
            said.push_str(&err);
        }
        let log = log_tail(ctx).await;
        return Err(fail(InstallCause::Installer {
            status: out.status,
            output: (!said.is_empty()).then_some(said),
            log_path: INSTALLER_LOG,
            log,
        }));
    }
    Ok((
        true,
        StepStatus::Changed,
        format!(
            "installed userspace {want} (was {found}){}",
            match &cached.downloaded {
                Some(o) => format!(
                    ", downloaded {name} from {} ({}; {})",
                    o.source.label,
                    o.source.url,
                    o.sum_from.describe()
                ),
                None => format!(", {name} from the cache"),
            }
        ),
    ))
}

/// The last lines of the installer's log, or why there are none.
async fn log_tail(ctx: &Ctx<'_>) -> String {
    let cmd = Cmd::new(["tail", "-n", "30", INSTALLER_LOG]).timeout(Duration::from_secs(30));
    match ctx.cts.exec(ctx.ct, &cmd).await {
        Ok(out) if out.status.success() => {
            let t = tail_text(&out.stdout, 3000);
            if t.is_empty() {
                "(empty)".into()
            } else {
                t.lines().collect::<Vec<_>>().join(" / ")
            }
        }
        Ok(out) => format!("(not readable: {})", out.stderr_tail(300)),
        Err(e) => format!("(not readable: {})", chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::GpuSelection;
    use crate::values::CtId;

    #[test]
    fn urls() {
        let v: DriverVersion = "580.159.04".parse().unwrap();
        let settings = Settings::default();
        let mut req = Request::new("101".parse::<CtId>().unwrap(), GpuSelection::All);
        let (sources, name) = source(&req, &settings, &v);
        let urls: Vec<&str> = sources.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.159.04/NVIDIA-Linux-x86_64-580.159.04.run",
                "https://us.download.nvidia.com/tesla/580.159.04/NVIDIA-Linux-x86_64-580.159.04.run",
            ]
        );
        assert_eq!(name, "NVIDIA-Linux-x86_64-580.159.04.run");
        req.runfile.url = Some(
            "http://127.0.0.1:8080/d/NVIDIA-Linux-x86_64-1.2.run?x=1"
                .parse()
                .unwrap(),
        );
        let (sources, name) = source(&req, &settings, &v);
        assert_eq!(name, "NVIDIA-Linux-x86_64-1.2.run");
        assert_eq!(sources.len(), 1, "a given URL is used as it is");
        req.runfile.url = Some("http://127.0.0.1:8080/".parse().unwrap());
        assert!(download::check_file_name(&source(&req, &settings, &v).1, "u").is_err());
    }

    #[test]
    fn flags_use_the_singular_form() {
        assert!(INSTALLER_FLAGS.contains(&"--no-kernel-module"));
        assert!(!INSTALLER_FLAGS.contains(&"--no-kernel-modules"));
    }
}
