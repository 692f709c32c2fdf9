//! The parser of the probe's output: `key=value` lines into a [`Probe`].

use std::collections::BTreeSet;

use exec_backend::tail_text;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::version::DriverVersion;

/// What a node under `/dev` inside the container is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtNodeKind {
    /// A character device.
    Char,
    /// A directory.
    Dir,
    /// Anything else (a plain file left by `create=file` when the bind failed).
    Other,
}

/// An NVIDIA node found inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CtNode {
    /// `/dev/nvidia0`.
    pub path: String,
    /// What it is.
    pub kind: CtNodeKind,
    /// `(major, minor)` of a character device.
    pub rdev: Option<(u32, u32)>,
}

/// The output of `nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SmiQuery {
    /// Its exit status (`None` when the probe did not report one).
    pub rc: Option<i32>,
    /// Its lines, stdout and stderr together.
    pub lines: Vec<String>,
}

/// One GPU as nvidia-smi inside the container listed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmiGpu {
    /// nvidia-smi's index inside the container.
    pub index: String,
    /// `GPU-...`.
    pub uuid: String,
    /// The driver version it reports.
    pub driver_version: String,
}

impl SmiQuery {
    /// The GPUs, when nvidia-smi succeeded and every line parsed.
    pub fn gpus(&self) -> Option<Vec<SmiGpu>> {
        if self.rc != Some(0) {
            return None;
        }
        self.lines
            .iter()
            .map(|l| {
                let mut it = l.split(',').map(str::trim);
                let (index, uuid, driver_version) = (it.next()?, it.next()?, it.next()?);
                if it.next().is_some() || !uuid.starts_with("GPU-") {
                    return None;
                }
                Some(SmiGpu {
                    index: index.to_owned(),
                    uuid: uuid.to_owned(),
                    driver_version: driver_version.to_owned(),
                })
            })
            .collect()
    }

    /// The output on one line, for messages.
    pub fn one_line(&self) -> String {
        let rc = self
            .rc
            .map_or_else(|| "no exit status".to_owned(), |c| format!("exit code {c}"));
        if self.lines.is_empty() {
            format!("nvidia-smi printed nothing ({rc})")
        } else {
            format!("nvidia-smi ({rc}): {}", self.lines.join(" | "))
        }
    }
}

/// A result code with its name: `999 CUDA_ERROR_UNKNOWN`, `0 Success`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Code {
    /// The number (0 is success).
    pub code: i64,
    /// Its name or message as the library gives it.
    pub name: String,
}

impl Code {
    fn parse(value: &str) -> Option<Code> {
        let (code, name) = value.split_once(' ').unwrap_or((value, ""));
        Some(Code {
            code: code.parse().ok()?,
            name: name.trim().to_owned(),
        })
    }

    /// Whether it is success.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.name)
    }
}

/// How a driver library was found by gpu-check's `dlopen`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LibState {
    /// Not reported.
    #[default]
    Unknown,
    /// Loaded, with every function gpu-check calls.
    Ok,
    /// Not found (or not loadable: an empty placeholder is "file too short").
    Missing,
    /// Loaded, but without the functions gpu-check calls (not the driver's library).
    Incomplete,
}

impl LibState {
    fn parse(value: &str) -> LibState {
        match value {
            "ok" => LibState::Ok,
            "missing" => LibState::Missing,
            "incomplete" => LibState::Incomplete,
            _ => LibState::Unknown,
        }
    }
}

/// What NVML said through gpu-check (what `nvidia-smi --query-gpu` would).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Nvml {
    /// `libnvidia-ml.so.1`.
    pub lib: LibState,
    /// `nvmlInit_v2`'s result and message.
    pub init: Option<Code>,
    /// The driver version.
    pub driver: Option<String>,
    /// Each GPU by NVML index: (UUID, minor).
    pub gpus: std::collections::BTreeMap<u32, (String, Option<u32>)>,
}

/// One GPU as CUDA saw it through gpu-check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CudaGpu {
    /// `GPU-...`.
    pub uuid: Option<String>,
    /// `cuCtxCreate`'s result.
    pub ctx: Option<Code>,
    /// The 1 MiB alloc, memset and read-back.
    pub mem: Option<Code>,
    /// `cuDeviceGet`'s failure.
    pub error: Option<Code>,
}

/// What CUDA said through gpu-check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cuda {
    /// `libcuda.so.1`.
    pub lib: LibState,
    /// The loader's error when it is missing.
    pub lib_error: Option<String>,
    /// `cuInit`'s result.
    pub init: Option<Code>,
    /// `cuDeviceGetCount`'s failure.
    pub count_error: Option<Code>,
    /// Each device by CUDA ordinal.
    pub gpus: std::collections::BTreeMap<u32, CudaGpu>,
}

/// Whether gpu-check ran in the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuCheckRun {
    /// It is not there.
    #[default]
    Absent,
    /// It ran and answered.
    Ran,
    /// It is there but did not answer (no glibc in the container, a damaged file): its exit
    /// status and output.
    Failed {
        /// Its exit status.
        rc: Option<i32>,
        /// What it printed.
        output: String,
    },
}

/// Everything the container told the probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// `/etc/os-release` `ID` (`debian`, `ubuntu`, `alpine`).
    pub os_id: Option<String>,
    /// `VERSION_ID` (`12`, `24.04`).
    pub os_version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    pub os_codename: Option<String>,
    /// `uname -m`.
    pub arch: Option<String>,
    /// `apt-get` is present.
    pub apt_get: bool,
    /// `dpkg` is present.
    pub dpkg: bool,
    /// Free space on `/` in KiB.
    pub disk_free_kb: Option<u64>,
    /// Where `nvidia-smi` is.
    pub smi_path: Option<String>,
    /// The userspace version `nvidia-smi --version` printed.
    pub smi_version: Option<DriverVersion>,
    /// Versioned `libnvidia-ml.so.<v>` / `libcuda.so.<v>` files found (path, version).
    pub libs: Vec<(String, DriverVersion)>,
    /// What `ldconfig -p` resolves `libcuda.so.1` and `libnvidia-ml.so.1` to (soname, target).
    pub ldconfig: Vec<(String, String)>,
    /// CUDA version from `/usr/local/cuda/version.json`.
    pub cuda_json: Option<String>,
    /// CUDA release from `nvcc --version`.
    pub cuda_nvcc: Option<String>,
    /// Packages dpkg knows as installed (`ii`).
    pub packages: BTreeSet<String>,
    /// Asked-for tools found on `PATH`.
    pub commands: BTreeSet<String>,
    /// Programs NVIDIA's installer looks up that are not on `PATH` (`modprobe`: no kmod).
    pub installer_missing: BTreeSet<String>,
    /// NVIDIA nodes under `/dev`.
    pub nodes: Vec<CtNode>,
    /// The nvidia-smi query, when nvidia-smi is there.
    pub smi: Option<SmiQuery>,
    /// Empty regular files where a driver library is named: placeholders a bind mount left.
    pub placeholders: Vec<String>,
    /// Whether gpu-check ran.
    pub gpu_check: GpuCheckRun,
    /// Whether the exec put gpu-check in place (only asked in the install mode).
    pub gpu_check_installed: Option<bool>,
    /// gpu-check is in place but could not answer the probe alone (a damaged or zeroed file):
    /// the next verification exec puts it in place again. Set by the probe, not parsed.
    pub gpu_check_damaged: bool,
    /// The nodes gpu-check opened read-write and the errno name of each (`ok`, `EPERM`).
    pub opens: Vec<(String, String)>,
    /// NVML through gpu-check.
    pub nvml: Option<Nvml>,
    /// CUDA through gpu-check (verification only).
    pub cuda: Option<Cuda>,
}

impl Probe {
    /// Parses the probe's output. Unknown keys and malformed values are ignored (a missing
    /// answer is the same as "not found"); output without the `probe=1` marker is an error.
    pub fn parse(text: &str) -> Result<Probe> {
        let mut p = Probe::default();
        let mut marker = false;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let some = || (!value.is_empty()).then(|| value.to_owned());
            match key {
                "probe" => marker = true,
                "os_id" => p.os_id = some(),
                "os_version_id" => p.os_version_id = some(),
                "os_codename" => p.os_codename = some(),
                "arch" => p.arch = some(),
                "apt_get" => p.apt_get = value == "1",
                "dpkg" => p.dpkg = value == "1",
                "disk_free_kb" => p.disk_free_kb = value.parse().ok(),
                "cuda_json" => p.cuda_json = some(),
                "cuda_nvcc" => p.cuda_nvcc = some(),
                "cmd" => {
                    if !value.is_empty() {
                        p.commands.insert(value.to_owned());
                    }
                }
                "installer_missing" => {
                    if !value.is_empty() {
                        p.installer_missing.insert(value.to_owned());
                    }
                }
                _ => p.parse_more(key, value),
            }
        }
        if !marker {
            return Err(Error::Parse {
                what: "the container probe's output".into(),
                detail: format!(
                    "no probe=1 marker; got: {}",
                    tail_text(text.as_bytes(), 300)
                ),
            });
        }
        p.libs.sort();
        p.libs.dedup();
        // A loader cache entry that names a placeholder is not a library.
        let placeholders = std::mem::take(&mut p.placeholders);
        p.ldconfig.retain(|(_, t)| !placeholders.contains(t));
        p.placeholders = placeholders;
        if let GpuCheckRun::Failed { output, .. } = &mut p.gpu_check {
            *output = output.trim_end().to_owned();
        }
        Ok(p)
    }

    /// The keys shared with the verification script (`dev`, `smi*`), and the rest.
    fn parse_more(&mut self, key: &str, value: &str) {
        match key {
            "smi_path" if !value.is_empty() => self.smi_path = Some(value.to_owned()),
            "smi_version" => self.smi_version = value.parse().ok(),
            "lib" => {
                let name = value.rsplit('/').next().unwrap_or(value);
                let ver = name
                    .strip_prefix("libnvidia-ml.so.")
                    .or_else(|| name.strip_prefix("libcuda.so."));
                if let Some(v) = ver.and_then(|v| v.parse().ok()) {
                    self.libs.push((value.to_owned(), v));
                }
            }
            "ldconfig" => {
                if let Some((soname, target)) = value.split_once(' ') {
                    self.ldconfig
                        .push((soname.to_owned(), target.trim().to_owned()));
                }
            }
            "pkg" => {
                // `ii |name` from dpkg-query's ${db:Status-Abbrev}: want + status + error flag.
                let mut it = value.split_whitespace();
                if let (Some(st), Some(name)) = (it.next(), it.next()) {
                    if st.starts_with("ii") {
                        self.packages.insert(name.to_owned());
                    }
                }
            }
            "dev" => {
                if let Some(node) = parse_node(value) {
                    self.nodes.push(node);
                }
            }
            "smi" => self
                .smi
                .get_or_insert_with(SmiQuery::default)
                .lines
                .push(value.to_owned()),
            "smi_rc" => self.smi.get_or_insert_with(SmiQuery::default).rc = value.parse().ok(),
            "placeholder" => self.placeholders.push(value.to_owned()),
            // What the loader resolves (gpu-check's dlopen): the same answer as ldconfig's.
            "loaded" => {
                if let Some((soname, target)) = value.split_once(' ') {
                    self.ldconfig
                        .push((soname.to_owned(), target.trim().to_owned()));
                }
            }
            _ => self.parse_gpu_check(key, value),
        }
    }

    /// gpu-check's keys (`check_*`, `node`, `nvml_*`, `cuda_*`) and the install's.
    fn parse_gpu_check(&mut self, key: &str, value: &str) {
        match key {
            "check_version" => self.gpu_check = GpuCheckRun::Ran,
            "gpu_check_installed" => self.gpu_check_installed = Some(value == "1"),
            "gpu_check_rc" => {
                self.gpu_check = GpuCheckRun::Failed {
                    rc: value.parse().ok(),
                    output: String::new(),
                }
            }
            "gpu_check_error" => {
                if let GpuCheckRun::Failed { output, .. } = &mut self.gpu_check {
                    output.push_str(value);
                    output.push('\n');
                }
            }
            "node" => {
                if let Some((path, errno)) = value.split_once(' ') {
                    self.opens.push((path.to_owned(), errno.trim().to_owned()));
                }
            }
            _ if key.starts_with("nvml_") => {
                let n = self.nvml.get_or_insert_with(Nvml::default);
                match key {
                    "nvml_lib" => n.lib = LibState::parse(value),
                    "nvml_init" => n.init = Code::parse(value),
                    "nvml_driver" => n.driver = (!value.is_empty()).then(|| value.to_owned()),
                    _ => {
                        if let Some((i, field)) = indexed(key, "nvml_dev") {
                            let gpu = n.gpus.entry(i).or_insert_with(|| (String::new(), None));
                            match field {
                                "uuid" => gpu.0 = value.to_owned(),
                                "minor" => gpu.1 = value.parse().ok(),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ if key.starts_with("cuda_") => {
                let c = self.cuda.get_or_insert_with(Cuda::default);
                match key {
                    "cuda_lib" => c.lib = LibState::parse(value),
                    "cuda_lib_error" => c.lib_error = Some(value.to_owned()),
                    "cuda_init" => c.init = Code::parse(value),
                    "cuda_count_error" => c.count_error = Code::parse(value),
                    _ => {
                        if let Some((i, field)) = indexed(key, "cuda_dev") {
                            let gpu = c.gpus.entry(i).or_default();
                            match field {
                                "uuid" => gpu.uuid = Some(value.to_owned()),
                                "ctx" => gpu.ctx = Code::parse(value),
                                "mem" => gpu.mem = Code::parse(value),
                                "error" => gpu.error = Code::parse(value),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The userspace version in the container: what `ldconfig` resolves `libnvidia-ml.so.1`
    /// to, else `nvidia-smi --version`, else the newest versioned library file.
    pub fn userspace_version(&self) -> Option<DriverVersion> {
        self.ldconfig_version("libnvidia-ml.so.1")
            .or_else(|| self.smi_version.clone())
            .or_else(|| self.libs.iter().map(|(_, v)| v.clone()).max())
    }

    /// The version `soname` resolves to through ldconfig's cache, if it does.
    pub fn ldconfig_version(&self, soname: &str) -> Option<DriverVersion> {
        let prefix = soname.strip_suffix(".1")?;
        self.ldconfig
            .iter()
            .filter(|(s, _)| s == soname)
            .find_map(|(_, target)| {
                let name = target.rsplit('/').next()?;
                name.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()
            })
    }

    /// Whether the CUDA toolkit `major.minor` is installed (package, version.json or nvcc).
    pub fn cuda_present(&self, version: &str) -> bool {
        let pkg = format!("cuda-toolkit-{}", version.replace('.', "-"));
        let same = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| v == version || v.starts_with(&format!("{version}.")))
        };
        self.packages.contains(&pkg) || same(&self.cuda_json) || same(&self.cuda_nvcc)
    }

    /// Whether `tool` is installed (dpkg) or on `PATH`.
    pub fn tool_present(&self, tool: &str) -> bool {
        self.packages.contains(tool) || self.commands.contains(tool)
    }

    /// The node at `path`, if the container has it.
    pub fn node(&self, path: &str) -> Option<&CtNode> {
        self.nodes.iter().find(|n| n.path == path)
    }

    /// A short description of the container's system for messages: `debian 12 (x86_64)`.
    pub fn system(&self) -> String {
        format!(
            "{} {} ({})",
            self.os_id.as_deref().unwrap_or("unknown distribution"),
            self.os_version_id.as_deref().unwrap_or("?"),
            self.arch.as_deref().unwrap_or("?")
        )
    }
}

/// `nvml_dev3_uuid` with prefix `nvml_dev` → `(3, "uuid")`.
fn indexed<'k>(key: &'k str, prefix: &str) -> Option<(u32, &'k str)> {
    let rest = key.strip_prefix(prefix)?;
    let (i, field) = rest.split_once('_')?;
    Some((i.parse().ok()?, field))
}

fn parse_node(value: &str) -> Option<CtNode> {
    let mut it = value.split_whitespace();
    let path = it.next()?.to_owned();
    let (kind, rdev) = match it.next()? {
        "c" => {
            let rdev = it.next().and_then(|mm| {
                let (ma, mi) = mm.split_once(':')?;
                Some((
                    u32::from_str_radix(ma, 16).ok()?,
                    u32::from_str_radix(mi, 16).ok()?,
                ))
            });
            (CtNodeKind::Char, rdev)
        }
        "d" => (CtNodeKind::Dir, None),
        _ => (CtNodeKind::Other, None),
    };
    Some(CtNode { path, kind, rdev })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONVERGED: &str = "probe=1
os_id=debian
os_version_id=12
os_codename=bookworm
arch=x86_64
apt_get=1
dpkg=1
disk_free_kb=12345678
smi_path=/usr/bin/nvidia-smi
smi_version= 580.159.04
lib=/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04
lib=/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04
lib=/usr/lib/x86_64-linux-gnu/libcuda.so.1
ldconfig=libnvidia-ml.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04
ldconfig=libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04
cuda_json=12.8.1
pkg=ii cuda-toolkit-12-8
pkg=ii nvtop
pkg=un htop
cmd=nvtop
dev=/dev/nvidia1 c c3:1
dev=/dev/nvidiactl c c3:ff
dev=/dev/nvidia-uvm c ee:0
dev=/dev/nvidia-caps d
dev=/dev/nvidia0 f
smi=0, GPU-7fc3e24c-6572-362c-3b22-0d1167fae655, 580.159.04
smi_rc=0
";

    #[test]
    fn parses_a_converged_container() {
        let p = Probe::parse(CONVERGED).unwrap();
        assert_eq!(p.os_id.as_deref(), Some("debian"));
        assert_eq!(p.os_codename.as_deref(), Some("bookworm"));
        assert!(p.apt_get && p.dpkg);
        assert_eq!(p.disk_free_kb, Some(12_345_678));
        assert_eq!(p.userspace_version().unwrap().as_str(), "580.159.04");
        assert_eq!(p.libs.len(), 2, "{:?}", p.libs);
        assert!(p.cuda_present("12.8"));
        assert!(!p.cuda_present("12.4"));
        assert!(p.tool_present("nvtop"));
        assert!(!p.tool_present("htop"));
        assert_eq!(p.node("/dev/nvidia1").unwrap().rdev, Some((195, 1)));
        assert_eq!(p.node("/dev/nvidiactl").unwrap().rdev, Some((195, 255)));
        assert_eq!(p.node("/dev/nvidia-uvm").unwrap().rdev, Some((238, 0)));
        assert_eq!(p.node("/dev/nvidia-caps").unwrap().kind, CtNodeKind::Dir);
        assert_eq!(p.node("/dev/nvidia0").unwrap().kind, CtNodeKind::Other);
        let gpus = p.smi.as_ref().unwrap().gpus().unwrap();
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].uuid, "GPU-7fc3e24c-6572-362c-3b22-0d1167fae655");
    }

    #[test]
    fn parses_an_empty_container() {
        let p = Probe::parse("probe=1\nos_id=alpine\narch=x86_64\ndisk_free_kb=\n").unwrap();
        assert_eq!(p.userspace_version(), None);
        assert_eq!(p.disk_free_kb, None);
        assert!(p.smi.is_none());
        assert!(!p.apt_get);
        assert_eq!(p.system(), "alpine ? (x86_64)");
    }

    #[test]
    fn version_sources_in_order() {
        // The library ldconfig resolves wins over nvidia-smi --version and over stray files.
        let p = Probe::parse(
            "probe=1\nsmi_version=550.54.14\nlib=/usr/lib/libnvidia-ml.so.580.142\nlib=/usr/lib64/libnvidia-ml.so.550.54.14\n",
        )
        .unwrap();
        assert_eq!(p.userspace_version().unwrap().as_str(), "550.54.14");
        let p = Probe::parse(
            "probe=1\nlib=/usr/lib/libnvidia-ml.so.580.142\nlib=/usr/lib64/libcuda.so.550.54.14\n",
        )
        .unwrap();
        assert_eq!(p.userspace_version().unwrap().as_str(), "580.142");
        let p = Probe::parse(
            "probe=1\nsmi_version=550.54.14\nldconfig=libnvidia-ml.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.142\n",
        )
        .unwrap();
        assert_eq!(p.userspace_version().unwrap().as_str(), "580.142");
        assert_eq!(p.ldconfig_version("libcuda.so.1"), None);
    }

    #[test]
    fn nvml_failure_is_kept_for_the_message() {
        let p = Probe::parse("probe=1\nsmi=Failed to initialize NVML: Unknown Error\nsmi_rc=255\n")
            .unwrap();
        let smi = p.smi.unwrap();
        assert_eq!(smi.gpus(), None);
        assert!(smi
            .one_line()
            .contains("Failed to initialize NVML: Unknown Error"));
        assert!(smi.one_line().contains("exit code 255"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Probe::parse("").is_err());
        assert!(Probe::parse("sh: 1: syntax error").is_err());
        let p = Probe::parse(
            "probe=1\ndev=\ndev=/dev/nvidia0 c zz:1\nsmi_rc=x\nlib=/x/libcuda.so.\n=\n",
        )
        .unwrap();
        assert_eq!(p.nodes.len(), 1);
        assert_eq!(p.nodes[0].rdev, None);
        assert!(p.libs.is_empty());
        assert_eq!(p.smi.unwrap().rc, None);
    }

    #[test]
    fn parses_gpu_check() {
        let p = Probe::parse(
            "probe=1\ngpu_check_present=1\ncheck_version=1\narch=x86_64\ndisk_free_kb=42\n\
             dev=/dev/nvidia0 c c3:0\nnode=/dev/nvidia0 ok\nnode=/dev/nvidia-uvm EPERM\n\
             loaded=libnvidia-ml.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04\n\
             nvml_lib=ok\nnvml_init=0 Success\nnvml_driver=580.159.04\nnvml_count=1\n\
             nvml_dev0_uuid=GPU-aaa\nnvml_dev0_minor=0\n\
             cuda_lib=ok\ncuda_init=999 CUDA_ERROR_UNKNOWN\ncuda_dev0_uuid=GPU-aaa\ncuda_dev0_ctx=0 CUDA_SUCCESS\n\
             placeholder=/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14\ncheck_end=1\n",
        )
        .unwrap();
        assert_eq!(p.gpu_check, GpuCheckRun::Ran);
        assert_eq!(p.arch.as_deref(), Some("x86_64"));
        assert_eq!(p.opens[1], ("/dev/nvidia-uvm".into(), "EPERM".into()));
        assert_eq!(p.userspace_version().unwrap().as_str(), "580.159.04");
        let n = p.nvml.unwrap();
        assert_eq!((n.lib, n.init.unwrap().ok()), (LibState::Ok, true));
        assert_eq!(n.gpus[&0], ("GPU-aaa".to_owned(), Some(0)));
        let c = p.cuda.unwrap();
        assert_eq!(
            c.init.as_ref().unwrap().to_string(),
            "999 CUDA_ERROR_UNKNOWN"
        );
        assert!(c.gpus[&0].ctx.as_ref().unwrap().ok());
        assert_eq!(p.placeholders.len(), 1);
        let f = Probe::parse(
            "probe=1\ngpu_check_present=1\ngpu_check_rc=127\ngpu_check_error=sh: not found\n",
        )
        .unwrap();
        assert_eq!(
            f.gpu_check,
            GpuCheckRun::Failed {
                rc: Some(127),
                output: "sh: not found".into()
            }
        );
    }

    #[test]
    fn smi_lines_must_be_well_formed() {
        let q = SmiQuery {
            rc: Some(0),
            lines: vec!["0, GPU-a, 580.1".into(), "No devices were found".into()],
        };
        assert_eq!(q.gpus(), None);
        let q = SmiQuery {
            rc: Some(0),
            lines: vec![],
        };
        assert_eq!(q.gpus(), Some(vec![]));
    }

    #[test]
    fn the_installers_missing_programs() {
        let p = Probe::parse(
            "probe=1\ninstaller_missing=modprobe\ninstaller_missing=depmod\ninstaller_missing=\n",
        )
        .unwrap();
        let missing: Vec<&str> = p.installer_missing.iter().map(String::as_str).collect();
        assert_eq!(missing, ["depmod", "modprobe"]);
        assert!(Probe::parse("probe=1\n")
            .unwrap()
            .installer_missing
            .is_empty());
    }
}
