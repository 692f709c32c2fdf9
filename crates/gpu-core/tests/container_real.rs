//! The container side against real systems: `Engine` with `LocalHost` (a stand-in GPU host
//! under a temporary root) and `LxcAttach` on real LXC containers made from a Debian minbase
//! rootfs, a stand-in runfile and apt repository served on 127.0.0.1. Root only; see
//! `tests/support/README.md`.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exec_backend::{LocalHost, LxcAttach};
use gpu_core::{
    BackendHost, Engine, ErrorKind, Event, EventSink, FindingKind, GpuSelection, Report, Request,
    Settings, StepName, StepStatus, Strategy, Target,
};
use support::{can_run, GpuHost, Server, TestCt, GPUS, VER};

fn engine(gh: &GpuHost) -> Engine {
    // No test reaches NVIDIA: a request without a runfile URL would ask this closed port.
    engine_with(gh, "http://127.0.0.1:1")
}

/// The engine, with NVIDIA's downloads at `downloads` (a local server with their layout).
fn engine_with(gh: &GpuHost, downloads: &str) -> Engine {
    let host = gh.host.clone();
    // The backend's commands (lxc-attach, lxc-info) count into each run, as in the binary.
    let backend_host: Arc<dyn exec_backend::Host> =
        Arc::new(BackendHost::new(Arc::new(LocalHost::with_root(gh.root()))));
    let cts = Arc::new(
        LxcAttach::with_lxcpath(backend_host, "/lxc").lifecycle_timeout(Duration::from_secs(60)),
    );
    Engine::new(
        host,
        cts,
        Target::Lxc {
            lxcpath: PathBuf::from("/lxc"),
        },
    )
    .with_settings(Settings {
        cache_dir: PathBuf::from("/cache"),
        backup_root: PathBuf::from("/backups"),
        // The stand-in nodes and libraries live under the fake host's root: LXC must bind
        // those, so the config names them by their paths under the root.
        resolve_mount_sources: true,
        nvidia_downloads: downloads.to_owned(),
        ..Settings::default()
    })
}

fn request(ct: &TestCt, gpus: &str) -> Request {
    let sel: GpuSelection = gpus.parse().unwrap();
    let mut r = Request::new(ct.name.parse().unwrap(), sel);
    r.restart.timeout = Duration::from_secs(90);
    r
}

async fn apply_ok(e: &Engine, req: &Request) -> Report {
    match e.apply(req).await {
        Ok(r) => r,
        Err(f) => panic!(
            "apply failed: {}\n{:#?}",
            gpu_core::chain(&f.error),
            f.report
        ),
    }
}

fn status(r: &Report, s: StepName) -> StepStatus {
    r.step(s)
        .unwrap_or_else(|| panic!("no {s:?} in {r:#?}"))
        .status
}

fn detail(r: &Report, s: StepName) -> &str {
    &r.step(s).unwrap().detail
}

/// Files of the runfile cache (under the GPU host's root).
fn cache_files(gh: &GpuHost) -> Vec<String> {
    match std::fs::read_dir(gh.root().join("cache")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runfile_cuda_and_tools_then_converged_then_a_host_upgrade() {
    if !can_run("runfile_cuda_and_tools_then_converged_then_a_host_upgrade") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, false);
    let repo = srv.publish_apt_repo();
    let debian = srv.publish_debian_repo();
    // A debootstrap minbase: no kmod, which NVIDIA's installer needs; the tool installs it.
    let ct = gh.container_with_apt(&[], &[&debian]);
    ct.start();
    let (rc, _) = ct.sh("command -v modprobe");
    assert_ne!(rc, 0, "the rootfs has kmod already");
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let e = engine(&gh).with_events(EventSink::new(move |x| ev.lock().unwrap().push(x)));
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    req.cuda = Some("12.8".parse().unwrap());
    req.repo_url = Some(repo.parse().unwrap());
    req.tools = vec!["nvtop".parse().unwrap()];

    // First apply: config, the GPU given live (a first GPU is a change of device nodes only;
    // no restart), install everything, verify.
    let r = apply_ok(&e, &req).await;
    for s in &r.steps {
        eprintln!("{:>10} {:?}: {}", s.name.as_str(), s.status, s.detail);
    }
    assert!(r.changed);
    assert_eq!(r.counters.restarts, 0, "{r:#?}");
    assert!(
        matches!(r.activation, Some(gpu_core::Activation::Live(_))),
        "{r:#?}"
    );
    for s in [
        StepName::Config,
        StepName::Restart,
        StepName::Userspace,
        StepName::Cuda,
        StepName::Tools,
    ] {
        assert_eq!(status(&r, s), StepStatus::Changed, "{s:?}: {r:#?}");
    }
    // The verification put gpu-check in place and ran it: the nodes open (stand-ins: ENXIO),
    // CUDA (the stand-in driver) creates a context on the one GPU.
    assert_eq!(status(&r, StepName::Verify), StepStatus::Changed);
    let v = detail(&r, StepName::Verify);
    assert!(v.contains(GPUS[1].1), "{r:#?}");
    assert!(!v.contains(GPUS[0].1));
    assert!(v.contains("4 device node(s) open"), "{v}");
    assert!(
        v.contains("CUDA context and 1 MiB round trip on 1 GPU(s)"),
        "{v}"
    );
    let (rc, out) = ct.sh("nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader; /usr/local/cuda/bin/nvcc --version; nvtop; ls /root");
    assert_eq!(rc, 0, "{out}");
    assert!(
        detail(&r, StepName::Cuda).contains("/usr/local/cuda-12.8/bin is on the PATH"),
        "{r:#?}"
    );
    // nvcc on a login shell's PATH; kmod installed; the toolkit's recommends left out.
    let (rc, login) = ct.sh(
        "env -i sh -lc 'command -v nvcc'; command -v modprobe; dpkg -s cuda-recommended-standin",
    );
    assert_ne!(rc, 0, "{login}");
    assert!(
        login.contains("/usr/local/cuda-12.8/bin/nvcc") && login.contains("/usr/sbin/modprobe"),
        "{login}"
    );
    assert!(
        login.contains("package 'cuda-recommended-standin' is not installed"),
        "{login}"
    );
    assert!(out.contains(&format!("0, {}, {VER}", GPUS[1].1)), "{out}");
    assert!(
        out.contains("release 12.8") && out.contains("nvtop stand-in"),
        "{out}"
    );
    assert!(
        !out.contains(".run"),
        "the runfile was left in the container: {out}"
    );
    let (_, log) = ct.sh("cat /var/log/nvidia-installer.log");
    assert!(
        log.contains("--no-kernel-module") && log.contains("is now complete"),
        "{log}"
    );
    assert_eq!(srv.gets(&run_path), 1);
    assert!(events.lock().unwrap().iter().any(
        |x| matches!(x, Event::Progress { what, .. } if what.contains("NVIDIA-Linux-x86_64"))
    ));
    assert!(
        cache_files(&gh).iter().all(|f| !f.contains(".part-")),
        "{:?}",
        cache_files(&gh)
    );

    // Second apply: one probe, nothing else.
    let r = apply_ok(&e, &req).await;
    assert!(!r.changed, "{r:#?}");
    assert_eq!(r.counters.container_execs, 1, "{r:#?}");
    assert_eq!(r.counters.restarts, 0);
    assert_eq!(r.counters.config_writes, 0);
    assert_eq!(status(&r, StepName::Verify), StepStatus::Ok);
    // gpu-check answered through NVML: nvidia-smi did not run in the converged probe.
    assert!(
        detail(&r, StepName::Verify).starts_with("NVML lists 1 GPU(s)"),
        "{r:#?}"
    );
    // Inside: one process, the probe's shell exec'ing gpu-check, which answers alone (`--probe`);
    // on the host: the one lxc-attach (the probe answering says the container runs; no lxc-info).
    assert_eq!(r.counters.container_processes, 1, "{r:#?}");
    assert_eq!(r.counters.host_commands, 1, "{r:#?}");

    // gpu-check zeroed inside (the shell then runs it as a script, which prints nothing): the
    // probe asks again through the shell, the verification puts the program back; then the
    // converged run is one exec again.
    let (rc, out) = ct.sh(
        "for f in /usr/local/lib/phoenix-gpu/gpu-check-*; do head -c 20000 /dev/zero > \"$f\"; done",
    );
    assert_eq!(rc, 0, "{out}");
    let r = apply_ok(&e, &req).await;
    assert_eq!(r.counters.container_execs, 3, "{r:#?}");
    assert_eq!(r.counters.restarts, 0, "{r:#?}");
    assert!(
        detail(&r, StepName::Verify).contains("gpu-check put in place"),
        "{r:#?}"
    );
    let r = apply_ok(&e, &req).await;
    assert!(!r.changed, "{r:#?}");
    assert_eq!(r.counters.container_execs, 1, "{r:#?}");

    // Where a file does not answer, gpu-check asks the program the shell would: dpkg-query
    // when dpkg's journal holds an entry (a dpkg run that stopped: the status file alone is not
    // the truth), `nvcc --version` when CUDA's version.json is gone. Still converged, one exec;
    // each program counted inside.
    let (rc, out) = ct.sh(
        "awk -v RS= '$1 == \"Package:\" && $2 == \"nvtop\"' /var/lib/dpkg/status > /var/lib/dpkg/updates/0001 \
         && test -s /var/lib/dpkg/updates/0001 \
         && mv /usr/local/cuda/version.json /usr/local/cuda/version.json.away",
    );
    assert_eq!(rc, 0, "{out}");
    let r = apply_ok(&e, &req).await;
    assert!(!r.changed, "{r:#?}");
    assert_eq!(r.counters.container_execs, 1, "{r:#?}");
    assert_eq!(r.counters.container_processes, 3, "{r:#?}");
    for s in [StepName::Cuda, StepName::Tools] {
        assert_eq!(status(&r, s), StepStatus::Ok, "{s:?}: {r:#?}");
    }
    let (rc, out) = ct.sh(
        "rm /var/lib/dpkg/updates/0001 && mv /usr/local/cuda/version.json.away /usr/local/cuda/version.json",
    );
    assert_eq!(rc, 0, "{out}");

    // The host's module is upgraded: verification sees the old userspace, apply replaces it.
    let new = "580.160.01";
    gh.set_driver_version(new);
    let new_path = srv.publish_runfile(new, false);
    req.runfile.url = Some(srv.url(&new_path).parse().unwrap());
    let c = e
        .check(&req.ct, Some(&req))
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(c.drift, "{c:#?}");
    assert!(
        c.findings
            .iter()
            .any(|f| f.kind == FindingKind::DriverMismatch
                && f.detail.contains(VER)
                && f.detail.contains(new)),
        "{c:#?}"
    );
    let f = e.verify(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Verify);
    assert!(
        gpu_core::chain(&f.error).contains(&format!("the host's module is {new}")),
        "{}",
        f.error
    );
    let r = apply_ok(&e, &req).await;
    assert_eq!(status(&r, StepName::Userspace), StepStatus::Changed);
    assert!(
        detail(&r, StepName::Userspace).contains(&format!("was {VER}")),
        "{r:#?}"
    );
    assert!(detail(&r, StepName::Verify).contains(new), "{r:#?}");
    let c = e
        .check(&req.ct, Some(&req))
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(!c.drift, "{c:#?}");
    let (_, libs) = ct.sh("ls /usr/lib/x86_64-linux-gnu/ | grep -E 'libnvidia-ml|libcuda'");
    assert!(!libs.contains(VER), "old libraries left: {libs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_containers_download_the_runfile_once() {
    if !can_run("four_containers_download_the_runfile_once") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, false);
    let debian = srv.publish_debian_repo();
    let cts: Vec<TestCt> = (0..4)
        .map(|_| gh.container_with_apt(&[], &[&debian]))
        .collect();
    for ct in &cts {
        ct.start();
    }
    let e = engine(&gh);
    let reqs: Vec<Request> = cts
        .iter()
        .enumerate()
        .map(|(i, ct)| {
            let mut r = request(ct, if i % 2 == 0 { "0" } else { "1" });
            r.runfile.url = Some(srv.url(&run_path).parse().unwrap());
            r
        })
        .collect();
    let (a, b, c, d) = tokio::join!(
        apply_ok(&e, &reqs[0]),
        apply_ok(&e, &reqs[1]),
        apply_ok(&e, &reqs[2]),
        apply_ok(&e, &reqs[3]),
    );
    for (i, r) in [a, b, c, d].iter().enumerate() {
        assert_eq!(
            status(r, StepName::Userspace),
            StepStatus::Changed,
            "{r:#?}"
        );
        assert!(
            detail(r, StepName::Verify).contains(GPUS[i % 2].1),
            "{r:#?}"
        );
    }
    assert_eq!(
        srv.gets(&run_path),
        1,
        "the runfile was downloaded more than once"
    );
    assert_eq!(srv.gets(&format!("{run_path}.sha256sum")), 1);
    // A later run (another process) finds it in the cache too.
    let ct = gh.container_with_apt(&[], &[&debian]);
    ct.start();
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    let r = apply_ok(&engine(&gh), &req).await;
    assert!(
        detail(&r, StepName::Userspace).contains("from the cache"),
        "{r:#?}"
    );
    assert_eq!(srv.gets(&run_path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_mismatch_runs_nothing_in_the_container() {
    if !can_run("a_checksum_mismatch_runs_nothing_in_the_container") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, false);
    let debian = srv.publish_debian_repo();
    let ct = gh.container_with_apt(&[], &[&debian]);
    ct.start();
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    req.runfile.sha256 = Some("0".repeat(64).parse().unwrap());
    let f = engine(&gh).apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    assert!(
        gpu_core::chain(&f.error).contains("checksum mismatch"),
        "{}",
        f.error
    );
    assert_eq!(status(&f.report, StepName::Userspace), StepStatus::Failed);
    let (rc, out) = ct.sh("ls /root; command -v nvidia-smi; test -e /var/log/nvidia-installer.log");
    assert_ne!(rc, 0, "{out}");
    assert!(
        !out.contains(".run") && !out.contains("nvidia-smi"),
        "{out}"
    );
    assert!(
        cache_files(&gh).iter().all(|f| f.ends_with(".lock")),
        "left in the cache: {:?}",
        cache_files(&gh)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_installer_is_an_install_error_with_its_log() {
    if !can_run("a_failing_installer_is_an_install_error_with_its_log") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, true);
    let debian = srv.publish_debian_repo();
    let ct = gh.container_with_apt(&[], &[&debian]);
    ct.start();
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    let f = engine(&gh).apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    let m = gpu_core::chain(&f.error);
    assert!(m.contains("exit code 1"), "{m}");
    assert!(
        m.contains("Installation has failed"),
        "the log tail is missing: {m}"
    );
    let (_, out) = ct.sh("ls /root");
    assert!(!out.contains(".run"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_container_is_started_only_with_start() {
    if !can_run("a_stopped_container_is_started_only_with_start") {
        return;
    }
    let gh = GpuHost::new();
    let ct = gh.container(&[]);
    let e = engine(&gh);
    let mut req = request(&ct, "1");
    req.strategy = Some(Strategy::None);
    let r = apply_ok(&e, &req).await;
    assert_eq!(r.counters.restarts, 0);
    assert_eq!(r.counters.container_execs, 0);
    assert_eq!(status(&r, StepName::Restart), StepStatus::Skipped);
    assert!(detail(&r, StepName::Restart).contains("starting it was not asked for"));

    req.restart.start_if_stopped = true;
    let r = apply_ok(&e, &req).await;
    assert_eq!(status(&r, StepName::Restart), StepStatus::Changed, "{r:#?}");
    assert_eq!(r.counters.restarts, 1);
    // Strategy none: the nodes are there as the host's character devices, and open (the
    // verification put gpu-check in place).
    assert_eq!(status(&r, StepName::Verify), StepStatus::Changed, "{r:#?}");
    assert!(
        detail(&r, StepName::Verify).contains("4 device node(s) open"),
        "{r:#?}"
    );
    let (_, out) = ct.sh("stat -c '%n %F %t:%T' /dev/nvidia*");
    for want in [
        "/dev/nvidia1 character special file c3:1",
        "/dev/nvidiactl character special file c3:ff",
        "/dev/nvidia-uvm character special file ee:0",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
    assert!(!out.contains("/dev/nvidia0"), "GPU 0 leaked in: {out}");
    // And converged: one probe.
    let r = apply_ok(&e, &req).await;
    assert_eq!(r.counters.container_execs, 1, "{r:#?}");
    assert!(!r.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_never_comes_up_is_a_restart_error() {
    if !can_run("a_start_that_never_comes_up_is_a_restart_error") {
        return;
    }
    let gh = GpuHost::new();
    // A pre-start hook that blocks: lxc-start never reaches RUNNING.
    let hook = gh.root().join("hang-hook.sh");
    let pidfile = gh.root().join("hang-hook.pid");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 120\n",
            pidfile.display()
        ),
    )
    .unwrap();
    support::chmod(&hook, 0o755);
    let hook_line = format!("lxc.hook.pre-start = {}", hook.display());
    let ct = gh.container(&[&hook_line]);
    let mut req = request(&ct, "1");
    req.strategy = Some(Strategy::None);
    req.restart.start_if_stopped = true;
    req.restart.timeout = Duration::from_secs(5);
    let t0 = std::time::Instant::now();
    let f = engine(&gh).apply(&req).await.unwrap_err();
    let took = t0.elapsed();
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(f.error.kind(), ErrorKind::Restart, "{}", f.error);
    assert!(
        gpu_core::chain(&f.error).contains("within 5s"),
        "{}",
        f.error
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(status(&f.report, StepName::Restart), StepStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_libs_are_mounted_read_only_and_linked() {
    if !can_run("host_libs_are_mounted_read_only_and_linked") {
        return;
    }
    let gh = GpuHost::new();
    gh.install_userspace(VER);
    let ct = gh.container(&[]);
    ct.start();
    let e = engine(&gh);
    let mut req = request(&ct, "1");
    req.strategy = Some(Strategy::HostLibs);
    // A dry run first: everything planned, one probe, nothing written or restarted.
    let before = ct.config();
    let p = e
        .plan(&req)
        .await
        .unwrap_or_else(|f| panic!("{}\n{:#?}", f.error, f.report));
    assert_eq!(status(&p, StepName::Config), StepStatus::Planned, "{p:#?}");
    assert_eq!(status(&p, StepName::Restart), StepStatus::Planned, "{p:#?}");
    assert_eq!(p.counters.container_execs, 1, "{p:#?}");
    assert_eq!((p.counters.config_writes, p.counters.restarts), (0, 0));
    assert_eq!(ct.config(), before);
    let r = apply_ok(&e, &req).await;
    assert_eq!(status(&r, StepName::Restart), StepStatus::Changed, "{r:#?}");
    assert_eq!(
        status(&r, StepName::Userspace),
        StepStatus::Changed,
        "{r:#?}"
    );
    assert_eq!(status(&r, StepName::Verify), StepStatus::Changed, "{r:#?}");
    assert!(detail(&r, StepName::Verify).contains(GPUS[1].1));
    let cfg = ct.config();
    assert!(
        cfg.contains(&format!(
            "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{VER} none ro,bind,optional,create=file"
        )),
        "{cfg}"
    );
    let (rc, out) = ct.sh(&format!(
        "echo x > /usr/lib/x86_64-linux-gnu/libcuda.so.{VER}; echo rc=$?; ldconfig -p | grep -E 'libcuda.so.1|libnvidia-ml.so.1'; nvidia-smi --version"
    ));
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("Read-only file system") && !out.contains("rc=0"),
        "the library is writable: {out}"
    );
    eprintln!("{out}");
    assert!(
        out.contains("libcuda.so.1") && out.contains("libnvidia-ml.so.1"),
        "{out}"
    );
    let r = apply_ok(&e, &req).await;
    assert_eq!(r.counters.container_execs, 1, "{r:#?}");
    assert!(!r.changed);

    // The uvm allow line goes (as after a hand edit): nvidia-smi still lists the GPU, CUDA
    // fails, and verify says which node the device cgroup refuses and why.
    let cfg = ct.config();
    let cut: String = cfg
        .lines()
        .filter(|l| !(l.contains("devices.allow") && l.contains("c 238:")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(cut, cfg);
    std::fs::write(ct.config_path(), &cut).unwrap();
    ct.stop();
    ct.start();
    let (rc, out) = ct.sh("nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains(GPUS[1].1), "{out}");
    let f = e.verify(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Verify);
    let text = gpu_core::chain(&f.error);
    assert!(
        text.contains("/dev/nvidia-uvm (238:0) cannot be opened in the container (EPERM: the device cgroup refuses it): the config has no allow line for c 238:0"),
        "{text}"
    );
    assert!(
        text.contains("cuInit returned 999 CUDA_ERROR_UNKNOWN"),
        "{text}"
    );
    // apply puts the line back and restarts.
    let r = apply_ok(&e, &req).await;
    assert_eq!(status(&r, StepName::Restart), StepStatus::Changed, "{r:#?}");
    assert!(
        detail(&r, StepName::Verify).contains("CUDA context and 1 MiB round trip on 1 GPU(s)"),
        "{r:#?}"
    );

    // remove: the running container restarts without the mounts, and nothing of ours is left
    // inside: no placeholder, no link to one, no gpu-check.
    let r = e
        .remove(&req.ct, false)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert_eq!(status(&r, StepName::Restart), StepStatus::Changed, "{r:#?}");
    assert_eq!(
        status(&r, StepName::Userspace),
        StepStatus::Changed,
        "{r:#?}"
    );
    let (_, out) = ct.sh(
        "ls -la /usr/lib/x86_64-linux-gnu | grep -E 'nvidia|cuda'; ls /usr/bin | grep nvidia; \
         ldconfig -p | grep -E 'nvidia|cuda'; ls /usr/local/lib/phoenix-gpu; true",
    );
    assert!(
        !out.contains("nvidia") && !out.contains("cuda"),
        "debris left: {out}"
    );
    assert!(out.contains("No such file or directory"), "{out}");
}

/// `sync` after a host driver upgrade, as the CLI does it: each container's assignment is read
/// back from its config and applied again; the new runfile is downloaded once for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_a_driver_upgrade_downloads_the_new_runfile_once() {
    if !can_run("sync_after_a_driver_upgrade_downloads_the_new_runfile_once") {
        return;
    }
    const NEW: &str = "580.172.08";
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let old_path = srv.publish_runfile(VER, false);
    let new_path = srv.publish_runfile(NEW, false);
    let debian = srv.publish_debian_repo();
    let sels = ["0", "1", "0,1"];
    let cts: Vec<TestCt> = sels
        .iter()
        .map(|_| gh.container_with_apt(&[], &[&debian]))
        .collect();
    let e = engine(&gh);
    for (ct, sel) in cts.iter().zip(sels) {
        ct.start();
        let mut r = request(ct, sel);
        r.runfile.url = Some(srv.url(&old_path).parse().unwrap());
        apply_ok(&e, &r).await;
    }

    gh.set_driver_version(NEW);
    let mut items = Vec::new();
    for ct in &cts {
        let current = e
            .current_assignment(&ct.name.parse().unwrap())
            .await
            .unwrap()
            .expect("the config passes GPUs");
        assert_eq!(current.strategy, Strategy::Runfile);
        let mut req = current.request();
        req.runfile.url = Some(srv.url(&new_path).parse().unwrap());
        req.restart.timeout = Duration::from_secs(90);
        items.push(gpu_core::fleet::FleetItem {
            node: "local".into(),
            engine: e.clone(),
            request: req,
        });
    }
    let wanted: Vec<String> = items.iter().map(|i| i.request.gpus.to_string()).collect();
    assert_eq!(wanted, sels, "the assignments read back from the configs");

    let rows = gpu_core::fleet::apply_all(items, 3).await;
    for (row, sel) in rows.iter().zip(sels) {
        assert_eq!(row.result, gpu_core::fleet::RowResult::Changed, "{row:#?}");
        assert_eq!(
            status(&row.report, StepName::Userspace),
            StepStatus::Changed,
            "{row:#?}"
        );
        let verified = detail(&row.report, StepName::Verify);
        assert!(verified.contains(NEW), "{row:#?}");
        for i in sel.split(',') {
            let i: usize = i.parse().unwrap();
            assert!(verified.contains(GPUS[i].1), "{row:#?}");
        }
    }
    assert_eq!(
        srv.gets(&new_path),
        1,
        "the new runfile was downloaded more than once"
    );
    assert_eq!(srv.gets(&old_path), 1);
}

/// A datacenter driver, published the way NVIDIA publishes 580.159.04: only under
/// `tesla/<ver>/`, no `.sha256sum` beside it. The local server has only that layout. Without a
/// runfile URL the tool asks both of NVIDIA's locations (one HEAD each, XFree86 first), finds it
/// under tesla, and refuses to run an unchecked download unless asked to trust it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datacenter_runfile_is_found_under_tesla() {
    if !can_run("a_datacenter_runfile_is_found_under_tesla") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let tesla = srv.publish_tesla_runfile(VER, false);
    let debian = srv.publish_debian_repo();
    let xfree86 = format!("/XFree86/Linux-x86_64/{VER}/NVIDIA-Linux-x86_64-{VER}.run");
    let ct = gh.container_with_apt(&[], &[&debian]);
    ct.start();
    let e = engine_with(&gh, &srv.url(""));
    let mut req = request(&ct, "1");

    let f = e.apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    let m = gpu_core::chain(&f.error);
    assert!(
        m.contains(&format!(
            "no checksum is published at {}.sha256sum",
            srv.url(&tesla)
        )),
        "{m}"
    );
    assert_eq!((srv.heads(&xfree86), srv.heads(&tesla)), (1, 1));
    assert_eq!(srv.gets(&tesla), 0, "downloaded without a checksum");
    let (rc, out) = ct.sh("ls /root; test -e /var/log/nvidia-installer.log");
    assert_ne!(rc, 0, "{out}");

    req.runfile.trust_first_download = true;
    let r = apply_ok(&e, &req).await;
    let d = detail(&r, StepName::Userspace);
    assert!(
        d.contains("NVIDIA's datacenter (tesla) downloads") && d.contains(&srv.url(&tesla)),
        "{d}"
    );
    assert!(d.contains("the first download was trusted"), "{d}");
    // Changed: the verification puts gpu-check in place after an install.
    assert_eq!(status(&r, StepName::Verify), StepStatus::Changed, "{r:#?}");
    assert_eq!(srv.gets(&tesla), 1);
    assert_eq!(srv.gets(&xfree86), 0);
}

/// The stand-in installer stops where NVIDIA's does in a container without kmod (debootstrap
/// minbase), `--no-kernel-module` or not, with the real message; the tool installs kmod first,
/// and without an apt source that has it, the error names kmod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmod_comes_before_the_installer() {
    if !can_run("kmod_comes_before_the_installer") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, false);
    let ct = gh.container(&[]);
    ct.start();
    // The stand-in on its own, as the tool would run it.
    std::fs::write(
        ct.rootfs().join("root/standin.run"),
        support::standin_runfile(VER, false),
    )
    .unwrap();
    let (rc, out) = ct.sh("sh /root/standin.run --no-kernel-module --silent");
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("ERROR: Unable to find the module utility `modprobe`; please make sure you have the package 'module-init-tools' or 'kmod' installed."),
        "{out}"
    );
    // No source with kmod: the tool says what it needs, before downloading anything.
    let e = engine(&gh);
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    let f = e.apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    let m = gpu_core::chain(&f.error);
    assert!(m.contains("cannot find kmod"), "{m}");
    assert_eq!(srv.gets(&run_path), 0);
    // With the distribution's repository: kmod, then the userspace.
    support::set_apt_sources(&ct, &[&srv.publish_debian_repo()]);
    let r = apply_ok(&e, &req).await;
    assert_eq!(status(&r, StepName::Userspace), StepStatus::Changed);
    assert_eq!(status(&r, StepName::Verify), StepStatus::Changed, "{r:#?}");
    let (rc, out) = ct.sh("command -v modprobe depmod; dpkg -s kmod | grep Status");
    assert_eq!(rc, 0, "{out}");
}

/// `pct push` that exits 0 after a short copy (the pct stand-in with `PUSH_SHORT=1`, as pct.pm
/// behaves): the file is checked in the container before it runs, so nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_pct_push_runs_nothing() {
    if !can_run("a_short_pct_push_runs_nothing") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, false);
    let debian = srv.publish_debian_repo();
    // A numeric name, so that pct (which takes CTIDs) can name it.
    let name = format!("9{:05}", std::process::id() % 100_000);
    let ct = gh.container_named(&name, &[]);
    support::set_apt_sources(&ct, &[&debian]);
    ct.start();
    let dir = tempfile::tempdir().unwrap();
    let pct = dir.path().join("pct");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../exec-backend/tests/fixtures/pct-standin"
        ),
        &pct,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pct-standin.conf"),
        format!(
            "LXCPATH='{}'\nLOG='{}'\nCT_{name}='{name}'\nPUSH_SHORT=1\n",
            ct.lxcpath.display(),
            dir.path().join("pct.log").display()
        ),
    )
    .unwrap();
    let cts = Arc::new(exec_backend::Pct::with_program(
        LocalHost::with_root(gh.root()),
        &pct,
    ));
    let e = Engine::new(
        gh.host.clone(),
        cts,
        Target::Lxc {
            lxcpath: PathBuf::from("/lxc"),
        },
    )
    .with_settings(Settings {
        cache_dir: PathBuf::from("/cache"),
        backup_root: PathBuf::from("/backups"),
        resolve_mount_sources: true,
        nvidia_downloads: "http://127.0.0.1:1".into(),
        ..Settings::default()
    });
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    let f = e.apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    let m = gpu_core::chain(&f.error);
    let size = std::fs::metadata(
        gh.root()
            .join(format!("cache/NVIDIA-Linux-x86_64-{VER}.run")),
    )
    .unwrap()
    .len();
    assert!(
        m.contains(&format!(
            "the pushed NVIDIA-Linux-x86_64-{VER}.run has {} of {size} bytes in the container: the copy failed, nothing was run",
            size / 2
        )),
        "{m}"
    );
    let (rc, out) = ct.sh("ls /root; test -e /var/log/nvidia-installer.log");
    assert_ne!(rc, 0, "the installer ran: {out}");
    assert!(!out.contains(".run"), "the short file was left: {out}");
    let log = std::fs::read_to_string(dir.path().join("pct.log")).unwrap();
    assert!(log.contains(&format!("push {name} ")), "{log}");
}

/// apt and the driver's libraries: nvtop where apt cannot find it (Debian keeps it in
/// contrib) is named with its component; Ubuntu 20.04's nvtop, which depends on
/// libnvidia-compute-*, is refused in a container whose userspace the tool installed, before
/// anything is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_never_bring_driver_libraries() {
    if !can_run("tools_never_bring_driver_libraries") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let run_path = srv.publish_runfile(VER, false);
    let debian = srv.publish_debian_repo();
    let focal = srv.publish_focal_repo();
    let ct = gh.container_with_apt(&[], &[&debian]);
    ct.start();
    let e = engine(&gh);
    let mut req = request(&ct, "1");
    req.runfile.url = Some(srv.url(&run_path).parse().unwrap());
    req.tools = vec!["nvtop".parse().unwrap()];

    let f = e.apply(&req).await.unwrap_err();
    let m = gpu_core::chain(&f.error);
    assert!(
        m.contains("cannot find nvtop; it is in the distribution's contrib component"),
        "{m}"
    );
    assert_eq!(status(&f.report, StepName::Userspace), StepStatus::Changed);

    support::set_apt_sources(&ct, &[&debian, &focal]);
    let f = e.apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    let m = gpu_core::chain(&f.error);
    assert!(
        m.contains(
            "installing nvtop would also install libnvidia-compute-580 580.95.05-0ubuntu0.20.04.1"
        ),
        "{m}"
    );
    let (_, out) = ct.sh("dpkg -s nvtop libnvidia-compute-580 2>&1 | grep -c 'is not installed'");
    assert_eq!(out.trim(), "2", "installed anyway");
    // The runfile's userspace is intact.
    let r = e
        .verify(&req)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(detail(&r, StepName::Verify).contains(VER), "{r:#?}");
}

/// The CUDA repository has 12.8 only: asking for 12.4 fails after the repository is added and
/// before any install, naming what it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cuda_version_the_repository_lacks_is_refused() {
    if !can_run("a_cuda_version_the_repository_lacks_is_refused") {
        return;
    }
    let gh = GpuHost::new();
    let srv = Server::start().await;
    let repo = srv.publish_apt_repo();
    let ct = gh.container(&[]);
    ct.start();
    let mut req = request(&ct, "1");
    req.strategy = Some(Strategy::None);
    req.cuda = Some("12.4".parse().unwrap());
    req.repo_url = Some(repo.parse().unwrap());
    let f = engine(&gh).apply(&req).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Install, "{}", f.error);
    let m = gpu_core::chain(&f.error);
    assert!(
        m.contains(&format!(
            "the CUDA repository {repo} has no cuda-toolkit-12-4"
        )) && m.contains("it has CUDA 12.8"),
        "{m}"
    );
    let (_, out) = ct.sh("dpkg -l 'cuda-toolkit-*' 2>&1; ls /usr/local");
    assert!(!out.contains("cuda-12"), "{out}");
}

/// nvidia-smi's failures in a real container, each as the real tool words it (the stand-in's
/// contract, `tests/support/README.md`) and each told apart: a module of another version, the
/// device cgroup denying `/dev/nvidiactl`, and no `/dev/nvidiactl` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvidia_smi_failures_are_told_apart() {
    use gpu_core::{Error, SmiFailure, VerifyCause, VerifyProblem};
    if !can_run("nvidia_smi_failures_are_told_apart") {
        return;
    }
    let gh = GpuHost::new();
    gh.install_userspace(VER);
    let ct = gh.container(&[]);
    ct.start();
    let e = engine(&gh);
    let mut req = request(&ct, "1");
    req.strategy = Some(Strategy::HostLibs);
    apply_ok(&e, &req).await;
    let smi_failure = |f: gpu_core::Failure| match f.error {
        Error::Verify {
            cause: VerifyCause::SmiFailed {
                failure, output, ..
            },
            ..
        } => (failure, output),
        e => panic!("not an nvidia-smi failure: {}", gpu_core::chain(&e)),
    };
    let without = |needle: &str| {
        let cfg = ct.config();
        let kept: String = cfg
            .lines()
            .filter(|l| !l.contains(needle))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(cfg, kept, "no line with {needle}");
        (cfg, kept)
    };
    let restart_with = |config: &str| {
        ct.stop();
        std::fs::write(ct.config_path(), config).unwrap();
        ct.start();
    };

    // The host's module is another version than the container's userspace.
    let (rc, out) = ct.sh("echo 570.124.06 > /etc/standin-nvidia-module-version");
    assert_eq!(rc, 0, "{out}");
    let (failure, output) = smi_failure(e.verify(&req).await.unwrap_err());
    assert_eq!(failure, SmiFailure::VersionMismatch, "{output}");
    assert!(output.starts_with("nvidia-smi (exit code 18): Failed to initialize NVML: Driver/library version mismatch | NVML library version: 580.159"), "{output}");
    ct.sh("rm /etc/standin-nvidia-module-version");

    // Where a node is the cause, verification names it first (gpu-check opens every passed
    // node) and nvidia-smi's failure follows as its effect.
    let node_then_smi = |f: gpu_core::Failure| match f.error {
        Error::Verify {
            cause: VerifyCause::Mismatch { problems },
            ..
        } => {
            let smi = problems.iter().find_map(|p| match p {
                VerifyProblem::Smi { failure, output } => Some((*failure, output.clone())),
                _ => None,
            });
            (
                problems.first().cloned(),
                smi.expect("nvidia-smi's failure"),
            )
        }
        e => panic!("not a node problem: {}", gpu_core::chain(&e)),
    };

    // The device cgroup denies /dev/nvidiactl (its allow line is gone).
    let (full, denied) = without("c 195:255 rwm");
    restart_with(&denied);
    let (node, (failure, output)) = node_then_smi(e.verify(&req).await.unwrap_err());
    assert!(
        matches!(&node, Some(VerifyProblem::NodeRefused { path, .. }) if path == "/dev/nvidiactl"),
        "{node:?}"
    );
    assert_eq!(failure, SmiFailure::UnknownError, "{output}");
    assert_eq!(
        output,
        "nvidia-smi (exit code 255): Failed to initialize NVML: Unknown Error"
    );

    // No /dev/nvidiactl in the container (its mount is gone).
    let (_, unmounted) = without("dev/nvidiactl none bind");
    restart_with(&unmounted);
    let (node, (failure, output)) = node_then_smi(e.verify(&req).await.unwrap_err());
    assert!(
        matches!(&node, Some(VerifyProblem::NodeMissing { path }) if path == "/dev/nvidiactl"),
        "{node:?}"
    );
    assert_eq!(failure, SmiFailure::DriverUnreachable, "{output}");
    assert!(output.starts_with("nvidia-smi (exit code 9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."), "{output}");

    restart_with(&full);
    e.verify(&req)
        .await
        .unwrap_or_else(|f| panic!("{}", gpu_core::chain(&f.error)));
}
