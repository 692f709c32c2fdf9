//! Lossless parse, edit and write of Proxmox VE container configs and plain LXC configs.
//!
//! (Skeleton: filled by the Foundation issue.)

/// The config dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Proxmox VE `key: value`.
    Pve,
    /// Plain LXC `key = value`.
    Lxc,
}
