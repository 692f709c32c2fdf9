use super::*;
use crate::inventory::read_proc_devices;
use crate::inventory::Inventory;
use crate::passthrough::{Class, Evidence, MountEntry};
use crate::record::NodeRecord;
use lxc_conf::{Dialect, Document};
use test_support::FsHost;

async fn h200() -> Inventory {
    let (_d, host) = FsHost::h200x2();
    Inventory::read(&host).await.unwrap()
}

/// The host library the `host-libs` strategy binds in these tests.
const LIB: &str = "/usr/lib/x86_64-linux-gnu/libcuda.so.1";

/// The evidence of the captured host: its `/proc/devices`, an empty node record, and
/// `host-libs` binding [`LIB`].
async fn evidence() -> Evidence {
    let (_d, host) = FsHost::h200x2();
    Evidence {
        devices: read_proc_devices(&host).await.unwrap(),
        record: NodeRecord::default(),
        host_files: Some(vec![MountEntry {
            source: LIB.into(),
            target: LIB[1..].into(),
            options: "bind,ro,create=file".into(),
        }]),
        root: None,
    }
}

/// The tool's lines of `text` (`key: value` lines, Proxmox's dialect), as the evidence reads
/// them.
fn lines(ev: &Evidence, text: &str) -> Vec<ToolLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            match ev.classify(k, v, true) {
                Class::Ours(passes) => Some(ToolLine {
                    key: k.to_owned(),
                    value: v.to_owned(),
                    passes,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The raw lines of GPU `minor` on a cgroup v2 host (uvm major 238).
fn raw_gpu(minor: u32) -> String {
    format!(
        "lxc.cgroup2.devices.allow: c 195:{minor} rwm
lxc.cgroup2.devices.allow: c 195:255 rwm
lxc.cgroup2.devices.allow: c 238:* rwm
lxc.mount.entry: /dev/nvidia{minor} dev/nvidia{minor} none bind,optional,create=file
lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file
lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file
"
    )
}

async fn change(before: &str, after: &str) -> LineChange {
    change_by(&evidence().await, before, after)
}

fn change_by(ev: &Evidence, before: &str, after: &str) -> LineChange {
    LineChange {
        before: lines(ev, before),
        after: lines(ev, after),
        idmap: IdMap::default(),
    }
}

fn rule(s: &str) -> Rule {
    let (maj, min) = s.split_once(':').unwrap();
    Rule {
        major: maj.parse().unwrap(),
        minor: (min != "*").then(|| min.parse().unwrap()),
    }
}

fn rules(v: &[Rule]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// A node line of the look script for a char device `maj:min` (decimal in, hex out).
fn node(path: &str, maj: u32, min: u32, mode: u32, uid: u32, gid: u32) -> String {
    format!(
        "node {:x} {maj:x} {min:x} {uid} {gid} {path}\n",
        0o020000 | mode
    )
}

/// The look's line for the host's node at `path` bind-mounted into a privileged container.
fn host_node(inv: &Inventory, path: &str) -> String {
    let n = inv.node(path).unwrap();
    let (maj, min) = n.rdev.unwrap();
    node(path, maj, min, n.mode, n.uid, n.gid)
}

#[tokio::test]
async fn a_gpu_swap_is_devices_only() {
    let inv = h200().await;
    let (before, after) = shape(&change(&raw_gpu(0), &raw_gpu(1)).await, &inv).unwrap();
    assert!(before.rules.contains(&rule("195:0")));
    assert!(after.rules.contains(&rule("195:1")) && !after.rules.contains(&rule("195:0")));
    // A bind mount shows the host's node as it is: its numbers, mode and owner.
    let host = inv.node("/dev/nvidia1").unwrap();
    let n = &after.nodes["/dev/nvidia1"];
    assert_eq!(
        (n.rdev, n.mode, n.uid, n.gid),
        ((195, 1), host.mode, host.uid, host.gid)
    );
    assert_eq!(
        after.nodes.keys().collect::<Vec<_>>(),
        [
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia1",
            "/dev/nvidiactl"
        ]
    );
}

#[tokio::test]
async fn host_libs_mounts_coming_or_going_need_a_restart() {
    let inv = h200().await;
    let lib = format!(
        "lxc.mount.entry: {LIB} {} none bind,ro,create=file\n",
        &LIB[1..]
    );
    let with = format!("{}{lib}", raw_gpu(1));
    for (b, a) in [(raw_gpu(1), with.clone()), (with.clone(), raw_gpu(0))] {
        let (reason, _) = shape(&change(&b, &a).await, &inv).unwrap_err();
        assert_eq!(reason, RestartReason::HostLibs);
    }
    // The same mounts on both sides: a GPU swap under host-libs is live.
    let swapped = format!("{}{lib}", raw_gpu(0));
    assert!(shape(&change(&with, &swapped).await, &inv).is_ok());
}

#[tokio::test]
async fn mig_capabilities_coming_need_a_restart() {
    let inv = h200().await;
    let mig = format!(
        "{}lxc.mount.entry: /dev/nvidia-caps dev/nvidia-caps none bind,optional,create=dir\n",
        raw_gpu(1)
    );
    let (reason, _) = shape(&change(&raw_gpu(1), &mig).await, &inv).unwrap_err();
    assert_eq!(reason, RestartReason::Mig);
}

#[tokio::test]
async fn dev_entries_of_an_unprivileged_container_map_owner_and_mode() {
    let inv = h200().await;
    let doc = Document::parse(b"unprivileged: 1\n", Dialect::Pve);
    let after = lines(
        &evidence().await,
        "dev0: /dev/nvidia1,gid=44,mode=0666
dev1: /dev/nvidiactl
",
    );
    let lc = LineChange {
        before: Vec::new(),
        after,
        idmap: IdMap::of(&doc, true),
    };
    let (_, after) = shape(&lc, &inv).unwrap();
    let gpu = &after.nodes["/dev/nvidia1"];
    assert_eq!(
        (gpu.mode, gpu.uid, gpu.gid),
        (0o666, 100_000, 100_044),
        "mode and ids of the entry, mapped"
    );
    let ctl = &after.nodes["/dev/nvidiactl"];
    assert_eq!((ctl.mode, ctl.uid, ctl.gid), (0o660, 100_000, 100_000));
    // Proxmox allows each devN node's numbers.
    assert_eq!(
        rules(&after.rules.iter().copied().collect::<Vec<_>>()),
        ["c 195:1 rwm", "c 195:255 rwm"]
    );
}

#[test]
fn the_look_parses() {
    let text = format!(
        "missing umount\n{}{}fd 21b6 c3 0 /proc/42/fd/5\nfd 21b6 1 3 /proc/42/fd/0\nfd 81a4 c3 1 /proc/42/fd/6\ncomm 42 python3 -u\ncg 42 /\ncg 1 /init.scope\n",
        node("/dev/nvidia0", 195, 0, 0o666, 0, 0),
        "node 41ed 0 0 0 0 /dev/nvidia-caps\n",
    );
    let i = Inside::parse(&text);
    assert_eq!(i.missing, ["umount"]);
    assert_eq!(
        i.nodes["/dev/nvidia0"],
        SeenNode {
            char_device: true,
            rdev: (195, 0),
            mode: 0o666,
            uid: 0,
            gid: 0
        }
    );
    assert!(!i.nodes["/dev/nvidia-caps"].char_device);
    // Only character devices count; the regular file (81a4) does not.
    assert_eq!(i.open, [(42, (195, 0)), (42, (1, 3))]);
    assert_eq!(i.comm[&42], "python3 -u");
    assert_eq!(i.device_cgroups.len(), 2);
}

#[tokio::test]
async fn a_swap_gives_one_node_takes_one_and_names_its_holder() {
    let inv = h200().await;
    let (before, after) = shape(&change(&raw_gpu(0), &raw_gpu(1)).await, &inv).unwrap();
    let look = format!(
        "{}{}{}{}fd 21b6 c3 0 /proc/7/fd/3\nfd 21b6 c3 ff /proc/7/fd/4\nfd 21b6 c3 ff /proc/9/fd/4\ncomm 7 python3\ncomm 9 nvtop\n",
        host_node(&inv, "/dev/nvidia0"),
        host_node(&inv, "/dev/nvidiactl"),
        host_node(&inv, "/dev/nvidia-uvm"),
        host_node(&inv, "/dev/nvidia-uvm-tools"),
    );
    let p = LivePlan::compute(&before, &after, &Inside::parse(&look), &IdMap::default());
    assert_eq!(
        p.add.iter().map(|n| n.path.as_str()).collect::<Vec<_>>(),
        ["/dev/nvidia1"]
    );
    assert_eq!(p.remove, ["/dev/nvidia0"]);
    assert_eq!(rules(&p.deny), ["c 195:0 rwm"]);
    assert_eq!(
        rules(&p.allow),
        ["c 195:1 rwm", "c 195:255 rwm", "c 238:* rwm"]
    );
    // The process on GPU 0 holds it; nvidiactl stays, so its holders do not count.
    assert_eq!(
        p.holders,
        [Holder {
            pid: 7,
            comm: "python3".into(),
            device: "/dev/nvidia0".into()
        }]
    );
}

#[tokio::test]
async fn a_wildcard_rule_taken_away_spares_what_stays_allowed() {
    let inv = h200().await;
    let before = raw_gpu(1).replace("c 195:1 rwm", "c 195:* rwm");
    let (before, after) = shape(&change(&before, &raw_gpu(1)).await, &inv).unwrap();
    let look = format!(
        "{}fd 21b6 c3 1 /proc/7/fd/3\ncomm 7 python3\n",
        node("/dev/nvidia1", 195, 1, 0o666, 0, 0)
    );
    let p = LivePlan::compute(&before, &after, &Inside::parse(&look), &IdMap::default());
    assert_eq!(rules(&p.deny), ["c 195:* rwm"]);
    assert!(p.holders.is_empty(), "{:?}", p.holders);
}

#[tokio::test]
async fn a_moved_uvm_major_replaces_the_nodes() {
    let mut inv = h200().await;
    // The host's uvm module came back with major 511; the container still has 238.
    inv.majors.nvidia_uvm = Some(511);
    for n in &mut inv.nodes {
        if let Some((238, m)) = n.rdev {
            n.rdev = Some((511, m));
        }
    }
    // /proc/devices says so; the node record remembers that nvidia-uvm held 238.
    let mut ev = evidence().await;
    for (major, _) in &mut ev.devices.chars {
        if *major == 238 {
            *major = 511;
        }
    }
    ev.record = NodeRecord::parse("major 238 nvidia-uvm\n");
    let after = raw_gpu(1).replace("c 238:*", "c 511:*");
    let (before, after) = shape(&change_by(&ev, &raw_gpu(1), &after), &inv).unwrap();
    // The container's nodes as they were bound at its start: uvm with the old major.
    let old = |path: &str| host_node(&inv, path).replace(" 1ff ", " ee ");
    let look = format!(
        "{}{}{}{}",
        host_node(&inv, "/dev/nvidia1"),
        host_node(&inv, "/dev/nvidiactl"),
        old("/dev/nvidia-uvm"),
        old("/dev/nvidia-uvm-tools"),
    );
    let p = LivePlan::compute(&before, &after, &Inside::parse(&look), &IdMap::default());
    assert_eq!(
        p.add
            .iter()
            .map(|n| (n.path.as_str(), n.rdev))
            .collect::<Vec<_>>(),
        [
            ("/dev/nvidia-uvm", (511, 0)),
            ("/dev/nvidia-uvm-tools", (511, 1))
        ]
    );
    assert!(p.remove.is_empty());
    assert_eq!(rules(&p.deny), ["c 238:* rwm"]);
}

#[tokio::test]
async fn nodes_that_look_right_are_left_alone() {
    let inv = h200().await;
    let (before, after) = shape(&change(&raw_gpu(1), &raw_gpu(1)).await, &inv).unwrap();
    // An unprivileged container sees the host's root-owned nodes as the overflow id.
    let doc = Document::parse(b"lxc.idmap = b 0 100000 65536\n", Dialect::Lxc);
    let idmap = IdMap::of(&doc, true);
    let seen = |n: &NodeSpec| {
        node(
            &n.path,
            n.rdev.0,
            n.rdev.1,
            n.mode,
            idmap.seen_inside(Id::User, n.uid),
            idmap.seen_inside(Id::Group, n.gid),
        )
    };
    let look: String = after.nodes.values().map(seen).collect();
    let p = LivePlan::compute(&before, &after, &Inside::parse(&look), &idmap);
    assert!(!p.nodes_change(), "{p:?}");
    assert!(p.deny.is_empty());
    // The same look with the GPU's node of another mode (lxc-device makes them 0644 where
    // the host's are 0666): remade.
    let mode = after.nodes["/dev/nvidia1"].mode;
    let look = look.replace(
        &format!("{:x} c3 1 ", 0o020000 | mode),
        &format!("{:x} c3 1 ", 0o020000 | 0o600),
    );
    let p = LivePlan::compute(&before, &after, &Inside::parse(&look), &idmap);
    assert_eq!(
        p.add.iter().map(|n| n.path.as_str()).collect::<Vec<_>>(),
        ["/dev/nvidia1"]
    );
}

#[test]
fn staged_names_are_one_component() {
    let n = NodeSpec {
        path: "/dev/nvidia-uvm".into(),
        rdev: (238, 0),
        mode: 0o666,
        uid: 0,
        gid: 0,
    };
    assert_eq!(staged_name("00ff", &n), ".phoenix-gpu-00ff-nvidia-uvm");
}
