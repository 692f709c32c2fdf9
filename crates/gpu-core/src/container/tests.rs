//! The container steps against a fake host (a directory with the file utilities, a stand-in
//! web for curl) and a fake container (state, installed userspace, packages), through the
//! counting decorators.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exec_backend::{Cmd, CtState, ExecError, ExitStatus, Output};
use test_support::{sha256_hex, CtModel, CtScript, FsHost, HostTree, ScriptedCt, Web};

use super::probe::{CLEANUP_SCRIPT, SCRIPT, VERIFY_SCRIPT};
use crate::config_step::ConfigOutcome;
use crate::counting::{CountingExec, CountingHost, Tally};
use crate::error::{chain, Error, ErrorKind, InstallCause, RestartCause};
use crate::inventory::{CgroupLayout, Gpu, Inventory, Majors};
use crate::report::{Event, EventSink, Report, StepName, StepStatus};
use crate::request::{Request, Strategy};
use crate::select::GpuSelection;
use crate::settings::Settings;
use crate::step::{Ctx, Run};
use crate::target::Target;
use crate::values::CtId;

const VER: &str = "580.159.04";
const RUNFILE_URL: &str = "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.159.04/NVIDIA-Linux-x86_64-580.159.04.run";
const TESLA_URL: &str =
    "https://us.download.nvidia.com/tesla/580.159.04/NVIDIA-Linux-x86_64-580.159.04.run";
const RUNFILE: &[u8] = b"#!/bin/sh\necho stand-in runfile\n";
const CACHED: &str = "/var/cache/phoenix-gpu/NVIDIA-Linux-x86_64-580.159.04.run";

fn text(s: &std::ffi::OsString) -> String {
    s.to_string_lossy().into_owned()
}

fn out(code: i32, stdout: impl Into<Vec<u8>>, stderr: &str) -> Output {
    Output {
        status: ExitStatus::Code(code),
        stdout: stdout.into(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

/// Serves `body` at `url`, and with `with_sum` its checksum file the way NVIDIA publishes one
/// (`<url>.sha256sum`: `<hex>  <name>`).
fn serve(web: &Web, url: &str, body: &[u8], with_sum: bool) {
    web.serve(url, body);
    if with_sum {
        let name = url.rsplit('/').next().unwrap();
        web.serve(
            &format!("{url}.sha256sum"),
            format!("{}  {name}\n", sha256_hex(body)),
        );
    }
}

/// A container with state: installed userspace, packages, nodes (the run state, the pushed
/// files and a hanging start are [`CtModel`]'s).
struct CtInner {
    os_id: &'static str,
    userspace: Option<String>,
    packages: BTreeSet<String>,
    /// Minors whose /dev/nvidiaN shows up once the container (re)starts with the new config.
    minors_after_start: Vec<u32>,
    minors: Vec<u32>,
    installer_fails: bool,
    /// No kmod (debootstrap minbase): the installer's module utilities are missing until the
    /// `kmod` package is installed.
    no_kmod: bool,
    /// What apt would install with each package besides it (`nvtop` -> `libnvidia-compute-470`).
    deps: std::collections::BTreeMap<String, Vec<String>>,
    /// Packages apt cannot find.
    unknown: BTreeSet<String>,
    /// The CUDA toolkits the repository has (`12.8`).
    cuda_versions: Vec<&'static str>,
    /// Pushes arrive cut short (a `pct push` whose copy failed).
    short_pushes: bool,
    /// Every apt-get command run, as `simulate P...` / `install P...`.
    apt_runs: Vec<String>,
    /// Files written by `sh -c 'cat > FILE'`.
    written: std::collections::BTreeMap<String, String>,
    /// gpu-check is in place.
    gpu_check: bool,
    /// gpu-check is in place but dies when run (a damaged file).
    gpu_check_broken: bool,
    /// Empty files left by host-libs mounts.
    placeholders: Vec<String>,
}

type FakeCt = ScriptedCt<CtInner>;

fn fake_ct(state: CtState) -> FakeCt {
    ScriptedCt::new(
        state,
        CtInner {
            os_id: "debian",
            userspace: None,
            packages: BTreeSet::new(),
            minors_after_start: vec![1],
            minors: vec![],
            installer_fails: false,
            no_kmod: false,
            deps: Default::default(),
            unknown: BTreeSet::new(),
            cuda_versions: vec!["12.8"],
            short_pushes: false,
            apt_runs: Vec::new(),
            written: Default::default(),
            gpu_check: false,
            gpu_check_broken: false,
            placeholders: vec![],
        },
    )
}

fn converged_ct() -> FakeCt {
    let ct = fake_ct(CtState::Running);
    ct.with(|s| {
        s.userspace = Some(VER.into());
        s.minors = vec![1];
        s.packages.insert("cuda-toolkit-12-8".into());
        s.packages.insert("nvtop".into());
        s.gpu_check = true;
    });
    ct
}

impl CtInner {
    /// The GPU part (gpu.sh after head.sh): gpu-check's answer where it is in place, else the
    /// nodes; nvidia-smi where NVML did not answer, or always in verification.
    fn gpu_lines(&self, gc_args: &str, mode: &str) -> String {
        let mut s = String::new();
        let nvml_ok = self.gpu_check && self.userspace.is_some();
        if self.gpu_check {
            s.push_str("gpu_check_present=1\ncheck_version=1\narch=x86_64\ndisk_free_kb=9999999\n");
            for m in &self.minors {
                s.push_str(&format!("dev=/dev/nvidia{m} c c3:{m:x}\n"));
            }
            let words: Vec<&str> = gc_args.split(' ').collect();
            if let Some(i) = words.iter().position(|w| *w == "--open") {
                for n in words[i + 1].split(',') {
                    s.push_str(&format!("node={n} ok\n"));
                }
            }
            if let Some(v) = &self.userspace {
                s.push_str(&format!(
                    "loaded=libnvidia-ml.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{v}\n"
                ));
                if gc_args.contains("--nvml") {
                    s.push_str(&format!(
                        "nvml_lib=ok\nnvml_init=0 Success\nnvml_driver={v}\n"
                    ));
                    for (i, m) in self.minors.iter().enumerate() {
                        s.push_str(&format!(
                            "nvml_dev{i}_uuid={}\nnvml_dev{i}_minor={m}\n",
                            uuid(*m)
                        ));
                    }
                }
                if gc_args.contains("--ctx") {
                    s.push_str("cuda_lib=ok\ncuda_init=0 CUDA_SUCCESS\n");
                    for (i, m) in self.minors.iter().enumerate() {
                        s.push_str(&format!(
                            "cuda_dev{i}_uuid={}\ncuda_dev{i}_ctx=0 CUDA_SUCCESS\ncuda_dev{i}_mem=0 CUDA_SUCCESS\n",
                            uuid(*m)
                        ));
                    }
                }
            } else if gc_args.contains("--nvml") {
                s.push_str("nvml_lib=missing\n");
                if gc_args.contains("--ctx") {
                    s.push_str("cuda_lib=missing\ncuda_lib_error=libcuda.so.1: cannot open shared object file\n");
                }
            }
            s.push_str("check_end=1\n");
        } else {
            for m in &self.minors {
                s.push_str(&format!("dev=/dev/nvidia{m} c c3:{m:x}\n"));
            }
        }
        if let Some(v) = &self.userspace {
            s.push_str("smi_path=/usr/bin/nvidia-smi\n");
            if !(mode == "probe" || mode == "probe-sh") || !nvml_ok {
                for (i, m) in self.minors.iter().enumerate() {
                    s.push_str(&format!("smi={i}, {}, {v}\n", uuid(*m)));
                }
                s.push_str("smi_rc=0\n");
            }
        }
        s
    }

    fn probe(&self, gc_args: &str, tools: &[String]) -> String {
        let mut s = format!("probe=1\nos_id={}\nos_version_id=12\n", self.os_id);
        if !self.gpu_check {
            s.push_str("arch=x86_64\ndisk_free_kb=9999999\n");
        }
        if self.os_id == "debian" {
            s.push_str("apt_get=1\ndpkg=1\n");
        }
        if self.no_kmod && !self.packages.contains("kmod") {
            for t in ["modprobe", "rmmod", "lsmod", "depmod"] {
                s.push_str(&format!("installer_missing={t}\n"));
            }
        }
        if let Some(v) = &self.userspace {
            s.push_str(&format!(
                "lib=/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{v}\n"
            ));
            if !self.gpu_check {
                s.push_str(&format!(
                    "smi_version={v}\nldconfig=libnvidia-ml.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{v}\n"
                ));
            }
        }
        for p in &self.placeholders {
            s.push_str(&format!("placeholder={p}\n"));
        }
        for p in &self.packages {
            if p.starts_with("cuda-toolkit-") || tools.contains(p) {
                s.push_str(&format!("pkg=ii  {p}\n"));
            }
        }
        s + &self.gpu_lines(gc_args, "probe")
    }
}

fn uuid(minor: u32) -> String {
    format!("GPU-{minor:08}")
}

impl CtScript for CtInner {
    fn exec(s: &mut CtModel<CtInner>, cmd: &Cmd) -> Result<Output, ExecError> {
        let argv: Vec<String> = cmd.argv.iter().map(text).collect();
        if s.state != CtState::Running {
            // As lxc-attach into a stopped container.
            return Err(ExecError::Failed {
                target: "scripted container".into(),
                argv,
                status: ExitStatus::Code(1),
                stderr_tail: "lxc-attach: 101: Failed to get init pid".into(),
            });
        }
        if argv[0] == "tail" {
            return Ok(out(0, "ERROR: Unable to load the kernel module 'nvidia.ko'\nERROR: Installation has failed.\n", ""));
        }
        assert_eq!(&argv[..2], ["sh", "-c"], "{argv:?}");
        let script = argv[2].as_str();
        let args = argv.get(4..).unwrap_or_default();
        if script == SCRIPT {
            if s.gpu_check_broken {
                // head.sh execs it (mode probe), it dies after its first lines; as probe-sh the
                // shell runs it, reports it, and answers.
                if args[2] == "probe" {
                    return Ok(out(
                        139,
                        "probe=1\nprobe_direct=1\ngpu_check_present=1\n",
                        "",
                    ));
                }
                assert_eq!(args[2], "probe-sh");
                s.gpu_check = false;
                let text = s.probe(&args[1], &args[3..]);
                s.gpu_check = true;
                return Ok(out(0, format!("{text}gpu_check_rc=139\n"), ""));
            }
            assert_eq!(
                args[2], "probe",
                "a working gpu-check answers the first probe"
            );
            return Ok(out(0, s.probe(&args[1], &args[3..]), ""));
        }
        if script == VERIFY_SCRIPT {
            let mut text = String::from("probe=1\n");
            // As head.sh: the bytes on stdin go in place unless the same are there.
            if args[2] == "install" && (!s.gpu_check || s.gpu_check_broken) {
                assert!(args[0].starts_with("/usr/local/lib/phoenix-gpu/gpu-check-"));
                assert_eq!(cmd.stdin.as_deref(), Some(super::gpucheck::BYTES));
                s.gpu_check = true;
                s.gpu_check_broken = false;
                text.push_str("gpu_check_installed=1\n");
            }
            return Ok(out(0, text + &s.gpu_lines(&args[1], &args[2]), ""));
        }
        if script == CLEANUP_SCRIPT {
            let mut text = String::new();
            for p in std::mem::take(&mut s.placeholders) {
                text.push_str(&format!("removed={p}\n"));
            }
            if args[1] == "all" && s.gpu_check {
                s.gpu_check = false;
                text.push_str("removed=/usr/local/lib/phoenix-gpu/gpu-check-x\n");
            }
            return Ok(out(0, text, ""));
        }
        if s.short_pushes && script.starts_with(super::pushed::CHECK) {
            s.files.remove(&args[0]);
            return Ok(out(
                97,
                "",
                &format!("{}has 10 of {} bytes\n", super::pushed::MARKER, args[1]),
            ));
        }
        if args.iter().any(|a| a == "--no-kernel-module") {
            let file = args[0].clone();
            assert!(s.files.remove(&file), "installer {file} was not pushed");
            if s.no_kmod && !s.packages.contains("kmod") {
                return Ok(out(
                    1,
                    "",
                    "ERROR: Unable to find the module utility `modprobe`",
                ));
            }
            if s.installer_fails {
                return Ok(out(1, "", "ERROR: An error occurred"));
            }
            let v = file
                .trim_start_matches("/root/NVIDIA-Linux-x86_64-")
                .trim_end_matches(".run");
            s.userspace = Some(v.to_owned());
            return Ok(out(0, "", ""));
        }
        if script.contains("dpkg -i") {
            assert!(s.files.remove(&args[0]), "keyring not pushed");
            // args: file size sum line package
            let pkg = &args[4];
            let v = pkg.trim_start_matches("cuda-toolkit-").replace('-', ".");
            let mut o = String::new();
            if s.cuda_versions.contains(&v.as_str()) {
                o.push_str(&format!("candidate={v}.93-1\n"));
            } else {
                o.push_str("candidate=\n");
            }
            for v in &s.cuda_versions {
                o.push_str(&format!("available={v}\n"));
            }
            return Ok(out(0, o, ""));
        }
        if script.contains("apt-get -s install") {
            let pkgs = &args[1..];
            s.apt_runs.push(format!("simulate {}", pkgs.join(" ")));
            if let Some(p) = pkgs.iter().find(|p| s.unknown.contains(*p)) {
                return Ok(out(100, "", &format!("E: Unable to locate package {p}\n")));
            }
            let mut o = String::from("NOTE: This is only a simulation!\n");
            for p in pkgs {
                for d in s.deps.get(p).cloned().unwrap_or_default() {
                    o.push_str(&format!("Inst {d} (1.0-1 Stand-in:1/stable [amd64])\n"));
                }
                o.push_str(&format!("Inst {p} (1.0-1 Stand-in:1/stable [amd64])\n"));
            }
            return Ok(out(0, o, ""));
        }
        if script.contains("apt-get install") {
            s.apt_runs.push(format!("install {}", args.join(" ")));
            for t in args {
                s.packages.insert(t.clone());
            }
            return Ok(out(0, "", ""));
        }
        if let Some(file) = script.strip_prefix("cat > ") {
            let text = String::from_utf8(cmd.stdin.clone().unwrap_or_default()).unwrap();
            s.written.insert(file.to_owned(), text);
            return Ok(out(0, "", ""));
        }
        panic!("unexpected container exec {argv:?}")
    }

    fn started(s: &mut CtModel<CtInner>) {
        s.minors = s.minors_after_start.clone();
    }
}

fn inv() -> Inventory {
    let gpu = |index: u32, minor: u32| Gpu {
        index,
        minor,
        pci_bus_id: format!("0000:00:0{}.0", 6 + index),
        uuid: uuid(minor),
        model: "NVIDIA H200".into(),
    };
    Inventory {
        driver_version: VER.parse().unwrap(),
        gpus: vec![gpu(0, 0), gpu(1, 1)],
        majors: Majors {
            nvidia: 195,
            nvidia_uvm: Some(238),
            nvidia_caps: None,
            nvidia_modeset: None,
        },
        nodes: vec![],
        cgroup: CgroupLayout::V1Devices,
        pve_version: None,
    }
}

fn request() -> Request {
    let mut r = Request::new("101".parse::<CtId>().unwrap(), GpuSelection::All);
    r.cuda = Some("12.8".parse().unwrap());
    r.tools = vec!["nvtop".parse().unwrap()];
    r
}

struct World {
    /// An empty host (its files are the ones the steps write) named `fakehost`, whose curl
    /// reaches `web` and whose `ldconfig -p` lists no library.
    host: Arc<FsHost>,
    web: Arc<Web>,
    settings: Settings,
    target: Target,
    events: Arc<Mutex<Vec<Event>>>,
    _tree: HostTree,
}

impl World {
    fn new() -> World {
        let w = World::bare();
        serve(&w.web, RUNFILE_URL, RUNFILE, true);
        w
    }

    /// A world whose web has the CUDA keyring but no runfile.
    fn bare() -> World {
        let web = Arc::new(Web::default());
        serve(
            &web,
            "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb",
            b"!<arch>\nkeyring",
            false,
        );
        let tree = HostTree::empty();
        let host = FsHost::new(tree.root())
            .named("fakehost")
            .with_web(web.clone());
        host.answer(&["ldconfig", "-p"], out(0, "0 libs found in cache\n", ""));
        World {
            host: Arc::new(host),
            web,
            _tree: tree,
            settings: Settings {
                cache_dir: PathBuf::from("/var/cache/phoenix-gpu"),
                ..Settings::default()
            },
            target: Target::Lxc {
                lxcpath: PathBuf::from("/var/lib/lxc"),
            },
            events: Arc::default(),
        }
    }

    /// Runs `converge` for GPU minor 1 the way `apply` does after the config step.
    async fn converge(
        &self,
        ct: Arc<FakeCt>,
        req: &Request,
        changed: bool,
    ) -> (Result<(), Error>, Report) {
        let gpus = vec![inv().gpus[1].clone()];
        self.converge_gpus(ct, req, changed, gpus).await
    }

    /// Runs `converge` for `gpus` the way `apply` does after the config step.
    async fn converge_gpus(
        &self,
        ct: Arc<FakeCt>,
        req: &Request,
        changed: bool,
        gpus: Vec<Gpu>,
    ) -> (Result<(), Error>, Report) {
        let tally = Arc::new(Tally::default());
        let host = CountingHost::new(self.host.clone(), tally.clone());
        let cts = CountingExec::new(ct, tally.clone());
        let ev = self.events.clone();
        let sink = EventSink::new(move |e| ev.lock().unwrap().push(e));
        let ctx = Ctx {
            host: &host,
            cts: &cts,
            target: &self.target,
            settings: &self.settings,
            events: &sink,
            ct: req.ct.as_ct_ref(),
            facts: &crate::facts::HostFacts::fresh(),
        };
        let inv = inv();
        let cfg = ConfigOutcome {
            changed,
            written: changed && !req.dry_run,
            ..ConfigOutcome::default()
        };
        let mut run = Run::new(req.ct.as_ct_ref(), &sink);
        // A changed config is restarted (the live decision is tested in live/).
        let decision = if changed {
            super::live::Decision::Restart {
                reason: crate::report::RestartReason::Asked,
                detail: "a restart was asked for".into(),
            }
        } else {
            super::live::Decision::Nothing
        };
        let decision = (decision, None);
        let r = super::converge(&ctx, req, &inv, &gpus, &cfg, decision, &mut run).await;
        let mut report = run.report;
        report.counters = tally.counters();
        (r, report)
    }
}

impl World {
    /// The files in the cache directory, but the download locks (`.NAME.lock`, which stay).
    fn cached_files(&self) -> Vec<String> {
        self.host
            .paths()
            .iter()
            .filter(|p| p.starts_with("/var/cache"))
            .map(|p| p.display().to_string())
            .filter(|p| !p.ends_with(".lock"))
            .collect()
    }
}

fn status(r: &Report, s: StepName) -> StepStatus {
    r.step(s)
        .unwrap_or_else(|| panic!("no {s:?} step in {r:?}"))
        .status
}

#[tokio::test]
async fn a_converged_container_costs_one_probe() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 1, "{report:#?}");
    assert_eq!(report.counters.restarts, 0);
    assert_eq!(report.counters.host_commands, 0);
    assert!(!report.changed);
    for s in [
        StepName::Restart,
        StepName::Userspace,
        StepName::Cuda,
        StepName::Tools,
        StepName::Verify,
    ] {
        assert_eq!(status(&report, s), StepStatus::Ok, "{s:?}: {report:#?}");
    }
}

/// gpu-check in place but dying when exec'd alone: the probe is asked again through the
/// shell, which answers without it, and the verification puts it in place again (three
/// execs, no restart); the next run is the one exec again.
#[tokio::test]
async fn a_damaged_gpu_check_is_probed_through_the_shell_and_put_in_place_again() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.gpu_check_broken = true);
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 3, "{report:#?}");
    assert_eq!(report.counters.restarts, 0);
    assert_eq!(status(&report, StepName::Verify), StepStatus::Changed);
    let verify = report.step(StepName::Verify).unwrap();
    assert!(
        verify.detail.contains("gpu-check put in place"),
        "{report:#?}"
    );
    assert!(!ct.with(|s| s.gpu_check_broken));
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 1, "{report:#?}");
    assert!(!report.changed, "{report:#?}");
}

#[tokio::test]
async fn a_first_apply_restarts_installs_and_verifies() {
    let w = World::new();
    let ct = Arc::new(fake_ct(CtState::Running));
    let (r, report) = w.converge(ct.clone(), &request(), true).await;
    r.unwrap();
    assert!(report.changed);
    assert_eq!(report.counters.restarts, 1);
    for s in [
        StepName::Restart,
        StepName::Userspace,
        StepName::Cuda,
        StepName::Tools,
    ] {
        assert_eq!(
            status(&report, s),
            StepStatus::Changed,
            "{s:?}: {report:#?}"
        );
    }
    // The verification exec put gpu-check in place.
    assert_eq!(status(&report, StepName::Verify), StepStatus::Changed);
    ct.with(|s| {
        assert!(s.gpu_check);
        assert_eq!(s.userspace.as_deref(), Some(VER));
        assert!(s.packages.contains("cuda-toolkit-12-8") && s.packages.contains("nvtop"));
        assert!(
            s.files.is_empty(),
            "pushed files left behind: {:?}",
            s.files
        );
    });
    // probe, push runfile, install; push keyring, repository, simulate, install, profile.d;
    // simulate, install the tools; verify.
    assert_eq!(report.counters.container_execs, 11, "{report:#?}");
    ct.with(|s| {
        assert_eq!(
            s.apt_runs,
            [
                "simulate cuda-toolkit-12-8",
                "install cuda-toolkit-12-8",
                "simulate nvtop",
                "install nvtop"
            ]
        );
        assert!(
            s.written["/etc/profile.d/phoenix-gpu-cuda.sh"].contains("/usr/local/cuda-12.8/bin")
        );
    });
    let cache = w.host.paths();
    assert!(
        cache.contains(&PathBuf::from(
            "/var/cache/phoenix-gpu/NVIDIA-Linux-x86_64-580.159.04.run"
        )),
        "{cache:?}"
    );
    assert!(
        cache
            .iter()
            .all(|p| !p.to_string_lossy().contains(".part-")),
        "{cache:?}"
    );
    let progress = w
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Progress { .. }))
        .count();
    assert!(progress >= 2, "no progress events");

    // And the second run converges in one exec.
    let (r, report) = w.converge(ct, &request(), false).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 1);
    assert!(!report.changed);
}

#[tokio::test]
async fn containers_share_one_download() {
    let w = World::new();
    w.web.set_delay(Duration::from_millis(400));
    let cts: Vec<Arc<FakeCt>> = (0..4)
        .map(|_| Arc::new(fake_ct(CtState::Running)))
        .collect();
    for ct in &cts {
        ct.with(|s| s.minors = vec![1]);
    }
    let mut req = request();
    req.cuda = None;
    req.tools.clear();
    let (a, b, c, d) = tokio::join!(
        w.converge(cts[0].clone(), &req, false),
        w.converge(cts[1].clone(), &req, false),
        w.converge(cts[2].clone(), &req, false),
        w.converge(cts[3].clone(), &req, false),
    );
    for (r, report) in [a, b, c, d] {
        r.unwrap();
        assert_eq!(status(&report, StepName::Userspace), StepStatus::Changed);
    }
    assert_eq!(w.web.gets(RUNFILE_URL), 1);
    // A later run (another process would see the same) finds the cache: no download.
    let ct = Arc::new(fake_ct(CtState::Running));
    ct.with(|s| s.minors = vec![1]);
    let (r, report) = w.converge(ct, &req, false).await;
    r.unwrap();
    assert!(report
        .step(StepName::Userspace)
        .unwrap()
        .detail
        .contains("from the cache"));
    assert_eq!(w.web.gets(RUNFILE_URL), 1);
}

#[tokio::test]
async fn a_checksum_mismatch_installs_nothing_and_leaves_no_file() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.userspace = None);
    let mut req = request();
    req.runfile.sha256 = Some("00".repeat(32).parse().unwrap());
    let (r, report) = w.converge(ct.clone(), &req, false).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Install);
    assert!(
        matches!(
            &e,
            Error::Install {
                cause: InstallCause::ChecksumMismatch { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(status(&report, StepName::Userspace), StepStatus::Failed);
    assert_eq!(
        report.counters.container_execs, 1,
        "only the probe ran in the container"
    );
    ct.with(|s| assert!(s.pushed.is_empty()));
    assert_eq!(w.cached_files(), Vec::<String>::new());
}

#[tokio::test]
async fn a_cut_download_leaves_no_partial_file() {
    let w = World::new();
    w.web.cut_downloads(true);
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.userspace = None);
    let (r, _) = w.converge(ct.clone(), &request(), false).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Install);
    assert!(chain(&e).contains("curl: (18)"), "{e}");
    assert_eq!(w.cached_files(), Vec::<String>::new());
    // The next run downloads it whole.
    w.web.cut_downloads(false);
    let (r, _) = w.converge(ct, &request(), false).await;
    r.unwrap();
}

#[tokio::test]
async fn a_corrupted_cache_is_downloaded_again() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.userspace = None);
    let cached = "/var/cache/phoenix-gpu/NVIDIA-Linux-x86_64-580.159.04.run";
    w.host.put(cached, b"trunc");
    w.host.put(
        &format!("{cached}.sha256"),
        format!("{} 999\n", "ab".repeat(32)).into_bytes(),
    );
    let (r, _) = w.converge(ct, &request(), false).await;
    r.unwrap();
    assert_eq!(w.web.gets(RUNFILE_URL), 1);
    assert_eq!(w.host.read(cached), b"#!/bin/sh\necho stand-in runfile\n");
}

#[tokio::test]
async fn an_installer_failure_carries_its_log() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| {
        s.userspace = Some("550.54.14".into());
        s.installer_fails = true;
    });
    let (r, _) = w.converge(ct.clone(), &request(), false).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Install);
    let m = chain(&e);
    assert!(
        m.contains("exit code 1") && m.contains("Installation has failed"),
        "{m}"
    );
    ct.with(|s| assert!(s.files.is_empty(), "runfile left in the container"));
}

#[tokio::test]
async fn an_old_userspace_is_upgraded() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.userspace = Some("550.54.14".into()));
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert!(report
        .step(StepName::Userspace)
        .unwrap()
        .detail
        .contains("was 550.54.14"));
    ct.with(|s| assert_eq!(s.userspace.as_deref(), Some(VER)));
}

#[tokio::test]
async fn no_restart_leaves_it_pending() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    let mut req = request();
    req.restart.no_restart = true;
    let (r, report) = w.converge(ct, &req, true).await;
    r.unwrap();
    assert_eq!(report.counters.restarts, 0);
    assert_eq!(status(&report, StepName::Restart), StepStatus::Skipped);
    assert!(report
        .step(StepName::Restart)
        .unwrap()
        .detail
        .contains("restart pending"));
    assert_eq!(status(&report, StepName::Verify), StepStatus::Skipped);
    assert!(w
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Notice { .. })));
}

#[tokio::test]
async fn a_stopped_container_is_started_only_with_start() {
    let w = World::new();
    let ct = Arc::new(fake_ct(CtState::Stopped));
    let (r, report) = w.converge(ct.clone(), &request(), true).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 0);
    assert_eq!(status(&report, StepName::Restart), StepStatus::Skipped);
    assert_eq!(status(&report, StepName::Verify), StepStatus::Skipped);

    let mut req = request();
    req.restart.start_if_stopped = true;
    let (r, report) = w.converge(ct.clone(), &req, true).await;
    r.unwrap();
    assert_eq!(report.counters.restarts, 1);
    assert_eq!(status(&report, StepName::Restart), StepStatus::Changed);
    assert_eq!(status(&report, StepName::Verify), StepStatus::Changed);
}

/// A container that does not shut down within the grace time is killed, and the report says
/// so (the restart's detail, a notice, `counters.forced_stops`).
#[tokio::test]
async fn a_restart_that_had_to_kill_says_so() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.stop_kills = true);
    let (r, report) = w.converge(ct, &request(), true).await;
    r.unwrap();
    let restart = report.step(StepName::Restart).unwrap();
    assert_eq!(restart.status, StepStatus::Changed);
    assert!(
        restart
            .detail
            .contains("did not shut down within 30s and was killed"),
        "{restart:?}"
    );
    assert_eq!(report.counters.forced_stops, 1);
    assert!(w
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Notice { message, .. } if message.contains("was killed"))));
}

#[tokio::test]
async fn a_start_that_hangs_times_out() {
    let w = World::new();
    let ct = Arc::new(fake_ct(CtState::Running));
    ct.with(|s| s.start_hangs = true);
    let mut req = request();
    req.restart.timeout = Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    let (r, report) = w.converge(ct, &req, true).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Restart);
    assert!(
        matches!(
            &e,
            Error::Restart {
                cause: RestartCause::Timeout { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(status(&report, StepName::Restart), StepStatus::Failed);
}

#[tokio::test]
async fn a_dry_run_plans_and_changes_nothing() {
    let w = World::new();
    let ct = Arc::new(fake_ct(CtState::Running));
    let mut req = request();
    req.dry_run = true;
    let (r, report) = w.converge(ct.clone(), &req, true).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 1);
    assert_eq!(report.counters.restarts, 0);
    assert_eq!(report.counters.host_commands, 0);
    for s in [
        StepName::Restart,
        StepName::Userspace,
        StepName::Cuda,
        StepName::Tools,
    ] {
        assert_eq!(status(&report, s), StepStatus::Planned, "{s:?}");
    }
    assert!(!report.changed);
    ct.with(|s| assert!(s.userspace.is_none() && s.pushed.is_empty()));
}

#[tokio::test]
async fn cuda_on_another_distribution_names_it() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| {
        s.os_id = "alpine";
        s.packages.clear();
    });
    let (r, _) = w.converge(ct, &request(), false).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Install);
    assert!(
        matches!(&e, Error::Install { cause: InstallCause::NotApt { system, .. }, .. } if system.contains("alpine")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_wrong_gpu_fails_verification() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.minors = vec![0, 1]);
    let (r, _) = w.converge(ct, &request(), false).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Verify);
    assert!(chain(&e).contains("not assigned [GPU-00000000]"), "{e}");
}

#[tokio::test]
async fn strategy_none_checks_nodes_only() {
    let w = World::new();
    let ct = Arc::new(fake_ct(CtState::Running));
    ct.with(|s| s.minors = vec![1]);
    let mut req = request();
    req.strategy = Some(Strategy::None);
    req.cuda = None;
    req.tools.clear();
    let (r, _) = w.converge(ct, &req, false).await;
    // The fake has no nvidiactl/uvm nodes: verification names them.
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Verify);
    assert!(chain(&e).contains("/dev/nvidiactl is missing"), "{e}");
}

#[tokio::test]
async fn host_libs_mounts_take_the_module_version_only() {
    let w = World::new();
    {
        for name in [
            "libcuda.so.580.159.04",
            "libnvidia-ml.so.580.159.04",
            "libnvidia-ml.so.550.54.14",
            "libnvidia-tls.so.580.159.04",
            "libcuda.so.1",
        ] {
            w.host
                .put(&format!("/usr/local/nvidia/lib64/{name}"), b"\x7fELF");
        }
        w.host.put("/usr/local/nvidia/bin/nvidia-smi", b"#!");
        // Found in a later folder of the search (all places are asked in one batch).
        w.host.put("/usr/bin/nvidia-debugdump", b"#!");
        w.host
            .put("/lib/firmware/nvidia/580.159.04/gsp_ga10x.bin", b"fw");
        // Named as a library of the version but a folder: not a library.
        w.host
            .put("/usr/local/nvidia/lib64/libnvidia-dir.so.580.159.04/x", b"");
    }
    let tally = Arc::new(Tally::default());
    let host = CountingHost::new(w.host.clone(), tally.clone());
    let ct = Arc::new(converged_ct());
    let cts = CountingExec::new(ct, tally);
    let sink = EventSink::none();
    let req = request();
    let ctx = Ctx {
        host: &host,
        cts: &cts,
        target: &w.target,
        settings: &w.settings,
        events: &sink,
        ct: req.ct.as_ct_ref(),
        facts: &crate::facts::HostFacts::fresh(),
    };
    let m = crate::host_libs::mounts(&ctx, &inv()).await.unwrap();
    let lines: Vec<String> = m.iter().map(|e| e.render()).collect();
    assert_eq!(
        lines,
        [
            "/usr/local/nvidia/lib64/libcuda.so.580.159.04 usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04 none ro,bind,optional,create=file",
            "/usr/local/nvidia/lib64/libnvidia-ml.so.580.159.04 usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04 none ro,bind,optional,create=file",
            "/usr/local/nvidia/lib64/libnvidia-tls.so.580.159.04 usr/lib/x86_64-linux-gnu/libnvidia-tls.so.580.159.04 none ro,bind,optional,create=file",
            "/usr/local/nvidia/bin/nvidia-smi usr/bin/nvidia-smi none ro,bind,optional,create=file",
            "/usr/bin/nvidia-debugdump usr/bin/nvidia-debugdump none ro,bind,optional,create=file",
            "/lib/firmware/nvidia/580.159.04 usr/lib/firmware/nvidia/580.159.04 none ro,bind,optional,create=dir",
        ]
    );
    // A host without the module's libraries is a host precondition failure.
    let mut other = inv();
    other.driver_version = "590.1.2".parse().unwrap();
    let e = crate::host_libs::mounts(&ctx, &other).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostPrecondition);
    assert!(e.to_string().contains("libnvidia-ml.so.590.1.2"), "{e}");
}

#[tokio::test]
async fn no_gpu_assigned_restarts_for_the_removed_lines_and_installs_nothing() {
    let w = World::new();
    let ct = Arc::new(fake_ct(CtState::Running));
    let (r, report) = w
        .converge_gpus(ct.clone(), &request(), true, Vec::new())
        .await;
    r.unwrap();
    assert_eq!(
        report.counters.restarts, 1,
        "the passthrough went away: {report:#?}"
    );
    assert_eq!(report.counters.container_execs, 0, "{report:#?}");
    assert_eq!(report.counters.host_commands, 0, "no download: {report:#?}");
    for s in [
        StepName::Userspace,
        StepName::Cuda,
        StepName::Tools,
        StepName::Verify,
    ] {
        assert_eq!(
            status(&report, s),
            StepStatus::Skipped,
            "{s:?}: {report:#?}"
        );
    }
}

fn userspace_only() -> Request {
    let mut req = request();
    req.cuda = None;
    req.tools.clear();
    req
}

fn empty_ct() -> Arc<FakeCt> {
    let ct = Arc::new(fake_ct(CtState::Running));
    ct.with(|s| s.minors = vec![1]);
    ct
}

fn heads(w: &World) -> Vec<String> {
    w.host
        .commands
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a[0] == "curl" && a[1] == "-sSIL")
        .map(|a| a.last().unwrap().clone())
        .collect()
}

/// A datacenter driver lives only under `tesla/`, with no checksum beside it (as NVIDIA
/// publishes 580.159.04): one HEAD per location, in order; without the caller's checksum or
/// explicit trust nothing is downloaded, with trust it is, and the report says where from.
#[tokio::test]
async fn a_tesla_only_runfile_is_found_and_needs_a_checksum_or_trust() {
    let w = World::bare();
    w.web.serve(TESLA_URL, RUNFILE);
    let (r, report) = w.converge(empty_ct(), &userspace_only(), false).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, Error::Install { cause: InstallCause::NoChecksum { url }, .. } if url == &format!("{TESLA_URL}.sha256sum")),
        "{e:?}"
    );
    assert!(
        chain(&e).contains("nothing was downloaded"),
        "{}",
        chain(&e)
    );
    assert_eq!(heads(&w), [RUNFILE_URL, TESLA_URL]);
    assert_eq!(w.web.gets(TESLA_URL), 0);
    assert_eq!(status(&report, StepName::Userspace), StepStatus::Failed);
    assert_eq!(w.cached_files(), Vec::<String>::new());

    // Trust asked for: downloaded from tesla, the record says the first download was trusted.
    let mut req = userspace_only();
    req.runfile.trust_first_download = true;
    let (r, report) = w.converge(empty_ct(), &req, false).await;
    r.unwrap();
    let d = &report.step(StepName::Userspace).unwrap().detail;
    assert!(
        d.contains("from NVIDIA's datacenter (tesla) downloads") && d.contains(TESLA_URL),
        "{d}"
    );
    assert!(d.contains("the first download was trusted"), "{d}");
    assert_eq!(w.web.gets(TESLA_URL), 1);
    let record = w.host.get(&format!("{CACHED}.sha256"));
    assert!(record.ends_with(" first-download\n"), "{record}");

    // A later run that does not trust first downloads does not take that file from the cache.
    let (r, _) = w.converge(empty_ct(), &userspace_only(), false).await;
    assert!(
        matches!(
            r,
            Err(Error::Install {
                cause: InstallCause::NoChecksum { .. },
                ..
            })
        ),
        "{r:?}"
    );
    // One that gives the checksum does, without downloading again.
    let mut req = userspace_only();
    req.runfile.sha256 = Some(sha256_hex(RUNFILE).parse().unwrap());
    let (r, report) = w.converge(empty_ct(), &req, false).await;
    r.unwrap();
    assert!(report
        .step(StepName::Userspace)
        .unwrap()
        .detail
        .contains("from the cache"));
    assert_eq!(w.web.gets(TESLA_URL), 1);
}

/// Where a checksum is published under `tesla/` too, it is used: no opt-in needed.
#[tokio::test]
async fn a_published_checksum_is_used_at_either_location() {
    let w = World::bare();
    serve(&w.web, TESLA_URL, RUNFILE, true);
    let (r, report) = w.converge(empty_ct(), &userspace_only(), false).await;
    r.unwrap();
    let d = &report.step(StepName::Userspace).unwrap().detail;
    assert!(d.contains("checked against the published checksum"), "{d}");
    assert!(w
        .host
        .get(&format!("{CACHED}.sha256"))
        .ends_with(" published\n"));
    // The XFree86 archive is asked first, and wins when it has the version.
    let w = World::new();
    w.web.serve(TESLA_URL, b"another build".to_vec());
    let (r, report) = w.converge(empty_ct(), &userspace_only(), false).await;
    r.unwrap();
    assert_eq!(heads(&w), [RUNFILE_URL]);
    assert!(report
        .step(StepName::Userspace)
        .unwrap()
        .detail
        .contains("NVIDIA's driver archive (XFree86)"));
    assert_eq!(w.web.gets(TESLA_URL), 0);
}

/// Neither location has the version: the error lists both URLs and their answers, and
/// nothing is downloaded or pushed.
#[tokio::test]
async fn a_runfile_nowhere_names_every_place_tried() {
    let w = World::bare();
    let ct = empty_ct();
    let (r, _) = w.converge(ct.clone(), &userspace_only(), false).await;
    let e = r.unwrap_err();
    let Error::Install {
        cause: InstallCause::NotPublished { file, tried },
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(file, "NVIDIA-Linux-x86_64-580.159.04.run");
    assert_eq!(
        tried,
        &[format!("{RUNFILE_URL} (404)"), format!("{TESLA_URL} (404)")]
    );
    ct.with(|s| assert!(s.pushed.is_empty()));
    assert_eq!(w.cached_files(), Vec::<String>::new());
}

/// Another process holds the download lock (it is downloading): this run waits, then finds
/// the file that process put in the cache, and downloads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_by_another_process_is_waited_for_and_used() {
    use exec_backend::Host as _;
    let w = World::new();
    let other = exec_backend::LocalHost::with_root(&w.host.root);
    let held = other
        .lock(
            std::path::Path::new("/var/cache/phoenix-gpu/.NVIDIA-Linux-x86_64-580.159.04.run.lock"),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let ct = empty_ct();
    let req = userspace_only();
    let run = w.converge(ct, &req, false);
    let finish = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        w.host.put(CACHED, RUNFILE);
        w.host.put(
            &format!("{CACHED}.sha256"),
            format!("{} {} published\n", sha256_hex(RUNFILE), RUNFILE.len()),
        );
        drop(held);
    };
    let ((r, report), ()) = tokio::join!(run, finish);
    r.unwrap();
    assert!(report
        .step(StepName::Userspace)
        .unwrap()
        .detail
        .contains("from the cache"));
    assert_eq!(
        w.web.gets(RUNFILE_URL),
        0,
        "downloaded although the other process did"
    );
    assert!(heads(&w).is_empty(), "{:?}", heads(&w));
}

/// A container without kmod (debootstrap minbase): NVIDIA's installer would stop at "Unable to
/// find the module utility `modprobe`", so kmod is installed first (simulated, then installed).
#[tokio::test]
async fn kmod_is_installed_before_the_installer_runs() {
    let w = World::new();
    let ct = empty_ct();
    ct.with(|s| s.no_kmod = true);
    let (r, report) = w.converge(ct.clone(), &userspace_only(), false).await;
    r.unwrap();
    assert_eq!(status(&report, StepName::Userspace), StepStatus::Changed);
    ct.with(|s| {
        assert_eq!(s.apt_runs, ["simulate kmod", "install kmod"]);
        assert_eq!(s.userspace.as_deref(), Some(VER));
    });
    // A dry run says so.
    let ct = empty_ct();
    ct.with(|s| s.no_kmod = true);
    let mut req = userspace_only();
    req.dry_run = true;
    let (r, report) = w.converge(ct, &req, false).await;
    r.unwrap();
    let d = &report.step(StepName::Userspace).unwrap().detail;
    assert!(
        d.starts_with("would install kmod for the installer, then install userspace"),
        "{d}"
    );
}

/// Without apt, the missing programs and their package are named, and nothing is downloaded.
#[tokio::test]
async fn without_apt_the_installers_needs_are_named() {
    let w = World::new();
    let ct = empty_ct();
    ct.with(|s| {
        s.no_kmod = true;
        s.os_id = "alpine";
    });
    let (r, _) = w.converge(ct.clone(), &userspace_only(), false).await;
    let e = r.unwrap_err();
    let Error::Install {
        cause: InstallCause::InstallerNeeds {
            tools, packages, ..
        },
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(tools, &["modprobe", "rmmod", "lsmod", "depmod"]);
    assert_eq!(packages, &["kmod"]);
    assert!(
        chain(&e).contains("NVIDIA's installer needs modprobe"),
        "{}",
        chain(&e)
    );
    assert_eq!(w.web.gets(RUNFILE_URL), 0);
    ct.with(|s| assert!(s.pushed.is_empty()));
}

/// A push that said it worked but did not (pct push exits 0 after a failed copy): the check
/// at the start of the install script stops it, and the installer never runs.
#[tokio::test]
async fn a_short_push_runs_nothing() {
    let w = World::new();
    let ct = empty_ct();
    ct.with(|s| s.short_pushes = true);
    let (r, _) = w.converge(ct.clone(), &userspace_only(), false).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, Error::Install { cause: InstallCause::PushedDiffers { file, what }, .. }
            if file == "NVIDIA-Linux-x86_64-580.159.04.run" && what == &format!("has 10 of {} bytes", RUNFILE.len())),
        "{e:?}"
    );
    ct.with(|s| assert_eq!(s.userspace, None));
}

/// Ubuntu 20.04's nvtop depends on libnvidia-compute-*: in a container whose userspace is the
/// runfile's, the install is refused before anything is installed; with strategy none it is
/// the user's choice.
#[tokio::test]
async fn a_tool_that_brings_driver_libraries_is_refused() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| {
        s.packages.remove("nvtop");
        s.deps
            .insert("nvtop".into(), vec!["libnvidia-compute-470".into()]);
    });
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, Error::Install { cause: InstallCause::WouldReplaceDriver { package, asked, .. }, .. }
            if package == "libnvidia-compute-470" && asked == "nvtop"),
        "{e:?}"
    );
    assert!(chain(&e).contains("nothing was installed"), "{}", chain(&e));
    assert_eq!(status(&report, StepName::Tools), StepStatus::Failed);
    ct.with(|s| {
        assert_eq!(s.apt_runs, ["simulate nvtop"]);
        assert!(!s.packages.contains("nvtop"));
    });

    let mut req = request();
    req.strategy = Some(Strategy::None);
    let (_, report) = w.converge(ct.clone(), &req, false).await;
    assert_eq!(status(&report, StepName::Tools), StepStatus::Changed);
    ct.with(|s| assert!(s.packages.contains("nvtop")));
}

/// nvtop is in Debian's contrib: when apt cannot find it, the error says so.
#[tokio::test]
async fn a_tool_apt_cannot_find_names_its_component() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| {
        s.packages.remove("nvtop");
        s.unknown.insert("nvtop".into());
    });
    let (r, _) = w.converge(ct, &request(), false).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, Error::Install { cause: InstallCause::PackageNotFound { package, component: Some("contrib"), .. }, .. } if package == "nvtop"),
        "{e:?}"
    );
    assert!(chain(&e).contains("add contrib to them"), "{}", chain(&e));
}

/// The repository has CUDA 12.8 only: asking for 12.4 fails before any install, naming what
/// there is.
#[tokio::test]
async fn a_cuda_version_the_repository_lacks_names_those_it_has() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| {
        s.packages.clear();
        s.cuda_versions = vec!["12.6", "12.8"];
    });
    let mut req = request();
    req.cuda = Some("12.4".parse().unwrap());
    req.tools.clear();
    let (r, _) = w.converge(ct.clone(), &req, false).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, Error::Install { cause: InstallCause::CudaVersionMissing { package, available, .. }, .. }
            if package == "cuda-toolkit-12-4" && available == &["12.6", "12.8"]),
        "{e:?}"
    );
    assert!(
        chain(&e).contains("it has CUDA 12.6, 12.8"),
        "{}",
        chain(&e)
    );
    ct.with(|s| assert!(s.apt_runs.is_empty(), "{:?}", s.apt_runs));
}

/// A run killed while downloading left its temporary file; the next download removes it.
#[tokio::test]
async fn a_killed_downloads_leftover_is_removed() {
    let w = World::new();
    let left = "/var/cache/phoenix-gpu/.NVIDIA-Linux-x86_64-580.159.04.run.part-999999-0";
    w.host.put(left, b"half a runf");
    w.host.put(
        "/var/cache/phoenix-gpu/.other.run.part-999999-0",
        b"not ours",
    );
    let (r, _) = w.converge(empty_ct(), &userspace_only(), false).await;
    r.unwrap();
    assert_eq!(
        w.cached_files(),
        [
            "/var/cache/phoenix-gpu/.other.run.part-999999-0",
            CACHED,
            &format!("{CACHED}.sha256"),
        ]
    );
}

/// A container converged by an earlier version (no gpu-check): one probe, then the
/// verification exec puts gpu-check in place; the next run is one exec again.
#[tokio::test]
async fn gpu_check_is_put_in_place_once() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.gpu_check = false);
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 2, "{report:#?}");
    assert_eq!(status(&report, StepName::Verify), StepStatus::Changed);
    let detail = &report.step(StepName::Verify).unwrap().detail;
    assert!(
        detail.contains("CUDA context and 1 MiB round trip on 1 GPU(s)"),
        "{detail}"
    );
    assert!(detail.ends_with("gpu-check put in place"), "{detail}");
    assert!(ct.with(|s| s.gpu_check));
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert_eq!(report.counters.container_execs, 1, "{report:#?}");
    assert!(!report.changed);
    let detail = &report.step(StepName::Verify).unwrap().detail;
    assert!(
        detail.starts_with("NVML lists 1 GPU(s) [GPU-00000001]"),
        "{detail}"
    );
}

/// Placeholders of host-libs mounts that are gone are removed before the userspace step, so
/// they never pass for an installed userspace.
#[tokio::test]
async fn placeholders_are_removed() {
    let w = World::new();
    let ct = Arc::new(converged_ct());
    ct.with(|s| s.placeholders = vec!["/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14".into()]);
    let (r, report) = w.converge(ct.clone(), &request(), false).await;
    r.unwrap();
    assert_eq!(status(&report, StepName::Userspace), StepStatus::Changed);
    let detail = &report.step(StepName::Userspace).unwrap().detail;
    assert!(detail.starts_with("removed 1 placeholder(s)"), "{detail}");
    // probe, clean-up, verification
    assert_eq!(report.counters.container_execs, 3, "{report:#?}");
    assert!(ct.with(|s| s.placeholders.is_empty()));
    // A dry run leaves them.
    ct.with(|s| s.placeholders = vec!["/usr/lib/x86_64-linux-gnu/libcuda.so.1".into()]);
    let mut req = request();
    req.dry_run = true;
    let (r, _) = w.converge(ct.clone(), &req, false).await;
    r.unwrap();
    assert!(!ct.with(|s| s.placeholders.is_empty()));
}
