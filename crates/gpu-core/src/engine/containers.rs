//! Questions about a host's containers that change nothing: which containers it has, and the
//! GPU assignment a container's config gives it now.

use std::path::PathBuf;

use exec_backend::CtRef;

use crate::assignment::{self, CurrentAssignment};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::request::Target;

use super::Engine;

impl Engine {
    /// The GPU assignment the container's config gives it now, read back from its
    /// passthrough entries (minors mapped to GPUs through the live inventory); `None` when the
    /// config has no NVIDIA entries. Changes nothing. `sync` re-applies it after a host driver
    /// upgrade.
    pub async fn current_assignment(&self, ct: &CtRef) -> Result<Option<CurrentAssignment>> {
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct);
        let inv = Inventory::read(ctx.host).await?;
        assignment::read(&ctx, &inv).await
    }

    /// The containers whose configs this target's host has: the CTIDs of
    /// `/etc/pve/lxc/*.conf` (numeric order), or the names under the LXC path with a `config`.
    pub async fn list_containers(&self) -> Result<Vec<CtRef>> {
        let dir = match &self.target {
            Target::Pve => PathBuf::from("/etc/pve/lxc"),
            Target::Lxc { lxcpath } => lxcpath.clone(),
        };
        let entries = match self.host.read_dir(&dir).await {
            Ok(e) => e,
            Err(exec_backend::ExecError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Error::exec(format!("cannot list {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let name = e.name.to_string_lossy().into_owned();
            match &self.target {
                Target::Pve => {
                    if let Some(id) = name.strip_suffix(".conf") {
                        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                            out.push(CtRef::new(id));
                        }
                    }
                }
                Target::Lxc { .. } => {
                    let cfg = dir.join(&name).join("config");
                    let has =
                        self.host.stat(&cfg).await.map_err(|e| {
                            Error::exec(format!("cannot stat {}", cfg.display()), e)
                        })?;
                    if has.is_some() {
                        out.push(CtRef::new(name));
                    }
                }
            }
        }
        if self.target == Target::Pve {
            out.sort_by_key(|c| c.as_str().parse::<u64>().unwrap_or(u64::MAX));
        }
        Ok(out)
    }
}
