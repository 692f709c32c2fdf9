//! Builds `gpu-check` (gpu-check/gpu_check.c), the small C program the container probe runs to
//! open device nodes, ask NVML and create a CUDA context, with the system C compiler (`$CC`, else
//! `cc`). It is embedded into gpu-core (`container::gpucheck`).
//!
//! It must run in any x86-64 glibc container, so it is linked without glibc's start files (own
//! `_start`), every glibc symbol is pinned to `GLIBC_2.2.5` in the source, and neither the stack
//! protector nor fortify is used (their symbols are newer); `libdl.so.2` is named explicitly so
//! that `dlopen` resolves on glibc before 2.34 (where it lives there) and after (a stub that
//! forwards to libc). For another target than x86-64 Linux, the embedded program is empty and
//! the probe goes without it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let src = "gpu-check/gpu_check.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("gpu-check");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch != "x86_64" || os != "linux" {
        std::fs::write(&out, b"").expect("writing an empty gpu-check");
        write_sha(&out);
        return;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args([
            "-std=gnu99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-fno-stack-protector",
            "-U_FORTIFY_SOURCE",
            "-D_FORTIFY_SOURCE=0",
            "-fno-pie",
            "-no-pie",
            "-nostartfiles",
            "-o",
        ])
        .arg(&out)
        .arg(src)
        .args([
            "-Wl,--no-as-needed",
            "-l:libdl.so.2",
            "-Wl,--hash-style=both",
            "-s",
        ])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building {src} with {cc} failed ({s}); gpu-core needs a C compiler for x86-64 glibc (set CC)"),
        Err(e) => panic!("cannot run the C compiler {cc:?} to build {src}: {e}; install gcc or set CC"),
    }
    write_sha(&out);
}

/// `<out>.sha256`: the program's SHA-256 in hex, which names its versioned path in a container.
fn write_sha(out: &std::path::Path) {
    let bytes = std::fs::read(out).expect("reading the built gpu-check");
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(out.with_extension("sha256"), hex).expect("writing gpu-check.sha256");
}
