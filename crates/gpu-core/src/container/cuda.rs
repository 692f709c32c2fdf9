//! The CUDA toolkit and extra tools, with apt, on Debian and Ubuntu containers.
//!
//! The CUDA repository is NVIDIA's for the container's distribution
//! (`https://developer.download.nvidia.com/compute/cuda/repos/<id><version without dot>/x86_64/`,
//! e.g. `debian12`, `ubuntu2404`) unless the request names one. Its keyring package
//! (`cuda-keyring_1.1-1_all.deb`) is downloaded on the host (a minimal container has no curl),
//! cached, pushed in, checked ([`pushed`]) and installed with `dpkg -i`; then the tool writes
//! its own source line `deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] <repo> /`
//! to `/etc/apt/sources.list.d/phoenix-gpu-cuda.list` (only for a repository other than
//! NVIDIA's default, whose line the keyring package already ships) and runs `apt-get update`.
//! Before installing, the repository must have the version asked for for the container's
//! release (`apt-cache policy cuda-toolkit-X-Y` has a candidate; CUDA 12.x may be missing from
//! the repository of a newer release): if not, the error lists the versions it has
//! (`apt-cache pkgnames cuda-toolkit-`). Then `cuda-toolkit-X-Y` is installed through
//! [`apt::install`] (a simulation that refuses driver packages, `--no-install-recommends`), and
//! `/etc/profile.d/phoenix-gpu-cuda.sh` puts `/usr/local/cuda-X.Y/bin` on the `PATH` of login
//! shells (the toolkit's packages put `nvcc` there, not on the `PATH`). `remove` leaves that
//! file, as it leaves the toolkit: it takes the GPUs away, not the software.
//!
//! Tools are apt packages installed the same way. At most one `apt-get update` runs per apply.

use std::path::PathBuf;

use crate::error::{Error, InstallCause, Result};
use crate::report::StepStatus;
use crate::request::{Request, Strategy};
use crate::step::Ctx;

use super::apt::{self, Apt, APT_TIMEOUT};
use super::download::{self, Checksum, Fetch, Source};
use super::probe::{run_script, Probe};
use super::pushed;

/// The keyring package in NVIDIA's CUDA repositories.
pub const KEYRING_DEB: &str = "cuda-keyring_1.1-1_all.deb";
/// The keyring file the package installs (the source line's `signed-by`).
pub const KEYRING_FILE: &str = "/usr/share/keyrings/cuda-archive-keyring.gpg";
/// The source list the tool writes for a repository given with `--repo-url`.
pub const SOURCES_FILE: &str = "/etc/apt/sources.list.d/phoenix-gpu-cuda.list";
/// The login shells' `PATH` addition for the CUDA toolkit.
pub const PROFILE_FILE: &str = "/etc/profile.d/phoenix-gpu-cuda.sh";

/// The exit codes of the repository script's steps.
const RC_DPKG: i32 = 90;
const RC_SOURCES: i32 = 91;
const RC_UPDATE: i32 = 92;

/// NVIDIA's CUDA repository for the container's distribution.
pub(crate) fn default_repo(probe: &Probe) -> Option<String> {
    let id = probe.os_id.as_deref()?;
    let ver = probe.os_version_id.as_deref()?;
    let ver: String = match id {
        // debian12, not debian12.5.
        "debian" => ver.split('.').next()?.to_owned(),
        "ubuntu" => ver.replace('.', ""),
        _ => return None,
    };
    ver.bytes().all(|b| b.is_ascii_digit()).then(|| {
        format!("https://developer.download.nvidia.com/compute/cuda/repos/{id}{ver}/x86_64/")
    })
}

/// Whether the container's driver userspace is the tool's, so that apt must not bring a
/// driver package into it.
fn guarded(req: &Request) -> bool {
    req.strategy_or_default() != Strategy::None
}

/// The contents of [`PROFILE_FILE`] for CUDA `version`.
pub(crate) fn profile(version: &str) -> String {
    let bin = format!("/usr/local/cuda-{version}/bin");
    format!(
        "# Written by phoenix-gpu: the CUDA {version} toolkit on the PATH of login shells.\n\
         case \":$PATH:\" in\n\
         \x20 *:{bin}:*) ;;\n\
         \x20 *) PATH=\"{bin}:$PATH\"; export PATH ;;\n\
         esac\n"
    )
}

/// The CUDA versions among `apt-cache pkgnames cuda-toolkit-` names, oldest first.
fn available(stdout: &str) -> Vec<String> {
    let mut v: Vec<(u32, u32)> = stdout
        .lines()
        .filter_map(|l| {
            let (a, b) = l.strip_prefix("available=")?.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v.iter().map(|(a, b)| format!("{a}.{b}")).collect()
}

/// The CUDA step.
pub(crate) async fn step(
    ctx: &Ctx<'_>,
    req: &Request,
    probe: &Probe,
    apt: &mut Apt,
) -> Result<(bool, StepStatus, String)> {
    let Some(version) = &req.cuda else {
        return Ok((false, StepStatus::Skipped, "not requested".into()));
    };
    let pkg = version.package();
    if probe.cuda_present(&version.to_string()) {
        return Ok((false, StepStatus::Ok, format!("CUDA {version} installed")));
    }
    let what = format!("CUDA {version}");
    apt::require(ctx, &what, probe)?;
    let fail = |cause| Error::Install {
        ct: ctx.ct.to_string(),
        what: what.clone(),
        cause,
    };
    let given = req.repo_url.as_ref().map(|u| u.as_str().to_owned());
    let Some(repo) = given.or_else(|| default_repo(probe)) else {
        return Err(fail(InstallCause::NoCudaRepository {
            system: probe.system(),
        }));
    };
    let repo = if repo.ends_with('/') {
        repo
    } else {
        format!("{repo}/")
    };
    if req.dry_run {
        return Ok((
            false,
            StepStatus::Planned,
            format!("would add the CUDA repository {repo} and install {pkg}"),
        ));
    }
    let keyring_url = format!("{repo}{KEYRING_DEB}");
    let cached = download::fetch(
        ctx,
        &Fetch {
            file_name: cache_name(&keyring_url),
            sources: vec![Source {
                url: keyring_url,
                label: "the CUDA repository".into(),
            }],
            checksum: Checksum::FirstDownload,
        },
    )
    .await?;
    let dest = PathBuf::from("/root").join(KEYRING_DEB);
    ctx.cts
        .push_file(ctx.ct, &cached.path, &dest, 0o644)
        .await
        .map_err(|source| {
            fail(InstallCause::Push {
                file: KEYRING_DEB.to_owned(),
                source,
            })
        })?;
    // After the pushed-file check: $1 the source line or empty, $2 the package.
    let script = format!(
        r#"{check}export DEBIAN_FRONTEND=noninteractive
dpkg -i "$f" >&2 || exit {RC_DPKG}
if [ -n "$1" ]; then printf '%s\n' "$1" > {SOURCES_FILE} || exit {RC_SOURCES}; fi
apt-get update >&2 || exit {RC_UPDATE}
c=$(apt-cache policy "$2" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
echo "candidate=$c"
apt-cache pkgnames cuda-toolkit- 2>/dev/null | sed -n 's/^cuda-toolkit-\([0-9][0-9]*\)-\([0-9][0-9]*\)$/available=\1.\2/p'
"#,
        check = pushed::CHECK
    );
    let line = if req.repo_url.is_some() {
        format!("deb [signed-by={KEYRING_FILE}] {repo} /")
    } else {
        String::new()
    };
    let mut args = pushed::args(&dest.display().to_string(), &cached).to_vec();
    args.extend([line, pkg.clone()]);
    let out = run_script(
        ctx,
        "adding the CUDA repository",
        &script,
        &args,
        APT_TIMEOUT,
    )
    .await?;
    if let Some(cause) = pushed::failure(&out, KEYRING_DEB) {
        return Err(fail(cause));
    }
    if !out.status.success() {
        let doing = match out.status {
            exec_backend::ExitStatus::Code(RC_DPKG) => format!("dpkg -i {KEYRING_DEB}"),
            exec_backend::ExitStatus::Code(RC_SOURCES) => format!("writing {SOURCES_FILE}"),
            exec_backend::ExitStatus::Code(RC_UPDATE) => "apt-get update".to_owned(),
            _ => "adding the CUDA repository".to_owned(),
        };
        return Err(fail(InstallCause::Command {
            doing,
            status: out.status,
            output: apt::output_tail(&out),
        }));
    }
    apt.mark_updated();
    let text = out.stdout_str();
    let candidate = text
        .lines()
        .find_map(|l| l.strip_prefix("candidate="))
        .unwrap_or("")
        .trim();
    if candidate.is_empty() || candidate == "(none)" {
        return Err(fail(InstallCause::CudaVersionMissing {
            package: pkg,
            repo,
            system: probe.system(),
            available: available(&text),
        }));
    }
    apt::install(
        ctx,
        apt,
        probe,
        &what,
        std::slice::from_ref(&pkg),
        guarded(req),
    )
    .await?;
    let v = version.to_string();
    let write = exec_backend::Cmd::new(["sh", "-c", &format!("cat > {PROFILE_FILE}")])
        .stdin(profile(&v))
        .timeout(std::time::Duration::from_secs(60));
    let out = ctx.cts.exec(ctx.ct, &write).await.map_err(|source| {
        fail(InstallCause::Run {
            doing: format!("writing {PROFILE_FILE}"),
            source,
        })
    })?;
    if !out.status.success() {
        return Err(fail(InstallCause::Command {
            doing: format!("writing {PROFILE_FILE}"),
            status: out.status,
            output: apt::output_tail(&out),
        }));
    }
    Ok((
        true,
        StepStatus::Changed,
        format!(
            "installed {pkg} {candidate} from {repo}; /usr/local/cuda-{v}/bin is on the PATH of login shells ({PROFILE_FILE})"
        ),
    ))
}

/// The tools step.
pub(crate) async fn tools(
    ctx: &Ctx<'_>,
    req: &Request,
    probe: &Probe,
    apt: &mut Apt,
) -> Result<(bool, StepStatus, String)> {
    if req.tools.is_empty() {
        return Ok((false, StepStatus::Skipped, "none requested".into()));
    }
    let missing: Vec<String> = req
        .tools
        .iter()
        .filter(|t| !probe.tool_present(t.as_str()))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        let all: Vec<&str> = req.tools.iter().map(|t| t.as_str()).collect();
        return Ok((
            false,
            StepStatus::Ok,
            format!("{} installed", all.join(", ")),
        ));
    }
    let what = format!("tools ({})", missing.join(", "));
    apt::require(ctx, &what, probe)?;
    if req.dry_run {
        return Ok((
            false,
            StepStatus::Planned,
            format!("would install {} with apt-get", missing.join(", ")),
        ));
    }
    apt::install(ctx, apt, probe, &what, &missing, guarded(req)).await?;
    Ok((
        true,
        StepStatus::Changed,
        format!("installed {}", missing.join(", ")),
    ))
}

/// The cache file name for a keyring URL: the URL with every unsafe character replaced, so
/// that keyrings of different repositories do not collide.
fn cache_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(text: &str) -> Probe {
        Probe::parse(&format!("probe=1\n{text}")).unwrap()
    }

    #[test]
    fn repos_per_distribution() {
        assert_eq!(
            default_repo(&probe("os_id=debian\nos_version_id=12\n")).unwrap(),
            "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/"
        );
        assert_eq!(
            default_repo(&probe("os_id=ubuntu\nos_version_id=24.04\n")).unwrap(),
            "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/"
        );
        assert_eq!(
            default_repo(&probe("os_id=alpine\nos_version_id=3.20\n")),
            None
        );
        assert_eq!(default_repo(&probe("os_id=debian\n")), None);
    }

    #[test]
    fn profile_puts_the_toolkit_on_the_path_once() {
        let p = profile("12.8");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.sh");
        std::fs::write(&f, &p).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". {0}; . {0}; echo \"$PATH\"", f.display()))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "/usr/local/cuda-12.8/bin:/usr/bin:/bin\n",
            "{p}"
        );
    }

    #[test]
    fn available_versions_are_sorted_numerically() {
        let out = "candidate=\navailable=12.8\navailable=11.8\navailable=12.10\navailable=12.8\n";
        assert_eq!(available(out), ["11.8", "12.8", "12.10"]);
        assert!(available("candidate=(none)\n").is_empty());
    }

    #[test]
    fn keyring_cache_names_differ_per_repo() {
        let a = cache_name("https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb");
        let b = cache_name("http://127.0.0.1:4000/repo/cuda-keyring_1.1-1_all.deb");
        assert_ne!(a, b);
        download::check_file_name(&a, "u").unwrap();
        download::check_file_name(&b, "u").unwrap();
    }
}
