//! Validated values of a request: a container id, a CUDA version, package names, a SHA-256, a
//! URL. Each parses with [`FromStr`] and cannot hold an invalid value, so a
//! [`Request`](crate::Request) built from them is valid by construction; an invalid one is
//! [`Error::BadInput`] naming the [`Input`] and what is accepted.
//!
//! ```
//! use gpu_core::{CtId, CudaVersion, PackageName, Sha256, Target};
//!
//! assert!(Target::Pve.ct_id("101").is_ok());
//! assert!(Target::Pve.ct_id("99").is_err());
//! assert_eq!("12.8".parse::<CudaVersion>()?.package(), "cuda-toolkit-12-8");
//! assert_eq!(PackageName::parse_list("nvtop, htop")?.len(), 2);
//! assert!("ab".repeat(32).parse::<Sha256>().is_ok());
//! # Ok::<(), gpu_core::Error>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use exec_backend::CtRef;
use serde::{Serialize, Serializer};

use crate::error::{Error, Input, Result};

fn bad(what: Input, value: &str, hint: impl Into<String>) -> Error {
    Error::BadInput {
        what,
        value: value.to_owned(),
        hint: hint.into(),
    }
}

/// Serializes a value as its text.
macro_rules! serialize_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// A container: a Proxmox VE CTID (100 to 999999999) or a plain-LXC container name (letters,
/// digits, `-`, `_` and `.`, at most 64, not starting with `.` or `-`).
///
/// [`FromStr`] accepts either (every CTID is also a valid name);
/// [`Target::ct_id`](crate::Target::ct_id) takes the target's own rule, and every operation of an
/// [`Engine`](crate::Engine) refuses a CTID that is not one of its target's.
/// Ids sort numerically, names after them by text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CtId(CtRef);

impl CtId {
    /// A Proxmox VE container id.
    pub fn pve(s: &str) -> Result<CtId> {
        if is_pve_id(s) {
            Ok(CtId(CtRef::new(s)))
        } else {
            Err(bad(
                Input::CtId,
                s,
                "a Proxmox VE container id is a number from 100 to 999999999",
            ))
        }
    }

    /// A plain-LXC container name.
    pub fn lxc(s: &str) -> Result<CtId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if ok {
            Ok(CtId(CtRef::new(s)))
        } else {
            Err(bad(
                Input::ContainerName,
                s,
                "an LXC container name has letters, digits, '-', '_' and '.', and does not start with '.' or '-'",
            ))
        }
    }

    /// Whether it is a Proxmox VE container id.
    pub fn is_pve(&self) -> bool {
        is_pve_id(self.as_str())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The backends' name for the container.
    pub fn as_ct_ref(&self) -> &CtRef {
        &self.0
    }

    fn number(&self) -> Option<u64> {
        self.is_pve().then(|| self.as_str().parse().ok()).flatten()
    }
}

fn is_pve_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 9
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0')
        && s.parse::<u32>().is_ok_and(|n| n >= 100)
}

impl FromStr for CtId {
    type Err = Error;

    /// A Proxmox VE CTID or a plain-LXC name.
    fn from_str(s: &str) -> Result<CtId> {
        CtId::lxc(s).map_err(|_| {
            bad(
                Input::CtId,
                s,
                "expected a Proxmox VE container id (100 to 999999999) or an LXC container name",
            )
        })
    }
}

impl AsRef<CtRef> for CtId {
    fn as_ref(&self) -> &CtRef {
        &self.0
    }
}

impl fmt::Display for CtId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Ord for CtId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.number(), other.number()) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => self.as_str().cmp(other.as_str()),
        }
    }
}

impl PartialOrd for CtId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

serialize_as_text!(CtId);

/// A CUDA toolkit version `major.minor` (`12.8`), digits only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CudaVersion {
    major: u32,
    minor: u32,
}

impl CudaVersion {
    /// The major part.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The minor part.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// The apt package of the toolkit: `cuda-toolkit-12-8`.
    pub fn package(&self) -> String {
        format!("cuda-toolkit-{}-{}", self.major, self.minor)
    }
}

impl FromStr for CudaVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<CudaVersion> {
        let fail = || bad(Input::CudaVersion, s, "expected X.Y such as 12.8");
        let (a, b) = s.split_once('.').ok_or_else(fail)?;
        let num = |p: &str| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
                .then(|| p.parse::<u32>().ok())
                .flatten()
        };
        Ok(CudaVersion {
            major: num(a).ok_or_else(fail)?,
            minor: num(b).ok_or_else(fail)?,
        })
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

serialize_as_text!(CudaVersion);

/// A Debian package name (Debian policy: lowercase letters, digits, `+ - .`, starting with a
/// letter or digit, at least two characters), safe to hand to apt and dpkg-query.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(String);

impl PackageName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A comma-separated list (`nvtop, htop`): spaces around names are dropped; an empty
    /// element or a name given twice is an error.
    pub fn parse_list(s: &str) -> Result<Vec<PackageName>> {
        let mut out: Vec<PackageName> = Vec::new();
        for t in s.split(',').map(str::trim) {
            let name: PackageName = t.parse().map_err(|_| {
                bad(
                    Input::ToolList,
                    s,
                    format!("{t:?} is not a package name (lowercase letters, digits, + - .)"),
                )
            })?;
            if out.contains(&name) {
                return Err(bad(Input::ToolList, s, format!("{t} is listed twice")));
            }
            out.push(name);
        }
        Ok(out)
    }
}

impl FromStr for PackageName {
    type Err = Error;

    fn from_str(s: &str) -> Result<PackageName> {
        let ok = s.len() >= 2
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if ok {
            Ok(PackageName(s.to_owned()))
        } else {
            Err(bad(
                Input::PackageName,
                s,
                "expected a Debian package name such as nvtop (lowercase letters, digits, + - .)",
            ))
        }
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serialize_as_text!(PackageName);

/// A SHA-256 checksum: 64 hex digits, kept lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sha256(String);

impl Sha256 {
    /// The 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    /// 64 hex digits in either case; spaces around them are dropped.
    fn from_str(s: &str) -> Result<Sha256> {
        let t = s.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256(t.to_ascii_lowercase()))
        } else {
            Err(bad(
                Input::Sha256,
                s,
                "expected the SHA-256 as 64 hex digits",
            ))
        }
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serialize_as_text!(Sha256);

/// An `http://` or `https://` URL with a host, without spaces (a runfile or an apt
/// repository).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HttpUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<HttpUrl> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"));
        match rest {
            Some(r)
                if !r.is_empty() && !r.starts_with('/') && !s.chars().any(char::is_whitespace) =>
            {
                Ok(HttpUrl(s.to_owned()))
            }
            _ => Err(bad(Input::Url, s, "expected an http:// or https:// URL")),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serialize_as_text!(HttpUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctids_and_names() {
        assert!(CtId::pve("100").is_ok());
        assert!(CtId::pve("999999999").is_ok());
        for bad in [
            "99",
            "0",
            "abc",
            "",
            "0101",
            "1e3",
            "-101",
            "1000000000",
            "101 ",
        ] {
            let e = CtId::pve(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::BadInput {
                        what: Input::CtId,
                        ..
                    }
                ),
                "{bad}"
            );
        }
        assert!(CtId::lxc("gpu-1.test_a").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b"] {
            assert!(CtId::lxc(bad).is_err(), "{bad}");
            assert!(bad.parse::<CtId>().is_err(), "{bad}");
        }
        assert!("101".parse::<CtId>().unwrap().is_pve());
        assert!(!"gpu1".parse::<CtId>().unwrap().is_pve());
        assert!(!"99".parse::<CtId>().unwrap().is_pve());
    }

    #[test]
    fn ctids_sort_by_number_then_names() {
        let mut v: Vec<CtId> = ["1000", "gpu", "101", "abc", "200"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let s: Vec<&str> = v.iter().map(CtId::as_str).collect();
        assert_eq!(s, ["101", "200", "1000", "abc", "gpu"]);
    }

    #[test]
    fn values() {
        let c: CudaVersion = "12.8".parse().unwrap();
        assert_eq!(
            (c.major(), c.minor(), c.to_string()),
            (12, 8, "12.8".into())
        );
        for bad in ["12", "12.", ".8", "12.8.1", "a.b", "12-8", "", "1234.1"] {
            assert!(bad.parse::<CudaVersion>().is_err(), "{bad}");
        }
        assert!("a".repeat(64).parse::<Sha256>().is_ok());
        assert_eq!(
            "AB".repeat(32).parse::<Sha256>().unwrap().as_str(),
            "ab".repeat(32)
        );
        assert!("g".repeat(64).parse::<Sha256>().is_err());
        assert!("abc".parse::<Sha256>().is_err());
        assert!("https://x/y".parse::<HttpUrl>().is_ok());
        assert!("ftp://x".parse::<HttpUrl>().is_err());
        assert!("https://".parse::<HttpUrl>().is_err());
        assert!("https:///x".parse::<HttpUrl>().is_err());
        assert!("https://x/a b".parse::<HttpUrl>().is_err());
    }

    #[test]
    fn package_names_and_lists() {
        for ok in ["nvtop", "cuda-toolkit-12-8", "g++", "libnccl2"] {
            ok.parse::<PackageName>().unwrap();
        }
        for bad in ["", "a", "-o", "Nvtop", "nv top", "x;rm", "../x", "a$(b)"] {
            assert!(bad.parse::<PackageName>().is_err(), "{bad:?}");
        }
        let l = PackageName::parse_list("nvtop, htop").unwrap();
        assert_eq!(
            l.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            ["nvtop", "htop"]
        );
        for bad in ["nvtop,nvtop", "", "rm -rf", "nvtop,,htop"] {
            let e = PackageName::parse_list(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::BadInput {
                        what: Input::ToolList,
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }
}
