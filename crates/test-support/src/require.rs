//! The root/tool rule: what a test needs from the machine, and what happens when it is missing.
//!
//! Each check returns `true` when the test can run. When it cannot, [`cannot_run`] decides:
//! on a developer machine the test prints `skipped: TEST needs X` and returns early; with the
//! `CI` environment variable set it panics, since CI runs as root with everything
//! `scripts/install-test-deps.sh` installs, and a test that silently did nothing there would
//! hide a broken setup.
//!
//! ```no_run
//! # fn lxc_attach_works() {
//! if !test_support::lxc_available("lxc_attach_works") {
//!     return;
//! }
//! // ... the test proper
//! # }
//! ```

use std::path::{Path, PathBuf};

/// The directories searched for a program besides `PATH` (sbin is often not on a user's PATH).
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The rule, in one place: `test` cannot run here because it needs `needs`. Panics when `CI`
/// is set; otherwise prints `skipped: TEST needs NEEDS` and returns `false`.
pub fn cannot_run(test: &str, needs: &str) -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "{test} needs {needs}, and CI is set: in CI every test runs, none is skipped \
         (CI runs as root with what scripts/install-test-deps.sh installs)"
    );
    eprintln!("skipped: {test} needs {needs}");
    false
}

/// True when running as root; otherwise [`cannot_run`].
pub fn is_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root || cannot_run(test, "root")
}

/// Where `program` is: an absolute path that exists, or a name found on `PATH` or in the
/// system's bin and sbin directories.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.starts_with('/') {
        return Path::new(program).exists().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.exists())
}

/// True when every program (a name, or an absolute path such as a template) exists; otherwise
/// [`cannot_run`] for the first one missing.
pub fn have(test: &str, programs: &[&str]) -> bool {
    match programs.iter().find(|p| find_program(p).is_none()) {
        None => true,
        Some(p) => cannot_run(
            test,
            &format!("{p} (scripts/install-test-deps.sh installs it)"),
        ),
    }
}

/// Root, the LXC tools and the busybox template (`lxc`, `lxc-templates`, `busybox-static`).
pub fn lxc_available(test: &str) -> bool {
    is_root(test)
        && have(
            test,
            &[
                "lxc-create",
                "lxc-start",
                "lxc-attach",
                "lxc-info",
                "lxc-stop",
                "lxc-destroy",
                "lxc-wait",
                "busybox",
                "/usr/share/lxc/templates/lxc-busybox",
            ],
        )
}

/// Whether an `/etc/subuid`-style file gives `root` the ids 100000..=165535.
fn root_has_subids(text: &str) -> bool {
    text.lines().any(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        let (Some(start), Some(count)) = (
            f.get(1).and_then(|s| s.parse::<u64>().ok()),
            f.get(2).and_then(|s| s.parse::<u64>().ok()),
        ) else {
            return false;
        };
        matches!(f[0], "root" | "0") && start <= 100_000 && start + count >= 165_536
    })
}

/// What [`lxc_available`] needs, `newuidmap`/`newgidmap` (`uidmap`), and root's subordinate
/// ids 100000-165535 in `/etc/subuid` and `/etc/subgid` (LXC maps an unprivileged
/// container's ids through them; `scripts/install-test-deps.sh` adds them).
pub fn unprivileged_lxc_available(test: &str) -> bool {
    if !(lxc_available(test) && have(test, &["newuidmap", "newgidmap"])) {
        return false;
    }
    let ok = ["/etc/subuid", "/etc/subgid"]
        .iter()
        .all(|f| std::fs::read_to_string(f).is_ok_and(|t| root_has_subids(&t)));
    ok || cannot_run(
        test,
        "root's subordinate ids 100000-165535 in /etc/subuid and /etc/subgid (scripts/install-test-deps.sh adds them)",
    )
}

/// Root, `sshd`, `ssh` and `ssh-keygen` (`openssh-server`, `openssh-client`).
pub fn sshd_available(test: &str) -> bool {
    is_root(test) && have(test, &["/usr/sbin/sshd", "ssh", "ssh-keygen"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_a_made_up_program() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("phoenix-no-such-program").is_none());
        assert!(find_program("/no/such/program").is_none());
    }

    #[test]
    fn a_missing_program_skips_or_fails_under_ci() {
        // Both halves of the rule, in a child process each, so that `CI` is set or unset for
        // that process alone.
        let me = std::env::current_exe().unwrap();
        for (ci, ok) in [(None, true), (Some("true"), false)] {
            let mut cmd = std::process::Command::new(&me);
            cmd.args(["--exact", "require::tests::probe_missing", "--nocapture"])
                .env("PHOENIX_TEST_PROBE", "1");
            match ci {
                Some(v) => cmd.env("CI", v),
                None => cmd.env_remove("CI"),
            };
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.success(), ok, "CI={ci:?}: {text}");
            if ok {
                assert!(
                    text.contains("skipped: probe needs phoenix-no-such-program"),
                    "{text}"
                );
            } else {
                assert!(text.contains("and CI is set"), "{text}");
            }
        }
    }

    #[test]
    fn subordinate_id_ranges() {
        assert!(root_has_subids("root:100000:65536\n"));
        assert!(root_has_subids("alice:100000:65536\nroot:0:200000\n"));
        assert!(!root_has_subids("root:100000:1000\n"));
        assert!(!root_has_subids("alice:100000:65536\n"));
        assert!(!root_has_subids("root:x:y\n"));
    }

    /// Run by the test above in a child process.
    #[test]
    fn probe_missing() {
        if std::env::var_os("PHOENIX_TEST_PROBE").is_none() {
            return;
        }
        assert!(!have("probe", &["sh", "phoenix-no-such-program"]));
    }
}
