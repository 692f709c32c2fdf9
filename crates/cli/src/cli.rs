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
    /// Resolve every host path under DIR (a captured host, tests, offline planning)
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "host")]
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
    /// Append a debug log here [default: /var/log/phoenix-gpu.log when writable]
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
    /// Give the container its GPUs and a matching driver userspace
    Apply(ApplyArgs),
    /// Compare the live host with container configs; exit 10 on drift
    Check(CheckArgs),
    /// Run nvidia-smi in the container and check it sees exactly its GPUs
    Verify(ApplyArgs),
    /// Take the tool's passthrough entries out of the container's config
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

/// Flags of plan, apply and verify.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The container: a Proxmox CTID (100 or more) or a plain LXC name
    pub ctid: String,
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
    /// Never restart the container, even when its config changed
    #[arg(long)]
    pub no_restart: bool,
    /// Compute and report, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Start the container when it is stopped
    #[arg(long)]
    pub start: bool,
    /// How long to wait for the container to come up
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub restart_timeout: u64,
    /// Driver userspace version: X.Y[.Z] or auto (the host module's)
    #[arg(long, env = "NVIDIA_DRIVER_VERSION", value_name = "VERSION")]
    pub driver_version: Option<String>,
    /// Accept a driver version that differs from the host module's
    #[arg(long)]
    pub force_version: bool,
    /// How the container gets its driver userspace
    #[arg(long, value_enum, default_value = "runfile")]
    pub strategy: StrategyArg,
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
