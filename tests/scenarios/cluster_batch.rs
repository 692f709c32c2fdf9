//! Issue 21: on a Proxmox cluster the SSH work of a run is per node, not per container. Root
//! only (bind mounts, private sshds; CI is root).
//!
//! The cluster, simulated on this machine as pmxcfs shows one to its nodes: node `pve1` is the
//! local `--root` tree, whose `/etc/pve` holds the guest list and every node's configs under
//! `nodes/NODE/lxc/` (`lxc` is the link to `nodes/pve1/lxc`). The other nodes are trees of
//! their own reached over SSH (a private sshd each on 127.0.0.1, logging every session it
//! opens, `--node-root` maps their paths); each one's `/etc/pve/lxc` is a bind mount of its
//! directory in pve1's `/etc/pve/nodes`: one file, seen from two nodes, as pmxcfs does. Every
//! tree has a stand-in `/proc/net/unix` listing the LXC command sockets of the containers
//! that run (what Proxmox itself reads to tell whether a container runs).
//!
//! - `check --all` with 4, then 12 containers on each node: the sessions each node's sshd
//!   opens are the same (its inventory and the states of its containers), one connection per
//!   node, no `pct status`; `apply --all --config-only` writes each config through its own
//!   node; a converged apply opens no session per container.
//! - A cluster with drift, a stopped and a running container, a missing config, a converged
//!   container and an unreachable node: `check --all --json` gives the same rows and exit code
//!   read ahead (configs from pve1's `/etc/pve`, states from `/proc/net/unix`) as asked one by
//!   one over SSH (no shared `/etc/pve`, no `/proc/net/unix`: each config over the node's
//!   connection, `pct status` per container), and the rows expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::{run_ok, sshd_available, Sshd};

use crate::fleet::phoenix_json;
use crate::util::{Run, TestHost, EXAMPLE_101};

/// STAND-IN for Proxmox VE's `pct`, for tests only. It is NOT pct.
///
/// The real `pct status CTID` prints `status: running` or `status: stopped`; `pct exec CTID --
/// ARGV` runs ARGV in the container. This one appends `SUB CTID` to `pct.log` beside it, takes
/// the running containers from the file `running` beside it (one CTID a line), and answers
/// an exec in a running container (the probe) with a probe's output: `nvidia-smi` 550.127.05,
/// which is not the host's module. Anything else is refused with exit 64.
const PCT_STANDIN: &str = r#"#!/bin/sh
here=$(dirname -- "$0")
[ "$#" -ge 2 ] || { echo "pct-standin: unexpected argv: $*" >&2; exit 64; }
echo "$1 $2" >> "$here/pct.log"
running() { grep -qx -- "$1" "$here/running" 2>/dev/null; }
case $1 in
status)
    [ "$#" -eq 2 ] || exit 64
    if running "$2"; then echo "status: running"; else echo "status: stopped"; fi ;;
exec)
    running "$2" || { echo "container $2 is not running" >&2; exit 1; }
    printf 'probe=1\nsmi_path=/usr/bin/nvidia-smi\nsmi_version= 550.127.05\n' ;;
*) echo "pct-standin: unexpected argv: $*" >&2; exit 64 ;;
esac
"#;

/// A bind mount, undone on drop.
struct Bind(PathBuf);

impl Bind {
    fn new(src: &Path, dst: &Path) -> Bind {
        run_ok(Command::new("mount").arg("--bind").arg(src).arg(dst));
        Bind(dst.to_owned())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A node reached over SSH.
struct Remote {
    name: String,
    tree: TestHost,
    sshd: Sshd,
}

/// The simulated cluster.
struct SimCluster {
    /// Dropped first: unmounted before the trees are removed.
    mounts: Vec<Bind>,
    pve1: TestHost,
    remotes: Vec<Remote>,
    work: tempfile::TempDir,
    flags: Vec<String>,
    /// Guests: CTID -> node.
    guests: BTreeMap<String, String>,
    /// CTID -> the GPUs the orchestrator config gives it.
    gpus: BTreeMap<String, String>,
}

/// The lines of a `/proc/net/unix` in which the containers `running` have their LXC command
/// socket (`@/var/lib/lxc/CTID/command`), among sockets that are not containers'.
fn proc_net_unix(running: &[&str]) -> String {
    let mut text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
        0000000000000000: 00000003 00000000 00000000 0001 03 20117 /run/systemd/journal/stdout\n"
        .to_owned();
    for (i, id) in running.iter().enumerate() {
        text.push_str(&format!(
            "0000000000000000: 00000002 00000000 00010000 0001 01 {} @/var/lib/lxc/{id}/command\n\
             0000000000000000: 00000002 00000000 00010000 0001 01 {} @/var/lib/lxc/{id}/monitor-sock\n",
            30000 + 2 * i,
            30001 + 2 * i
        ));
    }
    text
}

impl SimCluster {
    /// pve1 and the nodes `remote` (each with its sshd); `unreachable` nodes have an address
    /// where nothing listens.
    fn new(remote: &[&str], unreachable: &[&str]) -> SimCluster {
        let pve1 = TestHost::h200x2();
        pve1.put("/etc/hostname", "pve1\n");
        std::fs::remove_dir_all(pve1.path("/etc/pve/lxc")).unwrap();
        std::fs::create_dir_all(pve1.path("/etc/pve/nodes/pve1/lxc")).unwrap();
        std::os::unix::fs::symlink("nodes/pve1/lxc", pve1.path("/etc/pve/lxc")).unwrap();
        pve1.put("/proc/net/unix", proc_net_unix(&[]));
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let pct = w.join("pct");
        std::fs::write(&pct, PCT_STANDIN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pct, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut mounts = Vec::new();
        let mut remotes = Vec::new();
        for name in remote {
            let tree = TestHost::h200x2();
            std::fs::remove_file(tree.path("/etc/pve/lxc/101.conf")).unwrap();
            tree.put("/etc/hostname", format!("{name}\n"));
            tree.put("/proc/net/unix", proc_net_unix(&[]));
            let shared = pve1.path(&format!("/etc/pve/nodes/{name}/lxc"));
            std::fs::create_dir_all(&shared).unwrap();
            mounts.push(Bind::new(&shared, &tree.path("/etc/pve/lxc")));
            let sshd = Sshd::start_with("LogLevel DEBUG1\n");
            remotes.push(Remote {
                name: name.to_string(),
                tree,
                sshd,
            });
        }
        let mut known_hosts = String::new();
        let mut config = "Host 127.0.0.1\n".to_owned();
        for r in &remotes {
            known_hosts.push_str(&std::fs::read_to_string(&r.sshd.known_hosts).unwrap());
            config.push_str(&format!("  IdentityFile {}\n", r.sshd.client_key.display()));
        }
        std::fs::write(w.join("known_hosts"), known_hosts).unwrap();
        config.push_str(&format!(
            "  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  BatchMode yes\n",
            w.join("known_hosts").display()
        ));
        std::fs::write(w.join("ssh_config"), config).unwrap();
        let mut flags: Vec<String> = vec![
            "--target".into(),
            "pve".into(),
            "--pct-program".into(),
            pct.display().to_string(),
            "--ssh-config".into(),
            w.join("ssh_config").display().to_string(),
            "--phoenix-config".into(),
            w.join("pc.json").display().to_string(),
        ];
        for r in &remotes {
            flags.extend([
                "--node".into(),
                format!("{}={}", r.name, r.sshd.dest()),
                "--node-root".into(),
                format!("{}={}", r.name, r.tree.root().display()),
            ]);
        }
        for name in unreachable {
            let port = test_support::free_port();
            flags.extend([
                "--node".into(),
                format!("{name}=ssh://root@127.0.0.1:{port}"),
            ]);
        }
        SimCluster {
            mounts,
            pve1,
            remotes,
            work,
            flags,
            guests: BTreeMap::new(),
            gpus: BTreeMap::new(),
        }
    }

    /// Places container `id` on `node` with the orchestrator's `gpus`, and (unless `None`)
    /// its config in pve1's view of `/etc/pve/nodes/NODE/lxc`.
    fn guest(&mut self, node: &str, id: &str, gpus: &str, config: Option<&str>) {
        self.guests.insert(id.to_owned(), node.to_owned());
        self.gpus.insert(id.to_owned(), gpus.to_owned());
        if let Some(text) = config {
            self.pve1
                .put(&format!("/etc/pve/nodes/{node}/lxc/{id}.conf"), text);
        }
        let ids: Vec<String> = self
            .guests
            .iter()
            .map(|(id, node)| {
                format!("\"{id}\": {{ \"node\": \"{node}\", \"type\": \"lxc\", \"version\": 1 }}")
            })
            .collect();
        self.pve1.put(
            "/etc/pve/.vmlist",
            format!(
                "{{\n\"version\": 5,\n\"ids\": {{\n{}\n}}\n}}\n",
                ids.join(",\n")
            ),
        );
        let gpus: Vec<(&str, &str)> = self
            .gpus
            .iter()
            .map(|(id, g)| (id.as_str(), g.as_str()))
            .collect();
        std::fs::write(self.work.path().join("pc.json"), phoenix_json(&gpus)).unwrap();
    }

    /// The containers of `node` that run, as its `/proc/net/unix` and the pct stand-in say.
    fn running(&self, node: &str, ids: &[&str]) {
        self.tree(node).put("/proc/net/unix", proc_net_unix(ids));
        let mut all = std::fs::read_to_string(self.work.path().join("running")).unwrap_or_default();
        for id in ids {
            all.push_str(&format!("{id}\n"));
        }
        std::fs::write(self.work.path().join("running"), all).unwrap();
    }

    fn tree(&self, node: &str) -> &TestHost {
        if node == "pve1" {
            return &self.pve1;
        }
        &self.remote(node).tree
    }

    fn remote(&self, node: &str) -> &Remote {
        self.remotes.iter().find(|r| r.name == node).unwrap()
    }

    /// `phoenix-gpu --root PVE1 FLAGS... ARGS...`.
    fn run(&self, args: &[&str]) -> Run {
        let mut a: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        a.extend_from_slice(args);
        self.pve1.run(&a)
    }

    /// The SSH sessions and connections `node`'s sshd served so far.
    fn served(&self, node: &str) -> (usize, usize) {
        let log = self.remote(node).sshd.log();
        (
            log.matches("server_input_channel_open: ctype session")
                .count(),
            log.matches("Accepted publickey").count(),
        )
    }

    /// What each remote node served while `f` ran: `(sessions, connections)` by node.
    fn serving<T>(&self, f: impl FnOnce() -> T) -> (T, BTreeMap<String, (usize, usize)>) {
        let before: Vec<(usize, usize)> =
            self.remotes.iter().map(|r| self.served(&r.name)).collect();
        let out = f();
        let delta = self
            .remotes
            .iter()
            .zip(before)
            .map(|(r, (s, c))| {
                let (s2, c2) = self.served(&r.name);
                (r.name.clone(), (s2 - s, c2 - c))
            })
            .collect();
        (out, delta)
    }

    fn pct_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("pct.log")).unwrap_or_default()
    }

    /// The same cluster without what lets a run read ahead: pve1 no longer sees the other
    /// nodes' configs (each node keeps its own copy in its `/etc/pve/lxc`, read over SSH), and
    /// no tree has a `/proc/net/unix` (each container's state is a `pct status`).
    fn one_by_one(&mut self) {
        for r in &self.remotes {
            let shared = self.pve1.path(&format!("/etc/pve/nodes/{}/lxc", r.name));
            let copies: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&shared)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.file_name().into(), std::fs::read(e.path()).unwrap())
                })
                .collect();
            let mount = r.tree.path("/etc/pve/lxc");
            self.mounts.retain(|m| m.0 != mount);
            for (name, bytes) in copies {
                std::fs::write(mount.join(name), bytes).unwrap();
            }
            std::fs::remove_dir_all(self.pve1.path(&format!("/etc/pve/nodes/{}", r.name))).unwrap();
            std::fs::remove_file(r.tree.path("/proc/net/unix")).unwrap();
        }
        std::fs::remove_file(self.pve1.path("/proc/net/unix")).unwrap();
    }
}

/// A row's findings and notes with its own CTID taken out.
fn outcome(row: &serde_json::Value) -> String {
    let ct = row["ct"].as_str().unwrap();
    format!("{} {}", row["findings"], row["not_checked"]).replace(&format!("plan {ct}"), "plan CT")
}

#[test]
fn cluster_sessions_per_node_do_not_grow_with_its_containers() {
    let test = "cluster_sessions_per_node_do_not_grow_with_its_containers";
    if !sshd_available(test) {
        return;
    }
    let mut c = SimCluster::new(&["pve2", "pve3"], &[]);
    let nodes = ["pve1", "pve2", "pve3"];
    let add = |c: &mut SimCluster, from: usize, to: usize| {
        for (k, node) in nodes.iter().enumerate() {
            for i in from..to {
                let id = format!("{}{:02}", 5 + k, i + 1);
                c.guest(node, &id, "1", Some(EXAMPLE_101));
            }
        }
    };
    let check = |c: &SimCluster, per_node: usize| {
        let (r, served) = c.serving(|| c.run(&["check", "--all", "--jobs", "8", "--json"]));
        assert_eq!(r.code, 10, "{r:#?}");
        let j = r.json();
        assert_eq!(j["errors"], serde_json::json!([]), "{j:#}");
        let rows = j["containers"].as_array().unwrap();
        assert_eq!(rows.len(), 3 * per_node, "{j:#}");
        let first = outcome(&rows[0]);
        assert!(first.contains("stale_major"), "{first}");
        assert!(first.contains("the container is stopped"), "{first}");
        for row in rows {
            assert_eq!(outcome(row), first, "every container alike: {row:#}");
        }
        served
    };

    add(&mut c, 0, 4);
    let four = check(&c, 4);
    add(&mut c, 4, 12);
    let twelve = check(&c, 12);
    for node in ["pve2", "pve3"] {
        let (sessions, connections) = four[node];
        assert_eq!(connections, 1, "{node}: one connection a run");
        assert!(
            (1..=10).contains(&sessions),
            "{node}: a handful of sessions a run, not a handful per container: {four:?}"
        );
    }
    assert_eq!(
        twelve, four,
        "with 12 containers a node, as many sessions as with 4"
    );
    assert!(
        !c.pct_log().contains("status "),
        "no container was asked its state on its own:\n{}",
        c.pct_log()
    );

    // Writes go through the node that holds the container's lock: each changed config is
    // written on its node (the file pve1 shows changes with it), its backup kept there.
    let (r, first) = c.serving(|| {
        c.run(&[
            "apply",
            "--all",
            "--config-only",
            "--strategy",
            "none",
            "--jobs",
            "8",
            "--json",
        ])
    });
    assert_eq!(r.code, 0, "{r:#?}");
    let j = r.json();
    assert_eq!(j["summary"]["changed"], 36, "{j:#}");
    for (k, node) in nodes.iter().enumerate() {
        let id = format!("{}01", 5 + k);
        let conf = c.pve1.get(&format!("/etc/pve/nodes/{node}/lxc/{id}.conf"));
        let main = conf.split("\n[").next().unwrap();
        assert!(
            main.contains("c 195:1 rwm") && !main.contains("c 508:"),
            "{conf}"
        );
        assert_eq!(
            c.tree(node).backups(&id).len(),
            1,
            "{node}: the backup is on the node"
        );
    }
    let (r, converged) = c.serving(|| {
        c.run(&[
            "apply",
            "--all",
            "--config-only",
            "--strategy",
            "none",
            "--jobs",
            "8",
            "--json",
        ])
    });
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.json()["summary"]["unchanged"], 36, "{}", r.stdout);
    for node in ["pve2", "pve3"] {
        let (base, _) = converged[node];
        let (with_writes, _) = first[node];
        assert!(
            base <= four[node].0,
            "{node}: a converged apply opens no session per container: {converged:?}"
        );
        // Each of its 12 containers' writes is one session (the write under the lock, its
        // backup, and the pruning of old backups), and the node's record is written once for
        // all of them.
        let writes = with_writes - base;
        assert_eq!(writes, 13, "{node}: {writes} sessions for 12 writes");
    }
}

#[test]
fn cluster_check_read_ahead_finds_what_one_by_one_finds() {
    let test = "cluster_check_read_ahead_finds_what_one_by_one_finds";
    if !sshd_available(test) {
        return;
    }
    let mut c = SimCluster::new(&["pve2"], &["pve3"]);
    c.guest("pve1", "601", "0", Some(EXAMPLE_101));
    c.guest("pve2", "611", "1", Some(EXAMPLE_101));
    c.guest("pve2", "612", "1", Some(EXAMPLE_101));
    c.guest("pve2", "613", "0", None);
    c.guest("pve2", "614", "1", Some(EXAMPLE_101));
    c.guest("pve3", "621", "1", None);
    c.running("pve2", &["612"]);
    let r = c.run(&["apply", "614", "--config-only", "--strategy", "none"]);
    assert_eq!(r.code, 0, "{r:#?}");

    let ahead = c.run(&["check", "--all", "--json"]);
    let log_ahead = c.pct_log();
    std::fs::remove_file(c.work.path().join("pct.log")).unwrap();
    c.one_by_one();
    let single = c.run(&["check", "--all", "--json"]);
    let log_single = c.pct_log();

    // What is expected: drift on 601, 611, 612 (also its old userspace), none on 614; 613's
    // config is missing (4); pve3 cannot be reached (8); drift (10) is the worst.
    let (a, s) = (ahead.json(), single.json());
    assert_eq!(ahead.code, 10, "{ahead:#?}");
    let rows = a["containers"].as_array().unwrap();
    let got: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["ct"].as_str().unwrap(),
                r["node"].as_str().unwrap(),
                r["drift"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("601", "pve1", true),
            ("611", "pve2", true),
            ("612", "pve2", true),
            ("614", "pve2", false)
        ],
        "{a:#}"
    );
    assert!(
        outcome(&rows[1]).contains("the container is stopped"),
        "{a:#}"
    );
    assert!(
        outcome(&rows[2]).contains("userspace is 550.127.05"),
        "the running one was probed: {a:#}"
    );
    let errors = |j: &serde_json::Value| -> Vec<(String, String, u64)> {
        j["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["ct"].as_str().unwrap().to_owned(),
                    e["node"].as_str().unwrap().to_owned(),
                    e["exit_code"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        errors(&a),
        [
            ("613".to_owned(), "pve2".to_owned(), 4),
            ("621".to_owned(), "pve3".to_owned(), 8)
        ]
    );
    for j in [&a, &s] {
        let e = &j["errors"];
        assert!(
            e[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot read the config of container 613"),
            "{e:#}"
        );
        assert!(
            e[1]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot reach cluster node pve3"),
            "{e:#}"
        );
    }

    // One by one, the same rows, errors and exit code.
    assert_eq!(single.code, ahead.code, "{single:#?}");
    assert_eq!(s["containers"], a["containers"]);
    assert_eq!(errors(&s), errors(&a));
    assert_eq!(s["errors"][1], a["errors"][1], "the same unreachable node");
    assert_eq!(s["drift"], a["drift"]);
    assert_eq!(s["without_gpu"], a["without_gpu"]);

    // Read ahead, no container was asked its state and only the running one was probed; one
    // by one, each with a config was probed, and each whose probe failed asked its state.
    assert_eq!(log_ahead, "exec 612\n", "{log_ahead}");
    let mut asked: Vec<&str> = log_single.lines().collect();
    asked.sort_unstable();
    assert_eq!(
        asked,
        [
            "exec 601",
            "exec 611",
            "exec 612",
            "exec 614",
            "status 601",
            "status 611",
            "status 614"
        ],
        "{log_single}"
    );
}
