//! Plans and applies a request against stand-in backends, the way an embedding tool would against
//! real ones: `cargo run -p gpu-core --example plan_apply`.
//!
//! The host is the captured 2 x H200 host (the files of `examples/h200x2`) in a temporary
//! directory, behind test-support's `FsHost`; the container `ct1` is a `ScriptedCt` that takes
//! the config's device mounts at start (see `support/world.rs`). The request gives it GPU 1,
//! devices only. The first apply writes the config and restarts the container; the second
//! changes nothing and costs one probe exec.

#[path = "support/world.rs"]
mod world;

use std::process::ExitCode;
use std::sync::Arc;

use gpu_core::{Engine, Event, EventSink, Report, Request, Strategy, Target};

fn show(what: &str, r: &Report) {
    println!("{what} {}: changed={}", r.ct, r.changed);
    for s in &r.steps {
        println!("  {:<11} {:<8?} {}", s.name.as_str(), s.status, s.detail);
    }
    let c = &r.counters;
    println!(
        "  counters: {} container exec(s), {} host command(s), {} config write(s), {} restart(s)",
        c.container_execs, c.host_commands, c.config_writes, c.restarts
    );
}

async fn run() -> Result<(), gpu_core::Failure> {
    let world = world::World::h200x2();
    let (events, mut rx) = EventSink::channel();
    let engine = Engine::new(
        Arc::new(world.host()),
        Arc::new(world.container()),
        Target::Lxc {
            lxcpath: "/var/lib/lxc".into(),
        },
    )
    .with_events(events);

    // Progress arrives on the channel while the engine runs.
    let printer = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let Event::StepFinished { report, .. } = e {
                println!(
                    "event: {} finished ({:?})",
                    report.name.as_str(),
                    report.status
                );
            }
        }
    });

    // The values of a request are validated types: a bad one is an error here, never a
    // request.
    let (ct, gpus) = match (engine.target().ct_id(world::CT), "1".parse()) {
        (Ok(ct), Ok(gpus)) => (ct, gpus),
        (Err(error), _) | (_, Err(error)) => {
            return Err(gpu_core::Failure {
                report: Report::new(world::CT),
                error,
            })
        }
    };
    let mut req = Request::new(ct, gpus);
    req.strategy = Some(Strategy::None);

    let plan = engine.plan(&req).await?;
    println!("{}", plan.config_diff);
    show("plan", &plan);

    let first = engine.apply(&req).await?;
    show("apply", &first);
    let second = engine.apply(&req).await?;
    show("apply again", &second);
    println!(
        "{}",
        serde_json::to_string_pretty(&second).unwrap_or_default()
    );

    drop(engine);
    let _ = printer.await;
    assert!(first.changed && first.counters.restarts == 1);
    assert!(!second.changed && second.counters.container_execs == 1);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!(
                "error ({:?}): {}",
                f.error.kind(),
                gpu_core::chain(&f.error)
            );
            ExitCode::FAILURE
        }
    }
}
