//! A container's config as read from the host: the file, its parsed document, and the evidence
//! that says which of its lines are the tool's.
//!
//! Every module that reads a config goes through here: the config step (before it edits),
//! and the read-back of the current passthrough ([`crate::current`]).

use std::path::{Path, PathBuf};

use exec_backend::{ExecError, Host};
use lxc_conf::{Dialect, Document};

use crate::error::{Error, Result};
use crate::host_libs;
use crate::inventory::{read_text, Inventory};
use crate::passthrough::{Evidence, MountEntry};
use crate::step::Ctx;
use crate::target::Target;

/// A config as read: its path, bytes and parsed document.
pub(crate) struct Loaded {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub doc: Document,
}

/// Reads and parses the container's config; refuses a locked one.
pub(crate) async fn load(ctx: &Ctx<'_>) -> Result<Loaded> {
    let path = ctx.target.config_path(ctx.ct);
    let bytes = match ctx.host.read_file(&path).await {
        Ok(b) => b,
        Err(e @ ExecError::NotFound { .. }) => {
            if ct_known_absent(ctx).await {
                return Err(Error::CtNotFound {
                    ct: ctx.ct.to_string(),
                    path,
                });
            }
            return Err(Error::ConfigUnreadable {
                ct: ctx.ct.to_string(),
                path,
                source: e,
            });
        }
        // A node that does not answer is the host's failure, not the config's.
        Err(e @ ExecError::Ssh { .. }) => {
            return Err(Error::exec(
                format!(
                    "cannot read the config of container {} at {}",
                    ctx.ct,
                    path.display()
                ),
                e,
            ))
        }
        Err(e) => {
            return Err(Error::ConfigUnreadable {
                ct: ctx.ct.to_string(),
                path,
                source: e,
            })
        }
    };
    let doc = Document::parse(&bytes, ctx.target.dialect());
    if ctx.target.dialect() == Dialect::Pve {
        if let Some(lock) = doc.main().get("lock") {
            return Err(Error::Locked {
                ct: ctx.ct.to_string(),
                lock: lock.to_owned(),
            });
        }
    }
    Ok(Loaded { path, bytes, doc })
}

/// On Proxmox, whether the cluster's `/etc/pve/.vmlist` says no container has this id.
async fn ct_known_absent(ctx: &Ctx<'_>) -> bool {
    if *ctx.target != Target::Pve {
        return false;
    }
    let Ok(Some(text)) = read_text(ctx.host, "/etc/pve/.vmlist").await else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    match v.get("ids").and_then(|ids| ids.as_object()) {
        Some(ids) => !ids
            .get(ctx.ct.as_str())
            .is_some_and(|e| e.get("type").and_then(|t| t.as_str()) == Some("lxc")),
        None => false,
    }
}

/// Whether the container is unprivileged: `unprivileged: 1` (PVE), `lxc.idmap` lines (LXC).
pub(crate) fn is_unprivileged(doc: &Document) -> bool {
    let main = doc.main();
    match doc.dialect() {
        Dialect::Pve => main.get("unprivileged").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        }),
        Dialect::Lxc => main
            .entries()
            .iter()
            .any(|e| e.key == "lxc.idmap" && !e.value.trim().is_empty()),
    }
}

/// The directory a host under a root maps `/` to (`None` for a host without one): mount
/// sources under it are recognised as the host paths they stand for.
pub(crate) fn host_root(host: &dyn Host) -> Option<PathBuf> {
    let root = host.resolve(Path::new("/"));
    (root != Path::new("/")).then_some(root)
}

/// The evidence the ownership rule decides by ([`Evidence`]): the host's `/proc/devices`, the
/// node record, and, when a line of `doc` needs them, the files the `host-libs` strategy
/// binds now (only with `inv`: without a driver there are none). `host_files`: those files
/// when the caller has them already.
pub(crate) async fn evidence(
    ctx: &Ctx<'_>,
    doc: &Document,
    inv: Option<&Inventory>,
    host_files: Option<Vec<MountEntry>>,
) -> Result<Evidence> {
    let devices = ctx.proc_devices().await?;
    let record = ctx.facts.record(ctx.host, &ctx.settings.record).await?;
    let mut ev = Evidence {
        devices,
        record,
        host_files,
        root: host_root(ctx.host),
    };
    let needed = || {
        let pending = doc.pending();
        let lines = doc
            .main()
            .entries()
            .into_iter()
            .chain(pending.iter().flat_map(|p| p.entries()));
        lines
            .into_iter()
            .any(|e| ev.needs_host_files(e.key, e.value))
    };
    if let Some(inv) = inv.filter(|_| needed()) {
        ev.host_files = Some(match host_libs::mounts(ctx, inv).await {
            Ok(m) => m,
            // No userspace of this version on the host: it binds nothing now.
            Err(Error::HostUserspaceMissing { .. }) => Vec::new(),
            Err(e) => return Err(e),
        });
    }
    Ok(ev)
}
