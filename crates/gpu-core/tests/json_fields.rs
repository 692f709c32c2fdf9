//! Pins the JSON field names of the report types (the CLI's `--json`, read by other tools): a
//! rename or a removed field fails here. Adding a field means adding it here, on purpose (and
//! to `docs/schema/phoenix-gpu.schema.json`); renaming or removing one also means raising
//! `SCHEMA_VERSION` (docs/json.md).

use std::collections::BTreeSet;

use gpu_core::{
    Activation, Counters, ErrorKind, Event, Holder, LiveChange, Report, ReportedError,
    RestartReason, StepName, StepReport, StepStatus, SCHEMA_VERSION,
};
use serde_json::{json, Value};

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

fn step() -> StepReport {
    StepReport {
        name: StepName::HostCheck,
        status: StepStatus::Changed,
        detail: "d".into(),
        duration_ms: 3,
    }
}

#[test]
fn report_fields() {
    let mut r = Report::new("101");
    r.steps.push(step());
    r.error = Some(ReportedError {
        kind: ErrorKind::HostPrecondition,
        message: "m".into(),
    });
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "ct",
            "changed",
            "steps",
            "counters",
            "config_diff",
            "activation",
            "error",
            "duration_ms"
        ])
    );
    assert_eq!(keys(&v["error"]), set(&["kind", "message"]));
    assert_eq!(v["error"]["kind"], "host_precondition");
    assert_eq!(
        serde_json::to_value(Report::new("101")).unwrap()["error"],
        Value::Null
    );
}

#[test]
fn activation_fields_and_values() {
    let live = Activation::Live(LiveChange {
        added: vec!["/dev/nvidia1".into()],
        removed: vec!["/dev/nvidia0".into()],
        allowed: vec!["c 195:1 rwm".into()],
        denied: vec!["c 195:0 rwm".into()],
        held: vec![Holder {
            pid: 42,
            comm: "python3".into(),
            device: "/dev/nvidia0".into(),
        }],
    });
    assert_eq!(
        serde_json::to_value(&live).unwrap(),
        json!({
            "by": "live",
            "added": ["/dev/nvidia1"],
            "removed": ["/dev/nvidia0"],
            "allowed": ["c 195:1 rwm"],
            "denied": ["c 195:0 rwm"],
            "held": [{"pid": 42, "comm": "python3", "device": "/dev/nvidia0"}]
        })
    );
    let restart = Activation::Restart {
        reason: RestartReason::HostLibs,
        detail: "d".into(),
    };
    assert_eq!(
        serde_json::to_value(&restart).unwrap(),
        json!({"by": "restart", "reason": "host_libs", "detail": "d"})
    );
    let pending = Activation::Pending {
        reason: RestartReason::Asked,
        detail: "d".into(),
    };
    assert_eq!(serde_json::to_value(&pending).unwrap()["by"], "pending");
    let reasons: Vec<Value> = [
        RestartReason::Asked,
        RestartReason::HostLibs,
        RestartReason::Mig,
        RestartReason::NoLxc,
        RestartReason::ContainerTools,
        RestartReason::NestedCgroupV1,
        RestartReason::LiveFailed,
    ]
    .iter()
    .map(|r| serde_json::to_value(r).unwrap())
    .collect();
    assert_eq!(
        reasons,
        [
            "asked",
            "host_libs",
            "mig",
            "no_lxc",
            "container_tools",
            "nested_cgroup_v1",
            "live_failed"
        ]
    );
    assert_eq!(
        serde_json::to_value(Report::new("101")).unwrap()["activation"],
        Value::Null
    );
}

#[test]
fn step_report_fields_and_values() {
    let v = serde_json::to_value(step()).unwrap();
    assert_eq!(
        v,
        json!({"name": "host-check", "status": "changed", "detail": "d", "duration_ms": 3})
    );
    let names: Vec<Value> = [
        StepName::HostCheck,
        StepName::Config,
        StepName::Restart,
        StepName::Userspace,
        StepName::Cuda,
        StepName::Tools,
        StepName::Verify,
        StepName::Remove,
    ]
    .iter()
    .map(|n| {
        let v = serde_json::to_value(n).unwrap();
        assert_eq!(v, n.as_str(), "serde name and as_str() agree");
        v
    })
    .collect();
    assert_eq!(
        names,
        [
            "host-check",
            "config",
            "restart",
            "userspace",
            "cuda",
            "tools",
            "verify",
            "remove"
        ]
    );
    let statuses: Vec<Value> = [
        StepStatus::Ok,
        StepStatus::Changed,
        StepStatus::Planned,
        StepStatus::Skipped,
        StepStatus::Failed,
    ]
    .iter()
    .map(|s| serde_json::to_value(s).unwrap())
    .collect();
    assert_eq!(statuses, ["ok", "changed", "planned", "skipped", "failed"]);
}

#[test]
fn counters_fields() {
    let c = Counters {
        container_execs: 1,
        container_processes: 5,
        host_commands: 2,
        config_writes: 3,
        restarts: 4,
    };
    assert_eq!(
        serde_json::to_value(c).unwrap(),
        json!({"container_execs": 1, "container_processes": 5, "host_commands": 2, "config_writes": 3, "restarts": 4})
    );
}

#[test]
fn event_fields() {
    let cases = [
        (
            Event::StepStarted {
                ct: "101".into(),
                step: StepName::Config,
            },
            json!({"event": "step_started", "ct": "101", "step": "config"}),
        ),
        (
            Event::StepFinished {
                ct: "101".into(),
                report: step(),
            },
            json!({"event": "step_finished", "ct": "101", "report": {"name": "host-check", "status": "changed", "detail": "d", "duration_ms": 3}}),
        ),
        (
            Event::Progress {
                ct: String::new(),
                what: "download x.run".into(),
                done: 5,
                total: Some(10),
            },
            json!({"event": "progress", "ct": "", "what": "download x.run", "done": 5, "total": 10}),
        ),
        (
            Event::Notice {
                ct: "101".into(),
                message: "m".into(),
            },
            json!({"event": "notice", "ct": "101", "message": "m"}),
        ),
    ];
    for (event, want) in cases {
        assert_eq!(serde_json::to_value(&event).unwrap(), want, "{event:?}");
    }
}

#[test]
fn error_kind_names() {
    let kinds: Vec<Value> = [
        ErrorKind::BadInput,
        ErrorKind::CtNotFound,
        ErrorKind::ConfigMissing,
        ErrorKind::Install,
        ErrorKind::Restart,
        ErrorKind::Verify,
        ErrorKind::HostPrecondition,
        ErrorKind::Locked,
        ErrorKind::Drift,
        ErrorKind::Internal,
    ]
    .iter()
    .map(|k| serde_json::to_value(k).unwrap())
    .collect();
    assert_eq!(
        kinds,
        [
            "bad_input",
            "ct_not_found",
            "config_missing",
            "install",
            "restart",
            "verify",
            "host_precondition",
            "locked",
            "drift",
            "internal"
        ]
    );
}

/// The field names above are those of schema version 1: a change to them that breaks a reader
/// raises the version, here and in the schema file.
#[test]
fn schema_version() {
    assert_eq!(SCHEMA_VERSION, 1);
    let schema: Value =
        serde_json::from_str(include_str!("../../../docs/schema/phoenix-gpu.schema.json")).unwrap();
    assert_eq!(
        schema["$defs"]["schema_version"]["const"], SCHEMA_VERSION,
        "the schema file's version"
    );
}
