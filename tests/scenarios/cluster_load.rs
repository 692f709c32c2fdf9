//! SSH under load on a Proxmox cluster simulated on one machine (root only; CI is root): node
//! `pve1` is the local `--root` tree; `pve2` and `pve3` are trees of their own reached over SSH
//! (private sshds on 127.0.0.1, `--node-root` maps their paths). `pve2`'s sshd allows only
//! `MaxSessions 2` sessions per connection; `pve3`'s the helper's 50. Every container is a copy
//! of the example CT 101 with GPU 1 expected of it, so each has the same drift on every node,
//! and `pct status` is a stand-in that takes 0.5 s, as the real one does.
//!
//! - `check --all --jobs 16` checks every container, with the same findings on every node and
//!   the same exit code (10, drift) whatever pve2's limit: with the default bound (8 sessions,
//!   above pve2's limit: refused sessions are tried again and the bound learnt) and with
//!   `--ssh-max-sessions 1` (nothing refused at all; and, under strace, no name lookup).
//! - pve3's sshd stopped while its containers wait on `pct status`: each of them fails with
//!   exit 8 and the same SSH error, pve1's and pve2's are checked as before.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::fleet::phoenix_json;
use crate::util::{TestHost, EXAMPLE_101};
use test_support::{have, sshd_available, Sshd};

/// STAND-IN for Proxmox VE's `pct status`, for tests only. It is NOT pct.
///
/// The real `pct status CTID` prints `status: running` or `status: stopped` and exits 0 (an
/// unknown CTID: exit 2), and takes about half a second (it asks the cluster's API). This one
/// sleeps 0.5 s, appends `status CTID` to `pct.log` beside it, and says `status: stopped`, so
/// that `check` reads the container's state but runs nothing inside it. `pct exec CTID --
/// ...` on a stopped container fails (the real one dies saying the container is not running,
/// exit 255); `check` tries its probe first and asks the state when it fails, so this one
/// answers that way. A CTID listed in `hold` beside it instead waits in `status` (for a node
/// that goes down while it answers). Any other argv is refused with exit 64.
const PCT_STATUS_STANDIN: &str = r#"#!/bin/sh
here=$(dirname -- "$0")
if [ "$#" -ge 4 ] && [ "$1" = exec ] && [ "$3" = -- ]; then
    echo "container '$2' not running!" >&2; exit 255
fi
[ "$#" -eq 2 ] && [ "$1" = status ] || { echo "pct-status-standin: unexpected argv: $*" >&2; exit 64; }
echo "status $2" >> "$here/pct.log"
if grep -qx -- "$2" "$here/hold" 2>/dev/null; then exec sleep 600; fi
sleep 0.5
echo "status: stopped"
"#;

const PVE1: [&str; 2] = ["401", "402"];
const PVE2: [&str; 4] = ["411", "412", "413", "414"];
const PVE3: [&str; 4] = ["421", "422", "423", "424"];

fn vmlist() -> String {
    let ids: Vec<String> = [
        ("pve1", &PVE1[..]),
        ("pve2", &PVE2[..]),
        ("pve3", &PVE3[..]),
    ]
    .iter()
    .flat_map(|(node, ids)| {
        ids.iter().map(move |id| {
            format!("\"{id}\": {{ \"node\": \"{node}\", \"type\": \"lxc\", \"version\": 1 }}")
        })
    })
    .collect();
    format!(
        "{{\n\"version\": 3,\n\"ids\": {{\n{}\n}}\n}}\n",
        ids.join(",\n")
    )
}

/// The cluster: three node trees, two sshds, the stand-in and the flags that reach them.
struct Cluster {
    pve1: TestHost,
    _nodes: [TestHost; 2],
    sshd2: Sshd,
    sshd3: Sshd,
    work: tempfile::TempDir,
    flags: Vec<String>,
}

impl Cluster {
    fn new() -> Cluster {
        let pve1 = TestHost::h200x2();
        let nodes = [TestHost::h200x2(), TestHost::h200x2()];
        pve1.put("/etc/hostname", "pve1\n");
        pve1.put("/etc/pve/.vmlist", vmlist());
        for id in PVE1 {
            pve1.put(&format!("/etc/pve/lxc/{id}.conf"), EXAMPLE_101);
        }
        for (node, ids) in nodes.iter().zip([PVE2, PVE3]) {
            for id in ids {
                node.put(&format!("/etc/pve/lxc/{id}.conf"), EXAMPLE_101);
            }
        }
        let sshd2 = Sshd::start_with("MaxSessions 2\n");
        let sshd3 = Sshd::start();
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let pct = w.join("pct");
        std::fs::write(&pct, PCT_STATUS_STANDIN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pct, std::fs::Permissions::from_mode(0o755)).unwrap();
        let known_hosts = w.join("known_hosts");
        let both = std::fs::read_to_string(&sshd2.known_hosts).unwrap()
            + &std::fs::read_to_string(&sshd3.known_hosts).unwrap();
        std::fs::write(&known_hosts, both).unwrap();
        let ssh_config = w.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host 127.0.0.1\n  IdentityFile {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  BatchMode yes\n",
                sshd2.client_key.display(),
                sshd3.client_key.display(),
                known_hosts.display()
            ),
        )
        .unwrap();
        let pc = w.join("phoenix_lxc_configs.json");
        let gpus: Vec<(&str, &str)> = PVE1
            .iter()
            .chain(&PVE2)
            .chain(&PVE3)
            .map(|id| (*id, "1"))
            .collect();
        std::fs::write(&pc, phoenix_json(&gpus)).unwrap();
        let flags = vec![
            "--target".to_owned(),
            "pve".into(),
            "--pct-program".into(),
            pct.display().to_string(),
            "--ssh-config".into(),
            ssh_config.display().to_string(),
            "--node".into(),
            format!("pve2={}", sshd2.dest()),
            "--node".into(),
            format!("pve3={}", sshd3.dest()),
            "--node-root".into(),
            format!("pve2={}", nodes[0].root().display()),
            "--node-root".into(),
            format!("pve3={}", nodes[1].root().display()),
            "--phoenix-config".into(),
            pc.display().to_string(),
        ];
        Cluster {
            pve1,
            _nodes: nodes,
            sshd2,
            sshd3,
            work,
            flags,
        }
    }

    /// `phoenix-gpu --root PVE1 FLAGS... check --all --jobs 16 --json EXTRA...`, run by
    /// `wrapper` when given (a program and its arguments before ours).
    fn check_all(&self, wrapper: &[&str], extra: &[&str]) -> Command {
        let bin = env!("CARGO_BIN_EXE_phoenix-gpu");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("--root")
            .arg(self.pve1.root())
            .arg("--log-file")
            .arg(self.work.path().join("phoenix-gpu.log"))
            .args(&self.flags)
            .args(["check", "--all", "--jobs", "16", "--json"])
            .args(extra)
            .env_remove("GPU_ASSIGNMENT")
            .env_remove("NVIDIA_DRIVER_VERSION");
        cmd
    }

    fn pct_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("pct.log")).unwrap_or_default()
    }
}

/// The refusals pve2's sshd logged so far.
fn refusals(sshd: &Sshd) -> usize {
    sshd.log().matches("no more sessions").count()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A row's findings and notes with its own CTID taken out.
fn outcome(row: &serde_json::Value) -> String {
    let ct = row["ct"].as_str().unwrap();
    format!("{} {}", row["findings"], row["not_checked"]).replace(&format!("plan {ct}"), "plan CT")
}

/// Every container of `ids` was checked on `node`, with the same findings and notes as the
/// first container of pve1 (they all hold the same config, on nodes alike).
fn assert_checked_alike(j: &serde_json::Value, node: &str, ids: &[&str]) {
    let rows = j["containers"].as_array().unwrap();
    let first = rows
        .iter()
        .find(|r| r["ct"] == PVE1[0])
        .expect("pve1's first");
    assert!(!first["findings"].as_array().unwrap().is_empty(), "{j:#}");
    assert!(
        first["not_checked"]
            .to_string()
            .contains("the container is stopped"),
        "the pct stand-in answered: {first:#}"
    );
    for id in ids {
        let row = rows
            .iter()
            .find(|r| r["ct"] == *id)
            .unwrap_or_else(|| panic!("CT {id} was not checked: {j:#}"));
        assert_eq!(row["node"], node, "{row:#}");
        assert_eq!(row["drift"], true, "{row:#}");
        assert_eq!(outcome(row), outcome(first));
    }
}

#[test]
fn cluster_check_under_an_ssh_session_limit() {
    let test = "cluster_check_under_an_ssh_session_limit";
    if !sshd_available(test) || !have(test, &["strace"]) {
        return;
    }
    let c = Cluster::new();
    let all = PVE1.len() + PVE2.len() + PVE3.len();

    // The default bound (8) is above pve2's limit: its sshd refuses sessions, they are tried
    // again, and every container is checked.
    let out = c.check_all(&[], &[]).output().unwrap();
    let j = json(&out);
    assert_eq!(out.status.code(), Some(10), "{j:#}");
    assert_eq!(j["errors"], serde_json::json!([]), "{j:#}");
    assert_eq!(j["containers"].as_array().unwrap().len(), all, "{j:#}");
    assert_checked_alike(&j, "pve1", &PVE1);
    assert_checked_alike(&j, "pve2", &PVE2);
    assert_checked_alike(&j, "pve3", &PVE3);
    let refused = refusals(&c.sshd2);
    assert!(
        refused > 0,
        "pve2 should have refused sessions above its limit"
    );
    assert_eq!(refusals(&c.sshd3), 0);

    // Below the limit: nothing refused, the same result. Under strace (following every
    // process): no name lookup, no connection to a placeholder host.
    let trace = c.work.path().join("strace.out");
    let trace_s = trace.display().to_string();
    let strace = [
        "strace",
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-e",
        "trace=connect,sendto,sendmsg,sendmmsg",
        "-o",
        &trace_s,
    ];
    let out = c
        .check_all(&strace, &["--ssh-max-sessions", "1"])
        .output()
        .unwrap();
    let j = json(&out);
    assert_eq!(out.status.code(), Some(10), "{j:#}");
    assert_eq!(j["errors"], serde_json::json!([]), "{j:#}");
    assert_eq!(j["containers"].as_array().unwrap().len(), all, "{j:#}");
    assert_checked_alike(&j, "pve2", &PVE2);
    assert_checked_alike(&j, "pve3", &PVE3);
    assert_eq!(refusals(&c.sshd2), refused, "nothing refused this time");
    let trace = std::fs::read_to_string(&trace).unwrap();
    let to_masters = trace
        .lines()
        .filter(|l| l.contains("connect(") && l.contains(".ssh-connection"))
        .count();
    assert!(to_masters > 0, "the ssh clients were not traced:\n{trace}");
    let lookups: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("htons(53)") || l.contains("phoenix-gpu-mux"))
        .collect();
    assert!(lookups.is_empty(), "name lookups: {lookups:#?}");
}

#[test]
fn cluster_node_down_mid_run_fails_its_containers_with_exit_8() {
    let test = "cluster_node_down_mid_run_fails_its_containers_with_exit_8";
    if !sshd_available(test) {
        return;
    }
    let mut c = Cluster::new();
    // pve3's `pct status` waits: its containers are mid-check when its sshd stops.
    std::fs::write(c.work.path().join("hold"), PVE3.join("\n") + "\n").unwrap();
    let mut child = c
        .check_all(&[], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = |log: &str| {
        PVE3.iter()
            .all(|id| log.contains(&format!("status {id}\n")))
    };
    while !waiting(&c.pct_log()) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pve3's containers did not all ask for their state:\n{}\n{}{}",
                c.pct_log(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    c.sshd3.stop();
    let out = child.wait_with_output().unwrap();
    let j = json(&out);
    // pve1's and pve2's drift (10) outranks pve3's failures (8).
    assert_eq!(out.status.code(), Some(10), "{j:#}");
    assert_eq!(j["containers"].as_array().unwrap().len(), 6, "{j:#}");
    assert_checked_alike(&j, "pve1", &PVE1);
    assert_checked_alike(&j, "pve2", &PVE2);
    let errors = j["errors"].as_array().unwrap();
    let dest = c.sshd3.dest();
    let cause = format!(
        "ssh to {}: the connection was lost and cannot be opened again",
        dest.trim_start_matches("ssh://")
    );
    let mut got: Vec<&str> = errors.iter().map(|e| e["ct"].as_str().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, PVE3, "{j:#}");
    for e in errors {
        assert_eq!(e["node"], "pve3", "{e:#}");
        assert_eq!(e["exit_code"], 8, "{e:#}");
        let text = e["error"]["message"].as_str().unwrap();
        assert!(text.contains(&cause), "{cause:?} not in {text:?}");
        assert!(text.contains("Connection refused"), "{text}");
    }
    // The printed errors name the node of each failed container.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for id in PVE3 {
        assert!(stderr.contains(&format!("CT {id} on pve3: ")), "{stderr}");
    }
}
