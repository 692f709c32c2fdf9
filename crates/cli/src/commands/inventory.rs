//! `inventory`: the host's driver, GPUs, device majors and nodes.

use std::io::Write;

use gpu_core::{Engine, Inventory};
use serde::Serialize;

use super::Worst;
use crate::error::CliError;
use crate::output::{JsonError, Printer};

/// Prints the inventory.
pub async fn run(engine: &Engine, printer: &Printer) -> Result<Worst, CliError> {
    let inv = engine.inventory().await?;
    if printer.json() {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            inv: &'a Inventory,
            error: Option<JsonError>,
        }
        printer.json_out(
            &Out {
                inv: &inv,
                error: None,
            },
            0,
        )?;
        return Ok(None);
    }
    printer.out(|w| {
        writeln!(w, "driver   {}", inv.driver_version)?;
        writeln!(
            w,
            "host     {}",
            inv.pve_version
                .as_deref()
                .map(|v| format!("Proxmox VE {v}"))
                .unwrap_or_else(|| "not Proxmox VE".into())
        )?;
        writeln!(w, "cgroup   {}", inv.cgroup.allow_key())?;
        let opt = |m: Option<u32>| m.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
        writeln!(
            w,
            "majors   nvidia {}, nvidia-uvm {}, nvidia-caps {}",
            inv.majors.nvidia,
            opt(inv.majors.nvidia_uvm),
            opt(inv.majors.nvidia_caps)
        )?;
        writeln!(w, "GPUs")?;
        for gpu in &inv.gpus {
            writeln!(
                w,
                "  {}  /dev/nvidia{}  {}  {}  {}",
                gpu.index, gpu.minor, gpu.pci_bus_id, gpu.uuid, gpu.model
            )?;
        }
        writeln!(w, "nodes")?;
        for n in &inv.nodes {
            let rdev = n
                .rdev
                .map(|(a, b)| format!("{a}:{b}"))
                .unwrap_or_else(|| "-".into());
            writeln!(w, "  {:<30} {:<8} {}", n.path.display(), rdev, n.kind)?;
        }
        Ok(())
    })?;
    Ok(None)
}
