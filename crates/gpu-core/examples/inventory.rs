//! Prints the inventory of a host: `cargo run -p gpu-core --example inventory -- examples/h200x2`
//! reads a captured host tree (paths resolved under it, as the CLI's `--root` does); without
//! an argument it reads this machine.

use std::process::ExitCode;

use exec_backend::LocalHost;
use gpu_core::Inventory;

#[tokio::main]
async fn main() -> ExitCode {
    let host = match std::env::args_os().nth(1) {
        Some(root) => LocalHost::with_root(root),
        None => LocalHost::new(),
    };
    let inv = match Inventory::read(&host).await {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("error ({:?}): {}", e.kind(), gpu_core::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!("driver  {}", inv.driver_version);
    println!("cgroup  {}", inv.cgroup.allow_key());
    println!(
        "majors  nvidia {}, nvidia-uvm {:?}, nvidia-caps {:?}",
        inv.majors.nvidia, inv.majors.nvidia_uvm, inv.majors.nvidia_caps
    );
    for g in &inv.gpus {
        println!(
            "GPU {}  /dev/nvidia{}  {}  {}  {}",
            g.index, g.minor, g.pci_bus_id, g.uuid, g.model
        );
    }
    for n in &inv.nodes {
        println!("node {}  {:?}  {:?}", n.path.display(), n.kind, n.rdev);
    }
    ExitCode::SUCCESS
}
