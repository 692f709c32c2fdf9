//! Host-side downloads into the cache (`Settings::cache_dir`): the NVIDIA runfile and the CUDA
//! keyring package.
//!
//! Rules:
//! - The file is downloaded with `curl` on the host to a temporary name in the cache directory
//!   (`.<name>.part-<pid>-<n>`), its SHA-256 is checked with `sha256sum`, and only then is it
//!   renamed (`mv`) to its final name. A partial or unverified file never carries the final name;
//!   a failed download removes its temporary file.
//! - Beside the final file, `<name>.sha256` records `<hex> <size>`. A later run trusts a
//!   cached file whose size matches that record (and whose record matches the expected sum,
//!   when one is given) without reading it again.
//! - Within one process, downloads of the same cache file on the same node are serialised by a
//!   mutex keyed by the node's name and the file's path, so concurrent `apply` calls for
//!   several containers of a node download it once: the first downloads, the others find it
//!   cached. Different nodes (each with its own cache) download at the same time. Separate processes may both download, but each
//!   writes its own temporary file and the rename is atomic, so the cache stays whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use exec_backend::{Cmd, ExecError, FileKind, Output};

use crate::error::{Error, Input, InstallCause, Result};
use crate::report::Event;
use crate::step::Ctx;
use crate::values::Sha256;

/// How often the temporary file is looked at while curl runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(300);
/// The limit for one download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// The limit for the small requests (HEAD, checksum file, sha256sum, mv).
const SMALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The download locks of this process, by node (the host's name) and cache path: nodes of a
/// cluster each have their own cache, so their downloads run at the same time.
type LockKey = (String, PathBuf);

static LOCKS: LazyLock<Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static SEQ: AtomicU64 = AtomicU64::new(0);

/// What to download.
#[derive(Clone, Debug)]
pub(crate) struct Fetch {
    /// The URL.
    pub url: String,
    /// The file name in the cache.
    pub file_name: String,
    /// The expected SHA-256.
    pub sha256: Option<Sha256>,
    /// Without `sha256`: read it from `<url>.sha256sum` (NVIDIA publishes one beside each
    /// runfile). When false and `sha256` is `None`, the first download is trusted and its sum
    /// recorded.
    pub sidecar: bool,
}

/// A file in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    /// Its host path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether this call downloaded it.
    pub downloaded: bool,
}

/// Checks that `name` is a plain file name fit for the cache.
pub(crate) fn check_file_name(name: &str, url: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput {
            what: Input::DownloadUrl,
            value: url.to_owned(),
            hint: "the URL must end in a plain file name (letters, digits, . _ + -)".into(),
        })
    }
}

/// Makes sure the file is in the cache and verified; downloads it when it is not.
pub(crate) async fn fetch(ctx: &Ctx<'_>, f: &Fetch) -> Result<Cached> {
    check_file_name(&f.file_name, &f.url)?;
    let expected = f.sha256.as_ref().map(|s| s.as_str().to_owned());
    let dir = ctx.settings.cache_dir.clone();
    let path = dir.join(&f.file_name);
    let lock = {
        let mut map = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((ctx.host.name(), path.clone()))
            .or_default()
            .clone()
    };
    let _guard = lock.lock().await;

    if let Some(size) = cached(ctx, &path, expected.as_deref()).await {
        return Ok(Cached {
            path,
            size,
            downloaded: false,
        });
    }
    let expected = match expected {
        Some(s) => Some(s),
        None if f.sidecar => Some(sidecar_sum(ctx, f).await?),
        None => None,
    };
    host(
        ctx,
        f,
        "creating the cache directory",
        ["mkdir", "-p"],
        &[&dir],
    )
    .await?;
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.part-{}-{n}", f.file_name, std::process::id()));
    let result = download_verify(ctx, f, &tmp, &path, expected.as_deref()).await;
    if result.is_err() {
        let rm = Cmd::new(["rm", "-f"])
            .timeout(SMALL_TIMEOUT)
            .with_arg(ctx.host.resolve(&tmp));
        let _ = ctx.host.run(&rm).await;
    }
    let (sum, size) = result?;
    // The record is written after the rename: a crash in between leaves a file without a
    // record, which the next run downloads again.
    let record = Cmd::new(["tee"])
        .with_arg(ctx.host.resolve(&sum_path(&path)))
        .stdin(format!("{sum} {size}\n"))
        .timeout(SMALL_TIMEOUT);
    ran(
        ctx,
        f,
        "recording its checksum",
        ctx.host.run(&record).await,
    )?;
    Ok(Cached {
        path,
        size,
        downloaded: true,
    })
}

/// `Some(size)` when the cached file is whole by its record.
async fn cached(ctx: &Ctx<'_>, path: &Path, expected: Option<&str>) -> Option<u64> {
    let meta = ctx.host.stat(path).await.ok()??;
    if meta.kind != FileKind::File {
        return None;
    }
    let record = ctx.host.read_file(&sum_path(path)).await.ok()?;
    let record = String::from_utf8(record).ok()?;
    let mut it = record.split_whitespace();
    let (sum, size) = (it.next()?, it.next()?.parse::<u64>().ok()?);
    let sum_ok = expected.map_or(true, |e| e == sum);
    (size == meta.size && sum_ok).then_some(size)
}

fn sum_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

async fn sidecar_sum(ctx: &Ctx<'_>, f: &Fetch) -> Result<String> {
    let url = format!("{}.sha256sum", f.url);
    let cmd = Cmd::new(["curl", "-fsSL", "--retry", "3", url.as_str()]).timeout(SMALL_TIMEOUT);
    let unusable = |why: String| {
        install(
            ctx,
            f,
            InstallCause::NoPublishedChecksum {
                url: url.clone(),
                why,
            },
        )
    };
    let out = ctx.host.run(&cmd).await.map_err(|source| {
        install(
            ctx,
            f,
            InstallCause::Run {
                doing: format!("fetching {url}"),
                source,
            },
        )
    })?;
    if !out.status.success() {
        return Err(unusable(format!(
            "curl failed ({}): {}",
            out.status,
            out.stderr_tail(500)
        )));
    }
    let text = out.stdout_str();
    sum_in(&text).ok_or_else(|| {
        unusable(format!(
            "it does not start with a SHA-256 checksum: {:?}",
            truncate(&text, 120)
        ))
    })
}

async fn download_verify(
    ctx: &Ctx<'_>,
    f: &Fetch,
    tmp: &Path,
    path: &Path,
    expected: Option<&str>,
) -> Result<(String, u64)> {
    let total = content_length(ctx, &f.url).await;
    let what = format!("download {}", f.file_name);
    let curl = Cmd::new(["curl", "-fsSL", "--retry", "3", "-o"])
        .with_arg(ctx.host.resolve(tmp))
        .with_arg(&f.url)
        .timeout(DOWNLOAD_TIMEOUT);
    ctx.events.emit(Event::Progress {
        ct: String::new(),
        what: what.clone(),
        done: 0,
        total,
    });
    let mut run = pin!(ctx.host.run(&curl));
    let out = loop {
        tokio::select! {
            out = &mut run => break out,
            () = tokio::time::sleep(PROGRESS_EVERY) => {
                if let Ok(Some(meta)) = ctx.host.stat(tmp).await {
                    ctx.events.emit(Event::Progress { ct: String::new(), what: what.clone(), done: meta.size, total });
                }
            }
        }
    };
    ran(ctx, f, &format!("downloading {}", f.url), out)?;
    let size = match ctx.host.stat(tmp).await {
        Ok(Some(m)) => m.size,
        _ => {
            return Err(install(
                ctx,
                f,
                InstallCause::Unexpected {
                    tool: "curl",
                    what: format!("left no file at {}", tmp.display()),
                },
            ))
        }
    };
    ctx.events.emit(Event::Progress {
        ct: String::new(),
        what,
        done: size,
        total: Some(total.unwrap_or(size)),
    });
    let sum_cmd = Cmd::new(["sha256sum"])
        .with_arg(ctx.host.resolve(tmp))
        .timeout(SMALL_TIMEOUT);
    let out = ran(ctx, f, "sha256sum", ctx.host.run(&sum_cmd).await)?;
    let text = out.stdout_str();
    let sum = sum_in(&text).ok_or_else(|| {
        install(
            ctx,
            f,
            InstallCause::Unexpected {
                tool: "sha256sum",
                what: format!("printed {:?}", truncate(&text, 120)),
            },
        )
    })?;
    if let Some(e) = expected {
        if e != sum {
            return Err(install(
                ctx,
                f,
                InstallCause::ChecksumMismatch {
                    url: f.url.clone(),
                    expected: e.to_owned(),
                    got: sum,
                },
            ));
        }
    }
    host(
        ctx,
        f,
        "moving the download into the cache",
        ["mv", "-f"],
        &[tmp, path],
    )
    .await?;
    Ok((sum, size))
}

/// The `Content-Length` of the last response of `curl -sIL`, when there is one.
async fn content_length(ctx: &Ctx<'_>, url: &str) -> Option<u64> {
    let cmd = Cmd::new(["curl", "-sIL", "--retry", "2", url]).timeout(SMALL_TIMEOUT);
    let out = ctx.host.run(&cmd).await.ok()?;
    if !out.status.success() {
        return None;
    }
    out.stdout_str().lines().rev().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<u64>().ok())?
    })
}

async fn host<const N: usize>(
    ctx: &Ctx<'_>,
    f: &Fetch,
    doing: &str,
    argv: [&str; N],
    paths: &[&Path],
) -> Result<()> {
    let mut cmd = Cmd::new(argv).timeout(SMALL_TIMEOUT);
    for p in paths {
        cmd = cmd.with_arg(ctx.host.resolve(p));
    }
    ran(ctx, f, doing, ctx.host.run(&cmd).await).map(|_| ())
}

/// The SHA-256 a tool printed first, lowercase, or `None`.
fn sum_in(text: &str) -> Option<String> {
    let token = text.split_whitespace().next()?;
    token.parse::<Sha256>().ok().map(|s| s.as_str().to_owned())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A command run on the host for a download that must have succeeded: a failure to run it
/// or a non-zero exit is an install error saying what was being done.
fn ran(
    ctx: &Ctx<'_>,
    f: &Fetch,
    doing: &str,
    out: std::result::Result<Output, ExecError>,
) -> Result<Output> {
    let out = out.map_err(|source| {
        install(
            ctx,
            f,
            InstallCause::Run {
                doing: doing.to_owned(),
                source,
            },
        )
    })?;
    if !out.status.success() {
        return Err(install(
            ctx,
            f,
            InstallCause::Command {
                doing: doing.to_owned(),
                status: out.status,
                output: out.stderr_tail(500),
            },
        ));
    }
    Ok(out)
}

/// Errors of a download are install errors (exit 5) of the container it is for.
fn install(ctx: &Ctx<'_>, f: &Fetch, cause: InstallCause) -> Error {
    Error::Install {
        ct: ctx.ct.to_string(),
        what: format!("downloading {} on the host", f.file_name),
        cause,
    }
}

/// Appending one argument to a [`Cmd`] by value.
trait ArgExt {
    fn with_arg(self, arg: impl AsRef<std::ffi::OsStr>) -> Cmd;
}

impl ArgExt for Cmd {
    fn with_arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.argv.push(arg.as_ref().to_owned());
        self
    }
}
