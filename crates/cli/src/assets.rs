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
        "the log, when writable (see --log-file): info lines, debug lines too with -v",
    ),
    (
        "/etc/logrotate.d/phoenix-gpu",
        "rotates the log monthly or past 10 MB, keeping twelve",
    ),
];

/// The clap command as the assets describe it, not yet built.
fn cli_command() -> clap::Command {
    Cli::command().disable_help_subcommand(true)
}

/// The clap command with its subcommands built (display names such as `phoenix-gpu-apply`).
pub fn command() -> clap::Command {
    let mut cmd = cli_command();
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

/// The name bash's script is generated under (see [`completion`]).
const BASH_GENERATED_AS: &str = "phoenix_gpu";

/// The completion script of `shell`.
///
/// Bash: clap_complete spells the script's state two ways when the binary name has a dash
/// (clap-rs/clap#6421, open): `cmd="phoenix__gpu__subcmd__apply"` against the case label
/// `phoenix__subcmd__gpu__subcmd__apply`, so nothing after the first word completes. The script
/// is generated for `phoenix_gpu`, whose labels agree, and its `complete` lines then name the
/// real binary. The function finds its state from `$1`, whatever the binary is called.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = cli_command();
    let mut out = Vec::new();
    if shell == Shell::Bash {
        clap_complete::generate(shell, &mut cmd, BASH_GENERATED_AS, &mut out);
        let script = String::from_utf8_lossy(&out);
        let tail = format!(" {BASH_GENERATED_AS}");
        return script
            .lines()
            .map(|l| match l.strip_suffix(&tail) {
                Some(head) if l.trim_start().starts_with("complete ") => format!("{head} {BIN}\n"),
                _ => format!("{l}\n"),
            })
            .collect::<String>()
            .into_bytes();
    }
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    out
}

/// The completions with the file names Debian's paths want.
pub fn completions() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "completions/phoenix-gpu.bash".into(),
            completion(Shell::Bash),
        ),
        ("completions/_phoenix-gpu".into(), completion(Shell::Zsh)),
        (
            "completions/phoenix-gpu.fish".into(),
            completion(Shell::Fish),
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
    files.extend(completions());
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
        for (name, script) in completions() {
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

    /// Whether `shell` can be run; with `CI` set a missing shell is a broken install, not a skip.
    fn have(shell: &str) -> bool {
        if std::process::Command::new(shell)
            .arg("--version")
            .output()
            .is_ok()
        {
            return true;
        }
        let why = format!("{shell} is not installed (scripts/install-test-deps.sh installs it)");
        assert!(std::env::var_os("CI").is_none(), "CI is set but {why}");
        eprintln!("skipped: {why}");
        false
    }

    /// Runs `shell ARGS` (killed after 60 s), returning stdout's lines sorted; fails the test on
    /// a non-zero exit.
    fn shell_lines(shell: &str, args: &[&str]) -> Vec<String> {
        let out = std::process::Command::new("timeout")
            .arg("60")
            .arg(shell)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{shell}: {e}"));
        assert!(
            out.status.success(),
            "{shell} {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let mut v: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// What the generated script of `shell` offers for `line` (completing its last word; a line
    /// ending in a space completes a new, empty word).
    fn offers(shell: Shell, line: &str) -> Vec<String> {
        let d = tempfile::tempdir().unwrap();
        let (name, bin) = match shell {
            Shell::Bash => ("phoenix-gpu.bash", "bash"),
            Shell::Zsh => ("_phoenix-gpu", "zsh"),
            Shell::Fish => ("phoenix-gpu.fish", "fish"),
            _ => unreachable!(),
        };
        let script = d.path().join(name);
        std::fs::write(&script, completion(shell)).unwrap();
        let script = script.to_str().unwrap();
        let dir = d.path().to_str().unwrap();
        match shell {
            // As bash-completion calls it: the function `complete -p` names for the binary,
            // with the command, the current word and the previous word.
            Shell::Bash => shell_lines(
                bin,
                &[
                    "--norc",
                    "--noprofile",
                    "-c",
                    BASH_HARNESS,
                    "bash",
                    script,
                    line,
                ],
            ),
            Shell::Zsh => shell_lines(bin, &["-f", "-c", ZSH_HARNESS, "zsh", dir, line]),
            Shell::Fish => shell_lines(
                bin,
                &[
                    "--no-config",
                    "-c",
                    "source $argv[1]; complete -C $argv[2] | string replace -r '\\t.*' ''",
                    script,
                    line,
                ],
            ),
            _ => unreachable!(),
        }
    }

    /// bash -c BASH_HARNESS bash SCRIPT LINE
    const BASH_HARNESS: &str = r#"
set -eu
. "$1"
read -r -a COMP_WORDS <<<"$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$2"
COMP_POINT=${#COMP_LINE}
spec=$(complete -p phoenix-gpu)
fn=${spec#*-F }
fn=${fn%% *}
COMPREPLY=()
"$fn" phoenix-gpu "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
[ ${#COMPREPLY[@]} -eq 0 ] || printf '%s\n' "${COMPREPLY[@]}"
"#;

    /// zsh -f -c ZSH_HARNESS zsh DIR LINE: an interactive zsh in a pseudo-terminal with DIR
    /// first on fpath types LINE and a tab; every match the completion system adds is printed.
    const ZSH_HARNESS: &str = r#"
zmodload zsh/zpty || exit 3
zpty z zsh -f -i || exit 3
zpty -w z "PS1=''; fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z 'zstyle ":completion:*" menu no; LISTMAX=100000'
# The tags are built at run time, so the echoed input never contains them.
zpty -w z 'compadd() {
  if (( ${@[(I)-(O|A|D)*]} )); then builtin compadd "$@"; return; fi
  local -a got; builtin compadd -O got "$@"
  print -rl -- "${_t}"${^got}
  builtin compadd "$@"
}'
zpty -w z '_t=MA""TCH:; _e=DO""NE; comppostfuncs=(_done); _done() { print -r -- $_e; }'
zpty -w z "$2"$'\t'
zpty -r z out '*DONE*' || exit 4
zpty -d z
print -r -- "$out" | tr -d '\r' | sed -n 's/^.*MATCH:\(.*\)$/\1/p' | sort -u
"#;

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Completion beyond the first word: a subcommand's flag, and a flag's values (not files).
    /// Bash failed both before the script was generated under a name without the dash
    /// (clap-rs/clap#6421).
    #[test]
    fn completion_of_subcommand_flags_and_values() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            if !have(&shell.to_string()) {
                continue;
            }
            assert_eq!(offers(shell, "phoenix-gpu ap"), strs(&["apply"]), "{shell}");
            assert_eq!(
                offers(shell, "phoenix-gpu apply --str"),
                strs(&["--strategy"]),
                "{shell}"
            );
            assert_eq!(
                offers(shell, "phoenix-gpu apply --strategy "),
                strs(&["host-libs", "none", "runfile"]),
                "{shell}"
            );
            let prepare = offers(shell, "phoenix-gpu host prepare --");
            for flag in ["--hookscript", "--remove", "--json"] {
                assert!(prepare.contains(&flag.to_owned()), "{shell}: {prepare:?}");
            }
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

    /// The README's test command works in a root shell without sudo (a fresh Debian or Proxmox
    /// VE node has none), and CI runs the same script.
    #[test]
    fn readme_test_command_is_ci_s_and_needs_no_sudo() {
        let readme = include_str!("../../../README.md");
        let ci = include_str!("../../../.ci/run");
        let mut in_block = false;
        let mut commands = Vec::new();
        for line in readme.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
            } else if in_block && line.contains("scripts/test.sh") {
                commands.push(line.trim());
            }
        }
        assert_eq!(commands, ["scripts/test.sh"], "the README's test command");
        assert!(
            ci.lines()
                .any(|l| l == "PHOENIX_SKIP_INSTALL=1 scripts/test.sh"),
            ".ci/run installs first, then runs the README's command"
        );
        for (name, text) in [
            ("README.md", readme),
            ("scripts/test.sh", include_str!("../../../scripts/test.sh")),
            (
                "scripts/install-test-deps.sh",
                include_str!("../../../scripts/install-test-deps.sh"),
            ),
        ] {
            let sudo = text
                .lines()
                .filter(|l| l.trim_start().starts_with("sudo ") || l.contains("| sudo "));
            assert_eq!(sudo.count(), 0, "{name} runs sudo");
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_text(".a-b\\"), "\\&.a\\-b\\e");
    }
}
