//! `gpu-check`, the small C program (`gpu-check/gpu_check.c`, built by `build.rs`) that answers
//! the GPU questions inside a container: it opens the device nodes the config passes (the device
//! cgroup refuses with `EPERM`), asks NVML what `nvidia-smi` would (driver version, UUIDs,
//! minors), reports which libraries the loader resolves, and with `--ctx` initialises CUDA and
//! creates a context on each GPU. NVML never opens `/dev/nvidia-uvm`; CUDA needs it, so only a
//! CUDA context proves what a CUDA program needs.
//!
//! Why a C program and not a script: a container has no compiler and maybe no Python, and
//! glibc differs across distributions (Ubuntu 20.04 has 2.31, RHEL 8 2.28), so a program
//! linked on this machine as usual would not start there. gpu-check needs nothing newer than
//! `GLIBC_2.2.5` (checked by a test below) and only `libc.so.6` and `libdl.so.2`, and loads
//! NVML and CUDA with `dlopen`, so it runs in any x86-64 glibc container. It is not for musl
//! containers (Alpine): there the probe goes without it.
//!
//! It is put into the container once, at a path named by its SHA-256
//! ([`path`]: `/usr/local/lib/phoenix-gpu/gpu-check-<16 hex>`), through the verification exec
//! itself (the bytes on its stdin), which also removes other versions; every later probe is
//! it (`--probe`: the probe script execs it and it answers every question), so a converged
//! run stays one exec of one process. `remove` takes it out again.

/// The program (empty where the build target is not x86-64 Linux).
pub(crate) const BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gpu-check"));

/// Its SHA-256 in hex.
const SHA256: &str = include_str!(concat!(env!("OUT_DIR"), "/gpu-check.sha256"));

/// The folder in the container that holds it (and nothing else of ours).
pub(crate) const DIR: &str = "/usr/local/lib/phoenix-gpu";

/// Whether this build carries the program.
pub(crate) fn available() -> bool {
    !BYTES.is_empty()
}

/// Its versioned path inside a container.
pub(crate) fn path() -> String {
    format!("{DIR}/gpu-check-{}", &SHA256[..16])
}

/// What to ask it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// The system (arch, free space), the nodes under `/dev` and the libraries the loader
    /// resolves: the probe of `check`.
    System,
    /// Also open the passed nodes: the probe of strategy `none`.
    Nodes,
    /// Also NVML: the probe of a strategy with a userspace.
    Nvml,
    /// Also a CUDA context and a 1 MiB round trip on every GPU: verification.
    Cuda,
}

/// The arguments of gpu-check for `ask`, opening `nodes`, and with `packages` (names, or
/// prefixes ending in `*`) reading dpkg's status for them.
pub(crate) fn args(ask: Ask, nodes: &[String], packages: &[String]) -> String {
    let mut a = String::from("--sys --dev --libs");
    if !packages.is_empty() {
        a.push_str(" --dpkg ");
        a.push_str(&packages.join(","));
    }
    if matches!(ask, Ask::Nvml | Ask::Cuda) {
        a.push_str(" --nvml");
    }
    if ask == Ask::Cuda {
        a.push_str(" --ctx");
    }
    if ask != Ask::System && !nodes.is_empty() {
        a.push_str(" --open ");
        a.push_str(&nodes.join(","));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], o: usize) -> usize {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap()) as usize
    }
    fn u32_at(b: &[u8], o: usize) -> usize {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize
    }
    fn u64_at(b: &[u8], o: usize) -> usize {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize
    }
    fn cstr(b: &[u8], o: usize) -> String {
        let end = b[o..].iter().position(|c| *c == 0).unwrap();
        String::from_utf8_lossy(&b[o..o + end]).into_owned()
    }

    /// A section header of a 64-bit little-endian ELF: (type, offset, size, link).
    fn sections(b: &[u8]) -> Vec<(u32, usize, usize, usize)> {
        assert_eq!(&b[..4], b"\x7fELF", "not an ELF");
        assert_eq!((b[4], b[5]), (2, 1), "not 64-bit little-endian");
        assert_eq!(u16_at(b, 18), 62, "not x86-64");
        let (shoff, shentsize, shnum) = (u64_at(b, 0x28), u16_at(b, 0x3a), u16_at(b, 0x3c));
        (0..shnum)
            .map(|i| {
                let h = shoff + i * shentsize;
                (
                    u32_at(b, h + 4) as u32,
                    u64_at(b, h + 0x18),
                    u64_at(b, h + 0x20),
                    u32_at(b, h + 0x28),
                )
            })
            .collect()
    }

    /// The libraries the ELF needs (`DT_NEEDED`) and the symbol versions it needs from each
    /// (`.gnu.version_r`), read from the section headers.
    fn needs(b: &[u8]) -> (Vec<String>, Vec<(String, String)>) {
        let secs = sections(b);
        let mut needed = Vec::new();
        let mut versions = Vec::new();
        for &(kind, off, size, link) in &secs {
            let strtab = secs[link].1;
            match kind {
                // SHT_DYNAMIC: (tag, value) pairs; DT_NEEDED is 1.
                6 => {
                    for e in (off..off + size).step_by(16) {
                        if u64_at(b, e) == 1 {
                            needed.push(cstr(b, strtab + u64_at(b, e + 8)));
                        }
                    }
                }
                // SHT_GNU_verneed: Elf64_Verneed records, each with its Elf64_Vernaux list.
                0x6fff_fffe => {
                    let mut vn = off;
                    loop {
                        let (cnt, file) = (u16_at(b, vn + 2), u32_at(b, vn + 4));
                        let file = cstr(b, strtab + file);
                        let mut aux = vn + u32_at(b, vn + 8);
                        for _ in 0..cnt {
                            versions.push((file.clone(), cstr(b, strtab + u32_at(b, aux + 8))));
                            aux += u32_at(b, aux + 12);
                        }
                        let next = u32_at(b, vn + 12);
                        if next == 0 {
                            break;
                        }
                        vn += next;
                    }
                }
                _ => {}
            }
        }
        (needed, versions)
    }

    #[test]
    fn needs_nothing_newer_than_glibc_2_2_5() {
        assert!(available(), "this build target carries gpu-check");
        let (mut needed, versions) = needs(BYTES);
        needed.sort();
        assert_eq!(needed, ["libc.so.6", "libdl.so.2"]);
        assert!(!versions.is_empty());
        for (file, version) in &versions {
            assert!(
                ["libc.so.6", "libdl.so.2"].contains(&file.as_str()),
                "{file}"
            );
            assert_eq!(version, "GLIBC_2.2.5", "a symbol of {file} needs {version}");
        }
        // And no entry point of glibc's start files (crt1.o needs __libc_start_main@2.34).
        assert!(!BYTES.windows(17).any(|w| w == b"__libc_start_main"));
    }

    #[test]
    fn the_path_names_the_version() {
        let p = path();
        assert!(p.starts_with("/usr/local/lib/phoenix-gpu/gpu-check-"));
        assert_eq!(p.len(), DIR.len() + "/gpu-check-".len() + 16);
        assert_eq!(
            args(
                Ask::Cuda,
                &["/dev/nvidia0".into(), "/dev/nvidiactl".into()],
                &[]
            ),
            "--sys --dev --libs --nvml --ctx --open /dev/nvidia0,/dev/nvidiactl"
        );
        assert_eq!(
            args(Ask::System, &["/dev/x".into()], &[]),
            "--sys --dev --libs"
        );
        assert_eq!(
            args(Ask::Nodes, &[], &["cuda-toolkit-*".into(), "nvtop".into()]),
            "--sys --dev --libs --dpkg cuda-toolkit-*,nvtop"
        );
    }

    /// Runs the embedded program on this machine: the keys it prints, the errno names of the
    /// nodes it opens, no NVML or CUDA here.
    #[test]
    fn runs_here() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("gpu-check");
        std::fs::write(&exe, BYTES).unwrap();
        test_support::chmod(&exe, 0o755);
        let out = std::process::Command::new(&exe)
            .args([
                "--sys",
                "--open",
                "/dev/null,/no/such/node",
                "--libs",
                "--nvml",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("check_version=1\narch=x86_64\n"), "{text}");
        assert!(text.contains("\ndisk_free_kb="), "{text}");
        assert!(text.contains("\nnode=/dev/null ok\n"), "{text}");
        assert!(text.contains("\nnode=/no/such/node ENOENT\n"), "{text}");
        assert!(text.ends_with("check_end=1\n"), "{text}");
        let bad = std::process::Command::new(&exe)
            .arg("--x")
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
    }
}
