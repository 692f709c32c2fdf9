//! The one audited way to turn an argv into a POSIX shell command line.
//!
//! Used only where a shell cannot be avoided: the remote side of SSH, which hands the command
//! line to the login shell of the remote user (`sh`, `bash`, `dash`, `zsh`; not `fish` or `csh`).
//!
//! Each argument becomes one shell word that expands to exactly its bytes:
//! - bytes from the safe set `A-Z a-z 0-9 _ . / : , + @ % -` (and not empty) stay as they are;
//! - anything else is wrapped in single quotes, where the shell gives every byte its literal
//!   meaning (newlines, `$`, backslashes, bytes that are not UTF-8 included), and each single
//!   quote in the argument becomes `'\''` (close, an escaped quote, reopen).
//!
//! A NUL byte cannot be passed through an argv at all; [`crate::Cmd::validate`] rejects it
//! before a command is quoted, so it never reaches this module.
//!
//! ```
//! use std::ffi::OsStr;
//! use exec_backend::{shell_join, shell_quote};
//! assert_eq!(shell_quote(OsStr::new("plain-word")), b"plain-word");
//! assert_eq!(shell_quote(OsStr::new("it's $HOME")), b"'it'\\''s $HOME'");
//! assert_eq!(shell_join(["echo", "", "a b"]), b"echo '' 'a b'");
//! ```

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// True for bytes that mean nothing special to a POSIX shell anywhere in a word. `=` and `~`
/// are left out on purpose: `a=b` as the first word is an assignment, `~` expands.
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'.' | b'/' | b':' | b',' | b'+' | b'@' | b'%' | b'-'
        )
}

/// Quotes one argument as one POSIX shell word that expands to exactly its bytes.
pub fn shell_quote(arg: &OsStr) -> Vec<u8> {
    let bytes = arg.as_bytes();
    if !bytes.is_empty() && bytes.iter().copied().all(is_safe) {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Quotes every argument with [`shell_quote`] and joins them with single spaces.
pub fn shell_join<I, S>(argv: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut out = Vec::new();
    for (i, arg) in argv.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(&shell_quote(arg.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(shell_quote(OsStr::new("")), b"''");
        assert_eq!(shell_quote(OsStr::new("a=b")), b"'a=b'");
        assert_eq!(shell_quote(OsStr::new("~")), b"'~'");
        assert_eq!(shell_quote(OsStr::new("'")), b"''\\'''");
        assert_eq!(shell_quote(OsStr::from_bytes(b"\xff\n")), b"'\xff\n'");
        assert_eq!(shell_join(Vec::<&str>::new()), b"");
    }
}
