//! The per-node record: what the tool saw NVIDIA's driver hold on one node, kept on that node
//! as evidence for the ownership rule ([`crate::passthrough`]).
//!
//! Device majors move between boots (the uvm and caps majors are dynamic), so an allow rule
//! for a major no driver holds now proves nothing by itself: it may be the uvm major of the
//! last boot, or an iGPU, sound or USB rule of a module that is not loaded. The record says
//! which majors were NVIDIA's when the tool looked, and which host files its `host-libs`
//! strategy bound, so that the tool can recognise its own lines after a reboot or a driver
//! upgrade without guessing.
//!
//! The file (`/var/lib/phoenix-gpu/nvidia-record` by default, [`Settings::record`]) is text,
//! one fact a line, sorted:
//! ```text
//! # phoenix-gpu: what NVIDIA's driver held on this node (docs/architecture.md)
//! major 238 nvidia-uvm
//! host-file /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04 usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04
//! ```
//! Facts are only added, never removed (a major stays evidence of what the tool may have
//! written). A line the reader does not understand is skipped: less evidence, never more.
//! It is written after the config write it covers (a failed write leaves it as it was), through [`Host::write_file_atomic`] (under `--root` inside the root), under
//! a lock beside it, and only by operations that write configs (`apply`, `remove`, `sync`,
//! not their dry runs), never by `check` or `plan`.
//!
//! [`Settings::record`]: crate::Settings::record

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use exec_backend::{ExecError, Host, WriteOptions};
use tracing::info;

use crate::error::{Error, Result};
use crate::inventory::ProcDevices;

/// Whether a character-device driver name of `/proc/devices` is one of NVIDIA's kernel
/// modules: `nvidia`, `nvidiactl`, or a name beginning `nvidia-` (`nvidia-frontend`,
/// `nvidia-uvm`, `nvidia-caps`, `nvidia-caps-imex-channels`, `nvidia-nvswitch`,
/// `nvidia-nvlink`, `nvidia-modeset`). These names are chosen by the kernel modules, not by
/// users.
pub(crate) fn is_nvidia_driver_name(name: &str) -> bool {
    name == "nvidia" || name == "nvidiactl" || name.starts_with("nvidia-")
}

const HEADER: &str = "# phoenix-gpu: what NVIDIA's driver held on this node (docs/architecture.md, \"Which lines the tool owns\")\n";

/// The record as read: its facts and the bytes they came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeRecord {
    /// Character majors an NVIDIA driver held, with the driver's name.
    pub majors: BTreeMap<u32, String>,
    /// `(source, target)` of the host files the `host-libs` strategy bound (host paths).
    pub host_files: BTreeSet<(String, String)>,
    /// The file's bytes as read (`None`: no file).
    read: Option<Vec<u8>>,
}

impl NodeRecord {
    /// Reads the record of `host` at `path` (no file: an empty record).
    pub async fn read(host: &dyn Host, path: &Path) -> Result<NodeRecord> {
        match host.read_file(path).await {
            Ok(bytes) => {
                let mut r = NodeRecord::parse(&String::from_utf8_lossy(&bytes));
                r.read = Some(bytes);
                Ok(r)
            }
            Err(ExecError::NotFound { .. }) => Ok(NodeRecord::default()),
            Err(e) => Err(Error::exec(
                format!("cannot read {} on {}", path.display(), host.name()),
                e,
            )),
        }
    }

    /// The facts of a record's text.
    pub fn parse(text: &str) -> NodeRecord {
        let mut r = NodeRecord::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some("major"), Some(m), Some(name), None) if is_nvidia_driver_name(name) => {
                    if let Ok(m) = m.parse() {
                        r.majors.insert(m, name.to_owned());
                    }
                }
                (Some("host-file"), Some(src), Some(tgt), None) if src.starts_with('/') => {
                    r.host_files.insert((src.to_owned(), tgt.to_owned()));
                }
                _ => {}
            }
        }
        r
    }

    /// The record as written.
    pub fn render(&self) -> String {
        let mut s = String::from(HEADER);
        for (m, name) in &self.majors {
            s.push_str(&format!("major {m} {name}\n"));
        }
        for (src, tgt) in &self.host_files {
            s.push_str(&format!("host-file {src} {tgt}\n"));
        }
        s
    }

    /// The NVIDIA driver that held `major` when the tool last looked.
    pub fn nvidia_major(&self, major: u32) -> Option<&str> {
        self.majors.get(&major).map(String::as_str)
    }

    /// Whether the `host-libs` strategy bound `source` to `target`.
    pub fn bound(&self, source: &str, target: &str) -> bool {
        self.host_files
            .contains(&(source.to_owned(), target.to_owned()))
    }

    /// Adds the NVIDIA majors of `devices` and the host files bound (`(source, target)`, host
    /// paths); true when anything was new.
    pub fn learn(
        &mut self,
        devices: &ProcDevices,
        bound: impl IntoIterator<Item = (String, String)>,
    ) -> bool {
        let mut new = false;
        for (m, name) in &devices.chars {
            if !is_nvidia_driver_name(name) {
                continue;
            }
            // 195 is listed as `nvidia` and `nvidiactl`: a name the major still has stays.
            let kept = self
                .majors
                .get(m)
                .is_some_and(|n| devices.chars.iter().any(|(mm, nn)| mm == m && nn == n));
            if !kept {
                self.majors.insert(*m, name.clone());
                new = true;
            }
        }
        for pair in bound {
            new |= self.host_files.insert(pair);
        }
        new
    }

    /// Writes the record when [`NodeRecord::learn`] added something: atomically, under a lock
    /// beside it (which also creates its directory), refusing if someone changed it since it
    /// was read. A refused write is left to the other writer, which learnt the same facts.
    /// Returns the record as the file now holds it, `None` after a refused write (the file
    /// holds the other writer's).
    pub async fn write(mut self, host: &dyn Host, path: &Path) -> Result<Option<NodeRecord>> {
        let bytes = self.render().into_bytes();
        if self.read.as_deref() == Some(bytes.as_slice()) {
            return Ok(Some(self));
        }
        let opts = WriteOptions {
            lock: Some(lock_path(path)),
            expect_previous: Some(self.read.clone()),
            mode: Some(0o644),
            ..WriteOptions::default()
        };
        match host.write_file_atomic(path, &bytes, &opts).await {
            Ok(()) => {
                info!(path = %path.display(), "node record updated");
                self.read = Some(bytes);
                Ok(Some(self))
            }
            Err(ExecError::Conflict { .. }) => Ok(None),
            Err(e) => Err(Error::exec(
                format!("cannot write {} on {}", path.display(), host.name()),
                e,
            )),
        }
    }
}

/// `DIR/.NAME.lock` beside the record.
fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "record".into());
    path.with_file_name(format!(".{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::FsHost;

    const DEVICES: &str =
        "Character devices:\n 10 misc\n195 nvidia\n195 nvidiactl\n238 nvidia-uvm\n243 hidraw\n";

    #[test]
    fn parses_what_it_renders_and_skips_what_it_does_not_know() {
        let mut r = NodeRecord::default();
        assert!(r.learn(&ProcDevices::parse(DEVICES), []));
        assert_eq!(
            r.majors
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect::<Vec<_>>(),
            ["195 nvidia", "238 nvidia-uvm"]
        );
        assert!(!r.learn(&ProcDevices::parse(DEVICES), []), "nothing new");
        let text = r.render();
        assert_eq!(NodeRecord::parse(&text).majors, r.majors);
        let odd = NodeRecord::parse(
            "major 243 hidraw\nmajor x nvidia-uvm\nmajor 5 nvidia-uvm extra\nhost-file rel x\nmajor 508 nvidia-uvm\n",
        );
        assert_eq!(odd.majors.keys().copied().collect::<Vec<_>>(), [508]);
        assert!(odd.host_files.is_empty());
    }

    #[tokio::test]
    async fn written_once_then_left_alone() {
        let (_d, host) = FsHost::h200x2();
        let path = Path::new("/var/lib/phoenix-gpu/nvidia-record");
        let mut r = NodeRecord::read(&host, path).await.unwrap();
        assert_eq!(r, NodeRecord::default());
        let mount = (
            "/usr/lib/libcuda.so.1".to_owned(),
            "usr/lib/x86_64-linux-gnu/libcuda.so.1".to_owned(),
        );
        assert!(r.learn(&ProcDevices::parse(DEVICES), [mount.clone()]));
        r.write(&host, path).await.unwrap();
        let text = host.get("/var/lib/phoenix-gpu/nvidia-record");
        assert!(text.contains("major 238 nvidia-uvm\n"), "{text}");
        assert!(text
            .contains("host-file /usr/lib/libcuda.so.1 usr/lib/x86_64-linux-gnu/libcuda.so.1\n"));
        let mut again = NodeRecord::read(&host, path).await.unwrap();
        assert!(again.bound(
            "/usr/lib/libcuda.so.1",
            "usr/lib/x86_64-linux-gnu/libcuda.so.1"
        ));
        assert!(!again.learn(&ProcDevices::parse(DEVICES), [mount]));
        let writes = host
            .calls()
            .lines()
            .iter()
            .filter(|c| c.contains("write_file_atomic"))
            .count();
        again.write(&host, path).await.unwrap();
        let after = host
            .calls()
            .lines()
            .iter()
            .filter(|c| c.contains("write_file_atomic"))
            .count();
        assert_eq!(writes, after, "an unchanged record is not written");
    }
}
