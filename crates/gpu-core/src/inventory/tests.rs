use std::path::Path;

use exec_backend::{ExecError, MockHost};
use test_support::FsHost;

use super::*;
use crate::ErrorKind;

#[tokio::test]
async fn reads_the_h200_host() {
    let (_d, host) = FsHost::h200x2();
    let inv = Inventory::read(&host).await.unwrap();
    assert_eq!(inv.driver_version.as_str(), "580.159.04");
    assert_eq!(inv.gpus.len(), 2);
    assert_eq!(inv.gpus[0].pci_bus_id, "0000:00:06.0");
    assert_eq!(inv.gpus[0].minor, 0);
    assert_eq!(inv.gpus[1].index, 1);
    assert_eq!(inv.gpus[1].uuid, "GPU-7fc3e24c-6572-362c-3b22-0d1167fae655");
    assert_eq!(inv.gpus[1].model, "NVIDIA H200");
    assert_eq!(
        inv.majors,
        Majors {
            nvidia: 195,
            nvidia_uvm: Some(238),
            nvidia_caps: Some(241),
            nvidia_modeset: None
        }
    );
    assert_eq!(inv.cgroup, CgroupLayout::V2);
    assert_eq!(inv.pve_version, None);
    let uvm = inv.node("/dev/nvidia-uvm-tools").unwrap();
    assert_eq!(uvm.kind, NodeKind::StandIn);
    assert_eq!(uvm.rdev, Some((238, 1)));
    assert_eq!(inv.node("/dev/nvidiactl").unwrap().rdev, Some((195, 255)));
    assert_eq!(
        inv.node("/dev/nvidia-caps/nvidia-cap2").unwrap().rdev,
        Some((241, 2))
    );
    assert_eq!(inv.node("/dev/nvidia-caps").unwrap().kind, NodeKind::Dir);
    assert!(inv.node("/dev/nvidia-modeset").is_none());
    let paths: Vec<_> = inv
        .nodes
        .iter()
        .map(|n| n.path.display().to_string())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}

#[tokio::test]
async fn index_follows_bus_order_when_minors_are_swapped() {
    let (_d, host) = FsHost::h200x2();
    let a = "proc/driver/nvidia/gpus/0000:00:06.0/information";
    let b = "proc/driver/nvidia/gpus/0000:00:07.0/information";
    let ta = host
        .get(a)
        .replace("Device Minor: \t 0", "Device Minor: \t 1");
    let tb = host
        .get(b)
        .replace("Device Minor: \t 1", "Device Minor: \t 0");
    host.put(a, ta);
    host.put(b, tb);
    let inv = Inventory::read(&host).await.unwrap();
    assert_eq!(inv.gpus[0].pci_bus_id, "0000:00:06.0");
    assert_eq!(inv.gpus[0].minor, 1);
    assert_eq!(inv.gpus[1].minor, 0);
}

#[tokio::test]
async fn proprietary_proc_version_and_frontend_major() {
    let (_d, host) = FsHost::h200x2();
    std::fs::remove_file(host.path("/sys/module/nvidia/version")).unwrap();
    host.put(
        "/proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.127.05  Tue Oct  8 03:22:07 UTC 2024\n",
    );
    host.put(
        "/proc/devices",
        "Character devices:\n195 nvidia-frontend\n508 nvidia-uvm\n\nBlock devices:\n238 foo\n",
    );
    let inv = Inventory::read(&host).await.unwrap();
    assert_eq!(inv.driver_version.as_str(), "550.127.05");
    assert_eq!(inv.majors.nvidia, 195);
    assert_eq!(inv.majors.nvidia_uvm, Some(508));
    assert_eq!(inv.majors.nvidia_caps, None);
}

#[tokio::test]
async fn no_module_is_no_driver() {
    let (_d, host) = FsHost::h200x2();
    std::fs::remove_file(host.path("/sys/module/nvidia/version")).unwrap();
    std::fs::remove_file(host.path("/proc/driver/nvidia/version")).unwrap();
    let e = Inventory::read(&host).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostPrecondition);
    assert!(e
        .to_string()
        .contains("the NVIDIA kernel module is not loaded on this host"));
}

#[tokio::test]
async fn no_driver_through_the_mock() {
    let mut host = MockHost::new();
    host.expect_name().return_const("node1".to_string());
    host.expect_read_file().returning(|p: &Path| {
        Err(ExecError::NotFound {
            target: "node1".into(),
            path: p.to_owned(),
        })
    });
    let e = Inventory::read(&host).await.unwrap_err();
    assert!(
        matches!(e, Error::NoDriver { ref host } if host == "node1"),
        "{e}"
    );
}

#[tokio::test]
async fn v1_devices_mount_means_v1_layout() {
    let (_d, host) = FsHost::h200x2();
    host.put(
        "/proc/self/mounts",
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid 0 0\ncgroup /sys/fs/cgroup/devices cgroup rw,nosuid,nodev,noexec,relatime,devices 0 0\n",
    );
    assert_eq!(
        Inventory::read(&host).await.unwrap().cgroup,
        CgroupLayout::V1Devices
    );
    host.put(
        "/proc/self/mounts",
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n",
    );
    assert_eq!(
        Inventory::read(&host).await.unwrap().cgroup,
        CgroupLayout::V2
    );
}

#[tokio::test]
async fn pve_version_from_dpkg_status() {
    let (_d, host) = FsHost::h200x2();
    host.put(
        "/var/lib/dpkg/status",
        "Package: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\n",
    );
    let inv = Inventory::read(&host).await.unwrap();
    assert_eq!(inv.pve_version.as_deref(), Some("8.2.4"));
    assert!(inv.pve_at_least(8, 1));
    assert!(!inv.pve_at_least(8, 3));
}

#[test]
fn dpkg_ignores_removed_packages() {
    let s = "Package: pve-manager\nStatus: deinstall ok config-files\nVersion: 7.4-3\n";
    assert_eq!(dpkg_version(s, "pve-manager"), None);
}

#[test]
fn mig_minors_per_gpu() {
    let m = MigMinors::parse(
        "config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\ngpu1/gi0/access 138\ngpu10/gi0/access 999\n",
    );
    assert_eq!(m.for_gpus(&[1]), vec![1, 2, 138]);
    assert_eq!(m.for_gpus(&[0]), vec![1, 2, 3, 4]);
}

#[test]
fn pci_keys() {
    assert_eq!(pci_key("0000:00:06.0"), Some((0, 0, 6, 0)));
    assert_eq!(pci_key("00000000:81:00.1"), Some((0, 0x81, 0, 1)));
    assert_eq!(pci_key("81:00.1"), Some((0, 0x81, 0, 1)));
    assert_eq!(pci_key("81:00"), None);
    assert_eq!(pci_key("x:00.0"), None);
}

/// The H200 host with one GPU's `information` file changed by `edit`.
fn with_gpu_info(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, FsHost) {
    let (d, host) = FsHost::h200x2();
    let p = "proc/driver/nvidia/gpus/0000:00:07.0/information";
    let text = edit(&host.get(p));
    host.put(p, text);
    (d, host)
}

/// Inventory errors: exit 8, with the problem and the host files in the message.
async fn refused(host: &FsHost, needles: &[&str]) {
    let e = Inventory::read(host).await.unwrap_err();
    assert!(matches!(e, Error::BadInventory { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::HostPrecondition);
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "{n:?} not in {text}");
    }
}

#[tokio::test]
async fn gpu_minors_that_cannot_be_right_are_refused() {
    let b0 = "/proc/driver/nvidia/gpus/0000:00:06.0/information";
    let b1 = "/proc/driver/nvidia/gpus/0000:00:07.0/information";
    let minor = |m: &str| {
        let m = m.to_owned();
        move |t: &str| t.replace("Device Minor: \t 1", &format!("Device Minor: \t {m}"))
    };
    let (_d, host) = with_gpu_info(minor("0"));
    refused(&host, &["the same device minor 0", b0, b1]).await;
    let (_d, host) = with_gpu_info(minor("255"));
    refused(&host, &["device minor 255, which is /dev/nvidiactl's", b1]).await;
    let (_d, host) = with_gpu_info(minor("254"));
    refused(&host, &["device minor 254, which is /dev/nvidia-modeset's"]).await;
    let (_d, host) = with_gpu_info(minor("300"));
    refused(&host, &["device minor 300; GPU minors are 0 to 253"]).await;
    // 253 is a GPU's.
    let (_d, host) = with_gpu_info(minor("253"));
    assert_eq!(Inventory::read(&host).await.unwrap().gpus[1].minor, 253);
}

#[tokio::test]
async fn gpu_information_that_is_junk_or_cut_short_is_refused() {
    let (_d, host) = with_gpu_info(|t| t.replace("Device Minor: \t 1", "Device Minor: \t one"));
    refused(&host, &["its Device Minor \"one\" is not a number"]).await;
    let (_d, host) = with_gpu_info(|t| t.replace("Device Minor: \t 1", "Device Minor: \t -1"));
    refused(&host, &["is not a number"]).await;
    let (_d, host) = with_gpu_info(|t| t[..t.find("Device Minor").unwrap()].to_owned());
    refused(&host, &["no Device Minor line (is it cut short?)"]).await;
    let (_d, host) = with_gpu_info(|_| String::new());
    refused(&host, &["it is empty", "0000:00:07.0/information"]).await;
    let (_d, host) = with_gpu_info(|t| t.replace("0000:00:07.0", "zz:zz"));
    refused(&host, &["Bus Location \"zz:zz\" is not a PCI bus id"]).await;
    let (_d, host) = with_gpu_info(|t| {
        let uuid = "GPU-7fc3e24c-6572-362c-3b22-0d1167fae655";
        t.replace(uuid, "GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836")
    });
    refused(&host, &["the same UUID GPU-8ec68ad8"]).await;
}

#[tokio::test]
async fn a_proc_devices_that_is_not_the_kernels_is_refused() {
    for (text, needle) in [
        ("", "it is empty"),
        ("\n\n", "it is empty"),
        (
            "Block devices:\n8 sd\n",
            "no \"Character devices:\" section",
        ),
        (
            "Character devices:\n195 nvidia\nabc nvidia-uvm\n",
            "\"abc nvidia-uvm\"",
        ),
        (
            "Character devices:\n195 nvidia\n99999 nvidia-uvm\n",
            "\"99999 nvidia-uvm\"",
        ),
        ("Character devices:\n195\n", "\"195\""),
        (
            "Character devices:\n195 nvidia extra\n",
            "is not a character device",
        ),
    ] {
        let (_d, host) = FsHost::h200x2();
        host.put("/proc/devices", text);
        refused(&host, &[needle, "/proc/devices"]).await;
    }
}

#[tokio::test]
async fn a_driver_version_file_of_junk_is_refused() {
    let (_d, host) = FsHost::h200x2();
    host.put("/sys/module/nvidia/version", "\u{0}\u{0}garbage\n");
    refused(
        &host,
        &["names no driver version", "/sys/module/nvidia/version"],
    )
    .await;
}

#[tokio::test]
async fn a_node_left_from_before_a_module_reload_is_stale() {
    let mut nodes = test_support::testdata::h200x2_dev();
    let (_d, host) = FsHost::h200x2();
    let host = host.with_char_devices(&nodes);
    let inv = Inventory::read(&host).await.unwrap();
    assert!(inv.stale_nodes().is_empty(), "{:?}", inv.stale_nodes());
    // The uvm major was 237 before a reload; /proc/devices says 238 now.
    for n in &mut nodes {
        if n.path == "/dev/nvidia-uvm" {
            n.rdev = Some((237, 0));
        }
    }
    let (_d, host) = FsHost::h200x2();
    let host = host.with_char_devices(&nodes);
    let inv = Inventory::read(&host).await.unwrap();
    let stale: Vec<_> = inv
        .stale_nodes()
        .into_iter()
        .map(|(n, want)| (n.path.display().to_string(), n.rdev, want))
        .collect();
    assert_eq!(
        stale,
        vec![("/dev/nvidia-uvm".to_owned(), Some((237, 0)), (238, 0))]
    );
}
