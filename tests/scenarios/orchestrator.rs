//! The orchestrator's own configs through the binary: its `phoenix_lxc_configs.json` pins a
//! driver version (580.76.05) that the captured host's module (580.159.04) is not, and its
//! `phoenix_hypervisor_config.json` is not an LXC config at all.

use std::path::Path;

use crate::util::{TestHost, EXAMPLE_101};

/// The containers of the orchestrator's v2 config whose `gpu_assignment` is not `none`.
const V2_GPU_CTS: [&str; 8] = ["801", "802", "901", "910", "911", "912", "914", "917"];

fn host_with_v2_containers() -> TestHost {
    let h = TestHost::h200x2();
    for ct in V2_GPU_CTS {
        h.put(&format!("/etc/pve/lxc/{ct}.conf"), EXAMPLE_101);
    }
    h
}

fn v2() -> String {
    test_support::testdata::phoenix("phoenix_lxc_configs.v2.json")
        .to_str()
        .unwrap()
        .to_owned()
}

/// `apply --all --phoenix-config ... --config-only` installs nothing, so the config's pinned
/// userspace version does not block it (before: exit 8 for every container).
#[test]
fn config_only_apply_all_is_not_blocked_by_the_pinned_version() {
    let h = host_with_v2_containers();
    let r = h.run(&[
        "apply",
        "--all",
        "--phoenix-config",
        &v2(),
        "--config-only",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:#?}");
    let j = r.json();
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), V2_GPU_CTS.len(), "{j:#}");
    for row in rows {
        assert_eq!(row["result"], "changed", "{row:#}");
    }
    for ct in V2_GPU_CTS {
        assert_ne!(
            h.get(&format!("/etc/pve/lxc/{ct}.conf")),
            EXAMPLE_101,
            "{ct}"
        );
    }
    // A run that would install the userspace is still refused, before any change.
    let h = host_with_v2_containers();
    let before = h.tree();
    let r = h.run(&["apply", "--all", "--phoenix-config", &v2()]);
    assert_eq!(r.code, 8, "{r:#?}");
    assert!(
        r.stderr.contains(
            "requested driver version 580.76.05 differs from the host's kernel module 580.159.04"
        ),
        "{r:#?}"
    );
    assert_eq!(h.tree(), before);
}

/// The hypervisor config given for the LXC config: refused with exit 2, saying what it looks
/// like and what was expected (before: "0 container(s)" and exit 0).
#[test]
fn the_hypervisor_config_is_refused() {
    let hyp = test_support::testdata::phoenix("phoenix_hypervisor_config.v2.json");
    for args in [
        vec!["apply", "--all", "--config-only"],
        vec!["check", "--all"],
        vec!["plan", "912", "--gpus", "1"],
    ] {
        let h = host_with_v2_containers();
        let before = h.tree();
        let mut a = args.clone();
        a.extend(["--phoenix-config", hyp.to_str().unwrap()]);
        let r = h.run(&a);
        r.assert_error(2, "cannot use the orchestrator config");
        assert!(
            r.stderr.contains("it looks like the orchestrator's hypervisor config (phoenix_hypervisor_config.json"),
            "{args:?}: {r:#?}"
        );
        assert!(
            r.stderr.contains("expected phoenix_lxc_configs.json"),
            "{r:#?}"
        );
        assert!(!r.stdout.contains("container(s)"), "{r:#?}");
        assert_eq!(h.tree(), before, "{args:?} wrote something");
    }
}

/// The `phoenix-gpu apply` command lines of `docs/orchestrator.md`'s code blocks, as the arguments they
/// pass (`"$ctid"` and `"$CTID"` become `ct`, `"$LXC_CONFIG_FILE"` and the config path
/// `config`); `--log-file` is left out (the test host gives its own).
fn documented_lines(ct: &str, config: &str) -> Vec<Vec<String>> {
    let doc = include_str!("../../docs/orchestrator.md");
    let mut lines = Vec::new();
    let mut cur: Option<String> = None;
    let mut in_code = false;
    for l in doc.lines() {
        let text = l.trim();
        if text.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let start = text.find("phoenix-gpu apply ");
        match (&mut cur, start) {
            (Some(c), _) => c.push_str(text.trim_end_matches('\\')),
            (None, Some(i)) => cur = Some(text[i..].trim_end_matches('\\').to_owned()),
            (None, None) => continue,
        }
        if !text.ends_with('\\') {
            lines.push(cur.take().unwrap());
        }
    }
    lines
        .into_iter()
        .map(|l| {
            let l = l.split("||").next().unwrap();
            let mut args: Vec<String> = Vec::new();
            let mut words = l.split_whitespace().skip(1);
            while let Some(w) = words.next() {
                if w == "--log-file" {
                    words.next();
                    continue;
                }
                let w = w.trim_matches('"');
                args.push(match w {
                    "$ctid" | "$CTID" => ct.to_owned(),
                    "$LXC_CONFIG_FILE" => config.to_owned(),
                    w if w.ends_with("phoenix_lxc_configs.json") => config.to_owned(),
                    w => w.to_owned(),
                });
            }
            args
        })
        .collect()
}

/// A stand-in for Proxmox's `pct` that knows one stopped container. The real `pct status CTID`
/// prints `status: stopped` for a stopped container and exits 0 (pve-container's
/// `PVE/CLI/pct.pm`); anything else here is a test failure (exit 64).
fn stopped_pct(dir: &Path, ct: &str) -> std::path::PathBuf {
    let p = dir.join("pct");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\n# STAND-IN for pct (tests only): container {ct} is stopped.\n\
             [ \"$1 $2 $#\" = \"status {ct} 2\" ] && {{ echo 'status: stopped'; exit 0; }}\n\
             echo \"pct stand-in: unexpected $*\" >&2; exit 64\n"
        ),
    )
    .unwrap();
    test_support::chmod(&p, 0o755);
    p
}

/// The lines `docs/orchestrator.md` tells the orchestrator to run, with its own config (pinned
/// to 580.76.05) on a host whose module is 580.159.04: they get past the version (before:
/// exit 8 on such a host) and write the config of a stopped container, leaving the userspace
/// for its start.
#[test]
fn the_documented_orchestrator_lines_work_on_a_host_with_another_driver() {
    let work = tempfile::tempdir().unwrap();
    let pct = stopped_pct(work.path(), "912");
    let lines = documented_lines("912", &v2());
    assert!(lines.len() >= 3, "{lines:#?}");
    for args in lines {
        assert!(args.contains(&"--phoenix-config".to_owned()), "{args:?}");
        let h = host_with_v2_containers();
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--pct-program", pct.to_str().unwrap(), "--json"]);
        let r = h.run(&a);
        assert_eq!(r.code, 0, "{args:?}: {r:#?}");
        let j = r.json();
        assert_eq!(j["changed"], true, "{j:#}");
        let steps: Vec<(&str, &str)> = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            steps[..2],
            [("host-check", "ok"), ("config", "changed")],
            "{j:#}"
        );
        assert!(
            j["steps"][3]["detail"]
                .as_str()
                .unwrap()
                .contains("container is not running"),
            "{j:#}"
        );
        assert_ne!(h.get("/etc/pve/lxc/912.conf"), EXAMPLE_101);
    }
}
