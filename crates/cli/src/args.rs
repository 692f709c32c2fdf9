//! Flags into gpu-core's validated values. The rules are gpu-core's (`FromStr` of its types);
//! a value that breaks one is a [`CliError::Value`] naming the flag it came from. Only the
//! flags' own syntax (`NAME=VALUE`, `--jobs` at least 1) is checked here.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use gpu_core::fleet::{Expectation, Selection, SyncOptions};
use gpu_core::orchestrator::OrchestratorConfig;
use gpu_core::{Error, Mode, PackageName, RequestTemplate, RestartPolicy, Strategy, Target};

use crate::cli::{ApplyOpts, CheckArgs, ModeArg, StrategyArg, SyncArgs};
use crate::error::CliError;

/// The value of `flag` as a gpu-core value.
fn value<T: FromStr<Err = Error>>(flag: &'static str, s: &str) -> Result<T, CliError> {
    s.parse().map_err(|error| CliError::Value { flag, error })
}

fn opt<T: FromStr<Err = Error>>(
    flag: &'static str,
    s: Option<&str>,
) -> Result<Option<T>, CliError> {
    s.map(|s| value(flag, s)).transpose()
}

/// `--jobs` (clap keeps it within 1..=`MAX_JOBS`).
pub fn jobs(n: u32) -> Result<NonZeroUsize, CliError> {
    NonZeroUsize::new(n as usize).ok_or_else(|| {
        CliError::flag(
            "--jobs",
            "0",
            "give how many containers to work on at once, at least 1",
        )
    })
}

/// A restart policy (`--no-restart`, `--start`, `--restart-timeout`); `--restart-timeout` is
/// at least 1 second.
fn restart(no_restart: bool, start: bool, timeout: u64) -> Result<RestartPolicy, CliError> {
    if timeout == 0 {
        return Err(CliError::flag(
            "--restart-timeout",
            "0",
            "give the number of seconds to wait, at least 1",
        ));
    }
    Ok(RestartPolicy {
        no_restart,
        start_if_stopped: start,
        timeout: Duration::from_secs(timeout),
        ..RestartPolicy::default()
    })
}

fn strategy(s: StrategyArg) -> Strategy {
    match s {
        StrategyArg::Runfile => Strategy::Runfile,
        StrategyArg::HostLibs => Strategy::HostLibs,
        StrategyArg::None => Strategy::None,
    }
}

/// What plan, apply and verify ask of each container.
pub fn template(a: &ApplyOpts) -> Result<RequestTemplate, CliError> {
    Ok(RequestTemplate {
        gpus: opt("--gpus", a.gpus.as_deref())?,
        mode: match a.mode {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Raw => Mode::Raw,
            ModeArg::Dev => Mode::Dev,
        },
        strategy: a.strategy.map(strategy),
        driver_version: opt("--driver-version", a.driver_version.as_deref())?,
        force_version: a.force_version,
        mig: a.mig,
        cuda: match a.cuda.as_deref() {
            None | Some("none") => None,
            Some(v) => Some(value("--cuda", v)?),
        },
        tools: match a.tools.as_deref() {
            None => Vec::new(),
            Some(t) => PackageName::parse_list(t).map_err(|error| CliError::Value {
                flag: "--tools",
                error,
            })?,
        },
        runfile_url: opt("--runfile-url", a.runfile_url.as_deref())?,
        runfile_sha256: opt("--runfile-sha256", a.runfile_sha256.as_deref())?,
        repo_url: opt("--repo-url", a.repo_url.as_deref())?,
        config_only: a.config_only,
        dry_run: a.dry_run,
        restart: RestartPolicy {
            always: a.restart,
            take_held: a.force,
            ..restart(a.no_restart, a.start, a.restart_timeout)?
        },
        remove_doubtful: a.remove_doubtful,
    })
}

/// What check compares each container against.
pub fn expectation(c: &CheckArgs) -> Result<Expectation, CliError> {
    Ok(Expectation {
        gpus: opt("--gpus", c.gpus.as_deref())?,
        driver_version: opt("--driver-version", c.driver_version.as_deref())?,
    })
}

/// What sync does besides re-applying each container's assignment.
pub fn sync_options(s: &SyncArgs) -> Result<SyncOptions, CliError> {
    Ok(SyncOptions {
        strategy: s.strategy.map(strategy),
        runfile_url: opt("--runfile-url", s.runfile_url.as_deref())?,
        runfile_sha256: opt("--runfile-sha256", s.runfile_sha256.as_deref())?,
        dry_run: s.dry_run,
        restart: restart(s.no_restart, s.start, s.restart_timeout)?,
    })
}

/// The containers named on the command line (ids of `target`), or `all`.
pub fn selection(
    target: &Target,
    ids: &[String],
    all: bool,
    all_means: Selection,
) -> Result<Selection, CliError> {
    if all {
        return Ok(all_means);
    }
    let cts = ids
        .iter()
        .map(|s| target.ct_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Selection::Named(cts))
}

/// The most bytes `--phoenix-config` may hold: the orchestrator's files are a few KiB.
const MAX_ORCHESTRATOR_CONFIG: u64 = 16 * 1024 * 1024;

/// Reads a small regular file of this machine: a FIFO, a device or a directory is refused on
/// the opened descriptor (opened without blocking), and so is a file larger than `limit`.
fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other(
            "it is not a regular file (a FIFO, a device or a directory)",
        ));
    }
    if md.len() > limit {
        return Err(std::io::Error::other(format!(
            "it is larger than {limit} bytes"
        )));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "it is larger than {limit} bytes"
        )));
    }
    Ok(bytes)
}

/// The orchestrator config given with `--phoenix-config`, read from this machine.
pub fn orchestrator(path: Option<&Path>) -> Result<Option<OrchestratorConfig>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes =
        read_regular(path, MAX_ORCHESTRATOR_CONFIG).map_err(|source| CliError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
    OrchestratorConfig::parse(&bytes)
        .map(Some)
        .map_err(|source| CliError::BadConfig {
            path: path.to_owned(),
            source,
        })
}

/// `NAME=VALUE` pairs of a repeatable flag (`--node`, `--node-root`), by node name.
pub fn pairs(flag: &'static str, items: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for it in items {
        let Some((name, value)) = it.split_once('=') else {
            return Err(CliError::flag(flag, it, "expected NAME=VALUE"));
        };
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !ok || value.is_empty() {
            return Err(CliError::flag(
                flag,
                it,
                "expected NAME=VALUE with a node name of letters, digits, '-', '_' and '.'",
            ));
        }
        if out.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(CliError::flag(flag, it, "this node is given twice"));
        }
    }
    Ok(out)
}

/// `--node-root` pairs as paths.
pub fn node_roots(items: &[String]) -> Result<BTreeMap<String, PathBuf>, CliError> {
    Ok(pairs("--node-root", items)?
        .into_iter()
        .map(|(k, v)| (k, PathBuf::from(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn apply_opts(args: &[&str]) -> ApplyOpts {
        let mut argv = vec!["phoenix-gpu", "plan", "101"];
        argv.extend(args);
        match Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Plan(a) => a.opts,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_typed_values() {
        let t = template(&apply_opts(&[
            "--gpus",
            "0, 1",
            "--cuda",
            "12.8",
            "--tools",
            "nvtop,htop",
            "--runfile-sha256",
            &"AB".repeat(32),
        ]))
        .unwrap();
        assert_eq!(t.gpus.unwrap().to_string(), "0,1");
        assert_eq!(t.cuda.unwrap().package(), "cuda-toolkit-12-8");
        assert_eq!(t.tools.len(), 2);
        assert_eq!(t.runfile_sha256.unwrap().as_str(), "ab".repeat(32));
        assert_eq!(
            template(&apply_opts(&["--cuda", "none"])).unwrap().cuda,
            None
        );
    }

    #[test]
    fn a_bad_value_names_its_flag() {
        for (args, flag) in [
            (&["--runfile-sha256", "xyz"][..], "--runfile-sha256"),
            (&["--runfile-url", "ftp://x/y.run"][..], "--runfile-url"),
            (&["--cuda", "12"][..], "--cuda"),
            (&["--tools", "nvtop,,htop"][..], "--tools"),
        ] {
            let e = template(&apply_opts(args)).unwrap_err();
            assert!(e.to_string().contains(flag), "{args:?}: {e}");
            assert_eq!(e.kind(), gpu_core::ErrorKind::BadInput);
        }
    }

    /// Numbers out of range stop at the parser, which names the accepted range (exit 2);
    /// none reaches a semaphore, a clock or a remote `timeout`.
    #[test]
    fn numbers_are_bounded_by_the_parser() {
        for (argv, range) in [
            (
                &["check", "--all", "--jobs", "2305843009213693952"][..],
                "1..=1024",
            ),
            (&["check", "--all", "--jobs", "0"][..], "1..=1024"),
            (&["apply", "101", "--jobs", "1025"][..], "1..=1024"),
            (&["sync", "--all", "--jobs=-1"][..], ""),
            (&["apply", "101", "--restart-timeout", "0"][..], "1..=86400"),
            (
                &["sync", "--all", "--restart-timeout", "18446744073709551615"][..],
                "1..=86400",
            ),
            (
                &["apply", "101", "--restart-timeout", "18446744073709551616"][..],
                "",
            ),
            (&["check", "101", "--ssh-max-sessions", "0"][..], "1..=1024"),
            (
                &["check", "101", "--ssh-max-sessions", "4294967296"][..],
                "",
            ),
        ] {
            let mut full = vec!["phoenix-gpu"];
            full.extend(argv);
            let e = Cli::try_parse_from(&full).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{argv:?}: {e}"
            );
            assert!(e.to_string().contains(range), "{argv:?}: {e}");
        }
        for ok in [
            &["check", "--all", "--jobs", "1024"][..],
            &["apply", "101", "--restart-timeout", "86400"],
            &["check", "101", "--ssh-max-sessions", "1024"],
        ] {
            let mut full = vec!["phoenix-gpu"];
            full.extend(ok);
            assert!(Cli::try_parse_from(&full).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn node_pairs() {
        let p = pairs("--node", &["pve2=ssh://root@10.0.0.2".into()]).unwrap();
        assert_eq!(p["pve2"], "ssh://root@10.0.0.2");
        for bad in ["pve2", "=x", "a b=x", "pve2="] {
            assert!(pairs("--node", &[bad.into()]).is_err(), "{bad}");
        }
        assert!(pairs("--node", &["a=x".into(), "a=y".into()]).is_err());
        assert!(jobs(0).is_err());
    }
}
