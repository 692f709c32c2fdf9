//! Host-side downloads into the cache (`Settings::cache_dir`): the NVIDIA runfile and the CUDA
//! keyring package.
//!
//! Rules:
//! - The file is downloaded with `curl` on the host to a temporary name in the cache directory
//!   (`.<name>.part-<pid>-<n>`), its SHA-256 is checked with `sha256sum`, and only then is it
//!   renamed (`mv`) to its final name. A partial or unverified file never carries the final name;
//!   a failed download removes its temporary file, and the next download of the same file (under
//!   the host lock, so no live run is writing one) removes those a killed run left.
//! - Beside the final file, `<name>.sha256` records `<hex> <size> <how>`, `how` being where the
//!   checksum came from: `given` (the caller's), `published` (the `.sha256sum` file beside the
//!   download) or `first-download` (no checksum existed and the caller chose to trust the first
//!   download). A later run trusts a cached file whose size matches that record, whose record
//!   matches the expected sum when one is given, and whose `how` the run accepts (a run that
//!   did not opt in to trusting a first download does not take a file that was), without
//!   reading it again. A record of two fields (older versions) counts as `published`.
//! - One download per file and host, however many runs want it:
//!   - within one process, a mutex keyed by the node's name and the file's path: concurrent
//!     `apply` calls for several containers of a node wait for the first, then find the file
//!     cached. Different nodes (each with its own cache) download at the same time;
//!   - across processes on the host, an exclusive lock on `.<name>.lock` in the cache directory
//!     ([`Host::lock`](exec_backend::Host::lock), a `flock` held for the whole check, locate,
//!     download, verify, rename and record), so that runs started together (an orchestrator
//!     starting one `apply` per container) download it once: the first one downloads, the others
//!     wait and find it cached. A run that dies lets go of the lock with it.
//! - Where the file is: with one source, its URL is fetched as it is. With several (NVIDIA's
//!   download locations for a driver version), each is asked with one HEAD (`curl -sIL`), in
//!   order, until one answers 200; a 4xx says "not here", a failure to reach it stops the run.
//!   The one used is logged and returned ([`Origin`]); when none has it, the error lists each
//!   URL and its answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use exec_backend::{Cmd, ExecError, FileKind, Output};
use tracing::info;

use crate::error::{Error, Input, InstallCause, Result};
use crate::report::Event;
use crate::step::Ctx;
use crate::values::Sha256;

/// How often the temporary file is looked at while curl runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(300);
/// The limit for one download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a run waits for another process's download of the same file.
const LOCK_WAIT: Duration = Duration::from_secs(3600 + 600);
/// The limit for the small requests (HEAD, checksum file, sha256sum, mv).
const SMALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The download locks of this process, by node (the host's name) and cache path: nodes of a
/// cluster each have their own cache, so their downloads run at the same time.
type LockKey = (String, PathBuf);

static LOCKS: LazyLock<Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static SEQ: AtomicU64 = AtomicU64::new(0);

/// One place a download may come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// The URL.
    pub url: String,
    /// What it is, for messages: `NVIDIA's datacenter (tesla) downloads`, `the given URL`.
    pub label: String,
}

/// How a download's checksum is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Checksum {
    /// The caller's.
    Given(Sha256),
    /// Read from `<url>.sha256sum` (NVIDIA publishes one beside its XFree86 runfiles). Where
    /// none is published, the first download is trusted only with `trust_first`; otherwise
    /// nothing is downloaded and the error says so.
    Published {
        /// Trust the first download where no checksum is published.
        trust_first: bool,
    },
    /// None exists for this file (the CUDA keyring package): the first download is trusted and
    /// its sum recorded.
    FirstDownload,
}

/// Where a cached file's checksum came from (the record's third field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SumFrom {
    /// The caller gave it.
    Given,
    /// Published beside the download.
    Published,
    /// Nothing to check against: the first download was trusted.
    FirstDownload,
}

impl SumFrom {
    fn as_str(self) -> &'static str {
        match self {
            SumFrom::Given => "given",
            SumFrom::Published => "published",
            SumFrom::FirstDownload => "first-download",
        }
    }

    fn parse(s: Option<&str>) -> Option<SumFrom> {
        match s {
            None | Some("published") => Some(SumFrom::Published),
            Some("given") => Some(SumFrom::Given),
            Some("first-download") => Some(SumFrom::FirstDownload),
            Some(_) => None,
        }
    }

    /// For messages: `checked against NVIDIA's published checksum`.
    pub fn describe(self) -> &'static str {
        match self {
            SumFrom::Given => "checked against the given checksum",
            SumFrom::Published => "checked against the published checksum",
            SumFrom::FirstDownload => {
                "no checksum published: the first download was trusted, as asked"
            }
        }
    }
}

/// What to download.
#[derive(Clone, Debug)]
pub(crate) struct Fetch {
    /// Where it may be, in order (see the module docs). Never empty.
    pub sources: Vec<Source>,
    /// The file name in the cache.
    pub file_name: String,
    /// How its checksum is known.
    pub checksum: Checksum,
}

/// Where a file this run downloaded came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The source used.
    pub source: Source,
    /// Where its checksum came from.
    pub sum_from: SumFrom,
}

/// A file in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    /// Its host path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 (lowercase hex).
    pub sha256: String,
    /// Set when this call downloaded it: from where.
    pub downloaded: Option<Origin>,
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

/// Makes sure the file is in the cache and verified; downloads it when it is not (once per
/// host, see the module docs).
pub(crate) async fn fetch(ctx: &Ctx<'_>, f: &Fetch) -> Result<Cached> {
    let first = f.sources.first().map(|s| s.url.as_str()).unwrap_or("");
    check_file_name(&f.file_name, first)?;
    let dir = ctx.settings.cache_dir.clone();
    let path = dir.join(&f.file_name);
    let lock = {
        let mut map = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((ctx.host.name(), path.clone()))
            .or_default()
            .clone()
    };
    let _in_process = lock.lock().await;
    if let Some(c) = cached(ctx, &path, &f.checksum).await {
        return Ok(c);
    }
    let lock_path = dir.join(format!(".{}.lock", f.file_name));
    let _on_host = ctx
        .host
        .lock(&lock_path, LOCK_WAIT)
        .await
        .map_err(|source| {
            install(
                ctx,
                f,
                InstallCause::Run {
                    doing: format!(
                        "waiting for the lock {} (another run downloading the same file)",
                        lock_path.display()
                    ),
                    source,
                },
            )
        })?;
    // Another process may have downloaded it while this one waited.
    if let Some(c) = cached(ctx, &path, &f.checksum).await {
        return Ok(c);
    }
    remove_leftovers(ctx, &dir, &f.file_name).await;
    let (source, total) = locate(ctx, f).await?;
    let (expected, sum_from) = match &f.checksum {
        Checksum::Given(s) => (Some(s.as_str().to_owned()), SumFrom::Given),
        Checksum::Published { trust_first } => {
            match (published_sum(ctx, f, &source.url).await?, trust_first) {
                (Some(s), _) => (Some(s), SumFrom::Published),
                (None, true) => (None, SumFrom::FirstDownload),
                (None, false) => {
                    return Err(install(
                        ctx,
                        f,
                        InstallCause::NoChecksum {
                            url: format!("{}.sha256sum", source.url),
                        },
                    ))
                }
            }
        }
        Checksum::FirstDownload => (None, SumFrom::FirstDownload),
    };
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.part-{}-{n}", f.file_name, std::process::id()));
    let result =
        download_verify(ctx, f, &source.url, total, &tmp, &path, expected.as_deref()).await;
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
        .stdin(format!("{sum} {size} {}\n", sum_from.as_str()))
        .timeout(SMALL_TIMEOUT);
    ran(
        ctx,
        f,
        "recording its checksum",
        ctx.host.run(&record).await,
    )?;
    info!(
        file = %f.file_name,
        url = %source.url,
        from = %source.label,
        sha256 = %sum,
        checksum = sum_from.as_str(),
        "downloaded into the cache"
    );
    Ok(Cached {
        path,
        size,
        sha256: sum,
        downloaded: Some(Origin { source, sum_from }),
    })
}

/// Removes the temporary files of downloads of `name` that a killed run left behind
/// (`.<name>.part-<pid>-<n>`). Only under the host lock: no live run is writing one then.
async fn remove_leftovers(ctx: &Ctx<'_>, dir: &Path, name: &str) {
    let Ok(entries) = ctx.host.read_dir(dir).await else {
        return;
    };
    let prefix = format!(".{name}.part-");
    for e in entries {
        if e.meta.kind == FileKind::File && e.name.to_string_lossy().starts_with(&prefix) {
            let rm = Cmd::new(["rm", "-f"])
                .timeout(SMALL_TIMEOUT)
                .with_arg(ctx.host.resolve(&dir.join(&e.name)));
            let _ = ctx.host.run(&rm).await;
        }
    }
}

/// The cached file when it is whole by its record and its record is one `checksum` accepts.
async fn cached(ctx: &Ctx<'_>, path: &Path, checksum: &Checksum) -> Option<Cached> {
    let meta = ctx.host.stat(path).await.ok()??;
    if meta.kind != FileKind::File {
        return None;
    }
    let record = ctx.host.read_file(&sum_path(path)).await.ok()?;
    let record = String::from_utf8(record).ok()?;
    let mut it = record.split_whitespace();
    let (sum, size) = (it.next()?, it.next()?.parse::<u64>().ok()?);
    let from = SumFrom::parse(it.next())?;
    let accepted = match checksum {
        Checksum::Given(s) => s.as_str() == sum,
        Checksum::Published { trust_first } => *trust_first || from != SumFrom::FirstDownload,
        Checksum::FirstDownload => true,
    };
    (size == meta.size && accepted).then(|| Cached {
        path: path.to_owned(),
        size,
        sha256: sum.to_owned(),
        downloaded: None,
    })
}

fn sum_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// The source to download from, and its size when the server said.
async fn locate(ctx: &Ctx<'_>, f: &Fetch) -> Result<(Source, Option<u64>)> {
    if let [only] = f.sources.as_slice() {
        let size = head(ctx, &only.url)
            .await
            .ok()
            .and_then(|h| h.length.filter(|_| h.status == 200));
        return Ok((only.clone(), size));
    }
    let mut tried = Vec::new();
    for s in &f.sources {
        let h = head(ctx, &s.url)
            .await
            .map_err(|cause| install(ctx, f, cause))?;
        if h.status == 200 {
            info!(file = %f.file_name, url = %s.url, from = %s.label, "found");
            return Ok((s.clone(), h.length));
        }
        tried.push(format!("{} ({})", s.url, h.status));
    }
    Err(install(
        ctx,
        f,
        InstallCause::NotPublished {
            file: f.file_name.clone(),
            tried,
        },
    ))
}

/// The answer to one HEAD: the last response's status and `Content-Length`.
struct Head {
    status: u16,
    length: Option<u64>,
}

/// One HEAD with redirects followed (`curl -sSIL`). Failing to reach the server is an error;
/// any HTTP status is an answer.
async fn head(ctx: &Ctx<'_>, url: &str) -> std::result::Result<Head, InstallCause> {
    let cmd = Cmd::new(["curl", "-sSIL", "--retry", "2", url]).timeout(SMALL_TIMEOUT);
    let doing = format!("asking {url} (HEAD)");
    let out = ctx
        .host
        .run(&cmd)
        .await
        .map_err(|source| InstallCause::Run {
            doing: doing.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(InstallCause::Command {
            doing,
            status: out.status,
            output: out.stderr_tail(500),
        });
    }
    let text = out.stdout_str();
    // The headers of the last response (after the last status line).
    let last = text
        .match_indices("HTTP/")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .last()
        .map_or("", |(i, _)| &text[i..]);
    let status = last
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| InstallCause::Unexpected {
            tool: "curl",
            what: format!(
                "printed no HTTP status for {url}: {:?}",
                truncate(&text, 120)
            ),
        })?;
    let length = last.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<u64>().ok())?
    });
    Ok(Head { status, length })
}

/// The checksum published at `<url>.sha256sum`, `None` when the server has none (403, 404,
/// 410). Anything else that goes wrong is an error: it cannot say that none is published.
async fn published_sum(ctx: &Ctx<'_>, f: &Fetch, url: &str) -> Result<Option<String>> {
    let url = format!("{url}.sha256sum");
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
        let err = out.stderr_tail(500);
        let absent = ["403", "404", "410"]
            .iter()
            .any(|c| err.contains(&format!("returned error: {c}")));
        if out.status == exec_backend::ExitStatus::Code(22) && absent {
            return Ok(None);
        }
        return Err(unusable(format!("curl failed ({}): {err}", out.status)));
    }
    let text = out.stdout_str();
    sum_in(&text).map(Some).ok_or_else(|| {
        unusable(format!(
            "it does not start with a SHA-256 checksum: {:?}",
            truncate(&text, 120)
        ))
    })
}

async fn download_verify(
    ctx: &Ctx<'_>,
    f: &Fetch,
    url: &str,
    total: Option<u64>,
    tmp: &Path,
    path: &Path,
    expected: Option<&str>,
) -> Result<(String, u64)> {
    let what = format!("download {}", f.file_name);
    let curl = Cmd::new(["curl", "-fsSL", "--retry", "3", "-o"])
        .with_arg(ctx.host.resolve(tmp))
        .with_arg(url)
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
    ran(ctx, f, &format!("downloading {url}"), out)?;
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
                    url: url.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_say_where_the_sum_came_from() {
        for from in [SumFrom::Given, SumFrom::Published, SumFrom::FirstDownload] {
            assert_eq!(SumFrom::parse(Some(from.as_str())), Some(from));
        }
        // Records of older versions have two fields; those sums were published or given.
        assert_eq!(SumFrom::parse(None), Some(SumFrom::Published));
        assert_eq!(SumFrom::parse(Some("whatever")), None);
    }
}
