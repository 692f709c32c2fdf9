//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Give NVIDIA GPUs to LXC containers on Proxmox VE and plain LXC hosts, and keep them working.
#[derive(Debug, Parser)]
#[command(name = "phoenix-gpu", version, about, max_term_width = 100)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Resolve every host path under DIR (a captured host, tests, offline planning; with --host, DIR is on that node)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where containers live [default: pve when /etc/pve/lxc exists on the host, else lxc]
    #[arg(long, global = true, value_enum)]
    pub target: Option<TargetKind>,
    /// Write bind-mount sources as their paths under --root, for testing on a fake GPU host
    #[arg(long, global = true, requires = "root")]
    pub bind_under_root: bool,
    /// The LXC path of plain LXC containers (a host path, under --root when given)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/lxc"
    )]
    pub lxcpath: PathBuf,
    /// Run everything on this node over SSH.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help = "Run everything on this node over SSH: ssh://user@node[:port]"
    )]
    pub host: Option<String>,
    /// Print a final JSON report on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Append the log here (info lines; debug too with -v) [default: /var/log/phoenix-gpu.log when writable]
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// More output on stderr: -v each step as it ends, -vv debug, -vvv trace
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less output on stderr (-q: warnings and errors, -qq: errors)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// The orchestrator's phoenix_lxc_configs.json: per-CT GPUs and driver settings as defaults
    #[arg(long, global = true, value_name = "FILE")]
    pub phoenix_config: Option<PathBuf>,
    /// The user for SSH connections to other cluster nodes
    #[arg(long, global = true, value_name = "USER", default_value = "root")]
    pub ssh_user: String,
    /// Reach cluster node NAME at this address instead of ssh://SSH_USER@NAME (repeatable)
    #[arg(long = "node", global = true, value_name = "NAME=URL")]
    pub nodes: Vec<String>,
    /// Resolve every host path of node NAME under DIR on that node, as --root does locally
    /// (repeatable; for tests, and for nodes whose configs are mounted elsewhere)
    #[arg(long = "node-root", global = true, value_name = "NAME=DIR")]
    pub node_roots: Vec<String>,
    /// An ssh_config file for SSH connections (keys, known_hosts, ports); host keys are always
    /// checked strictly
    #[arg(long, global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// The most SSH sessions open at once on one node's connection, the rest wait; keep it
    /// below the node sshd's MaxSessions (OpenSSH's default is 10)
    #[arg(long, global = true, value_name = "N",
          default_value_t = exec_backend::ssh::DEFAULT_MAX_SESSIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_SSH_SESSIONS))]
    pub ssh_max_sessions: u32,
    /// The pct program on every node (tests use a stand-in)
    #[arg(long, global = true, value_name = "PATH", hide = true)]
    pub pct_program: Option<PathBuf>,
}

/// The most containers worked on at once (`--jobs`): far more than one host runs in
/// parallel with profit, and small enough that no count of tasks, sessions or permits
/// derived from it can overflow.
pub const MAX_JOBS: i64 = 1024;

/// The most sessions `--ssh-max-sessions` opens at once on one connection.
pub const MAX_SSH_SESSIONS: i64 = 1024;

/// The longest `--restart-timeout`, in seconds (a day): added to clocks and given to remote
/// `timeout`, so it is kept far from any overflow.
pub const MAX_RESTART_TIMEOUT: u64 = 86_400;

/// `--jobs`: 1 to [`MAX_JOBS`]; clap's error names the range.
fn jobs_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=MAX_JOBS)
}

/// `--target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// Proxmox VE.
    #[value(help = "Proxmox VE: /etc/pve/lxc/<CTID>.conf, pct")]
    Pve,
    /// Plain LXC.
    #[value(help = "Plain LXC: <lxcpath>/<name>/config, lxc-attach")]
    Lxc,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the host's driver, GPUs, device majors and nodes
    Inventory,
    /// Show what apply would change (config diff and steps); changes nothing
    Plan(ApplyArgs),
    /// Give containers their GPUs and a matching driver userspace (one CTID, several, or
    /// --all of the orchestrator config in parallel)
    #[command(after_long_help = FLEET_EXIT_HELP)]
    Apply(FleetApplyArgs),
    /// Compare the live host with container configs; exit 10 on drift
    #[command(after_long_help = FLEET_EXIT_HELP)]
    Check(CheckArgs),
    /// After a host driver upgrade, bring every GPU container's userspace to the host's version
    #[command(after_long_help = FLEET_EXIT_HELP)]
    Sync(SyncArgs),
    /// Prepare this host: device nodes at boot, an optional pre-start check
    #[command(subcommand)]
    Host(HostCommand),
    /// Check in the container that every passed device node opens, nvidia-smi sees exactly its
    /// GPUs and CUDA creates a context on each
    Verify(ApplyArgs),
    /// Take the tool's passthrough entries out of the container's config; a running container
    /// is restarted and what the tool left inside is removed
    Remove(RemoveArgs),
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// dev on Proxmox VE 8.1 or newer, raw otherwise (always raw on plain LXC)
    Auto,
    /// lxc.cgroup*.devices.allow and lxc.mount.entry lines
    Raw,
    /// Proxmox VE 8.1+ devN entries
    Dev,
}

/// `--strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// NVIDIA's .run installer inside the container, at the host module's version
    Runfile,
    /// Read-only bind mounts of the host's own driver userspace
    HostLibs,
    /// Devices only
    None,
}

/// The exit code of a run over several containers.
pub const FLEET_EXIT_HELP: &str = "\
Several containers (several CTIDs, or --all): the exit code is the worst of the containers' \
codes, that is the highest one; every failure (1-10) outranks success (0). A summary table \
(CTID, node, GPUs, result, time) ends the run; with --json it is one object \
{\"schema_version\": 1, \"rows\": [...], \"summary\": {...}, \"error\": null, \"exit_code\": N} \
(docs/json.md).";

/// Flags of plan and verify.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The container: a Proxmox CTID (100 or more) or a plain LXC name
    pub ctid: String,
    /// What to do with it.
    #[command(flatten)]
    pub opts: ApplyOpts,
}

/// Flags of apply.
#[derive(Debug, Args)]
pub struct FleetApplyArgs {
    /// The containers: Proxmox CTIDs (100 or more) or plain LXC names
    #[arg(conflicts_with = "all", required_unless_present = "all")]
    pub ctids: Vec<String>,
    /// Every container of --phoenix-config whose gpu_assignment is not none
    #[arg(long)]
    pub all: bool,
    /// How many containers are worked on at once
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = jobs_range())]
    pub jobs: u32,
    /// What to do with each.
    #[command(flatten)]
    pub opts: ApplyOpts,
}

/// The options of plan, apply and verify.
#[derive(Debug, Args)]
pub struct ApplyOpts {
    /// GPUs: none, all, or indices, UUIDs and PCI bus ids separated by commas
    #[arg(long, env = "GPU_ASSIGNMENT", value_name = "LIST")]
    pub gpus: Option<String>,
    /// How device passthrough is written
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    /// Also pass the MIG capability nodes of the selected GPUs
    #[arg(long)]
    pub mig: bool,
    /// Stop after the config step
    #[arg(long)]
    pub config_only: bool,
    /// Never restart the container, even when its config changed (a change of device nodes
    /// only is still made live in a running container)
    #[arg(long)]
    pub no_restart: bool,
    /// Restart a running container whose config changed, even when the change could be made
    /// live
    #[arg(long, conflicts_with = "no_restart")]
    pub restart: bool,
    /// Take GPUs away from a running container even while its processes hold them open (they
    /// keep their open handles until they exit)
    #[arg(long)]
    pub force: bool,
    /// Compute and report, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Start the container when it is stopped
    #[arg(long)]
    pub start: bool,
    /// How long to wait for the container to come up
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_RESTART_TIMEOUT))]
    pub restart_timeout: u64,
    /// Driver userspace version: X.Y[.Z] or auto (the host module's)
    #[arg(long, env = "NVIDIA_DRIVER_VERSION", value_name = "VERSION")]
    pub driver_version: Option<String>,
    /// Accept a driver version that differs from the host module's
    #[arg(long)]
    pub force_version: bool,
    /// How the container gets its driver userspace [default: as its config shows: host-libs
    /// when it bind-mounts the host's userspace, else runfile]
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Also take out allow rules of doubtful origin (for a major no driver holds now and this
    /// node never recorded as NVIDIA's; `check` lists them)
    #[arg(long)]
    pub remove_doubtful: bool,
    /// CUDA toolkit version X.Y, or none
    #[arg(long, value_name = "X.Y")]
    pub cuda: Option<String>,
    /// Extra packages, separated by commas (nvtop, ...)
    #[arg(long, value_name = "LIST")]
    pub tools: Option<String>,
    /// URL of the NVIDIA .run file
    #[arg(long, env = "NVIDIA_RUNFILE_URL", value_name = "URL")]
    pub runfile_url: Option<String>,
    /// Expected SHA-256 of the .run file (64 hex digits)
    #[arg(long, value_name = "HEX")]
    pub runfile_sha256: Option<String>,
    /// The CUDA apt repository URL
    #[arg(long, env = "NVIDIA_REPO_URL", value_name = "URL")]
    pub repo_url: Option<String>,
}

/// Flags of check.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Containers to check
    #[arg(conflicts_with = "all", required_unless_present = "all")]
    pub ctids: Vec<String>,
    /// Check every container of the host
    #[arg(long)]
    pub all: bool,
    /// The GPUs the containers should have (also from --phoenix-config)
    #[arg(long, value_name = "LIST")]
    pub gpus: Option<String>,
    /// The driver version the containers should have
    #[arg(long, value_name = "VERSION")]
    pub driver_version: Option<String>,
    /// How many containers are checked at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = jobs_range())]
    pub jobs: u32,
}

/// Flags of sync.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Containers to sync
    #[arg(conflicts_with = "all", required_unless_present = "all")]
    pub ctids: Vec<String>,
    /// Every container with NVIDIA entries, on this host or across the cluster
    #[arg(long)]
    pub all: bool,
    /// How many containers are worked on at once
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = jobs_range())]
    pub jobs: u32,
    /// Start stopped containers to update them (else they are left for their next start)
    #[arg(long)]
    pub start: bool,
    /// Never restart a container, even when its config changed
    #[arg(long)]
    pub no_restart: bool,
    /// How long to wait for a container to come up
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_RESTART_TIMEOUT))]
    pub restart_timeout: u64,
    /// Userspace for containers that do not bind-mount the host's libraries [default: runfile]
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// URL of the NVIDIA .run file
    #[arg(long, env = "NVIDIA_RUNFILE_URL", value_name = "URL")]
    pub runfile_url: Option<String>,
    /// Expected SHA-256 of the .run file (64 hex digits)
    #[arg(long, value_name = "HEX")]
    pub runfile_sha256: Option<String>,
    /// Compute and report, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `host` subcommands.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Install a systemd unit that creates the NVIDIA uvm (and modeset) nodes at boot, before
    /// Proxmox starts guests; optionally a Proxmox hookscript that runs `check` at pre-start
    Prepare(PrepareArgs),
}

/// Flags of host prepare.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Show the files and commands, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Undo: disable the unit and delete the files this command wrote
    #[arg(long)]
    pub remove: bool,
    /// Also install the hookscript (attach it with pct set CTID --hookscript ...)
    #[arg(long)]
    pub hookscript: bool,
    /// Also create /dev/nvidia-modeset at boot
    #[arg(long)]
    pub modeset: bool,
    /// With --remove: delete the hookscript even while containers name it (they then do not
    /// start until their hookscript line is deleted)
    #[arg(long, requires = "remove")]
    pub force: bool,
}

/// Flags of remove.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The container
    pub ctid: String,
    /// Show the diff, change nothing
    #[arg(long)]
    pub dry_run: bool,
}
