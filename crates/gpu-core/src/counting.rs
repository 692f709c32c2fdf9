//! Decorators that count what a run asks of the host and the container.
//!
//! - [`CountingHost`] and [`CountingExec`] wrap the engine's own backends for one run: commands
//!   the domain runs on the host, execs, pushes, config writes, restarts.
//! - The container backends (`lxc-attach`, `lxc-info`, `pct`) start processes of their own on
//!   their host. [`BackendHost`] wraps the host such a backend runs on and counts each command
//!   into the tally of the run it runs for: every operation of the engine runs inside
//!   [`scope`], a task-local that names its tally. So `host_commands` is every process the run
//!   starts on the host (over SSH: every `ssh` client, one per remote command).
//! - Inside the container, the probe, the verification and the clean-up report how many
//!   processes they started (`pids=N`: the growth of the container's
//!   `/proc/sys/kernel/ns_last_pid`, the script's shell included); an exec that reports
//!   nothing counts as its one process (the install steps: the installer and apt-get start
//!   more than they report).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use exec_backend::{
    Cmd, ContainerExec, CtRef, CtState, CtStates, DirEntry, ExecError, FileMeta, Host, HostLock,
    LxcName, NameMatch, Output, Stopped, WriteOptions,
};

use crate::report::Counters;

tokio::task_local! {
    /// The tally of the operation the current task runs.
    static RUN: Arc<Tally>;
}

/// Runs `fut` with `tally` as the tally [`BackendHost`] counts into.
pub async fn scope<F: std::future::Future>(tally: Arc<Tally>, fut: F) -> F::Output {
    RUN.scope(tally, fut).await
}

/// Shared counters of one run.
#[derive(Debug, Default)]
pub struct Tally {
    container_execs: AtomicU64,
    container_processes: AtomicU64,
    host_commands: AtomicU64,
    config_writes: AtomicU64,
    restarts: AtomicU64,
    forced_stops: AtomicU64,
}

impl Tally {
    /// A snapshot of the counts.
    pub fn counters(&self) -> Counters {
        Counters {
            container_execs: self.container_execs.load(Ordering::Relaxed),
            container_processes: self.container_processes.load(Ordering::Relaxed),
            host_commands: self.host_commands.load(Ordering::Relaxed),
            config_writes: self.config_writes.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            forced_stops: self.forced_stops.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The processes an exec started inside: its `pids=N` line, else 1.
    fn container_processes(&self, out: &Output) {
        let reported = out
            .stdout_str()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("pids=")?.trim().parse::<u64>().ok());
        self.container_processes
            .fetch_add(reported.unwrap_or(1), Ordering::Relaxed);
    }
}

/// The [`Host`] a container backend (`LxcAttach`, `Pct`) runs its tools on: counts each command
/// into the tally of the current run (see [`scope`]); outside a run it counts nothing.
pub struct BackendHost {
    inner: Arc<dyn Host>,
}

impl BackendHost {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Host>) -> BackendHost {
        BackendHost { inner }
    }
}

#[async_trait]
impl Host for BackendHost {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.inner.resolve(path)
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let _ = RUN.try_with(|t| Tally::bump(&t.host_commands));
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
        self.inner.write_file_atomic(path, bytes, opts).await
    }

    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        self.inner.read_dir(path).await
    }

    async fn read_dir_matching(
        &self,
        path: &Path,
        keep: &NameMatch,
    ) -> Result<Vec<DirEntry>, ExecError> {
        self.inner.read_dir_matching(path, keep).await
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        self.inner.stat(path).await
    }

    async fn stat_many(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Option<FileMeta>, ExecError>>, ExecError> {
        self.inner.stat_many(paths).await
    }

    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
        self.inner.lock(path, timeout).await
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

    async fn read_dir_matching(
        &self,
        path: &Path,
        keep: &NameMatch,
    ) -> Result<Vec<DirEntry>, ExecError> {
        self.inner.read_dir_matching(path, keep).await
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        self.inner.stat(path).await
    }

    async fn stat_many(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Option<FileMeta>, ExecError>>, ExecError> {
        self.inner.stat_many(paths).await
    }

    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
        self.inner.lock(path, timeout).await
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
        let out = self.inner.exec(ct, cmd).await?;
        self.tally.container_processes(&out);
        Ok(out)
    }

    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), ExecError> {
        Tally::bump(&self.tally.container_execs);
        Tally::bump(&self.tally.container_processes);
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

    async fn stop(&self, ct: &CtRef, grace: Duration) -> Result<Stopped, ExecError> {
        let how = self.inner.stop(ct, grace).await?;
        if how == Stopped::Killed {
            Tally::bump(&self.tally.forced_stops);
        }
        Ok(how)
    }

    fn lxc_name(&self, ct: &CtRef) -> Option<LxcName> {
        self.inner.lxc_name(ct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exec_backend::MockHost;

    /// A backend's commands count into the run they run for, and only there.
    #[tokio::test]
    async fn backend_commands_count_into_the_scoped_run() {
        let mut inner = MockHost::new();
        inner.expect_run().returning(|_| Ok(Output::ok("")));
        let host = BackendHost::new(Arc::new(inner));
        let (a, b) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let cmd = Cmd::new(["lxc-info"]);
        scope(a.clone(), async {
            host.run(&cmd).await.unwrap();
            host.run(&cmd).await.unwrap();
        })
        .await;
        scope(b.clone(), host.run(&cmd)).await.unwrap();
        host.run(&cmd).await.unwrap();
        assert_eq!(a.counters().host_commands, 2);
        assert_eq!(b.counters().host_commands, 1);
    }

    #[test]
    fn container_processes_as_reported() {
        let t = Tally::default();
        t.container_processes(&Output::ok("probe=1\npids=3\n"));
        t.container_processes(&Output::ok("no report\n"));
        assert_eq!(t.counters().container_processes, 4);
    }
}
