//! What exec-backend's own tests share beyond `test-support` (the workspace's test helpers:
//! the root/tool rule, real LXC containers, a private sshd): the conformance suite every
//! `ContainerExec` backend passes, and a process check.

#![allow(dead_code)]

use std::path::Path;

/// True while `pid` exists and is not a zombie.
pub fn proc_alive(proc_root: &Path, pid: u32) -> bool {
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

pub mod suite;

/// What every `Host` promises for [`exec_backend::WriteOptions::keep_backups`], checked on
/// `host` whose root is `root`; `sessions` (SSH) counts the node's sessions, and the write
/// with its pruning must be one.
pub async fn pruning_contract(
    host: &dyn exec_backend::Host,
    root: &Path,
    sessions: Option<&dyn Fn() -> usize>,
) {
    use exec_backend::WriteOptions;
    let conf = Path::new("/etc/pve/lxc/101.conf");
    let dir = root.join("var/lib/phoenix-gpu/backups/101");
    std::fs::create_dir_all(root.join("etc/pve/lxc")).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(root.join("etc/pve/lxc/101.conf"), b"v0\n").unwrap();
    // Twelve earlier backups, and what is never a backup of ours.
    for i in 1..=12 {
        std::fs::write(dir.join(format!("20260101T0000{i:02}.000Z.conf")), b"old\n").unwrap();
    }
    std::fs::write(
        dir.join(".20260101T000000.000Z.conf.phoenix-tmp.1.x"),
        b"tmp\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine\n").unwrap();
    std::fs::create_dir(dir.join("20260101T000013.000Z.conf")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("20260101T000014.000Z.conf")).unwrap();
    let opts = |name: &str| WriteOptions {
        backup_to: Some(format!("/var/lib/phoenix-gpu/backups/101/{name}").into()),
        keep_backups: Some(3),
        ..WriteOptions::default()
    };
    let before = sessions.map(|s| s());
    host.write_file_atomic(conf, b"v1\n", &opts("20260102T000000.000Z.conf"))
        .await
        .unwrap();
    if let (Some(s), Some(b)) = (sessions, before) {
        assert_eq!(s() - b, 1, "the write and its pruning are one session");
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".20260101T000000.000Z.conf.phoenix-tmp.1.x",
            "20260101T000001.000Z.conf",
            "20260101T000011.000Z.conf",
            "20260101T000012.000Z.conf",
            "20260101T000013.000Z.conf",
            "20260101T000014.000Z.conf",
            "20260102T000000.000Z.conf",
            "notes.txt",
        ],
        "the oldest, the newest three, and nothing that is not a backup touched"
    );
    assert_eq!(
        std::fs::read(dir.join("20260102T000000.000Z.conf")).unwrap(),
        b"v0\n"
    );
    // A write refused (the config changed under us) prunes nothing.
    let refused = WriteOptions {
        expect_previous: Some(Some(b"not what it holds\n".to_vec())),
        ..opts("20260103T000000.000Z.conf")
    };
    host.write_file_atomic(conf, b"v2\n", &refused)
        .await
        .unwrap_err();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len());
    // Without keep_backups nothing is pruned.
    let plain = WriteOptions {
        keep_backups: None,
        ..opts("20260104T000000.000Z.conf")
    };
    host.write_file_atomic(conf, b"v3\n", &plain).await.unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len() + 1);
}
