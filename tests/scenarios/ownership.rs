//! The ownership corpus (`testdata/corpus/ownership/`: configs we wrote, one story each in
//! their `.json`): every case through the binary, in raw and dev mode, privileged and
//! unprivileged, for `apply --gpus 1` (twice: the second changes nothing), `apply --gpus 0,1`,
//! `remove` and `check`. Every line a case does not declare NVIDIA's must come out byte for
//! byte and in order; refusals (a pending change in the way) must be exit 9 with the config
//! untouched.
//!
//! Each run that writes leaves its configs in `target/conformance/<run>/` (`before.conf`,
//! `after.conf`, `expect.json`: the nodes the container must get, the rules raw mode must
//! give, the lines the case says are NVIDIA's). `scripts/pve-conformance.sh` runs them through
//! Proxmox's own parser and start path (CI's conformance stage); this test does not need it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::{TestHost, CONF_101};

/// One case of the corpus.
struct Case {
    name: String,
    /// Proxmox (`.conf`) or plain LXC (`.lxc`).
    pve: bool,
    text: String,
    meta: Value,
}

impl Case {
    fn list(&self, key: &str) -> Vec<String> {
        self.meta[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    fn refuses(&self, run: &str) -> bool {
        self.list("refuse").iter().any(|r| r == run)
    }
}

fn corpus() -> Vec<Case> {
    let dir = test_support::testdata().join("corpus/ownership");
    let mut cases = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "conf" && ext != "lxc" {
            continue;
        }
        let meta = std::fs::read_to_string(p.with_extension("json"))
            .unwrap_or_else(|e| panic!("{}: its .json: {e}", p.display()));
        cases.push(Case {
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            pve: ext == "conf",
            text: std::fs::read_to_string(&p).unwrap(),
            meta: serde_json::from_str(&meta).unwrap(),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 12, "{} cases", cases.len());
    cases
}

/// Where the runs leave their configs: `target/conformance`, beside the binary's `debug/`.
fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_phoenix-gpu"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("conformance")
}

/// The case as written, and with the other privilege (a config with its own id map stays as
/// it is: its map is for one of them).
fn variants(case: &Case) -> Vec<(&'static str, String)> {
    let mut v = vec![("as-written", case.text.clone())];
    if !case.pve || case.text.contains("lxc.idmap") {
        return v;
    }
    let flipped = if case.text.contains("\nunprivileged: 1\n") {
        case.text.replacen("\nunprivileged: 1\n", "\n", 1)
    } else {
        let at = case
            .text
            .find("\nswap:")
            .expect("every Proxmox case has swap:");
        let eol = at + 1 + case.text[at + 1..].find('\n').unwrap();
        format!(
            "{}\nunprivileged: 1{}",
            &case.text[..eol],
            &case.text[eol..]
        )
    };
    v.push(("flipped", flipped));
    v
}

/// A fresh host with the case's config, node record and `/proc/devices`.
fn host(case: &Case, text: &str) -> (TestHost, String) {
    let h = TestHost::h200x2_unrecorded();
    std::fs::remove_file(h.path(CONF_101)).unwrap();
    h.pve_8_2();
    if let Some(r) = case.meta["record"].as_str() {
        h.put("/var/lib/phoenix-gpu/nvidia-record", r);
    }
    let without = case.list_u32("devices_without");
    if !without.is_empty() {
        let devices: String = h
            .get("/proc/devices")
            .lines()
            .filter(|l| {
                let major = l
                    .split_whitespace()
                    .next()
                    .and_then(|m| m.parse::<u32>().ok());
                !major.is_some_and(|m| without.contains(&m))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        h.put("/proc/devices", devices);
    }
    let path = if case.pve {
        CONF_101.to_owned()
    } else {
        "/var/lib/lxc/media/config".to_owned()
    };
    h.put(&path, text);
    (h, path)
}

impl Case {
    fn list_u32(&self, key: &str) -> Vec<u32> {
        self.meta[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap() as u32).collect())
            .unwrap_or_default()
    }

    /// The container's id and the arguments that name its target.
    fn target(&self) -> Vec<&'static str> {
        if self.pve {
            vec!["101", "--target", "pve"]
        } else {
            vec!["media", "--target", "lxc"]
        }
    }
}

/// Lines with their line endings (`\r` kept).
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Whether `line` is one the tool writes: NVIDIA allow rules, node mounts, devN entries, for
/// the captured host's majors.
fn tool_form(line: &str) -> bool {
    let l = line.trim_end();
    let rule = ["lxc.cgroup2.devices.allow", "lxc.cgroup.devices.allow"]
        .iter()
        .any(|k| {
            [": c ", " = c "].iter().any(|sep| {
                ["195:", "238:", "241:"]
                    .iter()
                    .any(|m| l.starts_with(&format!("{k}{sep}{m}")))
            })
        });
    let mount = [
        "lxc.mount.entry: /dev/nvidia",
        "lxc.mount.entry = /dev/nvidia",
    ]
    .iter()
    .any(|p| l.starts_with(p));
    let dev = l.starts_with("dev") && l.contains(": /dev/nvidia");
    // The test host's userspace stand-ins, bound by the host-libs strategy.
    let libs = [
        "lxc.mount.entry: /usr/local/nvidia/",
        "lxc.mount.entry = /usr/local/nvidia/",
    ]
    .iter()
    .any(|p| l.starts_with(p));
    rule || mount || dev || libs
}

/// Every line of `before` the case does not declare NVIDIA's is in `after`, unchanged and in
/// order, and every other line of `after` is one of the case's NVIDIA lines or one the tool
/// writes.
fn assert_kept(case: &Case, run: &str, before: &str, after: &str) {
    let owned = case.list("owned");
    let kept: Vec<&str> = lines(before)
        .into_iter()
        .filter(|l| !owned.iter().any(|o| o == l.trim_end_matches('\n')))
        .collect();
    let mut it = kept.iter().peekable();
    for l in lines(after) {
        if it.peek() == Some(&&l) {
            it.next();
        } else {
            // Else one of the case's NVIDIA lines the tool kept, or one it wrote.
            assert!(
                owned.iter().any(|o| o == l.trim_end_matches('\n')) || tool_form(l),
                "{run}: {l:?} is neither a kept line nor one the tool writes\n{after}"
            );
        }
    }
    let lost: Vec<&&str> = it.collect();
    assert!(
        lost.is_empty(),
        "{run}: lost or reordered {lost:?}\n{after}"
    );
}

/// What Proxmox's start path must give after `op`.
fn expect(op: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    let ctl = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
    let rules = ["c 195:255 rwm", "c 238:* rwm"];
    match op {
        "gpu1" => (
            [&["/dev/nvidia1"][..], &ctl].concat(),
            [&["c 195:1 rwm"][..], &rules].concat(),
        ),
        "gpus01" => (
            [&["/dev/nvidia0", "/dev/nvidia1"][..], &ctl].concat(),
            [&["c 195:0 rwm", "c 195:1 rwm"][..], &rules].concat(),
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

#[test]
fn ownership_corpus_through_the_binary() {
    let out = conformance_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut written = 0;
    for case in corpus() {
        let modes: &[&str] = if case.pve { &["raw", "dev"] } else { &["raw"] };
        for (variant, text) in variants(&case) {
            for mode in modes {
                for op in ["gpu1", "gpus01", "remove"] {
                    let run = format!("{}__{variant}__{mode}__{op}", case.name);
                    let (h, path) = host(&case, &text);
                    let mut args: Vec<&str> = match op {
                        "remove" => vec!["remove"],
                        _ => vec!["apply"],
                    };
                    args.extend(case.target());
                    if op != "remove" {
                        let gpus = if op == "gpu1" { "1" } else { "0,1" };
                        args.extend(["--gpus", gpus, "--mode", mode, "--config-only"]);
                    }
                    let r = h.run(&args);
                    let refused = match op {
                        "remove" => case.refuses("remove"),
                        _ => case.refuses(&format!("apply-{mode}")),
                    };
                    if refused {
                        assert_eq!(r.code, 9, "{run}: {r:#?}");
                        assert!(r.stderr.contains("hint: `pct reboot 101`"), "{run}: {r:#?}");
                        assert!(r.stderr.contains("`pct set 101 --revert "), "{run}: {r:#?}");
                        assert_eq!(h.get(&path), text, "{run}: a refusal writes nothing");
                        continue;
                    }
                    assert_eq!(r.code, 0, "{run}: {r:#?}");
                    let after = h.get(&path);
                    assert_kept(&case, &run, &text, &after);
                    if op == "gpu1" {
                        let again = h.run(&[&args[..], &["--json"]].concat());
                        assert_eq!(again.code, 0, "{run}: {again:#?}");
                        assert_eq!(again.json()["changed"], false, "{run}: {again:#?}");
                    }
                    if op == "remove" && mode == &"dev" {
                        continue; // remove has no mode: the raw run covers it
                    }
                    if case.pve {
                        let (nodes, rules) = expect(op);
                        let dir = out.join(&run);
                        std::fs::create_dir_all(&dir).unwrap();
                        std::fs::write(dir.join("before.conf"), &text).unwrap();
                        std::fs::write(dir.join("after.conf"), &after).unwrap();
                        let e = json!({
                            "case": case.name,
                            "vmid": 101,
                            "mode": if op == "remove" { "none" } else { mode },
                            "unprivileged": text.contains("\nunprivileged: 1\n"),
                            "selected_nodes": nodes,
                            "raw_rules": if *mode == "raw" { rules } else { Vec::new() },
                            "owned": case.list("owned"),
                        });
                        std::fs::write(
                            dir.join("expect.json"),
                            serde_json::to_string_pretty(&e).unwrap(),
                        )
                        .unwrap();
                        written += 1;
                    }
                }
            }
            check(&case, variant, &text);
            if variant == "as-written" && !case.refuses("apply-raw") {
                written += host_libs(&case, &text, &out);
            }
        }
    }
    assert!(written >= 60, "{written} runs written");
    std::fs::write(
        out.join("README"),
        "Configs the ownership scenario wrote (tests/scenarios/ownership.rs); scripts/pve-conformance.sh checks them with Proxmox's code.\n",
    )
    .unwrap();
}

/// `check` lists the case's doubtful lines (kept, not drift) and finds its findings.
fn check(case: &Case, variant: &str, text: &str) {
    let (h, _) = host(case, text);
    let mut args = vec!["check"];
    args.push(case.target()[0]);
    args.extend(&case.target()[1..]);
    args.push("--json");
    let r = h.run(&args);
    let j = r.json();
    let c = &j["containers"][0];
    let doubtful: Vec<&str> = c["doubtful"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: {r:#?}", case.name))
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let want = case.list("doubtful");
    assert_eq!(
        doubtful.len(),
        want.len(),
        "{} {variant}: {doubtful:#?}",
        case.name
    );
    for (got, want) in doubtful.iter().zip(&want) {
        assert!(
            got.contains(want.as_str()),
            "{} {variant}: {got} / {want}",
            case.name
        );
    }
    let kinds: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in case.list("findings") {
        assert!(
            kinds.contains(&k.as_str()),
            "{} {variant}: {kinds:?}",
            case.name
        );
    }
    if case.list("findings").is_empty() && !case.text.contains("[pve:pending]") {
        assert_ne!(j["exit_code"], 10, "{} {variant}: {r:#?}", case.name);
    }
}

/// `host-libs` on the case: its mounts are written, a run that leaves the strategy open keeps
/// them (it reads the strategy back), and a change of strategy takes out exactly those mounts.
/// Returns how many runs it left for the conformance check.
fn host_libs(case: &Case, text: &str, out: &Path) -> usize {
    let (h, path) = host(case, text);
    for name in ["libcuda.so.580.159.04", "libnvidia-ml.so.580.159.04"] {
        h.put(&format!("/usr/local/nvidia/lib64/{name}"), b"\x7fELF");
    }
    h.put("/usr/local/nvidia/bin/nvidia-smi", b"#!");
    let run = format!("{}__as-written__raw__host-libs", case.name);
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply"];
        args.extend(case.target());
        args.extend(["--gpus", "1", "--mode", "raw", "--config-only", "--json"]);
        args.extend(extra);
        h.run(&args)
    };
    let r = apply(&["--strategy", "host-libs"]);
    assert_eq!(r.code, 0, "{run}: {r:#?}");
    let after = h.get(&path);
    let sep = if case.pve { ": " } else { " = " };
    assert!(
        after.contains(&format!("lxc.mount.entry{sep}/usr/local/nvidia/lib64/libcuda.so.580.159.04 usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04 none ro,bind,optional,create=file\n")),
        "{run}:\n{after}"
    );
    assert_kept(case, &run, text, &after);
    let r = apply(&[]);
    assert_eq!(
        r.json()["changed"],
        false,
        "{run}: the strategy is read back: {r:#?}"
    );
    let r = apply(&["--strategy", "none"]);
    assert_eq!(r.code, 0, "{run}: {r:#?}");
    let none = h.get(&path);
    assert!(!none.contains("/usr/local/nvidia"), "{run}:\n{none}");
    assert_kept(case, &run, text, &none);
    if !case.pve {
        return 0;
    }
    let dir = out.join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("before.conf"), text).unwrap();
    std::fs::write(dir.join("after.conf"), &after).unwrap();
    let (nodes, rules) = expect("gpu1");
    let e = json!({
        "case": case.name,
        "vmid": 101,
        "mode": "raw",
        "unprivileged": text.contains("\nunprivileged: 1\n"),
        "selected_nodes": nodes,
        "raw_rules": rules,
        "owned": case.list("owned"),
    });
    std::fs::write(
        dir.join("expect.json"),
        serde_json::to_string_pretty(&e).unwrap(),
    )
    .unwrap();
    1
}
