//! A Proxmox cluster simulated on one machine (root only; CI is root): node `pve1` is the
//! local `--root` tree, node `pve2` is a second tree reached over SSH (a private sshd on
//! 127.0.0.1, `--node-root` maps its paths), and node `pve3` is a second sshd whose host key
//! is not in known_hosts, so strict host-key checking refuses it. `/etc/pve/.vmlist` of `pve1`
//! places the containers on the three nodes.
//!
//! Each container is a real busybox LXC container behind the `pct` stand-in of exec-backend's
//! tests (`--pct-program`): on `pve2` the engine runs `pct` over SSH (`Pct<SshHost>`), so the
//! restart, the probe and the verification go through the SSH connection. The stand-in nodes
//! inside come from an autodev hook, as in `fleet.rs`.

use std::path::Path;

use test_support::{lxc_available, sshd_available, Sshd, TestCt};

use crate::fleet::{ct_id, phoenix_json, standin_nodes};
use crate::util::TestHost;

const CONF: &str = "arch: amd64\ncores: 2\nhostname: gpu\nmemory: 2048\nostype: debian\n";

fn vmlist(cts: &[(&str, &str)]) -> String {
    let ids: Vec<String> = cts
        .iter()
        .map(|(id, node)| {
            format!("\"{id}\": {{ \"node\": \"{node}\", \"type\": \"lxc\", \"version\": 1 }}")
        })
        .collect();
    format!(
        "{{\n\"version\": 9,\n\"ids\": {{\n{},\n\"9000\": {{ \"node\": \"pve1\", \"type\": \"qemu\", \"version\": 2 }}}}\n}}\n",
        ids.join(",\n")
    )
}

/// The pct stand-in with its config: `CT_<id>=<lxc name>` for each container.
fn pct_standin(dir: &Path, lxcpath: &Path, cts: &[(&str, &TestCt)]) -> std::path::PathBuf {
    let program = dir.join("pct");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../exec-backend/tests/fixtures/pct-standin"
        ),
        &program,
    )
    .unwrap();
    let mut conf = format!(
        "LXCPATH='{}'\nLOG='{}'\n",
        lxcpath.display(),
        dir.join("pct.log").display()
    );
    for (id, ct) in cts {
        conf.push_str(&format!("CT_{id}='{}'\n", ct.name));
    }
    std::fs::write(dir.join("pct-standin.conf"), conf).unwrap();
    program
}

#[test]
fn cluster_apply_and_check_over_ssh() {
    if !lxc_available("cluster_apply_and_check_over_ssh")
        || !sshd_available("cluster_apply_and_check_over_ssh")
    {
        return;
    }
    let pve1 = TestHost::h200x2();
    let pve2 = TestHost::h200x2();
    pve1.put("/etc/hostname", "pve1.cluster.test\n");
    pve2.put("/etc/hostname", "pve2\n");
    // CTIDs (Proxmox ids, 100 or more) and the LXC containers behind them.
    let ids = ["301", "302", "303", "304"];
    pve1.put(
        "/etc/pve/.vmlist",
        vmlist(&[
            (ids[0], "pve1"),
            (ids[1], "pve2"),
            (ids[2], "pve2"),
            (ids[3], "pve3"),
        ]),
    );
    pve1.put(&format!("/etc/pve/lxc/{}.conf", ids[0]), CONF);
    pve2.put(&format!("/etc/pve/lxc/{}.conf", ids[1]), CONF);
    pve2.put(&format!("/etc/pve/lxc/{}.conf", ids[2]), CONF);

    let work = tempfile::tempdir().unwrap();
    let lxcpath = work.path().join("lxc");
    std::fs::create_dir_all(&lxcpath).unwrap();
    let minors: [&[u32]; 3] = [&[0], &[1], &[0, 1]];
    let cts: Vec<TestCt> = (0..3)
        .map(|i| {
            let ct = TestCt::create_at(&lxcpath, &ct_id(82, i as u32 + 1));
            standin_nodes(&ct, work.path(), minors[i]);
            ct.start();
            ct
        })
        .collect();
    let pct = pct_standin(
        work.path(),
        &lxcpath,
        &[(ids[0], &cts[0]), (ids[1], &cts[1]), (ids[2], &cts[2])],
    );

    let sshd2 = Sshd::start();
    let sshd3 = Sshd::start();
    // Both client keys are offered, but only pve2's host key is known: pve3 fails on it.
    let ssh_config = work.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host 127.0.0.1\n  IdentityFile {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  BatchMode yes\n",
            sshd2.client_key.display(),
            sshd3.client_key.display(),
            sshd2.known_hosts.display()
        ),
    )
    .unwrap();
    let pc = work.path().join("phoenix_lxc_configs.json");
    std::fs::write(
        &pc,
        phoenix_json(&[(ids[0], "0"), (ids[1], "1"), (ids[2], "0,1"), (ids[3], "1")]),
    )
    .unwrap();
    let node2 = format!("pve2={}", sshd2.dest());
    let node3 = format!("pve3={}", sshd3.dest());
    let root2 = format!("pve2={}", pve2.root().display());
    let base: Vec<String> = [
        "--target",
        "pve",
        "--pct-program",
        pct.to_str().unwrap(),
        "--ssh-config",
        ssh_config.to_str().unwrap(),
        "--node",
        &node2,
        "--node",
        &node3,
        "--node-root",
        &root2,
        "--phoenix-config",
        pc.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = base.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        pve1.run(&a)
    };

    let r = run(&[
        "apply",
        "--all",
        "--strategy",
        "none",
        "--jobs",
        "4",
        "--json",
    ]);
    assert_eq!(r.code, 8, "pve3 cannot be reached: {r:#?}");
    let j = r.json();
    let rows = j["rows"].as_array().unwrap();
    let got: Vec<(&str, &str, &str, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["ct"].as_str().unwrap(),
                r["node"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
                r["exit_code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0], "pve1", "changed", 0),
            (ids[1], "pve2", "changed", 0),
            (ids[2], "pve2", "changed", 0),
            (ids[3], "pve3", "failed", 8),
        ],
        "{j:#}"
    );
    for row in &rows[..3] {
        assert_eq!(row["report"]["counters"]["restarts"], 1, "{row:#}");
        let verify = row["report"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "verify")
            .unwrap()
            .clone();
        // The first verification puts the tool's gpu-check into the container: a change.
        assert_eq!(verify["status"], "changed", "{row:#}");
        assert!(
            verify["detail"]
                .as_str()
                .unwrap()
                .ends_with("; gpu-check put in place"),
            "{row:#}"
        );
    }
    assert!(
        rows[3]["report"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach cluster node pve3"),
        "{:#}",
        rows[3]
    );
    // Each config was written on its own node's tree, and only there.
    let c301 = pve1.get("/etc/pve/lxc/301.conf");
    assert!(c301.contains("c 195:0 rwm"), "{c301}");
    assert!(c301.contains("/dev/nvidia0 dev/nvidia0"), "{c301}");
    let c302 = pve2.get("/etc/pve/lxc/302.conf");
    assert!(c302.contains("c 195:1 rwm"), "{c302}");
    assert!(!c302.contains("/dev/nvidia0 "), "{c302}");
    let c303 = pve2.get("/etc/pve/lxc/303.conf");
    assert!(c303.contains("/dev/nvidia0 dev/nvidia0") && c303.contains("/dev/nvidia1 dev/nvidia1"));
    assert!(!pve1.path("/etc/pve/lxc/302.conf").exists());
    assert_eq!(
        pve2.backups("302").len(),
        1,
        "the backup is kept on pve2's tree"
    );
    // One connection per node: pve2 was connected once for its two containers.
    let log = pve1.log_text();
    assert_eq!(
        log.matches("connecting to cluster node").count(),
        2,
        "pve2 and pve3 once each:\n{log}"
    );
    let pct_log = std::fs::read_to_string(work.path().join("pct.log")).unwrap();
    assert!(pct_log.contains("exec 302 --"), "{pct_log}");

    // Converged: one probe exec per container, nothing written, over SSH too.
    let j = run(&["apply", "--all", "--strategy", "none", "--json"]).json();
    for row in &j["rows"].as_array().unwrap()[..3] {
        assert_eq!(row["result"], "unchanged", "{row:#}");
        assert_eq!(row["report"]["counters"]["container_execs"], 1, "{row:#}");
        assert_eq!(row["report"]["counters"]["config_writes"], 0, "{row:#}");
    }

    // check --all across the cluster: no drift, pve3 unreachable (8); then a stale major on
    // pve2 is drift, and 10 outranks 8.
    let r = run(&["check", "--all", "--json"]);
    assert_eq!(r.code, 8, "{r:#?}");
    let j = r.json();
    assert_eq!(j["drift"], false, "{j:#}");
    assert_eq!(j["containers"].as_array().unwrap().len(), 3, "{j:#}");
    assert_eq!(j["errors"][0]["ct"], ids[3]);
    pve2.put(
        "/etc/pve/lxc/302.conf",
        format!("{c302}lxc.cgroup2.devices.allow: c 508:* rwm\n"),
    );
    let r = run(&["check", "--all"]);
    assert_eq!(r.code, 10, "{r:#?}");
    assert!(r.stdout.contains("302"), "{}", r.stdout);
    assert!(r.stdout.contains("stale major"), "{}", r.stdout);
    // A single CT on another node is reached the same way.
    let r = run(&["check", "303"]);
    assert_eq!(r.code, 0, "{r:#?}");
}

/// `--host`: everything runs on that node over SSH. With `--root`, the node's paths map under
/// that directory on the node (here the node is this machine's sshd on 127.0.0.1).
#[test]
fn host_flag_plans_and_applies_over_ssh() {
    if !sshd_available("host_flag_plans_and_applies_over_ssh") {
        return;
    }
    let node = TestHost::h200x2();
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let ssh_config = work.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host 127.0.0.1\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  BatchMode yes\n",
            sshd.client_key.display(),
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    let dest = sshd.dest();
    let over_ssh = |extra: &[&str]| {
        let mut a = vec![
            "--host",
            dest.as_str(),
            "--ssh-config",
            ssh_config.to_str().unwrap(),
            "--target",
            "pve",
        ];
        a.extend_from_slice(extra);
        node.run(&a)
    };
    let conf = "/etc/pve/lxc/101.conf";
    let before = node.get(conf);

    let inv = over_ssh(&["inventory", "--json"]);
    assert_eq!(inv.code, 0, "{inv:#?}");
    assert_eq!(inv.json()["driver_version"], "580.159.04");

    let plan = over_ssh(&["plan", "101", "--gpus", "1", "--json"]);
    assert_eq!(plan.code, 0, "{plan:#?}");
    assert!(
        plan.json()["config_diff"]
            .as_str()
            .unwrap()
            .contains("+lxc.cgroup2.devices.allow: c 195:1 rwm"),
        "{plan:#?}"
    );
    assert_eq!(node.get(conf), before, "plan writes nothing");

    let first = over_ssh(&["apply", "101", "--gpus", "1", "--config-only", "--json"]);
    assert_eq!(first.code, 0, "{first:#?}");
    assert_eq!(first.json()["counters"]["config_writes"], 1);
    let written = node.get(conf);
    assert!(written
        .contains("lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file\n"));
    let main_section = written.split("\n[").next().unwrap();
    assert!(
        !main_section.contains("c 508:* rwm"),
        "the stale uvm major is gone from the main section"
    );
    assert!(
        written.contains("c 508:* rwm"),
        "the snapshot keeps its own lines"
    );
    assert_eq!(
        node.backups("101").len(),
        1,
        "the backup was written on the node"
    );

    let second = over_ssh(&["apply", "101", "--gpus", "1", "--config-only", "--json"]);
    assert_eq!(second.code, 0, "{second:#?}");
    assert_eq!(second.json()["changed"], false);
    assert_eq!(second.json()["counters"]["config_writes"], 0);
    assert_eq!(node.get(conf), written);
}
