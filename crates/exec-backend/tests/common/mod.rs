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
