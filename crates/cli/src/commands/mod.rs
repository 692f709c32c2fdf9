//! The commands. Each parses its flags into gpu-core values (`args.rs`), asks gpu-core, and
//! renders what it gets through the [`Printer`]; it returns the run's worst outcome, or the
//! error that stopped it, to `main`, which alone turns them into the exit code.

mod check;
mod fleet;
mod host;
mod inventory;
mod single;

#[cfg(test)]
pub(crate) use fleet::json_row;

use std::sync::Arc;

use gpu_core::cluster::{Cluster, NodeConnector};
use gpu_core::{Engine, ErrorKind, Settings};
use tracing::info;

use crate::args;
use crate::backend::{self, SshConnector};
use crate::cli::{Cli, Command, HostCommand};
use crate::error::CliError;
use crate::output::Printer;

/// How a command that ran to its end ended: `None` when everything succeeded, else the worst
/// outcome (a container that failed, drift). The exit code is that kind's.
pub type Worst = Option<ErrorKind>;

/// Runs the command.
pub async fn run(cli: Cli, printer: &Printer) -> Result<Worst, CliError> {
    let g = &cli.global;
    info!(target: crate::logging::RUN_SPAN_TARGET, argv = ?std::env::args().collect::<Vec<_>>(), "phoenix-gpu started");
    let orch = args::orchestrator(g.phoenix_config.as_deref())?;
    let b = backend::connect(g).await?;
    if let Command::Host(HostCommand::Prepare(p)) = &cli.command {
        return host::prepare(b.host.as_ref(), g, p, printer).await;
    }
    let settings = Settings {
        resolve_mount_sources: g.bind_under_root,
        ..Settings::default()
    };
    let engine = Engine::new(b.host.clone(), b.cts.clone(), b.target.clone())
        .with_settings(settings)
        .with_events(printer.events());
    let connector: Arc<dyn NodeConnector> = Arc::new(SshConnector::new(g)?);
    let cluster = Arc::new(Cluster::discover(engine, Some(connector)).await?);
    let orch = orch.as_ref();
    match &cli.command {
        Command::Inventory => inventory::run(cluster.local(), printer).await,
        Command::Apply(a) if a.all || a.ctids.len() != 1 => {
            fleet::apply(a, orch, &cluster, printer).await
        }
        Command::Apply(a) => {
            let id = a.ctids.first().map(String::as_str).unwrap_or("");
            single::run(single::Op::Apply, id, &a.opts, orch, &cluster, printer).await
        }
        Command::Plan(a) => {
            single::run(single::Op::Plan, &a.ctid, &a.opts, orch, &cluster, printer).await
        }
        Command::Verify(a) => {
            single::run(
                single::Op::Verify,
                &a.ctid,
                &a.opts,
                orch,
                &cluster,
                printer,
            )
            .await
        }
        Command::Remove(r) => single::remove(r, &cluster, printer).await,
        Command::Check(c) => check::run(c, orch, &cluster, printer).await,
        Command::Sync(s) => fleet::sync(s, orch, &cluster, printer).await,
        Command::Host(HostCommand::Prepare(_)) => Ok(None),
    }
}
