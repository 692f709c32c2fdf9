//! The config step: compute the container config with the wanted passthrough entries, show the
//! diff, write it atomically under the lock, keep a backup.
//!
//! Only the main section is read and edited. The tool owns the lines
//! [`passthrough::Ownership`](crate::passthrough::Ownership) describes; it removes those it no
//! longer wants, keeps a wanted line that already exists exactly (wherever it is), adds the
//! missing ones where `lxc-conf` puts new lines, and leaves every other byte alone. An
//! unchanged config is not written at all (no backup either).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use exec_backend::{Cmd, ExecError, Host, WriteOptions};
use lxc_conf::Document;
use tracing::{debug, info};

use crate::ctconfig::{host_root, is_unprivileged, load, owned_flags, Loaded};
use crate::error::{Error, Input, Result};
use crate::host_libs;
use crate::inventory::{read_text, Gpu, Inventory, Majors, MigMinors, ProcDevices, MIG_MINORS};
use crate::passthrough::{self, WantedLine, Wants, Written};
use crate::report::StepStatus;
use crate::request::{Request, Strategy};
use crate::step::Ctx;

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
}

/// The lines the request wants in this config.
async fn wanted_lines(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    unprivileged: bool,
) -> Result<(Vec<WantedLine>, Written)> {
    let written = passthrough::resolve_mode(req.mode, ctx.target, inv)?;
    if gpus.is_empty() {
        // No GPU: the container gets no NVIDIA passthrough at all.
        return Ok((Vec::new(), written));
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
    let extra = if req.strategy == Strategy::HostLibs {
        host_libs::mounts(ctx, inv).await?
    } else {
        Vec::new()
    };
    let resolve = |p: &Path| ctx.host.resolve(p);
    let lines = passthrough::wanted(
        inv,
        &Wants {
            written,
            gpus,
            unprivileged,
            mig: mig.as_ref(),
            extra_mounts: &extra,
            resolve: ctx
                .settings
                .resolve_mount_sources
                .then_some(&resolve as &(dyn Fn(&Path) -> PathBuf + Sync)),
        },
    )?;
    Ok((lines, written))
}

/// Brings the document's owned lines to `wanted`. Returns how many lines were removed and
/// added.
fn reconcile(
    doc: &mut Document,
    wanted: &[WantedLine],
    devices: &ProcDevices,
    majors: &Majors,
    root: Option<&Path>,
) -> Result<(usize, usize)> {
    let owned = owned_flags(doc, devices, majors, root);
    let entries = doc.main().entries();
    let mut keep = vec![false; entries.len()];
    let mut missing = Vec::new();
    for w in wanted {
        let hit = entries.iter().enumerate().position(|(i, e)| {
            owned[i]
                && !keep[i]
                && match w {
                    WantedLine::Lxc { key, value } => e.key == *key && e.value == value,
                    WantedLine::Dev { value } => passthrough::is_dev_key(e.key) && e.value == value,
                }
        });
        match hit {
            Some(i) => keep[i] = true,
            None => missing.push(w),
        }
    }
    let remove: Vec<_> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| owned[*i] && !keep[*i])
        .map(|(_, e)| e.id)
        .collect();
    for id in &remove {
        doc.remove(*id);
    }
    for w in &missing {
        match w {
            WantedLine::Lxc { key, value } => {
                doc.push_lxc(key, value);
            }
            WantedLine::Dev { value } => {
                let n = doc
                    .main()
                    .next_free_index("dev", 255)
                    .ok_or_else(|| Error::BadInput {
                        what: Input::ContainerConfig,
                        value: "dev0..dev255".into(),
                        hint: "every devN index is taken; free some or use raw mode".into(),
                    })?;
                doc.set(&format!("dev{n}"), value);
            }
        }
    }
    Ok((remove.len(), missing.len()))
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
}

/// What `req` makes of the config `loaded` (read with `devices`, the host's device table):
/// the tool's lines brought to what the request wants, every other byte kept. Changes
/// nothing; `check` compares it with the config, the config step writes it.
pub(crate) async fn planned(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
    loaded: &Loaded,
    devices: &ProcDevices,
) -> Result<Planned> {
    let unprivileged = is_unprivileged(&loaded.doc);
    let (wanted, written) = wanted_lines(ctx, req, inv, gpus, unprivileged).await?;
    let root = host_root(ctx.host);
    let mut doc = loaded.doc.clone();
    let (removed, added) = reconcile(&mut doc, &wanted, devices, &inv.majors, root.as_deref())?;
    Ok(Planned {
        bytes: doc.to_bytes(),
        removed,
        added,
        written,
        unprivileged,
    })
}

/// Brings the config's passthrough entries to what `req` asks for.
pub(crate) async fn apply(
    ctx: &Ctx<'_>,
    req: &Request,
    inv: &Inventory,
    gpus: &[Gpu],
) -> Result<(ConfigOutcome, StepStatus, String)> {
    let loaded = load(ctx).await?;
    let devices = ctx.proc_devices().await?;
    let plan = planned(ctx, req, inv, gpus, &loaded, &devices).await?;
    let Loaded { path, bytes, .. } = loaded;
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
    };
    if !changed {
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
    if req.dry_run {
        return Ok((outcome, StepStatus::Planned, detail));
    }
    write(ctx, &path, &bytes, &new).await?;
    outcome.written = true;
    outcome.diff = unified_diff(&path, &bytes, &new, true);
    Ok((outcome, StepStatus::Changed, detail))
}

/// Takes the tool's lines out of the config. Returns the diff.
pub(crate) async fn remove(ctx: &Ctx<'_>, dry_run: bool) -> Result<(String, StepStatus, String)> {
    let Loaded {
        path,
        bytes,
        mut doc,
    } = load(ctx).await?;
    let devices = ctx.proc_devices().await?;
    let majors = devices.majors().unwrap_or(Majors {
        nvidia: crate::inventory::NVIDIA_MAJOR,
        nvidia_uvm: None,
        nvidia_caps: None,
        nvidia_modeset: None,
    });
    let root = host_root(ctx.host);
    let (removed, _) = reconcile(&mut doc, &[], &devices, &majors, root.as_deref())?;
    let new = doc.to_bytes();
    let diff = unified_diff(&path, &bytes, &new, false);
    if new == bytes {
        return Ok((
            diff,
            StepStatus::Ok,
            format!("{} has no NVIDIA passthrough entries", path.display()),
        ));
    }
    let detail = format!("{}: removed {removed} line(s)", path.display());
    if dry_run {
        return Ok((diff, StepStatus::Planned, detail));
    }
    write(ctx, &path, &bytes, &new).await?;
    let diff = unified_diff(&path, &bytes, &new, true);
    Ok((diff, StepStatus::Changed, detail))
}

/// Writes the new config under the config lock, checking nobody changed it since it was read,
/// with a backup of the previous bytes; then prunes old backups.
async fn write(ctx: &Ctx<'_>, path: &Path, old: &[u8], new: &[u8]) -> Result<()> {
    let dir = ctx.settings.backup_root.join(ctx.ct.as_str());
    let backup = dir.join(format!("{}.conf", timestamp(SystemTime::now())));
    let opts = WriteOptions {
        lock: Some(ctx.target.lock_path(ctx.ct)),
        lock_timeout: Some(ctx.settings.lock_timeout),
        expect_previous: Some(Some(old.to_vec())),
        backup_to: Some(backup.clone()),
        mode: None,
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
    prune_backups(ctx.host, &dir).await
}

/// Keeps the newest [`BACKUPS_KEPT`] backups of one container.
async fn prune_backups(host: &dyn Host, dir: &Path) -> Result<()> {
    let entries = match host.read_dir(dir).await {
        Ok(e) => e,
        Err(ExecError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(Error::exec(format!("cannot list {}", dir.display()), e)),
    };
    let mut names: Vec<String> = entries
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    if names.len() <= BACKUPS_KEPT {
        return Ok(());
    }
    let old = &names[..names.len() - BACKUPS_KEPT];
    let mut argv = vec!["rm".to_owned(), "-f".to_owned(), "--".to_owned()];
    argv.extend(
        old.iter()
            .map(|n| host.resolve(&dir.join(n)).display().to_string()),
    );
    let cmd = Cmd::new(argv);
    debug!(dir = %dir.display(), count = old.len(), "pruning old backups");
    host.run(&cmd)
        .await
        .and_then(|o| o.check(&host.name(), &cmd))
        .map_err(|e| Error::exec(format!("cannot prune old backups in {}", dir.display()), e))?;
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
mod tests;
