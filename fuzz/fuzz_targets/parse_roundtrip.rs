//! Arbitrary bytes through both dialects: parse then write is the identity, edits keep every
//! untouched line, the canonical writer gives a file Proxmox reads without dropping a line,
//! and lint/strict never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lxc_conf::{Dialect, Document};

fn lines(b: &[u8]) -> Vec<&[u8]> {
    if b.is_empty() {
        return Vec::new();
    }
    b.strip_suffix(b"\n")
        .unwrap_or(b)
        .split(|&c| c == b'\n')
        .collect()
}

/// `new` is `old` with one line inserted; the old last line may have gained its line break.
fn one_line_inserted(old: &[u8], new: &[u8]) -> bool {
    let (o, n) = (lines(old), lines(new));
    if n.len() != o.len() + 1 {
        return false;
    }
    let unterminated = !old.is_empty() && !old.ends_with(b"\n");
    let same = |i: usize, a: &[u8]| {
        a == o[i] || (unterminated && i + 1 == o.len() && a.strip_suffix(b"\r") == Some(o[i]))
    };
    let prefix = (0..o.len()).take_while(|&i| same(i, n[i])).count();
    (prefix..o.len()).all(|i| same(i, n[i + 1]))
}

fuzz_target!(|data: &[u8]| {
    for d in [Dialect::Pve, Dialect::Lxc] {
        let doc = Document::parse(data, d);
        assert_eq!(doc.to_bytes(), data);
        let lints = doc.lint();
        assert_eq!(
            Document::parse_strict(data, d).is_ok(),
            !lints.iter().any(|l| l.kind.is_error())
        );
        let _ = doc.invalid_lines();
        for s in std::iter::once(doc.main())
            .chain(doc.snapshots())
            .chain(doc.pending())
        {
            let _ = (
                s.entries(),
                s.description(),
                s.indexed("dev"),
                s.next_free_index("mp", 256),
            );
        }

        let canonical = doc.to_pve_canonical();
        assert!(Document::parse(&canonical, Dialect::Pve)
            .invalid_lines()
            .is_empty());

        // push an lxc entry: one line more, the rest unchanged, and it is the last lxc entry
        let mut e = doc.clone();
        e.push_lxc(
            "lxc.mount.entry",
            "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file",
        );
        let pushed = e.to_bytes();
        assert!(one_line_inserted(data, &pushed));
        let reparsed = Document::parse(&pushed, d);
        let last = reparsed
            .main()
            .lxc()
            .last()
            .map(|x| (x.key.to_string(), x.value.to_string()));
        assert_eq!(
            last,
            Some((
                "lxc.mount.entry".into(),
                "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file".into()
            ))
        );

        // set a plain key: in place or one line inserted
        let mut e = doc.clone();
        e.set("memory", "4096");
        let set = e.to_bytes();
        assert_eq!(Document::parse(&set, d).main().get("memory"), Some("4096"));
        // (a line whose value is not UTF-8 is no entry, but set still rewrites it in place)
        if lines(data).len() == lines(&set).len() {
            let (o, n) = (lines(data), lines(&set));
            assert_eq!(o.len(), n.len());
            assert!(o.iter().zip(&n).filter(|(a, b)| a != b).count() <= 1);
        } else {
            assert!(one_line_inserted(data, &set));
        }

        // remove a key: only its lines go
        let mut e = doc.clone();
        let n = e.remove_key("memory");
        assert_eq!(lines(data).len(), lines(&e.to_bytes()).len() + n);
        assert_eq!(e.main().get("memory"), None);
    }
});
