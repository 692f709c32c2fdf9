//! GPU selection: `none`, `all`, indices, UUIDs, PCI bus ids, or a mix.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Input, Result};
use crate::inventory::{pci_key, Gpu, Inventory};

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
        let bad = |hint: String| Error::BadInput {
            what: Input::GpuSelection,
            value: s.to_owned(),
            hint,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad(
                "it is empty; give none, all, or GPU indices, UUIDs or PCI bus ids separated by commas"
                    .into(),
            ));
        }
        if t.eq_ignore_ascii_case("none") {
            return Ok(GpuSelection::None);
        }
        if t.eq_ignore_ascii_case("all") {
            return Ok(GpuSelection::All);
        }
        let mut items: Vec<Selector> = Vec::new();
        for part in t.split(',') {
            let p = part.trim();
            if p.is_empty() {
                return Err(bad(
                    "it has an empty element; separate GPUs by single commas".into(),
                ));
            }
            if p.eq_ignore_ascii_case("none") || p.eq_ignore_ascii_case("all") {
                return Err(bad(format!("{p} cannot be combined with other GPUs")));
            }
            let sel = Selector::parse(p).ok_or_else(|| {
                bad(format!(
                    "{p:?} is neither a GPU index (0, 1, ...), a UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) nor a PCI bus id (0000:00:06.0)"
                ))
            })?;
            if items.contains(&sel) {
                return Err(bad(format!("{p} is listed twice")));
            }
            items.push(sel);
        }
        Ok(GpuSelection::List(items))
    }
}

impl Selector {
    /// Parses one element, normalising UUIDs to lowercase with an uppercase `GPU-` prefix and
    /// PCI bus ids to `dddd:bb:dd.f`.
    fn parse(p: &str) -> Option<Selector> {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            if p.len() > 6 {
                return None;
            }
            return p.parse().ok().map(Selector::Index);
        }
        if p.len() > 4 && p[..4].eq_ignore_ascii_case("GPU-") {
            let rest = &p[4..];
            let groups: Vec<&str> = rest.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            let hex = groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
            if lens == [8, 4, 4, 4, 12] && hex {
                return Some(Selector::Uuid(format!("GPU-{}", rest.to_ascii_lowercase())));
            }
            return None;
        }
        let (d, b, v, f) = pci_key(p)?;
        if d > 0xffff {
            return None;
        }
        Some(Selector::PciBusId(format!("{d:04x}:{b:02x}:{v:02x}.{f:x}")))
    }

    fn matches(&self, gpu: &Gpu) -> bool {
        match self {
            Selector::Index(i) => gpu.index == *i,
            Selector::Uuid(u) => gpu.uuid.eq_ignore_ascii_case(u),
            Selector::PciBusId(_) => {
                let mine = pci_key(&gpu.pci_bus_id);
                mine.is_some() && mine == self.pci()
            }
        }
    }

    fn pci(&self) -> Option<(u32, u32, u32, u32)> {
        match self {
            Selector::PciBusId(b) => pci_key(b),
            _ => None,
        }
    }
}

impl GpuSelection {
    /// The selected GPUs of `inv`, in index order. A GPU the host lacks is
    /// [`Error::GpuNotPresent`] naming the GPUs it has.
    pub fn resolve<'a>(&self, inv: &'a Inventory) -> Result<Vec<&'a Gpu>> {
        let items = match self {
            GpuSelection::None => return Ok(Vec::new()),
            GpuSelection::All => return Ok(inv.gpus.iter().collect()),
            GpuSelection::List(items) => items,
        };
        let mut out: Vec<&Gpu> = Vec::new();
        for it in items {
            let gpu =
                inv.gpus
                    .iter()
                    .find(|g| it.matches(g))
                    .ok_or_else(|| Error::GpuNotPresent {
                        wanted: GpuSelection::List(vec![it.clone()]).to_string(),
                        available: describe(&inv.gpus),
                    })?;
            if out.iter().any(|g| g.index == gpu.index) {
                return Err(Error::BadInput {
                    what: Input::GpuSelection,
                    value: self.to_string(),
                    hint: format!("GPU {} is selected twice", gpu.index),
                });
            }
            out.push(gpu);
        }
        out.sort_by_key(|g| g.index);
        Ok(out)
    }
}

/// The host's GPUs for messages: `0 (GPU-..., 0000:00:06.0), 1 (...)`, or `no GPUs`.
pub(crate) fn describe(gpus: &[Gpu]) -> String {
    if gpus.is_empty() {
        return "no GPUs".into();
    }
    gpus.iter()
        .map(|g| format!("{} ({}, {})", g.index, g.uuid, g.pci_bus_id))
        .collect::<Vec<_>>()
        .join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{CgroupLayout, Majors};

    fn inv() -> Inventory {
        let gpu = |index, minor: u32, bus: &str, uuid: &str| Gpu {
            index,
            minor,
            pci_bus_id: bus.into(),
            uuid: uuid.into(),
            model: "NVIDIA H200".into(),
        };
        Inventory {
            driver_version: "580.159.04".parse().unwrap(),
            gpus: vec![
                gpu(
                    0,
                    1,
                    "0000:00:06.0",
                    "GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836",
                ),
                gpu(
                    1,
                    0,
                    "0000:00:07.0",
                    "GPU-7fc3e24c-6572-362c-3b22-0d1167fae655",
                ),
            ],
            majors: Majors {
                nvidia: 195,
                nvidia_uvm: Some(238),
                nvidia_caps: Some(241),
                nvidia_modeset: None,
            },
            nodes: vec![],
            cgroup: CgroupLayout::V2,
            pve_version: None,
        }
    }

    fn idx(sel: &str) -> Vec<u32> {
        let inv = inv();
        sel.parse::<GpuSelection>()
            .unwrap()
            .resolve(&inv)
            .unwrap()
            .iter()
            .map(|g| g.index)
            .collect()
    }

    #[test]
    fn parses_keywords_indices_uuids_and_bus_ids() {
        assert_eq!("none".parse::<GpuSelection>().unwrap(), GpuSelection::None);
        assert_eq!(" ALL ".parse::<GpuSelection>().unwrap(), GpuSelection::All);
        assert_eq!(idx("0, 1"), vec![0, 1]);
        assert_eq!(idx("1,0"), vec![0, 1]);
        assert_eq!(idx("GPU-7FC3E24C-6572-362c-3b22-0d1167fae655"), vec![1]);
        assert_eq!(idx("00000000:00:07.0"), vec![1]);
        assert_eq!(idx("00:06.0"), vec![0]);
        assert_eq!(idx("0000:00:07.0, 0"), vec![0, 1]);
        assert_eq!(idx("all"), vec![0, 1]);
        assert!(idx("none").is_empty());
    }

    #[test]
    fn index_is_bus_order_not_minor() {
        let inv = inv();
        let g = "0".parse::<GpuSelection>().unwrap().resolve(&inv).unwrap();
        assert_eq!(g[0].minor, 1);
    }

    #[test]
    fn rejects_malformed_lists() {
        for bad in [
            "",
            " ",
            ",",
            "0,",
            ",1",
            "0,,1",
            "0,0",
            "1, 1",
            "x",
            "-1",
            "0 1",
            "all,0",
            "none,1",
            "GPU-123",
            "0000:00:06",
            "1.5",
            "0000:zz:06.0",
            "+1",
            "GPU-7fc3e24c-6572-362c-3b22-0d1167fae65g",
            "00:06.0,0000:00:06.0",
        ] {
            let e = bad.parse::<GpuSelection>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::BadInput, "{bad:?}");
        }
    }

    #[test]
    fn absent_gpu_names_the_present_ones() {
        let inv = inv();
        for sel in [
            "2",
            "GPU-00000000-0000-0000-0000-000000000000",
            "0000:00:08.0",
        ] {
            let e = sel
                .parse::<GpuSelection>()
                .unwrap()
                .resolve(&inv)
                .unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::HostPrecondition);
            let msg = e.to_string();
            assert!(msg.contains("0 (GPU-8ec68ad8"), "{msg}");
            assert!(msg.contains("1 (GPU-7fc3e24c"), "{msg}");
        }
    }

    #[test]
    fn same_gpu_twice_through_different_selectors_is_bad_input() {
        let inv = inv();
        let e = "0,0000:00:06.0"
            .parse::<GpuSelection>()
            .unwrap()
            .resolve(&inv)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadInput);
    }
}
