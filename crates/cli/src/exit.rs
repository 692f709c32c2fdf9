//! Exit codes: one table, as in ARCHITECTURE.md and in `gpu_core::ErrorKind`'s docs (keep the
//! three in step). Every exit code of the binary comes from here.

use gpu_core::ErrorKind;

/// The exit code of a failure of this kind.
pub fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::BadInput => 2,
        ErrorKind::CtNotFound => 3,
        ErrorKind::ConfigMissing => 4,
        ErrorKind::Install => 5,
        ErrorKind::Restart => 6,
        ErrorKind::Verify => 7,
        ErrorKind::HostPrecondition => 8,
        ErrorKind::Locked => 9,
        ErrorKind::Drift => 10,
        ErrorKind::Internal => 1,
        _ => 1,
    }
}

/// What a person can do about a failure of this kind.
pub fn hint(kind: ErrorKind) -> Option<&'static str> {
    Some(match kind {
        ErrorKind::BadInput => "see `phoenix-gpu help` for the accepted values",
        ErrorKind::CtNotFound => "check the CTID (`pct list`) or --target/--lxcpath",
        ErrorKind::ConfigMissing => {
            "check the CTID, --target and --lxcpath, and that the config is readable"
        }
        ErrorKind::HostPrecondition => "`phoenix-gpu inventory` shows what this host has",
        ErrorKind::Locked => "run again once the other task has finished",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(code(ErrorKind::BadInput), 2);
        assert_eq!(code(ErrorKind::CtNotFound), 3);
        assert_eq!(code(ErrorKind::ConfigMissing), 4);
        assert_eq!(code(ErrorKind::Install), 5);
        assert_eq!(code(ErrorKind::Restart), 6);
        assert_eq!(code(ErrorKind::Verify), 7);
        assert_eq!(code(ErrorKind::HostPrecondition), 8);
        assert_eq!(code(ErrorKind::Locked), 9);
        assert_eq!(code(ErrorKind::Drift), 10);
        assert_eq!(code(ErrorKind::Internal), 1);
    }
}
