//! Real-system test support: the cached Debian rootfs, LXC containers made from it, a
//! stand-in GPU host under a temporary root, an HTTP server on 127.0.0.1, the stand-in runfile
//! and the local apt repository. See README.md beside this file.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use exec_backend::LocalHost;
use test_support::{have, is_root, run_bytes, run_ok, sha256_hex, unique_name, HostTree};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use test_support::{chmod, TestCt};

pub const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support");
pub const VER: &str = "580.159.04";
/// The fixture's GPUs: (minor, uuid).
pub const GPUS: [(u32, &str); 2] = [
    (0, "GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836"),
    (1, "GPU-7fc3e24c-6572-362c-3b22-0d1167fae655"),
];

/// True when the test can run: root and every tool these tests use (test-support's rule:
/// skipped on a developer machine, a failure with `CI` set).
pub fn can_run(test: &str) -> bool {
    is_root(test)
        && have(
            test,
            &[
                "lxc-start",
                "lxc-attach",
                "lxc-info",
                "debootstrap",
                "dpkg-deb",
                "gpg",
                "gcc",
                "curl",
                "sha256sum",
                "flock",
                "mknod",
            ],
        )
}

/// The cached minbase rootfs, built on first use (about a minute, needs the Debian mirror).
pub fn rootfs_cache() -> PathBuf {
    let cache = std::env::var_os("PHOENIX_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/phoenix-test-cache"));
    std::fs::create_dir_all(&cache).unwrap();
    let dest = cache.join("debian-bookworm-minbase");
    if !dest.join(".phoenix-complete").exists() {
        run_ok(
            Command::new("flock")
                .arg(cache.join(".rootfs.lock"))
                .arg("sh")
                .arg(format!("{SUPPORT}/build-rootfs.sh"))
                .arg(&dest),
        );
    }
    dest
}

/// The stand-in GPU host: a temporary root with the captured host's /proc and /sys, real
/// device nodes and this machine's mounts (`HostTree::h200x2_with_device_nodes`), and the LXC
/// path under it.
pub struct GpuHost {
    pub tree: HostTree,
    pub host: Arc<LocalHost>,
}

impl GpuHost {
    pub fn new() -> GpuHost {
        let tree = HostTree::h200x2_with_device_nodes();
        std::fs::create_dir_all(tree.path("/lxc")).unwrap();
        GpuHost {
            host: Arc::new(LocalHost::with_root(tree.root())),
            tree,
        }
    }

    pub fn root(&self) -> &Path {
        self.tree.root()
    }

    /// Rewrites the module version the host reports (a driver upgrade).
    pub fn set_driver_version(&self, v: &str) {
        std::fs::write(
            self.root().join("sys/module/nvidia/version"),
            format!("{v}\n"),
        )
        .unwrap();
        std::fs::write(
            self.root().join("proc/driver/nvidia/version"),
            format!("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  (nixbld@)  \nGCC version:  gcc version 15.3.0 (GCC) \n"),
        )
        .unwrap();
    }

    /// A new stopped container under `/lxc` made from the cached rootfs. `extra` config lines
    /// go at the end.
    pub fn container(&self, extra: &[&str]) -> TestCt {
        let name = unique_name();
        let lxcpath = self.root().join("lxc");
        let rootfs = lxcpath.join(&name).join("rootfs");
        let mut config = format!(
            "lxc.include = /usr/share/lxc/config/common.conf\n\
             lxc.arch = linux64\n\
             lxc.uts.name = {name}\n\
             lxc.rootfs.path = dir:{}\n\
             lxc.net.0.type = none\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.init.cmd = /sbin/phoenix-init\n",
            rootfs.display()
        );
        for l in extra {
            config.push_str(l);
            config.push('\n');
        }
        TestCt::from_rootfs(&lxcpath, &name, &rootfs_cache(), &config)
    }

    /// Stub driver libraries with the real SONAMEs plus the stand-in nvidia-smi, where a host
    /// with the driver installed has them (`/usr/local/nvidia/{lib64,bin}`), for host-libs.
    pub fn install_userspace(&self, version: &str) {
        let lib = self.root().join("usr/local/nvidia/lib64");
        std::fs::create_dir_all(&lib).unwrap();
        stub_libs(version, &lib);
        let bin = self.root().join("usr/local/nvidia/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let smi = bin.join("nvidia-smi");
        std::fs::write(&smi, standin_smi(version)).unwrap();
        chmod(&smi, 0o755);
    }
}

/// `libcuda.so.<v>` (SONAME libcuda.so.1) and `libnvidia-ml.so.<v>` (SONAME libnvidia-ml.so.1)
/// built with gcc into `dir` from the stand-in driver (`standin-driver.c`: NVML and the CUDA
/// driver API over the stand-in nodes, the fixture's GPUs).
pub fn stub_libs(version: &str, dir: &Path) {
    let gpus: Vec<String> = GPUS.iter().map(|(m, u)| format!("{m}:{u}")).collect();
    for (name, soname) in [
        ("libcuda", "libcuda.so.1"),
        ("libnvidia-ml", "libnvidia-ml.so.1"),
    ] {
        run_ok(
            Command::new("gcc")
                .args(["-shared", "-fPIC", &format!("-Wl,-soname,{soname}")])
                .arg(format!("-DSTANDIN_VERSION=\"{version}\""))
                .arg(format!("-DSTANDIN_GPUS=\"{}\"", gpus.join(",")))
                .arg("-o")
                .arg(dir.join(format!("{name}.so.{version}")))
                .arg(format!("{SUPPORT}/standin-driver.c")),
        );
    }
}

pub fn standin_smi(version: &str) -> String {
    let gpus: String = GPUS.iter().map(|(m, u)| format!("{m} {u}\n")).collect();
    std::fs::read_to_string(format!("{SUPPORT}/standin-nvidia-smi.sh"))
        .unwrap()
        .replace("@VERSION@", version)
        .replace("@GPUS@\n", &gpus)
}

/// The stand-in runfile for `version`; `fail` makes it fail like a broken install.
pub fn standin_runfile(version: &str, fail: bool) -> Vec<u8> {
    let libs = tempfile::tempdir().unwrap();
    stub_libs(version, libs.path());
    let tar = run_bytes(
        Command::new("tar").arg("-C").arg(libs.path()).args([
            "-cf",
            "-",
            &format!("libcuda.so.{version}"),
            &format!("libnvidia-ml.so.{version}"),
        ]),
        b"",
    );
    let b64 = run_bytes(Command::new("base64").args(["-w", "76"]), &tar);
    std::fs::read_to_string(format!("{SUPPORT}/standin-runfile.sh"))
        .unwrap()
        .replace("@SMI@", standin_smi(version).trim_end())
        .replace("@LIBS@", String::from_utf8(b64).unwrap().trim_end())
        .replace("@VERSION@", version)
        .replace("@FAIL@", if fail { "1" } else { "0" })
        .into_bytes()
}

/// A file of a stand-in package: path in the package, bytes, mode.
type PkgFile = (&'static str, Vec<u8>, u32);

/// An HTTP/1.1 server on 127.0.0.1 serving `dir` (GET and HEAD), counting GETs per path.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    gets: Arc<Mutex<BTreeMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("phoenix-www")
            .tempdir()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let gets: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let root = dir.path().to_owned();
        let counts = gets.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let root = root.clone();
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut first = head.lines().next().unwrap_or("").split_whitespace();
                    let method = first.next().unwrap_or("").to_owned();
                    let path = first
                        .next()
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_owned();
                    let file = root.join(path.trim_start_matches('/'));
                    let body = if path.contains("..") {
                        None
                    } else {
                        std::fs::read(&file).ok().filter(|_| file.is_file())
                    };
                    if method == "GET" {
                        *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
                    }
                    let resp = match &body {
                        Some(b) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", b.len()),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    if method == "GET" {
                        if let Some(b) = body {
                            let _ = sock.write_all(&b).await;
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server {
            dir,
            port,
            gets,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    pub fn put(&self, path: &str, bytes: &[u8]) {
        let p = self.dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Publishes a stand-in runfile for `version` the way NVIDIA does (with `.sha256sum`),
    /// under `XFree86/Linux-x86_64/<version>/`. Returns its URL path.
    pub fn publish_runfile(&self, version: &str, fail: bool) -> String {
        let name = format!("NVIDIA-Linux-x86_64-{version}.run");
        let path = format!(
            "/XFree86/Linux-x86_64/{version}{}/{name}",
            if fail { "-broken" } else { "" }
        );
        let body = standin_runfile(version, fail);
        self.put(&path, &body);
        self.put(
            &format!("{path}.sha256sum"),
            format!("{}  {name}\n", sha256_hex(&body)).as_bytes(),
        );
        path
    }

    /// Builds the signed flat apt repository under `/cuda/` (see README.md). Returns its URL.
    pub fn publish_apt_repo(&self) -> String {
        let repo = self.dir.path().join("cuda");
        std::fs::create_dir_all(&repo).unwrap();
        let gnupg = tempfile::tempdir().unwrap();
        let gpg = |args: &[&str]| {
            let mut c = Command::new("gpg");
            c.env("GNUPGHOME", gnupg.path())
                .args([
                    "--batch",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args);
            c
        };
        chmod(gnupg.path(), 0o700);
        run_ok(&mut gpg(&[
            "--quick-gen-key",
            "phoenix-gpu test repository",
            "ed25519",
            "sign",
            "never",
        ]));
        let key = run_bytes(&mut gpg(&["--export"]), b"");
        let build = tempfile::tempdir().unwrap();
        let mut stanzas = String::new();
        let pkgs: Vec<(&str, &str, Vec<PkgFile>)> = vec![
            ("cuda-keyring", "1.1-1", vec![("usr/share/keyrings/cuda-archive-keyring.gpg", key.clone(), 0o644)]),
            (
                "cuda-toolkit-12-8",
                "12.8.93-1",
                vec![
                    ("usr/local/cuda-12.8/version.json", b"{\n   \"cuda\" : {\n      \"name\" : \"CUDA SDK\",\n      \"version\" : \"12.8.93\"\n   }\n}\n".to_vec(), 0o644),
                    ("usr/local/cuda-12.8/bin/nvcc", b"#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver (stand-in)'\necho 'Cuda compilation tools, release 12.8, V12.8.93'\n".to_vec(), 0o755),
                ],
            ),
            ("nvtop", "3.0.1-1", vec![("usr/bin/nvtop", b"#!/bin/sh\necho 'nvtop stand-in'\n".to_vec(), 0o755)]),
        ];
        for (name, version, files) in pkgs {
            let root = build.path().join(name);
            std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
            std::fs::write(
                root.join("DEBIAN/control"),
                format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: phoenix-gpu tests <tests@invalid>\nDescription: stand-in {name} for phoenix-gpu tests\n"),
            )
            .unwrap();
            if name == "cuda-toolkit-12-8" {
                std::fs::write(
                    root.join("DEBIAN/postinst"),
                    "#!/bin/sh\nln -sfn /usr/local/cuda-12.8 /usr/local/cuda\n",
                )
                .unwrap();
                chmod(&root.join("DEBIAN/postinst"), 0o755);
            }
            for (path, bytes, mode) in files {
                let p = root.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
                chmod(&p, mode);
            }
            let deb_name = if name == "cuda-keyring" {
                "cuda-keyring_1.1-1_all.deb".to_owned()
            } else {
                format!("{name}_{version}_all.deb")
            };
            run_ok(
                Command::new("dpkg-deb")
                    .args(["--root-owner-group", "-Zgzip", "--build"])
                    .arg(&root)
                    .arg(repo.join(&deb_name)),
            );
            let deb = std::fs::read(repo.join(&deb_name)).unwrap();
            let control = std::fs::read_to_string(root.join("DEBIAN/control")).unwrap();
            stanzas.push_str(&format!(
                "{}Filename: ./{deb_name}\nSize: {}\nSHA256: {}\n\n",
                control,
                deb.len(),
                sha256_hex(&deb)
            ));
        }
        std::fs::write(repo.join("Packages"), &stanzas).unwrap();
        let release = format!(
            "Origin: phoenix-gpu tests\nLabel: stand-in CUDA\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
            sha256_hex(stanzas.as_bytes()),
            stanzas.len()
        );
        std::fs::write(repo.join("Release"), &release).unwrap();
        let mut sign = gpg(&["--clearsign", "-o"]);
        sign.arg(repo.join("InRelease")).arg(repo.join("Release"));
        run_ok(&mut sign);
        self.url("/cuda/")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
