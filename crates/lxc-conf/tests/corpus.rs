//! Round trips, canonical rewrites and edits over the config corpus (`testdata/corpus/lxc`).

use std::fs;
use std::path::{Path, PathBuf};

use lxc_conf::{Dialect, Document, EntryKind, LintKind, SectionKind};

/// The corpus: `testdata/corpus/lxc` in the repository.
fn corpus() -> PathBuf {
    test_support::testdata::lxc_corpus()
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(corpus().join(dir))
        .unwrap_or_else(|e| panic!("corpus dir {dir} missing: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no files in {dir}");
    v
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

fn all_files() -> Vec<(PathBuf, Dialect)> {
    let mut v: Vec<(PathBuf, Dialect)> = Vec::new();
    for d in ["pve", "synthetic", "pve_rewrites"] {
        v.extend(files(d).into_iter().map(|p| (p, Dialect::Pve)));
    }
    v.extend(files("plain_lxc").into_iter().map(|p| (p, Dialect::Lxc)));
    v
}

/// `new` is `old` with exactly `inserted` put in at one place.
fn inserted_bytes(old: &[u8], new: &[u8]) -> Vec<u8> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    assert_eq!(prefix + suffix, old.len(), "bytes of the old file changed");
    new[prefix..new.len() - suffix].to_vec()
}

#[test]
fn every_corpus_file_round_trips_in_both_dialects() {
    let all = all_files();
    assert!(all.len() >= 50, "corpus has {} files", all.len());
    for (p, _) in &all {
        let bytes = read(p);
        for d in [Dialect::Pve, Dialect::Lxc] {
            assert_eq!(
                Document::parse(&bytes, d).to_bytes(),
                bytes,
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn canonical_writer_reproduces_expected_pve_rewrites() {
    let mut checked = 0;
    for rw in files("pve_rewrites") {
        let name = rw
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".expected-pve-rewrite")
            .unwrap()
            .to_string();
        let doc = Document::parse(&read(&corpus().join("pve").join(&name)), Dialect::Pve);
        assert_eq!(
            String::from_utf8_lossy(&doc.to_pve_canonical()),
            String::from_utf8_lossy(&read(&rw)),
            "{name}"
        );
        checked += 1;
    }
    for rw in files("synthetic")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "expected-pve-rewrite"))
    {
        let src = rw.with_extension("conf");
        let doc = Document::parse(&read(&src), Dialect::Pve);
        assert_eq!(
            String::from_utf8_lossy(&doc.to_pve_canonical()),
            String::from_utf8_lossy(&read(&rw)),
            "{}",
            src.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn thirty_real_files_are_already_canonical_and_four_are_not() {
    let mut changed = Vec::new();
    let all = files("pve");
    assert_eq!(all.len(), 34);
    for p in &all {
        let bytes = read(p);
        if Document::parse(&bytes, Dialect::Pve).to_pve_canonical() != bytes {
            changed.push(p.file_name().unwrap().to_str().unwrap().to_string());
        }
    }
    let mut expected: Vec<String> = files("pve_rewrites")
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches(".expected-pve-rewrite")
                .to_string()
        })
        .collect();
    expected.sort();
    assert_eq!(changed, expected);
    assert_eq!(changed.len(), 4);
}

#[test]
fn canonical_output_is_a_fixed_point() {
    for (p, d) in all_files() {
        let once = Document::parse(&read(&p), d).to_pve_canonical();
        let twice = Document::parse(&once, Dialect::Pve).to_pve_canonical();
        assert_eq!(once, twice, "{}", p.display());
    }
}

#[test]
fn adding_a_mount_entry_inserts_exactly_one_line_everywhere() {
    let entry = "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file";
    for (p, d) in all_files() {
        let old = read(&p);
        let mut doc = Document::parse(&old, d);
        let before = doc.main().lxc().len();
        let id = doc.push_lxc("lxc.mount.entry", entry);
        let new = doc.to_bytes();
        let ins = inserted_bytes(&old, &new);
        let crlf = old.windows(2).filter(|w| w == b"\r\n").count() * 2
            > old.iter().filter(|&&b| b == b'\n').count();
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let sep = if d == Dialect::Lxc { " = " } else { ": " };
        let line = format!("lxc.mount.entry{sep}{entry}");
        let mut want = line.clone().into_bytes();
        want.extend_from_slice(eol);
        if !old.is_empty() && !old.ends_with(b"\n") && ins != want {
            // appended after a last line that had no line break
            let mut w2 = eol.to_vec();
            w2.extend_from_slice(&want);
            assert_eq!(ins, w2, "{}", p.display());
            assert!(new.ends_with(&want));
        } else {
            assert_eq!(
                String::from_utf8_lossy(&ins),
                String::from_utf8_lossy(&want),
                "{}",
                p.display()
            );
        }
        // it is the last lxc entry of main, and reads back
        let reparsed = Document::parse(&new, d);
        let lxc = reparsed.main().lxc();
        assert_eq!(lxc.len(), before + 1, "{}", p.display());
        let last = lxc.last().unwrap();
        assert_eq!(
            (last.key, last.value),
            ("lxc.mount.entry", entry),
            "{}",
            p.display()
        );
        assert_eq!(doc.entry(id).unwrap().value, entry);
        // snapshots and pending are untouched
        assert_eq!(
            reparsed.snapshots().len(),
            Document::parse(&old, d).snapshots().len()
        );
    }
}

#[test]
fn edits_keep_canonical_files_canonical() {
    for p in files("pve") {
        let old = read(&p);
        let doc = Document::parse(&old, Dialect::Pve);
        if doc.to_pve_canonical() != old {
            continue;
        }
        let mut d = doc.clone();
        d.push_lxc("lxc.cgroup2.devices.allow", "c 195:* rwm");
        d.set("hookscript", "local:snippets/gpu.sh");
        d.set("dev7", "/dev/nvidia7,gid=44");
        d.set("aaa", "first");
        d.set("zzz", "last");
        let new = d.to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&Document::parse(&new, Dialect::Pve).to_pve_canonical()),
            String::from_utf8_lossy(&new),
            "{}",
            p.display()
        );
        // removing what was added gives the original bytes back
        for k in ["hookscript", "dev7", "aaa", "zzz"] {
            assert_eq!(d.remove_key(k), 1);
        }
        let id = d.main().lxc().last().unwrap().id;
        assert!(d.remove(id));
        assert_eq!(d.to_bytes(), old, "{}", p.display());
    }
}

#[test]
fn set_rewrites_only_the_effective_line() {
    let p = corpus().join("synthetic/synthetic-noncanonical-edgecases.conf");
    let old = read(&p);
    let mut doc = Document::parse(&old, Dialect::Pve);
    assert_eq!(doc.main().get("cores"), Some("4"));
    doc.set("cores", "8");
    let new = String::from_utf8(doc.to_bytes()).unwrap();
    let old = String::from_utf8(old).unwrap();
    let changed: Vec<(usize, &str, &str)> = old
        .lines()
        .zip(new.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a, b))
        .collect();
    assert_eq!(changed, vec![(15, "cores: 4", "cores: 8")]);
    assert_eq!(old.lines().count(), new.lines().count());
    assert_eq!(doc.main().get("cores"), Some("8"));
}

#[test]
fn crlf_file_without_final_newline_gets_crlf_lines() {
    let p = corpus().join("synthetic/synthetic-crlf-no-final-newline.conf");
    let old = read(&p);
    let mut doc = Document::parse(&old, Dialect::Pve);
    doc.set("cores", "2");
    doc.push_lxc("lxc.mount.entry", "/a a none bind");
    let new = doc.to_bytes();
    let expect = b"arch: amd64\r\ncores: 2\r\nhostname: crlf\r\n#desc line\r\nmemory: 512\r\nlxc.cap.drop: \r\nlxc.mount.entry: /a a none bind\r\n\r\n[snap]\r\nmemory: 256";
    assert_eq!(
        String::from_utf8_lossy(&new),
        String::from_utf8_lossy(expect)
    );
    assert_eq!(doc.snapshot("snap").unwrap().get("memory"), Some("256"));
}

#[test]
fn appending_after_a_last_line_without_newline() {
    let mut doc = Document::parse(b"arch: amd64\nmemory: 512", Dialect::Pve);
    doc.push_lxc("lxc.idmap", "u 0 100000 65536");
    assert_eq!(
        doc.to_bytes(),
        b"arch: amd64\nmemory: 512\nlxc.idmap: u 0 100000 65536\n"
    );
    let mut doc = Document::parse(b"lxc.arch = x86_64", Dialect::Lxc);
    doc.push_lxc("lxc.uts.name", "web");
    assert_eq!(doc.to_bytes(), b"lxc.arch = x86_64\nlxc.uts.name = web\n");
}

#[test]
fn semantics_of_a_snapshot_file() {
    let doc = Document::parse(
        &read(&corpus().join("pve/charlzyx-101-8snapshots.conf")),
        Dialect::Pve,
    );
    let main = doc.main();
    assert_eq!(
        main.description(),
        " GATEWAY 192.168.6.1/24\n LAN\n WAN: ETH1 -> vmbr0 -> net0 -> eth0 \n"
    );
    assert_eq!(main.get("parent"), Some("RouterLux"));
    assert_eq!(
        main.indexed("net")
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(main.next_free_index("net", 32), Some(2));
    assert_eq!(main.lxc().len(), 3);
    let snaps = doc.snapshots();
    // SOURCES.md says 8, the file has 7 headers
    let names: Vec<&str> = snaps.iter().map(|s| s.name().unwrap()).collect();
    assert_eq!(
        names,
        [
            "LuxDNS",
            "RouterLux",
            "lux-router-with-upnpd",
            "luxdns",
            "luxrouter",
            "ohhhhhh",
            "stable"
        ]
    );
    let lux = doc.snapshot("LuxDNS").unwrap();
    assert_eq!(lux.kind(), &SectionKind::Snapshot("LuxDNS".into()));
    assert!(lux
        .description()
        .starts_with("LuxDNS is LAN GateWay 192.168.6.1\nip: vmbr0"));
    assert_eq!(lux.get("snaptime"), Some("1691826181"));
    assert!(doc.pending().is_none());
}

#[test]
fn semantics_of_pending_and_edge_cases() {
    let doc = Document::parse(
        &read(&corpus().join("synthetic/synthetic-canonical-pending-and-snapshot.conf")),
        Dialect::Pve,
    );
    let pending = doc.pending().unwrap();
    assert_eq!(pending.name(), Some("pve:pending"));
    assert_eq!(pending.get("delete"), Some("mp0,!swap"));
    assert_eq!(pending.get("cores"), Some("4"));
    assert_eq!(
        doc.main().description(),
        "Web server: nginx + php\n\nmanaged by ansible\n"
    );

    let doc = Document::parse(
        &read(&corpus().join("synthetic/synthetic-noncanonical-edgecases.conf")),
        Dialect::Pve,
    );
    let main = doc.main();
    assert_eq!(main.get("hostname"), Some("spaced"));
    assert_eq!(main.get("onboot"), Some("yes"));
    assert_eq!(main.get_normalized("onboot").as_deref(), Some("1"));
    assert_eq!(main.get_normalized("memory").as_deref(), Some("512"));
    assert_eq!(main.get("lxc.cap.drop"), Some(""));
    assert_eq!(main.get("lxc.rootfs.path"), None, "dropped by Proxmox");
    assert_eq!(main.env(), vec!["FOO=bar", "BAZ="]);
    assert_eq!(
        main.description(),
        "set via description key a comment in the middle (becomes part of description)\n"
    );
    let keys: Vec<&str> = main.lxc().iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        [
            "lxc.mount.entry",
            "lxc.cap.drop",
            "lxc.apparmor.profile",
            "lxc.cgroup2.devices.allow",
            "lxc.environment.runtime",
            "lxc.idmap",
            "lxc.environment.runtime"
        ]
    );
    let dropped: Vec<usize> = doc.invalid_lines().iter().map(|(l, _)| *l).collect();
    assert_eq!(dropped, vec![20, 21, 22, 23, 24, 29]);
    let snap = doc.snapshot("Snap_1").unwrap();
    assert_eq!(snap.get("snapstate"), Some("prepare"));
    assert_eq!(
        snap.get("memory"),
        Some("1"),
        "[x] is dropped, so memory lands in Snap_1"
    );
}

#[test]
fn lint_names_each_problem() {
    let doc = Document::parse(
        &read(&corpus().join("synthetic/synthetic-noncanonical-edgecases.conf")),
        Dialect::Pve,
    );
    let lints = doc.lint();
    let kind_at = |line: usize| {
        lints
            .iter()
            .filter(|l| l.line == line)
            .map(|l| l.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(kind_at(20), vec![LintKind::LeadingWhitespace]);
    assert_eq!(kind_at(21), vec![LintKind::UppercaseKey]);
    assert_eq!(kind_at(22), vec![LintKind::InvalidLxcKey]);
    assert_eq!(kind_at(23), vec![LintKind::InvalidLxcKey]);
    assert_eq!(kind_at(24), vec![LintKind::DeleteOutsidePending]);
    assert_eq!(kind_at(29), vec![LintKind::ShortSectionName]);
    assert!(kind_at(2).contains(&LintKind::NormalizedValue));
    assert!(
        kind_at(4).contains(&LintKind::Overridden),
        "cores: 2 is overridden by line 15"
    );
    assert!(kind_at(18).contains(&LintKind::UnknownKey));
    assert!(kind_at(8).contains(&LintKind::NonCanonical));
    assert_eq!(
        lints.iter().find(|l| l.line == 22).unwrap().text,
        "lxc.rootfs.path: /not/allowed"
    );

    // canonical real files have nothing that would be dropped
    for p in files("pve") {
        let doc = Document::parse(&read(&p), Dialect::Pve);
        let name = p.file_name().unwrap().to_str().unwrap();
        let dropped = doc.invalid_lines();
        if name.contains("MALFORMED") {
            assert_eq!(dropped.len(), 1);
            assert_eq!(dropped[0].0, 1);
        } else {
            assert!(dropped.is_empty(), "{name}: {dropped:?}");
        }
    }
}

#[test]
fn strict_mode_reports_line_and_text() {
    let p = corpus().join("pve/bpaludo-frigate-101-MALFORMED-nano-header.conf");
    let err = Document::parse_strict(&read(&p), Dialect::Pve).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(err.text.starts_with("  GNU nano 7.2"));
    assert!(err.to_string().contains("line 1"));
    for p in files("pve")
        .into_iter()
        .filter(|p| !p.to_str().unwrap().contains("MALFORMED"))
    {
        assert!(
            Document::parse_strict(&read(&p), Dialect::Pve).is_ok(),
            "{}",
            p.display()
        );
    }
    for p in files("plain_lxc") {
        assert!(
            Document::parse_strict(&read(&p), Dialect::Lxc).is_ok(),
            "{}",
            p.display()
        );
    }
    let err =
        Document::parse_strict(b"lxc.arch = x86_64\nlxc.cap.drop\n", Dialect::Lxc).unwrap_err();
    assert_eq!((err.line, err.text.as_str()), (2, "lxc.cap.drop"));
    let err =
        Document::parse_strict(b"arch: amd64\nhostname: caf\xe9\n", Dialect::Pve).unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn plain_lxc_dialect_entries_and_resets() {
    let doc = Document::parse(
        &read(&corpus().join("plain_lxc/pvecontainer-lxc-pve-userns.conf")),
        Dialect::Lxc,
    );
    let e = doc.main().entries();
    assert!(e.iter().all(|e| e.kind == EntryKind::Lxc));
    let deny: Vec<&str> = e
        .iter()
        .filter(|e| e.key == "lxc.cgroup2.devices.deny")
        .map(|e| e.value)
        .collect();
    assert_eq!(deny, vec![""], "an empty value (reset) is an entry");
    let mut doc = Document::parse(
        b"# c\nlxc.include = /usr/share/lxc/config/common.conf\nlxc.arch = x86_64\n",
        Dialect::Lxc,
    );
    assert_eq!(
        doc.main().get("lxc.include"),
        Some("/usr/share/lxc/config/common.conf")
    );
    doc.set("lxc.arch", "aarch64");
    doc.set("lxc.uts.name", "ct");
    assert_eq!(doc.to_bytes(), b"# c\nlxc.include = /usr/share/lxc/config/common.conf\nlxc.arch = aarch64\nlxc.uts.name = ct\n");
    assert_eq!(doc.remove_key("lxc.include"), 1);
    assert_eq!(doc.main().description(), "");
}

#[test]
fn separator_style_follows_the_file() {
    let mut doc = Document::parse(
        b"arch: amd64\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n",
        Dialect::Pve,
    );
    doc.push_lxc("lxc.mount.entry", "/a a none bind");
    assert!(doc
        .to_bytes()
        .ends_with(b"lxc.mount.entry = /a a none bind\n"));
    let mut doc = Document::parse(b"lxc.arch=x86_64\n", Dialect::Lxc);
    doc.push_lxc("lxc.tty.max", "2");
    assert_eq!(doc.to_bytes(), b"lxc.arch=x86_64\nlxc.tty.max=2\n");
}

#[test]
fn replace_and_remove_by_id() {
    let mut doc = Document::parse(b"#d\narch: amd64\ndev0: /dev/nvidia0\ndev1: /dev/nvidiactl\r\nlxc.mount.entry = /a a none bind\n\n[snap]\ndev0: /dev/x\n", Dialect::Pve);
    let main = doc.main();
    assert_eq!(
        main.indexed("dev"),
        vec![(0, "/dev/nvidia0"), (1, "/dev/nvidiactl")]
    );
    assert_eq!(main.next_free_index("dev", 256), Some(2));
    assert_eq!(main.next_free_index("dev", 2), None);
    let dev1 = main.entries().iter().find(|e| e.key == "dev1").unwrap().id;
    let lxc = main.lxc()[0].id;
    let snap_dev = doc.snapshot("snap").unwrap().entries()[0].id;
    assert!(doc.replace_value(dev1, "/dev/nvidia-uvm"));
    assert!(doc.replace_value(lxc, "/b b none bind"));
    assert!(
        !doc.replace_value(snap_dev, "x"),
        "edits act on the main section only"
    );
    assert!(!doc.remove(snap_dev));
    assert_eq!(doc.to_bytes(), b"#d\narch: amd64\ndev0: /dev/nvidia0\ndev1: /dev/nvidia-uvm\r\nlxc.mount.entry = /b b none bind\n\n[snap]\ndev0: /dev/x\n");
    let dev0 = doc.main().entries()[1].id;
    assert!(doc.remove(dev0));
    assert!(!doc.remove(dev0));
    assert_eq!(doc.main().next_free_index("dev", 256), Some(0));
    assert_eq!(doc.main().entries()[1].line, 3);
}

#[test]
fn try_edits_refuse_what_would_not_read_back() {
    let mut doc = Document::parse(b"arch: amd64\n", Dialect::Pve);
    assert!(doc.try_set("Memory", "1").is_err());
    assert!(doc.try_set("memory", " 1").is_err());
    assert!(doc.try_set("memory", "1\n2").is_err());
    assert!(doc.try_push_lxc("lxc.rootfs.path", "/x").is_err());
    assert!(doc.try_push_lxc("lxc.namespace.share.net", "x").is_err());
    assert!(doc.try_push_lxc("lxc.cap.drop", "").is_ok());
    assert_eq!(doc.to_bytes(), b"arch: amd64\nlxc.cap.drop: \n");
    // the unchecked form keeps the document one line per edit
    doc.set("hostname", "a\nb");
    assert_eq!(doc.main().get("hostname"), Some("a b"));
}
