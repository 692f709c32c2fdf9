//! The config step: compute the container config with the wanted passthrough entries, show the
//! diff, write it atomically under the lock, keep a backup.
//!
//! Only the main section is edited; the pending section is read, because Proxmox applies it
//! at the next start. The tool owns the lines [`Evidence`] proves to be NVIDIA passthrough;
//! it removes those it no longer wants, keeps a wanted line that already exists (wherever it
//! is), adds the missing ones where `lxc-conf` puts new lines, and leaves every other byte
//! alone. An unchanged config is not written at all (no backup either). A config whose
//! pending section would change the NVIDIA devices in a way no edit of the main section can
//! settle is refused ([`Error::PendingChange`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use exec_backend::{ExecError, WriteOptions};
use lxc_conf::Document;
use tracing::{info, warn};

use crate::ctconfig::{is_unprivileged, Loaded};
use crate::current::{self, Current, OwnedLine, Pending, Scan};
use crate::error::{Error, Input, Result};
use crate::host_check;
use crate::host_libs;
use crate::idmap::IdMap;
use crate::inventory::{read_text, Gpu, Inventory, MigMinors, MIG_MINORS};
use crate::passthrough::{self, Evidence, MountEntry, Passes, WantedLine, Wants, Written};
use crate::report::StepStatus;
use crate::request::{Request, Strategy};
use crate::select::GpuSelection;
use crate::step::Ctx;
use crate::version::VersionWanted;

/// How many previous versions of a config are kept under the backup root.
pub const BACKUPS_KEPT: usize = 10;

/// What the config step found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOutcome {
    /// Unified diff of the config (empty when unchanged).
    pub diff: String,
    /// Whether the config differs from what it should be (written unless dry run).
    pub changed: bool,
    /// Whether it was written.
    pub written: bool,
    /// Whether the container is unprivileged.
    pub unprivileged: bool,
    /// The userspace strategy the config is written for: the request's, or when it leaves the
    /// strategy open, the one the config shows (`host-libs` when it binds the host's
    /// userspace, else `runfile`).
    pub strategy: Strategy,
    /// The tool's lines before and after: what a live change of a running container compares.
    pub(crate) lines: LineChange,
}

/// One of the tool's lines: its key, its value, and what it passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToolLine {
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What it passes.
    pub passes: Passes,
}

impl From<&OwnedLine> for ToolLine {
    fn from(l: &OwnedLine) -> ToolLine {
        ToolLine {
            key: l.key.clone(),
            value: l.value.clone(),
            passes: l.passes.clone(),
        }
    }
}

/// The tool's lines of a config before and after the change, and the container's id map:
/// what a live change of a running container works from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LineChange {
    /// The tool's lines of the main section as the config was read: what the running
    /// container was started with.
    pub before: Vec<ToolLine>,
    /// The tool's lines the new config gives at the next start (its main section, with the
    /// pending section applied): what a live change gives the running container now.
    pub after: Vec<ToolLine>,
    /// The container's id map.
    pub idmap: IdMap,
}

/// The lines the request wants in this config, written as `written`.
async fn wanted_lines(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    written: Written,
    host_libs: &[MountEntry],
) -> Result<Vec<WantedLine>> {
    if gpus.is_empty() {
        // No GPU: the container gets no NVIDIA passthrough at all.
        return Ok(Vec::new());
    }
    let mig = if req.mig {
        let text = read_text(ctx.host, MIG_MINORS)
            .await?
            .ok_or_else(|| Error::NodeMissing {
                path: PathBuf::from(MIG_MINORS),
                hint: "the driver lists no MIG capabilities; MIG passthrough needs MIG-capable GPUs and a driver with nvidia-caps".into(),
            })?;
        Some(MigMinors::parse(&text))
    } else {
        None
    };
    let resolve = |p: &Path| ctx.host.resolve(p);
    passthrough::wanted(
        inv,
        &Wants {
            written,
            gpus,
            mig: mig.as_ref(),
            extra_mounts: host_libs,
            resolve: ctx
                .settings
                .resolve_mount_sources
                .then_some(&resolve as &(dyn Fn(&Path) -> PathBuf + Sync)),
        },
    )
}

/// Whether an existing line gives what a wanted line gives: the same `lxc.*` line, or a
/// `devN` entry that Proxmox reads as the same node (path, mode, owner, group, write access).
fn gives(line: &OwnedLine, w: &WantedLine) -> bool {
    match w {
        WantedLine::Lxc { key, value } => line.key == *key && line.value == *value,
        WantedLine::Dev { value } => {
            passthrough::is_dev_key(&line.key)
                && match (lxc_conf::parse_dev(&line.value), lxc_conf::parse_dev(value)) {
                    (Ok(a), Ok(b)) => a.same_node(&b),
                    _ => false,
                }
        }
    }
}

/// Pairs each wanted line with an effective line of `scan` that gives it; the wanted lines
/// no line gives, and for each line of `scan` whether it was paired.
fn pair<'w>(scan: &Scan, wanted: &'w [WantedLine]) -> (Vec<&'w WantedLine>, Vec<bool>) {
    let mut used = vec![false; scan.lines.len()];
    let mut missing = Vec::new();
    for w in wanted {
        let hit = scan
            .lines
            .iter()
            .enumerate()
            .position(|(i, l)| !used[i] && !l.superseded && gives(l, w));
        match hit {
            Some(i) => used[i] = true,
            None => missing.push(w),
        }
    }
    (missing, used)
}

/// How many lines a reconcile took out and put in.
struct Edits {
    removed: usize,
    added: usize,
}

/// Brings the document's lines to `wanted`, editing the main section only: the tool's lines
/// that give nothing wanted after the next start go (superseded ones too), a wanted line an
/// effective line already gives stays where it is (in the main or the pending section), the
/// others are added (`devN` at the lowest index the main section does not use and pending
/// neither sets nor deletes); with `remove_doubtful`, the main section's doubtful lines go.
/// Then the result is read again as Proxmox will read it after applying pending: when it does
/// not give exactly `wanted`, the pending section stands in the way and nothing is changed.
fn reconcile(
    ct: &str,
    doc: &mut Document,
    ev: &Evidence,
    wanted: &[WantedLine],
    remove_doubtful: bool,
) -> Result<Edits> {
    let scan = Scan::of(doc, ev);
    let (missing, used) = pair(&scan, wanted);
    let mut remove: Vec<_> = scan
        .lines
        .iter()
        .zip(&used)
        .filter(|(l, used)| !l.pending && !**used)
        .map(|(l, _)| l.id)
        .collect();
    if remove_doubtful {
        remove.extend(scan.doubtful.iter().filter(|d| !d.pending).map(|d| d.id));
    }
    for id in &remove {
        doc.remove(*id);
    }
    for w in &missing {
        match w {
            WantedLine::Lxc { key, value } => {
                doc.push_lxc(key, value);
            }
            WantedLine::Dev { value } => {
                let n = free_dev_index(doc, &scan.pending).ok_or_else(|| Error::BadInput {
                    what: Input::ContainerConfig,
                    value: "dev0..dev255".into(),
                    hint: "every devN index is taken (or named by the pending section); free some or use raw mode".into(),
                })?;
                doc.set(&format!("dev{n}"), value);
            }
        }
    }
    settled(ct, doc, ev, wanted)?;
    Ok(Edits {
        removed: remove.len(),
        added: missing.len(),
    })
}

/// The lowest `devN` index the main section does not use and the pending section neither
/// sets nor deletes (Proxmox would replace or delete that entry at the next start).
fn free_dev_index(doc: &Document, pending: &Pending) -> Option<u32> {
    let used: BTreeSet<u32> = doc
        .main()
        .entries()
        .iter()
        .filter_map(|e| e.key.strip_prefix("dev").and_then(|n| n.parse().ok()))
        .collect();
    (0..256).find(|n| !used.contains(n) && !pending.touches(&format!("dev{n}")))
}

/// Refuses a planned document that, once Proxmox applies its pending section, would not give
/// exactly `wanted`: a pending `devN` or raw line passes an NVIDIA device nobody asked for,
/// or pending raw lines take the place of the main section's.
fn settled(ct: &str, doc: &Document, ev: &Evidence, wanted: &[WantedLine]) -> Result<()> {
    let scan = Scan::of(doc, ev);
    let (missing, used) = pair(&scan, wanted);
    let extra: Vec<&OwnedLine> = scan
        .lines
        .iter()
        .zip(&used)
        .filter(|(l, used)| !l.superseded && !**used)
        .map(|(l, _)| l)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = extra
        .iter()
        .filter(|l| l.pending)
        .map(|l| format!("{} passes {}", l.at(), describe(&l.passes)))
        .collect();
    let mut keys: Vec<String> = extra
        .iter()
        .filter(|l| l.pending)
        .map(|l| {
            if l.key.starts_with("lxc.") {
                "lxc".to_owned()
            } else {
                l.key.clone()
            }
        })
        .collect();
    if scan.pending.replaces_raw() && missing.iter().any(|w| matches!(w, WantedLine::Lxc { .. })) {
        lines.push(
            "the pending section's lxc.* lines (or its delete: lxc) take the place of the main section's raw lines, the tool's included".into(),
        );
        keys.push("lxc".into());
    }
    keys.sort();
    keys.dedup();
    if lines.is_empty() {
        // Not the pending section's doing: a bug of the plan.
        return Err(Error::Internal {
            what: format!(
                "the planned config of container {ct} does not give the wanted passthrough"
            ),
        });
    }
    Err(Error::PendingChange {
        ct: ct.to_owned(),
        lines,
        keys,
    })
}

/// What a line passes, for a person.
fn describe(p: &Passes) -> String {
    match p {
        Passes::Rule { major, minor, .. } => match minor {
            Some(m) => format!("device {major}:{m}"),
            None => format!("every device of major {major}"),
        },
        Passes::Node { path, .. } => path.clone(),
        Passes::Userspace => "a file of the host's NVIDIA userspace".into(),
    }
}

/// The unified diff between two versions of the config at `path`: `(current)` against
/// `(planned)`, or once `new` is written, `(before)` against `(written)`.
pub(crate) fn unified_diff(path: &Path, old: &[u8], new: &[u8], written: bool) -> String {
    if old == new {
        return String::new();
    }
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let p = path.display().to_string();
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{p} ({})", if written { "before" } else { "current" }),
            &format!("{p} ({})", if written { "written" } else { "planned" }),
        )
        .to_string()
}

/// The config as a request wants it, computed from the config as read.
pub(crate) struct Planned {
    /// The new bytes (equal to the old ones when nothing changes).
    pub bytes: Vec<u8>,
    /// How many of the tool's lines go.
    pub removed: usize,
    /// How many lines come.
    pub added: usize,
    /// How the passthrough is written.
    pub written: Written,
    /// Whether the container is unprivileged.
    pub unprivileged: bool,
    /// The strategy the config is written for.
    pub strategy: Strategy,
    /// The `host-libs` mounts wanted (empty for another strategy), for the node record.
    pub host_libs: Vec<MountEntry>,
    /// The tool's lines before and after.
    pub lines: LineChange,
}

/// What `req` makes of the config `current`: the tool's lines brought to what the request
/// wants, every other byte kept. A request that leaves the strategy open keeps the one the
/// config shows ([`Current::strategy`]). Changes nothing; `check` compares it with the
/// config, the config step writes it.
pub(crate) async fn planned(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    current: &Current,
) -> Result<Planned> {
    let loaded = &current.loaded;
    let unprivileged = is_unprivileged(&loaded.doc);
    let written = passthrough::resolve_mode(req.mode, ctx.target, inv)?;
    let strategy = req.strategy.unwrap_or_else(|| current.strategy());
    let host_libs = if strategy == Strategy::HostLibs && !gpus.is_empty() {
        match &current.evidence.host_files {
            Some(files) if !files.is_empty() => files.clone(),
            // Not gathered, or the host has none now: ask again, which says what is missing.
            _ => host_libs::mounts(ctx, inv).await?,
        }
    } else {
        Vec::new()
    };
    let wanted = wanted_lines(ctx, req, inv, gpus, written, &host_libs).await?;
    let mut doc = loaded.doc.clone();
    let edits = reconcile(
        ctx.ct.as_str(),
        &mut doc,
        &current.evidence,
        &wanted,
        req.remove_doubtful,
    )?;
    let lines = LineChange {
        before: current
            .scan
            .lines
            .iter()
            .filter(|l| !l.pending)
            .map(ToolLine::from)
            .collect(),
        after: Scan::of(&doc, &current.evidence)
            .effective()
            .map(ToolLine::from)
            .collect(),
        idmap: IdMap::of(&loaded.doc, unprivileged),
    };
    Ok(Planned {
        bytes: doc.to_bytes(),
        removed: edits.removed,
        added: edits.added,
        written,
        unprivileged,
        strategy,
        host_libs,
        lines,
    })
}

/// Reads the config and its passthrough for `req`: the `host-libs` files are gathered when
/// the request asks for that strategy (once, for the evidence and the wanted lines alike).
pub(crate) async fn read_current(
    ctx: &Ctx<'_>,
    req: Option<&Request>,
    inv: Option<&Inventory>,
) -> Result<Current> {
    let host_files = match (req, inv) {
        (Some(r), Some(inv))
            if r.strategy == Some(Strategy::HostLibs) && r.gpus != GpuSelection::None =>
        {
            Some(host_libs::mounts(ctx, inv).await?)
        }
        _ => None,
    };
    current::read(ctx, inv, host_files).await
}

/// The config as read and as `req` wants it, before anything is written: [`prepare`] makes
/// it, [`commit`] writes it. In between, the caller may refuse the change (a live change that
/// would take away a device a process holds).
pub(crate) struct Prepared {
    path: PathBuf,
    bytes: Vec<u8>,
    evidence: Evidence,
    plan: Planned,
}

impl Prepared {
    /// Whether the config changes.
    pub fn changed(&self) -> bool {
        self.plan.bytes != self.bytes
    }

    /// The tool's lines before and after.
    pub fn lines(&self) -> &LineChange {
        &self.plan.lines
    }
}

/// Reads the config and computes what `req` makes of it; writes nothing.
pub(crate) async fn prepare(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<Prepared> {
    let current = read_current(ctx, Some(req), Some(inv)).await?;
    let plan = planned(ctx, req, inv, gpus, &current).await?;
    // The request left the strategy open: the host check could not judge the version.
    if req.strategy.is_none()
        && host_check::installs_userspace(req, plan.strategy, host_check::Then::Apply)
    {
        if let VersionWanted::Exact(v) = &req.driver_version {
            host_check::check_version(ctx, req, v, &inv.driver_version)?;
        }
    }
    let Current {
        loaded, evidence, ..
    } = current;
    let Loaded { path, bytes, .. } = loaded;
    Ok(Prepared {
        path,
        bytes,
        evidence,
        plan,
    })
}

/// Brings the config's passthrough entries to what `req` asks for: writes the prepared config
/// (unless it is unchanged or this is a dry run).
pub(crate) async fn commit(
    ctx: &Ctx<'_>,
    req: &Request,
    prepared: Prepared,
) -> Result<(ConfigOutcome, StepStatus, String)> {
    let Prepared {
        path,
        bytes,
        evidence,
        plan,
    } = prepared;
    let new = plan.bytes;
    let changed = new != bytes;
    let diff = unified_diff(&path, &bytes, &new, false);
    let how = match plan.written {
        Written::Raw(layout) => format!("raw mode, {}", layout.allow_key()),
        Written::Dev => "dev mode".to_owned(),
    };
    let mut outcome = ConfigOutcome {
        diff,
        changed,
        written: false,
        unprivileged: plan.unprivileged,
        strategy: plan.strategy,
        lines: plan.lines,
    };
    if req.dry_run {
        let status = if changed {
            StepStatus::Planned
        } else {
            StepStatus::Ok
        };
        let detail = if changed {
            format!(
                "{}: -{} +{} line(s) ({how})",
                path.display(),
                plan.removed,
                plan.added
            )
        } else {
            format!("{} up to date ({how})", path.display())
        };
        return Ok((outcome, status, detail));
    }
    if !changed {
        learn(ctx, evidence, &plan.host_libs).await;
        return Ok((
            outcome,
            StepStatus::Ok,
            format!("{} up to date ({how})", path.display()),
        ));
    }
    let detail = format!(
        "{}: -{} +{} line(s) ({how})",
        path.display(),
        plan.removed,
        plan.added
    );
    write(ctx, &path, &bytes, &new).await?;
    learn(ctx, evidence, &plan.host_libs).await;
    outcome.written = true;
    outcome.diff = unified_diff(&path, &bytes, &new, true);
    Ok((outcome, StepStatus::Changed, detail))
}

/// Adds what this run saw to the node record (the NVIDIA majors of `/proc/devices`, the
/// `host-libs` files wanted), once the config is what the run wants: after a write that
/// happened, or on a converged run (which heals a record an earlier run could not write). A
/// failed config write therefore changes nothing, not even the record. Writes only when
/// something is new (in a run, what an earlier container of the node wrote is not new). A
/// record that cannot be written is a warning, not a failure: the config is right, the record
/// is evidence for later runs, and the next run adds the same facts (until then a line it
/// would have covered is at worst doubtful, and kept).
async fn learn(ctx: &Ctx<'_>, ev: Evidence, host_libs: &[MountEntry]) {
    let bound = host_libs
        .iter()
        .map(|m| (m.source.display().to_string(), m.target.clone()));
    let learnt = ctx
        .facts
        .learn_record(ctx.host, &ctx.settings.record, ev.record, |r| {
            r.learn(&ev.devices, bound)
        })
        .await;
    if let Err(e) = learnt {
        warn!(
            ct = %ctx.ct,
            error = %crate::error::chain(&e),
            "the node record could not be updated; the next run adds the same facts"
        );
    }
}

/// Takes the tool's lines out of the config. Returns the diff.
pub(crate) async fn remove(ctx: &Ctx<'_>, dry_run: bool) -> Result<(String, StepStatus, String)> {
    // Without a driver there is no inventory; the record and /proc/devices still decide.
    let inv = match ctx.inventory().await {
        Ok(inv) => Some(inv),
        Err(Error::NoDriver { .. }) => None,
        Err(e) => return Err(e),
    };
    let Current {
        loaded, evidence, ..
    } = current::read(ctx, inv.as_ref(), None).await?;
    let Loaded {
        path,
        bytes,
        mut doc,
    } = loaded;
    let edits = reconcile(ctx.ct.as_str(), &mut doc, &evidence, &[], false)?;
    let new = doc.to_bytes();
    let diff = unified_diff(&path, &bytes, &new, false);
    if new == bytes {
        return Ok((
            diff,
            StepStatus::Ok,
            format!("{} has no NVIDIA passthrough entries", path.display()),
        ));
    }
    let detail = format!("{}: removed {} line(s)", path.display(), edits.removed);
    if dry_run {
        return Ok((diff, StepStatus::Planned, detail));
    }
    write(ctx, &path, &bytes, &new).await?;
    learn(ctx, evidence, &[]).await;
    let diff = unified_diff(&path, &bytes, &new, true);
    Ok((diff, StepStatus::Changed, detail))
}

/// Writes the new config under the config lock, checking nobody changed it since it was read,
/// with a backup of the previous bytes, and prunes old backups in the same go (one round trip
/// to the node): the newest [`BACKUPS_KEPT`] stay, and the oldest one, the config as it was
/// before the tool first changed it, is never pruned.
async fn write(ctx: &Ctx<'_>, path: &Path, old: &[u8], new: &[u8]) -> Result<()> {
    let dir = ctx.settings.backup_root.join(ctx.ct.as_str());
    let backup = dir.join(format!("{}.conf", timestamp(SystemTime::now())));
    let opts = WriteOptions {
        lock: Some(ctx.target.lock_path(ctx.ct)),
        lock_timeout: Some(ctx.settings.lock_timeout),
        expect_previous: Some(Some(old.to_vec())),
        backup_to: Some(backup.clone()),
        mode: None,
        keep_backups: Some(BACKUPS_KEPT),
    };
    ctx.host
        .write_file_atomic(path, new, &opts)
        .await
        .map_err(|e| match e {
            ExecError::LockTimeout { .. } | ExecError::Conflict { .. } => Error::LockBusy {
                ct: ctx.ct.to_string(),
                source: e,
            },
            e => Error::exec(
                format!("cannot write the config of container {}", ctx.ct),
                e,
            ),
        })?;
    info!(ct = %ctx.ct, path = %path.display(), backup = %backup.display(), "config written");
    Ok(())
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC: sorts in time order.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{dd:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
pub(crate) mod tests;
