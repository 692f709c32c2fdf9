//! The one probe: a POSIX `sh` script run inside the container that prints `key=value` lines
//! answering every question the container steps ask, and the parser of its output.
//!
//! The script assumes nothing beyond a POSIX shell and what busybox or a Debian minbase have
//! (`sed`, `stat`, `df`, `uname`); every command is optional and a missing one leaves its keys
//! out. The tools to look for are passed as positional arguments, never pasted into the script.

use std::collections::BTreeSet;
use std::time::Duration;

use exec_backend::{tail_text, Cmd, ExitStatus};
use serde::Serialize;

use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::version::DriverVersion;

/// How long the probe may run (it runs `nvidia-smi`, which can be slow on a busy GPU).
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// The probe's own questions ([`SCRIPT`] is these followed by [`SMI_SCRIPT`]). Positional
/// arguments (`$@`) are the package names to look for.
///
/// Output keys (one per line, repeated keys allowed where noted):
/// `probe`, `os_id`, `os_version_id`, `os_codename`, `arch`, `apt_get`, `dpkg`,
/// `disk_free_kb`, `smi_path`, `smi_version`, `lib` (repeated), `ldconfig` (repeated, `soname
/// target`), `cuda_json`, `cuda_nvcc`, `pkg` (repeated, `status name`), `cmd` (repeated),
/// `dev` (repeated, `path type [major:minor in hex]`), `smi` (repeated, nvidia-smi query output
/// with stderr), `smi_rc`.
const PROBE_HEAD: &str = r#"
echo probe=1
if [ -r /etc/os-release ]; then
  while IFS='=' read -r k v; do
    v=${v#\"}; v=${v%\"}; v=${v#\'}; v=${v%\'}
    case "$k" in
      ID) echo "os_id=$v" ;;
      VERSION_ID) echo "os_version_id=$v" ;;
      VERSION_CODENAME) echo "os_codename=$v" ;;
    esac
  done < /etc/os-release
fi
echo "arch=$(uname -m 2>/dev/null)"
command -v apt-get >/dev/null 2>&1 && echo apt_get=1
command -v dpkg >/dev/null 2>&1 && echo dpkg=1
df -Pk / 2>/dev/null | { read -r _h; read -r _fs _size _used avail _rest; echo "disk_free_kb=$avail"; }
smi=$(command -v nvidia-smi 2>/dev/null)
if [ -n "$smi" ]; then
  nvidia-smi --version 2>/dev/null | while IFS= read -r l; do
    case "$l" in "NVIDIA-SMI version"*) echo "smi_version=${l#*:}" ;; esac
  done
fi
for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib /lib64 /lib /usr/local/nvidia/lib64 /usr/local/lib; do
  for f in "$d"/libnvidia-ml.so.* "$d"/libcuda.so.*; do
    [ -f "$f" ] && [ ! -L "$f" ] && echo "lib=$f"
  done
done
if command -v ldconfig >/dev/null 2>&1; then
  ldconfig -p 2>/dev/null | while read -r name _abi _arrow path; do
    case "$name" in
      libcuda.so.1|libnvidia-ml.so.1)
        t=$(readlink -f "$path" 2>/dev/null)
        echo "ldconfig=$name ${t:-$path}" ;;
    esac
  done
fi
if [ -r /usr/local/cuda/version.json ]; then
  v=$(sed -n '/"cuda"/,/}/s/.*"version"[^"]*"\([^"]*\)".*/\1/p' /usr/local/cuda/version.json 2>/dev/null | sed -n 1p)
  [ -n "$v" ] && echo "cuda_json=$v"
fi
if [ -x /usr/local/cuda/bin/nvcc ]; then
  v=$(/usr/local/cuda/bin/nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | sed -n 1p)
  [ -n "$v" ] && echo "cuda_nvcc=$v"
fi
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${db:Status-Abbrev}|${Package}\n' 'cuda-toolkit-*' "$@" 2>/dev/null | while IFS='|' read -r st name; do
    echo "pkg=$st $name"
  done
fi
for t in "$@"; do
  command -v "$t" >/dev/null 2>&1 && echo "cmd=$t"
done
"#;

/// The `nvidia-smi --query-gpu=index,uuid,driver_version` part of the probe (also the
/// verification's own exec).
pub(crate) const SMI_SCRIPT: &str = r#"
for f in /dev/nvidia* /dev/nvidia-caps/*; do
  if [ -c "$f" ]; then
    echo "dev=$f c $(stat -c '%t:%T' "$f" 2>/dev/null)"
  elif [ -d "$f" ]; then
    echo "dev=$f d"
  elif [ -e "$f" ]; then
    echo "dev=$f f"
  fi
done
smi=$(command -v nvidia-smi 2>/dev/null)
if [ -n "$smi" ]; then
  echo "smi_path=$smi"
  if command -v timeout >/dev/null 2>&1; then
    out=$(timeout 60 nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1)
  else
    out=$(nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1)
  fi
  rc=$?
  printf '%s\n' "$out" | while IFS= read -r l; do [ -n "$l" ] && echo "smi=$l"; done
  echo "smi_rc=$rc"
fi
exit 0
"#;

/// The whole probe: the questions above, then [`SMI_SCRIPT`], so that a converged run's
/// verification comes from the same exec.
pub(crate) static SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{PROBE_HEAD}{SMI_SCRIPT}"));

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
    /// NVIDIA nodes under `/dev`.
    pub nodes: Vec<CtNode>,
    /// The nvidia-smi query, when nvidia-smi is there.
    pub smi: Option<SmiQuery>,
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

/// Checks a package name before it is handed to apt or dpkg-query (Debian policy: lowercase
/// letters, digits, `+ - .`, starting with a letter or digit, at least two characters).
pub(crate) fn check_package_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput {
            what: "tool package name",
            value: name.to_owned(),
            hint: "expected a Debian package name such as nvtop (lowercase letters, digits, + - .)"
                .into(),
        })
    }
}

/// Runs `script` in the container with `args` as `$1...` and returns its stdout.
pub(crate) async fn run_script(
    ctx: &Ctx<'_>,
    what: &str,
    script: &str,
    args: &[String],
    timeout: Duration,
) -> Result<exec_backend::Output> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "phoenix-gpu".to_owned(),
    ];
    argv.extend(args.iter().cloned());
    let cmd = Cmd::new(argv).timeout(timeout);
    ctx.cts
        .exec(ctx.ct, &cmd)
        .await
        .map_err(|e| Error::exec(format!("{what} in container {}", ctx.ct), e))
}

/// Asks the container everything in one exec. `tools` are the packages to look for (checked
/// with [`check_package_name`] first).
pub(crate) async fn probe(ctx: &Ctx<'_>, tools: &[String]) -> Result<Probe> {
    for t in tools {
        check_package_name(t)?;
    }
    let out = run_script(ctx, "probing", &SCRIPT, tools, PROBE_TIMEOUT).await?;
    if out.status != ExitStatus::Code(0) {
        return Err(Error::Parse {
            what: format!("the probe in container {}", ctx.ct),
            detail: format!("it ended with {}: {}", out.status, out.stderr_tail(500)),
        });
    }
    Probe::parse(&out.stdout_str())
}

/// Runs the nodes and nvidia-smi part of the probe again (after something was installed).
pub(crate) async fn probe_smi(ctx: &Ctx<'_>) -> Result<Probe> {
    let out = run_script(ctx, "running nvidia-smi", SMI_SCRIPT, &[], PROBE_TIMEOUT).await?;
    Probe::parse(&format!("probe=1\n{}", out.stdout_str()))
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
    fn package_names_are_checked() {
        for ok in ["nvtop", "cuda-toolkit-12-8", "g++", "libnccl2"] {
            check_package_name(ok).unwrap();
        }
        for bad in ["", "a", "-o", "Nvtop", "nv top", "x;rm", "../x", "a$(b)"] {
            assert!(check_package_name(bad).is_err(), "{bad:?}");
        }
    }
}

/// The probe script itself, run by the shells it must work in (dash as Debian's `sh`, and
/// busybox), against this machine plus a stand-in `nvidia-smi` on `PATH`.
#[cfg(test)]
mod shell_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn run(shell: &[&str], script: &str, args: &[&str]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(
            &smi,
            "#!/bin/sh\ncase \"$1\" in --version) echo 'NVIDIA-SMI version  : 580.159.04';; *) echo '0, GPU-7fc3e24c, 580.159.04';; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", dir.path().display());
        let mut cmd = Command::new(shell[0]);
        cmd.args(&shell[1..])
            .arg("-c")
            .arg(script)
            .arg("phoenix-gpu")
            .args(args);
        let out = match cmd
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                let needs = format!("{} ({e})", shell[0]);
                test_support::cannot_run("probe_runs_in_dash_and_busybox", &needs);
                return None;
            }
        };
        assert!(
            out.status.success(),
            "{:?}: {}",
            shell,
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn probe_runs_in_dash_and_busybox() {
        let mut ran = 0;
        for shell in [&["/bin/sh"][..], &["busybox", "sh"][..], &["dash"][..]] {
            let Some(text) = run(shell, &SCRIPT, &["dpkg", "no-such-tool"]) else {
                continue;
            };
            ran += 1;
            let p = Probe::parse(&text).unwrap();
            assert!(p.os_id.is_some(), "{shell:?}: {text}");
            assert!(p.arch.is_some(), "{shell:?}: {text}");
            assert!(p.disk_free_kb.is_some_and(|k| k > 0), "{shell:?}: {text}");
            assert_eq!(
                p.smi_version.as_ref().map(|v| v.as_str()),
                Some("580.159.04"),
                "{shell:?}: {text}"
            );
            let gpus = p.smi.as_ref().and_then(|s| s.gpus()).unwrap();
            assert_eq!(gpus[0].uuid, "GPU-7fc3e24c");
            assert!(p.tool_present("dpkg"), "{shell:?}: {text}");
            assert!(!p.tool_present("no-such-tool"));
            let v = Probe::parse(&format!(
                "probe=1\n{}",
                run(shell, SMI_SCRIPT, &[]).unwrap()
            ))
            .unwrap();
            assert_eq!(v.smi.unwrap().rc, Some(0));
        }
        assert!(ran > 0, "no POSIX shell found");
    }
}
