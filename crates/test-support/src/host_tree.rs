//! A copy of the captured host in a temporary directory: the tree a host under a root
//! (`--root`, `LocalHost::with_root`, [`FsHost`](crate::FsHost)) reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::testdata::{h200x2, h200x2_dev};
use crate::{copy_tree, run_ok};

/// A host's files under a temporary directory, removed on drop.
pub struct HostTree {
    dir: tempfile::TempDir,
}

impl HostTree {
    /// An empty tree.
    pub fn empty() -> HostTree {
        HostTree {
            dir: tempfile::Builder::new()
                .prefix("phoenix-host")
                .tempdir()
                .expect("a temporary directory"),
        }
    }

    /// The captured 2 x H200 host (`testdata/hosts/h200x2/root`) with its `/dev` entries
    /// (`dev.stat`) as empty files and directories: the stand-in nodes a tree without root
    /// privileges can hold (`examples/h200x2` is made the same way). gpu-core reads an empty
    /// file where a node belongs as a stand-in and takes its numbers from `/proc/devices`.
    /// Each stand-in has the captured node's permission bits (`0666`, `0400`, ...).
    pub fn h200x2() -> HostTree {
        HostTree::captured(|path, _, mode| {
            std::fs::write(path, b"").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            crate::chmod(path, mode & 0o777);
        })
    }

    /// The captured host for tests that start real containers against it (root only): its
    /// `/dev` entries as real character devices with the captured numbers and modes (`mknod`;
    /// no driver holds them, so opening one fails with ENXIO where the device cgroup allows it
    /// and EPERM where it does not), and this machine's `/proc/self/mounts`, so that the
    /// inventory sees the cgroup layout LXC honours here.
    pub fn h200x2_with_device_nodes() -> HostTree {
        let t = HostTree::captured(|path, (major, minor), mode| {
            run_ok(
                Command::new("mknod")
                    .args(["-m", &format!("{mode:o}")])
                    .arg(path)
                    .args(["c", &major.to_string(), &minor.to_string()]),
            );
        });
        t.put(
            "/proc/self/mounts",
            std::fs::read("/proc/self/mounts").expect("this machine's /proc/self/mounts"),
        );
        t
    }

    /// The captured host's files, its `/dev` directories, and each character device made by
    /// `node(path, (major, minor), mode)`.
    fn captured(node: impl Fn(&Path, (u32, u32), u32)) -> HostTree {
        let t = HostTree::empty();
        copy_tree(&h200x2().join("root"), t.root());
        for n in h200x2_dev() {
            let p = t.path(&n.path);
            match n.rdev {
                None => std::fs::create_dir_all(&p).unwrap(),
                Some(rdev) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    node(&p, rdev, n.mode);
                }
            }
        }
        t
    }

    /// The directory standing for the host's `/`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where the host's path `p` is in the tree.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// Writes the host's file `p` (and its parent directories).
    pub fn put(&self, p: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    /// The text of the host's file `p`.
    pub fn get(&self, p: &str) -> String {
        let p = self.path(p);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Every regular file under the root with its bytes (to prove what was written, or that
    /// nothing was).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let kind = e.file_type().unwrap();
                if kind.is_dir() {
                    walk(&e.path(), out);
                } else if kind.is_file() {
                    out.insert(e.path(), std::fs::read(e.path()).unwrap());
                }
            }
        }
        let mut m = BTreeMap::new();
        walk(self.root(), &mut m);
        m
    }

    /// The temporary directory itself (the tree is removed when it drops).
    pub fn into_dir(self) -> tempfile::TempDir {
        self.dir
    }
}
