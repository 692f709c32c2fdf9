use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use exec_backend::MockContainerExec;

use super::*;
use crate::engine::Engine;
use crate::request::Mode;
use crate::select::GpuSelection;
use crate::settings::Settings;
use crate::target::Target;
use crate::values::CtId;
use crate::ErrorKind;
use lxc_conf::Dialect;
use test_support::FsHost;

const EXAMPLE_101: &str = include_str!("../../../../examples/h200x2/etc/pve/lxc/101.conf");
const CONF: &str = "/etc/pve/lxc/101.conf";

/// The example's main section up to (not including) the stale NVIDIA lines.
const HEAD: &str = "#vLLM worker, set up by hand in 2024 for one GPU.
#Driver was 550 then; see the snapshot.
arch: amd64
cores: 16
features: nesting=1,keyctl=1
hostname: vllm-gpu1
memory: 65536
net0: name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:A7:50:B3,ip=dhcp,tag=30,type=veth
onboot: 1
ostype: ubuntu
parent: before-driver-upgrade
rootfs: local-lvm:vm-101-disk-0,size=64G
swap: 0
tags: gpu;vllm
";

fn snapshot_section() -> &'static str {
    let i = EXAMPLE_101.find("\n[before-driver-upgrade]").unwrap();
    &EXAMPLE_101[i..]
}

/// The node record of a run before the driver upgrade, when nvidia-uvm was 508: the
/// evidence that makes the example's `c 508:*` a stale NVIDIA major.
const RECORD_508: &str = "major 195 nvidia\nmajor 508 nvidia-uvm\n";
const RECORD: &str = "/var/lib/phoenix-gpu/nvidia-record";

fn host_with_101() -> (tempfile::TempDir, Arc<FsHost>) {
    let (d, host) = FsHost::h200x2();
    host.put(CONF, EXAMPLE_101);
    host.put(RECORD, RECORD_508);
    (d, Arc::new(host))
}

fn engine(host: &Arc<FsHost>, target: Target) -> Engine {
    Engine::new(host.clone(), Arc::new(MockContainerExec::new()), target).with_settings(Settings {
        lock_timeout: std::time::Duration::from_secs(2),
        ..Settings::default()
    })
}

/// A stopped container: its state says so, and nothing can run inside (`pct exec` fails).
pub(crate) fn stopped_ct() -> MockContainerExec {
    let mut cts = MockContainerExec::new();
    cts.expect_state()
        .returning(|_| Ok(exec_backend::CtState::Stopped));
    cts.expect_exec().returning(|_, cmd| {
        Err(exec_backend::ExecError::Failed {
            target: "localhost".into(),
            argv: cmd
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            status: exec_backend::ExitStatus::Code(255),
            stderr_tail: "CT 101 not running".into(),
        })
    });
    cts
}

/// An engine whose container is stopped (`remove` reads the state; `check` tries its probe,
/// then reads the state).
fn stopped_engine(host: &Arc<FsHost>, target: Target) -> Engine {
    Engine::new(host.clone(), Arc::new(stopped_ct()), target).with_settings(Settings {
        lock_timeout: std::time::Duration::from_secs(2),
        ..Settings::default()
    })
}

fn request(gpus: &str, mode: Mode) -> Request {
    let mut r = Request::new(
        "101".parse::<CtId>().unwrap(),
        gpus.parse::<GpuSelection>().unwrap(),
    );
    r.mode = mode;
    r.strategy = Some(Strategy::None);
    r.config_only = true;
    r
}

fn backups(host: &FsHost, ct: &str) -> Vec<String> {
    let dir = host.path(&format!("/var/lib/phoenix-gpu/backups/{ct}"));
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn raw_v2_gpu1_replaces_the_stale_setup_and_keeps_every_other_byte() {
    let (_d, host) = host_with_101();
    let report = engine(&host, Target::Pve)
        .apply(&request("1", Mode::Auto))
        .await
        .unwrap();
    let want = format!(
        "{HEAD}lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
lxc.cgroup2.devices.allow: c 195:1 rwm
lxc.cgroup2.devices.allow: c 195:255 rwm
lxc.cgroup2.devices.allow: c 238:* rwm
lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file
{}",
        snapshot_section()
    );
    assert_eq!(host.get(CONF), want);
    assert!(report.changed);
    assert_eq!(report.counters.config_writes, 1);
    assert!(report
        .config_diff
        .contains("-lxc.cgroup2.devices.allow: c 508:* rwm"));
    assert!(report
        .config_diff
        .contains("+lxc.cgroup2.devices.allow: c 238:* rwm"));
    let b = backups(&host, "101");
    assert_eq!(b.len(), 1);
    assert_eq!(
        std::fs::read_to_string(host.path(&format!("/var/lib/phoenix-gpu/backups/101/{}", b[0])))
            .unwrap(),
        EXAMPLE_101
    );
    assert!(host.path("/run/lock/lxc/pve-config-101.lock").exists());
}

#[tokio::test]
async fn raw_on_a_v1_devices_host_uses_the_v1_key() {
    let (_d, host) = host_with_101();
    host.put(
        "/proc/self/mounts",
        "cgroup /sys/fs/cgroup/devices cgroup rw,nosuid,nodev,noexec,relatime,devices 0 0\n",
    );
    engine(&host, Target::Pve)
        .apply(&request("1", Mode::Raw))
        .await
        .unwrap();
    let want = format!(
        "{HEAD}lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
lxc.cgroup.devices.allow: c 195:1 rwm
lxc.cgroup.devices.allow: c 195:255 rwm
lxc.cgroup.devices.allow: c 238:* rwm
lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file
{}",
        snapshot_section()
    );
    assert_eq!(host.get(CONF), want);
}

#[tokio::test]
async fn dev_mode_for_an_unprivileged_ct_on_pve_8_2() {
    let (_d, host) = host_with_101();
    host.put(
        "/var/lib/dpkg/status",
        "Package: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n",
    );
    host.put(
        CONF,
        EXAMPLE_101.replacen("tags: gpu;vllm\n", "tags: gpu;vllm\nunprivileged: 1\n", 1),
    );
    engine(&host, Target::Pve)
        .apply(&request("1", Mode::Auto))
        .await
        .unwrap();
    // The host node's mode (the stand-ins carry the captured 0666) and its group when it is
    // not root's (the stand-ins belong to whoever runs the test).
    let gid = match std::fs::metadata(host.path("/dev/nvidia1")).unwrap().gid() {
        0 => String::new(),
        g => format!("gid={g},"),
    };
    let head = HEAD.replace(
        "cores: 16\n",
        &format!(
            "cores: 16\ndev0: /dev/nvidia1,{gid}mode=0666\ndev1: /dev/nvidiactl,{gid}mode=0666\ndev2: /dev/nvidia-uvm,{gid}mode=0666\ndev3: /dev/nvidia-uvm-tools,{gid}mode=0666\n"
        ),
    );
    let want = format!(
        "{head}unprivileged: 1
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
{}",
        snapshot_section()
    );
    assert_eq!(host.get(CONF), want);
}

#[tokio::test]
async fn second_apply_writes_nothing() {
    let (_d, host) = host_with_101();
    let e = engine(&host, Target::Pve);
    e.apply(&request("1", Mode::Auto)).await.unwrap();
    let after_first = host.get(CONF);
    let mtime = std::fs::metadata(host.path(CONF))
        .unwrap()
        .modified()
        .unwrap();
    let r = e.apply(&request("1", Mode::Auto)).await.unwrap();
    assert!(!r.changed);
    assert_eq!(r.counters.config_writes, 0);
    assert_eq!(r.config_diff, "");
    assert_eq!(host.get(CONF), after_first);
    assert_eq!(
        std::fs::metadata(host.path(CONF))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert_eq!(backups(&host, "101").len(), 1);
}

#[tokio::test]
async fn resolved_mount_sources_are_written_recognised_and_removed() {
    let (d, host) = host_with_101();
    let e = engine(&host, Target::Pve).with_settings(Settings {
        resolve_mount_sources: true,
        lock_timeout: std::time::Duration::from_secs(2),
        ..Settings::default()
    });
    let r = e.apply(&request("1", Mode::Raw)).await.unwrap();
    assert!(r.changed);
    let root = d.path().display().to_string();
    let conf = host.get(CONF);
    for node in ["nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] {
        let line = format!(
            "lxc.mount.entry: {root}/dev/{node} dev/{node} none bind,optional,create=file\n"
        );
        assert!(conf.contains(&line), "{line:?} not in\n{conf}");
    }
    let main = |c: &str| c[..c.find("\n[").unwrap()].to_owned();
    assert!(!main(&conf).contains(" /dev/nvidia"), "{conf}");
    assert!(conf.contains("lxc.cgroup2.devices.allow: c 195:1 rwm\n"));
    // The resolved lines are the tool's: a second run keeps them, writes nothing.
    let r = e.apply(&request("1", Mode::Raw)).await.unwrap();
    assert!(!r.changed, "{}", r.config_diff);
    assert_eq!(host.get(CONF), conf);
    // Without the setting they are still recognised, and replaced by host paths.
    let plain = stopped_engine(&host, Target::Pve);
    let r = plain.apply(&request("1", Mode::Raw)).await.unwrap();
    assert!(r.changed);
    let conf = host.get(CONF);
    assert!(!conf.contains(&root), "{conf}");
    assert!(
        conf.contains("lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file\n")
    );
    // And `remove` takes resolved lines out too.
    e.apply(&request("1", Mode::Raw)).await.unwrap();
    plain
        .remove(&"101".parse::<CtId>().unwrap(), false)
        .await
        .unwrap();
    let conf = host.get(CONF);
    assert!(!main(&conf).contains("nvidia"), "{conf}");
    assert!(conf.ends_with(snapshot_section()));
}

#[tokio::test]
async fn wanted_lines_in_any_order_are_kept_in_place() {
    let (_d, host) = host_with_101();
    let conf = format!(
        "{HEAD}lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file
lxc.cgroup2.devices.allow: c 238:* rwm
lxc.mount.entry: /dev/nvidia1 dev/nvidia1 none bind,optional,create=file
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 195:255 rwm
lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file
lxc.cgroup2.devices.allow: c 195:1 rwm
lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file
"
    );
    host.put(CONF, &conf);
    let r = engine(&host, Target::Pve)
        .apply(&request("1", Mode::Raw))
        .await
        .unwrap();
    assert!(!r.changed, "{}", r.config_diff);
    assert_eq!(host.get(CONF), conf);
    assert!(backups(&host, "101").is_empty());
}

#[tokio::test]
async fn plan_changes_nothing() {
    let (_d, host) = host_with_101();
    let r = engine(&host, Target::Pve)
        .plan(&request("1", Mode::Auto))
        .await
        .unwrap();
    assert_eq!(host.get(CONF), EXAMPLE_101);
    assert!(r
        .config_diff
        .starts_with("--- /etc/pve/lxc/101.conf (current)\n+++ /etc/pve/lxc/101.conf (planned)\n"));
    assert_eq!(
        r.step(crate::StepName::Config).unwrap().status,
        StepStatus::Planned
    );
    assert!(backups(&host, "101").is_empty());
}

#[tokio::test]
async fn locked_config_is_refused_and_untouched() {
    let (_d, host) = host_with_101();
    let locked = EXAMPLE_101.replacen("hostname:", "lock: backup\nhostname:", 1);
    host.put(CONF, &locked);
    let f = engine(&host, Target::Pve)
        .apply(&request("1", Mode::Auto))
        .await
        .unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Locked);
    assert!(f.error.to_string().contains("locked (backup)"));
    assert_eq!(host.get(CONF), locked);
}

#[tokio::test]
async fn missing_config_and_unknown_ct() {
    let (_d, host) = FsHost::h200x2();
    let host = Arc::new(host);
    let f = engine(&host, Target::Pve)
        .apply(&request("1", Mode::Auto))
        .await
        .unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::ConfigMissing);
    host.put(
        "/etc/pve/.vmlist",
        r#"{"version": 5, "ids": {"100": {"node": "pve1", "type": "lxc", "version": 1}}}"#,
    );
    let f = engine(&host, Target::Pve)
        .apply(&request("1", Mode::Auto))
        .await
        .unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::CtNotFound);
}

#[tokio::test]
async fn remove_takes_out_only_the_tools_lines() {
    let (_d, host) = host_with_101();
    let r = stopped_engine(&host, Target::Pve)
        .remove(&"101".parse::<CtId>().unwrap(), false)
        .await
        .unwrap();
    assert!(r.changed);
    let want = format!(
        "{HEAD}lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file
{}",
        snapshot_section()
    );
    assert_eq!(host.get(CONF), want);
    let r = stopped_engine(&host, Target::Pve)
        .remove(&"101".parse::<CtId>().unwrap(), false)
        .await
        .unwrap();
    assert!(!r.changed);
}

#[tokio::test]
async fn gpus_none_removes_the_passthrough() {
    let (_d, host) = host_with_101();
    engine(&host, Target::Pve)
        .apply(&request("none", Mode::Auto))
        .await
        .unwrap();
    assert!(!host
        .get(CONF)
        .lines()
        .take(20)
        .any(|l| l.contains("nvidia")));
    assert!(host.get(CONF).contains("c 10:200 rwm"));
}

#[tokio::test]
async fn keeps_the_first_and_the_last_ten_backups() {
    let (_d, host) = host_with_101();
    for i in 0..12 {
        host.put(
            &format!(
                "/var/lib/phoenix-gpu/backups/101/2020010{}T000000.{i:03}Z.conf",
                i % 10
            ),
            "old",
        );
    }
    engine(&host, Target::Pve)
        .apply(&request("1", Mode::Auto))
        .await
        .unwrap();
    let b = backups(&host, "101");
    assert_eq!(b.len(), BACKUPS_KEPT + 1);
    assert!(b.last().unwrap().starts_with("20"), "{b:?}");
    // The config before the tool's first change stays; the next oldest go.
    assert_eq!(b[0], "20200100T000000.000Z.conf");
    assert!(!b.iter().any(|n| n == "20200100T000000.010Z.conf"), "{b:?}");
    assert!(!b.iter().any(|n| n == "20200101T000000.001Z.conf"), "{b:?}");
}

#[tokio::test]
async fn plain_lxc_config_in_its_dialect() {
    let (_d, host) = FsHost::h200x2();
    let host = Arc::new(host);
    let conf = "# Template used to create this container: /usr/share/lxc/templates/lxc-download
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.rootfs.path = dir:/var/lib/lxc/gpu1/rootfs
lxc.uts.name = gpu1
lxc.cgroup2.devices.allow = c 195:* rwm
lxc.mount.entry = /dev/nvidia0 dev/nvidia0 none bind,optional,create=file
";
    host.put("/var/lib/lxc/gpu1/config", conf);
    let target = Target::Lxc {
        lxcpath: "/var/lib/lxc".into(),
    };
    let mut req = request("1", Mode::Auto);
    req.ct = "gpu1".parse::<CtId>().unwrap();
    engine(&host, target.clone()).apply(&req).await.unwrap();
    assert_eq!(
        host.get("/var/lib/lxc/gpu1/config"),
        "# Template used to create this container: /usr/share/lxc/templates/lxc-download
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.rootfs.path = dir:/var/lib/lxc/gpu1/rootfs
lxc.uts.name = gpu1
lxc.cgroup2.devices.allow = c 195:1 rwm
lxc.cgroup2.devices.allow = c 195:255 rwm
lxc.cgroup2.devices.allow = c 238:* rwm
lxc.mount.entry = /dev/nvidia1 dev/nvidia1 none bind,optional,create=file
lxc.mount.entry = /dev/nvidiactl dev/nvidiactl none bind,optional,create=file
lxc.mount.entry = /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file
lxc.mount.entry = /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file
"
    );
    let doc = Document::parse(conf.as_bytes(), Dialect::Lxc);
    assert!(is_unprivileged(&doc));
    assert!(host.path("/run/lock/phoenix-gpu/lxc-gpu1.lock").exists());
    let e = engine(&host, target)
        .apply(&{
            let mut r = request("1", Mode::Dev);
            r.ct = "gpu1".parse::<CtId>().unwrap();
            r
        })
        .await
        .unwrap_err();
    assert_eq!(e.error.kind(), ErrorKind::BadInput);
}

#[test]
fn timestamps_sort_in_time_order() {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(1_795_996_800_123);
    assert_eq!(timestamp(t), "20261130T000000.123Z");
    assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
    let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
    assert_eq!(timestamp(leap), "20000229T000000.000Z");
}

/// A Proxmox 8.2 host with `conf` as CT 101 (no node record).
fn pve_host(conf: &str) -> (tempfile::TempDir, Arc<FsHost>) {
    let (d, host) = FsHost::h200x2();
    host.put(
        "/var/lib/dpkg/status",
        "Package: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n",
    );
    host.put(CONF, conf);
    (d, Arc::new(host))
}

const BASE: &str = "arch: amd64\nhostname: t\nmemory: 512\nostype: debian\n";

#[tokio::test]
async fn lines_of_other_devices_stay_byte_for_byte_whatever_the_majors() {
    // An iGPU, USB serial, sound, TUN, loop and the stock rtc rule, on a host where 226, 188,
    // 189 and 116 are unassigned and 254 is ndctl; a user folder named nvidia-*.
    let theirs = "lxc.cgroup2.devices.allow: c 226:0 rwm
lxc.cgroup2.devices.allow: c 226:128 rwm
lxc.mount.entry: /dev/dri/renderD128 dev/dri/renderD128 none bind,optional,create=file
lxc.cgroup2.devices.allow: c 188:* rwm
lxc.cgroup2.devices.allow: c 189:* rwm
lxc.cgroup2.devices.allow: c 116:* rwm
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.cgroup2.devices.allow: b 7:* rwm
lxc.cgroup.devices.allow: c 254:0 rm
lxc.mount.entry: /opt/nvidia-container opt/nvidia-container none bind,optional,create=dir
";
    let conf = format!("{BASE}{theirs}lxc.cgroup2.devices.allow: c 195:* rwm\n");
    let (_d, host) = pve_host(&conf);
    let e = stopped_engine(&host, Target::Pve);
    let r = e.apply(&request("0", Mode::Raw)).await.unwrap();
    assert!(r.changed);
    let after = host.get(CONF);
    assert!(after.starts_with(&format!("{BASE}{theirs}")), "{after}");
    // A second run changes nothing: the doubtful lines are not taken for stale majors.
    let r = e.apply(&request("0", Mode::Raw)).await.unwrap();
    assert!(!r.changed, "{}", r.config_diff);
    // `remove` takes only the tool's lines out.
    e.remove(&"101".parse::<CtId>().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(host.get(CONF), format!("{BASE}{theirs}"));
}

#[tokio::test]
async fn doubtful_lines_go_only_when_asked() {
    let (_d, host) = pve_host(&format!(
        "{BASE}lxc.cgroup2.devices.allow: c 508:* rwm\nlxc.cgroup2.devices.allow: c 10:200 rwm\n"
    ));
    let e = engine(&host, Target::Pve);
    let mut req = request("1", Mode::Raw);
    e.apply(&req).await.unwrap();
    assert!(host.get(CONF).contains("c 508:* rwm"));
    req.remove_doubtful = true;
    let r = e.apply(&req).await.unwrap();
    assert!(r.changed);
    let conf = host.get(CONF);
    assert!(!conf.contains("c 508:* rwm"), "{conf}");
    assert!(conf.contains("c 10:200 rwm"), "{conf}");
}

#[tokio::test]
async fn the_record_makes_a_moved_uvm_major_the_tools_line() {
    let (_d, host) = pve_host(BASE);
    let e = engine(&host, Target::Pve);
    e.apply(&request("1", Mode::Raw)).await.unwrap();
    let record = host.get(RECORD);
    assert!(record.contains("major 238 nvidia-uvm\n"), "{record}");
    assert!(record.contains("major 241 nvidia-caps\n"), "{record}");
    // Next boot: nvidia-uvm is 510, and 238 is free.
    let devices = host
        .get("/proc/devices")
        .replace("238 nvidia-uvm", "510 nvidia-uvm");
    host.put("/proc/devices", devices);
    let r = e.apply(&request("1", Mode::Raw)).await.unwrap();
    assert!(
        r.config_diff
            .contains("-lxc.cgroup2.devices.allow: c 238:* rwm"),
        "{}",
        r.config_diff
    );
    assert!(
        r.config_diff
            .contains("+lxc.cgroup2.devices.allow: c 510:* rwm"),
        "{}",
        r.config_diff
    );
    assert!(host.get(RECORD).contains("major 510 nvidia-uvm\n"));
}

#[tokio::test]
async fn dev_values_are_read_as_proxmox_reads_them() {
    let (_d, host) = pve_host(&format!(
        "{BASE}dev0: gid=44,/dev/nvidia1\ndev1: mode=0666,path=/dev/nvidia-uvm\ndev2: /dev/dri/renderD128,gid=104\n"
    ));
    engine(&host, Target::Pve)
        .apply(&request("0", Mode::Dev))
        .await
        .unwrap();
    let conf = host.get(CONF);
    assert!(!conf.contains("nvidia1"), "GPU 1 is gone:\n{conf}");
    assert!(
        conf.contains("dev2: /dev/dri/renderD128,gid=104\n"),
        "{conf}"
    );
    assert!(conf.contains("/dev/nvidia0,"), "{conf}");
    // Its uvm entry already gives the node as the host has it (0666): it stays as written.
    assert!(
        conf.contains("dev1: mode=0666,path=/dev/nvidia-uvm\n"),
        "{conf}"
    );
}

#[tokio::test]
async fn a_pending_delete_is_never_reused_and_its_lines_are_replaced() {
    // Removing GPU 0 from a running container left `delete: dev0,dev1` pending.
    let (_d, host) = pve_host(&format!(
        "{BASE}dev0: /dev/nvidia0,mode=0666\ndev1: /dev/nvidiactl,mode=0666\n\n[pve:pending]\ndelete: dev0,dev1\n"
    ));
    engine(&host, Target::Pve)
        .apply(&request("0", Mode::Dev))
        .await
        .unwrap();
    let conf = host.get(CONF);
    let main = &conf[..conf.find("\n[").unwrap()];
    assert!(!main.contains("dev0:") && !main.contains("dev1:"), "{conf}");
    for (i, node) in ["nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"]
        .iter()
        .enumerate()
    {
        let line = format!("dev{}: /dev/{node},mode=0666\n", i + 2);
        assert!(main.contains(&line), "{line:?} not in\n{conf}");
    }
    assert!(
        conf.ends_with("[pve:pending]\ndelete: dev0,dev1\n"),
        "{conf}"
    );
}

#[tokio::test]
async fn a_pending_device_of_someone_else_keeps_its_index() {
    let (_d, host) = pve_host(&format!(
        "{BASE}\n[pve:pending]\ndev0: /dev/dri/renderD128\n"
    ));
    engine(&host, Target::Pve)
        .apply(&request("1", Mode::Dev))
        .await
        .unwrap();
    let conf = host.get(CONF);
    assert!(conf.contains("dev1: /dev/nvidia1,mode=0666\n"), "{conf}");
    assert!(
        !conf[..conf.find("\n[").unwrap()].contains("dev0:"),
        "{conf}"
    );
}

#[tokio::test]
async fn a_pending_nvidia_device_is_refused_with_how_to_settle_it() {
    let conf = format!("{BASE}\n[pve:pending]\ndev0: /dev/nvidia0\n");
    let (_d, host) = pve_host(&conf);
    let before = host.get(CONF);
    let e = engine(&host, Target::Pve);
    for (gpus, mode) in [("1", Mode::Dev), ("1", Mode::Raw), ("none", Mode::Dev)] {
        let f = e.apply(&request(gpus, mode)).await.unwrap_err();
        assert_eq!(f.error.kind(), ErrorKind::Locked, "{gpus} {mode:?}");
        let msg = f.error.to_string();
        assert!(
            msg.contains("dev0: /dev/nvidia0 passes /dev/nvidia0"),
            "{msg}"
        );
        assert!(msg.contains("pct set 101 --revert dev0"), "{msg}");
        assert_eq!(host.get(CONF), before);
    }
    let f = e
        .remove(&"101".parse::<CtId>().unwrap(), false)
        .await
        .unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Locked);
    assert_eq!(host.get(CONF), before);
    assert!(!host.path(RECORD).exists(), "a refused run writes nothing");
}

#[tokio::test]
async fn a_pending_device_that_is_wanted_is_kept_as_it_is() {
    let (_d, host) = pve_host(&format!(
        "{BASE}dev0: /dev/nvidiactl,mode=0666\n\n[pve:pending]\ndev1: /dev/nvidia1,mode=0666\n"
    ));
    engine(&host, Target::Pve)
        .apply(&request("1", Mode::Dev))
        .await
        .unwrap();
    let conf = host.get(CONF);
    let main = &conf[..conf.find("\n[").unwrap()];
    assert!(
        !main.contains("nvidia1"),
        "the pending entry gives it:\n{conf}"
    );
    assert!(main.contains("dev0: /dev/nvidiactl,mode=0666\n"), "{conf}");
    assert!(main.contains("dev2: /dev/nvidia-uvm,mode=0666\n"), "{conf}");
}

#[tokio::test]
async fn pending_raw_lines_replace_the_main_ones() {
    let conf = format!("{BASE}\n[pve:pending]\nlxc.cgroup2.devices.allow: c 10:200 rwm\n");
    let (_d, host) = pve_host(&conf);
    let e = engine(&host, Target::Pve);
    let f = e.apply(&request("1", Mode::Raw)).await.unwrap_err();
    assert_eq!(f.error.kind(), ErrorKind::Locked);
    assert!(f.error.to_string().contains("--revert lxc"), "{}", f.error);
    assert_eq!(host.get(CONF), conf);
    // devN entries are not raw lines: dev mode is not in their way.
    e.apply(&request("1", Mode::Dev)).await.unwrap();
    assert!(host.get(CONF).contains("dev0: /dev/nvidia1,mode=0666\n"));
}

/// The host's userspace at the module's version, where `host-libs` finds it.
fn with_host_libs(host: &FsHost) {
    for name in ["libcuda.so.580.159.04", "libnvidia-ml.so.580.159.04"] {
        host.put(&format!("/usr/local/nvidia/lib64/{name}"), b"\x7fELF");
    }
    host.put("/usr/local/nvidia/bin/nvidia-smi", b"#!");
}

#[tokio::test]
async fn the_strategy_is_read_back_and_host_libs_lines_are_known_by_evidence() {
    let user = "lxc.mount.entry: /opt/nvidia-container opt/nvidia-container none bind,optional,create=dir\nlxc.mount.entry: /srv/libcuda.so.1 usr/lib/x86_64-linux-gnu/libcuda.so.1 none bind,ro,create=file\n";
    let (_d, host) = pve_host(&format!("{BASE}{user}"));
    with_host_libs(&host);
    let e = stopped_engine(&host, Target::Pve);
    let mut req = request("1", Mode::Raw);
    req.strategy = Some(Strategy::HostLibs);
    e.apply(&req).await.unwrap();
    let conf = host.get(CONF);
    assert!(conf.contains("lxc.mount.entry: /usr/local/nvidia/lib64/libcuda.so.580.159.04 usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04 none ro,bind,optional,create=file\n"), "{conf}");
    assert!(host
        .get(RECORD)
        .contains("host-file /usr/local/nvidia/bin/nvidia-smi usr/bin/nvidia-smi\n"));
    // Without a strategy, apply keeps host-libs and check finds no drift.
    req.strategy = None;
    let r = e.apply(&req).await.unwrap();
    assert!(!r.changed, "{}", r.config_diff);
    let c = Engine::new(host.clone(), Arc::new(stopped_ct()), Target::Pve)
        .check(&"101".parse::<CtId>().unwrap(), Some(&req))
        .await
        .unwrap();
    assert!(!c.drift, "{:?}", c.findings);
    // A change of strategy takes out exactly the mounts host-libs wrote.
    req.strategy = Some(Strategy::None);
    e.apply(&req).await.unwrap();
    let conf = host.get(CONF);
    assert!(!conf.contains("/usr/local/nvidia"), "{conf}");
    assert!(conf.starts_with(&format!("{BASE}{user}")), "{conf}");
    // After a driver upgrade the old files are gone from the host; the record still knows
    // they were the tool's.
    req.strategy = Some(Strategy::HostLibs);
    e.apply(&req).await.unwrap();
    std::fs::remove_file(host.path("/usr/local/nvidia/lib64/libcuda.so.580.159.04")).unwrap();
    e.remove(&"101".parse::<CtId>().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(host.get(CONF), format!("{BASE}{user}"));
}
