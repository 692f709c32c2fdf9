//! [`LxcAttach`]: plain LXC containers through `lxc-attach`, `lxc-info`, `lxc-start`,
//! `lxc-wait` and `lxc-stop`, run on a [`Host`].

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, instrument};

use crate::process::BASE_PATH;
use crate::{
    Cmd, ContainerExec, CtRef, CtState, ExecError, FileKind, Host, LxcName, Output, WriteOptions,
};

/// The default LXC path.
pub const DEFAULT_LXCPATH: &str = "/var/lib/lxc";

/// How long `lxc-wait` waits for `RUNNING` after `lxc-start`, and `lxc-stop` for a clean
/// shutdown before the `-k` fallback, by default.
pub const DEFAULT_LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Plain LXC containers on a host: `lxc-attach -n NAME -P LXCPATH --clear-env -- argv`.
///
/// The container's environment is cleared and gets the same base as every [`Cmd`]
/// (`PATH`, `LC_ALL=C`) plus [`Cmd::env`], through `--set-var`. A timeout kills the process
/// group of `lxc-attach` on the host, which holds the attached process too.
///
/// `push_file` pipes the file into `sh -c` inside a running container (temporary file, `chmod`,
/// `mv`); into a stopped one it writes straight into the rootfs when `lxc.rootfs.path` is a
/// directory, refusing to follow a symlink on the way.
#[derive(Clone, Debug)]
pub struct LxcAttach<H> {
    host: H,
    lxcpath: PathBuf,
    lifecycle_timeout: Duration,
}

impl<H: Host> LxcAttach<H> {
    /// Containers under [`DEFAULT_LXCPATH`] on `host`.
    pub fn new(host: H) -> LxcAttach<H> {
        LxcAttach::with_lxcpath(host, DEFAULT_LXCPATH)
    }

    /// Containers under `lxcpath` (a host path) on `host`.
    pub fn with_lxcpath(host: H, lxcpath: impl Into<PathBuf>) -> LxcAttach<H> {
        LxcAttach {
            host,
            lxcpath: lxcpath.into(),
            lifecycle_timeout: DEFAULT_LIFECYCLE_TIMEOUT,
        }
    }

    /// Sets how long start waits for `RUNNING` and stop waits before killing.
    pub fn lifecycle_timeout(mut self, timeout: Duration) -> LxcAttach<H> {
        self.lifecycle_timeout = timeout;
        self
    }

    /// The host the `lxc-*` tools run on.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The LXC path (a host path).
    pub fn lxcpath(&self) -> &Path {
        &self.lxcpath
    }

    fn target(&self, ct: &CtRef) -> String {
        format!("CT {ct} on {}", self.host.name())
    }

    /// How the host's LXC tools name `ct`.
    fn name(&self, ct: &CtRef) -> LxcName {
        LxcName {
            name: ct.as_str().to_owned(),
            lxcpath: self.host.resolve(&self.lxcpath),
        }
    }

    /// `TOOL -n NAME -P LXCPATH` followed by `rest`.
    fn tool(&self, tool: &str, ct: &CtRef, rest: &[&str]) -> Cmd {
        self.name(ct).command(tool, rest)
    }

    /// The `lxc-attach` command for `cmd`.
    fn attach_cmd(&self, ct: &CtRef, cmd: &Cmd) -> Cmd {
        let mut outer = self.tool("lxc-attach", ct, &["--clear-env"]);
        let base = [("PATH", BASE_PATH), ("LC_ALL", "C")];
        let vars = base
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .chain(cmd.env.iter().cloned());
        for (k, v) in vars {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            outer.argv.push("--set-var".into());
            outer.argv.push(kv);
        }
        outer.argv.push("--".into());
        outer.argv.extend(cmd.argv.iter().cloned());
        outer.stdin = cmd.stdin.clone();
        outer.timeout = cmd.timeout;
        outer.output_cap = cmd.output_cap;
        outer
    }

    /// Does the container's config exist?
    async fn exists(&self, ct: &CtRef) -> Result<bool, ExecError> {
        Ok(self.host.stat(&self.config_path(ct)).await?.is_some())
    }

    fn config_path(&self, ct: &CtRef) -> PathBuf {
        self.lxcpath.join(ct.as_str()).join("config")
    }

    fn not_found(&self, ct: &CtRef) -> ExecError {
        ExecError::CtNotFound {
            target: self.host.name(),
            ct: ct.to_string(),
        }
    }

    /// Rejects names that are not one path component (they would point outside LXCPATH).
    fn check_name(&self, ct: &CtRef) -> Result<(), ExecError> {
        let mut comps = Path::new(ct.as_str()).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(_)), None) if !ct.as_str().starts_with('-') => Ok(()),
            _ => Err(self.not_found(ct)),
        }
    }

    /// Runs a tool command and turns a non-zero exit into `CtNotFound` when the container's
    /// config is missing, else into `Failed`.
    async fn run_checked(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        let out = self.host.run(cmd).await?;
        if out.status.success() {
            return Ok(out);
        }
        if !self.exists(ct).await? {
            return Err(self.not_found(ct));
        }
        out.check(&self.target(ct), cmd)
    }

    /// Reads `lxc.rootfs.path` when it names a directory (`dir:/path` or `/path`).
    async fn dir_rootfs(&self, ct: &CtRef) -> Result<Option<PathBuf>, ExecError> {
        let config = self.host.read_file(&self.config_path(ct)).await?;
        let text = String::from_utf8_lossy(&config);
        let value = text.lines().rev().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == "lxc.rootfs.path").then(|| v.trim().to_owned())
        });
        let Some(value) = value else {
            return Ok(None);
        };
        let path = value.strip_prefix("dir:").unwrap_or(&value);
        if !path.starts_with('/') {
            return Ok(None);
        }
        let path = PathBuf::from(path);
        match self.host.stat(&path).await? {
            Some(meta) if meta.kind == FileKind::Dir => Ok(Some(path)),
            _ => Ok(None),
        }
    }

    /// Writes into a stopped container's directory rootfs, refusing symlinks on the way
    /// (the rootfs belongs to the container; a link could point anywhere on the host).
    async fn push_into_rootfs(
        &self,
        ct: &CtRef,
        rootfs: &Path,
        bytes: &[u8],
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError> {
        let mut at = rootfs.to_owned();
        let comps: Vec<_> = dest
            .components()
            .filter_map(|c| match c {
                Component::Normal(c) => Some(c),
                _ => None,
            })
            .collect();
        if comps.is_empty() || dest.components().any(|c| c == Component::ParentDir) {
            return Err(ExecError::InvalidCmd {
                target: self.target(ct),
                argv: vec!["push".into(), dest.display().to_string()],
                detail: "the destination must be an absolute path without '..'".into(),
            });
        }
        for (i, comp) in comps.iter().enumerate() {
            at.push(comp);
            let last = i + 1 == comps.len();
            match self.host.stat(&at).await? {
                Some(meta) if meta.kind == FileKind::Symlink => {
                    return Err(ExecError::Unsupported {
                        target: self.target(ct),
                        backend: "lxc-attach",
                        what: "pushing through a symlink into a stopped container's rootfs",
                        hint: "start the container and push again",
                    })
                }
                Some(meta) if !last && meta.kind != FileKind::Dir => {
                    return Err(ExecError::NotFound {
                        target: self.target(ct),
                        path: dest.to_owned(),
                    })
                }
                None if !last => {
                    return Err(ExecError::NotFound {
                        target: self.target(ct),
                        path: dest.to_owned(),
                    })
                }
                _ => {}
            }
        }
        let opts = WriteOptions {
            mode: Some(mode),
            ..WriteOptions::default()
        };
        self.host.write_file_atomic(&at, bytes, &opts).await
    }
}

/// Parses `lxc-info -sH` output.
pub(crate) fn parse_lxc_state(stdout: &str) -> Option<CtState> {
    let word = stdout.split_whitespace().next_back()?;
    Some(match word {
        "RUNNING" => CtState::Running,
        "STOPPED" => CtState::Stopped,
        other => CtState::Other(other.to_owned()),
    })
}

#[async_trait]
impl<H: Host> ContainerExec for LxcAttach<H> {
    #[instrument(level = "debug", skip(self, cmd), fields(ct = %ct, argv = ?cmd.display_argv()))]
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        self.check_name(ct)?;
        cmd.validate(&self.target(ct))?;
        let outer = self.attach_cmd(ct, cmd);
        let out = crate::run_wrapped(&self.host, &outer, self.target(ct), cmd).await?;
        // lxc-attach itself failing (no such container, not running) looks like this; the
        // command's own exit codes pass through untouched.
        let attach_failed = out.status == crate::ExitStatus::Code(1)
            && String::from_utf8_lossy(&out.stderr)
                .contains(&format!("lxc-attach: {}: ", ct.as_str()));
        if attach_failed {
            if !self.exists(ct).await? {
                return Err(self.not_found(ct));
            }
            return Err(ExecError::Failed {
                target: self.target(ct),
                argv: outer.display_argv(),
                status: out.status,
                stderr_tail: out.stderr_tail(2048),
            });
        }
        Ok(out)
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError> {
        let bytes = self.host.read_file(src).await?;
        if self.state(ct).await? != CtState::Running {
            if let Some(rootfs) = self.dir_rootfs(ct).await? {
                debug!(rootfs = %rootfs.display(), "container stopped, writing into its rootfs");
                return self.push_into_rootfs(ct, &rootfs, &bytes, dest, mode).await;
            }
            return Err(ExecError::Unsupported {
                target: self.target(ct),
                backend: "lxc-attach",
                what: "pushing a file into a stopped container whose rootfs is not a directory",
                hint: "start the container and push again",
            });
        }
        let script = "set -e; t=\"$1.phoenix-push.$$\"; trap 'rm -f \"$t\"' EXIT; \
                      cat > \"$t\"; chmod \"$2\" \"$t\"; mv -f \"$t\" \"$1\"; trap - EXIT";
        let mut inner = Cmd::new(["sh", "-c", script, "sh"]);
        inner.argv.push(dest.as_os_str().to_owned());
        inner.argv.push(format!("{:o}", mode & 0o7777).into());
        inner.stdin = Some(bytes);
        inner.timeout = Some(Duration::from_secs(600));
        let out = self.exec(ct, &inner).await?;
        out.check(&self.target(ct), &inner).map(|_| ())
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError> {
        self.check_name(ct)?;
        let cmd = self
            .tool("lxc-info", ct, &["-sH"])
            .timeout(Duration::from_secs(30));
        let out = self.run_checked(ct, &cmd).await?;
        parse_lxc_state(&out.stdout_str()).ok_or_else(|| ExecError::Protocol {
            target: self.target(ct),
            what: "lxc-info -sH".into(),
            detail: format!("no state in {:?}", out.stdout_str()),
        })
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn start(&self, ct: &CtRef) -> Result<(), ExecError> {
        if self.state(ct).await? == CtState::Running {
            return Ok(());
        }
        let t = self.lifecycle_timeout;
        let start = self.tool("lxc-start", ct, &["-d"]).timeout(t);
        self.run_checked(ct, &start).await?;
        let secs = t.as_secs().max(1).to_string();
        let wait = self
            .tool("lxc-wait", ct, &["-s", "RUNNING", "-t", &secs])
            .timeout(t + Duration::from_secs(5));
        self.run_checked(ct, &wait).await?;
        Ok(())
    }

    #[instrument(level = "debug", skip(self), fields(ct = %ct))]
    async fn stop(&self, ct: &CtRef) -> Result<(), ExecError> {
        if self.state(ct).await? == CtState::Stopped {
            return Ok(());
        }
        let t = self.lifecycle_timeout;
        let secs = t.as_secs().max(1).to_string();
        let clean = self
            .tool("lxc-stop", ct, &["-t", &secs])
            .timeout(t + Duration::from_secs(10));
        match self.run_checked(ct, &clean).await {
            Ok(_) => return Ok(()),
            Err(e @ ExecError::CtNotFound { .. }) => return Err(e),
            Err(e) => debug!(error = %e, "clean stop failed, killing"),
        }
        let kill = self
            .tool("lxc-stop", ct, &["-k"])
            .timeout(Duration::from_secs(30));
        self.run_checked(ct, &kill).await?;
        Ok(())
    }

    fn lxc_name(&self, ct: &CtRef) -> Option<LxcName> {
        self.check_name(ct).ok().map(|()| self.name(ct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(parse_lxc_state("RUNNING\n"), Some(CtState::Running));
        assert_eq!(parse_lxc_state("STOPPED\n"), Some(CtState::Stopped));
        assert_eq!(
            parse_lxc_state("FROZEN\n"),
            Some(CtState::Other("FROZEN".into()))
        );
        assert_eq!(parse_lxc_state(""), None);
    }

    #[tokio::test]
    async fn attach_argv_shape() {
        let lxc = LxcAttach::with_lxcpath(crate::LocalHost::new(), "/x");
        let cmd = Cmd::new(["echo", "a b"]).env("K", "v");
        let outer = lxc.attach_cmd(&CtRef::new("c1"), &cmd);
        assert_eq!(
            outer.display_argv(),
            [
                "lxc-attach",
                "-n",
                "c1",
                "-P",
                "/x",
                "--clear-env",
                "--set-var",
                &format!("PATH={BASE_PATH}"),
                "--set-var",
                "LC_ALL=C",
                "--set-var",
                "K=v",
                "--",
                "echo",
                "a b"
            ]
        );
        assert!(lxc.check_name(&CtRef::new("../etc")).is_err());
        assert!(lxc.check_name(&CtRef::new("-x")).is_err());
    }

    #[test]
    fn lxc_name_resolves_the_lxcpath() {
        let tree = tempfile::tempdir().unwrap();
        let lxc = LxcAttach::with_lxcpath(crate::LocalHost::with_root(tree.path()), "/srv/lxc");
        let name = lxc.lxc_name(&CtRef::new("c1")).unwrap();
        assert_eq!(name.lxcpath, tree.path().join("srv/lxc"));
        assert_eq!(
            name.command("lxc-cgroup", ["devices.allow", "c 195:1 rwm"])
                .display_argv(),
            [
                "lxc-cgroup",
                "-n",
                "c1",
                "-P",
                &tree.path().join("srv/lxc").display().to_string(),
                "devices.allow",
                "c 195:1 rwm"
            ]
        );
        assert_eq!(lxc.lxc_name(&CtRef::new("../etc")), None);
    }
}
