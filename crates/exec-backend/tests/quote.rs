//! `shell_quote` and `shell_join` round-trip any bytes (no NUL) through a real `sh -c`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use exec_backend::{shell_join, shell_quote};
use proptest::prelude::*;

fn sh(script: &[u8]) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(OsStr::from_bytes(script))
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn no_nul() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn quote_round_trips(arg in no_nul()) {
        let mut script = b"printf '%s' ".to_vec();
        script.extend(shell_quote(OsStr::from_bytes(&arg)));
        prop_assert_eq!(sh(&script), arg);
    }

    #[test]
    fn join_round_trips(args in prop::collection::vec(no_nul(), 0..6)) {
        let mut script = b"printf '%s\\0' ".to_vec();
        script.extend(shell_join(args.iter().map(|a| OsStr::from_bytes(a))));
        let mut expected = Vec::new();
        for a in &args {
            expected.extend_from_slice(a);
            expected.push(0);
        }
        if args.is_empty() {
            // printf with no arguments still prints the format once, with empty arguments.
            expected.push(0);
        }
        prop_assert_eq!(sh(&script), expected);
    }
}

#[test]
fn tricky_words() {
    for arg in [
        &b"a b"[..],
        b"'",
        b"\"$HOME\"",
        b"`id`",
        b"\\",
        b"\n",
        b"-n",
        b"a=b",
        b"~",
        b"*",
        b"\xff\xfe",
    ] {
        let mut script = b"printf '%s' ".to_vec();
        script.extend(shell_quote(OsStr::from_bytes(arg)));
        assert_eq!(sh(&script), arg);
    }
}
