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
    /// gpu-check is in place.
    gpu_check: bool,
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
            gpu_check: false,
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
            if mode != "probe" || !nvml_ok {
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
        let args = &argv[4..];
        if script == SCRIPT {
            assert_eq!(args[2], "probe");
            return Ok(out(0, s.probe(&args[1], &args[3..]), ""));
        }
        if script == VERIFY_SCRIPT {
            let mut text = String::from("probe=1\n");
            if args[2] == "install" && !s.gpu_check {
                assert!(args[0].starts_with("/usr/local/lib/phoenix-gpu/gpu-check-"));
                assert_eq!(cmd.stdin.as_deref(), Some(super::gpucheck::BYTES));
                s.gpu_check = true;
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
        if args.iter().any(|a| a == "--no-kernel-module") {
            let file = args[0].clone();
            assert!(s.files.remove(&file), "installer {file} was not pushed");
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
            s.packages.insert(args[2].clone());
            return Ok(out(0, "", ""));
        }
        if script.contains("apt-get install") {
            for t in &args[1..] {
                s.packages.insert(t.clone());
            }
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
        let web = Arc::new(Web::default());
        serve(
            &web,
            RUNFILE_URL,
            b"#!/bin/sh\necho stand-in runfile\n",
            true,
        );
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
    // probe, push runfile, install, push keyring, cuda, tools, verify.
    assert_eq!(report.counters.container_execs, 7, "{report:#?}");
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
    assert!(
        w.host.paths().iter().all(|p| !p.starts_with("/var/cache")),
        "{:?}",
        w.host.paths()
    );
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
    assert!(
        w.host.paths().iter().all(|p| !p.starts_with("/var/cache")),
        "{:?}",
        w.host.paths()
    );
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
