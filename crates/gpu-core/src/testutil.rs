//! Test helpers: a host whose files live under a directory, and the H200 fixture.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use exec_backend::{
    Cmd, DirEntry, ExecError, ExitStatus, FileKind, FileMeta, Host, Output, WriteOptions,
};

/// The shared folder beside the checkout (`../shared`; a worktree one level deeper also
/// finds it).
pub fn shared() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in ["../../../shared", "../../../../shared"] {
        let p = here.join(up);
        if p.is_dir() {
            return p;
        }
    }
    panic!(
        "../shared not found beside the checkout of {}",
        here.display()
    );
}

/// The captured 2 x H200 host.
pub fn h200x2_dir() -> PathBuf {
    shared().join("fixtures/hosts/h200x2")
}

/// A host whose `/` is a directory; commands run for real with mapped paths given by the test.
pub struct FsHost {
    pub root: PathBuf,
    pub commands: Mutex<Vec<Vec<String>>>,
    pub writes: Mutex<Vec<PathBuf>>,
}

impl FsHost {
    pub fn new(root: impl Into<PathBuf>) -> FsHost {
        FsHost {
            root: root.into(),
            commands: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// A fresh copy of the H200 host with its /dev nodes as empty stand-in files.
    pub fn h200x2() -> (tempfile::TempDir, FsHost) {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&h200x2_dir().join("root"), dir.path());
        let stat = std::fs::read_to_string(h200x2_dir().join("dev.stat")).unwrap();
        for line in stat.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let p = dir.path().join(f[0].trim_start_matches('/'));
            if f[1] == "dir" {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b"").unwrap();
            }
        }
        let host = FsHost::new(dir.path());
        (dir, host)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn put(&self, p: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn get(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap()
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> ExecError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ExecError::NotFound {
            target: "fs".into(),
            path: path.to_owned(),
        }
    } else {
        ExecError::Io {
            target: "fs".into(),
            op,
            path: path.to_owned(),
            source: e,
        }
    }
}

fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    let rdev = (kind == FileKind::CharDevice).then(|| {
        let r = m.rdev();
        (
            ((r >> 8) & 0xfff) as u32,
            ((r & 0xff) | ((r >> 12) & !0xff)) as u32,
        )
    });
    FileMeta {
        kind,
        rdev,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
    }
}

#[async_trait]
impl Host for FsHost {
    fn name(&self) -> String {
        "fs".into()
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.commands.lock().unwrap().push(cmd.display_argv());
        let out = std::process::Command::new(&cmd.argv[0])
            .args(&cmd.argv[1..])
            .output()
            .unwrap();
        Ok(Output {
            status: ExitStatus::Code(out.status.code().unwrap_or(-1)),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ExecError> {
        let p = self.resolve(path);
        std::fs::read(&p).map_err(|e| io("read", path, e))
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        opts: &WriteOptions,
    ) -> Result<(), ExecError> {
        let p = self.resolve(path);
        if let Some(lock) = &opts.lock {
            let l = self.resolve(lock);
            std::fs::create_dir_all(l.parent().unwrap()).unwrap();
            std::fs::write(l, b"").unwrap();
        }
        let prev = std::fs::read(&p).ok();
        if let Some(expect) = &opts.expect_previous {
            if &prev != expect {
                return Err(ExecError::Conflict {
                    target: "fs".into(),
                    path: path.to_owned(),
                });
            }
        }
        if let (Some(b), Some(prev)) = (&opts.backup_to, &prev) {
            let b = self.resolve(b);
            std::fs::create_dir_all(b.parent().unwrap()).unwrap();
            std::fs::write(b, prev).unwrap();
        }
        self.writes.lock().unwrap().push(path.to_owned());
        std::fs::write(&p, bytes).map_err(|e| io("write", path, e))
    }

    async fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, ExecError> {
        let p = self.resolve(path);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&p).map_err(|e| io("list", path, e))? {
            let e = e.map_err(|e| io("list", path, e))?;
            let m = std::fs::symlink_metadata(e.path()).map_err(|e| io("stat", path, e))?;
            out.push(DirEntry {
                name: e.file_name(),
                meta: meta_of(&m),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn stat(&self, path: &Path) -> Result<Option<FileMeta>, ExecError> {
        match std::fs::symlink_metadata(self.resolve(path)) {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("stat", path, e)),
        }
    }
}
