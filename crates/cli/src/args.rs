//! Turns validated flags into gpu-core values. Every bad value is an `Error::BadInput`.

use std::time::Duration;

use exec_backend::CtRef;
use gpu_core::{
    DriverVersion, Error, GpuSelection, Input, Mode, Request, RestartPolicy, RunfileSource,
    Strategy, Target, VersionWanted,
};

use crate::cli::{ApplyOpts, ModeArg, StrategyArg};
use crate::error::CliError;
use crate::phoenix_config::PhoenixConfig;

fn bad(what: Input, value: &str, hint: impl Into<String>) -> Error {
    Error::BadInput {
        what,
        value: value.to_owned(),
        hint: hint.into(),
    }
}

/// A container reference valid for the target: a CTID of 100..=999999999 on Proxmox VE, a
/// container name on plain LXC.
pub fn ct(target: &Target, s: &str) -> Result<CtRef, Error> {
    match target {
        Target::Pve => {
            let ok = !s.is_empty()
                && s.len() <= 9
                && s.bytes().all(|b| b.is_ascii_digit())
                && !s.starts_with('0')
                && s.parse::<u32>().is_ok_and(|n| n >= 100);
            if !ok {
                return Err(bad(
                    Input::CtId,
                    s,
                    "a Proxmox VE container id is a number from 100 to 999999999",
                ));
            }
        }
        Target::Lxc { .. } => {
            let ok = !s.is_empty()
                && s.len() <= 64
                && !s.starts_with('.')
                && !s.starts_with('-')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(bad(
                    Input::ContainerName,
                    s,
                    "an LXC container name has letters, digits, '-', '_' and '.', and does not start with '.' or '-'",
                ));
            }
        }
    }
    Ok(CtRef::new(s))
}

/// `--gpus`, `GPU_ASSIGNMENT` or the orchestrator's `gpu_assignment`.
pub fn gpus(
    flag: Option<&str>,
    pc: Option<&PhoenixConfig>,
    ct: &CtRef,
) -> Result<GpuSelection, Error> {
    let from_pc = pc
        .and_then(|p| p.ct(ct.as_str()))
        .and_then(|c| c.gpu_assignment.as_deref());
    match flag.or(from_pc) {
        Some(s) => s.parse(),
        None => Err(bad(
            Input::GpuSelection,
            "",
            "none given: use --gpus (or GPU_ASSIGNMENT, or --phoenix-config with the container's gpu_assignment)",
        )),
    }
}

/// `auto` or `X.Y[.Z]`.
pub fn driver_version(s: &str) -> Result<VersionWanted, Error> {
    if s == "auto" {
        return Ok(VersionWanted::Auto);
    }
    s.parse::<DriverVersion>().map(VersionWanted::Exact)
}

pub fn url(what: &'static str, s: &str) -> Result<String, CliError> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !s.chars().any(char::is_whitespace) => {
            Ok(s.to_owned())
        }
        _ => Err(CliError::flag(
            what,
            s,
            "expected an http:// or https:// URL",
        )),
    }
}

/// 64 hex digits, lowercased.
pub fn sha256(s: &str) -> Result<String, CliError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(CliError::flag(
            "--runfile-sha256",
            s,
            "expected the SHA-256 as 64 hex digits",
        ))
    }
}

/// `X.Y` or `none`.
pub fn cuda(s: &str) -> Result<Option<String>, Error> {
    if s == "none" {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(Some(s.to_owned()))
    } else {
        Err(bad(
            Input::CudaVersion,
            s,
            "expected X.Y such as 12.8, or none",
        ))
    }
}

/// Comma-separated Debian package names.
pub fn tools(s: &str) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::new();
    for t in s.split(',').map(str::trim) {
        let ok = t.len() >= 2
            && t.as_bytes()[0].is_ascii_lowercase() | t.as_bytes()[0].is_ascii_digit()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if !ok {
            return Err(bad(
                Input::ToolList,
                s,
                format!("{t:?} is not a package name (lowercase letters, digits, + - .)"),
            ));
        }
        if out.iter().any(|o| o == t) {
            return Err(bad(Input::ToolList, s, format!("{t} is listed twice")));
        }
        out.push(t.to_owned());
    }
    Ok(out)
}

/// The request of plan, apply and verify.
pub fn request(a: &ApplyOpts, ct: CtRef, pc: Option<&PhoenixConfig>) -> Result<Request, CliError> {
    let gpus = gpus(a.gpus.as_deref(), pc, &ct)?;
    let mut r = Request::new(ct, gpus);
    r.mode = match a.mode {
        ModeArg::Auto => Mode::Auto,
        ModeArg::Raw => Mode::Raw,
        ModeArg::Dev => Mode::Dev,
    };
    r.strategy = match a.strategy {
        StrategyArg::Runfile => Strategy::Runfile,
        StrategyArg::HostLibs => Strategy::HostLibs,
        StrategyArg::None => Strategy::None,
    };
    let version = a
        .driver_version
        .clone()
        .or_else(|| pc.and_then(|p| p.nvidia_driver_version.clone()));
    if let Some(v) = version {
        r.driver_version = driver_version(&v)?;
    }
    r.force_version = a.force_version;
    r.mig = a.mig;
    if let Some(c) = &a.cuda {
        r.cuda = cuda(c)?;
    }
    if let Some(t) = &a.tools {
        r.tools = tools(t)?;
    }
    let runfile_url = a
        .runfile_url
        .clone()
        .or_else(|| pc.and_then(|p| p.nvidia_runfile_url.clone()));
    r.runfile = RunfileSource {
        url: runfile_url.map(|u| url("--runfile-url", &u)).transpose()?,
        sha256: a.runfile_sha256.as_deref().map(sha256).transpose()?,
    };
    let repo = a
        .repo_url
        .clone()
        .or_else(|| pc.and_then(|p| p.nvidia_repo_url.clone()));
    r.repo_url = repo.map(|u| url("--repo-url", &u)).transpose()?;
    if a.restart_timeout == 0 {
        return Err(CliError::flag(
            "--restart-timeout",
            "0",
            "give the number of seconds to wait, at least 1",
        ));
    }
    r.config_only = a.config_only;
    r.dry_run = a.dry_run;
    r.restart = RestartPolicy {
        no_restart: a.no_restart,
        start_if_stopped: a.start,
        timeout: Duration::from_secs(a.restart_timeout),
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctids() {
        let pve = Target::Pve;
        assert!(ct(&pve, "100").is_ok());
        assert!(ct(&pve, "999999999").is_ok());
        for bad in [
            "99",
            "0",
            "abc",
            "",
            "0101",
            "1e3",
            "-101",
            "1000000000",
            "101 ",
        ] {
            assert!(ct(&pve, bad).is_err(), "{bad}");
        }
        let lxc = Target::Lxc {
            lxcpath: "/var/lib/lxc".into(),
        };
        assert!(ct(&lxc, "gpu-1.test_a").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b"] {
            assert!(ct(&lxc, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(driver_version("auto").unwrap(), VersionWanted::Auto);
        assert!(driver_version("580.159.04").is_ok());
        assert!(driver_version("580").is_err());
        assert!(sha256(&"a".repeat(64)).is_ok());
        assert!(sha256(&"g".repeat(64)).is_err());
        assert!(sha256("abc").is_err());
        assert_eq!(cuda("12.8").unwrap().as_deref(), Some("12.8"));
        assert_eq!(cuda("none").unwrap(), None);
        assert!(cuda("12").is_err());
        assert!(cuda("12.8.1").is_err());
        assert_eq!(tools("nvtop, htop").unwrap(), ["nvtop", "htop"]);
        assert!(tools("nvtop,nvtop").is_err());
        assert!(tools("").is_err());
        assert!(tools("rm -rf").is_err());
        assert!(url("u", "https://x/y").is_ok());
        assert!(url("u", "ftp://x").is_err());
        assert!(url("u", "https://").is_err());
    }
}
