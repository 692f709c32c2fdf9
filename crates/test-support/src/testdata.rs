//! Where the repository's fixtures and corpora are (`testdata/` at its root; `SOURCES.md` there
//! names where each came from).

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support lies two levels below the repository's root")
        .to_owned()
}

/// `testdata/` at the repository's root.
pub fn testdata() -> PathBuf {
    repo().join("testdata")
}

/// The captured 2 x H200 host: `root/` (its files as under `/`), `dev.stat` (its device nodes),
/// `commands/` (what its tools printed). See its README.md.
pub fn h200x2() -> PathBuf {
    testdata().join("hosts/h200x2")
}

/// The LXC and Proxmox container config corpus: `pve/`, `pve_rewrites/`, `plain_lxc/`,
/// `synthetic/` (SOURCES.md there names each file's origin).
pub fn lxc_corpus() -> PathBuf {
    testdata().join("corpus/lxc")
}

/// One of the orchestrator's config files (`testdata/phoenix/`).
pub fn phoenix(name: &str) -> PathBuf {
    testdata().join("phoenix").join(name)
}

/// A device node of the captured host, as `dev.stat` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevNode {
    /// The path on the host (`/dev/nvidia0`).
    pub path: String,
    /// `None` for a directory, else the character device's (major, minor).
    pub rdev: Option<(u32, u32)>,
    /// The permission bits.
    pub mode: u32,
}

/// The captured host's `/dev` entries of NVIDIA (`dev.stat`), in the file's order (a directory
/// before the nodes in it).
pub fn h200x2_dev() -> Vec<DevNode> {
    let path = h200x2().join("dev.stat");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (testdata/ is part of the repository)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            parse_dev_line(line).unwrap_or_else(|| panic!("{}: bad line {line:?}", path.display()))
        })
        .collect()
}

/// `path type major minor mode owner group`, type `char` or `dir` (`-` for its numbers).
fn parse_dev_line(line: &str) -> Option<DevNode> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [path, kind, major, minor, mode, _owner, _group] = f[..] else {
        return None;
    };
    let rdev = match kind {
        "dir" => None,
        "char" => Some((major.parse().ok()?, minor.parse().ok()?)),
        _ => return None,
    };
    Some(DevNode {
        path: path.to_owned(),
        rdev,
        mode: u32::from_str_radix(mode, 8).ok()?,
    })
}
