//! What a run reads of a host once: its inventory, its character-device table, the run
//! states of its containers and its node record.
//!
//! An engine made for one run over many containers ([`Engine::for_run`](crate::Engine::for_run))
//! keeps them ([`HostFacts::kept`]): the first container that needs one reads it, the others
//! (on the same engine or its clones) share it, so that a node answers these questions once
//! per run, not once per container. A failed read is not kept: the next container reads again
//! and gets its own error. Any other engine reads afresh for every operation
//! ([`HostFacts::fresh`]), as a long-lived embedder expects.
//!
//! A kept inventory is read with its files fetched all at once first ([`Prefetched`]): over
//! SSH every read is a round trip, and a dozen in a row are most of a node's time in a run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use exec_backend::{
    Cmd, ContainerExec, CtRef, CtState, CtStates, DirEntry, ExecError, FileMeta, Host, HostLock,
    LxcName, NameMatch, Output, Stopped, WriteOptions,
};
use futures_util::future::join_all;
use tokio::sync::OnceCell;
use tracing::debug;

use crate::error::{Error, Result};
use crate::inventory::{
    gpu_information, read_proc_devices, Inventory, ProcDevices, LISTED_DIRS, PROC_GPUS, READ_FILES,
};
use crate::record::NodeRecord;

/// A host's facts for one run, or none kept.
#[derive(Debug, Default)]
pub(crate) struct HostFacts {
    /// Whether reads are kept for the run.
    kept: bool,
    /// The inventory, or that the host has no NVIDIA driver (the one failure that is kept: it
    /// is the host's answer, not a fault of the read).
    inventory: OnceCell<Option<Inventory>>,
    devices: OnceCell<ProcDevices>,
    /// `None` inside: the container backend cannot answer for all containers at once.
    states: OnceCell<Option<Arc<CtStates>>>,
    /// The node record as last read or written in this run (`None`: to be read).
    record: tokio::sync::Mutex<Option<NodeRecord>>,
}

impl HostFacts {
    /// Reads afresh each time.
    pub fn fresh() -> HostFacts {
        HostFacts::default()
    }

    /// Reads once, at first need, and keeps what it read.
    pub fn kept() -> HostFacts {
        HostFacts {
            kept: true,
            ..HostFacts::default()
        }
    }

    /// Whether reads are kept.
    pub fn is_kept(&self) -> bool {
        self.kept
    }

    /// The host's inventory.
    pub async fn inventory(&self, host: &dyn Host) -> Result<Inventory> {
        if !self.kept {
            return Inventory::read(host).await;
        }
        let kept = self
            .inventory
            .get_or_try_init(|| async {
                let host = Prefetched::inventory(host).await;
                match Inventory::read_with_devices(&host).await {
                    Ok((inv, devices)) => {
                        // The table the inventory was read from is the run's table too.
                        let _ = self.devices.set(devices);
                        debug!(host = %host.name(), "inventory kept for the run");
                        Ok(Some(inv))
                    }
                    Err(Error::NoDriver { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        match kept {
            Some(inv) => Ok(inv.clone()),
            None => Err(Error::NoDriver { host: host.name() }),
        }
    }

    /// The host's character-device table (empty without `/proc/devices`).
    pub async fn proc_devices(&self, host: &dyn Host) -> Result<ProcDevices> {
        if !self.kept {
            return read_proc_devices(host).await;
        }
        self.devices
            .get_or_try_init(|| read_proc_devices(host))
            .await
            .cloned()
    }

    /// The host's node record at `path` (read once per run, and kept up to date by
    /// [`HostFacts::learn_record`]).
    pub async fn record(&self, host: &dyn Host, path: &Path) -> Result<NodeRecord> {
        if !self.kept {
            return NodeRecord::read(host, path).await;
        }
        let mut slot = self.record.lock().await;
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let r = NodeRecord::read(host, path).await?;
        *slot = Some(r.clone());
        Ok(r)
    }

    /// Adds to the node record what `learn` adds to it, and writes it when that was anything
    /// ([`NodeRecord::learn`]). `read`: the record the caller read. In a run, the containers
    /// of a host learn one at a time from the record as the run last saw or wrote it, so that
    /// what one wrote is not written again by the next (nor refused as a change under it);
    /// after a write someone else's changed, the record is read again at the next need.
    pub async fn learn_record(
        &self,
        host: &dyn Host,
        path: &Path,
        read: NodeRecord,
        learn: impl FnOnce(&mut NodeRecord) -> bool,
    ) -> Result<()> {
        if !self.kept {
            let mut record = read;
            if learn(&mut record) {
                record.write(host, path).await?;
            }
            return Ok(());
        }
        let mut slot = self.record.lock().await;
        let mut record = match slot.take() {
            Some(r) => r,
            None => NodeRecord::read(host, path).await?,
        };
        if !learn(&mut record) {
            *slot = Some(record);
            return Ok(());
        }
        *slot = record.write(host, path).await?;
        Ok(())
    }

    /// The states of all the host's containers, asked once per run; `None` when reads are not
    /// kept, or when `cts` cannot answer for all at once or failed to (then each container is
    /// asked on its own, as without a run, and its own error is its own).
    pub async fn states(&self, cts: &dyn ContainerExec) -> Option<Arc<CtStates>> {
        if !self.kept {
            return None;
        }
        self.states
            .get_or_init(|| async {
                match cts.states().await {
                    Ok(states) => states.map(Arc::new),
                    Err(e) => {
                        debug!(error = %e, "the states of all containers could not be read at once; asking each");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

/// A host whose reads of some files and directories were fetched beforehand, all at once
/// (the files in one [`Host::read_files`], one SSH session; the listings at the same time):
/// each is answered once from what was fetched, in the same words (errors included); every
/// other call goes to the host.
struct Prefetched<'a> {
    host: &'a dyn Host,
    files: Mutex<HashMap<PathBuf, std::result::Result<Vec<u8>, ExecError>>>,
    /// Listings by path and the names they kept.
    dirs: Mutex<Listings>,
}

/// Fetched listings: by path and the names kept, what [`Host::read_dir_matching`] gave.
type Listings = HashMap<(PathBuf, NameMatch), std::result::Result<Vec<DirEntry>, ExecError>>;

impl<'a> Prefetched<'a> {
    /// What [`Inventory::read`] reads of `host`: its files and listings, then the GPUs' files
    /// the listing names: two round trips.
    async fn inventory(host: &'a dyn Host) -> Prefetched<'a> {
        let pre = Prefetched::fetch(host, &READ_FILES, &LISTED_DIRS).await;
        let gpus: Vec<String> = match pre
            .lock_dirs()
            .get(&(PathBuf::from(PROC_GPUS), NameMatch::default()))
        {
            Some(Ok(entries)) => entries
                .iter()
                .map(|e| gpu_information(&e.name.to_string_lossy()))
                .collect(),
            _ => Vec::new(),
        };
        let more = Prefetched::fetch(
            host,
            &gpus.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        )
        .await;
        let files = std::mem::take(&mut *more.lock_files());
        pre.lock_files().extend(files);
        pre
    }

    async fn fetch(host: &'a dyn Host, files: &[&str], dirs: &[(&str, &str)]) -> Prefetched<'a> {
        let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        let files = async {
            match host.read_files(&paths).await {
                Ok(got) => paths.iter().cloned().zip(got).collect(),
                Err(e) => {
                    // Each file is read on its own later, and meets its own error.
                    debug!(error = %e, "the inventory's files could not be read at once");
                    HashMap::new()
                }
            }
        };
        let dirs = join_all(dirs.iter().map(|(p, prefix)| async move {
            let (p, keep) = (PathBuf::from(p), NameMatch::starting(*prefix));
            let got = host.read_dir_matching(&p, &keep).await;
            ((p, keep), got)
        }));
        let (files, dirs) = tokio::join!(files, dirs);
        Prefetched {
            host,
            files: Mutex::new(files),
            dirs: Mutex::new(dirs.into_iter().collect()),
        }
    }

    fn lock_files(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PathBuf, std::result::Result<Vec<u8>, ExecError>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_dirs(&self) -> std::sync::MutexGuard<'_, Listings> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Host for Prefetched<'_> {
    fn name(&self) -> String {
        self.host.name()
    }

    async fn lock(
        &self,
        path: &Path,
        timeout: Duration,
    ) -> std::result::Result<HostLock, ExecError> {
        self.host.lock(path, timeout).await
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.host.resolve(path)
    }

    async fn run(&self, cmd: &Cmd) -> std::result::Result<Output, ExecError> {
        self.host.run(cmd).await
    }

    async fn read_file(&self, path: &Path) -> std::result::Result<Vec<u8>, ExecError> {
        let fetched = self.lock_files().remove(path);
        match fetched {
            Some(got) => got,
            None => self.host.read_file(path).await,
        }
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> std::result::Result<(), ExecError> {
        self.host.write_file_atomic(path, bytes, opts).await
    }

    async fn read_dir(&self, path: &Path) -> std::result::Result<Vec<DirEntry>, ExecError> {
        self.read_dir_matching(path, &NameMatch::default()).await
    }

    /// A listing fetched with the same names kept is answered from what was fetched.
    async fn read_dir_matching(
        &self,
        path: &Path,
        keep: &NameMatch,
    ) -> std::result::Result<Vec<DirEntry>, ExecError> {
        let fetched = self.lock_dirs().remove(&(path.to_owned(), keep.clone()));
        match fetched {
            Some(got) => got,
            None => self.host.read_dir_matching(path, keep).await,
        }
    }

    async fn stat(&self, path: &Path) -> std::result::Result<Option<FileMeta>, ExecError> {
        self.host.stat(path).await
    }

    async fn stat_many(
        &self,
        paths: &[PathBuf],
    ) -> std::result::Result<Vec<std::result::Result<Option<FileMeta>, ExecError>>, ExecError> {
        self.host.stat_many(paths).await
    }
}

/// The container backend of a read-only operation in a run: the state of a container comes
/// from the run's [`CtStates`] (read once for the host); everything else goes to `inner`.
pub(crate) struct KnownStates<'a> {
    inner: &'a dyn ContainerExec,
    states: Option<Arc<CtStates>>,
}

impl<'a> KnownStates<'a> {
    /// `inner`, with `states` answering [`ContainerExec::state`] when given.
    pub fn new(inner: &'a dyn ContainerExec, states: Option<Arc<CtStates>>) -> KnownStates<'a> {
        KnownStates { inner, states }
    }
}

#[async_trait]
impl ContainerExec for KnownStates<'_> {
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> std::result::Result<Output, ExecError> {
        self.inner.exec(ct, cmd).await
    }

    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> std::result::Result<(), ExecError> {
        self.inner.push_file(ct, src, dest, mode).await
    }

    async fn state(&self, ct: &CtRef) -> std::result::Result<CtState, ExecError> {
        match &self.states {
            Some(s) => Ok(s.of(ct)),
            None => self.inner.state(ct).await,
        }
    }

    async fn states(&self) -> std::result::Result<Option<CtStates>, ExecError> {
        Ok(self.states.as_deref().cloned())
    }

    async fn start(&self, ct: &CtRef) -> std::result::Result<(), ExecError> {
        self.inner.start(ct).await
    }

    async fn stop(&self, ct: &CtRef, grace: Duration) -> std::result::Result<Stopped, ExecError> {
        self.inner.stop(ct, grace).await
    }

    fn lxc_name(&self, ct: &CtRef) -> Option<LxcName> {
        self.inner.lxc_name(ct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{CallLog, FsHost};

    fn reads(calls: &CallLog, path: &str) -> usize {
        let line = format!("host read_file {path}");
        calls.lines().iter().filter(|l| **l == line).count()
    }

    #[tokio::test]
    async fn a_run_reads_the_inventory_once_and_outside_a_run_each_time() {
        let (_d, host) = FsHost::h200x2();
        let host = host.with_calls(CallLog::new());
        let kept = HostFacts::kept();
        let (a, b) = tokio::join!(kept.inventory(&host), kept.inventory(&host));
        assert_eq!(a.unwrap(), b.unwrap());
        let devices = kept.proc_devices(&host).await.unwrap();
        assert_eq!(devices.majors().map(|m| m.nvidia), Some(195));
        assert_eq!(
            reads(host.calls(), "/proc/devices"),
            1,
            "{:#?}",
            host.calls().lines()
        );
        assert_eq!(reads(host.calls(), "/sys/module/nvidia/version"), 1);
        host.calls().take();
        let fresh = HostFacts::fresh();
        for _ in 0..2 {
            fresh.inventory(&host).await.unwrap();
            fresh.proc_devices(&host).await.unwrap();
        }
        assert_eq!(reads(host.calls(), "/proc/devices"), 4);
    }

    #[tokio::test]
    async fn a_host_without_a_driver_is_told_once_and_other_failures_are_read_again() {
        let (d, host) = FsHost::h200x2();
        let host = host.with_calls(CallLog::new());
        for f in ["sys/module/nvidia/version", "proc/driver/nvidia/version"] {
            std::fs::remove_file(d.path().join(f)).unwrap();
        }
        let kept = HostFacts::kept();
        for _ in 0..3 {
            let e = kept.inventory(&host).await.unwrap_err();
            assert!(matches!(e, Error::NoDriver { .. }), "{e:?}");
        }
        assert_eq!(reads(host.calls(), "/sys/module/nvidia/version"), 1);

        // A version file that cannot be parsed is a read to try again, not the host's answer.
        let (_d, host) = FsHost::h200x2();
        let host = host.with_calls(CallLog::new());
        host.put("/sys/module/nvidia/version", "garbage\n");
        let kept = HostFacts::kept();
        for _ in 0..2 {
            assert!(kept.inventory(&host).await.is_err());
        }
        assert_eq!(reads(host.calls(), "/sys/module/nvidia/version"), 2);
        host.put("/sys/module/nvidia/version", "580.159.04\n");
        assert!(kept.inventory(&host).await.is_ok());
    }

    fn writes(calls: &CallLog) -> usize {
        calls
            .lines()
            .iter()
            .filter(|l| l.contains("write_file_atomic"))
            .count()
    }

    #[tokio::test]
    async fn a_run_reads_the_node_record_once_and_writes_what_is_new_once() {
        let (_d, host) = FsHost::h200x2();
        let host = host.with_calls(CallLog::new());
        let path = Path::new("/var/lib/phoenix-gpu/nvidia-record");
        let devices = read_proc_devices(&host).await.unwrap();
        host.calls().take();
        let kept = HostFacts::kept();
        // Eight containers read it as evidence, then each learns the node's majors.
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(kept.record(&host, path).await.unwrap());
        }
        for read in seen {
            kept.learn_record(&host, path, read, |r| r.learn(&devices, []))
                .await
                .unwrap();
        }
        assert_eq!(reads(host.calls(), path.to_str().unwrap()), 1);
        assert_eq!(writes(host.calls()), 1, "{:#?}", host.calls().lines());
        assert!(host.get(path.to_str().unwrap()).contains("nvidia-uvm"));
        assert!(kept
            .record(&host, path)
            .await
            .unwrap()
            .nvidia_major(195)
            .is_some());
        assert_eq!(reads(host.calls(), path.to_str().unwrap()), 1);

        // Someone else changed it under the run: the write is refused, the next need reads it.
        host.put(path.to_str().unwrap(), "major 500 nvidia-caps\n");
        let read = kept.record(&host, path).await.unwrap();
        let bound = (
            "/usr/lib/libcuda.so.1".to_owned(),
            "usr/lib/libcuda.so.1".to_owned(),
        );
        kept.learn_record(&host, path, read, |r| r.learn(&devices, [bound.clone()]))
            .await
            .unwrap();
        assert_eq!(writes(host.calls()), 2);
        assert_eq!(reads(host.calls(), path.to_str().unwrap()), 1);
        let again = kept.record(&host, path).await.unwrap();
        assert_eq!(reads(host.calls(), path.to_str().unwrap()), 2);
        assert!(again.nvidia_major(500).is_some(), "{again:?}");

        // Outside a run: read each time, written by each learner with something new.
        host.calls().take();
        let fresh = HostFacts::fresh();
        for _ in 0..2 {
            let read = fresh.record(&host, path).await.unwrap();
            fresh
                .learn_record(&host, path, read, |r| r.learn(&devices, []))
                .await
                .unwrap();
        }
        assert_eq!(reads(host.calls(), path.to_str().unwrap()), 2);
    }

    #[tokio::test]
    async fn prefetched_reads_are_answered_once_in_the_same_words() {
        let (_d, host) = FsHost::h200x2();
        let host = host.with_calls(CallLog::new());
        let pre = Prefetched::fetch(
            &host,
            &["/proc/devices", "/nonexistent"],
            &[("/dev", "nvidia")],
        )
        .await;
        assert_eq!(host.calls().take().len(), 3, "fetched at once");
        let text = pre.read_file(Path::new("/proc/devices")).await.unwrap();
        assert!(String::from_utf8_lossy(&text).contains("nvidia"));
        let e = pre.read_file(Path::new("/nonexistent")).await.unwrap_err();
        assert!(matches!(e, ExecError::NotFound { .. }), "{e:?}");
        let dev = pre
            .read_dir_matching(Path::new("/dev"), &NameMatch::starting("nvidia"))
            .await
            .unwrap();
        assert!(!dev.is_empty());
        assert!(dev
            .iter()
            .all(|e| e.name.to_string_lossy().starts_with("nvidia")));
        assert!(
            host.calls().take().is_empty(),
            "answered from what was fetched"
        );
        // The whole listing is another question: the host's.
        pre.read_dir(Path::new("/dev")).await.unwrap();
        assert_eq!(host.calls().take().len(), 1);
        // A second read is the host's again.
        pre.read_file(Path::new("/proc/devices")).await.unwrap();
        assert_eq!(host.calls().take(), ["host read_file /proc/devices"]);
    }

    #[tokio::test]
    async fn known_states_answer_from_the_run_or_ask_the_backend() {
        let mut inner = exec_backend::MockContainerExec::new();
        inner
            .expect_state()
            .times(1)
            .returning(|_| Ok(CtState::Other("frozen".into())));
        let all = CtStates::new(
            [("7".to_owned(), CtState::Running)].into(),
            CtState::Stopped,
        );
        let known = KnownStates::new(&inner, Some(Arc::new(all)));
        assert_eq!(
            known.state(&CtRef::new("7")).await.unwrap(),
            CtState::Running
        );
        assert_eq!(
            known.state(&CtRef::new("8")).await.unwrap(),
            CtState::Stopped
        );
        let asked = KnownStates::new(&inner, None);
        assert_eq!(
            asked.state(&CtRef::new("8")).await.unwrap(),
            CtState::Other("frozen".into())
        );
        // Outside a run no states are read at all.
        assert_eq!(HostFacts::fresh().states(&inner).await, None);
    }
}
