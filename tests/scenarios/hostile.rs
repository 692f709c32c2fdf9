//! Broken and hostile input, through the binary: each case prepares a copy of the captured
//! host, runs `phoenix-gpu` once (killed as hung after 30 s), and checks the exit code, a
//! distinctive part of the message, and that every file under the root (bytes, type, owner,
//! mode, link target, device numbers), the config and its backups included, is exactly as
//! before. Lock files (`/run/lock/...`, made by a write that takes the lock) are not state and
//! are left out of the comparison.
//!
//! `docs/reliability.md` lists every case by name with what it promises.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::is_root;

use crate::util::{Run, TestHost, CONF_101};

/// How long one run may take before it counts as hung.
const HUNG: Duration = Duration::from_secs(30);

/// What one entry under the root is.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
    Other(u32, u64),
}

/// Every entry under the root with its metadata, links not followed, FIFOs not opened.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Node, u32, u32, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Node, u32, u32, u32)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if rel.starts_with("run") {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let node = if ft.is_dir() {
                walk(root, &p, out);
                Node::Dir
            } else if ft.is_symlink() {
                Node::Link(std::fs::read_link(&p).unwrap())
            } else if ft.is_file() && md.len() < 1 << 20 {
                Node::File(std::fs::read(&p).unwrap())
            } else {
                // FIFOs, sockets, devices, and the huge sparse files: type, size, numbers.
                Node::Other(md.mode() & 0o170000, md.size() ^ md.rdev())
            };
            out.insert(rel, (node, md.uid(), md.gid(), md.mode() & 0o7777));
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

type Snapshot = BTreeMap<PathBuf, (Node, u32, u32, u32)>;

/// The paths whose entries differ between two snapshots.
fn changed(before: &Snapshot, after: &Snapshot) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    v.dedup();
    v
}

/// Runs the binary with `--root`, `--log-file` and `args` (`@ROOT@` replaced by the root),
/// optionally inside `wrap` (a command line the binary and its arguments are appended to).
fn run_bounded(h: &TestHost, args: &[&str], env: &[(&str, String)], wrap: &[&str]) -> Run {
    let root = h.root().display().to_string();
    let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    argv.push(env!("CARGO_BIN_EXE_phoenix-gpu").to_owned());
    argv.extend(["--root".into(), root.clone(), "--log-file".into()]);
    argv.push(h.log.path().join("phoenix-gpu.log").display().to_string());
    argv.extend(args.iter().map(|a| a.replace("@ROOT@", &root)));
    let env: Vec<(&str, String)> = env
        .iter()
        .map(|(k, v)| (*k, v.replace("@ROOT@", &root)))
        .collect();
    run_argv(&argv, &env)
}

/// Runs `argv` with `env` (the orchestrator's variables removed), killed as hung after
/// [`HUNG`].
fn run_argv(argv: &[String], env: &[(&str, String)]) -> Run {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::util::without_tool_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, hung) = match rx.recv_timeout(HUNG) {
        Ok(out) => (out.unwrap(), false),
        Err(_) => {
            // SAFETY: kill(2) of the child we started; no memory is touched.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            (rx.recv().unwrap().unwrap(), true)
        }
    };
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if hung {
        stderr.push_str(&format!("\n{HUNG_MARK}: killed after {HUNG:?}"));
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// What a run killed as hung says last on stderr.
const HUNG_MARK: &str = "HUNG";

/// One bad input or fault.
struct Case {
    /// Its name in `docs/reliability.md`.
    name: &'static str,
    /// Makes the host hostile (after the example CT 101 is in place).
    setup: fn(&TestHost),
    /// The command line after `--root DIR --log-file FILE`.
    args: &'static [&'static str],
    /// Extra environment.
    env: &'static [(&'static str, &'static str)],
    /// The exit code.
    code: i32,
    /// A distinctive part of what stderr says.
    says: &'static str,
}

const fn case(
    name: &'static str,
    setup: fn(&TestHost),
    args: &'static [&'static str],
    code: i32,
    says: &'static str,
) -> Case {
    Case {
        name,
        setup,
        args,
        env: &[],
        code,
        says,
    }
}

/// Runs each case on a fresh host and checks it; `wrap` as for [`run_bounded`].
fn check_cases(cases: &[Case], wrap: &[&str]) {
    let mut failed = Vec::new();
    for c in cases {
        let h = TestHost::h200x2();
        (c.setup)(&h);
        stub_ssh(&h);
        let before = snapshot(h.root());
        let mut env: Vec<(&str, String)> =
            c.env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        env.push((
            "PATH",
            format!("@ROOT@/stub-bin:{}", std::env::var("PATH").unwrap()),
        ));
        let r = run_bounded(&h, c.args, &env, wrap);
        let after = snapshot(h.root());
        let mut wrong = Vec::new();
        if r.code != c.code {
            wrong.push(format!("exit {} (wanted {})", r.code, c.code));
        }
        if !r.stderr.contains(c.says) {
            wrong.push(format!("stderr lacks {:?}", c.says));
        }
        if r.stderr.contains("panicked") {
            wrong.push("a panic".into());
        }
        if r.stderr.contains(HUNG_MARK) {
            wrong.push("hung".into());
        }
        if before != after {
            wrong.push(format!("files changed: {:?}", changed(&before, &after)));
        }
        if !wrong.is_empty() {
            failed.push(format!(
                "case {}: {}\n  stdout: {}\n  stderr: {}",
                c.name,
                wrong.join("; "),
                r.stdout.trim(),
                r.stderr.trim()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A `ssh` first on `PATH` that records that it ran (in the tree, so the snapshot sees it).
fn stub_ssh(h: &TestHost) {
    let bin = h.path("/stub-bin/ssh");
    h.put(
        "/stub-bin/ssh",
        "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/../ssh-ran\"\nexit 255\n",
    );
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---- setups -------------------------------------------------------------------------------

fn nothing(_: &TestHost) {}

fn conf_replaced(h: &TestHost, bytes: &[u8]) {
    std::fs::write(h.path(CONF_101), bytes).unwrap();
}

fn conf_gone(h: &TestHost) -> PathBuf {
    let p = h.path(CONF_101);
    std::fs::remove_file(&p).unwrap();
    p
}

fn link_to_passwd(h: &TestHost) {
    symlink("/etc/passwd", conf_gone(h)).unwrap();
}

fn link_inside(h: &TestHost) {
    let p = conf_gone(h);
    h.put("/etc/pve/lxc/101.real", crate::util::EXAMPLE_101);
    symlink("101.real", p).unwrap();
}

fn link_dangling(h: &TestHost) {
    symlink("/nowhere/101.conf", conf_gone(h)).unwrap();
}

fn fifo(h: &TestHost) {
    let p = conf_gone(h);
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

fn directory(h: &TestHost) {
    std::fs::create_dir(conf_gone(h)).unwrap();
}

fn socket(h: &TestHost) {
    let l = std::os::unix::net::UnixListener::bind(conf_gone(h)).unwrap();
    // The socket file stays after the listener closes.
    drop(l);
}

fn huge_sparse(h: &TestHost) {
    std::fs::File::options()
        .write(true)
        .open(h.path(CONF_101))
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
}

fn pve_lxc_links_to_etc(h: &TestHost) {
    let d = h.path("/etc/pve/lxc");
    std::fs::rename(&d, h.path("/etc/pve/lxc.moved")).unwrap();
    symlink("/etc", d).unwrap();
}

fn pve_lxc_climbs_out(h: &TestHost) {
    let d = h.path("/etc/pve/lxc");
    std::fs::rename(&d, h.path("/etc/pve/lxc.moved")).unwrap();
    symlink("../../../../../../../../../../../etc", d).unwrap();
}

fn zeroed(h: &TestHost) {
    conf_replaced(h, &[0u8; 1855]);
}

fn random_bytes(h: &TestHost) {
    let mut x: u32 = 0x9e37_79b9;
    let bytes: Vec<u8> = (0..1855)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 255) as u8 + 1
        })
        .collect();
    conf_replaced(h, &bytes);
}

fn empty(h: &TestHost) {
    conf_replaced(h, b"");
}

fn blanks(h: &TestHost) {
    conf_replaced(h, b"\n  \n\t\r\n");
}

fn comments_only(h: &TestHost) {
    conf_replaced(h, b"#vLLM worker\n#nothing else\n");
}

fn one_nul(h: &TestHost) {
    let mut b = crate::util::EXAMPLE_101.as_bytes().to_vec();
    b.insert(200, 0);
    conf_replaced(h, &b);
}

fn readme_over_config(h: &TestHost) {
    conf_replaced(
        h,
        b"phoenix-gpu\n===========\n\nGive NVIDIA GPUs to LXC containers.\nRun it twice: nothing changes.\n\
          See docs/ for more.\ncores: 4 is a line that parses by chance\n",
    );
}

fn json_over_config(h: &TestHost) {
    conf_replaced(h, br#"{"arch": "amd64", "cores": 16}"#);
}

fn orch(h: &TestHost, json: &str) {
    h.put("/orch.json", json);
}

fn orch_dup(h: &TestHost) {
    orch(
        h,
        r#"{"lxc_configs": {"101": {"gpu_assignment": "0"}, "101": {"gpu_assignment": "1"}}}"#,
    );
}

fn orch_dup_field(h: &TestHost) {
    orch(
        h,
        r#"{"lxc_configs": {"101": {"gpu_assignment": "0", "gpu_assignment": "1"}}}"#,
    );
}

fn orch_not_json(h: &TestHost) {
    orch(h, "lxc_configs: {101: 0}");
}

fn orch_list(h: &TestHost) {
    orch(h, r#"{"lxc_configs": [101]}"#);
}

fn orch_fifo(h: &TestHost) {
    assert!(Command::new("mkfifo")
        .arg(h.path("/orch.json"))
        .status()
        .unwrap()
        .success());
}

fn orch_dir(h: &TestHost) {
    std::fs::create_dir(h.path("/orch.json")).unwrap();
}

fn orch_huge(h: &TestHost) {
    let f = std::fs::File::create(h.path("/orch.json")).unwrap();
    f.set_len(32 << 20).unwrap();
}

fn orch_bad_gpus(h: &TestHost) {
    orch(h, r#"{"lxc_configs": {"101": {"gpu_assignment": "0,,1"}}}"#);
}

fn orch_bad_id(h: &TestHost) {
    orch(h, r#"{"lxc_configs": {"abc": {"gpu_assignment": "0"}}}"#);
}

fn orch_file_url(h: &TestHost) {
    orch(
        h,
        r#"{"nvidia_runfile_url": "file:///etc/shadow", "lxc_configs": {"101": {"gpu_assignment": "1"}}}"#,
    );
}

fn orch_nul(h: &TestHost) {
    h.put("/orch.json", [0u8; 64]);
}

const INFO_1: &str = "/proc/driver/nvidia/gpus/0000:00:07.0/information";

fn info_edit(h: &TestHost, edit: impl Fn(&str) -> String) {
    let t = edit(&h.get(INFO_1));
    h.put(INFO_1, t);
}

fn minor(h: &TestHost, m: &str) {
    info_edit(h, |t| {
        t.replace("Device Minor: \t 1", &format!("Device Minor: \t {m}"))
    });
}

fn minor_dup(h: &TestHost) {
    minor(h, "0");
}

fn minor_255(h: &TestHost) {
    minor(h, "255");
}

fn minor_254(h: &TestHost) {
    minor(h, "254");
}

fn minor_999(h: &TestHost) {
    minor(h, "999");
}

fn minor_word(h: &TestHost) {
    minor(h, "one");
}

fn info_cut(h: &TestHost) {
    info_edit(h, |t| t[..t.find("Device Minor").unwrap()].to_owned());
}

fn info_empty(h: &TestHost) {
    info_edit(h, |_| String::new());
}

fn info_fifo(h: &TestHost) {
    let p = h.path(INFO_1);
    std::fs::remove_file(&p).unwrap();
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

fn devices_empty(h: &TestHost) {
    h.put("/proc/devices", "");
}

fn devices_junk(h: &TestHost) {
    h.put(
        "/proc/devices",
        "Character devices:\n195 nvidia\nxyz nvidia-uvm\n",
    );
}

fn devices_fifo(h: &TestHost) {
    let p = h.path("/proc/devices");
    std::fs::remove_file(&p).unwrap();
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

fn version_junk(h: &TestHost) {
    h.put("/sys/module/nvidia/version", "\0\0\0\0");
}

fn version_link_out(h: &TestHost) {
    let p = h.path("/sys/module/nvidia/version");
    std::fs::remove_file(&p).unwrap();
    symlink("/etc/hostname", p).unwrap();
}

fn vmlist_nul(h: &TestHost) {
    h.put("/etc/pve/.vmlist", [0u8; 100]);
    h.put("/etc/hostname", "pve1\n");
}

fn vmlist_hostile_node(h: &TestHost) {
    h.put(
        "/etc/pve/.vmlist",
        r#"{"version": 1, "ids": {"101": {"node": "-oProxyCommand=touch /tmp/x", "type": "lxc", "version": 1}}}"#,
    );
    h.put("/etc/hostname", "pve1\n");
}

fn lxc_tree(h: &TestHost) {
    h.put(
        "/var/lib/lxc/gpu1/config",
        "lxc.arch = x86_64\nlxc.uts.name = gpu1\n",
    );
}

fn lxc_link(h: &TestHost) {
    lxc_tree(h);
    let p = h.path("/var/lib/lxc/gpu1/config");
    std::fs::remove_file(&p).unwrap();
    symlink("/etc/shadow", p).unwrap();
}

fn lxc_zeroed(h: &TestHost) {
    h.put("/var/lib/lxc/gpu1/config", [0u8; 512]);
}

fn lxc_fifo(h: &TestHost) {
    lxc_tree(h);
    let p = h.path("/var/lib/lxc/gpu1/config");
    std::fs::remove_file(&p).unwrap();
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

// ---- the matrix ---------------------------------------------------------------------------

/// Numbers and values out of range or malformed, on the command line and in the environment.
const VALUES: &[Case] = &[
    case(
        "jobs-huge-check",
        nothing,
        &["check", "--all", "--jobs", "2305843009213693952"],
        2,
        "1..=1024",
    ),
    case(
        "jobs-huge-apply",
        nothing,
        &[
            "apply",
            "101",
            "102",
            "--gpus",
            "1",
            "--jobs",
            "2305843009213693952",
        ],
        2,
        "1..=1024",
    ),
    case(
        "jobs-huge-sync",
        nothing,
        &["sync", "--all", "--jobs", "2305843009213693952"],
        2,
        "1..=1024",
    ),
    case(
        "jobs-zero",
        nothing,
        &["check", "--all", "--jobs", "0"],
        2,
        "1..=1024",
    ),
    case(
        "jobs-negative",
        nothing,
        &["check", "--all", "--jobs=-3"],
        2,
        "--jobs",
    ),
    case(
        "jobs-above-u64",
        nothing,
        &["apply", "101", "--jobs", "99999999999999999999999"],
        2,
        "--jobs",
    ),
    case(
        "restart-timeout-huge",
        nothing,
        &[
            "apply",
            "101",
            "--gpus",
            "1",
            "--restart-timeout",
            "18446744073709551615",
        ],
        2,
        "1..=86400",
    ),
    case(
        "restart-timeout-zero",
        nothing,
        &["sync", "--all", "--restart-timeout", "0"],
        2,
        "1..=86400",
    ),
    case(
        "ssh-max-sessions-zero",
        nothing,
        &["check", "101", "--ssh-max-sessions", "0"],
        2,
        "1..=1024",
    ),
    case(
        "ssh-max-sessions-huge",
        nothing,
        &["check", "101", "--ssh-max-sessions", "4294967296"],
        2,
        "--ssh-max-sessions",
    ),
    case(
        "gpus-index-huge",
        nothing,
        &["apply", "101", "--gpus", "4294967296", "--config-only"],
        2,
        "invalid GPU selection",
    ),
    case(
        "ctid-huge",
        nothing,
        &["apply", "99999999999999999999", "--gpus", "1"],
        2,
        "invalid CTID",
    ),
    case(
        "ctid-leading-dash",
        nothing,
        &["apply", "--gpus", "1", "--", "-101"],
        2,
        "invalid CTID",
    ),
    case(
        "cuda-huge",
        nothing,
        &[
            "apply",
            "101",
            "--gpus",
            "1",
            "--cuda",
            "99999999999999999999.1",
            "--config-only",
        ],
        2,
        "invalid CUDA version",
    ),
    Case {
        env: &[("GPU_ASSIGNMENT", "0,,1")],
        ..case(
            "env-gpu-assignment",
            nothing,
            &["apply", "101", "--config-only"],
            2,
            "invalid GPU selection",
        )
    },
    Case {
        env: &[("NVIDIA_DRIVER_VERSION", "99999999999999999999.1.1")],
        ..case(
            "env-driver-version",
            nothing,
            &["apply", "101", "--gpus", "1", "--config-only"],
            2,
            "invalid driver version",
        )
    },
    Case {
        env: &[("NVIDIA_RUNFILE_URL", "file:///etc/shadow")],
        ..case(
            "env-runfile-url",
            nothing,
            &["apply", "101", "--gpus", "1", "--config-only"],
            2,
            "--runfile-url",
        )
    },
    Case {
        env: &[("NVIDIA_REPO_URL", "http://exa mple/")],
        ..case(
            "env-repo-url",
            nothing,
            &["apply", "101", "--gpus", "1", "--config-only"],
            2,
            "--repo-url",
        )
    },
];

/// SSH destinations that are not ones: refused before ssh runs (the stub would say).
const DESTINATIONS: &[Case] = &[
    case(
        "host-dash-v",
        nothing,
        &["--host", "ssh://-V", "inventory"],
        2,
        "--host",
    ),
    case(
        "host-space-in-user",
        nothing,
        &["--host", "ssh://ro ot@x", "inventory"],
        2,
        "the user may hold only",
    ),
    case(
        "host-proxycommand-user",
        nothing,
        &[
            "--host",
            "ssh://-oProxyCommand=touch @ROOT@/pwned@x",
            "inventory",
        ],
        2,
        "--host",
    ),
    case(
        "host-proxycommand-host",
        nothing,
        &["--host", "ssh://root@-oProxyCommand=x", "inventory"],
        2,
        "the host must be",
    ),
    case(
        "host-port-zero",
        nothing,
        &["--host", "ssh://root@pve2:0", "inventory"],
        2,
        "1 to 65535",
    ),
    case(
        "host-port-huge",
        nothing,
        &["--host", "ssh://root@pve2:65536", "inventory"],
        2,
        "1 to 65535",
    ),
    case(
        "host-newline",
        nothing,
        &["--host", "ssh://root@pve2\nProxyCommand=x", "inventory"],
        2,
        "--host",
    ),
    case(
        "host-not-an-address",
        nothing,
        &["--host", "ssh://999.1.1.1", "inventory"],
        2,
        "not one",
    ),
    case(
        "host-shell",
        nothing,
        &["--host", "ssh://$(touch @ROOT@/pwned)", "inventory"],
        2,
        "--host",
    ),
    case(
        "host-no-scheme",
        nothing,
        &["--host=-oProxyCommand=x", "inventory"],
        2,
        "expected ssh://",
    ),
    case(
        "node-proxycommand",
        nothing,
        &["--node", "pve2=ssh://-oProxyCommand=x@h", "check", "101"],
        2,
        "--node",
    ),
    case(
        "node-bad-name",
        nothing,
        &["--node", "pve 2=ssh://h", "check", "101"],
        2,
        "--node",
    ),
    case(
        "ssh-user-option",
        nothing,
        &["--ssh-user=-oProxyCommand=x", "check", "101"],
        2,
        "--ssh-user",
    ),
    case(
        "vmlist-node-option",
        vmlist_hostile_node,
        &["check", "101"],
        2,
        "the host must be",
    ),
];

/// Configs that are not regular files, or lead out of the root.
const CONFIG_FILES: &[Case] = &[
    case(
        "config-link-to-passwd",
        link_to_passwd,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "is a symbolic link, not a regular file",
    ),
    case(
        "config-link-to-passwd-plan",
        link_to_passwd,
        &["plan", "101", "--gpus", "1"],
        4,
        "a symbolic link",
    ),
    case(
        "config-link-inside",
        link_inside,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "a symbolic link",
    ),
    case(
        "config-link-dangling",
        link_dangling,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "a symbolic link",
    ),
    case(
        "config-link-check",
        link_to_passwd,
        &["check", "101"],
        4,
        "a symbolic link",
    ),
    case(
        "config-link-remove",
        link_to_passwd,
        &["remove", "101"],
        4,
        "a symbolic link",
    ),
    case(
        "config-fifo-apply",
        fifo,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "a FIFO",
    ),
    case("config-fifo-check", fifo, &["check", "101"], 4, "a FIFO"),
    case(
        "config-fifo-check-all",
        fifo,
        &["check", "--all"],
        4,
        "a FIFO",
    ),
    case("config-fifo-remove", fifo, &["remove", "101"], 4, "a FIFO"),
    case(
        "config-directory",
        directory,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "a directory",
    ),
    case(
        "config-socket",
        socket,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "a socket",
    ),
    case(
        "config-huge-sparse",
        huge_sparse,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "larger than",
    ),
    case(
        "config-dir-links-to-etc",
        pve_lxc_links_to_etc,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "does not exist",
    ),
    case(
        "config-dir-climbs-out",
        pve_lxc_climbs_out,
        &["apply", "101", "--gpus", "1", "--config-only"],
        4,
        "does not exist",
    ),
    case(
        "lxc-config-link",
        lxc_link,
        &[
            "--target",
            "lxc",
            "apply",
            "gpu1",
            "--gpus",
            "1",
            "--config-only",
        ],
        4,
        "a symbolic link",
    ),
    case(
        "lxc-config-fifo",
        lxc_fifo,
        &["--target", "lxc", "check", "gpu1"],
        4,
        "a FIFO",
    ),
];

/// Configs that are not configs.
const GARBAGE: &[Case] = &[
    case(
        "config-zeroed-apply",
        zeroed,
        GPU_APPLY,
        4,
        "1855 NUL byte(s)",
    ),
    case(
        "config-zeroed-check",
        zeroed,
        &["check", "101"],
        4,
        "/var/lib/phoenix-gpu/backups/101",
    ),
    case(
        "config-zeroed-check-all",
        zeroed,
        &["check", "--all"],
        4,
        "NUL byte",
    ),
    case(
        "config-zeroed-remove",
        zeroed,
        &["remove", "101"],
        4,
        "NUL byte",
    ),
    case(
        "config-zeroed-plan",
        zeroed,
        &["plan", "101", "--gpus", "1"],
        4,
        "restore it from one of the backups",
    ),
    case(
        "config-random",
        random_bytes,
        GPU_APPLY,
        4,
        "is not a container config",
    ),
    case("config-empty", empty, GPU_APPLY, 4, "it is empty"),
    case("config-blanks", blanks, GPU_APPLY, 4, "it is empty"),
    case(
        "config-comments-only",
        comments_only,
        GPU_APPLY,
        4,
        "none of its lines is a config line",
    ),
    case("config-one-nul", one_nul, GPU_APPLY, 4, "1 NUL byte(s)"),
    case(
        "config-readme",
        readme_over_config,
        GPU_APPLY,
        4,
        "are not config lines",
    ),
    case(
        "config-json",
        json_over_config,
        GPU_APPLY,
        4,
        "none of its lines",
    ),
    case(
        "lxc-config-zeroed",
        lxc_zeroed,
        &[
            "--target",
            "lxc",
            "apply",
            "gpu1",
            "--gpus",
            "1",
            "--config-only",
        ],
        4,
        "NUL byte",
    ),
];

const GPU_APPLY: &[&str] = &["apply", "101", "--gpus", "1", "--config-only"];

/// The orchestrator's JSON file.
const ORCHESTRATOR: &[Case] = &[
    case(
        "orch-duplicate-ctid",
        orch_dup,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "--all",
            "--config-only",
        ],
        2,
        "container \"101\" is given twice",
    ),
    case(
        "orch-duplicate-field",
        orch_dup_field,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "--all",
            "--config-only",
        ],
        2,
        "duplicate field",
    ),
    case(
        "orch-not-json",
        orch_not_json,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "101",
            "--config-only",
        ],
        2,
        "not valid phoenix_lxc_configs JSON",
    ),
    case(
        "orch-nul",
        orch_nul,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "101",
            "--config-only",
        ],
        2,
        "not valid phoenix_lxc_configs JSON",
    ),
    case(
        "orch-list",
        orch_list,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "--all",
            "--config-only",
        ],
        2,
        "has no lxc_configs object",
    ),
    case(
        "orch-fifo",
        orch_fifo,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "--all",
            "--config-only",
        ],
        2,
        "not a regular file",
    ),
    case(
        "orch-directory",
        orch_dir,
        &["--phoenix-config", "@ROOT@/orch.json", "apply", "--all"],
        2,
        "not a regular file",
    ),
    case(
        "orch-huge",
        orch_huge,
        &["--phoenix-config", "@ROOT@/orch.json", "apply", "--all"],
        2,
        "larger than",
    ),
    case(
        "orch-missing",
        nothing,
        &["--phoenix-config", "@ROOT@/orch.json", "apply", "--all"],
        2,
        "cannot read the orchestrator config",
    ),
    case(
        "orch-bad-gpus",
        orch_bad_gpus,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "--all",
            "--config-only",
        ],
        2,
        "gpu_assignment of container 101",
    ),
    case(
        "orch-bad-ctid",
        orch_bad_id,
        &[
            "--phoenix-config",
            "@ROOT@/orch.json",
            "apply",
            "--all",
            "--config-only",
        ],
        2,
        "invalid CTID \"abc\"",
    ),
    case(
        "orch-file-url",
        orch_file_url,
        &["--phoenix-config", "@ROOT@/orch.json", "apply", "--all"],
        2,
        "nvidia_runfile_url",
    ),
];

/// The host's driver files.
const INVENTORY: &[Case] = &[
    case(
        "gpu-minor-duplicate",
        minor_dup,
        GPU_APPLY,
        8,
        "the same device minor 0",
    ),
    case("gpu-minor-255", minor_255, GPU_APPLY, 8, "/dev/nvidiactl's"),
    case(
        "gpu-minor-254",
        minor_254,
        &["check", "101"],
        8,
        "/dev/nvidia-modeset's",
    ),
    case(
        "gpu-minor-999",
        minor_999,
        &["inventory"],
        8,
        "GPU minors are 0 to 253",
    ),
    case(
        "gpu-minor-word",
        minor_word,
        GPU_APPLY,
        8,
        "is not a number",
    ),
    case("gpu-information-cut", info_cut, GPU_APPLY, 8, "cut short"),
    case(
        "gpu-information-empty",
        info_empty,
        &["inventory"],
        8,
        "0000:00:07.0/information",
    ),
    case(
        "gpu-information-fifo",
        info_fifo,
        &["inventory"],
        8,
        "a FIFO",
    ),
    case(
        "proc-devices-empty",
        devices_empty,
        GPU_APPLY,
        8,
        "/proc/devices",
    ),
    case(
        "proc-devices-junk",
        devices_junk,
        GPU_APPLY,
        8,
        "\"xyz nvidia-uvm\"",
    ),
    case(
        "proc-devices-fifo",
        devices_fifo,
        &["check", "--all"],
        8,
        "a FIFO",
    ),
    case(
        "driver-version-junk",
        version_junk,
        &["inventory"],
        8,
        "names no driver version",
    ),
    case(
        "driver-version-link",
        version_link_out,
        &["inventory"],
        8,
        "a symbolic link",
    ),
    case(
        "vmlist-zeroed",
        vmlist_nul,
        &["check", "101"],
        1,
        "cannot understand /etc/pve/.vmlist",
    ),
];

#[test]
fn bad_values_stop_at_the_parser() {
    check_cases(VALUES, &[]);
}

#[test]
fn bad_destinations_run_no_ssh() {
    check_cases(DESTINATIONS, &[]);
}

#[test]
fn configs_that_are_not_files_are_refused() {
    check_cases(CONFIG_FILES, &[]);
}

#[test]
fn configs_that_are_garbage_are_refused() {
    check_cases(GARBAGE, &[]);
}

#[test]
fn bad_orchestrator_configs_are_refused() {
    check_cases(ORCHESTRATOR, &[]);
}

#[test]
fn inventories_that_cannot_be_right_are_refused() {
    check_cases(INVENTORY, &[]);
}

// ---- faults that need root ----------------------------------------------------------------

fn char_device(h: &TestHost) {
    let p = conf_gone(h);
    assert!(Command::new("mknod")
        .arg(p)
        .args(["c", "1", "5"])
        .status()
        .unwrap()
        .success());
}

fn not_ours(h: &TestHost) {
    std::os::unix::fs::chown(h.path(CONF_101), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(h.path(CONF_101), std::fs::Permissions::from_mode(0o640)).unwrap();
}

fn backups_present(h: &TestHost) {
    h.put(
        "/var/lib/phoenix-gpu/backups/101/20200101T000000.000Z.conf",
        crate::util::EXAMPLE_101,
    );
}

fn mount_ok(c: &mut Command) {
    assert!(c.status().unwrap().success(), "{c:?}");
}

/// Mount points, unmounted (lazily) when dropped, so a failing test leaves none behind.
struct Mounted(Vec<PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// `/etc/pve/lxc` bind-mounted read-only over itself: what `/etc/pve` is without quorum.
fn pve_read_only(h: &TestHost) -> Mounted {
    let d = h.path("/etc/pve/lxc");
    mount_ok(Command::new("mount").arg("--bind").arg(&d).arg(&d));
    let m = Mounted(vec![d.clone()]);
    mount_ok(
        Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&d),
    );
    m
}

/// A full disk under `dir` (a host path): a tmpfs of one page, `keep` copied in, the rest
/// filled.
fn full_disk(h: &TestHost, dir: &str, keep: &[&str]) -> Mounted {
    let d = h.path(dir);
    std::fs::create_dir_all(&d).unwrap();
    let saved: Vec<(String, Vec<u8>)> = keep
        .iter()
        .map(|k| ((*k).to_owned(), std::fs::read(d.join(k)).unwrap()))
        .collect();
    mount_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4k,nr_inodes=16", "tmpfs"])
            .arg(&d),
    );
    let m = Mounted(vec![d.clone()]);
    for (k, bytes) in saved {
        std::fs::write(d.join(k), bytes).unwrap();
    }
    // Fill what is left (the write fails once the page is used up).
    let _ = std::fs::write(d.join("fill"), vec![b'x'; 8192]);
    m
}

fn config_disk_full(h: &TestHost) -> Mounted {
    full_disk(h, "/etc/pve/lxc", &["101.conf"])
}

fn backup_disk_full(h: &TestHost) -> Mounted {
    full_disk(h, "/var/lib/phoenix-gpu/backups/101", &[])
}

/// Cases on this machine's mounts or device numbers: (setup, mounts made after it and
/// undone after the run).
struct RootCase {
    case: Case,
    mounts: fn(&TestHost) -> Mounted,
}

fn no_mounts(_: &TestHost) -> Mounted {
    Mounted(Vec::new())
}

fn root_cases() -> Vec<RootCase> {
    let rc = |case, mounts| RootCase { case, mounts };
    vec![
        rc(
            case(
                "config-char-device",
                char_device,
                GPU_APPLY,
                4,
                "a character device",
            ),
            no_mounts,
        ),
        rc(
            case(
                "config-char-device-check-all",
                char_device,
                &["check", "--all"],
                4,
                "a character device",
            ),
            no_mounts,
        ),
        rc(
            case(
                "pve-read-only-apply",
                backups_present,
                GPU_APPLY,
                8,
                "/etc/pve is read-only",
            ),
            pve_read_only,
        ),
        rc(
            case(
                "pve-read-only-not-ours",
                not_ours,
                GPU_APPLY,
                8,
                "quorate cluster",
            ),
            pve_read_only,
        ),
        rc(
            case(
                "pve-read-only-remove",
                backups_present,
                &["remove", "101"],
                8,
                "/etc/pve is read-only",
            ),
            pve_read_only,
        ),
        rc(
            case("config-disk-full", backups_present, GPU_APPLY, 8, "is full"),
            config_disk_full,
        ),
        rc(
            case("backup-disk-full", nothing, GPU_APPLY, 8, "is full"),
            backup_disk_full,
        ),
    ]
}

#[test]
fn faults_as_root_change_nothing() {
    if !is_root("faults_as_root_change_nothing") {
        return;
    }
    let mut failed = Vec::new();
    for RootCase { case: c, mounts } in root_cases() {
        let h = TestHost::h200x2();
        (c.setup)(&h);
        let mounted = mounts(&h);
        let before = snapshot(h.root());
        let r = run_bounded(&h, c.args, &[], &[]);
        let after = snapshot(h.root());
        drop(mounted);
        if r.code != c.code || !r.stderr.contains(c.says) || before != after {
            failed.push(format!(
                "case {}: exit {} (wanted {}), says {:?}: {}, files changed: {:?}\n  stderr: {}",
                c.name,
                r.code,
                c.code,
                c.says,
                r.stderr.contains(c.says),
                changed(&before, &after),
                r.stderr.trim()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// `--root` that is not a directory: refused as a bad flag, not read as a host without a
/// driver.
#[test]
fn a_root_that_is_not_a_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let fifo = t.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (root, says) in [
        (file, "it is not a directory"),
        (fifo, "it is not a directory"),
        (t.path().join("missing"), "it cannot be used"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_phoenix-gpu"))
            .arg("--root")
            .arg(&root)
            .args(["--log-file", "/dev/null", "check", "101"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", root.display());
        assert!(
            stderr.contains("--root") && stderr.contains(says),
            "{stderr}"
        );
    }
}

/// A FIFO as the log file or the orchestrator config: nothing waits for a writer or reader.
#[test]
fn fifos_given_as_files_never_block() {
    let h = TestHost::h200x2();
    let fifo = h.log.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let fifo = fifo.display().to_string();
    let root = h.root().display().to_string();
    let bin = env!("CARGO_BIN_EXE_phoenix-gpu").to_owned();
    let r = run_argv(
        &[
            bin.clone(),
            "--root".into(),
            root.clone(),
            "--log-file".into(),
            fifo.clone(),
            "inventory".into(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stderr.contains("cannot open log file"), "{r:#?}");
    let r = run_argv(
        &[
            bin,
            "--root".into(),
            root,
            "--log-file".into(),
            "/dev/null".into(),
            "--phoenix-config".into(),
            fifo,
            "check".into(),
            "--all".into(),
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("not a regular file"), "{r:#?}");
    assert!(
        !r.stderr.contains("cannot open log file"),
        "/dev/null is a fine log: {r:#?}"
    );
}

// ---- stories ------------------------------------------------------------------------------

/// The issue's story: ten applies fail on a read-only /etc/pve, then one succeeds. Failed
/// writes leave no backup, so the one backup is the config as it was; and after many more
/// changes the first backup (the config before the tool's first change) is still there.
#[test]
fn failed_writes_never_push_out_history() {
    if !is_root("failed_writes_never_push_out_history") {
        return;
    }
    let h = TestHost::h200x2();
    let original = std::fs::read(h.path(CONF_101)).unwrap();
    let mounted = pve_read_only(&h);
    for _ in 0..10 {
        let r = run_bounded(&h, GPU_APPLY, &[], &[]);
        assert_eq!(r.code, 8, "{r:#?}");
    }
    drop(mounted);
    assert_eq!(
        h.backups("101"),
        Vec::<String>::new(),
        "no backup of a failed write"
    );
    let r = run_bounded(&h, GPU_APPLY, &[], &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let b = h.backups("101");
    assert_eq!(b.len(), 1);
    let first = h.path(&format!("/var/lib/phoenix-gpu/backups/101/{}", b[0]));
    assert_eq!(std::fs::read(&first).unwrap(), original);
    for i in 0..12 {
        let gpus = if i % 2 == 0 { "0" } else { "1" };
        let r = run_bounded(
            &h,
            &["apply", "101", "--gpus", gpus, "--config-only"],
            &[],
            &[],
        );
        assert_eq!(r.code, 0, "{r:#?}");
    }
    let b = h.backups("101");
    assert_eq!(b.len(), 11, "the first and the newest ten: {b:?}");
    assert_eq!(
        std::fs::read(h.path(&format!("/var/lib/phoenix-gpu/backups/101/{}", b[0]))).unwrap(),
        original
    );
}

/// A plain LXC config of a user's, `1000:1000 0640`, keeps its owner and mode; so does a
/// Proxmox config under a root.
#[test]
fn owner_and_mode_are_kept() {
    if !is_root("owner_and_mode_are_kept") {
        return;
    }
    let h = TestHost::h200x2();
    lxc_tree(&h);
    for (conf, args) in [
        (
            "/var/lib/lxc/gpu1/config",
            &[
                "--target",
                "lxc",
                "apply",
                "gpu1",
                "--gpus",
                "1",
                "--config-only",
            ][..],
        ),
        (CONF_101, GPU_APPLY),
    ] {
        let p = h.path(conf);
        std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let r = run_bounded(&h, args, &[], &[]);
        assert_eq!(r.code, 0, "{r:#?}");
        assert!(std::fs::read_to_string(&p).unwrap().contains("c 195:1 rwm"));
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1000, 1000, 0o640),
            "{conf}"
        );
    }
}

/// A writer killed while renaming its backup leaves a temporary file in the backup
/// directory; the next write removes it (its writer is dead), and leaves one of a live
/// process alone.
#[test]
fn orphans_in_the_backup_directory_are_cleaned() {
    let h = TestHost::h200x2();
    let mut c = Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let dir = "/var/lib/phoenix-gpu/backups/101";
    let orphan = format!("{dir}/.20200101T000000.000Z.conf.phoenix-tmp.{dead}.0");
    let live = format!(
        "{dir}/.20200101T000000.001Z.conf.phoenix-tmp.{}.0",
        std::process::id()
    );
    h.put(&orphan, "half a backup");
    h.put(&live, "being written");
    let r = run_bounded(&h, GPU_APPLY, &[], &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(
        !h.path(&orphan).exists(),
        "the dead writer's file is removed"
    );
    assert!(h.path(&live).exists(), "a live writer's stays");
    assert_eq!(
        h.backups("101")
            .iter()
            .filter(|b| b.ends_with(".conf"))
            .count(),
        1
    );
}

/// The symlink of the issue: `/etc/passwd` is neither read into the output nor written.
#[test]
fn a_config_link_is_never_followed() {
    let h = TestHost::h200x2();
    link_to_passwd(&h);
    for args in [
        GPU_APPLY,
        &["plan", "101", "--gpus", "1"][..],
        &["check", "101"],
    ] {
        let r = run_bounded(&h, args, &[], &[]);
        assert_eq!(r.code, 4, "{r:#?}");
        assert!(!r.stdout.contains("root:x:0:0") && !r.stderr.contains("root:x:0:0"));
    }
    assert_eq!(
        std::fs::read_link(h.path(CONF_101)).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(h.backups("101").is_empty());
}

/// `apply 101 101` works on 101 once: one row, one write, one backup.
#[test]
fn a_container_named_twice_is_worked_on_once() {
    let h = TestHost::h200x2();
    let r = run_bounded(
        &h,
        &[
            "apply",
            "101",
            "101",
            "--gpus",
            "1",
            "--config-only",
            "--json",
        ],
        &[],
        &[],
    );
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.json()["rows"].as_array().unwrap().len(), 1);
    assert_eq!(h.backups("101").len(), 1);
}

/// A `/dev/nvidia-uvm` left from before a module reload (237:0 while `/proc/devices` says
/// 238) is drift, with the way to fix it.
#[test]
fn a_stale_uvm_node_is_drift() {
    if !is_root("a_stale_uvm_node_is_drift") {
        return;
    }
    let h = TestHost {
        tree: test_support::HostTree::h200x2_with_device_nodes(),
        log: tempfile::tempdir().unwrap(),
    };
    h.put(CONF_101, crate::util::EXAMPLE_101);
    let r = run_bounded(
        &h,
        &["apply", "101", "--gpus", "1", "--config-only"],
        &[],
        &[],
    );
    assert_eq!(r.code, 0, "{r:#?}");
    let r = run_bounded(&h, &["check", "101", "--json"], &[], &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let uvm = h.path("/dev/nvidia-uvm");
    std::fs::remove_file(&uvm).unwrap();
    mount_ok(Command::new("mknod").arg(&uvm).args(["c", "237", "0"]));
    let r = run_bounded(&h, &["check", "101", "--json"], &[], &[]);
    assert_eq!(r.code, 10, "{r:#?}");
    let j = r.json();
    let f = j["containers"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "stale_node")
        .unwrap_or_else(|| panic!("no stale_node finding: {j:#}"));
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.contains("/dev/nvidia-uvm, which is 237:0"),
        "{detail}"
    );
    assert!(detail.contains("nvidia-modprobe -u -c0"), "{detail}");
}
