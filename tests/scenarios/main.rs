//! Scenarios through the `phoenix-gpu` binary against a copy of the captured H200 host.

mod gpu_host;
mod live;
mod real_lxc;
mod util;

mod cluster;
mod cluster_batch;
mod cluster_load;
mod fleet;
mod hints;
mod hostile;
mod json;
mod orchestrator;
mod ownership;
mod pipe;

use std::os::unix::fs::MetadataExt;

use util::{head_101, snapshot_101, TestHost, CONF_101, EXAMPLE_101};

fn raw_101(key: &str) -> String {
    format!(
        "{}lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
{key}: c 195:1 rwm
{key}: c 195:255 rwm
{key}: c 238:* rwm
lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file
{}",
        head_101(),
        snapshot_101()
    )
}

#[test]
fn inventory_human_and_json() {
    let h = TestHost::h200x2();
    let r = h.run(&["inventory"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("driver   580.159.04"));
    assert!(r
        .stdout
        .contains("1  /dev/nvidia1  0000:00:07.0  GPU-7fc3e24c-6572-362c-3b22-0d1167fae655"));
    let j = h.run(&["inventory", "--json"]).json();
    assert_eq!(j["driver_version"], "580.159.04");
    assert_eq!(j["gpus"][1]["index"], 1);
    assert_eq!(j["gpus"][1]["minor"], 1);
    assert_eq!(j["gpus"][0]["pci_bus_id"], "0000:00:06.0");
    assert_eq!(
        j["gpus"][0]["uuid"],
        "GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836"
    );
    assert_eq!(j["gpus"][0]["model"], "NVIDIA H200");
    assert_eq!(j["majors"]["nvidia"], 195);
    assert_eq!(j["majors"]["nvidia_uvm"], 238);
    assert_eq!(j["majors"]["nvidia_caps"], 241);
    assert!(j["nodes"].as_array().unwrap().len() >= 7);
    assert_eq!(j["exit_code"], 0);
}

#[test]
fn inventory_without_driver_is_exit_8() {
    let h = TestHost::h200x2();
    std::fs::remove_file(h.path("/sys/module/nvidia/version")).unwrap();
    std::fs::remove_file(h.path("/proc/driver/nvidia/version")).unwrap();
    h.run(&["inventory"])
        .assert_error(8, "the NVIDIA kernel module is not loaded on this host");
}

#[test]
fn readme_plan_shows_the_diff_and_writes_nothing() {
    // As `examples/h200x2` has it: no node record, so `c 508:*` (a major nobody holds now)
    // may be an old uvm major or anything else; it is kept, and `check` lists it.
    let h = TestHost::h200x2_unrecorded();
    let before = h.tree();
    let r = h.run(&["plan", "101", "--gpus", "1"]);
    assert_eq!(r.code, 0, "{r:#?}");
    for l in [
        "-lxc.cgroup2.devices.allow: c 195:* rwm",
        "-lxc.mount.entry: /dev/nvidia0 dev/nvidia0",
        "+lxc.cgroup2.devices.allow: c 195:1 rwm",
        "+lxc.cgroup2.devices.allow: c 238:* rwm",
        "+lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file",
        "config      planned",
        "restart     skipped",
    ] {
        assert!(r.stdout.contains(l), "{l:?} not in\n{}", r.stdout);
    }
    assert!(
        !r.stdout.contains("-lxc.cgroup2.devices.allow: c 508:* rwm"),
        "{}",
        r.stdout
    );
    let r = h.run(&["check", "101"]);
    assert_eq!(r.code, 0, "doubtful lines are not drift: {r:#?}");
    assert!(
        r.stdout
            .contains("doubtful (kept): line 16: lxc.cgroup2.devices.allow: c 508:* rwm"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("phoenix-gpu apply 101 --remove-doubtful"),
        "{}",
        r.stdout
    );
    let r = h.run(&["plan", "101", "--gpus", "1", "--remove-doubtful"]);
    assert!(
        r.stdout.contains("-lxc.cgroup2.devices.allow: c 508:* rwm"),
        "{}",
        r.stdout
    );
    assert_eq!(h.tree(), before);
}

#[test]
fn plan_json_report() {
    let h = TestHost::h200x2();
    let j = h.run(&["plan", "101", "--gpus", "1", "--json"]).json();
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["changed"], false);
    assert_eq!(j["ct"], "101");
    assert_eq!(j["steps"][0]["name"], "host-check");
    assert_eq!(j["steps"][1]["name"], "config");
    assert_eq!(j["steps"][1]["status"], "planned");
    assert!(j["steps"][1]["detail"].as_str().unwrap().contains("-3 +4"));
    assert_eq!(j["counters"]["config_writes"], 0);
    assert_eq!(j["counters"]["container_execs"], 0);
    assert_eq!(j["counters"]["restarts"], 0);
    assert!(j["config_diff"]
        .as_str()
        .unwrap()
        .contains("+lxc.cgroup2.devices.allow: c 238:* rwm"));
}

#[test]
fn apply_raw_v2_renders_exactly() {
    let h = TestHost::h200x2();
    let r = h.run(&["apply", "101", "--gpus", "1", "--config-only", "--json"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(h.get(CONF_101), raw_101("lxc.cgroup2.devices.allow"));
    let j = r.json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["counters"]["config_writes"], 1);
    let b = h.backups("101");
    assert_eq!(b.len(), 1);
    assert_eq!(
        std::fs::read_to_string(h.path(&format!("/var/lib/phoenix-gpu/backups/101/{}", b[0])))
            .unwrap(),
        EXAMPLE_101
    );
    let log = h.log_text();
    assert!(log.contains("config"), "{log}");
    assert!(log.contains("host-check"), "{log}");
}

#[test]
fn apply_raw_v1_devices_host_uses_the_v1_key() {
    let h = TestHost::h200x2();
    h.v1_devices();
    let r = h.run(&[
        "apply",
        "101",
        "--gpus",
        "1",
        "--mode",
        "raw",
        "--config-only",
    ]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(h.get(CONF_101), raw_101("lxc.cgroup.devices.allow"));
}

#[test]
fn apply_dev_mode_unprivileged_renders_exactly() {
    let h = TestHost::h200x2();
    h.pve_8_2();
    h.put(
        CONF_101,
        EXAMPLE_101.replacen("tags: gpu;vllm\n", "tags: gpu;vllm\nunprivileged: 1\n", 1),
    );
    let r = h.run(&[
        "apply",
        "101",
        "--gpus",
        "1",
        "--mode",
        "dev",
        "--config-only",
    ]);
    assert_eq!(r.code, 0, "{r:#?}");
    // The host node's mode, and its group when it is not root's (the stand-ins belong to
    // whoever runs the test).
    let gid = match std::fs::metadata(h.path("/dev/nvidia1")).unwrap().gid() {
        0 => String::new(),
        g => format!("gid={g},"),
    };
    let head = head_101().replace(
        "cores: 16\n",
        &format!(
            "cores: 16\ndev0: /dev/nvidia1,{gid}mode=0666\ndev1: /dev/nvidiactl,{gid}mode=0666\ndev2: /dev/nvidia-uvm,{gid}mode=0666\ndev3: /dev/nvidia-uvm-tools,{gid}mode=0666\n"
        ),
    );
    let want = format!(
        "{head}unprivileged: 1
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
{}",
        snapshot_101()
    );
    assert_eq!(h.get(CONF_101), want);
}

#[test]
fn apply_twice_the_second_writes_nothing() {
    let h = TestHost::h200x2();
    let first = h.run(&["apply", "101", "--gpus", "1", "--config-only", "--json"]);
    assert_eq!(first.code, 0, "{first:#?}");
    let bytes = h.get(CONF_101);
    let mtime = std::fs::metadata(h.path(CONF_101))
        .unwrap()
        .modified()
        .unwrap();
    let before = h.tree();
    let second = h.run(&["apply", "101", "--gpus", "1", "--config-only", "--json"]);
    assert_eq!(second.code, 0, "{second:#?}");
    let j = second.json();
    assert_eq!(j["changed"], false);
    assert_eq!(j["counters"]["config_writes"], 0);
    assert_eq!(j["config_diff"], "");
    assert_eq!(h.get(CONF_101), bytes);
    assert_eq!(
        std::fs::metadata(h.path(CONF_101))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert_eq!(h.backups("101").len(), 1);
    assert_eq!(h.tree(), before);
}

#[test]
fn apply_dry_run_writes_nothing() {
    let h = TestHost::h200x2();
    let before = h.tree();
    let r = h.run(&["apply", "101", "--gpus", "1", "--config-only", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("+lxc.cgroup2.devices.allow: c 195:1 rwm"));
    assert_eq!(h.tree(), before);
}

#[test]
fn remove_takes_the_tools_lines_out() {
    let h = TestHost::h200x2();
    let r = h.run(&["remove", "101"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let want = format!(
        "{}lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
{}",
        head_101(),
        snapshot_101()
    );
    assert_eq!(h.get(CONF_101), want);
    let before = h.tree();
    let r = h.run(&["remove", "101", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["changed"], false);
    assert_eq!(h.tree(), before);
}

#[test]
fn check_finds_drift_then_none() {
    let h = TestHost::h200x2();
    let before = h.tree();
    let r = h.run(&["check", "101"]);
    assert_eq!(r.code, 10, "{r:#?}");
    assert!(r.stdout.contains("major 508"), "{}", r.stdout);
    let j = h.run(&["check", "101", "--gpus", "1", "--json"]).json();
    assert_eq!(j["exit_code"], 10);
    let kinds: Vec<&str> = j["containers"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"stale_major"), "{kinds:?}");
    assert!(kinds.contains(&"wrong_gpus"), "{kinds:?}");
    assert!(kinds.contains(&"config_differs"), "{kinds:?}");
    assert_eq!(h.tree(), before);
    assert_eq!(
        h.run(&["apply", "101", "--gpus", "1", "--config-only"])
            .code,
        0
    );
    let r = h.run(&["check", "101", "--gpus", "1"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let r = h.run(&["check", "--all"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("CT 101: ok"));
}

#[test]
fn check_flags_the_wrong_cgroup_key_on_a_v1_host() {
    let h = TestHost::h200x2();
    assert_eq!(
        h.run(&["apply", "101", "--gpus", "1", "--config-only"])
            .code,
        0
    );
    h.v1_devices();
    let r = h.run(&["check", "101", "--json"]);
    assert_eq!(r.code, 10);
    assert!(r.stdout.contains("wrong_cgroup_key"), "{}", r.stdout);
}

#[test]
fn env_and_phoenix_config_give_the_gpus() {
    let h = TestHost::h200x2();
    let r = h.run_env(&["plan", "101", "--json"], &[("GPU_ASSIGNMENT", "0, 1")]);
    assert_eq!(r.code, 0, "{r:#?}");
    let diff = r.json()["config_diff"].as_str().unwrap().to_owned();
    assert!(diff.contains("+lxc.mount.entry: /dev/nvidia1 "), "{diff}");
    assert!(!diff.contains("-lxc.mount.entry: /dev/nvidia0 "), "{diff}");
    // v2: CT 912 has "gpu_assignment": "1"; its driver version is a default the flag overrides.
    let pc = test_support::testdata::phoenix("phoenix_lxc_configs.v2.json");
    h.put("/etc/pve/lxc/912.conf", EXAMPLE_101);
    let r = h.run(&[
        "plan",
        "912",
        "--phoenix-config",
        pc.to_str().unwrap(),
        "--driver-version",
        "auto",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.json()["config_diff"]
        .as_str()
        .unwrap()
        .contains("+lxc.mount.entry: /dev/nvidia1 "));
    // Without the override, the orchestrator's 580.76.05 differs from the host's module.
    let r = h.run(&["plan", "912", "--phoenix-config", pc.to_str().unwrap()]);
    r.assert_error(8, "differs from the host's kernel module 580.159.04");
}

#[test]
fn plain_lxc_target() {
    let h = TestHost::h200x2();
    h.put(
        "/srv/lxc/gpu1/config",
        "lxc.include = /usr/share/lxc/config/common.conf\nlxc.uts.name = gpu1\n",
    );
    let r = h.run(&[
        "apply",
        "gpu1",
        "--target",
        "lxc",
        "--lxcpath",
        "/srv/lxc",
        "--gpus",
        "1",
        "--config-only",
    ]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(h
        .get("/srv/lxc/gpu1/config")
        .ends_with("lxc.cgroup2.devices.allow = c 238:* rwm\nlxc.mount.entry = /dev/nvidia1 dev/nvidia1 none bind,optional,create=file\nlxc.mount.entry = /dev/nvidiactl dev/nvidiactl none bind,optional,create=file\nlxc.mount.entry = /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file\nlxc.mount.entry = /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file\n"));
    let r = h.run(&[
        "apply",
        "gpu1",
        "--target",
        "lxc",
        "--lxcpath",
        "/srv/lxc",
        "--gpus",
        "1",
        "--mode",
        "dev",
    ]);
    r.assert_error(2, "devN entries exist only on Proxmox VE");
}

/// Arguments, environment, exit code, text of the `error:` line.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);

/// Each bad input: one `error:` line, the right exit code, and not one byte written.
#[test]
fn bad_inputs() {
    let sha = "a".repeat(63);
    let cases: Vec<Case<'_>> = vec![
        (
            vec!["apply", "abc", "--gpus", "1"],
            vec![],
            2,
            "invalid CTID \"abc\"",
        ),
        (
            vec!["apply", "99", "--gpus", "1"],
            vec![],
            2,
            "invalid CTID \"99\"",
        ),
        (
            vec!["plan", "1e3", "--gpus", "1"],
            vec![],
            2,
            "invalid CTID",
        ),
        (
            vec!["verify", "abc", "--gpus", "1"],
            vec![],
            2,
            "invalid CTID",
        ),
        (vec!["remove", "12"], vec![], 2, "invalid CTID"),
        (vec!["check", "x1"], vec![], 2, "invalid CTID"),
        (
            vec!["apply", "101", "--gpus", ""],
            vec![],
            2,
            "invalid GPU selection \"\"",
        ),
        (
            vec!["apply", "101", "--gpus", "0,0"],
            vec![],
            2,
            "listed twice",
        ),
        (
            vec!["apply", "101", "--gpus", "0,,1"],
            vec![],
            2,
            "empty element",
        ),
        (
            vec!["apply", "101", "--gpus", "gpu0"],
            vec![],
            2,
            "invalid GPU selection",
        ),
        (
            vec!["apply", "101"],
            vec![("GPU_ASSIGNMENT", "1,x")],
            2,
            "invalid GPU selection",
        ),
        (vec!["apply", "101"], vec![], 2, "none given"),
        (
            vec!["apply", "101", "--gpus", "1", "--driver-version", "580"],
            vec![],
            2,
            "invalid driver version",
        ),
        (
            vec!["apply", "101", "--gpus", "1"],
            vec![("NVIDIA_DRIVER_VERSION", "v580.1")],
            2,
            "invalid driver version",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--mode", "fast"],
            vec![],
            2,
            "invalid value 'fast'",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--strategy", "apt"],
            vec![],
            2,
            "invalid value 'apt'",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--runfile-sha256", &sha],
            vec![],
            2,
            "--runfile-sha256",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--runfile-sha256", "xyz"],
            vec![],
            2,
            "64 hex digits",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--cuda", "12"],
            vec![],
            2,
            "invalid CUDA version",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--tools", "nvtop,,htop"],
            vec![],
            2,
            "invalid tool list",
        ),
        (
            vec![
                "apply",
                "101",
                "--gpus",
                "1",
                "--runfile-url",
                "ftp://x/y.run",
            ],
            vec![],
            2,
            "--runfile-url",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--restart-timeout", "soon"],
            vec![],
            2,
            "invalid value 'soon'",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--restart", "--no-restart"],
            vec![],
            2,
            "cannot be used with",
        ),
        (
            vec!["apply", "101", "--gpus", "1", "--mode", "dev"],
            vec![],
            2,
            "need Proxmox VE 8.1 or newer",
        ),
        (
            vec!["apply", "102", "--gpus", "1"],
            vec![],
            4,
            "cannot read the config of container 102",
        ),
        (
            vec!["plan", "102", "--gpus", "1"],
            vec![],
            4,
            "cannot read the config of container 102",
        ),
        (
            vec!["remove", "102"],
            vec![],
            4,
            "cannot read the config of container 102",
        ),
        (
            vec!["apply", "101", "--gpus", "2"],
            vec![],
            8,
            "GPU 2 is not on this host; it has: 0 (GPU-8ec68ad8",
        ),
        (
            vec![
                "apply",
                "101",
                "--gpus",
                "GPU-00000000-0000-0000-0000-000000000000",
            ],
            vec![],
            8,
            "is not on this host",
        ),
        (
            vec!["apply", "101", "--host", "pve2", "--gpus", "1"],
            vec![],
            2,
            "",
        ),
        (
            vec!["inventory", "--phoenix-config", "/nonexistent.json"],
            vec![],
            2,
            "cannot read the orchestrator config",
        ),
    ];
    for (args, env, code, needle) in cases {
        let h = TestHost::h200x2();
        let before = h.tree();
        let r = h.run_env(&args, &env);
        if needle.is_empty() {
            assert_eq!(r.code, code, "{args:?}: {r:#?}");
        } else {
            assert_eq!(r.code, code, "{args:?}: {r:#?}");
            let first = r.stderr.lines().find(|l| l.starts_with("error:"));
            assert!(
                first.is_some_and(|l| l.contains(needle)),
                "{args:?}: {needle:?} not in {:?}",
                r.stderr
            );
            assert_eq!(
                r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
                1,
                "{args:?}: {:?}",
                r.stderr
            );
        }
        assert_eq!(h.tree(), before, "{args:?} wrote something");
    }
}

#[test]
fn locked_config_is_exit_9_and_untouched() {
    let h = TestHost::h200x2();
    let locked = EXAMPLE_101.replacen("hostname:", "lock: snapshot\nhostname:", 1);
    h.put(CONF_101, &locked);
    let before = h.tree();
    h.run(&["apply", "101", "--gpus", "1", "--config-only"])
        .assert_error(9, "container 101 is locked (snapshot)");
    assert_eq!(h.tree(), before);
}

#[test]
fn unknown_ct_on_a_cluster_is_exit_3() {
    let h = TestHost::h200x2();
    h.put(
        "/etc/pve/.vmlist",
        r#"{"version": 3, "ids": {"101": {"node": "pve1", "type": "lxc", "version": 2}}}"#,
    );
    h.run(&["apply", "150", "--gpus", "1"])
        .assert_error(3, "container 150 does not exist");
}

#[test]
fn json_errors_carry_the_exit_code() {
    let h = TestHost::h200x2();
    let r = h.run(&["apply", "101", "--gpus", "7", "--config-only", "--json"]);
    assert_eq!(r.code, 8);
    let j = r.json();
    assert_eq!(j["exit_code"], 8);
    assert_eq!(j["error"]["kind"], "host_precondition");
    assert_eq!(j["steps"][0]["status"], "failed");
}

#[test]
fn log_file_lines_have_a_timestamp_the_command_and_the_step() {
    let h = TestHost::h200x2();
    let r = h.run(&["apply", "101", "--gpus", "1", "--config-only"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let log = h.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 9, "{log}");
    for l in &lines {
        let b = l.as_bytes();
        let stamp = b.len() > 27
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[10] == b'T'
            && l[..30].contains('Z');
        assert!(stamp, "no timestamp: {l}");
        assert!(l.contains("run{cmd=\"apply\"}"), "no command: {l}");
    }
    // Between the first and the last line everything happens inside a step.
    for l in &lines[1..lines.len() - 1] {
        assert!(l.contains(":step{ct=101 step=\""), "no step: {l}");
    }
    for step in [
        "host-check",
        "config",
        "restart",
        "userspace",
        "cuda",
        "tools",
        "verify",
    ] {
        assert!(
            log.contains(&format!("step{{ct=101 step=\"{step}\"}}")),
            "{step}: {log}"
        );
    }
    assert!(lines[lines.len() - 1].contains("phoenix-gpu finished exit_code=0"));
    // The log file is appended to, never truncated.
    let r = h.run(&["plan", "101", "--gpus", "1"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(h.log_text().starts_with(&log));
}

/// The log file takes a run at every container start (the pre-start hookscript runs `check`):
/// by default it gets info lines only, each run framed by its command line and exit code; -v
/// adds the debug lines.
#[test]
fn log_file_is_info_by_default_and_debug_with_v() {
    let h = TestHost::h200x2();
    let r = h.run(&["check", "101"]);
    assert_eq!(r.code, 10, "{r:#?}");
    let log = h.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 4, "{log}");
    assert!(lines.iter().all(|l| l.contains("Z  INFO ")), "{log}");
    assert!(lines[0].contains("phoenix-gpu started argv=["), "{log}");
    assert!(
        lines[lines.len() - 1].contains("phoenix-gpu finished exit_code=10"),
        "{log}"
    );
    assert!(log.contains("step=\"config\" status=ok"), "{log}");
    // Neither frame line reaches stderr.
    assert!(!r.stderr.contains("phoenix-gpu started"), "{r:#?}");

    let r = h.run(&["check", "101", "-v"]);
    assert_eq!(r.code, 10, "{r:#?}");
    let more = h.log_text()[log.len()..].to_owned();
    assert!(more.contains("Z DEBUG "), "{more}");
    assert!(more.contains("inventory read"), "{more}");
    assert!(
        !r.stderr.contains("DEBUG"),
        "-v shows info on stderr: {r:#?}"
    );
}

/// logrotate, where it is installed (`/usr/sbin` is not on every user's PATH); with `CI` set a
/// missing logrotate is a broken install, never a skip.
fn logrotate() -> Option<std::path::PathBuf> {
    let found = [
        "/usr/sbin/logrotate",
        "/sbin/logrotate",
        "/usr/bin/logrotate",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        let why = "logrotate is not installed (scripts/install-test-deps.sh installs it)";
        assert!(std::env::var_os("CI").is_none(), "CI is set but {why}");
        eprintln!("skipped: {why}");
    }
    found
}

/// The packaged logrotate file (`/etc/logrotate.d/phoenix-gpu`) really rotates the log (that it
/// names the binary's default is a unit test of `logging`): with the path pointed at a test
/// log, two forced rotations leave the newest old log plain, the one before compressed, and
/// each run writes a fresh file.
#[test]
fn the_packaged_logrotate_file_rotates_the_log() {
    const CONF: &str = include_str!("../../pkg/logrotate");
    const DEFAULT_LOG: &str = "/var/log/phoenix-gpu.log";
    assert!(CONF.contains(&format!("\n{DEFAULT_LOG} {{\n")), "{CONF}");
    let Some(logrotate) = logrotate() else {
        return;
    };
    let h = TestHost::h200x2();
    let log = h.log.path().join("phoenix-gpu.log");
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("phoenix-gpu");
    std::fs::write(&conf, CONF.replace(DEFAULT_LOG, log.to_str().unwrap())).unwrap();
    let rotate = || {
        let out = std::process::Command::new(&logrotate)
            .arg("--force")
            .arg("--state")
            .arg(work.path().join("state"))
            .arg(&conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{out:?}");
    };
    let rotated = |n: &str| h.log.path().join(format!("phoenix-gpu.log.{n}"));

    assert_eq!(h.run(&["plan", "101", "--gpus", "1"]).code, 0);
    let first = h.log_text();
    rotate();
    assert!(!log.exists(), "renamed, not copied");
    assert_eq!(std::fs::read_to_string(rotated("1")).unwrap(), first);

    assert_eq!(h.run(&["check", "101"]).code, 10);
    let second = h.log_text();
    assert!(second.contains("run{cmd=\"check\"}") && !second.contains("cmd=\"plan\""));
    rotate();
    assert_eq!(std::fs::read_to_string(rotated("1")).unwrap(), second);
    let gz = std::fs::read(rotated("2.gz")).unwrap();
    assert_eq!(gz[..2], [0x1f, 0x8b], "compressed");
}

#[test]
fn no_progress_drawing_when_not_a_terminal() {
    let h = TestHost::h200x2();
    let r = h.run(&["apply", "101", "--gpus", "1", "--config-only"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(!r.stderr.contains('\r'), "{:?}", r.stderr);
    assert!(!r.stderr.contains('\x1b'), "{:?}", r.stderr);
}

fn hint_line(r: &util::Run) -> String {
    let hints: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("hint:"))
        .collect();
    assert_eq!(hints.len(), 1, "{r:#?}");
    hints[0].to_owned()
}

#[test]
fn hint_locked_config_says_pct_unlock() {
    let h = TestHost::h200x2();
    let locked = EXAMPLE_101.replacen("hostname:", "lock: backup\nhostname:", 1);
    h.put(CONF_101, &locked);
    let r = h.run(&["apply", "101", "--gpus", "1"]);
    r.assert_error(9, "container 101 is locked (backup)");
    assert!(hint_line(&r).contains("`pct unlock 101`"), "{r:#?}");
    let j = h.run(&["apply", "101", "--gpus", "1", "--json"]).json();
    assert_eq!(j["exit_code"], 9);
    assert!(j["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("pct unlock 101"));
}

#[test]
fn hint_version_mismatch() {
    let h = TestHost::h200x2();
    let r = h.run(&[
        "plan",
        "101",
        "--gpus",
        "1",
        "--driver-version",
        "570.148.08",
    ]);
    r.assert_error(8, "requested driver version 570.148.08 differs");
    let hint = hint_line(&r);
    assert!(hint.contains("set it to auto or 580.159.04"), "{hint}");
    let r = h.run_env(
        &["plan", "101", "--gpus", "1"],
        &[("NVIDIA_DRIVER_VERSION", "570.148.08")],
    );
    assert_eq!(r.code, 8, "{r:#?}");
    assert!(hint_line(&r).contains("NVIDIA_DRIVER_VERSION"));
}

#[test]
fn hint_missing_uvm_says_host_prepare() {
    // dev mode (Proxmox 8.2) needs the node itself: it is gone after a reboot until
    // something loads nvidia-uvm.
    let h = TestHost::h200x2();
    h.pve_8_2();
    std::fs::remove_file(h.path("/dev/nvidia-uvm")).unwrap();
    let r = h.run(&["plan", "101", "--gpus", "1"]);
    r.assert_error(8, "/dev/nvidia-uvm is missing on the host");
    let hint = hint_line(&r);
    assert!(hint.contains("nvidia-modprobe -u -c0"), "{hint}");
    assert!(hint.contains("phoenix-gpu host prepare"), "{hint}");
    // No nvidia-uvm module at all: the same hint in raw mode.
    let h = TestHost::h200x2();
    let devices = h.get("/proc/devices");
    let without: String = devices
        .lines()
        .filter(|l| !l.ends_with(" nvidia-uvm"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(devices, without);
    h.put("/proc/devices", without);
    let r = h.run(&["plan", "101", "--gpus", "1", "--mode", "raw"]);
    r.assert_error(8, "/dev/nvidia-uvm is missing on the host");
    assert!(hint_line(&r).contains("phoenix-gpu host prepare"));
}

#[test]
fn hint_missing_program_names_it() {
    // No pct on this machine: the restart step cannot reach the container.
    let h = TestHost::h200x2();
    let r = h.run(&["apply", "101", "--gpus", "1", "--start"]);
    if r.code == 0 {
        test_support::cannot_run("hint_missing_program_names_it", "a machine without pct");
        return;
    }
    assert!(hint_line(&r).contains("`pct` is not installed"), "{r:#?}");
}

#[test]
fn stderr_is_quiet_by_default_and_steps_show_with_v() {
    let h = TestHost::h200x2();
    let quiet = h.run(&["plan", "101", "--gpus", "1"]);
    assert_eq!(quiet.code, 0, "{quiet:#?}");
    assert!(quiet.stdout.contains("config      planned"), "{quiet:#?}");
    assert_eq!(
        quiet.stderr, "",
        "without -v stderr holds warnings and errors only"
    );
    let loud = h.run(&["plan", "101", "--gpus", "1", "-v"]);
    assert!(loud.stderr.contains("step=\"config\""), "{loud:#?}");
    assert!(
        h.log_text().contains("step=\"config\""),
        "the log file has the step lines"
    );
}
