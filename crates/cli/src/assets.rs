//! Packaging assets generated from the clap definitions, so they cannot drift from the binary:
//! man pages, bash/zsh/fish completions and the `host prepare` boot unit as an example.
//!
//! `phoenix-gpu generate-assets DIR` writes them (recognised before clap parses, so it is in no
//! help, man page or completion); `scripts/build-deb.sh` packages them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit;

/// The name of the binary, the man page and the completions.
pub const BIN: &str = "phoenix-gpu";
/// The packaging-only first argument.
pub const SUBCOMMAND: &str = "generate-assets";

/// The environment variables the binary reads, for the man page.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "GPU_ASSIGNMENT",
        "the default of --gpus (plan, apply, verify)",
    ),
    (
        "NVIDIA_DRIVER_VERSION",
        "the default of --driver-version (plan, apply, verify)",
    ),
    (
        "NVIDIA_RUNFILE_URL",
        "the default of --runfile-url (plan, apply, verify)",
    ),
    (
        "NVIDIA_REPO_URL",
        "the default of --repo-url (plan, apply, verify)",
    ),
];

/// Files the binary reads or writes, for the man page.
const FILES: &[(&str, &str)] = &[
    ("/etc/pve/lxc/CTID.conf", "Proxmox VE container configs"),
    (
        "/run/lock/lxc/pve-config-CTID.lock",
        "Proxmox's config lock, taken while a config is written",
    ),
    (
        "/var/lib/phoenix-gpu/backups/CT/",
        "the previous bytes of every config the tool changed",
    ),
    (
        "/var/cache/phoenix-gpu/",
        "downloaded NVIDIA runfiles and their checksums",
    ),
    (
        crate::logging::DEFAULT_LOG_FILE,
        "the debug log, when writable (see --log-file)",
    ),
];

/// The clap command with its subcommands built (display names such as `phoenix-gpu-apply`).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Escapes text for a roff line: backslashes, hyphens, and a leading `.` or `'`.
fn roff_text(s: &str) -> String {
    let mut out = s.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

fn roff_section(out: &mut Vec<u8>, title: &str, items: &[(String, String)]) {
    let _ = writeln!(out, ".SH \"{title}\"");
    for (k, v) in items {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff_text(k), roff_text(v));
    }
}

/// The man page of `cmd` (roff). The top-level page also gets EXIT STATUS, ENVIRONMENT and
/// FILES sections, from the same tables the binary uses.
pub fn man_page(cmd: &clap::Command, top: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).manual("phoenix-gpu manual");
    // Writing into a Vec cannot fail.
    let _ = man.render(&mut out);
    if top {
        let codes: Vec<(String, String)> = exit::CODES
            .iter()
            .map(|(c, m)| (c.to_string(), (*m).to_owned()))
            .collect();
        roff_section(&mut out, "EXIT STATUS", &codes);
        let env: Vec<(String, String)> = ENVIRONMENT
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        roff_section(&mut out, "ENVIRONMENT", &env);
        let files: Vec<(String, String)> = FILES
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        roff_section(&mut out, "FILES", &files);
        let _ = writeln!(
            out,
            ".SH \"SEE ALSO\"\n/usr/share/doc/phoenix\\-gpu/README.md, /usr/share/doc/phoenix\\-gpu/troubleshooting.md, /usr/share/doc/phoenix\\-gpu/orchestrator.md"
        );
    }
    out
}

/// Every visible command and subcommand, depth first, with its man page file name.
pub fn man_pages(cmd: &clap::Command) -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: &clap::Command, top: bool, out: &mut Vec<(String, Vec<u8>)>) {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
        out.push((format!("{name}.1"), man_page(cmd, top)));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, false, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, true, &mut out);
    out
}

/// The completion script of `shell`.
pub fn completion(cmd: &clap::Command, shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cmd = cmd.clone();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    out
}

/// The completions with the file names Debian's paths want.
pub fn completions(cmd: &clap::Command) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "completions/phoenix-gpu.bash".into(),
            completion(cmd, Shell::Bash),
        ),
        (
            "completions/_phoenix-gpu".into(),
            completion(cmd, Shell::Zsh),
        ),
        (
            "completions/phoenix-gpu.fish".into(),
            completion(cmd, Shell::Fish),
        ),
    ]
}

/// The `host prepare` unit as the tool writes it on a host whose nvidia-modprobe is
/// `/usr/bin/nvidia-modprobe`.
pub fn example_unit() -> String {
    gpu_core::host_prepare::unit_text(Path::new("/usr/bin/nvidia-modprobe"), false)
}

/// Writes every asset under `dir`: `man/*.1`, `completions/*`, `examples/*.service`.
/// Returns the files written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let cmd = command();
    let mut files: Vec<(String, Vec<u8>)> = man_pages(&cmd)
        .into_iter()
        .map(|(n, b)| (format!("man/{n}"), b))
        .collect();
    files.extend(completions(&cmd));
    files.push((
        format!("examples/{}", gpu_core::host_prepare::UNIT_NAME),
        example_unit().into_bytes(),
    ));
    let mut written = Vec::new();
    for (rel, bytes) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    /// Every visible subcommand, recursively, as the words a user types (`apply`, `host prepare`).
    fn visible_subcommands(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{prefix}{}", s.get_name());
            out.push(name.clone());
            visible_subcommands(s, &format!("{name} "), out);
        }
    }

    #[test]
    fn man_page_mentions_every_subcommand() {
        let cmd = command();
        let pages = man_pages(&cmd);
        let top = text(&pages[0].1);
        assert_eq!(pages[0].0, "phoenix-gpu.1");
        let mut subs = Vec::new();
        visible_subcommands(&cmd, "", &mut subs);
        assert!(subs.len() >= 6, "{subs:?}");
        for s in &subs {
            // The top page lists the first level; every level has its own page.
            let page = format!("phoenix-gpu-{}", s.replace(' ', "-"));
            assert!(
                pages.iter().any(|(n, _)| *n == format!("{page}.1")),
                "no page for {s}"
            );
            if !s.contains(' ') {
                assert!(
                    top.contains(&page.replace('-', "\\-")),
                    "{page} not in the top page"
                );
            }
        }
        assert!(
            !top.contains("generate\\-assets"),
            "the packaging command leaked"
        );
        for (code, _) in exit::CODES {
            assert!(top.contains(&format!(".TP\n\\fB{code}\\fR\n")), "{code}");
        }
        assert!(top.contains("GPU_ASSIGNMENT"));
    }

    #[test]
    fn completions_have_every_long_flag_of_apply() {
        let cmd = command();
        let apply = cmd
            .get_subcommands()
            .find(|s| s.get_name() == "apply")
            .unwrap();
        let longs: Vec<&str> = apply
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .collect();
        assert!(longs.contains(&"gpus") && longs.contains(&"driver-version"));
        assert!(longs.contains(&"root"), "global flags count too");
        for (name, script) in completions(&cmd) {
            let script = text(&script);
            for l in &longs {
                let needle = if name.ends_with(".fish") {
                    format!("-l {l}")
                } else {
                    format!("--{l}")
                };
                assert!(script.contains(&needle), "{needle} not in {name}");
            }
            assert!(!script.contains("generate-assets"), "{name}");
        }
    }

    #[test]
    fn example_unit_is_the_host_prepare_unit() {
        let u = example_unit();
        assert!(u.contains("ExecStart=/usr/bin/nvidia-modprobe -u -c0\n"));
        assert!(u.contains("Before=pve-guests.service lxc.service"));
    }

    #[test]
    fn write_all_writes_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let files = write_all(d.path()).unwrap();
        for rel in [
            "man/phoenix-gpu.1",
            "man/phoenix-gpu-apply.1",
            "completions/phoenix-gpu.bash",
            "completions/_phoenix-gpu",
            "completions/phoenix-gpu.fish",
            "examples/phoenix-gpu-nodes.service",
        ] {
            assert!(files.contains(&d.path().join(rel)), "{rel}");
            assert!(std::fs::metadata(d.path().join(rel)).unwrap().len() > 0);
        }
    }

    #[test]
    fn readme_exit_codes_are_the_table() {
        let readme = include_str!("../../../README.md");
        for (code, meaning) in exit::CODES {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {code} | ")))
                .unwrap_or_else(|| panic!("no README row for exit code {code}"));
            assert_eq!(
                row.replace('`', ""),
                format!("| {code} | {meaning} |"),
                "README row of exit code {code}"
            );
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_text(".a-b\\"), "\\&.a\\-b\\e");
    }
}
