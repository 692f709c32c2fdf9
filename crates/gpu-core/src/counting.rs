//! Decorators that count what a run asks of the host and the container.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use exec_backend::{
    Cmd, ContainerExec, CtRef, CtState, CtStates, DirEntry, ExecError, FileMeta, Host, Output,
    WriteOptions,
};

use crate::report::Counters;

/// Shared counters of one run.
#[derive(Debug, Default)]
pub struct Tally {
    container_execs: AtomicU64,
    host_commands: AtomicU64,
    config_writes: AtomicU64,
    restarts: AtomicU64,
}

impl Tally {
    /// A snapshot of the counts.
    pub fn counters(&self) -> Counters {
        Counters {
            container_execs: self.container_execs.load(Ordering::Relaxed),
            host_commands: self.host_commands.load(Ordering::Relaxed),
            config_writes: self.config_writes.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A [`Host`] that counts commands and writes.
pub struct CountingHost {
    inner: Arc<dyn Host>,
    tally: Arc<Tally>,
}

impl CountingHost {
    /// Wraps `inner`, counting into `tally`.
    pub fn new(inner: Arc<dyn Host>, tally: Arc<Tally>) -> CountingHost {
        CountingHost { inner, tally }
    }
}

#[async_trait]
impl Host for CountingHost {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.inner.resolve(path)
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        Tally::bump(&self.tally.host_commands);
        self.inner.run(cmd).await
    }

    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError> {
        self.inner.read_file(path).await
    }

    async fn read_files(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Vec<u8>, ExecError>>, ExecError> {
        self.inner.read_files(paths).await
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError> {
        // A config write keeps a backup of the bytes it replaces; the tool's own bookkeeping
        // (the node record) does not, and is not a config write.
        if opts.backup_to.is_some() {
            Tally::bump(&self.tally.config_writes);
        }
        self.inner.write_file_atomic(path, bytes, opts).await
    }

    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        self.inner.read_dir(path).await
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        self.inner.stat(path).await
    }
}

/// A [`ContainerExec`] that counts execs, pushes and restarts.
pub struct CountingExec {
    inner: Arc<dyn ContainerExec>,
    tally: Arc<Tally>,
}

impl CountingExec {
    /// Wraps `inner`, counting into `tally`.
    pub fn new(inner: Arc<dyn ContainerExec>, tally: Arc<Tally>) -> CountingExec {
        CountingExec { inner, tally }
    }
}

#[async_trait]
impl ContainerExec for CountingExec {
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        Tally::bump(&self.tally.container_execs);
        self.inner.exec(ct, cmd).await
    }

    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError> {
        Tally::bump(&self.tally.container_execs);
        self.inner.push_file(ct, src, dest, mode).await
    }

    async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError> {
        self.inner.state(ct).await
    }

    async fn states(&self) -> Result<Option<CtStates>, ExecError> {
        self.inner.states().await
    }

    async fn start(&self, ct: &CtRef) -> Result<(), ExecError> {
        Tally::bump(&self.tally.restarts);
        self.inner.start(ct).await
    }

    async fn stop(&self, ct: &CtRef) -> Result<(), ExecError> {
        self.inner.stop(ct).await
    }
}
