//! Lossless parse, edit and write of Proxmox VE container configs and plain LXC configs.
//!
//! (Skeleton: filled by the Foundation issue.)
