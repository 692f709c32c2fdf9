//! The host's own driver userspace, for the `host-libs` strategy: which host files are
//! bind-mounted read-only into a container, and where they go.
//!
//! Which files: the directories that the host's loader cache (`/etc/ld.so.cache`, read as a
//! file: what `ldconfig -p` prints, without running it) lists NVIDIA libraries in (or, when it
//! lists none, the usual driver folders), and in them the regular files named
//! `lib*.so.<module version>`; the driver binaries (`nvidia-smi`, ...) found beside them or in
//! the usual bin dirs; the firmware folder `/lib/firmware/nvidia/<version>` when present.
//! Libraries go to `usr/lib/x86_64-linux-gnu/` (the multiarch dir of Debian and Ubuntu),
//! binaries to `usr/bin/`. Each mount is `ro,bind,optional,create=file` (LXC binds, then
//! remounts the bind read-only; `optional` keeps a container whose host lost a file startable).
//! The config step writes them as `lxc.mount.entry` lines; the container part
//! (`container::hostlibs`) links and runs `ldconfig`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use exec_backend::{ExecError, FileKind, NameMatch};

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
/// Where libraries are looked for when the loader cache lists none.
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
    // Only the names of this version's libraries are looked at (a library folder holds
    // hundreds of other files).
    let keep = NameMatch {
        prefix: "lib".into(),
        suffix: suffix.clone(),
    };
    for dir in &dirs {
        for e in list(ctx, dir, &keep).await? {
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
    // Every place a binary may be, and the firmware folder, asked in one batch.
    let fw = PathBuf::from(format!("/lib/firmware/nvidia/{ver}"));
    let mut asked: Vec<PathBuf> = BINARIES
        .iter()
        .flat_map(|bin| bin_dirs.iter().map(move |d| d.join(bin)))
        .collect();
    asked.push(fw.clone());
    let metas = ctx
        .host
        .stat_many(&asked)
        .await
        .map_err(|e| Error::exec("looking for the driver's binaries on the host", e))?;
    if metas.len() != asked.len() {
        return Err(Error::exec(
            "looking for the driver's binaries on the host",
            ExecError::Protocol {
                target: ctx.host.name(),
                what: "a batch of stats".into(),
                detail: format!("{} answers for {} paths", metas.len(), asked.len()),
            },
        ));
    }
    let mut found = asked.into_iter().zip(metas);
    for bin in BINARIES {
        let mut hit = None;
        // The first place that has it, as if asked one after the other: what comes after
        // it (an error included) is not looked at.
        for (p, meta) in found.by_ref().take(bin_dirs.len()) {
            if hit.is_some() {
                continue;
            }
            let meta = meta
                .map_err(|e| Error::exec(format!("looking for {} on the host", p.display()), e))?;
            if meta.is_some_and(|m| matches!(m.kind, FileKind::File | FileKind::Symlink)) {
                hit = Some(p);
            }
        }
        if let Some(source) = hit {
            out.push(MountEntry {
                source,
                target: format!("usr/bin/{bin}"),
                options: LIB_OPTIONS.into(),
            });
        }
    }
    let fw_meta = match found.next() {
        Some((_, meta)) => {
            meta.map_err(|e| Error::exec(format!("looking for {} on the host", fw.display()), e))?
        }
        None => None,
    };
    if fw_meta.is_some_and(|m| m.kind == FileKind::Dir) {
        out.push(MountEntry {
            source: fw,
            target: format!("usr/lib/firmware/nvidia/{ver}"),
            options: DIR_OPTIONS.into(),
        });
    }
    Ok(out)
}

/// The host's loader cache.
const LD_SO_CACHE: &str = "/etc/ld.so.cache";

/// The directories the host's loader cache lists driver libraries in, in its order (empty
/// when it cannot be read).
async fn ldconfig_dirs(ctx: &Ctx<'_>) -> Vec<PathBuf> {
    match ctx.host.read_file(Path::new(LD_SO_CACHE)).await {
        Ok(bytes) => dirs_of(&cache_entries(&bytes).unwrap_or_default()),
        Err(_) => Vec::new(),
    }
}

/// The x86-64 entries `(soname, path)` of a glibc loader cache (`ldconfig -p` lists the same):
/// the new format (`glibc-ld.so.cache1.1`, alone as glibc 2.32 and later write it, or after
/// the old `ld.so-1.7.0` table). `None` when the bytes are not such a cache.
pub(crate) fn cache_entries(b: &[u8]) -> Option<Vec<(String, String)>> {
    const OLD: &[u8] = b"ld.so-1.7.0";
    const NEW: &[u8] = b"glibc-ld.so.cache1.1";
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    let start = if b.starts_with(NEW) {
        0
    } else if b.starts_with(OLD) {
        // The old header (magic, count) and its 12-byte entries, then the new table, 8-aligned.
        let n = u32_at(12)? as usize;
        (16 + n * 12).div_ceil(8) * 8
    } else {
        return None;
    };
    if !b.get(start..)?.starts_with(NEW) {
        return None;
    }
    let n = u32_at(start + 20)? as usize;
    // Strings are offsets from the start of the new header.
    let text = |off: u32| -> Option<String> {
        let from = start + off as usize;
        let len = b.get(from..)?.iter().position(|c| *c == 0)?;
        Some(String::from_utf8_lossy(&b[from..from + len]).into_owned())
    };
    let mut out = Vec::with_capacity(n.min(4096));
    for i in 0..n {
        let e = start + 48 + i * 24;
        let flags = u32_at(e)?;
        // FLAG_ELF_LIBC6 (3) with FLAG_X8664_LIB64 (0x0300): "(libc6,x86-64)".
        if flags & 0xffff != 0x0303 {
            continue;
        }
        out.push((text(u32_at(e + 4)?)?, text(u32_at(e + 8)?)?));
    }
    Some(out)
}

/// The directories of the driver's libraries among cache entries, in order.
pub(crate) fn dirs_of(entries: &[(String, String)]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (name, path) in entries {
        if !LIB_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        if let Some(dir) = Path::new(path).parent() {
            if dir.is_absolute() && !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    dirs
}

async fn list(ctx: &Ctx<'_>, dir: &Path, keep: &NameMatch) -> Result<Vec<exec_backend::DirEntry>> {
    match ctx.host.read_dir_matching(dir, keep).await {
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
    use std::process::Command;

    /// A loader cache written by this machine's `ldconfig` over stub libraries with the
    /// driver's sonames, read back as `ldconfig -p` lists it.
    #[test]
    fn reads_the_loader_cache_as_ldconfig_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("nv/lib64"), dir.path().join("lib"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let c = dir.path().join("stub.c");
        std::fs::write(&c, "int phoenix_stub(void) { return 0; }\n").unwrap();
        for (d, name, soname) in [
            (&a, "libnvidia-ml.so.580.159.04", "libnvidia-ml.so.1"),
            (&b, "libcuda.so.580.159.04", "libcuda.so.1"),
            (&b, "libz-stub.so.1.0", "libz-stub.so.1"),
        ] {
            let built = Command::new("gcc")
                .args(["-shared", "-fPIC", &format!("-Wl,-soname,{soname}"), "-o"])
                .arg(d.join(name))
                .arg(&c)
                .status();
            if !built.is_ok_and(|s| s.success()) {
                test_support::cannot_run("reads_the_loader_cache_as_ldconfig_lists_it", "gcc");
                return;
            }
        }
        let conf = dir.path().join("ld.so.conf");
        std::fs::write(&conf, format!("{}\n{}\n", a.display(), b.display())).unwrap();
        let cache = dir.path().join("ld.so.cache");
        let ok = Command::new("ldconfig")
            .arg("-C")
            .arg(&cache)
            .arg("-f")
            .arg(&conf)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            test_support::cannot_run("reads_the_loader_cache_as_ldconfig_lists_it", "ldconfig");
            return;
        }
        let entries = cache_entries(&std::fs::read(&cache).unwrap()).unwrap();
        let printed = Command::new("ldconfig")
            .arg("-p")
            .arg("-C")
            .arg(&cache)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&printed.stdout);
        for (name, path) in &entries {
            assert!(
                printed.contains(&format!("{name} (libc6,x86-64) => {path}")),
                "{printed}"
            );
        }
        assert!(
            entries.iter().any(|(n, _)| n == "libz-stub.so.1"),
            "{entries:?}"
        );
        assert_eq!(dirs_of(&entries), vec![a.clone(), b.clone()]);
    }

    #[test]
    fn anything_else_is_not_a_cache() {
        assert_eq!(cache_entries(b""), None);
        assert_eq!(cache_entries(b"glibc-ld.so.cache1.1"), None);
        assert_eq!(cache_entries(b"ld.so-1.7.0\0\xff\xff\xff\xff"), None);
        // Five entries announced, the table cut short.
        let mut truncated = b"glibc-ld.so.cache1.1".to_vec();
        truncated.extend(5u32.to_le_bytes());
        truncated.extend([0u8; 48]);
        assert_eq!(cache_entries(&truncated), None);
        let entries = vec![
            (
                "libc.so.6".to_owned(),
                "/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
            ),
            (
                "libcuda.so.1".to_owned(),
                "/usr/local/nvidia/lib64/libcuda.so.1".to_owned(),
            ),
            (
                "libnvidia-ml.so.1".to_owned(),
                "relative/libnvidia-ml.so.1".to_owned(),
            ),
        ];
        assert_eq!(
            dirs_of(&entries),
            vec![PathBuf::from("/usr/local/nvidia/lib64")]
        );
    }
}
