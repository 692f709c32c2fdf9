//! The host's own driver userspace, for the `host-libs` strategy: which host files are
//! bind-mounted read-only into a container, and where they go.
//!
//! Which files: the directories that the host's `ldconfig -p` lists NVIDIA libraries in (or,
//! when it lists none, the usual driver folders), and in them the regular files named
//! `lib*.so.<module version>`; the driver binaries (`nvidia-smi`, ...) found beside them or in
//! the usual bin dirs; the firmware folder `/lib/firmware/nvidia/<version>` when present.
//! Libraries go to `usr/lib/x86_64-linux-gnu/` (the multiarch dir of Debian and Ubuntu),
//! binaries to `usr/bin/`. Each mount is `ro,bind,optional,create=file` (LXC binds, then
//! remounts the bind read-only; `optional` keeps a container whose host lost a file startable).
//! The config step writes them as `lxc.mount.entry` lines; the container part
//! (`container::hostlibs`) links and runs `ldconfig`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exec_backend::{Cmd, ExecError, FileKind};

use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::passthrough::MountEntry;
use crate::step::Ctx;

/// The container's library dir the host's libraries are mounted into.
pub const CT_LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
/// The driver binaries mounted when the host has them.
pub const BINARIES: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];
/// Where libraries are looked for when `ldconfig -p` lists none.
const FALLBACK_LIB_DIRS: &[&str] = &[
    "/usr/local/nvidia/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
];
/// Where binaries are looked for (besides `../bin` of each library dir).
const BIN_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/local/nvidia/bin",
    "/usr/local/bin",
    "/bin",
];
/// Library name prefixes that belong to the driver.
const LIB_PREFIXES: &[&str] = &[
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-",
    "libnvcuvid",
    "libnvoptix",
    "libEGL_nvidia",
    "libGLX_nvidia",
    "libGLESv1_CM_nvidia",
    "libGLESv2_nvidia",
    "libvdpau_nvidia",
];
const LIB_OPTIONS: &str = "ro,bind,optional,create=file";
const DIR_OPTIONS: &str = "ro,bind,optional,create=dir";

/// The read-only bind mounts that give a container the host's userspace of `inv`'s version.
///
/// Sources are host paths (the config step writes them resolved only with
/// [`Settings::resolve_mount_sources`](crate::Settings::resolve_mount_sources)), targets are
/// relative to the container's root. Fails with
/// [`Error::HostUserspaceMissing`] when the host has no `libnvidia-ml.so.<version>`.
pub(crate) async fn mounts(ctx: &Ctx<'_>, inv: &Inventory) -> Result<Vec<MountEntry>> {
    let ver = inv.driver_version.as_str();
    let suffix = format!(".so.{ver}");
    let mut dirs = ldconfig_dirs(ctx).await;
    if dirs.is_empty() {
        dirs = FALLBACK_LIB_DIRS.iter().map(PathBuf::from).collect();
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in &dirs {
        for e in list(ctx, dir).await? {
            let name = e.name.to_string_lossy().into_owned();
            let keep = e.meta.kind == FileKind::File
                && name.starts_with("lib")
                && name.ends_with(&suffix)
                && name.len() > suffix.len() + 3;
            if keep && seen.insert(name.clone()) {
                out.push(MountEntry {
                    source: dir.join(&name),
                    target: format!("{CT_LIB_DIR}/{name}"),
                    options: LIB_OPTIONS.into(),
                });
            }
        }
    }
    let nvml = format!("libnvidia-ml.so.{ver}");
    if !seen.contains(&nvml) {
        return Err(Error::HostUserspaceMissing {
            version: ver.to_owned(),
            looked_in: dirs,
        });
    }
    let mut bin_dirs: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.parent().map(|p| p.join("bin")))
        .collect();
    bin_dirs.extend(BIN_DIRS.iter().map(PathBuf::from));
    for bin in BINARIES {
        for d in &bin_dirs {
            let p = d.join(bin);
            let meta =
                ctx.host.stat(&p).await.map_err(|e| {
                    Error::exec(format!("looking for {} on the host", p.display()), e)
                })?;
            if meta.is_some_and(|m| matches!(m.kind, FileKind::File | FileKind::Symlink)) {
                out.push(MountEntry {
                    source: p,
                    target: format!("usr/bin/{bin}"),
                    options: LIB_OPTIONS.into(),
                });
                break;
            }
        }
    }
    let fw = PathBuf::from(format!("/lib/firmware/nvidia/{ver}"));
    let fw_meta = ctx
        .host
        .stat(&fw)
        .await
        .map_err(|e| Error::exec(format!("looking for {} on the host", fw.display()), e))?;
    if fw_meta.is_some_and(|m| m.kind == FileKind::Dir) {
        out.push(MountEntry {
            source: fw,
            target: format!("usr/lib/firmware/nvidia/{ver}"),
            options: DIR_OPTIONS.into(),
        });
    }
    Ok(out)
}

/// The directories `ldconfig -p` on the host lists driver libraries in, in its order.
async fn ldconfig_dirs(ctx: &Ctx<'_>) -> Vec<PathBuf> {
    let cmd = Cmd::new(["ldconfig", "-p"]).timeout(Duration::from_secs(60));
    match ctx.host.run(&cmd).await {
        Ok(out) if out.status.success() => parse_ldconfig_dirs(&out.stdout_str()),
        _ => Vec::new(),
    }
}

/// Parses `ldconfig -p` lines (`\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/libcuda.so.1`).
pub(crate) fn parse_ldconfig_dirs(text: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let Some((left, path)) = line.split_once("=>") else {
            continue;
        };
        let name = left.split_whitespace().next().unwrap_or_default();
        if !LIB_PREFIXES.iter().any(|p| name.starts_with(p)) || !left.contains("x86-64") {
            continue;
        }
        if let Some(dir) = Path::new(path.trim()).parent() {
            if dir.is_absolute() && !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    dirs
}

async fn list(ctx: &Ctx<'_>, dir: &Path) -> Result<Vec<exec_backend::DirEntry>> {
    match ctx.host.read_dir(dir).await {
        Ok(v) => Ok(v),
        Err(ExecError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(Error::exec(
            format!("listing {} on the host", dir.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldconfig_dirs_of_the_h200_host() {
        let path = test_support::testdata::h200x2().join("commands/ldconfig-p-nvidia.txt");
        let text = std::fs::read_to_string(path).unwrap();
        let dirs = parse_ldconfig_dirs(&text);
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/usr/local/nvidia/lib64"),
                PathBuf::from("/lib")
            ]
        );
    }

    #[test]
    fn ignores_other_libraries_and_noise() {
        let text = "123 libs found in cache `/etc/ld.so.cache'\n\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n\tlibcuda.so.1 (libc6) => /usr/lib32/libcuda.so.1\n\tlibnvidia-ml.so.1 (libc6,x86-64) => relative/x\ngarbage =>\n";
        assert!(parse_ldconfig_dirs(text).is_empty());
    }
}
