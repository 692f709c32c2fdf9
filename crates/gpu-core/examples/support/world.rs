//! A modelled host and container for the examples and the API tests, made of the workspace's
//! stand-ins (`test-support`): an `FsHost` over a copy of the captured host and a
//! `ScriptedCt` answering as the probe would.
//!
//! - The host is the captured 2 x H200 host (`testdata/hosts/h200x2`, the same files as
//!   `examples/h200x2`) in a temporary directory: its files, its `/dev/nvidia*` nodes reported
//!   as character devices with the captured numbers, and one plain LXC container `ct1` under
//!   `/var/lib/lxc`. Writes land in the same tree, so a second run reads what the first wrote.
//!   It runs no program (each exits 127, not found).
//! - The container runs; `stop` and `start` change its state, and at `start` it takes the
//!   config's `lxc.mount.entry` lines of `/dev/nvidia*` nodes as its `/dev`. Any exec answers
//!   as the probe would, listing those nodes.
//!
//! Every call to either backend is recorded, in order, as one line (`host read_file
//! /proc/devices`, `ct exec sh -c <script>`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use exec_backend::{Cmd, CtState, ExecError, ExitStatus, Output};
use test_support::testdata::h200x2_dev;
use test_support::{CallLog, CtModel, CtScript, FsHost, HostTree, ScriptedCt};

/// The container's name.
pub const CT: &str = "ct1";
/// Its config on the host.
pub const CONFIG: &str = "/var/lib/lxc/ct1/config";
/// Its config before any run.
pub const CONFIG_TEXT: &str = "# a busybox container\nlxc.uts.name = ct1\nlxc.rootfs.path = dir:/var/lib/lxc/ct1/rootfs\nlxc.net.0.type = empty\n";

/// What is inside the container: the device nodes it got at its last start.
pub struct Inside {
    host: Arc<FsHost>,
    /// The host's device nodes: path and numbers.
    nodes: BTreeMap<String, (u32, u32)>,
    /// The container's `/dev/nvidia*`: path and numbers.
    pub dev: Vec<(String, (u32, u32))>,
    /// gpu-check was put in place. This busybox container has no glibc, so it cannot run.
    pub gpu_check: bool,
}

impl Inside {
    /// What the probe (any exec) prints inside the container; `mode` is the probe's third
    /// argument (`install` puts gpu-check in place).
    fn probe_output(&mut self, mode: Option<&str>) -> String {
        let mut out = String::from("probe=1\nos_id=busybox\narch=x86_64\n");
        if mode == Some("install") && !self.gpu_check {
            self.gpu_check = true;
            out.push_str("gpu_check_installed=1\n");
        }
        if self.gpu_check {
            out.push_str(
                "gpu_check_present=1\ngpu_check_rc=127\ngpu_check_error=sh: gpu-check: not found\n",
            );
        }
        for (path, (major, minor)) in &self.dev {
            out.push_str(&format!("dev={path} c {major:x}:{minor:x}\n"));
        }
        out
    }
}

impl CtScript for Inside {
    fn exec(ct: &mut CtModel<Inside>, cmd: &Cmd) -> Result<Output, ExecError> {
        if ct.state != CtState::Running {
            return Err(ExecError::Failed {
                target: "model".into(),
                argv: cmd.display_argv(),
                status: ExitStatus::Code(1),
                stderr_tail: "container is not running".into(),
            });
        }
        let mode = cmd.argv.get(6).map(|m| m.to_string_lossy().into_owned());
        Ok(Output::ok(ct.probe_output(mode.as_deref())))
    }

    /// The container takes the config's NVIDIA mount entries as its /dev.
    fn started(ct: &mut CtModel<Inside>) {
        let config = std::fs::read_to_string(ct.host.path(CONFIG)).unwrap_or_default();
        let dev = config
            .lines()
            .filter_map(|l| {
                let (key, value) = l.split_once('=')?;
                if key.trim() != "lxc.mount.entry" {
                    return None;
                }
                let src = value.split_whitespace().next()?;
                Some((src.to_owned(), *ct.nodes.get(src)?))
            })
            .collect();
        ct.dev = dev;
    }

    fn stopped(ct: &mut CtModel<Inside>) {
        ct.dev.clear();
    }
}

/// The host and the container, and the record of their calls.
pub struct World {
    calls: CallLog,
    host: Arc<FsHost>,
    ct: Arc<ScriptedCt<Inside>>,
    _tree: HostTree,
}

impl World {
    /// The captured H200 host with the container `ct1`, running.
    pub fn h200x2() -> World {
        let tree = HostTree::h200x2();
        tree.put(CONFIG, CONFIG_TEXT);
        let dev = h200x2_dev();
        let calls = CallLog::new();
        let host = Arc::new(
            FsHost::new(tree.root())
                .named("model")
                .with_calls(calls.clone())
                .with_char_devices(&dev),
        );
        let inside = Inside {
            host: host.clone(),
            nodes: dev
                .iter()
                .filter_map(|n| Some((n.path.clone(), n.rdev?)))
                .collect(),
            dev: Vec::new(),
            gpu_check: false,
        };
        let ct = ScriptedCt::new(CtState::Running, inside)
            .named(CT)
            .with_calls(calls.clone());
        ct.with(Inside::started);
        World {
            calls,
            host,
            ct: Arc::new(ct),
            _tree: tree,
        }
    }

    /// The calls so far, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        self.calls.take()
    }

    /// The bytes of a host file.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.host.path(path)).ok()
    }

    /// The host.
    pub fn host(&self) -> Arc<FsHost> {
        self.host.clone()
    }

    /// The container `ct1`.
    pub fn container(&self) -> Arc<ScriptedCt<Inside>> {
        self.ct.clone()
    }
}
