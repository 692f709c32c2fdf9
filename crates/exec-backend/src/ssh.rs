//! [`SshHost`]: a node over SSH, one multiplexed connection (an OpenSSH `ControlMaster`
//! started by the `openssh` crate) per node.
//!
//! Every command is a local `ssh -S CONTROL_SOCKET` client run through the one process
//! helper ([`crate::process::run`]), so local timeouts, output caps and process-group kills
//! work as for local commands. The remote side gets one command line built by
//! [`crate::shell_join`]: `env -i PATH=... LC_ALL=C K=V... [timeout -s KILL N] argv...`, so
//! the remote environment is as explicit as a local one and a timeout is enforced on the node
//! too (the local `ssh` is killed a few seconds later if the node does not answer).
//!
//! Sessions under load:
//! - Each client is one session (an SSH channel) on the master connection, and sshd allows a
//!   connection only `MaxSessions` of them at once (OpenSSH's default: 10). A semaphore per
//!   connection bounds the clients open at once to [`SshOptions::max_sessions`] (default 8);
//!   the rest wait their turn, whatever the caller's parallelism. Every client counts: commands,
//!   file reads, writes, listings, `stat`s, and [`SshContainer`](crate::SshContainer)'s execs.
//! - A client never dials on its own. It is given a `ProxyCommand` that prints a marker line
//!   (unique to the connection) on stderr and fails, so when the master gives no session
//!   (refused by the server, the master gone, the control socket gone) `ssh` fails at once
//!   with exit 255 and that marker instead of resolving and connecting to the placeholder host
//!   name: no name lookup, no second connection. Exit 255 *with* the marker: the command did
//!   not run. Exit 255 *without* it: either the remote command exited 255, or the master died
//!   while it ran; `ssh -O check` on the master tells which.
//! - A refused session is tried again on the same master after a back-off (at most
//!   [`MAX_ATTEMPTS`] tries), and the connection's bound is lowered by one (never below one), so
//!   a server with a smaller `MaxSessions` is learnt from its first refusals. A dead master is
//!   replaced by a new one (one dial, shared by every waiting caller). Reads are tried again
//!   after a connection lost while they ran; commands and writes are not (they may have run).
//! - When the node cannot be dialled again, every caller gets the same
//!   [`ExecError::Ssh`] naming the node and the cause, for [`REDIAL_AFTER`], then the next
//!   caller dials again.
//!
//! Needs on the node: a POSIX login shell for the user, GNU coreutils (`env`, `timeout`,
//! `stat`, `sha256sum`, `mktemp`, `sync FILE`), util-linux `flock` for locked writes. On this
//! machine: the OpenSSH client (`ssh`) and `sh`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tracing::{debug, instrument, warn};

use crate::local::DEFAULT_LOCK_TIMEOUT;
use crate::process::{self, BASE_PATH};
use crate::{
    shell_join, Cmd, DirEntry, ExecError, ExitStatus, FileKind, FileMeta, Host, HostLock, Output,
    WriteOptions,
};

/// How a server's host key is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KnownHostsCheck {
    /// The key must already be in known_hosts (`StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Unknown hosts are added, changed keys refused (`StrictHostKeyChecking=accept-new`).
    AcceptNew,
    /// Any key is accepted (`StrictHostKeyChecking=no`). For tests only.
    Insecure,
}

/// The default of [`SshOptions::max_sessions`]: below OpenSSH's default `MaxSessions` (10).
pub const DEFAULT_MAX_SESSIONS: usize = 8;

/// How many times one command is tried when the master gives it no session.
pub const MAX_ATTEMPTS: u32 = 6;

/// The pause before the second try; it doubles for each further one (0.1 s ... 1.6 s).
const BACKOFF: Duration = Duration::from_millis(100);

/// After the node could not be dialled, how long every caller gets that same answer before
/// the next one dials again.
pub const REDIAL_AFTER: Duration = Duration::from_secs(5);

/// How [`SshHost::connect`] connects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SshOptions {
    /// Host key checking; strict by default.
    pub known_hosts_check: KnownHostsCheck,
    /// Give up connecting after this long (default 10 s).
    pub connect_timeout: Duration,
    /// A known_hosts file to use instead of `~/.ssh/known_hosts`.
    pub user_known_hosts_file: Option<PathBuf>,
    /// The only private key to offer (`-i`, `IdentitiesOnly=yes`).
    pub identity_file: Option<PathBuf>,
    /// The port, unless the destination names one.
    pub port: Option<u16>,
    /// An ssh_config file to read instead of the user's (`-F`).
    pub config_file: Option<PathBuf>,
    /// How much longer than a command's timeout the local `ssh` may run before it is killed.
    pub local_grace: Duration,
    /// Where the control socket's private directory is made (`None`: the system temporary
    /// directory).
    pub control_dir: Option<PathBuf>,
    /// A directory on the node under which every host path resolves, as
    /// [`LocalHost::with_root`](crate::LocalHost::with_root) does locally: for tests that
    /// simulate several nodes on one machine, and for a node whose configs are mounted
    /// elsewhere. `None`: paths as they are.
    pub root: Option<PathBuf>,
    /// The most sessions open at once on the connection (commands, reads, writes); the rest
    /// wait. Keep it at least one below the server's `MaxSessions` (OpenSSH's default is 10):
    /// a session that just ended can still count on the server for a moment. Default
    /// [`DEFAULT_MAX_SESSIONS`]; 0 counts as 1. Lowered by itself when the server refuses.
    pub max_sessions: usize,
}

impl Default for SshOptions {
    fn default() -> SshOptions {
        SshOptions {
            known_hosts_check: KnownHostsCheck::Strict,
            connect_timeout: Duration::from_secs(10),
            user_known_hosts_file: None,
            identity_file: None,
            port: None,
            config_file: None,
            local_grace: Duration::from_secs(5),
            control_dir: None,
            root: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// Where an SSH connection goes: a user, a host and a port, each checked so that nothing of
/// it can be taken by `ssh` for an option or reach a shell.
///
/// Forms: `ssh://[user@]host[:port]` and `[user@]host`. The host is a host name (labels of
/// letters, digits, `-` and `_`, none starting or ending with `-`; an `ssh_config` alias is
/// one), an IPv4 address, or an IPv6 address in brackets (`ssh://[fd00::2]:22`). The user is
/// letters, digits, `.`, `_` and `-`, not starting with `-`. The port is 1 to 65535.
///
/// ```
/// use exec_backend::ssh::Destination;
///
/// let d = Destination::parse("ssh://root@pve2:2222").unwrap();
/// assert_eq!((d.user.as_deref(), d.host.as_str(), d.port), (Some("root"), "pve2", Some(2222)));
/// assert!(Destination::parse("ssh://-oProxyCommand=touch /tmp/x@pve2").is_err());
/// assert!(Destination::parse("ssh://-V").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Destination {
    /// The login user, when given.
    pub user: Option<String>,
    /// The host as `ssh` takes it (an IPv6 address without brackets).
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

/// Why a destination is not one: what is wrong and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadDestination(pub &'static str);

impl Destination {
    /// Parses and checks a destination.
    pub fn parse(dest: &str) -> Result<Destination, BadDestination> {
        let (url, rest) = match dest.strip_prefix("ssh://") {
            Some(r) => (true, r),
            None => (false, dest),
        };
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(check_user(u)?), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or(BadDestination("an IPv6 address in [ has no closing ]"))?;
            let addr: std::net::Ipv6Addr = addr
                .parse()
                .map_err(|_| BadDestination("the address in [...] is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) if url => Some(check_port(p)?),
                    _ => return Err(BadDestination("expected :PORT after the IPv6 address")),
                },
            };
            (addr.to_string(), port)
        } else {
            let (host, port) =
                match hostport.rsplit_once(':') {
                    Some((h, p)) if url => (h, Some(check_port(p)?)),
                    Some(_) => return Err(BadDestination(
                        "a port is given as ssh://[user@]host:port; write an IPv6 address in [...]",
                    )),
                    None => (hostport, None),
                };
            (check_host(host)?, port)
        };
        Ok(Destination { user, host, port })
    }
}

fn check_user(u: &str) -> Result<String, BadDestination> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    if u.is_empty() {
        return Err(BadDestination("the user before @ is empty"));
    }
    if u.len() > 64 || !u.bytes().all(ok_char) || u.starts_with(['-', '.']) {
        return Err(BadDestination(
            "the user may hold only letters, digits, '.', '_' and '-', and may not start with '-' or '.'",
        ));
    }
    Ok(u.to_owned())
}

fn check_port(p: &str) -> Result<u16, BadDestination> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(BadDestination("the port must be a number from 1 to 65535")),
    }
}

fn check_host(h: &str) -> Result<String, BadDestination> {
    const BAD: BadDestination = BadDestination(
        "the host must be a host name (letters, digits, '-', '_' and dots, no label starting or \
         ending with '-'), an IPv4 address or an IPv6 address in [...]",
    );
    if h.is_empty() {
        return Err(BadDestination("the host is empty"));
    }
    if h.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(h.to_owned());
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.len() > 253 {
        return Err(BadDestination(
            "the host name is longer than 253 characters",
        ));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(BAD);
    }
    if name
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(BadDestination(
            "the host looks like an IPv4 address but is not one",
        ));
    }
    Ok(h.to_owned())
}

/// The master connection as last dialled: the session, or why it could not be opened.
#[derive(Debug)]
struct Master {
    /// Counts dials, so that callers who saw the same dead master dial only once.
    generation: u64,
    /// The master; dropping the last reference closes it (`ssh -O exit`).
    session: Result<Arc<openssh::Session>, Arc<openssh::Error>>,
    /// When it was dialled.
    dialled: Instant,
}

/// The shared part of an SSH connection: the master, how to dial it again, the session bound.
#[derive(Debug)]
pub(crate) struct SshLink {
    /// The node's name for messages: the destination without `ssh://`.
    pub(crate) name: String,
    /// The host to dial (user and port are in `builder`).
    dest: String,
    /// How the master is dialled.
    builder: openssh::SessionBuilder,
    master: Mutex<Master>,
    /// One permit per session open at once.
    sessions: Semaphore,
    /// The permits `sessions` holds in all (lowered on refusals).
    limit: AtomicUsize,
    /// The line the clients' failing `ProxyCommand` prints.
    marker: String,
    /// `ssh -F` for the clients.
    config_file: Option<PathBuf>,
    local_grace: Duration,
}

/// A marker no remote command can guess: 64 random bits from the standard library's
/// per-process hash keys.
fn new_marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!(
        "phoenix-gpu-ssh: no session from the master ({:016x})",
        h.finish()
    )
}

impl SshLink {
    async fn connect(dest: &str, opts: &SshOptions) -> Result<SshLink, ExecError> {
        let name = dest.strip_prefix("ssh://").unwrap_or(dest).to_owned();
        // The openssh crate puts the destination after its options without `--`; a checked
        // destination cannot look like an option, and the user and port go in as values of
        // `-l` and `-p`.
        let to = Destination::parse(dest).map_err(|e| ExecError::InvalidDestination {
            dest: dest.to_owned(),
            detail: e.0,
        })?;
        let mut b = openssh::SessionBuilder::default();
        b.known_hosts_check(match opts.known_hosts_check {
            KnownHostsCheck::Strict => openssh::KnownHosts::Strict,
            KnownHostsCheck::AcceptNew => openssh::KnownHosts::Add,
            KnownHostsCheck::Insecure => openssh::KnownHosts::Accept,
        })
        .connect_timeout(opts.connect_timeout)
        .server_alive_interval(Duration::from_secs(15));
        if let Some(f) = &opts.user_known_hosts_file {
            b.user_known_hosts_file(f);
        }
        if let Some(k) = &opts.identity_file {
            b.keyfile(k);
        }
        if let Some(p) = to.port.or(opts.port) {
            b.port(p);
        }
        if let Some(u) = &to.user {
            b.user(u.clone());
        }
        if let Some(c) = &opts.config_file {
            b.config_file(c);
        }
        b.control_directory(opts.control_dir.clone().unwrap_or_else(std::env::temp_dir));
        debug!(dest, "opening ssh master connection");
        let session = b.connect(&to.host).await.map_err(|e| ExecError::Ssh {
            target: name.clone(),
            detail: "cannot open the connection; check the address, that the host key is in \
                     known_hosts and that the key is authorized"
                .into(),
            source: Some(Box::new(e)),
        })?;
        let limit = opts.max_sessions.clamp(1, Semaphore::MAX_PERMITS);
        Ok(SshLink {
            name,
            dest: to.host.clone(),
            builder: b,
            master: Mutex::new(Master {
                generation: 0,
                session: Ok(Arc::new(session)),
                dialled: Instant::now(),
            }),
            sessions: Semaphore::new(limit),
            limit: AtomicUsize::new(limit),
            marker: new_marker(),
            config_file: opts.config_file.clone(),
            local_grace: opts.local_grace,
        })
    }

    /// The sessions allowed open at once now.
    pub(crate) fn session_limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// The master to use: the current one, or a new one when `dead` is the generation the
    /// caller found dead (dialled once, however many callers found it dead).
    async fn master(&self, dead: Option<u64>) -> Result<(u64, Arc<openssh::Session>), ExecError> {
        let mut m = self.master.lock().await;
        let redial = match &m.session {
            Ok(_) => dead == Some(m.generation),
            Err(_) => m.dialled.elapsed() >= REDIAL_AFTER,
        };
        if redial {
            warn!(node = %self.name, "the ssh connection was lost; opening a new one");
            let fresh = self
                .builder
                .connect(&self.dest)
                .await
                .map(Arc::new)
                .map_err(Arc::new);
            let old = std::mem::replace(&mut m.session, fresh);
            m.generation += 1;
            m.dialled = Instant::now();
            // Clean up after the dead master here unless a caller still holds it (then its
            // last holder does, in `Session`'s drop).
            if let Some(old) = old.ok().and_then(|s| Arc::try_unwrap(s).ok()) {
                let _ = old.close().await;
            }
        }
        match &m.session {
            Ok(s) => Ok((m.generation, s.clone())),
            Err(e) => Err(ExecError::Ssh {
                target: self.name.clone(),
                detail: "the connection was lost and cannot be opened again; check that the \
                         node is up and that its sshd runs"
                    .into(),
                source: Some(Box::new(e.clone())),
            }),
        }
    }

    /// Waits for a session permit.
    async fn permit(&self) -> Result<SemaphorePermit<'_>, ExecError> {
        self.sessions.acquire().await.map_err(|_| ExecError::Ssh {
            target: self.name.clone(),
            detail: "the connection is closing".into(),
            source: None,
        })
    }

    /// After the server refused a session: one permit fewer from now on (never below one).
    fn lower_limit(&self, permit: SemaphorePermit<'_>, why: &str) {
        let lowered = self
            .limit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            });
        if let Ok(was) = lowered {
            permit.forget();
            warn!(
                node = %self.name,
                sessions = was - 1,
                why,
                "the node refused a session; fewer sessions at once from now on (its sshd's \
                 MaxSessions is lower than the bound)"
            );
        }
    }

    /// The remote command line for `cmd`: explicit env, remote timeout, quoted argv.
    fn remote_line(cmd: &Cmd) -> Vec<u8> {
        let mut words: Vec<OsString> = vec![
            "env".into(),
            "-i".into(),
            format!("PATH={BASE_PATH}").into(),
            "LC_ALL=C".into(),
        ];
        for (k, v) in &cmd.env {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            words.push(kv);
        }
        if let Some(t) = cmd.timeout {
            words.extend([
                "timeout".into(),
                "-s".into(),
                "KILL".into(),
                format!("{:.3}", t.as_secs_f64().max(0.001)).into(),
            ]);
        }
        words.extend(cmd.argv.iter().cloned());
        shell_join(&words)
    }

    /// The local client's argv: a session on the master at `socket`, and never a connection
    /// of its own (see the module docs).
    fn client_argv(&self, socket: &Path, line: Vec<u8>) -> Vec<OsString> {
        client_argv(self.config_file.as_deref(), &self.marker, socket, line)
    }

    /// Runs `cmd` on the node through the master. `rerun`: whether the command may run again
    /// after the connection was lost while it ran (reads may, commands and writes may not).
    pub(crate) async fn run(&self, cmd: &Cmd, rerun: bool) -> Result<Output, ExecError> {
        cmd.validate(&self.name)?;
        let line = Self::remote_line(cmd);
        let mut last_refusal = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let (generation, master) = self.master(None).await?;
            let permit = self.permit().await?;
            let local = Cmd {
                argv: self.client_argv(master.control_socket(), line.clone()),
                env: Vec::new(),
                stdin: cmd.stdin.clone(),
                timeout: cmd.timeout.map(|t| t + self.local_grace),
                output_cap: cmd.output_cap,
            };
            let started = Instant::now();
            let out = match process::run(&self.name, &local).await {
                Err(ExecError::Timeout { after, .. }) => {
                    return Err(ExecError::Timeout {
                        target: self.name.clone(),
                        argv: cmd.display_argv(),
                        after: cmd.timeout.unwrap_or(after),
                    })
                }
                Err(ExecError::Spawn { source, .. }) => {
                    return Err(ExecError::Ssh {
                        target: self.name.clone(),
                        detail: "cannot run the local ssh client; install openssh-client".into(),
                        source: Some(Box::new(source)),
                    })
                }
                other => other?,
            };
            let refusal = refusal(&self.marker, &out);
            // Exit 255 is also a remote command's own status: only a dead master says the
            // connection, not the command, ended it.
            let master_dead = out.status == ExitStatus::Code(255) && master.check().await.is_err();
            match (refusal, master_dead) {
                (None, false) => {
                    drop(permit);
                    if let Some(limit) = cmd.timeout {
                        if !out.status.success() && started.elapsed() >= limit {
                            return Err(ExecError::Timeout {
                                target: self.name.clone(),
                                argv: cmd.display_argv(),
                                after: limit,
                            });
                        }
                    }
                    return Ok(out);
                }
                (Some(why), false) => {
                    // The server refused the channel: fewer at once, and again after a pause.
                    debug!(node = %self.name, attempt, %why, "session refused");
                    self.lower_limit(permit, &why);
                    last_refusal = why;
                    if attempt < MAX_ATTEMPTS {
                        tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
                    }
                }
                (refusal, true) => {
                    drop(permit);
                    debug!(node = %self.name, attempt, "the master is gone");
                    // Dial now: when the node is down, this is the error every caller gets.
                    self.master(Some(generation)).await?;
                    if refusal.is_none() && !rerun {
                        return Err(ExecError::Ssh {
                            target: self.name.clone(),
                            detail: "the connection was lost while the command ran, so it may \
                                     or may not have run; a new connection is open, run again"
                                .into(),
                            source: None,
                        });
                    }
                }
            }
        }
        Err(ExecError::Ssh {
            target: self.name.clone(),
            detail: if last_refusal.is_empty() {
                format!("the connection was lost {MAX_ATTEMPTS} times in a row")
            } else {
                format!(
                    "the node refused a session {MAX_ATTEMPTS} times in a row ({last_refusal}); \
                     check MaxSessions in its sshd_config"
                )
            },
            source: None,
        })
    }
}

/// A client's argv: `ssh -F CONFIG -S SOCKET` with the failing `ProxyCommand` printing
/// `marker`, options ended by `--`, the placeholder host, the remote command line.
fn client_argv(config: Option<&Path>, marker: &str, socket: &Path, line: Vec<u8>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["ssh".into(), "-F".into()];
    argv.push(config.unwrap_or(Path::new("/dev/null")).into());
    argv.extend(["-S".into(), socket.into()]);
    let proxy = format!("ProxyCommand=sh -c 'echo \"{marker}\" >&2; exit 1'");
    for o in [
        "BatchMode=yes",
        "ControlMaster=no",
        "CanonicalizeHostname=no",
        &proxy,
    ] {
        argv.extend(["-o".into(), o.into()]);
    }
    argv.extend(["-T".into(), "-x".into(), "-e".into(), "none".into()]);
    // Only the failing ProxyCommand ever sees this name. `--` ends the options.
    argv.push("--".into());
    argv.push("phoenix-gpu-mux".into());
    argv.push(OsString::from_vec(line));
    argv
}

/// What ssh said before `marker` when a client's output carries it: the master gave the
/// client no session and the command did not run. `None`: the command ran, or ssh lost the
/// connection while it ran.
fn refusal(marker: &str, out: &Output) -> Option<String> {
    if out.status != ExitStatus::Code(255) {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let mut said = Vec::new();
    for line in text.lines().map(str::trim) {
        if line == marker {
            return Some(if said.is_empty() {
                "the control socket is gone".to_owned()
            } else {
                said.join("; ")
            });
        }
        if !line.is_empty() {
            said.push(line);
        }
    }
    None
}

/// A node over SSH. Cheap to clone: clones share the connection.
#[derive(Clone, Debug)]
pub struct SshHost {
    link: Arc<SshLink>,
    root: Option<PathBuf>,
}

/// Exit codes the remote snippets use.
const RC_NOT_FOUND: i32 = 44;
const RC_NOT_DIR: i32 = 45;
const RC_SYMLINK: i32 = 46;
const RC_NOT_REGULAR: i32 = 47;
const RC_OUTSIDE_ROOT: i32 = 48;
const RC_LOCK_TIMEOUT: i32 = 75;
const RC_CONFLICT: i32 = 76;

/// Shell functions every file snippet starts with. `$root` is the root on the node ('' none).
/// `in_root DIR`: DIR must exist (else exit 44) and, with a root, resolve inside it (else exit
/// 48): a shell cannot open a path component by component as `LocalHost` does, so over SSH a
/// link that leads out of the root is refused, after `realpath` of the directory.
/// `parent_in_root PATH`: the same for the directory PATH is in (PATH itself when it is the
/// root).
const PRELUDE: &str = r#"in_root() {
  d=$(realpath -e -- "$1" 2>/dev/null) || exit 44
  [ -z "$root" ] && return 0
  r=$(realpath -e -- "$root") || exit 44
  [ "$r" = / ] && return 0
  case "$d/" in "$r"/*) return 0;; esac
  exit 48
}
parent_in_root() {
  if [ -n "$root" ] && [ "$(realpath -e -- "$1" 2>/dev/null)" = "$(realpath -e -- "$root")" ]; then
    in_root "$1"
  else
    in_root "$(dirname -- "$1")"
  fi
}
"#;

/// Reads `$1` (a regular file, never through a final link, never waiting on a FIFO), at most
/// `$3` bytes; `$2` the root.
const READ_SCRIPT: &str = r#"p=$1 root=$2 max=$3
parent_in_root "$p"
[ -L "$p" ] && exit 46
[ -e "$p" ] || exit 44
[ -f "$p" ] || { stat -c %F -- "$p"; exit 47; }
exec dd if="$p" iflag=nofollow,nonblock,count_bytes count="$max" bs=65536 status=none"#;
/// Several files in one session ([`SshHost::read_files`]): `$1` the root, `$2` the most bytes
/// read of each, then the paths. Each is read as [`READ_SCRIPT`] reads one, in a subshell of its
/// own; its answer is one line, `BASE64 RC`: what it printed (base64 keeps any bytes on one
/// line; `base64` is GNU coreutils) and its exit code.
const READ_MANY_SCRIPT: &str = r#"root=$1 max=$2
shift 2
one() {
  p=$1
  parent_in_root "$p"
  [ -L "$p" ] && exit 46
  [ -e "$p" ] || exit 44
  [ -f "$p" ] || { stat -c %F -- "$p"; exit 47; }
  exec dd if="$p" iflag=nofollow,nonblock,count_bytes count="$max" bs=65536 status=none
}
exec 3>&1
for p do
  rc=$( { { (one "$p") 2>/dev/null; echo $? >&4; } | base64 -w0 >&3; } 4>&1 )
  echo " $rc"
done"#;

const STAT_SCRIPT: &str = r#"p=$1 root=$2
parent_in_root "$p"
[ -e "$p" ] || [ -L "$p" ] || exit 44
exec stat -c '%f %t %T %u %g %s' -- "$p""#;

const LIST_SCRIPT: &str = r#"root=$2
[ -e "$1" ] || [ -L "$1" ] || exit 44
in_root "$1"
cd -- "$1" 2>/dev/null || exit 45
set --
for f in * .[!.]* ..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then set -- "$@" "$f"; fi
done
[ "$#" -eq 0 ] && exit 0
exec stat --printf='%f %t %T %u %g %s %n\0' -- "$@""#;

/// Atomic replace on the node: `$1` path, `$2` lock ('' none), `$3` lock wait in seconds,
/// `$4` expected previous (`-` unchecked, `absent`, or the SHA-256 in hex), `$5` backup
/// ('' none), `$6` mode in octal ('' keep), `$7` the root ('' none), `$8` `1` when the file is
/// on Proxmox's cluster file system (its owner and mode are its own: a refused chown or chmod
/// is ignored), `$9` how many backups to keep beside the oldest ('' no pruning: see
/// [`WriteOptions::keep_backups`]). The new bytes come on stdin. The replaced file keeps its owner, group and
/// mode; the backup is taken back when the replacement fails; temporary files of writers
/// that are no longer alive are removed under the lock.
const WRITE_SCRIPT: &str = r#"set -e
p=$1 lock=$2 wait=$3 expect=$4 backup=$5 mode=$6 root=$7 pve=$8 keep=$9
made_from= made_to=
mkdir_in() {
  a=$1
  while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=$(dirname -- "$a"); done
  in_root "$a"
  mkdir -p -- "$1"
  if [ "$a" != "$1" ]; then made_from=$a made_to=$1; fi
  in_root "$1"
}
unmake() {
  d=$made_to
  while [ -n "$d" ] && [ "$d" != "$made_from" ]; do
    rmdir -- "$d" 2>/dev/null || break
    d=$(dirname -- "$d")
  done
}
alive() { kill -0 "$1" 2>/dev/null || [ -d "/proc/$1" ]; }
clean() {
  for f in "$1"/"$2"*; do
    case $f in *.phoenix-tmp.*) ;; *) continue;; esac
    [ -e "$f" ] || [ -L "$f" ] || continue
    n=${f##*.phoenix-tmp.}
    pid=${n%%.*}
    case $pid in ''|*[!0-9]*) continue;; esac
    [ "$pid" = "$$" ] || alive "$pid" || rm -f -- "$f"
  done
}
if [ -n "$lock" ]; then
  mkdir_in "$(dirname -- "$lock")"
  [ -L "$lock" ] && exit 46
  exec 9>>"$lock"
  flock -w "$wait" -E 75 9 || exit 75
fi
dir=$(dirname -- "$p")
base=$(basename -- "$p")
[ -d "$dir" ] || exit 44
in_root "$dir"
[ -L "$p" ] && exit 46
if [ -e "$p" ] && [ ! -f "$p" ]; then stat -c %F -- "$p"; exit 47; fi
if [ "$expect" = absent ]; then
  if [ -e "$p" ]; then exit 76; fi
elif [ "$expect" != - ]; then
  [ -f "$p" ] || exit 76
  h=$(sha256sum < "$p")
  [ "${h%% *}" = "$expect" ] || exit 76
fi
if [ -n "$lock" ]; then clean "$dir" ".$base.phoenix-tmp."; fi
owner=
if [ -e "$p" ]; then owner=$(stat -c %u:%g -- "$p"); fi
if [ -z "$mode" ]; then
  if [ -e "$p" ]; then mode=$(stat -c %a -- "$p"); else mode=644; fi
fi
t= bt= b=
trap 'for f in "$t" "$bt" "$b"; do [ -n "$f" ] && rm -f -- "$f"; done; unmake' EXIT
# The new file first (a read-only or full file system fails here), then the backup, then
# the rename: a backup is kept only for a write that happened.
t=$(mktemp -- "$dir/.$base.phoenix-tmp.$$.XXXXXX")
cat > "$t"
if [ -n "$owner" ] && [ "$(stat -c %u:%g -- "$t")" != "$owner" ]; then
  chown -- "$owner" "$t" || [ -n "$pve" ]
fi
# Only when it differs (/etc/pve fixes each file's mode and may refuse a chmod).
[ "$(stat -c %a -- "$t")" = "$mode" ] || chmod -- "$mode" "$t" || [ -n "$pve" ]
sync -- "$t"
if [ -n "$backup" ] && [ -e "$p" ]; then
  bd=$(dirname -- "$backup")
  mkdir_in "$bd"
  if [ -n "$lock" ]; then clean "$bd" "."; fi
  bt=$(mktemp -- "$bd/.$(basename -- "$backup").phoenix-tmp.$$.XXXXXX")
  cat -- "$p" > "$bt"
  chmod -- "$(stat -c %a -- "$p")" "$bt"
  sync -- "$bt"
  mv -f -- "$bt" "$backup"
  bt= b=$backup
fi
mv -f -- "$t" "$p"
kept=$b
t= b= made_to=
sync -- "$dir"
# The backups beside the new one: keep the oldest and the newest $keep (names sort by time).
if [ -n "$keep" ] && [ -n "$kept" ]; then
  LC_ALL=C
  export LC_ALL
  ext=${kept##*.}
  n=0
  for f in "$bd"/*."$ext"; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then n=$((n + 1)); fi
  done
  i=0
  for f in "$bd"/*."$ext"; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then
      i=$((i + 1))
      if [ "$i" -gt 1 ] && [ "$i" -le $((n - keep)) ]; then rm -f -- "$f" || true; fi
    fi
  done
fi
"#;

/// What `stat -c %F` says a file is, as [`ExecError::NotRegular`] words.
fn describe_stat_type(text: &str) -> &'static str {
    match text.trim() {
        "symbolic link" => "a symbolic link",
        "directory" => "a directory",
        "fifo" => "a FIFO (named pipe)",
        "socket" => "a socket",
        "character special file" => "a character device",
        "block special file" => "a block device",
        _ => "a file of unknown type",
    }
}

/// Parses `%f %t %T %u %g %s` (raw mode, major, minor in hex; uid, gid, size in decimal).
pub(crate) fn parse_stat_fields(fields: &[&str]) -> Option<FileMeta> {
    let [raw, major, minor, uid, gid, size] = fields else {
        return None;
    };
    let raw = u32::from_str_radix(raw, 16).ok()?;
    let kind = match raw & 0o170000 {
        0o100000 => FileKind::File,
        0o040000 => FileKind::Dir,
        0o120000 => FileKind::Symlink,
        0o020000 => FileKind::CharDevice,
        0o060000 => FileKind::BlockDevice,
        _ => FileKind::Other,
    };
    let rdev = match kind {
        FileKind::CharDevice | FileKind::BlockDevice => Some((
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        )),
        _ => None,
    };
    Some(FileMeta {
        kind,
        rdev,
        mode: raw & 0o7777,
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
        size: size.parse().ok()?,
    })
}

/// Decodes standard base64 (with `=` padding), `None` for anything else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, quad) in text.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// SHA-256 in hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SshHost {
    /// Opens the master connection to `dest` (`ssh://user@host:port` or `user@host`; see
    /// [`Destination`]: a destination that is not one is [`ExecError::InvalidDestination`]
    /// and nothing is run).
    ///
    /// A host key that is unknown (with [`KnownHostsCheck::Strict`]) or changed, a refused
    /// key or an unreachable host is [`ExecError::Ssh`].
    pub async fn connect(dest: &str, opts: SshOptions) -> Result<SshHost, ExecError> {
        Ok(SshHost {
            link: Arc::new(SshLink::connect(dest, &opts).await?),
            root: opts.root.clone(),
        })
    }

    /// The sessions this connection opens at once now: [`SshOptions::max_sessions`], less one
    /// for each session the server refused (never below one).
    pub fn session_limit(&self) -> usize {
        self.link.session_limit()
    }

    /// The root every host path resolves under, when there is one ([`SshOptions::root`]).
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Runs a snippet `sh -c SCRIPT sh ARGS...` with no output cap. `rerun`: as for
    /// [`SshLink::run`].
    async fn snippet(
        &self,
        script: &str,
        args: &[&std::ffi::OsStr],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        rerun: bool,
    ) -> Result<(Cmd, Output), ExecError> {
        let script = format!("{PRELUDE}{script}");
        let mut cmd = Cmd::new(["sh", "-c", script.as_str(), "sh"]);
        cmd.argv.extend(args.iter().map(|a| a.to_os_string()));
        cmd.stdin = stdin;
        cmd.timeout = Some(timeout);
        cmd.output_cap = usize::MAX;
        let out = self.link.run(&cmd, rerun).await?;
        Ok((cmd, out))
    }

    /// The root as the snippets take it ('' none).
    fn root_arg(&self) -> &std::ffi::OsStr {
        self.root.as_deref().map_or("".as_ref(), Path::as_os_str)
    }

    /// The error a file snippet's own exit code stands for, if it is one of them.
    fn file_error(&self, path: &Path, out: &Output) -> Option<ExecError> {
        let target = self.link.name.clone();
        let path = path.to_owned();
        Some(match out.status {
            ExitStatus::Code(RC_NOT_FOUND) => ExecError::NotFound { target, path },
            ExitStatus::Code(RC_SYMLINK) => ExecError::NotRegular {
                target,
                path,
                what: "a symbolic link",
            },
            ExitStatus::Code(RC_NOT_REGULAR) => ExecError::NotRegular {
                target,
                path,
                what: describe_stat_type(&out.stdout_str()),
            },
            ExitStatus::Code(RC_OUTSIDE_ROOT) => ExecError::OutsideRoot {
                target,
                path,
                root: self.root.clone().unwrap_or_default(),
            },
            _ => return None,
        })
    }

    /// A failed write's error: a read-only file system (or, under `/etc/pve`, the permission
    /// error of Proxmox's cluster file system without quorum) and a full disk are told by
    /// what the node's tools printed (the snippet runs with `LC_ALL=C`).
    fn write_failure(&self, path: &Path, cmd: &Cmd, out: Output) -> ExecError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let target = self.link.name.clone();
        let os = |code| std::io::Error::from_raw_os_error(code);
        if stderr.contains("Read-only file system")
            || (crate::error::is_pmxcfs_path(path) && stderr.contains("Permission denied"))
        {
            return ExecError::ReadOnly {
                target,
                path: path.to_owned(),
                source: os(libc::EROFS),
            };
        }
        if stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded") {
            return ExecError::NoSpace {
                target,
                path: path.to_owned(),
                source: os(libc::ENOSPC),
            };
        }
        match out.check(&self.link.name, cmd) {
            Err(e) => e,
            Ok(_) => self.protocol("the write snippet", "it failed without a status".into()),
        }
    }

    fn protocol(&self, what: &str, detail: String) -> ExecError {
        ExecError::Protocol {
            target: self.link.name.clone(),
            what: what.to_owned(),
            detail,
        }
    }
}

/// The time limit of a write on the node (plus the lock wait).
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(300);

/// The time limit of a read, `stat` or listing on the node.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[async_trait]
impl Host for SshHost {
    fn name(&self) -> String {
        self.link.name.clone()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => crate::local::map_under(root, path),
            None => path.to_owned(),
        }
    }

    #[instrument(level = "debug", skip(self, cmd), fields(node = %self.link.name, argv = ?cmd.display_argv()))]
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.link.run(cmd, false).await
    }

    #[instrument(level = "debug", skip(self), fields(node = %self.link.name))]
    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError> {
        let real = self.resolve(path);
        let max = (crate::local::MAX_READ + 1).to_string();
        let (cmd, out) = self
            .snippet(
                READ_SCRIPT,
                &[real.as_os_str(), self.root_arg(), max.as_ref()],
                None,
                READ_TIMEOUT,
                true,
            )
            .await?;
        if let Some(e) = self.file_error(path, &out) {
            return Err(e);
        }
        let bytes = out.check(&self.link.name, &cmd)?.stdout;
        if bytes.len() as u64 > crate::local::MAX_READ {
            return Err(ExecError::TooLarge {
                target: self.link.name.clone(),
                path: path.to_owned(),
                limit: crate::local::MAX_READ,
            });
        }
        Ok(bytes)
    }

    /// All the files in one session (`READ_MANY_SCRIPT`), each answered as
    /// [`read_file`](Host::read_file) answers it: the same checks on the node, the same errors
    /// for the same exit codes; a file whose read failed otherwise is read again on its own, so
    /// that its error is `read_file`'s own.
    #[instrument(level = "debug", skip(self, paths), fields(node = %self.link.name, files = paths.len()))]
    async fn read_files(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Vec<u8>, ExecError>>, ExecError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let real: Vec<PathBuf> = paths.iter().map(|p| self.resolve(p)).collect();
        let max = (crate::local::MAX_READ + 1).to_string();
        let mut args: Vec<&std::ffi::OsStr> = vec![self.root_arg(), max.as_ref()];
        args.extend(real.iter().map(|p| p.as_os_str()));
        let (cmd, out) = self
            .snippet(READ_MANY_SCRIPT, &args, None, READ_TIMEOUT, true)
            .await?;
        let out = out.check(&self.link.name, &cmd)?;
        let lines: Vec<&[u8]> = out
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() != paths.len() {
            return Err(self.protocol(
                "a batch of reads",
                format!("{} answers for {} files", lines.len(), paths.len()),
            ));
        }
        let mut files = Vec::with_capacity(paths.len());
        for (line, path) in lines.into_iter().zip(paths) {
            let bad = || {
                self.protocol(
                    "a batch of reads",
                    format!("a garbled answer for {}", path.display()),
                )
            };
            let at = line.iter().rposition(|&b| b == b' ').ok_or_else(bad)?;
            let rc: i32 = std::str::from_utf8(&line[at + 1..])
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(bad)?;
            let stdout = base64_decode(&line[..at]).ok_or_else(bad)?;
            let answer = Output {
                status: ExitStatus::Code(rc),
                stdout,
                stderr: Vec::new(),
            };
            files.push(if let Some(e) = self.file_error(path, &answer) {
                Err(e)
            } else if rc != 0 {
                self.read_file(path).await
            } else if answer.stdout.len() as u64 > crate::local::MAX_READ {
                Err(ExecError::TooLarge {
                    target: self.link.name.clone(),
                    path: path.to_owned(),
                    limit: crate::local::MAX_READ,
                })
            } else {
                Ok(answer.stdout)
            });
        }
        Ok(files)
    }

    #[instrument(level = "debug", skip(self, bytes, opts), fields(node = %self.link.name, len = bytes.len()))]
    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError> {
        let wait = opts.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT);
        let expect = match &opts.expect_previous {
            None => "-".to_owned(),
            Some(None) => "absent".to_owned(),
            Some(Some(prev)) => sha256_hex(prev),
        };
        let mode = opts
            .mode
            .map(|m| format!("{:o}", m & 0o7777))
            .unwrap_or_default();
        let real = self.resolve(path);
        let lock = opts
            .lock
            .as_deref()
            .map(|l| self.resolve(l))
            .unwrap_or_default();
        let backup = opts
            .backup_to
            .as_deref()
            .map(|b| self.resolve(b))
            .unwrap_or_default();
        let wait_s = format!("{:.3}", wait.as_secs_f64());
        let pve = if crate::error::is_pmxcfs_path(path) {
            "1"
        } else {
            ""
        };
        let keep = opts.keep_backups.map(|n| n.to_string()).unwrap_or_default();
        let args: [&std::ffi::OsStr; 9] = [
            real.as_os_str(),
            lock.as_os_str(),
            wait_s.as_ref(),
            expect.as_ref(),
            backup.as_os_str(),
            mode.as_ref(),
            self.root_arg(),
            pve.as_ref(),
            keep.as_ref(),
        ];
        let (cmd, out) = self
            .snippet(
                WRITE_SCRIPT,
                &args,
                Some(bytes.to_vec()),
                FILE_OP_TIMEOUT + wait,
                false,
            )
            .await?;
        if let Some(e) = self.file_error(path, &out) {
            return Err(e);
        }
        match out.status {
            ExitStatus::Code(RC_LOCK_TIMEOUT) => Err(ExecError::LockTimeout {
                target: self.link.name.clone(),
                path: opts.lock.clone().unwrap_or_default(),
                after: wait,
            }),
            ExitStatus::Code(RC_CONFLICT) => Err(ExecError::Conflict {
                target: self.link.name.clone(),
                path: path.to_owned(),
            }),
            ExitStatus::Code(0) => Ok(()),
            _ => Err(self.write_failure(path, &cmd, out)),
        }
    }

    #[instrument(level = "debug", skip(self), fields(node = %self.link.name))]
    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        let real = self.resolve(path);
        let (cmd, out) = self
            .snippet(
                LIST_SCRIPT,
                &[real.as_os_str(), self.root_arg()],
                None,
                READ_TIMEOUT,
                true,
            )
            .await?;
        match out.status {
            ExitStatus::Code(RC_NOT_FOUND | RC_OUTSIDE_ROOT) => {
                return Err(self.file_error(path, &out).expect("a file snippet status"))
            }
            ExitStatus::Code(RC_NOT_DIR) => {
                return Err(ExecError::Io {
                    target: self.link.name.clone(),
                    op: "list",
                    path: path.to_owned(),
                    source: std::io::Error::other("not a directory, or not readable"),
                })
            }
            _ => {}
        }
        let out = out.check(&self.link.name, &cmd)?;
        let mut entries = Vec::new();
        for record in out.stdout.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let mut parts = record.splitn(7, |&b| b == b' ');
            let fields: Vec<&str> = parts
                .by_ref()
                .take(6)
                .map(|f| std::str::from_utf8(f).unwrap_or(""))
                .collect();
            let name = parts.next();
            let (Some(meta), Some(name)) = (parse_stat_fields(&fields), name) else {
                return Err(self.protocol(
                    "stat --printf",
                    format!("bad record {:?}", String::from_utf8_lossy(record)),
                ));
            };
            entries.push(DirEntry {
                name: std::ffi::OsStr::from_bytes(name).to_os_string(),
                meta,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    #[instrument(level = "debug", skip(self), fields(node = %self.link.name))]
    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        let real = self.resolve(path);
        let (cmd, out) = self
            .snippet(
                STAT_SCRIPT,
                &[real.as_os_str(), self.root_arg()],
                None,
                READ_TIMEOUT,
                true,
            )
            .await?;
        match self.file_error(path, &out) {
            Some(ExecError::NotFound { .. }) => return Ok(None),
            Some(e) => return Err(e),
            None => {}
        }
        let out = out.check(&self.link.name, &cmd)?;
        let text = out.stdout_str();
        let fields: Vec<&str> = text.split_whitespace().collect();
        parse_stat_fields(&fields)
            .map(Some)
            .ok_or_else(|| self.protocol("stat -c", format!("bad output {text:?}")))
    }

    #[instrument(level = "debug", skip(self), fields(node = %self.link.name))]
    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
        let real = self.resolve(path);
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some(holder) = self.try_lock(&real, path, timeout).await? {
                return Ok(HostLock::new(holder));
            }
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        Err(ExecError::Ssh {
            target: self.link.name.clone(),
            detail: format!(
                "the node gave no session to hold the lock {} ({MAX_ATTEMPTS} tries); check \
                 MaxSessions in its sshd_config",
                path.display()
            ),
            source: None,
        })
    }
}

/// Holds a `flock` on the node ([`Host::lock`]): `$1` the lock file, `$2` the wait in seconds,
/// `$3` the root ('' none). The lock file's directory is made inside the root, and the lock file
/// is a regular file or nothing (never a link), as for [`WRITE_SCRIPT`]'s lock. Prints `locked`
/// once it holds the lock, then keeps it (fd 9, inherited by `cat`) for as long as its stdin
/// stays open: the lock goes when the guard closes stdin, when the local `ssh` dies, or when the
/// connection drops.
const LOCK_SCRIPT: &str = r#"p=$1 wait=$2 root=$3
dir=$(dirname -- "$p")
a=$dir
while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=$(dirname -- "$a"); done
in_root "$a"
mkdir -p -- "$dir" || exit 1
in_root "$dir"
[ -L "$p" ] && exit 46
if [ -e "$p" ] && [ ! -f "$p" ]; then stat -c %F -- "$p"; exit 47; fi
exec 9>>"$p" || exit 1
flock -w "$wait" -E 75 9 || exit 75
echo locked
exec cat > /dev/null"#;

/// How long, besides the lock's own wait, a lock holder's session may take to start.
const SESSION_START: Duration = Duration::from_secs(60);

/// The local `ssh` client that holds a lock on the node, and the session it takes (given back
/// on drop).
struct SshLockHolder {
    child: Option<tokio::process::Child>,
    stdin: Option<tokio::process::ChildStdin>,
    link: Arc<SshLink>,
}

impl Drop for SshLockHolder {
    fn drop(&mut self) {
        // End of stdin: the remote `cat` exits and the lock is released; the client exits
        // after it. Reap it in the background when there is a runtime to do so (else
        // `kill_on_drop` ends it).
        drop(self.stdin.take());
        self.link.sessions.add_permits(1);
        if let (Some(mut child), Ok(rt)) =
            (self.child.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            });
        }
    }
}

impl SshHost {
    /// One try at holding the lock: `Ok(None)` when the master gave no session (try again).
    async fn try_lock(
        &self,
        real: &Path,
        shown: &Path,
        timeout: Duration,
    ) -> Result<Option<SshLockHolder>, ExecError> {
        use std::process::Stdio;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let link = &self.link;
        let script = format!("{PRELUDE}{LOCK_SCRIPT}");
        let mut inner = Cmd::new(["sh", "-c", script.as_str(), "sh"]);
        inner.argv.push(real.as_os_str().to_owned());
        inner
            .argv
            .push(format!("{:.3}", timeout.as_secs_f64()).into());
        inner.argv.push(self.root_arg().to_owned());
        inner.validate(&link.name)?;
        let (_, master) = link.master(None).await?;
        link.permit().await?.forget();
        let mut holder = SshLockHolder {
            child: None,
            stdin: None,
            link: link.clone(),
        };
        let argv = link.client_argv(master.control_socket(), SshLink::remote_line(&inner));
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PATH", BASE_PATH)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecError::Ssh {
                target: link.name.clone(),
                detail: "cannot run the local ssh client; install openssh-client".into(),
                source: Some(Box::new(source)),
            })?;
        holder.stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let mut line = String::new();
        // The session itself may start slowly (the node's login shell runs its rc files).
        let answer = timeout + SESSION_START;
        if let Some(out) = stdout {
            let mut out = tokio::io::BufReader::new(out);
            match tokio::time::timeout(answer, out.read_line(&mut line)).await {
                Ok(Ok(_)) if line.trim_end() == "locked" => {
                    holder.child = Some(child);
                    return Ok(Some(holder));
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(ExecError::Timeout {
                        target: link.name.clone(),
                        argv: inner.display_argv(),
                        after: answer,
                    });
                }
            }
        }
        // It ended without `locked`: the wait for the lock ran out, or the session failed.
        drop(holder.stdin.take());
        let status = match tokio::time::timeout(link.local_grace, child.wait()).await {
            Ok(Ok(s)) => ExitStatus::Code(s.code().unwrap_or(-1)),
            _ => {
                let _ = child.kill().await;
                ExitStatus::Code(-1)
            }
        };
        let mut err = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = tokio::time::timeout(link.local_grace, e.read_to_end(&mut err)).await;
        }
        let out = Output {
            status,
            stdout: line.into_bytes(),
            stderr: err,
        };
        if let Some(e) = self.file_error(shown, &out) {
            return Err(e);
        }
        if out.status == ExitStatus::Code(RC_LOCK_TIMEOUT) {
            return Err(ExecError::LockTimeout {
                target: link.name.clone(),
                path: shown.to_owned(),
                after: timeout,
            });
        }
        if refusal(&link.marker, &out).is_some() {
            return Ok(None);
        }
        Err(ExecError::Failed {
            target: link.name.clone(),
            argv: inner.display_argv(),
            status: out.status,
            stderr_tail: out.stderr_tail(2048),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let m = parse_stat_fields(&["21b6", "c3", "ff", "0", "0", "0"]).unwrap();
        assert_eq!(m.kind, FileKind::CharDevice);
        assert_eq!(m.rdev, Some((0xc3, 0xff)));
        assert_eq!(m.mode, 0o666);
        let m = parse_stat_fields(&["81a4", "0", "0", "1", "2", "42"]).unwrap();
        assert_eq!(
            (m.kind, m.mode, m.uid, m.gid, m.size),
            (FileKind::File, 0o644, 1, 2, 42)
        );
        assert!(parse_stat_fields(&["zz", "0", "0", "0", "0", "0"]).is_none());
        assert!(parse_stat_fields(&["81a4"]).is_none());
    }

    #[test]
    fn refusals_are_told_by_the_marker() {
        let marker = new_marker();
        assert_ne!(marker, new_marker(), "each connection has its own");
        let out = |code, stderr: &str| Output {
            status: ExitStatus::Code(code),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let refused = format!(
            "mux_client_request_session: session request failed: Session open refused by peer\n\
             {marker}\nkex_exchange_identification: Connection closed by remote host\n"
        );
        assert_eq!(
            refusal(&marker, &out(255, &refused)).as_deref(),
            Some(
                "mux_client_request_session: session request failed: Session open refused by peer"
            )
        );
        assert_eq!(
            refusal(&marker, &out(255, &format!("{marker}\n"))).as_deref(),
            Some("the control socket is gone")
        );
        // The remote command's own 255, with or without some other marker-like line.
        assert_eq!(refusal(&marker, &out(255, "oops\n")), None);
        assert_eq!(refusal(&marker, &out(255, &format!("{}x\n", marker))), None);
        assert_eq!(refusal(&marker, &out(1, &refused)), None);
    }

    #[test]
    fn base64_round_trips() {
        for (text, plain) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("AP8KIA==", b"\x00\xff\n "),
        ] {
            assert_eq!(
                base64_decode(text.as_bytes()).as_deref(),
                Some(plain),
                "{text}"
            );
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9*", "Zm 9"] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn destinations_are_checked() {
        let ok = |s: &str| Destination::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let d = ok("ssh://root@pve2:2222");
        assert_eq!(
            (d.user.as_deref(), d.host.as_str(), d.port),
            (Some("root"), "pve2", Some(2222))
        );
        let d = ok("ssh://[fd00::2]:22");
        assert_eq!(
            (d.user, d.host.as_str(), d.port),
            (None, "fd00::2", Some(22))
        );
        let d = ok("admin@10.0.0.2");
        assert_eq!(
            (d.user.as_deref(), d.host.as_str(), d.port),
            (Some("admin"), "10.0.0.2", None)
        );
        for good in [
            "ssh://pve2.lan.",
            "ssh://pve_2",
            "ssh://u.s-e_r@h",
            "ssh://[::1]",
            "x",
        ] {
            ok(good);
        }
        for bad in [
            "ssh://-V",
            "ssh://ro ot@x",
            "ssh://-oProxyCommand=touch /tmp/pwned@x",
            "ssh://root@-oProxyCommand=x",
            "ssh://root@",
            "ssh://@pve2",
            "ssh://",
            "",
            "ssh://a b",
            "ssh://x:port",
            "ssh://x:0",
            "ssh://x:65536",
            "ssh://x:+22",
            "ssh://x:",
            "ssh://-x-",
            "ssh://x-.lan",
            "ssh://999.1.1.1",
            "ssh://1.2.3",
            "ssh://[::1",
            "ssh://[not-v6]",
            "ssh://[::1]x",
            "ssh://fd00::2",
            "ssh://h\tx",
            "ssh://h\nx",
            "ssh://root\n@h",
            "ssh://.root@h",
            "host:22",
            "ssh://h/x",
            "ssh://h;touch x",
            "ssh://$(id)",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Destination::parse(&format!("ssh://{}", "a".repeat(64))).is_err());
        assert!(Destination::parse(&format!("ssh://{}@h", "u".repeat(65))).is_err());
    }

    #[test]
    fn clients_end_options_before_the_host() {
        let argv = client_argv(None, "m", Path::new("/s"), b"true".to_vec());
        let at = argv.iter().position(|a| a == "--").expect("a --");
        assert_eq!(argv[at + 1], "phoenix-gpu-mux");
        assert_eq!(at + 3, argv.len(), "{argv:?}");
    }

    #[test]
    fn remote_line_shape() {
        let cmd = Cmd::new(["echo", "a b"])
            .env("K", "v w")
            .timeout(Duration::from_millis(1500));
        assert_eq!(
            String::from_utf8(SshLink::remote_line(&cmd)).unwrap(),
            format!(
                "env -i 'PATH={BASE_PATH}' 'LC_ALL=C' 'K=v w' timeout -s KILL 1.500 echo 'a b'"
            )
        );
    }
}
