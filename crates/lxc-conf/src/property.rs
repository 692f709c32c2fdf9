//! Proxmox's property strings where a config value is one: a `devN` value read exactly as
//! `PVE::LXC::Config->parse_device` reads it (`PVE::JSONSchema::parse_property_string` over
//! the `dev%d` schema), and the `delete:` list of the `[pve:pending]` section
//! (`parse_pending_delete`).
//!
//! Proxmox's rules, from pve-common `JSONSchema.pm` and pve-container `LXC/Config.pm`:
//! - the value is split at every `,`; a part that is empty or only whitespace is skipped;
//! - a part `K=V` (K without `=`, V not empty) sets key K, which must be one of `path`,
//!   `mode`, `uid`, `gid`, `deny-write`, at most once; nothing is trimmed, so ` gid=44` is the
//!   unknown key ` gid`;
//! - a part without `=` is the value of the default key `path`, which may be given once either
//!   way (bare or `path=`), in any position;
//! - any other part (`=x`, `path=`) is an error;
//! - then the values are checked: `path` starts with `/dev/` and has no `/./` or `/../`
//!   component (nor a trailing `/.` or `/..`), `mode` is `0` and three octal digits, `uid` and
//!   `gid` are integers (an optional sign, decimal digits) not below 0, `deny-write` is a
//!   boolean (`1 on yes true` / `0 off no false`, any case); `path` is required.
//!
//! A value Proxmox refuses makes its start path fail (`foreach_passthrough_device` dies), so a
//! container with such a `devN` does not start at all.

use std::fmt;

/// A `devN` value as Proxmox reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevSpec {
    /// The host device node (`/dev/nvidia0`).
    pub path: String,
    /// `mode=`: the node's access mode as written (`0666`); Proxmox's default is `0660`.
    pub mode: Option<String>,
    /// `uid=` as written; Proxmox's default is 0 (the container's root).
    pub uid: Option<String>,
    /// `gid=` as written; Proxmox's default is 0.
    pub gid: Option<String>,
    /// `deny-write=`, normalised to `true`/`false`; Proxmox's default is false.
    pub deny_write: Option<bool>,
}

impl DevSpec {
    /// The node's permission bits in the container: `mode=`, else Proxmox's `0660`.
    pub fn mode_bits(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o660)
    }

    /// The node's owner in the container: `uid=`, else 0.
    pub fn uid_value(&self) -> u64 {
        self.uid.as_deref().map(int_value).unwrap_or(0)
    }

    /// The node's group in the container: `gid=`, else 0.
    pub fn gid_value(&self) -> u64 {
        self.gid.as_deref().map(int_value).unwrap_or(0)
    }

    /// Whether writes are denied (`deny-write=1`).
    pub fn denies_write(&self) -> bool {
        self.deny_write.unwrap_or(false)
    }

    /// Whether two values give the container the same node: same path, mode, owner, group and
    /// write access, with Proxmox's defaults for what is not written.
    pub fn same_node(&self, other: &DevSpec) -> bool {
        self.path == other.path
            && self.mode_bits() == other.mode_bits()
            && self.uid_value() == other.uid_value()
            && self.gid_value() == other.gid_value()
            && self.denies_write() == other.denies_write()
    }
}

/// `+5` and `5` are the same integer to Proxmox.
fn int_value(s: &str) -> u64 {
    s.trim_start_matches('+').parse().unwrap_or(0)
}

/// Why Proxmox refuses a `devN` value (its own message, without the trailing newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevError(String);

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DevError {}

/// Reads a `devN` value as Proxmox does (see the module's documentation).
///
/// ```
/// let d = lxc_conf::parse_dev("gid=44,/dev/nvidia1").unwrap();
/// assert_eq!(d.path, "/dev/nvidia1");
/// assert_eq!(d.gid.as_deref(), Some("44"));
/// assert_eq!(lxc_conf::parse_dev("mode=0666,path=/dev/nvidia-uvm").unwrap().mode_bits(), 0o666);
/// assert!(lxc_conf::parse_dev("/dev/nvidia0, gid=44").is_err());
/// ```
pub fn parse_dev(value: &str) -> Result<DevSpec, DevError> {
    let err = |m: String| Err(DevError(m));
    let mut spec = DevSpec {
        path: String::new(),
        mode: None,
        uid: None,
        gid: None,
        deny_write: None,
    };
    let mut path: Option<String> = None;
    let mut raw_deny: Option<String> = None;
    let mut bare_seen = false;
    for part in perl_split_commas(value) {
        if part.bytes().all(is_perl_space) {
            continue;
        }
        // `^([^=]+)=(.+)$`: the key ends at the first `=`, the value may hold more.
        match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                let slot = match k {
                    "path" => &mut path,
                    "mode" => &mut spec.mode,
                    "uid" => &mut spec.uid,
                    "gid" => &mut spec.gid,
                    "deny-write" => &mut raw_deny,
                    _ => return err(format!("invalid key in comma-separated list property: {k}")),
                };
                if slot.is_some() {
                    return err(format!(
                        "duplicate key in comma-separated list property: {k}"
                    ));
                }
                *slot = Some(match k {
                    "deny-write" => match parse_boolean(v) {
                        Some(b) => u8::from(b).to_string(),
                        None => v.to_owned(),
                    },
                    _ => v.to_owned(),
                });
            }
            Some(_) => return err("missing key in comma-separated list property".into()),
            None => {
                // A second bare part is refused whatever the first was; after `path=` a bare
                // part is refused unless that path is false to Perl (`0`).
                if bare_seen || path.as_deref().is_some_and(|p| !p.is_empty() && p != "0") {
                    return err("duplicate key in comma-separated list property: path".into());
                }
                bare_seen = true;
                path = Some(part.to_owned());
            }
        }
    }
    // check_object: each value against its schema.
    if let Some(p) = &path {
        if !valid_dev_path(p) {
            return err(format!(
                "path: invalid format - {p} is not a valid device path"
            ));
        }
    }
    if let Some(m) = &spec.mode {
        let b = m.as_bytes();
        if !(b.len() == 4 && b[0] == b'0' && b[1..].iter().all(|c| (b'0'..=b'7').contains(c))) {
            return err("mode: value does not match the regex pattern".into());
        }
    }
    for (name, v) in [("uid", &spec.uid), ("gid", &spec.gid)] {
        if let Some(v) = v {
            let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return err(format!("{name}: type check ('integer') failed - got '{v}'"));
            }
            if v.starts_with('-') && digits.bytes().any(|b| b != b'0') {
                return err(format!("{name}: value must have a minimum value of 0"));
            }
        }
    }
    if let Some(d) = &raw_deny {
        spec.deny_write = match d.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => {
                return err(format!(
                    "deny-write: type check ('boolean') failed - got '{d}'"
                ))
            }
        };
    }
    match path {
        Some(p) => {
            spec.path = p;
            Ok(spec)
        }
        None => err("Path has to be defined".into()),
    }
}

/// `split(/,/, $data)`: Perl drops trailing empty fields.
fn perl_split_commas(s: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split(',').collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// Perl's `\s` on bytes.
fn is_perl_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `PVE::JSONSchema::parse_boolean`.
fn parse_boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// `verify_lxc_dev_string`: starts with `/dev/`, no `/.` or `/..` component.
fn valid_dev_path(p: &str) -> bool {
    // m@/\.\.?(?:/|$)@
    p.starts_with("/dev/")
        && !p.match_indices('/').any(|(i, _)| {
            let rest = &p[i + 1..];
            [".", ".."]
                .iter()
                .any(|d| rest == *d || rest.starts_with(&format!("{d}/")))
        })
}

/// The keys a `delete:` value of the `[pve:pending]` section names, as
/// `parse_pending_delete` reads it: `,` and `;` separate like whitespace, a leading `!`
/// (forced) is dropped. A false value (empty or `0`) names nothing.
///
/// ```
/// assert_eq!(lxc_conf::pending_delete_keys("dev0,!dev1; mp0"), ["dev0", "dev1", "mp0"]);
/// ```
pub fn pending_delete_keys(value: &str) -> Vec<String> {
    if value.is_empty() || value == "0" {
        return Vec::new();
    }
    value
        .split(|c: char| c == ',' || c == ';' || c.is_ascii_whitespace())
        .filter(|k| !k.is_empty())
        .map(|k| k.strip_prefix('!').unwrap_or(k).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str) -> DevSpec {
        parse_dev(v).unwrap_or_else(|e| panic!("{v:?}: {e}"))
    }

    #[test]
    fn the_path_is_bare_or_path_eq_in_any_position() {
        assert_eq!(ok("/dev/nvidia0").path, "/dev/nvidia0");
        assert_eq!(ok("gid=44,/dev/nvidia1").path, "/dev/nvidia1");
        assert_eq!(ok("mode=0666,path=/dev/nvidia-uvm").path, "/dev/nvidia-uvm");
        assert_eq!(ok(",/dev/nvidia0,,uid=0,").path, "/dev/nvidia0");
        assert_eq!(ok("/dev/nvidia0,  ,uid=-0").uid_value(), 0);
        assert_eq!(ok("path=/dev/nvidia0=x").path, "/dev/nvidia0=x");
        let d = ok("/dev/dri/renderD128,deny-write=YES,gid=104,mode=0666,uid=+0");
        assert_eq!(d.deny_write, Some(true));
        assert_eq!(
            (d.mode_bits(), d.uid_value(), d.gid_value()),
            (0o666, 0, 104)
        );
        assert_eq!(ok("/dev/nvidia0").mode_bits(), 0o660);
    }

    #[test]
    fn what_proxmox_refuses() {
        for v in [
            "",
            ",",
            "gid=44",
            "/dev/nvidia0,/dev/nvidia1",
            "/dev/nvidia0,path=/dev/nvidia1",
            "path=/dev/nvidia1,/dev/nvidia0",
            "/dev/nvidia0, gid=44",
            "/dev/nvidia0,gid=44,gid=45",
            "/dev/nvidia0,path=",
            "/dev/nvidia0,=x",
            "/dev/nvidia0,mode=666",
            "/dev/nvidia0,mode=0668",
            "/dev/nvidia0,uid=-1",
            "/dev/nvidia0,gid=x",
            "/dev/nvidia0,deny-write=2",
            "/dev/nvidia0,foo=1",
            " /dev/nvidia0",
            "nvidia0",
            "/dev/../etc/passwd",
            "/dev/./nvidia0",
            "/dev/nvidia0/..",
            "/dev/nvidia0,mode=0666=1",
            "/dev/nvidia0,gid= 4",
            "0,/dev/nvidia0",
        ] {
            assert!(parse_dev(v).is_err(), "{v:?} is accepted");
        }
        assert_eq!(
            parse_dev("gid=44").unwrap_err().to_string(),
            "Path has to be defined"
        );
    }

    #[test]
    fn dots_that_are_not_components_are_fine() {
        assert!(parse_dev("/dev/a..b").is_ok());
        assert!(parse_dev("/dev/.hidden").is_ok());
        assert!(parse_dev("/dev/x/...").is_ok());
    }

    #[test]
    fn same_node_uses_proxmox_defaults() {
        assert!(ok("/dev/nvidia0,gid=0,mode=0660").same_node(&ok("path=/dev/nvidia0")));
        assert!(!ok("/dev/nvidia0,mode=0666").same_node(&ok("/dev/nvidia0")));
        assert!(!ok("/dev/nvidia0,mode=0666,deny-write=1").same_node(&ok("/dev/nvidia0,mode=0666")));
    }

    #[test]
    fn pending_delete_lists() {
        assert_eq!(pending_delete_keys("dev0,dev1"), ["dev0", "dev1"]);
        assert!(pending_delete_keys("0").is_empty());
        assert_eq!(pending_delete_keys("  !swap ;;mp1"), ["swap", "mp1"]);
    }
}
