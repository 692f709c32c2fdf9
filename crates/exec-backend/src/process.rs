//! The one helper that owns child processes.
//!
//! Every backend runs its programs through [`run`]: argv only, the explicit environment
//! documented on [`Cmd`], stdout and stderr read at the same time and each capped, a timeout
//! that kills the whole process group, and `kill_on_drop` so that a cancelled call leaves
//! nothing behind.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tracing::{debug, instrument};

use crate::{Cmd, ExecError, ExitStatus, Output};

/// The `PATH` every child starts with.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long to keep reading stdout and stderr after the child exited, when a grandchild still
/// holds the pipes open (a daemon that forgot to close them).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Kills the process group when dropped, unless disarmed (the child was reaped normally).
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` on this machine. `target` names the place for errors and logs (`localhost`, an
/// SSH node seen through its local `ssh` client).
///
/// Any exit status is `Ok`. Errors: [`ExecError::InvalidCmd`] (empty argv, NUL bytes, bad
/// env names), [`ExecError::Spawn`], [`ExecError::Timeout`] (the whole process group got
/// `SIGKILL`).
#[instrument(level = "debug", skip(cmd), fields(argv = ?cmd.display_argv()))]
pub async fn run(target: &str, cmd: &Cmd) -> Result<Output, ExecError> {
    cmd.validate(target)?;
    let (program, args) = match cmd.argv.split_first() {
        Some(split) => split,
        None => return Err(cmd.invalid(target, "empty argv")),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("LC_ALL", "C")
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        target: target.to_owned(),
        argv: cmd.display_argv(),
        source,
    })?;
    let mut guard = GroupGuard {
        pgid: child.id().and_then(|id| i32::try_from(id).ok()),
    };
    debug!(target_host = target, pid = ?child.id(), "spawned");

    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let io_error = |source: std::io::Error| ExecError::Io {
        target: target.to_owned(),
        op: "collect output of",
        path: cmd.program().into(),
        source,
    };

    let collected = collect(
        &mut child,
        stdin,
        cmd.stdin.as_deref(),
        stdout,
        stderr,
        cmd.output_cap,
        &mut out,
        &mut err,
    );
    let status = match cmd.timeout {
        None => collected.await.map_err(io_error)?,
        Some(limit) => match tokio::time::timeout(limit, collected).await {
            Ok(status) => status.map_err(io_error)?,
            Err(_) => {
                guard.kill();
                let _ = child.wait().await;
                debug!(
                    target_host = target,
                    ?limit,
                    "timed out, process group killed"
                );
                return Err(ExecError::Timeout {
                    target: target.to_owned(),
                    argv: cmd.display_argv(),
                    after: limit,
                });
            }
        },
    };
    guard.disarm();
    let status = map_status(status);
    debug!(target_host = target, %status, stdout_len = out.len(), stderr_len = err.len(), "finished");
    Ok(Output {
        status,
        stdout: out,
        stderr: err,
    })
}

/// Turns the std exit status into ours.
fn map_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}

/// Feeds stdin, drains stdout and stderr, and waits for the child; once it exited, keeps
/// draining for at most [`DRAIN_GRACE`].
#[allow(clippy::too_many_arguments)]
async fn collect(
    child: &mut Child,
    stdin: Option<ChildStdin>,
    input: Option<&[u8]>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    cap: usize,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) -> std::io::Result<std::process::ExitStatus> {
    let io = async {
        let (fed, o, e) = tokio::join!(
            feed(stdin, input),
            drain(stdout, cap, out),
            drain(stderr, cap, err)
        );
        fed.and(o).and(e)
    };
    tokio::pin!(io);
    enum First {
        Exited(std::io::Result<std::process::ExitStatus>),
        IoDone(std::io::Result<()>),
    }
    let first = tokio::select! {
        status = child.wait() => First::Exited(status),
        done = &mut io => First::IoDone(done),
    };
    match first {
        First::Exited(status) => {
            let status = status?;
            if let Ok(done) = tokio::time::timeout(DRAIN_GRACE, &mut io).await {
                done?;
            }
            Ok(status)
        }
        First::IoDone(done) => {
            done?;
            child.wait().await
        }
    }
}

/// Writes `input` to the child's stdin and closes it. A child that exits without reading all
/// of it is not an error.
async fn feed(stdin: Option<ChildStdin>, input: Option<&[u8]>) -> std::io::Result<()> {
    let (Some(mut stdin), Some(input)) = (stdin, input) else {
        return Ok(());
    };
    match stdin.write_all(input).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e),
    }
    match stdin.shutdown().await {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// Reads `reader` to its end, keeping the first `cap` bytes in `buf` and discarding the rest,
/// so that the child never blocks on a full pipe.
async fn drain<R: AsyncRead + Unpin>(
    reader: Option<R>,
    cap: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let Some(mut reader) = reader else {
        return Ok(());
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn env_is_explicit() {
        std::env::set_var("PHOENIX_LEAK_CHECK", "leaked");
        let out = run("localhost", &Cmd::new(["env"]).env("A", "b"))
            .await
            .unwrap();
        let text = out.stdout_str();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, vec!["A=b", "LC_ALL=C", &format!("PATH={BASE_PATH}")]);
    }

    #[tokio::test]
    async fn output_is_capped_and_child_never_blocks() {
        let mut cmd = Cmd::new([
            "sh",
            "-c",
            "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo done >&2",
        ]);
        cmd.output_cap = 1000;
        cmd.timeout = Some(Duration::from_secs(20));
        let out = run("localhost", &cmd).await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 1000);
        assert_eq!(out.stderr.len(), 1000);
    }

    #[tokio::test]
    async fn stdin_and_exit_code() {
        let cmd = Cmd::new(["sh", "-c", "cat; echo oops >&2; exit 3"]).stdin(b"hello".to_vec());
        let out = run("localhost", &cmd).await.unwrap();
        assert_eq!(out.status, ExitStatus::Code(3));
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr_tail(100), "oops");
        let err = out.check("localhost", &cmd).unwrap_err();
        assert!(matches!(err, ExecError::Failed { .. }), "{err}");
    }

    #[tokio::test]
    async fn unread_stdin_is_fine() {
        let cmd = Cmd::new(["true"]).stdin(vec![7u8; 4 * 1024 * 1024]);
        let out = run("localhost", &cmd).await.unwrap();
        assert!(out.status.success());
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let cmd = Cmd::new(["sh", "-c", &script]).timeout(Duration::from_millis(500));
        let err = run("localhost", &cmd).await.unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the group: give the kernel a moment to reap it.
        let mut alive = true;
        for _ in 0..50 {
            alive = is_alive(pid);
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "grandchild {pid} survived the timeout");
    }

    /// True while `pid` exists and is not a zombie (an orphan may wait a while for its reaper).
    fn is_alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
                .unwrap_or(true),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn spawn_failure_and_invalid() {
        let err = run("localhost", &Cmd::new(["/nonexistent/prog"]))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }), "{err}");
        let err = run("localhost", &Cmd::new(Vec::<String>::new()))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::InvalidCmd { .. }), "{err}");
        let err = run("localhost", &Cmd::new(["echo", "a\0b"]))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::InvalidCmd { .. }), "{err}");
    }

    #[tokio::test]
    async fn daemon_holding_pipes_does_not_hang() {
        let cmd =
            Cmd::new(["sh", "-c", "sleep 20 & echo started"]).timeout(Duration::from_secs(15));
        let started = std::time::Instant::now();
        let out = run("localhost", &cmd).await.unwrap();
        assert_eq!(out.stdout_str(), "started\n");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
