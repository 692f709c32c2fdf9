//! The orchestrator's `phoenix_lxc_configs.json` (v1 and v2), read for defaults: a container's
//! `gpu_assignment` and `unprivileged`, and the top-level driver version and URLs. Flags and
//! environment variables override them. Unknown fields are ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PhoenixConfig {
    /// `nvidia_driver_version` (v1, v2).
    #[serde(default)]
    pub nvidia_driver_version: Option<String>,
    /// `nvidia_repo_url` (v1, v2).
    #[serde(default)]
    pub nvidia_repo_url: Option<String>,
    /// `nvidia_runfile_url` (v2).
    #[serde(default)]
    pub nvidia_runfile_url: Option<String>,
    /// `lxc_configs`, keyed by CTID.
    #[serde(default)]
    pub lxc_configs: BTreeMap<String, CtConfig>,
}

/// One container's block.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct CtConfig {
    /// `name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `gpu_assignment`: `none`, `0`, `0,1`, `0, 1`.
    #[serde(default)]
    pub gpu_assignment: Option<String>,
    /// `unprivileged`.
    #[serde(default)]
    pub unprivileged: Option<bool>,
    /// `features`: a string (v1) or a list (v2).
    #[serde(default)]
    pub features: Option<Features>,
}

/// `features` in either form.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Features {
    /// `"nesting=1,keyctl=1"` (v1).
    Text(String),
    /// `["nvidia", "vllm"]` (v2).
    List(Vec<String>),
}

/// Reading the file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhoenixConfigError {
    /// The file cannot be read.
    #[error("cannot read the orchestrator config {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the orchestrator's JSON.
    #[error("the orchestrator config {path} is not valid phoenix_lxc_configs JSON")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl PhoenixConfig {
    /// Parses the JSON text.
    pub fn parse(text: &str) -> Result<PhoenixConfig, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a file of the machine the CLI runs on.
    pub fn read(path: &Path) -> Result<PhoenixConfig, PhoenixConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| PhoenixConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        PhoenixConfig::parse(&text).map_err(|source| PhoenixConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// The block of container `ctid`.
    pub fn ct(&self, ctid: &str) -> Option<&CtConfig> {
        self.lxc_configs.get(ctid)
    }
}

impl Features {
    /// The feature names, from either form.
    #[allow(dead_code)] // read by fleet apply (features naming nvidia)
    pub fn names(&self) -> Vec<String> {
        match self {
            Features::Text(t) => t
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            Features::List(l) => l.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PhoenixConfig {
        PhoenixConfig::read(&test_support::testdata::phoenix(name)).unwrap()
    }

    #[test]
    fn reads_v1() {
        let c = fixture("phoenix_lxc_configs.v1.json");
        assert_eq!(c.nvidia_driver_version.as_deref(), Some("580.76.05"));
        assert!(c.nvidia_repo_url.as_deref().unwrap().contains("ubuntu2404"));
        assert_eq!(c.nvidia_runfile_url, None);
        let ct = c.ct("902").unwrap();
        assert_eq!(ct.gpu_assignment.as_deref(), Some("0,1"));
        assert_eq!(ct.unprivileged, Some(false));
        assert_eq!(
            ct.features.as_ref().unwrap().names(),
            ["nesting=1", "keyctl=1"]
        );
        assert_eq!(c.ct("999").unwrap().gpu_assignment.as_deref(), Some("none"));
    }

    #[test]
    fn reads_v2_with_spaces_arrays_and_missing_fields() {
        let c = fixture("phoenix_lxc_configs.v2.json");
        assert!(c
            .nvidia_runfile_url
            .as_deref()
            .unwrap()
            .ends_with("NVIDIA-Linux-x86_64-580.76.05.run"));
        let ct = c.ct("901").unwrap();
        assert_eq!(ct.gpu_assignment.as_deref(), Some("0, 1"));
        assert_eq!(ct.unprivileged, Some(true));
        assert_eq!(ct.features.as_ref().unwrap().names(), ["nvidia"]);
        assert_eq!(c.ct("911").unwrap().unprivileged, None);
        assert!(c.ct("12345").is_none());
    }

    #[test]
    fn rejects_non_json() {
        assert!(PhoenixConfig::parse("{").is_err());
        assert!(PhoenixConfig::parse(r#"{"lxc_configs": []}"#).is_err());
    }
}
