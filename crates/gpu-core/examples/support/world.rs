//! A modelled host and container for the mock examples and tests: mockall's `MockHost` and
//! `MockContainerExec` (exec-backend's `mock` feature) with expectations that answer from one
//! shared state.
//!
//! - The host is the captured 2 x H200 tree of `examples/h200x2` held in memory: its files,
//!   its `/dev/nvidia*` nodes as character devices with the captured numbers, and one plain LXC
//!   container `ct1` under `/var/lib/lxc`. Writes land in the same map, so a second run reads
//!   what the first wrote.
//! - The container runs; `stop` and `start` change its state, and at `start` it takes the
//!   config's `lxc.mount.entry` lines of `/dev/nvidia*` nodes as its `/dev`. Any exec answers
//!   as the probe would, listing those nodes.
//!
//! Every call to either backend is recorded, in order, as one line (`host read_file
//! /proc/devices`, `ct exec sh -c <script>`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use exec_backend::{
    Cmd, CtRef, CtState, DirEntry, ExecError, ExitStatus, FileKind, FileMeta, MockContainerExec,
    MockHost, Output,
};

/// The container's name.
pub const CT: &str = "ct1";
/// Its config on the host.
pub const CONFIG: &str = "/var/lib/lxc/ct1/config";
/// Its config before any run.
pub const CONFIG_TEXT: &str = "# a busybox container\nlxc.uts.name = ct1\nlxc.rootfs.path = dir:/var/lib/lxc/ct1/rootfs\nlxc.net.0.type = empty\n";

/// The captured host's device nodes: path, major, minor.
const NODES: &[(&str, u32, u32)] = &[
    ("/dev/nvidia0", 195, 0),
    ("/dev/nvidia1", 195, 1),
    ("/dev/nvidiactl", 195, 255),
    ("/dev/nvidia-uvm", 238, 0),
    ("/dev/nvidia-uvm-tools", 238, 1),
    ("/dev/nvidia-caps/nvidia-cap1", 241, 1),
    ("/dev/nvidia-caps/nvidia-cap2", 241, 2),
];

/// The shared state behind both mocks.
#[derive(Debug, Default)]
pub struct State {
    /// Regular files by host path.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// Character devices by host path.
    pub nodes: BTreeMap<PathBuf, (u32, u32)>,
    /// Whether the container runs.
    pub running: bool,
    /// The device nodes the container got at its last start: path and numbers.
    pub ct_dev: Vec<(String, (u32, u32))>,
    /// Every call, in order.
    pub calls: Vec<String>,
}

/// The host and the container, and their shared state.
pub struct World {
    /// The state.
    pub state: Arc<Mutex<State>>,
}

fn meta(kind: FileKind, rdev: Option<(u32, u32)>, size: u64) -> FileMeta {
    FileMeta {
        kind,
        rdev,
        mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        size,
    }
}

fn not_found(path: &Path) -> ExecError {
    ExecError::NotFound {
        target: "model".into(),
        path: path.to_owned(),
    }
}

fn load_tree(dir: &Path, at: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(dir).expect("examples/h200x2 beside the crate") {
        let e = e.expect("a readable directory entry");
        let host_path = at.join(e.file_name());
        if e.file_type().expect("a file type").is_dir() {
            load_tree(&e.path(), &host_path, files);
        } else {
            files.insert(host_path, std::fs::read(e.path()).expect("a readable file"));
        }
    }
}

impl State {
    fn stat(&self, path: &Path) -> Option<FileMeta> {
        if let Some(rdev) = self.nodes.get(path) {
            return Some(meta(FileKind::CharDevice, Some(*rdev), 0));
        }
        if let Some(bytes) = self.files.get(path) {
            return Some(meta(FileKind::File, None, bytes.len() as u64));
        }
        let is_dir = self
            .files
            .keys()
            .chain(self.nodes.keys())
            .any(|p| p != path && p.starts_with(path));
        is_dir.then(|| meta(FileKind::Dir, None, 0))
    }

    fn read_dir(&self, dir: &Path) -> Option<Vec<DirEntry>> {
        let mut names: Vec<PathBuf> = self
            .files
            .keys()
            .chain(self.nodes.keys())
            .filter_map(|p| {
                let rel = p.strip_prefix(dir).ok()?;
                let first = rel.components().next()?;
                Some(dir.join(first))
            })
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return None;
        }
        Some(
            names
                .into_iter()
                .filter_map(|p| {
                    Some(DirEntry {
                        name: p.file_name()?.to_owned(),
                        meta: self.stat(&p)?,
                    })
                })
                .collect(),
        )
    }

    /// The container takes the config's NVIDIA mount entries as its /dev.
    fn start_ct(&mut self) {
        let config = self
            .files
            .get(Path::new(CONFIG))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        self.ct_dev = config
            .lines()
            .filter_map(|l| {
                let (key, value) = l.split_once('=')?;
                if key.trim() != "lxc.mount.entry" {
                    return None;
                }
                let src = value.split_whitespace().next()?;
                let rdev = *self.nodes.get(Path::new(src))?;
                Some((src.to_owned(), rdev))
            })
            .collect();
        self.running = true;
    }

    /// What the probe (any exec) prints inside the container.
    fn probe_output(&self) -> String {
        let mut out = String::from("probe=1\nos_id=busybox\narch=x86_64\n");
        for (path, (major, minor)) in &self.ct_dev {
            out.push_str(&format!("dev={path} c {major:x}:{minor:x}\n"));
        }
        out
    }
}

/// `sh -c <script>` shortened for the call log.
fn argv_line(cmd: &Cmd) -> String {
    cmd.display_argv()
        .iter()
        .map(|a| {
            if a.contains('\n') {
                "<script>".to_owned()
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl World {
    /// The captured H200 host with the container `ct1`, running.
    pub fn h200x2() -> World {
        let mut files = BTreeMap::new();
        let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/h200x2");
        load_tree(&tree, Path::new("/"), &mut files);
        files.retain(|p, _| !p.starts_with("/dev") && !p.starts_with("/etc/pve"));
        files.remove(Path::new("/README.md"));
        files.insert(PathBuf::from(CONFIG), CONFIG_TEXT.as_bytes().to_vec());
        let nodes = NODES
            .iter()
            .map(|(p, a, b)| (PathBuf::from(p), (*a, *b)))
            .collect();
        let mut state = State {
            files,
            nodes,
            ..State::default()
        };
        state.start_ct();
        World {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The calls so far, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// The bytes of a host file.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.state
            .lock()
            .unwrap()
            .files
            .get(Path::new(path))
            .cloned()
    }

    /// A `MockHost` answering from the state.
    pub fn host(&self) -> MockHost {
        let mut h = MockHost::new();
        h.expect_name().returning(|| "model".into());
        h.expect_resolve().returning(|p| p.to_owned());
        let s = self.state.clone();
        h.expect_run().returning(move |cmd| {
            let mut st = s.lock().unwrap();
            st.calls.push(format!("host run {}", argv_line(cmd)));
            Ok(Output {
                status: ExitStatus::Code(127),
                stdout: Vec::new(),
                stderr: format!("{}: not found", cmd.program()).into_bytes(),
            })
        });
        let s = self.state.clone();
        h.expect_read_file().returning(move |path| {
            let mut st = s.lock().unwrap();
            st.calls.push(format!("host read_file {}", path.display()));
            st.files.get(path).cloned().ok_or_else(|| not_found(path))
        });
        let s = self.state.clone();
        h.expect_read_dir().returning(move |path| {
            let mut st = s.lock().unwrap();
            st.calls.push(format!("host read_dir {}", path.display()));
            st.read_dir(path).ok_or_else(|| not_found(path))
        });
        let s = self.state.clone();
        h.expect_stat().returning(move |path| {
            let mut st = s.lock().unwrap();
            st.calls.push(format!("host stat {}", path.display()));
            Ok(st.stat(path))
        });
        let s = self.state.clone();
        h.expect_write_file_atomic()
            .returning(move |path, bytes, opts| {
                let mut st = s.lock().unwrap();
                st.calls
                    .push(format!("host write_file_atomic {}", path.display()));
                if let Some(expected) = &opts.expect_previous {
                    if st.files.get(path) != expected.as_ref() {
                        return Err(ExecError::Conflict {
                            target: "model".into(),
                            path: path.to_owned(),
                        });
                    }
                }
                if let (Some(backup), Some(old)) = (&opts.backup_to, st.files.get(path).cloned()) {
                    st.files.insert(backup.clone(), old);
                }
                st.files.insert(path.to_owned(), bytes.to_vec());
                Ok(())
            });
        h
    }

    /// A `MockContainerExec` for `ct1` answering from the state.
    pub fn container(&self) -> MockContainerExec {
        let mut c = MockContainerExec::new();
        let check = |ct: &CtRef| -> Result<(), ExecError> {
            if ct.as_str() == CT {
                Ok(())
            } else {
                Err(ExecError::CtNotFound {
                    target: "model".into(),
                    ct: ct.to_string(),
                })
            }
        };
        let s = self.state.clone();
        c.expect_state().returning(move |ct| {
            check(ct)?;
            let mut st = s.lock().unwrap();
            st.calls.push("ct state".into());
            Ok(if st.running {
                CtState::Running
            } else {
                CtState::Stopped
            })
        });
        let s = self.state.clone();
        c.expect_stop().returning(move |ct| {
            check(ct)?;
            let mut st = s.lock().unwrap();
            st.calls.push("ct stop".into());
            st.running = false;
            st.ct_dev.clear();
            Ok(())
        });
        let s = self.state.clone();
        c.expect_start().returning(move |ct| {
            check(ct)?;
            let mut st = s.lock().unwrap();
            st.calls.push("ct start".into());
            st.start_ct();
            Ok(())
        });
        let s = self.state.clone();
        c.expect_exec().returning(move |ct, cmd| {
            check(ct)?;
            let mut st = s.lock().unwrap();
            st.calls.push(format!("ct exec {}", argv_line(cmd)));
            if !st.running {
                return Err(ExecError::Failed {
                    target: "model".into(),
                    argv: cmd.display_argv(),
                    status: ExitStatus::Code(1),
                    stderr_tail: "container is not running".into(),
                });
            }
            Ok(Output::ok(st.probe_output()))
        });
        let s = self.state.clone();
        c.expect_push_file().returning(move |ct, src, dest, _mode| {
            check(ct)?;
            s.lock().unwrap().calls.push(format!(
                "ct push_file {} {}",
                src.display(),
                dest.display()
            ));
            Ok(())
        });
        c
    }
}
