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

/// The exit code of a run whose worst outcome is `worst` (`None`: success, 0).
pub fn code_of(worst: Option<ErrorKind>) -> u8 {
    worst.map_or(0, code)
}

/// Every exit code and what it means (the man page's EXIT STATUS, the README's table).
pub const CODES: &[(u8, &str)] = &[
    (0, "done, or nothing to do"),
    (1, "unexpected internal error"),
    (2, "bad arguments or input values"),
    (3, "container not found"),
    (4, "container config missing or unreadable"),
    (5, "userspace, CUDA or tool install failed"),
    (6, "restart failed"),
    (7, "verification failed inside the container"),
    (
        8,
        "host precondition failed: no driver, GPU not present, node missing, version mismatch",
    ),
    (
        9,
        "config locked (lock: set, lock not acquired in time, config changed under us), or a GPU to take from a running container is held open in it",
    ),
    (10, "check found drift"),
];

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

    #[test]
    fn the_worst_kind_has_the_highest_code() {
        // gpu-core orders kinds by how bad they are; fleet runs exit with the worst one.
        let mut kinds = vec![
            ErrorKind::Drift,
            ErrorKind::BadInput,
            ErrorKind::Internal,
            ErrorKind::Locked,
            ErrorKind::CtNotFound,
            ErrorKind::Verify,
            ErrorKind::ConfigMissing,
            ErrorKind::HostPrecondition,
            ErrorKind::Install,
            ErrorKind::Restart,
        ];
        kinds.sort();
        let codes: Vec<u8> = kinds.iter().map(|k| code(*k)).collect();
        assert_eq!(codes, (1..=10).collect::<Vec<u8>>());
        assert_eq!(code_of(None), 0);
    }

    #[test]
    fn codes_table_covers_every_kind() {
        for k in [
            ErrorKind::BadInput,
            ErrorKind::CtNotFound,
            ErrorKind::ConfigMissing,
            ErrorKind::Install,
            ErrorKind::Restart,
            ErrorKind::Verify,
            ErrorKind::HostPrecondition,
            ErrorKind::Locked,
            ErrorKind::Drift,
            ErrorKind::Internal,
        ] {
            assert!(CODES.iter().any(|(c, _)| *c == code(k)), "{k:?}");
        }
        let mut seen: Vec<u8> = CODES.iter().map(|(c, _)| *c).collect();
        seen.dedup();
        assert_eq!(seen, (0..=10).collect::<Vec<u8>>());
    }
}
