//! Lossless parse, edit and write of Proxmox VE container configs (`/etc/pve/lxc/<CTID>.conf`)
//! and plain LXC configs (`lxc.container.conf(5)`).
//!
//! A [`Document`] keeps every line's bytes, so [`Document::to_bytes`] gives back exactly the
//! input, whatever it holds (CRLF, no final newline, trailing blanks, invalid lines, bytes that
//! are not UTF-8). On top of the lines it derives what Proxmox reads from the file: the main
//! section, the snapshots, the `[pve:pending]` section, last-wins plain keys, the raw `lxc.*`
//! entries in file order and the decoded description. Edits touch only the lines they change;
//! new lines go where Proxmox would put them and use the file's line ending.
//! [`Document::to_pve_canonical`] reproduces Proxmox's own writer (`write_pct_config`), and
//! [`Document::lint`] lists what that writer would drop or rewrite.
//!
//! The crate does no I/O: callers read and write the bytes.
//!
//! ```
//! use lxc_conf::{Dialect, Document};
//!
//! let before = b"arch: amd64\nhostname: gpu\nmemory: 2048\nlxc.cgroup2.devices.allow: c 195:* rwm\n";
//! let mut doc = Document::parse(before, Dialect::Pve);
//! assert_eq!(doc.main().get("memory"), Some("2048"));
//!
//! // Bind the GPU device node: the new line goes after the last lxc.* line.
//! doc.push_lxc("lxc.mount.entry", "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file");
//! // A new plain key goes to its sorted place, an existing one is rewritten in place.
//! doc.set("cores", "4");
//! doc.set("memory", "4096");
//!
//! assert_eq!(
//!     doc.to_bytes(),
//!     b"arch: amd64\ncores: 4\nhostname: gpu\nmemory: 4096\n\
//!       lxc.cgroup2.devices.allow: c 195:* rwm\n\
//!       lxc.mount.entry: /dev/nvidia0 dev/nvidia0 none bind,optional,create=file\n"
//! );
//! assert_eq!(doc.main().lxc().len(), 2);
//! ```
#![warn(missing_docs)]

// Modules by concern (each one's doc comment says what it owns). They point one way:
// `types` and `rules` (Proxmox's rules as data) at the bottom, then `line` (one line's
// classification), `document` (the lines, lossless read and write), `section` (sections and
// their read view), and on top `lint`, `edit` and `canonical` (Proxmox's writer). `property`
// (Proxmox's reading of a `devN` value and of a pending `delete:` list) stands alone.
mod canonical;
mod document;
mod edit;
mod line;
mod lint;
mod property;
mod rules;
mod section;
mod types;

pub use document::Document;
pub use edit::EditError;
pub use lint::{Lint, LintKind, ParseError};
pub use property::{parse_dev, pending_delete_keys, DevError, DevSpec};
pub use section::SectionRef;
pub use types::{Dialect, Entry, EntryId, EntryKind, SectionKind};
