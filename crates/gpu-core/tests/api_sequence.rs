//! A whole apply through the public API only, against modelled stand-in backends (the captured
//! host's tree and a running container, see `examples/support/world.rs`), asserting the
//! exact sequence of host and container calls of a first run and of a converged run.

#[path = "../examples/support/world.rs"]
mod world;

use std::sync::{Arc, Mutex};

use gpu_core::{Engine, Event, EventSink, Request, StepName, StepStatus, Strategy, Target};
use world::World;

fn engine(w: &World, events: EventSink) -> Engine {
    Engine::new(
        Arc::new(w.host()),
        Arc::new(w.container()),
        Target::Lxc {
            lxcpath: "/var/lib/lxc".into(),
        },
    )
    .with_events(events)
}

fn request() -> Request {
    let mut r = Request::new(world::CT.parse().unwrap(), "1".parse().unwrap());
    r.strategy = Some(Strategy::None);
    r
}

/// The inventory's reads and the config step's, the same in every run.
const READS: &[&str] = &[
    "host read_file /sys/module/nvidia/version",
    "host read_file /proc/devices",
    "host read_dir /proc/driver/nvidia/gpus",
    "host read_file /proc/driver/nvidia/gpus/0000:00:06.0/information",
    "host read_file /proc/driver/nvidia/gpus/0000:00:07.0/information",
    "host read_dir /dev",
    "host read_dir /dev/nvidia-caps",
    "host read_file /proc/self/mounts",
    "host read_file /proc/mounts",
    "host stat /sys/fs/cgroup/cgroup.controllers",
    "host read_file /var/lib/dpkg/status",
    "host read_file /var/lib/lxc/ct1/config",
    "host read_file /proc/devices",
    "host read_file /var/lib/phoenix-gpu/nvidia-record",
];

/// The probe: gpu-check's versioned path (its hash as `<sha>`), what it is asked (the nodes of
/// GPU 1, dpkg's status for the CUDA toolkit), the mode.
const PROBE: &str = "ct exec sh -c <script> phoenix-gpu /usr/local/lib/phoenix-gpu/gpu-check-<sha> --sys --dev --libs --dpkg cuda-toolkit-* --open /dev/nvidia1,/dev/nvidiactl,/dev/nvidia-uvm,/dev/nvidia-uvm-tools probe";
/// The verification exec of a first run, which puts gpu-check in place.
const INSTALL: &str = "ct exec sh -c <script> phoenix-gpu /usr/local/lib/phoenix-gpu/gpu-check-<sha> --sys --dev --libs --open /dev/nvidia1,/dev/nvidiactl,/dev/nvidia-uvm,/dev/nvidia-uvm-tools install";

/// The calls so far, gpu-check's hash replaced by `<sha>`.
fn calls(w: &World) -> Vec<String> {
    w.take_calls()
        .into_iter()
        .map(|c| match c.split_once("/gpu-check-") {
            Some((a, b)) if b.len() >= 16 => format!("{a}/gpu-check-<sha>{}", &b[16..]),
            _ => c,
        })
        .collect()
}

fn expected(after_reads: &[&str]) -> Vec<String> {
    READS
        .iter()
        .chain(after_reads)
        .map(|s| s.to_string())
        .collect()
}

#[tokio::test]
async fn first_run_then_converged_run() {
    let w = World::h200x2();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let engine = engine(&w, EventSink::new(move |e| sink.lock().unwrap().push(e)));

    // First run: the container's state is read (a running container's change could be made
    // live, but this backend gives no LXC name on a host), the config is written (with a
    // backup), the running container is restarted (stop, wait, start, wait) and probed once;
    // the verification exec puts gpu-check in place (this busybox container has no glibc to
    // run it, so the probe's nodes stand).
    let first = engine.apply(&request()).await.unwrap();
    assert_eq!(
        calls(&w),
        expected(&[
            "ct state",
            "host write_file_atomic /var/lib/lxc/ct1/config",
            // The node record learns the NVIDIA majors once the config write has happened
            // (a failed write changes nothing, not even the record).
            "host write_file_atomic /var/lib/phoenix-gpu/nvidia-record",
            "ct stop",
            "ct state",
            "ct start",
            "ct state",
            PROBE,
            INSTALL,
        ])
    );
    assert!(first.changed);
    assert_eq!(first.counters.config_writes, 1);
    assert_eq!(first.counters.restarts, 1);
    assert_eq!(first.counters.container_execs, 2);
    assert_eq!(first.counters.host_commands, 0);
    let statuses: Vec<(StepName, StepStatus)> =
        first.steps.iter().map(|s| (s.name, s.status)).collect();
    assert_eq!(
        statuses,
        [
            (StepName::HostCheck, StepStatus::Ok),
            (StepName::Config, StepStatus::Changed),
            (StepName::Restart, StepStatus::Changed),
            (StepName::Userspace, StepStatus::Skipped),
            (StepName::Cuda, StepStatus::Skipped),
            (StepName::Tools, StepStatus::Skipped),
            (StepName::Verify, StepStatus::Changed),
        ]
    );
    let config = String::from_utf8(w.file(world::CONFIG).unwrap()).unwrap();
    assert!(config.starts_with(world::CONFIG_TEXT), "{config}");
    assert!(
        config.contains(
            "lxc.mount.entry = /dev/nvidia1 dev/nvidia1 none bind,optional,create=file\n"
        ),
        "{config}"
    );
    assert!(!config.contains("/dev/nvidia0 "), "{config}");
    assert!(first
        .config_diff
        .contains("+lxc.cgroup2.devices.allow = c 195:1 rwm"));
    {
        let seen = events.lock().unwrap();
        let finished: Vec<StepName> = seen
            .iter()
            .filter_map(|e| match e {
                Event::StepFinished { report, .. } => Some(report.name),
                _ => None,
            })
            .collect();
        assert_eq!(
            finished,
            first.steps.iter().map(|s| s.name).collect::<Vec<_>>()
        );
        assert!(matches!(
            seen.first(),
            Some(Event::StepStarted { step: StepName::HostCheck, ct }) if ct == world::CT
        ));
    }

    // Converged run: reads of the host and exactly one exec, which also says the container
    // runs (no state asked); no write, no restart.
    let before = w.file(world::CONFIG);
    let second = engine.apply(&request()).await.unwrap();
    assert_eq!(calls(&w), expected(&[PROBE]));
    assert!(!second.changed);
    assert_eq!(second.counters.container_execs, 1);
    assert_eq!(second.counters.config_writes, 0);
    assert_eq!(second.counters.restarts, 0);
    assert_eq!(second.counters.host_commands, 0);
    assert_eq!(second.config_diff, "");
    assert_eq!(w.file(world::CONFIG), before);
    assert!(second.steps.iter().all(|s| s.status != StepStatus::Changed));
}

#[tokio::test]
async fn plan_changes_nothing_then_apply_does_what_it_showed() {
    let w = World::h200x2();
    let (sink, mut rx) = EventSink::channel();
    let engine = engine(&w, sink);

    let plan = engine.plan(&request()).await.unwrap();
    let calls = w.take_calls();
    assert!(
        calls
            .iter()
            .all(|c| !c.contains("write") && c != "ct stop" && c != "ct start"),
        "{calls:#?}"
    );
    assert_eq!(
        plan.step(StepName::Config).unwrap().status,
        StepStatus::Planned
    );
    assert_eq!(
        plan.step(StepName::Restart).unwrap().status,
        StepStatus::Planned
    );
    assert_eq!(plan.counters.config_writes, 0);
    assert_eq!(
        w.file(world::CONFIG).unwrap(),
        world::CONFIG_TEXT.as_bytes()
    );

    let applied = engine.apply(&request()).await.unwrap();
    // The same change, headed as planned by the plan and as written by the apply.
    let hunks = |d: &str| d.splitn(3, '\n').nth(2).unwrap_or_default().to_owned();
    assert_eq!(hunks(&applied.config_diff), hunks(&plan.config_diff));
    assert!(plan.config_diff.starts_with(&format!(
        "--- {0} (current)\n+++ {0} (planned)\n",
        world::CONFIG
    )));
    assert!(applied.config_diff.starts_with(&format!(
        "--- {0} (before)\n+++ {0} (written)\n",
        world::CONFIG
    )));

    let mut started = 0;
    while let Ok(e) = rx.try_recv() {
        if matches!(e, Event::StepStarted { .. }) {
            started += 1;
        }
    }
    assert!(started >= plan.steps.len(), "{started} step events");
}

#[tokio::test]
async fn errors_are_typed() {
    let w = World::h200x2();
    let engine = engine(&w, EventSink::none());

    let mut req = request();
    req.gpus = "3".parse().unwrap();
    let f = engine.apply(&req).await.unwrap_err();
    assert!(
        matches!(f.error, gpu_core::Error::GpuNotPresent { .. }),
        "{:?}",
        f.error
    );
    assert_eq!(f.error.kind(), gpu_core::ErrorKind::HostPrecondition);
    assert_eq!(
        f.report.step(StepName::HostCheck).unwrap().status,
        StepStatus::Failed
    );
    assert_eq!(
        f.report.error.as_ref().map(|e| e.kind),
        Some(gpu_core::ErrorKind::HostPrecondition)
    );

    let f = engine
        .apply(&Request::new(
            "other".parse().unwrap(),
            "1".parse().unwrap(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        f.error.kind(),
        gpu_core::ErrorKind::ConfigMissing,
        "{:?}",
        f.error
    );
}
