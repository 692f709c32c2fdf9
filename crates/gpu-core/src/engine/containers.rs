//! Questions about a host's containers that change nothing: which containers it has, and the
//! GPU assignment a container's config gives it now.

use exec_backend::ExecError;

use crate::assignment::{self, CurrentAssignment};
use crate::error::{Error, Result};
use crate::target::Target;
use crate::values::CtId;

use super::Engine;

impl Engine {
    /// The GPU assignment the container's config gives it now, read back from its
    /// passthrough entries (minors mapped to GPUs through the live inventory); `None` when the
    /// config has no NVIDIA entries. Changes nothing. `sync` re-applies it after a host driver
    /// upgrade.
    pub async fn current_assignment(&self, ct: &CtId) -> Result<Option<CurrentAssignment>> {
        self.admit(ct)?;
        let counted = self.counted();
        let ctx = self.ctx(&counted, ct.as_ct_ref());
        let inv = ctx.inventory().await?;
        assignment::read(&ctx, ct, &inv).await
    }

    /// The containers whose configs this target's host has: the CTIDs of
    /// `/etc/pve/lxc/*.conf`, or the names under the LXC path with a `config`; in id order.
    /// Names that are not valid ids are left out.
    pub async fn list_containers(&self) -> Result<Vec<CtId>> {
        let dir = self.target.containers_dir();
        let entries = match self.host.read_dir(&dir).await {
            Ok(e) => e,
            Err(ExecError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Error::exec(format!("cannot list {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let name = e.name.to_string_lossy();
            match &self.target {
                Target::Pve => {
                    if let Some(ct) = name.strip_suffix(".conf").and_then(|id| CtId::pve(id).ok()) {
                        out.push(ct);
                    }
                }
                Target::Lxc { .. } => {
                    let Ok(ct) = CtId::lxc(&name) else {
                        continue;
                    };
                    let cfg = self.target.config_path(ct.as_ct_ref());
                    let has =
                        self.host.stat(&cfg).await.map_err(|e| {
                            Error::exec(format!("cannot stat {}", cfg.display()), e)
                        })?;
                    if has.is_some() {
                        out.push(ct);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
