//! The `--json` contract against real output: every command and outcome the captured host can
//! give is run through the binary and its stdout validated against the repository's JSON
//! Schema (`docs/schema/phoenix-gpu.schema.json`); the same runs without `--json` must show
//! words, never a Rust type name (`StaleMajor`, `StandIn`, `V1Devices`).

use serde_json::Value;

use crate::util::{Run, TestHost, CONF_101, EXAMPLE_101};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/schema/phoenix-gpu.schema.json"
);

/// A command to run: a name, how to set up the host, the arguments (without `--json`), and
/// the exit code it must end with.
struct Case {
    name: &'static str,
    setup: fn(&TestHost),
    args: Vec<String>,
    code: i32,
}

fn case(name: &'static str, setup: fn(&TestHost), args: &[&str], code: i32) -> Case {
    Case {
        name,
        setup,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code,
    }
}

fn nothing(_: &TestHost) {}

fn no_driver(h: &TestHost) {
    std::fs::remove_file(h.path("/sys/module/nvidia/version")).unwrap();
    std::fs::remove_file(h.path("/proc/driver/nvidia/version")).unwrap();
}

fn locked(h: &TestHost) {
    h.put(
        CONF_101,
        EXAMPLE_101.replacen("hostname:", "lock: backup\nhostname:", 1),
    );
}

/// The containers of the orchestrator's v2 config that have GPUs, each with a config.
fn orchestrator_cts(h: &TestHost) {
    for ct in ["801", "802", "901", "910", "911", "912", "914", "917"] {
        h.put(&format!("/etc/pve/lxc/{ct}.conf"), EXAMPLE_101);
    }
}

/// A host ready for `host prepare`: nvidia-modprobe and the folders the files go into.
fn preparable(h: &TestHost) {
    h.put("/usr/bin/nvidia-modprobe", "stand-in");
    std::fs::create_dir_all(h.path("/etc/systemd/system")).unwrap();
    std::fs::create_dir_all(h.path("/var/lib/vz/snippets")).unwrap();
}

fn without_snippets(h: &TestHost) {
    preparable(h);
    std::fs::remove_dir(h.path("/var/lib/vz/snippets")).unwrap();
}

fn prepared_and_hooked(h: &TestHost) {
    preparable(h);
    h.put(
        "/var/lib/vz/snippets/phoenix-gpu-hook.sh",
        "#!/bin/sh\n# Written by phoenix-gpu host prepare.\n",
    );
    h.put(
        CONF_101,
        EXAMPLE_101.replacen(
            "hostname:",
            "hookscript: local:snippets/phoenix-gpu-hook.sh\nhostname:",
            1,
        ),
    );
}

fn cases() -> Vec<Case> {
    let v2 = test_support::testdata::phoenix("phoenix_lxc_configs.v2.json");
    let hyp = test_support::testdata::phoenix("phoenix_hypervisor_config.v2.json");
    let (v2, hyp) = (v2.to_str().unwrap(), hyp.to_str().unwrap());
    vec![
        case("inventory", nothing, &["inventory"], 0),
        case("inventory, no driver", no_driver, &["inventory"], 8),
        case("plan", nothing, &["plan", "101", "--gpus", "1"], 0),
        case(
            "plan, GPU not there",
            nothing,
            &["plan", "101", "--gpus", "7"],
            8,
        ),
        case(
            "apply --config-only",
            nothing,
            &["apply", "101", "--gpus", "1", "--config-only"],
            0,
        ),
        case(
            "apply, locked",
            locked,
            &["apply", "101", "--gpus", "1", "--config-only"],
            9,
        ),
        case(
            "apply, container config missing",
            nothing,
            &["apply", "102", "--gpus", "1"],
            4,
        ),
        case("remove", nothing, &["remove", "101"], 0),
        case(
            "check, drift",
            nothing,
            &["check", "101", "--gpus", "1"],
            10,
        ),
        case("check --all", nothing, &["check", "--all"], 10),
        case(
            "check, config missing",
            nothing,
            &["check", "101", "102"],
            10,
        ),
        case(
            "apply of several, one missing",
            nothing,
            &["apply", "101", "102", "--gpus", "1", "--config-only"],
            4,
        ),
        case(
            "apply --all of the orchestrator config",
            orchestrator_cts,
            &["apply", "--all", "--phoenix-config", v2, "--config-only"],
            0,
        ),
        case(
            "apply --all of the hypervisor config",
            orchestrator_cts,
            &["apply", "--all", "--phoenix-config", hyp, "--config-only"],
            2,
        ),
        case(
            "sync, the container's state unreadable (no pct here)",
            nothing,
            &["sync", "101", "--dry-run", "--strategy", "none"],
            1,
        ),
        case(
            "host prepare",
            preparable,
            &["host", "prepare", "--hookscript", "--modeset"],
            0,
        ),
        case(
            "host prepare --dry-run",
            preparable,
            &["host", "prepare", "--dry-run"],
            0,
        ),
        case(
            "host prepare, no snippets folder",
            without_snippets,
            &["host", "prepare", "--hookscript"],
            8,
        ),
        case(
            "host prepare --remove, hookscript in use",
            prepared_and_hooked,
            &["host", "prepare", "--remove"],
            8,
        ),
        case(
            "host prepare --remove --force",
            prepared_and_hooked,
            &["host", "prepare", "--remove", "--force"],
            0,
        ),
        case(
            "a bad flag value",
            nothing,
            &["apply", "101", "--gpus", "0,0"],
            2,
        ),
        case("an unknown flag", nothing, &["apply", "101", "--bogus"], 2),
        case("an unknown command", nothing, &["frobnicate"], 2),
        case("a missing argument", nothing, &["plan"], 2),
        case(
            "a missing orchestrator config",
            nothing,
            &["inventory", "--phoenix-config", "/nonexistent.json"],
            2,
        ),
    ]
}

/// Runs `c` with `--json`, or else with `-v` (each step's line on stderr too).
fn run_case(c: &Case, json: bool) -> Run {
    let h = TestHost::h200x2();
    (c.setup)(&h);
    let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    args.push(if json { "--json" } else { "-v" });
    h.run(&args)
}

/// The compiled schema (also used by `live.rs` on the reports of live changes).
pub fn schema() -> (boon::Schemas, boon::SchemaIndex) {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    let idx = compiler
        .compile(SCHEMA, &mut schemas)
        .unwrap_or_else(|e| panic!("{SCHEMA}: {e:#}"));
    (schemas, idx)
}

/// Every output is one JSON object that the schema accepts, with `schema_version`, the exit
/// code of the process, and an error in the one shape (the command's, or null).
#[test]
fn every_json_output_follows_the_schema() {
    let (schemas, idx) = schema();
    for c in cases() {
        let r = run_case(&c, true);
        assert_eq!(r.code, c.code, "{}: {r:#?}", c.name);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not one JSON object ({e}): {r:#?}", c.name));
        if let Err(e) = schemas.validate(&v, idx) {
            panic!("{}: {e:#}\n{v:#}", c.name);
        }
        assert_eq!(v["schema_version"], gpu_core::SCHEMA_VERSION, "{}", c.name);
        assert_eq!(v["exit_code"], c.code, "{}: {v:#}", c.name);
        let error = &v["error"];
        if v.get("rows").is_none() && v.get("containers").is_none() {
            // One container or none: the error is the run's, its code the process's.
            if c.code == 0 {
                assert!(error.is_null(), "{}: {v:#}", c.name);
            } else {
                assert_eq!(error["exit_code"], c.code, "{}: {v:#}", c.name);
                let first = r.stderr.lines().find(|l| l.starts_with("error: "));
                let message = error["message"].as_str().unwrap();
                assert!(
                    first.is_some_and(|l| message.starts_with(&l["error: ".len()..])),
                    "{}: {message:?} is not stderr's error: {r:#?}",
                    c.name
                );
            }
        }
    }
}

/// The schema is not a check that cannot fail: it refuses the shapes of the unversioned
/// output (an `error` string, no `schema_version`, a top-level `hint`).
#[test]
fn the_schema_refuses_the_old_shapes() {
    let (schemas, idx) = schema();
    let bad = [
        r#"{"error": "cannot read", "kind": "bad_input", "exit_code": 2}"#,
        r#"{"schema_version": 1, "error": "cannot read", "exit_code": 2}"#,
        r#"{"schema_version": 1, "error": {"kind": "bad_input", "message": "m"}, "exit_code": 2}"#,
        r#"{"schema_version": 1, "error": {"kind": "bad_input", "exit_code": 8, "message": "m", "causes": [], "hint": null}, "exit_code": 8}"#,
        r#"{"schema_version": 2, "error": {"kind": "bad_input", "exit_code": 2, "message": "m", "causes": [], "hint": null}, "exit_code": 2}"#,
    ];
    for b in bad {
        let v: Value = serde_json::from_str(b).unwrap();
        assert!(schemas.validate(&v, idx).is_err(), "accepted: {b}");
    }
    let good = r#"{"schema_version": 1, "error": {"kind": "bad_input", "exit_code": 2, "message": "m", "causes": [], "hint": null}, "exit_code": 2}"#;
    let v: Value = serde_json::from_str(good).unwrap();
    assert!(schemas.validate(&v, idx).is_ok());
}

/// Rust type names as `{:?}` prints enum values: two capitalised parts (`StaleMajor`,
/// `StandIn`, `WrongCgroupKey`, `V1Devices`), or one of the single-word variants of the
/// types a command renders.
fn type_names(text: &str) -> Vec<String> {
    const SINGLE: [&str; 12] = [
        "Char",
        "Dir",
        "Ok",
        "Changed",
        "Planned",
        "Skipped",
        "Failed",
        "Runfile",
        "Raw",
        "Dev",
        "Auto",
        "Unchanged",
    ];
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            // A lowercase letter followed by a capital: StaleMajor, but not GPUs or NVIDIA.
            let b = w.as_bytes();
            let camel = w.starts_with(|c: char| c.is_ascii_uppercase())
                && b.windows(2)
                    .any(|p| p[0].is_ascii_lowercase() && p[1].is_ascii_uppercase())
                && !UNITS.contains(w);
            camel || SINGLE.contains(w) || w.starts_with("V1") || *w == "V2"
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn type_names_are_found() {
    assert_eq!(
        type_names("  StaleMajor: line 16\n/dev/nvidia0 195:0 StandIn\nDir x V1Devices"),
        ["StaleMajor", "StandIn", "Dir", "V1Devices"]
    );
    assert!(
        type_names("NVIDIA H200 GPU-8ec68ad8 0000:00:06.0 Proxmox VE, CTID, 3 GPUs, 12 MiB")
            .is_empty()
    );
}

/// Every command's text output, stdout and stderr (with `-v`), shows words, never a type name.
#[test]
fn text_output_shows_words_not_type_names() {
    let mut shown = 0;
    for c in cases() {
        let r = run_case(&c, false);
        assert_eq!(r.code, c.code, "{}: {r:#?}", c.name);
        // `host prepare --dry-run` quotes the unit file (`    | ExecStart=...`): systemd's
        // words, not ours.
        let ours: String = format!("{}\n{}", r.stdout, r.stderr)
            .lines()
            .filter(|l| !l.starts_with("    | "))
            .map(|l| format!("{l}\n"))
            .collect();
        let found = type_names(&ours);
        assert!(found.is_empty(), "{}: {found:?} in\n{r:#?}", c.name);
        shown += r.stdout.len();
    }
    assert!(shown > 2000, "the cases printed almost nothing");
}
