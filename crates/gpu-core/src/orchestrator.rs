//! The orchestrator's `phoenix_lxc_configs.json` (v1 and v2), read for defaults: a container's
//! `gpu_assignment`, and the top-level driver version and URLs. A caller's own values win over
//! them ([`RequestTemplate`](crate::RequestTemplate)). Unknown fields are ignored.
//!
//! The file is parsed from bytes (the caller reads it, locally or through a host); its values
//! are checked when they are used, so a bad value of a container not worked on does not stop
//! a run. An invalid one is [`Error::OrchestratorValue`] naming the field.
//!
//! ```
//! use gpu_core::orchestrator::OrchestratorConfig;
//! use gpu_core::Target;
//!
//! let c = OrchestratorConfig::parse(br#"{"nvidia_driver_version": "580.159.04",
//!   "lxc_configs": {"901": {"gpu_assignment": "0, 1"}, "902": {"gpu_assignment": "none"}}}"#)?;
//! let cts = c.gpu_containers(&Target::Pve)?;
//! assert_eq!(cts.len(), 1);
//! assert_eq!(c.gpus(&cts[0])?.unwrap().to_string(), "0,1");
//! # Ok::<(), gpu_core::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::select::GpuSelection;
use crate::target::Target;
use crate::values::{CtId, HttpUrl};
use crate::version::VersionWanted;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct OrchestratorConfig {
    /// `nvidia_driver_version` (v1, v2).
    #[serde(default)]
    pub nvidia_driver_version: Option<String>,
    /// `nvidia_repo_url` (v1, v2).
    #[serde(default)]
    pub nvidia_repo_url: Option<String>,
    /// `nvidia_runfile_url` (v2).
    #[serde(default)]
    pub nvidia_runfile_url: Option<String>,
    /// `lxc_configs`, keyed by CTID. A CTID given twice is refused: the two blocks may
    /// differ, and JSON readers disagree on which one counts (most keep the last silently).
    #[serde(default, deserialize_with = "unique_keys")]
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

impl Features {
    /// The feature names, from either form.
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

/// `lxc_configs` as a map whose keys are each given once.
fn unique_keys<'de, D>(d: D) -> std::result::Result<BTreeMap<String, CtConfig>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::{Error as _, MapAccess, Visitor};

    struct Unique;

    impl<'de> Visitor<'de> for Unique {
        type Value = BTreeMap<String, CtConfig>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of container blocks keyed by CTID")
        }

        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, block)) = map.next_entry::<String, CtConfig>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!(
                        "container {key:?} is given twice in lxc_configs; keep one block for it"
                    )));
                }
                out.insert(key, block);
            }
            Ok(out)
        }
    }

    d.deserialize_map(Unique)
}

/// What a JSON document that is not `phoenix_lxc_configs.json` looks like, for the error.
fn looks_like(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let Value::Object(map) = v else {
        let what = match v {
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            _ => "null",
        };
        return format!("a JSON {what}, not an object");
    };
    let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    let keys = if keys.is_empty() {
        "no keys".to_owned()
    } else {
        format!(
            "the keys {}{}",
            keys.join(", "),
            if map.len() > keys.len() { ", ..." } else { "" }
        )
    };
    // The orchestrator's other file, phoenix_hypervisor_config.json, has these.
    if map.contains_key("core_paths") || map.contains_key("nvidia_driver") {
        format!("the orchestrator's hypervisor config (phoenix_hypervisor_config.json: {keys})")
    } else {
        format!("a JSON object with {keys}")
    }
}

/// A value of the config as `T`, or the error naming its field.
fn value<T: std::str::FromStr<Err = Error>>(
    field: &'static str,
    ct: Option<&str>,
    v: Option<&str>,
) -> Result<Option<T>> {
    v.map(|s| {
        s.parse::<T>().map_err(|e| Error::OrchestratorValue {
            field,
            ct: ct.map(str::to_owned),
            source: Box::new(e),
        })
    })
    .transpose()
}

impl OrchestratorConfig {
    /// Parses the file's bytes. A JSON file without an `lxc_configs` object (the
    /// orchestrator's own schema requires one) is [`Error::NotLxcConfig`], saying what it
    /// looks like: taking the hypervisor config for it would otherwise be a run over no
    /// containers that reports success.
    pub fn parse(bytes: &[u8]) -> Result<OrchestratorConfig> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| Error::OrchestratorConfig { source })?;
        if !v
            .get("lxc_configs")
            .is_some_and(serde_json::Value::is_object)
        {
            return Err(Error::NotLxcConfig {
                looks_like: looks_like(&v),
            });
        }
        // From the bytes again, not from `v`: a `Value` keeps only the last of keys given
        // twice, and a CTID given twice must be refused.
        serde_json::from_slice(bytes).map_err(|source| Error::OrchestratorConfig { source })
    }

    /// The block of container `ctid`.
    pub fn ct(&self, ctid: &str) -> Option<&CtConfig> {
        self.lxc_configs.get(ctid)
    }

    /// The containers whose `gpu_assignment` is set and not `none`, in id order, as ids of
    /// `target`.
    pub fn gpu_containers(&self, target: &Target) -> Result<Vec<CtId>> {
        let mut ids = Vec::new();
        for (id, c) in &self.lxc_configs {
            let assigned = c
                .gpu_assignment
                .as_deref()
                .is_some_and(|g| !g.trim().is_empty() && !g.trim().eq_ignore_ascii_case("none"));
            if assigned {
                ids.push(target.ct_id(id)?);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The GPUs of `ct` (its `gpu_assignment`), `None` when it has no block or no assignment.
    pub fn gpus(&self, ct: &CtId) -> Result<Option<GpuSelection>> {
        let v = self
            .ct(ct.as_str())
            .and_then(|c| c.gpu_assignment.as_deref());
        value("gpu_assignment", Some(ct.as_str()), v)
    }

    /// `nvidia_driver_version`.
    pub fn driver_version(&self) -> Result<Option<VersionWanted>> {
        value(
            "nvidia_driver_version",
            None,
            self.nvidia_driver_version.as_deref(),
        )
    }

    /// `nvidia_runfile_url`.
    pub fn runfile_url(&self) -> Result<Option<HttpUrl>> {
        value(
            "nvidia_runfile_url",
            None,
            self.nvidia_runfile_url.as_deref(),
        )
    }

    /// `nvidia_repo_url`.
    pub fn repo_url(&self) -> Result<Option<HttpUrl>> {
        value("nvidia_repo_url", None, self.nvidia_repo_url.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orchestrator's own files, copied into `testdata/phoenix/`.
    fn fixture(name: &str) -> OrchestratorConfig {
        let p = test_support::testdata::phoenix(name);
        OrchestratorConfig::parse(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn reads_v1() {
        let c = fixture("phoenix_lxc_configs.v1.json");
        assert_eq!(c.nvidia_driver_version.as_deref(), Some("580.76.05"));
        assert_eq!(
            c.driver_version().unwrap(),
            Some(VersionWanted::Exact("580.76.05".parse().unwrap()))
        );
        assert!(c.nvidia_repo_url.as_deref().unwrap().contains("ubuntu2404"));
        assert_eq!(c.runfile_url().unwrap(), None);
        let ct = c.ct("902").unwrap();
        assert_eq!(ct.gpu_assignment.as_deref(), Some("0,1"));
        assert_eq!(ct.unprivileged, Some(false));
        assert_eq!(
            ct.features.as_ref().unwrap().names(),
            ["nesting=1", "keyctl=1"]
        );
        let none: CtId = "999".parse().unwrap();
        assert_eq!(c.gpus(&none).unwrap(), Some(GpuSelection::None));
        let gpu = c.gpu_containers(&Target::Pve).unwrap();
        assert!(gpu.iter().any(|c| c.as_str() == "902"));
        assert!(!gpu.iter().any(|c| c.as_str() == "999"));
        assert!(gpu.windows(2).all(|w| w[0] < w[1]), "{gpu:?}");
    }

    #[test]
    fn reads_v2_with_spaces_arrays_and_missing_fields() {
        let c = fixture("phoenix_lxc_configs.v2.json");
        assert!(c
            .runfile_url()
            .unwrap()
            .unwrap()
            .as_str()
            .ends_with("NVIDIA-Linux-x86_64-580.76.05.run"));
        let ct = c.ct("901").unwrap();
        assert_eq!(ct.gpu_assignment.as_deref(), Some("0, 1"));
        assert_eq!(
            c.gpus(&"901".parse().unwrap())
                .unwrap()
                .unwrap()
                .to_string(),
            "0,1"
        );
        assert_eq!(ct.unprivileged, Some(true));
        assert_eq!(ct.features.as_ref().unwrap().names(), ["nvidia"]);
        assert_eq!(c.ct("911").unwrap().unprivileged, None);
        assert!(c.ct("12345").is_none());
        assert_eq!(c.gpus(&"12345".parse().unwrap()).unwrap(), None);
    }

    /// The orchestrator's hypervisor config given by mistake: refused, saying what it is.
    #[test]
    fn refuses_the_hypervisor_config_and_other_json() {
        let p = test_support::testdata::phoenix("phoenix_hypervisor_config.v2.json");
        let e = OrchestratorConfig::parse(&std::fs::read(p).unwrap()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadInput);
        let msg = e.to_string();
        assert!(msg.contains("no lxc_configs"), "{msg}");
        assert!(
            msg.contains("hypervisor config (phoenix_hypervisor_config.json: the keys behavior, core_paths, nvidia_driver, version)"),
            "{msg}"
        );
        assert!(msg.contains("phoenix_lxc_configs.json"), "{msg}");
        for (json, looks) in [
            (&br#"[1, 2]"#[..], "a JSON array, not an object"),
            (br#"{}"#, "a JSON object with no keys"),
            (
                br#"{"containers": {}}"#,
                "a JSON object with the keys containers",
            ),
        ] {
            let e = OrchestratorConfig::parse(json).unwrap_err().to_string();
            assert!(e.contains(looks), "{e}");
        }
    }

    #[test]
    fn a_container_given_twice_is_refused() {
        let e = OrchestratorConfig::parse(
            br#"{"lxc_configs": {"101": {"gpu_assignment": "0"}, "102": {}, "101": {"gpu_assignment": "1"}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadInput);
        let text = crate::error::chain(&e);
        assert!(text.contains(r#"container "101" is given twice"#), "{text}");
        // A field given twice in one block, or at the top, is refused too (serde's own rule).
        for twice in [
            &br#"{"lxc_configs": {"101": {"gpu_assignment": "0", "gpu_assignment": "1"}}}"#[..],
            br#"{"nvidia_driver_version": "580.1", "nvidia_driver_version": "570.1", "lxc_configs": {}}"#,
        ] {
            let e = OrchestratorConfig::parse(twice).unwrap_err();
            assert!(crate::error::chain(&e).contains("duplicate field"), "{e}");
        }
    }

    #[test]
    fn rejects_non_json_and_names_bad_values() {
        assert!(OrchestratorConfig::parse(b"{").is_err());
        assert!(OrchestratorConfig::parse(br#"{"lxc_configs": []}"#).is_err());
        assert!(OrchestratorConfig::parse(br#"{"lxc_configs": {}}"#).is_ok());
        let c = OrchestratorConfig::parse(
            br#"{"nvidia_driver_version": "v580", "lxc_configs": {"101": {"gpu_assignment": "0,,1"}}}"#,
        )
        .unwrap();
        let e = c.driver_version().unwrap_err();
        assert!(
            matches!(
                &e,
                Error::OrchestratorValue {
                    field: "nvidia_driver_version",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.kind(), crate::ErrorKind::BadInput);
        let e = c.gpus(&"101".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("gpu_assignment of container 101"),
            "{e}"
        );
    }
}
