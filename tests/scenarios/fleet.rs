//! Fleet work on real LXC containers (root only; CI is root): `apply --all` of an
//! orchestrator config in parallel, the converged re-run, the worst exit code, `sync --all`,
//! and `check` of a stopped container.
//!
//! The GPU host is the captured H200 host under `--root`; the busybox containers live in
//! `<root>/var/lib/lxc` (`--target lxc --lxcpath /var/lib/lxc`), so the tool edits the very
//! configs LXC starts them from. This machine has no GPU: the mount sources the tool writes
//! (`/dev/nvidia1`, ...) do not exist here and LXC skips them (`optional`). So that the
//! strategy-`none` verification (device nodes with the host's numbers inside) can pass, each
//! container gets stand-in nodes from an `lxc.hook.autodev` script written by the test: what
//! the bind mounts give a container on a GPU host. The assertions are on the configs and
//! the counters; the hook only stands in for the missing host nodes.

use std::path::{Path, PathBuf};

use test_support::{lxc_available, TestCt};

use crate::util::TestHost;

/// The uvm major of the captured host (its /proc/devices).
const UVM_MAJOR: u32 = 238;

/// Numeric container names unique to this process and test (`<test><pid%100000><i>`).
pub fn ct_id(test: u32, i: u32) -> String {
    format!("{test}{:05}{i}", std::process::id() % 100_000)
}

/// Writes an autodev hook that makes the stand-in nodes of `minors` (plus nvidiactl and the
/// uvm node) in the container's /dev, and adds it to the container's config.
pub fn standin_nodes(ct: &TestCt, hooks: &Path, minors: &[u32]) {
    let hook = hooks.join(format!("{}-autodev.sh", ct.name));
    let mut script = String::from(
        "#!/bin/sh\n# Test stand-in for the NVIDIA nodes the bind mounts give a container on a GPU host.\nset -e\nd=\"$LXC_ROOTFS_MOUNT/dev\"\n",
    );
    let mut nodes: Vec<(String, u32, u32)> = minors
        .iter()
        .map(|m| (format!("nvidia{m}"), 195, *m))
        .collect();
    nodes.push(("nvidiactl".into(), 195, 255));
    nodes.push(("nvidia-uvm".into(), UVM_MAJOR, 0));
    nodes.push(("nvidia-uvm-tools".into(), UVM_MAJOR, 1));
    for (name, major, minor) in nodes {
        script.push_str(&format!(
            "rm -f \"$d/{name}\"; mknod -m 666 \"$d/{name}\" c {major} {minor}\n"
        ));
    }
    std::fs::write(&hook, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = ct.lxcpath.join(&ct.name).join("config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("lxc.hook.autodev = {}\n", hook.display()));
    std::fs::write(&config, text).unwrap();
}

/// The orchestrator's JSON for `(id, gpu_assignment)` pairs.
pub fn phoenix_json(cts: &[(&str, &str)]) -> String {
    let body: Vec<String> = cts
        .iter()
        .map(|(id, g)| format!("\"{id}\": {{\"name\": \"ct{id}\", \"gpu_assignment\": \"{g}\", \"unprivileged\": false}}"))
        .collect();
    format!(
        "{{\"nvidia_driver_version\": \"580.159.04\", \"lxc_configs\": {{{}}}}}",
        body.join(", ")
    )
}

fn config(ct: &TestCt) -> String {
    std::fs::read_to_string(ct.lxcpath.join(&ct.name).join("config")).unwrap()
}

fn rows(j: &serde_json::Value) -> Vec<serde_json::Value> {
    j["rows"].as_array().unwrap().clone()
}

#[test]
fn fleet_apply_check_and_sync_on_real_containers() {
    if !lxc_available("fleet_apply_check_and_sync_on_real_containers") {
        return;
    }
    let h = TestHost::h200x2();
    h.v1_devices();
    let lxcpath: PathBuf = h.path("/var/lib/lxc");
    std::fs::create_dir_all(&lxcpath).unwrap();
    let hooks = tempfile::tempdir().unwrap();
    // (name, gpu_assignment, minors, running)
    let plan: [(String, &str, &[u32], bool); 5] = [
        (ct_id(81, 1), "0", &[0], true),
        (ct_id(81, 2), "1", &[1], true),
        (ct_id(81, 3), "0, 1", &[0, 1], true),
        (ct_id(81, 4), "1", &[1], false),
        (ct_id(81, 5), "none", &[], true),
    ];
    let cts: Vec<TestCt> = plan
        .iter()
        .map(|(name, _, minors, running)| {
            let ct = TestCt::create_at(&lxcpath, name);
            standin_nodes(&ct, hooks.path(), minors);
            if *running {
                ct.start();
            }
            ct
        })
        .collect();
    let pairs: Vec<(&str, &str)> = plan.iter().map(|(n, g, _, _)| (n.as_str(), *g)).collect();
    let pc = hooks.path().join("phoenix_lxc_configs.json");
    std::fs::write(&pc, phoenix_json(&pairs)).unwrap();
    let pc = pc.to_str().unwrap();
    let before_none = config(&cts[4]);
    let base = [
        "--target",
        "lxc",
        "--lxcpath",
        "/var/lib/lxc",
        "--phoenix-config",
        pc,
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |extra: &[&str]| {
        let a = with(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        h.run(&a)
    };

    // First run: every GPU container of the config, four at a time.
    let r = run(&[
        "apply",
        "--all",
        "--strategy",
        "none",
        "--jobs",
        "4",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:#?}");
    let j = r.json();
    assert_eq!(j["exit_code"], 0);
    let rs = rows(&j);
    let ids: Vec<&str> = rs.iter().map(|r| r["ct"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        plan[..4].iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        "the GPU containers in id order, the `none` one left out"
    );
    assert_eq!(j["summary"]["changed"], 4);
    for (row, (_, gpus, minors, running)) in rs.iter().zip(&plan) {
        assert_eq!(row["result"], "changed", "{row:#}");
        assert_eq!(row["exit_code"], 0);
        assert_eq!(row["gpus"], gpus.replace(' ', ""));
        assert_eq!(row["node"], "localhost");
        let c = &row["report"]["counters"];
        assert_eq!(c["config_writes"], 1, "{row:#}");
        // A running container gets its GPUs live (devices only), a stopped one at its start.
        assert_eq!(c["restarts"], 0, "{row:#}");
        let by = &row["report"]["activation"]["by"];
        if *running {
            assert_eq!(by, "live", "{row:#}");
        } else {
            assert!(by.is_null(), "{row:#}");
        }
        let ct = cts.iter().find(|c| c.name == row["ct"]).unwrap();
        let text = config(ct);
        for m in *minors {
            assert!(
                text.contains(&format!("lxc.cgroup.devices.allow = c 195:{m} rwm\n")),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "lxc.mount.entry = /dev/nvidia{m} dev/nvidia{m} none bind,optional,create=file\n"
                )),
                "{text}"
            );
        }
        assert!(text.contains("lxc.cgroup.devices.allow = c 238:* rwm\n"));
        assert!(text.contains("lxc.hook.autodev = "), "other lines are kept");
        let steps = row["report"]["steps"].as_array().unwrap();
        let verify = steps.iter().find(|s| s["name"] == "verify").unwrap();
        if *running {
            // The first verification puts the tool's gpu-check into the container: a change.
            assert_eq!(verify["status"], "changed", "{row:#}");
            assert!(
                verify["detail"]
                    .as_str()
                    .unwrap()
                    .ends_with("; gpu-check put in place"),
                "{row:#}"
            );
        } else {
            assert_eq!(verify["status"], "skipped", "{row:#}");
        }
    }
    assert_eq!(
        config(&cts[4]),
        before_none,
        "gpu_assignment none is not touched"
    );

    // Second run: converged. One probe exec per running container, nothing written.
    let r = run(&["apply", "--all", "--strategy", "none", "--jobs", "4"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.starts_with("CTID"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("4 container(s): 0 changed, 4 unchanged, 0 skipped, 0 failed; exit 0"),
        "{}",
        r.stdout
    );
    let j = run(&["apply", "--all", "--strategy", "none", "--json"]).json();
    for (row, (_, _, _, running)) in rows(&j).iter().zip(&plan) {
        assert_eq!(row["result"], "unchanged", "{row:#}");
        let c = &row["report"]["counters"];
        assert_eq!(c["config_writes"], 0);
        assert_eq!(c["restarts"], 0);
        // One probe each: a running container answers it; a stopped one cannot be entered,
        // and then its state is asked (the probe is tried first: a converged running
        // container costs the one exec and no state question).
        assert_eq!(c["container_execs"], 1, "{row:#}");
        assert_eq!(c["host_commands"], if *running { 1 } else { 2 }, "{row:#}");
    }

    // Several CTIDs, one of them missing: that row fails (4), the other still runs; the
    // exit code is the worst one.
    let a = ct_id(81, 1);
    let r = run(&[
        "apply",
        &a,
        "no-such-ct",
        "--gpus",
        "0",
        "--strategy",
        "none",
        "--json",
    ]);
    assert_eq!(r.code, 4, "{r:#?}");
    let j = r.json();
    assert_eq!(j["exit_code"], 4);
    assert_eq!(j["summary"]["unchanged"], 1, "{j:#}");
    assert_eq!(j["summary"]["failed"], 1, "{j:#}");
    assert_eq!(rows(&j)[1]["error_kind"], "config_missing");

    // sync --all: the assignment read back from each config, applied again: nothing to do.
    let r = run(&["sync", "--all", "--strategy", "none", "--json"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let j = r.json();
    let got: Vec<(String, String, String)> = rows(&j)
        .iter()
        .map(|r| {
            (
                r["ct"].as_str().unwrap().to_owned(),
                r["gpus"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = plan[..4]
        .iter()
        .map(|(n, g, _, _)| (n.clone(), g.replace(' ', ""), "unchanged".to_owned()))
        .collect();
    assert_eq!(got, want);

    // check --all: quiet when fine; a stale major on the stopped container is drift (10),
    // found from the host side alone (no probe of a stopped container).
    let r = run(&["-q", "check", "--all"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.stdout, "", "quiet when fine");
    let stopped = &cts[3];
    let path = stopped.lxcpath.join(&stopped.name).join("config");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("lxc.cgroup.devices.allow = c 508:* rwm\n");
    std::fs::write(&path, text).unwrap();
    let r = run(&["check", &stopped.name, "--json"]);
    assert_eq!(r.code, 10, "{r:#?}");
    let j = r.json();
    let c = &j["containers"][0];
    assert_eq!(c["findings"][0]["kind"], "stale_major", "{j:#}");
    assert!(
        c["not_checked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("stopped")),
        "{j:#}"
    );
    let r = run(&["-q", "check", "--all"]);
    assert_eq!(r.code, 10, "{r:#?}");
    assert!(r.stdout.contains(&stopped.name), "{}", r.stdout);
    assert!(r.stdout.contains("stale major"), "{}", r.stdout);
}
