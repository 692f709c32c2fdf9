//! NVIDIA driver versions: `580.159.04`, `550.54.14`, and two-part ones such as `580.142`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::error::{Error, Input};

/// A driver version, compared numerically part by part and printed as written
/// (`580.159.04` keeps its leading zero).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DriverVersion {
    parts: Vec<u32>,
    text: String,
}

impl DriverVersion {
    /// The version as written (`580.159.04`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The major part (`580`).
    pub fn major(&self) -> u32 {
        self.parts[0]
    }

    /// Finds the first version-looking token (`\d+\.\d+(\.\d+)?`) in free text such as
    /// `/proc/driver/nvidia/version` or `nvidia-smi --version` output.
    pub fn find_in(text: &str) -> Option<DriverVersion> {
        text.split(|c: char| c.is_whitespace() || c == ',' || c == ':')
            .find_map(|tok| tok.parse().ok())
    }
}

impl FromStr for DriverVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<DriverVersion, Error> {
        let bad = || Error::BadInput {
            what: Input::DriverVersion,
            value: s.to_owned(),
            hint: "expected X.Y or X.Y.Z with digits only, such as 580.159.04, or auto".into(),
        };
        let parts: Vec<&str> = s.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let mut nums = Vec::with_capacity(parts.len());
        for p in &parts {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            nums.push(p.parse().map_err(|_| bad())?);
        }
        Ok(DriverVersion {
            parts: nums,
            text: s.to_owned(),
        })
    }
}

impl PartialOrd for DriverVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DriverVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts.cmp(&other.parts)
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for DriverVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Which userspace version is wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionWanted {
    /// The host module's version.
    Auto,
    /// This exact version (must equal the host's unless forced).
    Exact(DriverVersion),
}

impl FromStr for VersionWanted {
    type Err = Error;

    /// `auto`, or a version `X.Y[.Z]`.
    fn from_str(s: &str) -> Result<VersionWanted, Error> {
        if s == "auto" {
            return Ok(VersionWanted::Auto);
        }
        s.parse().map(VersionWanted::Exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_three_and_two_parts_and_keeps_text() {
        let v: DriverVersion = "580.159.04".parse().unwrap();
        assert_eq!(v.as_str(), "580.159.04");
        assert_eq!(v.major(), 580);
        let w: DriverVersion = "580.142".parse().unwrap();
        assert!(w < v);
        assert!("550.127.05".parse::<DriverVersion>().unwrap() < w);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "580",
            "580.",
            ".1",
            "5a0.1",
            "1.2.3.4",
            "auto",
            "580.159.04 ",
            "-1.2",
        ] {
            assert!(bad.parse::<DriverVersion>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn finds_version_in_proc_text() {
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \nGCC version:  gcc version 15.3.0 (GCC)";
        assert_eq!(DriverVersion::find_in(open).unwrap().as_str(), "580.159.04");
        let prop = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.127.05  Tue Oct  8 03:22:07 UTC 2024";
        assert_eq!(DriverVersion::find_in(prop).unwrap().as_str(), "550.127.05");
    }
}
