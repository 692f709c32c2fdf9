//! A container's config as read from the host: the file, its parsed document, and which of
//! its lines are the tool's.
//!
//! Every module that reads a config goes through here: the config step (before it edits),
//! and the read-back of the current passthrough ([`crate::current`]).

use std::path::{Path, PathBuf};

use exec_backend::{ExecError, Host};
use lxc_conf::{Dialect, Document};

use crate::error::{Error, Result};
use crate::inventory::{read_text, Majors, ProcDevices};
use crate::passthrough::{LineRef, Ownership};
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

/// The tool's lines of the main section, as flags parallel to `main().entries()`. `root`: see
/// [`host_root`].
pub(crate) fn owned_flags(
    doc: &Document,
    devices: &ProcDevices,
    majors: &Majors,
    root: Option<&Path>,
) -> Vec<bool> {
    let entries = doc.main().entries();
    let lines: Vec<LineRef<'_>> = entries
        .iter()
        .map(|e| LineRef {
            key: e.key,
            value: e.value,
        })
        .collect();
    Ownership {
        devices,
        majors,
        root,
    }
    .classify(&lines)
}
