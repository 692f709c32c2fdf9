//! GPU selection: `none`, `all`, indices, UUIDs, PCI bus ids, or a mix.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::inventory::{Gpu, Inventory};

/// One element of a selection list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// nvidia-smi index.
    Index(u32),
    /// `GPU-...` UUID (case-insensitive).
    Uuid(String),
    /// PCI bus id in any common form (`0000:00:06.0`, `00000000:00:06.0`, `00:06.0`).
    PciBusId(String),
}

/// Which GPUs a container gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuSelection {
    /// No GPU.
    None,
    /// Every GPU of the host.
    All,
    /// These GPUs.
    List(Vec<Selector>),
}

impl FromStr for GpuSelection {
    type Err = Error;

    /// Parses `none`, `all`, or a comma-separated list (spaces tolerated). Empty, duplicate
    /// and malformed elements are errors.
    fn from_str(s: &str) -> Result<GpuSelection> {
        let _ = s;
        todo!("issue 4: GPU selection parsing")
    }
}

impl GpuSelection {
    /// The selected GPUs of `inv`, in index order. A GPU the host lacks is
    /// [`Error::GpuNotPresent`] naming the GPUs it has.
    pub fn resolve<'a>(&self, inv: &'a Inventory) -> Result<Vec<&'a Gpu>> {
        let _ = inv;
        todo!("issue 4: GPU selection resolving")
    }
}

impl fmt::Display for GpuSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSelection::None => f.write_str("none"),
            GpuSelection::All => f.write_str("all"),
            GpuSelection::List(items) => {
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match it {
                        Selector::Index(n) => write!(f, "{n}")?,
                        Selector::Uuid(u) => f.write_str(u)?,
                        Selector::PciBusId(b) => f.write_str(b)?,
                    }
                }
                Ok(())
            }
        }
    }
}
