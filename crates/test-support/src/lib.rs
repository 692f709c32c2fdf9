//! The workspace's test helpers, in one place (a dev-dependency only; never published).
//!
//! Tests of every crate and the scenarios of the binary use these instead of each keeping a
//! copy:
//!
//! - [`testdata`](mod@testdata): where the fixtures and corpora of the repository's `testdata/` folder are,
//!   and the captured host's device list ([`DevNode`]).
//! - [`require`](mod@require): the root/tool rule. A test that needs root or a program calls
//!   [`lxc_available`], [`sshd_available`], [`is_root`] or [`have`] first; on a developer machine
//!   that lacks it the test prints `skipped: TEST needs X` and returns, and with `CI` set in the
//!   environment it panics instead (CI installs everything, so a missing tool there is a broken
//!   install, never a quiet pass). [`cannot_run`] is that rule, the one place it is written.
//! - [`run_ok`], [`run_bytes`], [`copy_tree`], [`chmod`], [`sha256_hex`]: small helpers.
//! - Stand-ins (test fixtures, never the real thing; each documents the real contract it keeps):
//!   - [`HostTree`]: a copy of the captured 2 x H200 host (`testdata/hosts/h200x2`) in a
//!     temporary directory, its `/dev` nodes as empty files, or as real device nodes for tests
//!     that start containers against it.
//!   - [`FsHost`]: the one fake [`exec_backend::Host`], backed by a directory, with a `curl`
//!     stand-in ([`Web`]) and canned answers for other programs.
//!   - [`ScriptedCt`]: the one fake [`exec_backend::ContainerExec`]; the test scripts what
//!     commands inside print ([`CtScript`]).
//! - Real systems for the tests that need root: [`TestCt`] (a real LXC container in a private
//!   LXC path, destroyed on drop) and [`Sshd`] (a private `sshd` on 127.0.0.1, killed on drop).
//!
//! This crate may use exec-backend (the traits) but not gpu-core: gpu-core's own unit tests
//! use it, and a dependency back on gpu-core would give them a second copy of its types.

mod calls;
mod files;
mod fs_host;
mod host_tree;
mod lxc;
mod process;
pub mod require;
mod scripted_ct;
mod sshd;
pub mod testdata;
mod web;

pub use calls::{argv_line, CallLog};
pub use files::{chmod, copy_tree, sha256_hex};
pub use fs_host::FsHost;
pub use host_tree::HostTree;
pub use lxc::{unique_name, TestCt};
pub use process::{run_bytes, run_ok};
pub use require::{
    cannot_run, have, is_root, lxc_available, sshd_available, unprivileged_lxc_available,
};
pub use scripted_ct::{CtModel, CtScript, ScriptedCt};
pub use sshd::{free_port, Sshd};
pub use testdata::{testdata, DevNode};
pub use web::Web;
