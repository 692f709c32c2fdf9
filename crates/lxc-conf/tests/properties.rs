//! Property tests: generated files that mix every line kind, CRLF, a missing final newline and
//! junk bytes. Parse then write is the identity; edits keep every untouched line.

use lxc_conf::{Dialect, Document};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "arch",
        "cores",
        "memory",
        "hostname",
        "onboot",
        "dev0",
        "dev1",
        "mp0",
        "net0",
        "unused0",
        "rootfs",
        "futurekey",
        "description",
        "snapstate",
        "delete",
        "lxc",
        "env",
        "tags",
    ]);
    let lxc_key = prop::sample::select(vec![
        "lxc.mount.entry",
        "lxc.cgroup2.devices.allow",
        "lxc.cap.drop",
        "lxc.environment.runtime",
        "lxc.idmap",
        "lxc.rootfs.path",
        "lxc.foo.bar",
        "lxc.aa_profile",
    ]);
    let value = "[ -~]{0,12}";
    let sep = prop::sample::select(vec![": ", ":", ":   ", " = ", "=", " =", ":\t"]);
    prop_oneof![
        (key, sep.clone(), value).prop_map(|(k, s, v)| format!("{k}{s}{v}").into_bytes()),
        (lxc_key, sep, value).prop_map(|(k, s, v)| format!("{k}{s}{v}").into_bytes()),
        "#[ -~]{0,10}(%[0-9A-Fa-f]{2})?".prop_map(String::into_bytes),
        prop::sample::select(vec!["", " ", "\t", "  \t "]).prop_map(|s| s.as_bytes().to_vec()),
        prop::sample::select(vec![
            "[snap]",
            "[Snap_2]",
            "[pve:pending]",
            "[PVE:PENDING] ",
            "[x]",
            " [snap]",
            "[snap"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::sample::select(vec![
            "delete: mp0,!swap",
            "description: a%3Ab",
            "  indented: x",
            "Uppercase: x",
            "snapstate: prepare",
            "x snapstate: delete",
            "memory: 0512",
            "onboot: YES",
            "key: ",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        // junk: any bytes except LF
        prop::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..12),
    ]
}

/// A file: lines, each with LF or CRLF, and maybe no final line break.
fn file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((line(), any::<bool>()), 0..30),
        any::<bool>(),
    )
        .prop_map(|(lines, final_nl)| {
            let mut out = Vec::new();
            let n = lines.len();
            for (i, (l, crlf)) in lines.into_iter().enumerate() {
                out.extend_from_slice(&l);
                if i + 1 < n || final_nl {
                    if crlf {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                }
            }
            out
        })
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::Pve), Just(Dialect::Lxc)]
}

fn split_lines(b: &[u8]) -> Vec<&[u8]> {
    if b.is_empty() {
        return Vec::new();
    }
    let body = b.strip_suffix(b"\n").unwrap_or(b);
    body.split(|&c| c == b'\n').collect()
}

/// `new` is `old` with one line inserted; the old last line may have gained its line break.
fn is_one_line_insertion(old: &[u8], new: &[u8]) -> bool {
    let (o, n) = (split_lines(old), split_lines(new));
    if n.len() != o.len() + 1 {
        return false;
    }
    let unterminated = !old.is_empty() && !old.ends_with(b"\n");
    (0..n.len()).any(|k| {
        let rest: Vec<&[u8]> = n
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != k)
            .map(|(_, l)| *l)
            .collect();
        rest.iter().zip(&o).enumerate().all(|(i, (a, b))| {
            a == b || (unterminated && i + 1 == o.len() && a.strip_suffix(b"\r") == Some(b))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_write_is_identity(bytes in file(), d in dialect()) {
        let doc = Document::parse(&bytes, d);
        prop_assert_eq!(doc.to_bytes(), bytes.clone());
        // nothing panics on any view
        let _ = doc.lint();
        let _ = doc.invalid_lines();
        let _ = Document::parse_strict(&bytes, d);
        for s in std::iter::once(doc.main()).chain(doc.snapshots()).chain(doc.pending()) {
            let _ = (s.entries(), s.description(), s.indexed("dev"), s.next_free_index("mp", 256), s.get("memory"));
        }
    }

    #[test]
    fn arbitrary_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..200), d in dialect()) {
        let doc = Document::parse(&bytes, d);
        prop_assert_eq!(doc.to_bytes(), bytes);
        let _ = (doc.lint(), doc.to_pve_canonical());
    }

    #[test]
    fn canonical_output_is_stable(bytes in file(), d in dialect()) {
        let once = Document::parse(&bytes, d).to_pve_canonical();
        // PVE's own writer is not a fixed point for `env: <blank>`: the blank value comes back
        // as `lxc.environment.runtime:  `, which reads as an empty (false) env.
        // Nor for a pending section whose only content is empty comment lines: the description
        // "\n" makes the section non-empty, but writes no line.
        prop_assume!(!once.windows(16).any(|w| w == b"\n[pve:pending]\n\n") && !once.ends_with(b"\n[pve:pending]\n"));
        prop_assume!(!split_lines(&once).iter().any(|l| l.strip_prefix(b"lxc.environment.runtime: ".as_slice()).is_some_and(|v| !v.is_empty() && v.iter().all(|b| b.is_ascii_whitespace()))));
        let again = Document::parse(&once, Dialect::Pve);
        prop_assert_eq!(again.to_pve_canonical(), once.clone());
        prop_assert!(again.invalid_lines().is_empty(), "canonical output has dropped lines");
    }

    #[test]
    fn push_lxc_inserts_one_line(bytes in file(), d in dialect()) {
        let mut doc = Document::parse(&bytes, d);
        let before = doc.main().lxc().len();
        doc.push_lxc("lxc.mount.entry", "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file");
        let new = doc.to_bytes();
        prop_assert!(is_one_line_insertion(&bytes, &new), "{:?}\n{:?}", String::from_utf8_lossy(&bytes), String::from_utf8_lossy(&new));
        let main = Document::parse(&new, d).main().lxc().into_iter().map(|e| (e.key.to_string(), e.value.to_string())).collect::<Vec<_>>();
        prop_assert_eq!(main.len(), before + 1);
        prop_assert_eq!(main.last().map(|(k, v)| (k.as_str(), v.as_str())), Some(("lxc.mount.entry", "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file")));
    }

    #[test]
    fn set_changes_or_inserts_one_line(bytes in file(), d in dialect(), key in prop::sample::select(vec!["memory", "hookscript", "dev3", "aaa", "zzz"])) {
        let mut doc = Document::parse(&bytes, d);
        let had = doc.main().entries().iter().any(|e| e.key == key);
        let same_count = |new: &[u8]| split_lines(&bytes).len() == split_lines(new).len();
        doc.set(key, "42");
        let new = doc.to_bytes();
        prop_assert_eq!(doc.main().get(key), Some("42"));
        let reparsed = Document::parse(&new, d);
        prop_assert_eq!(reparsed.main().get(key), Some("42"));
        // a non-UTF-8 line of the key is no entry, but set still rewrites it in place
        prop_assert!(!had || same_count(&new));
        if same_count(&new) {
            let (o, n) = (split_lines(&bytes), split_lines(&new));
            prop_assert_eq!(o.len(), n.len());
            prop_assert!(o.iter().zip(&n).filter(|(a, b)| a != b).count() <= 1);
        } else {
            prop_assert!(is_one_line_insertion(&bytes, &new));
        }
        // snapshots and pending read the same as before
        let old_doc = Document::parse(&bytes, d);
        let view = |doc: &Document| doc.snapshots().iter().chain(doc.pending().as_ref()).map(|s| (s.name().map(str::to_string), s.entries().iter().map(|e| (e.key.to_string(), e.value.to_string())).collect::<Vec<_>>())).collect::<Vec<_>>();
        prop_assert_eq!(view(&old_doc), view(&Document::parse(&new, d)));
    }

    #[test]
    fn remove_key_removes_only_its_lines(bytes in file(), d in dialect()) {
        let mut doc = Document::parse(&bytes, d);
        let n = doc.remove_key("memory");
        let new = doc.to_bytes();
        let (o, nl) = (split_lines(&bytes), split_lines(&new));
        prop_assert_eq!(o.len(), nl.len() + n);
        // what is left is a subsequence of the old lines
        let mut it = o.iter();
        for l in &nl {
            prop_assert!(it.any(|x| x == l));
        }
        prop_assert_eq!(doc.main().get("memory"), None);
    }
}
