//! The one fake [`Host`]: a host whose `/` is a directory of this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use exec_backend::{
    Cmd, DirEntry, ExecError, ExitStatus, FileKind, FileMeta, Host, HostLock, LocalHost, Output,
    WriteOptions,
};

use crate::calls::{argv_line, CallLog};
use crate::testdata::DevNode;
use crate::web::Web;
use crate::HostTree;

/// The file utilities [`FsHost`] runs for real, on paths under its root.
const FILE_UTILITIES: [&str; 5] = ["rm", "mkdir", "mv", "sha256sum", "tee"];

/// A stand-in for a host reached through [`Host`], whose `/` is a directory of this machine.
///
/// What it keeps of a real host's contract, and what stands in:
/// - Files are the real thing: [`Host::read_file`], [`Host::write_file_atomic`],
///   [`Host::read_dir`], [`Host::stat`], [`Host::lock`] and [`Host::resolve`] are those of
///   [`LocalHost::with_root`] on the directory (errors name `localhost`). Device nodes a test
///   cannot make without root can be declared ([`FsHost::with_char_devices`]): their paths then
///   report as character devices with the given numbers and mode.
/// - Commands are scripted: an exact argv answered by [`FsHost::answer`] gets that answer;
///   `curl` is answered by the [`Web`] stand-in when one is attached; the file utilities `rm`,
///   `mkdir`, `mv`, `sha256sum` and `tee` run for real (with the command's stdin), and only on
///   paths under the root (any other absolute path panics: callers pass host paths through
///   [`Host::resolve`]); any other program exits 127, `not found`, as on a host without it.
/// - Every call is recorded in a [`CallLog`] (`host read_file /proc/devices`), every command's
///   argv in [`FsHost::commands`] and every written path in [`FsHost::writes`].
pub struct FsHost {
    /// The directory standing for the host's `/`.
    pub root: PathBuf,
    /// Every command run, argv as given.
    pub commands: Mutex<Vec<Vec<String>>>,
    /// Every path written with `write_file_atomic`, as the host names it.
    pub writes: Mutex<Vec<PathBuf>>,
    local: LocalHost,
    name: String,
    calls: CallLog,
    devices: BTreeMap<PathBuf, DevNode>,
    answers: Mutex<BTreeMap<Vec<String>, Output>>,
    web: Option<Arc<Web>>,
}

impl FsHost {
    /// A host named `fs` whose `/` is `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsHost {
        let root = root.into();
        FsHost {
            local: LocalHost::with_root(&root),
            root,
            commands: Mutex::default(),
            writes: Mutex::default(),
            name: "fs".into(),
            calls: CallLog::new(),
            devices: BTreeMap::new(),
            answers: Mutex::default(),
            web: None,
        }
    }

    /// A fresh copy of the captured H200 host ([`HostTree::h200x2`]: its `/dev` nodes as empty
    /// stand-in files); the directory is removed when the returned guard drops.
    pub fn h200x2() -> (tempfile::TempDir, FsHost) {
        let tree = HostTree::h200x2();
        let host = FsHost::new(tree.root());
        (tree.into_dir(), host)
    }

    /// The host's name (`Host::name`, and the target of its errors).
    pub fn named(mut self, name: &str) -> FsHost {
        self.name = name.to_owned();
        self
    }

    /// Records the calls in `calls` (shared with a [`ScriptedCt`](crate::ScriptedCt) to see
    /// their order).
    pub fn with_calls(mut self, calls: CallLog) -> FsHost {
        self.calls = calls;
        self
    }

    /// Answers `curl` from `web`.
    pub fn with_web(mut self, web: Arc<Web>) -> FsHost {
        self.web = Some(web);
        self
    }

    /// Reports the character devices among `nodes` as such (numbers and mode from the list),
    /// each an empty file under the root (created when missing).
    pub fn with_char_devices(mut self, nodes: &[DevNode]) -> FsHost {
        for n in nodes.iter().filter(|n| n.rdev.is_some()) {
            let p = self.path(&n.path);
            if !p.exists() {
                self.put(&n.path, b"");
            }
            self.devices.insert(PathBuf::from(&n.path), n.clone());
        }
        self
    }

    /// From now on the command `argv` gets `output`.
    pub fn answer(&self, argv: &[&str], output: Output) {
        let argv = argv.iter().map(|a| (*a).to_owned()).collect();
        self.answers.lock().unwrap().insert(argv, output);
    }

    /// The calls so far.
    pub fn calls(&self) -> &CallLog {
        &self.calls
    }

    /// Where the host's path `p` is.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Writes the host's file `p` (and its parent directories).
    pub fn put(&self, p: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    /// The text of the host's file `p`.
    pub fn get(&self, p: &str) -> String {
        String::from_utf8(self.read(p)).unwrap()
    }

    /// The bytes of the host's file `p`.
    pub fn read(&self, p: &str) -> Vec<u8> {
        let p = self.path(p);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Every regular file of the host, as the host names it, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, at: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.map(Result::unwrap) {
                let kind = e.file_type().unwrap();
                if kind.is_dir() {
                    walk(&e.path(), &at.join(e.file_name()), out);
                } else if kind.is_file() {
                    out.push(at.join(e.file_name()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, Path::new("/"), &mut out);
        out.sort();
        out
    }

    /// `meta`, or the declared device at `path`.
    fn overlay(&self, path: &Path, meta: FileMeta) -> FileMeta {
        match self.devices.get(path) {
            Some(n) => FileMeta {
                kind: FileKind::CharDevice,
                rdev: n.rdev,
                mode: n.mode,
                size: 0,
                ..meta
            },
            None => meta,
        }
    }

    /// Panics unless every absolute path in `args` lies under the root.
    fn check_inside(&self, argv: &[String]) {
        for a in argv.iter().skip(1).filter(|a| a.starts_with('/')) {
            assert!(
                Path::new(a).starts_with(&self.root),
                "{argv:?}: {a} is outside the host's root {} (pass host paths through Host::resolve)",
                self.root.display()
            );
        }
    }
}

#[async_trait]
impl Host for FsHost {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.local.resolve(path)
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.calls.push(format!("host run {}", argv_line(cmd)));
        let argv = cmd.display_argv();
        self.commands.lock().unwrap().push(argv.clone());
        if let Some(answer) = self.answers.lock().unwrap().get(&argv) {
            return Ok(answer.clone());
        }
        let program = argv.first().map(String::as_str).unwrap_or_default();
        match (program, &self.web) {
            ("curl", Some(web)) => {
                self.check_inside(&argv);
                Ok(web.curl(&argv).await)
            }
            (p, _) if FILE_UTILITIES.contains(&p) => {
                self.check_inside(&argv);
                let mut child = std::process::Command::new(p)
                    .args(&cmd.argv[1..])
                    .envs(cmd.env.iter().map(|(k, v)| (k, v)))
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                let input = cmd.stdin.clone().unwrap_or_default();
                let mut stdin = child.stdin.take().unwrap();
                let writer = std::thread::spawn(move || {
                    use std::io::Write;
                    let _ = stdin.write_all(&input);
                });
                let out = child.wait_with_output().unwrap();
                writer.join().unwrap();
                Ok(Output {
                    status: ExitStatus::Code(out.status.code().unwrap_or(-1)),
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            }
            (p, _) => Ok(Output {
                status: ExitStatus::Code(127),
                stdout: Vec::new(),
                stderr: format!("{p}: not found").into_bytes(),
            }),
        }
    }

    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError> {
        self.calls
            .push(format!("host read_file {}", path.display()));
        self.local.read_file(path).await
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError> {
        self.calls
            .push(format!("host write_file_atomic {}", path.display()));
        self.local.write_file_atomic(path, bytes, opts).await?;
        self.writes.lock().unwrap().push(path.to_owned());
        Ok(())
    }

    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        self.calls.push(format!("host read_dir {}", path.display()));
        let mut entries = self.local.read_dir(path).await?;
        for e in &mut entries {
            e.meta = self.overlay(&path.join(&e.name), e.meta.clone());
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        self.calls.push(format!("host stat {}", path.display()));
        let meta = self.local.stat(path).await?;
        Ok(meta.map(|m| self.overlay(path, m)))
    }

    async fn lock(&self, path: &Path, timeout: Duration) -> Result<HostLock, ExecError> {
        self.calls.push(format!("host lock {}", path.display()));
        self.local.lock(path, timeout).await
    }
}
