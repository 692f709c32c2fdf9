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
        self.container_named(&unique_name(), extra)
    }

    /// [`GpuHost::container`] named `name`.
    pub fn container_named(&self, name: &str, extra: &[&str]) -> TestCt {
        let name = name.to_owned();
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

    /// [`GpuHost::container`] whose apt sources are `repos` (`deb [trusted=yes] URL /` each, in
    /// `/etc/apt/sources.list.d/standin.list`), as a real container's list its distribution's
    /// mirror.
    pub fn container_with_apt(&self, extra: &[&str], repos: &[&str]) -> TestCt {
        let ct = self.container(extra);
        set_apt_sources(&ct, repos);
        ct
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

/// Replaces the stand-in apt sources of `ct` with `repos` (stopped or running: it writes into
/// the rootfs).
pub fn set_apt_sources(ct: &TestCt, repos: &[&str]) {
    let lines: String = repos
        .iter()
        .map(|r| format!("deb [trusted=yes] {r} /\n"))
        .collect();
    let dir = ct.rootfs().join("etc/apt/sources.list.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("standin.list"), lines).unwrap();
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
type PkgFile = (String, Vec<u8>, u32);

/// An HTTP/1.1 server on 127.0.0.1 serving `dir` (GET and HEAD), counting requests per method
/// and path.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    gets: Arc<Mutex<BTreeMap<(String, String), usize>>>,
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
        let gets: Arc<Mutex<BTreeMap<(String, String), usize>>> = Arc::default();
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
                    let path = percent_decode(
                        first.next().unwrap_or("/").split('?').next().unwrap_or("/"),
                    );
                    let file = root.join(path.trim_start_matches('/'));
                    let body = if path.contains("..") {
                        None
                    } else {
                        std::fs::read(&file).ok().filter(|_| file.is_file())
                    };
                    *counts
                        .lock()
                        .unwrap()
                        .entry((method.clone(), path.clone()))
                        .or_default() += 1;
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

    /// How many GETs `path` had.
    pub fn gets(&self, path: &str) -> usize {
        self.requests("GET", path)
    }

    /// How many HEADs `path` had.
    pub fn heads(&self, path: &str) -> usize {
        self.requests("HEAD", path)
    }

    fn requests(&self, method: &str, path: &str) -> usize {
        let key = (method.to_owned(), path.to_owned());
        self.gets.lock().unwrap().get(&key).copied().unwrap_or(0)
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

    /// Publishes a stand-in runfile for `version` as NVIDIA publishes a datacenter release:
    /// under `tesla/<version>/` only, with a `.sha256sum` only when `with_sum`. Returns its URL
    /// path.
    pub fn publish_tesla_runfile(&self, version: &str, with_sum: bool) -> String {
        let name = format!("NVIDIA-Linux-x86_64-{version}.run");
        let path = format!("/tesla/{version}/{name}");
        let body = standin_runfile(version, false);
        self.put(&path, &body);
        if with_sum {
            self.put(
                &format!("{path}.sha256sum"),
                format!("{}  {name}\n", sha256_hex(&body)).as_bytes(),
            );
        }
        path
    }

    /// Builds the signed flat apt repository under `/cuda/` (see README.md). Returns its URL.
    pub fn publish_apt_repo(&self) -> String {
        let gpg = Gpg::new();
        let key = gpg.public_key();
        let nvcc = b"#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver (stand-in)'\necho 'Cuda compilation tools, release 12.8, V12.8.93'\n".to_vec();
        let pkgs = vec![
            Pkg::new("cuda-keyring", "1.1-1")
                .file("usr/share/keyrings/cuda-archive-keyring.gpg", key, 0o644),
            Pkg::new("cuda-toolkit-12-8", "12.8.93-1")
                .file("usr/local/cuda-12.8/version.json", b"{\n   \"cuda\" : {\n      \"name\" : \"CUDA SDK\",\n      \"version\" : \"12.8.93\"\n   }\n}\n".to_vec(), 0o644)
                .file("usr/local/cuda-12.8/bin/nvcc", nvcc, 0o755)
                .recommends("cuda-recommended-standin")
                .postinst("ln -sfn /usr/local/cuda-12.8 /usr/local/cuda"),
            // What the real toolkit recommends (Java, X libraries) stands as one package that
            // an install with --no-install-recommends leaves out.
            Pkg::new("cuda-recommended-standin", "1.0-1")
                .file("usr/share/doc/cuda-recommended-standin/README", b"stand-in\n".to_vec(), 0o644),
            Pkg::new("nvtop", "3.0.1-1")
                .file("usr/bin/nvtop", b"#!/bin/sh\necho 'nvtop stand-in'\n".to_vec(), 0o755),
        ];
        self.build_repo("cuda", pkgs, Some(&gpg))
    }

    /// The stand-in of the distribution's own repository, `deb [trusted=yes] URL /` in a
    /// container's sources: `kmod` (stand-in `modprobe`, `rmmod`, `lsmod`, `depmod` in
    /// `/usr/sbin`, as the real package puts them on a merged-/usr Debian). Returns its URL.
    pub fn publish_debian_repo(&self) -> String {
        let tool = |t: &str| format!("#!/bin/sh\n# stand-in {t} (kmod)\nexit 0\n").into_bytes();
        let mut kmod = Pkg::new("kmod", "30+20221128-1");
        for t in ["modprobe", "rmmod", "lsmod", "depmod"] {
            kmod = kmod.file(&format!("usr/sbin/{t}"), tool(t), 0o755);
        }
        self.build_repo("debian", vec![kmod], None)
    }

    /// The stand-in of Ubuntu 20.04's universe for `nvtop`: its nvtop depends on the driver's
    /// `libnvidia-compute-*` package (here `libnvidia-compute-580`, which installs a
    /// `libnvidia-ml.so.1` of its own). Returns its URL.
    pub fn publish_focal_repo(&self) -> String {
        let pkgs = vec![
            Pkg::new("nvtop", "1.0.0-1ubuntu2")
                .file(
                    "usr/bin/nvtop",
                    b"#!/bin/sh\necho 'nvtop stand-in (focal)'\n".to_vec(),
                    0o755,
                )
                .depends("libnvidia-compute-580"),
            Pkg::new("libnvidia-compute-580", "580.95.05-0ubuntu0.20.04.1").file(
                "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                b"not a library\n".to_vec(),
                0o644,
            ),
        ];
        self.build_repo("focal", pkgs, None)
    }

    /// A flat repository of `pkgs` under `/NAME/` (`Packages`, `Release`, and with `gpg` an
    /// `InRelease` it signs). Returns its URL.
    fn build_repo(&self, name: &str, pkgs: Vec<Pkg>, gpg: Option<&Gpg>) -> String {
        let repo = self.dir.path().join(name);
        std::fs::create_dir_all(&repo).unwrap();
        let build = tempfile::tempdir().unwrap();
        let mut stanzas = String::new();
        for pkg in pkgs {
            let root = build.path().join(pkg.name);
            std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
            let mut control = format!(
                "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: phoenix-gpu tests <tests@invalid>\n",
                pkg.name, pkg.version
            );
            for (field, value) in [("Depends", pkg.depends), ("Recommends", pkg.recommends)] {
                if let Some(v) = value {
                    control.push_str(&format!("{field}: {v}\n"));
                }
            }
            control.push_str(&format!(
                "Description: stand-in {} for phoenix-gpu tests\n",
                pkg.name
            ));
            std::fs::write(root.join("DEBIAN/control"), &control).unwrap();
            if let Some(script) = pkg.postinst {
                std::fs::write(
                    root.join("DEBIAN/postinst"),
                    format!("#!/bin/sh\n{script}\n"),
                )
                .unwrap();
                chmod(&root.join("DEBIAN/postinst"), 0o755);
            }
            for (path, bytes, mode) in pkg.files {
                let p = root.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
                chmod(&p, mode);
            }
            let deb_name = if pkg.name == "cuda-keyring" {
                "cuda-keyring_1.1-1_all.deb".to_owned()
            } else {
                format!("{}_{}_all.deb", pkg.name, pkg.version)
            };
            run_ok(
                Command::new("dpkg-deb")
                    .args(["--root-owner-group", "-Zgzip", "--build"])
                    .arg(&root)
                    .arg(repo.join(&deb_name)),
            );
            let deb = std::fs::read(repo.join(&deb_name)).unwrap();
            stanzas.push_str(&format!(
                "{control}Filename: ./{deb_name}\nSize: {}\nSHA256: {}\n\n",
                deb.len(),
                sha256_hex(&deb)
            ));
        }
        std::fs::write(repo.join("Packages"), &stanzas).unwrap();
        let release = format!(
            "Origin: phoenix-gpu tests\nLabel: stand-in {name}\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
            sha256_hex(stanzas.as_bytes()),
            stanzas.len()
        );
        std::fs::write(repo.join("Release"), &release).unwrap();
        if let Some(gpg) = gpg {
            gpg.clearsign(&repo.join("Release"), &repo.join("InRelease"));
        }
        self.url(&format!("/{name}/"))
    }
}

/// A stand-in Debian package: name, version, relations, files (path in the package, bytes,
/// mode) and a postinst line.
struct Pkg {
    name: &'static str,
    version: &'static str,
    depends: Option<&'static str>,
    recommends: Option<&'static str>,
    files: Vec<PkgFile>,
    postinst: Option<&'static str>,
}

impl Pkg {
    fn new(name: &'static str, version: &'static str) -> Pkg {
        Pkg {
            name,
            version,
            depends: None,
            recommends: None,
            files: Vec::new(),
            postinst: None,
        }
    }

    fn file(mut self, path: &str, bytes: Vec<u8>, mode: u32) -> Pkg {
        self.files.push((path.to_owned(), bytes, mode));
        self
    }

    fn depends(mut self, d: &'static str) -> Pkg {
        self.depends = Some(d);
        self
    }

    fn recommends(mut self, r: &'static str) -> Pkg {
        self.recommends = Some(r);
        self
    }

    fn postinst(mut self, script: &'static str) -> Pkg {
        self.postinst = Some(script);
        self
    }
}

/// A throw-away gpg home with one signing key.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        chmod(home.path(), 0o700);
        let g = Gpg { home };
        run_ok(&mut g.cmd(&[
            "--quick-gen-key",
            "phoenix-gpu test repository",
            "ed25519",
            "sign",
            "never",
        ]));
        g
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path())
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
    }

    fn public_key(&self) -> Vec<u8> {
        run_bytes(&mut self.cmd(&["--export"]), b"")
    }

    fn clearsign(&self, input: &Path, output: &Path) {
        let mut c = self.cmd(&["--clearsign", "-o"]);
        c.arg(output).arg(input);
        run_ok(&mut c);
    }
}

/// `%2b` -> `+` (apt asks for `kmod_30%2b20221128-1_all.deb`).
fn percent_decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
