//! The CUDA toolkit and extra tools, with apt, on Debian and Ubuntu containers.
//!
//! The CUDA repository is NVIDIA's for the container's distribution
//! (`https://developer.download.nvidia.com/compute/cuda/repos/<id><version without dot>/x86_64/`,
//! e.g. `debian12`, `ubuntu2404`) unless the request names one. Its keyring package
//! (`cuda-keyring_1.1-1_all.deb`) is downloaded on the host (a minimal container has no curl),
//! cached, pushed in and installed with `dpkg -i`; then the tool writes its own source line
//! `deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] <repo> /` to
//! `/etc/apt/sources.list.d/phoenix-gpu-cuda.list` (only for a repository other than NVIDIA's
//! default, whose line the keyring package already ships), runs `apt-get update` and
//! `apt-get install -y cuda-toolkit-X-Y`. Tools are apt packages installed the same way.
//! At most one `apt-get update` runs per apply.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, InstallCause, Result};
use crate::report::StepStatus;
use crate::request::Request;
use crate::step::Ctx;

use super::download::{self, Checksum, Fetch, Source};
use super::probe::{run_script, Probe};

/// The keyring package in NVIDIA's CUDA repositories.
pub const KEYRING_DEB: &str = "cuda-keyring_1.1-1_all.deb";
/// The keyring file the package installs (the source line's `signed-by`).
pub const KEYRING_FILE: &str = "/usr/share/keyrings/cuda-archive-keyring.gpg";
/// The source list the tool writes for a repository given with `--repo-url`.
pub const SOURCES_FILE: &str = "/etc/apt/sources.list.d/phoenix-gpu-cuda.list";
const APT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// What apt work happened in this run.
#[derive(Debug, Default)]
pub(crate) struct Apt {
    updated: bool,
}

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

/// Debian or Ubuntu with apt, else [`Error::Install`] naming what the container is.
fn require_apt(ctx: &Ctx<'_>, what: &str, probe: &Probe) -> Result<()> {
    let id = probe.os_id.as_deref().unwrap_or("");
    if matches!(id, "debian" | "ubuntu") && probe.apt_get && probe.dpkg {
        return Ok(());
    }
    Err(Error::Install {
        ct: ctx.ct.to_string(),
        what: what.to_owned(),
        cause: InstallCause::NotApt {
            system: probe.system(),
            apt_get: probe.apt_get,
        },
    })
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
    require_apt(ctx, &what, probe)?;
    let given = req.repo_url.as_ref().map(|u| u.as_str().to_owned());
    let repo = match given.or_else(|| default_repo(probe)) {
        Some(r) => r,
        None => {
            return Err(Error::Install {
                ct: ctx.ct.to_string(),
                what,
                cause: InstallCause::NoCudaRepository {
                    system: probe.system(),
                },
            })
        }
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
        .map_err(|source| Error::Install {
            ct: ctx.ct.to_string(),
            what: what.clone(),
            cause: InstallCause::Push {
                file: KEYRING_DEB.to_owned(),
                source,
            },
        })?;
    // $1 keyring deb, $2 source line or empty, $3 package.
    let script = format!(
        r#"export DEBIAN_FRONTEND=noninteractive
set -e
trap 'rm -f "$1"' EXIT
dpkg -i "$1"
if [ -n "$2" ]; then printf '%s\n' "$2" > {SOURCES_FILE}; fi
apt-get update
apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$3"
"#
    );
    let line = if req.repo_url.is_some() {
        format!("deb [signed-by={KEYRING_FILE}] {repo} /")
    } else {
        String::new()
    };
    let args = [dest.display().to_string(), line, pkg.clone()];
    let out = run_script(ctx, "installing CUDA", &script, &args, APT_TIMEOUT).await?;
    apt.updated = true;
    if !out.status.success() {
        return Err(Error::Install {
            ct: ctx.ct.to_string(),
            what,
            cause: InstallCause::Command {
                doing: format!("keyring, apt-get update or apt-get install {pkg}"),
                status: out.status,
                output: output_tail(&out),
            },
        });
    }
    Ok((
        true,
        StepStatus::Changed,
        format!("installed {pkg} from {repo}"),
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
    require_apt(ctx, &what, probe)?;
    if req.dry_run {
        return Ok((
            false,
            StepStatus::Planned,
            format!("would install {} with apt-get", missing.join(", ")),
        ));
    }
    let script = r#"export DEBIAN_FRONTEND=noninteractive
set -e
if [ "$1" = update ]; then apt-get update; fi
shift
apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
"#;
    let mut args = vec![if apt.updated { "no-update" } else { "update" }.to_owned()];
    args.extend(missing.iter().cloned());
    let out = run_script(ctx, "installing tools", script, &args, APT_TIMEOUT).await?;
    apt.updated = true;
    if !out.status.success() {
        return Err(Error::Install {
            ct: ctx.ct.to_string(),
            what,
            cause: InstallCause::Command {
                doing: "apt-get".to_owned(),
                status: out.status,
                output: output_tail(&out),
            },
        });
    }
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

fn output_tail(out: &exec_backend::Output) -> String {
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
    fn keyring_cache_names_differ_per_repo() {
        let a = cache_name("https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb");
        let b = cache_name("http://127.0.0.1:4000/repo/cuda-keyring_1.1-1_all.deb");
        assert_ne!(a, b);
        download::check_file_name(&a, "u").unwrap();
        download::check_file_name(&b, "u").unwrap();
    }
}
