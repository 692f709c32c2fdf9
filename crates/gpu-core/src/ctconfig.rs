//! A container's config as read from the host: the file, its parsed document, and the evidence
//! that says which of its lines are the tool's.
//!
//! Every module that reads a config goes through here: the config step (before it edits),
//! and the read-back of the current passthrough ([`crate::current`]).

use std::path::{Path, PathBuf};

use exec_backend::{ExecError, Host};
use lxc_conf::{Dialect, Document};

use crate::error::{Error, Result};
use crate::host_libs;
use crate::inventory::{read_text, Inventory};
use crate::passthrough::{Evidence, MountEntry};
use crate::step::Ctx;
use crate::target::Target;

/// A config as read: its path, bytes and parsed document.
pub(crate) struct Loaded {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub doc: Document,
}

/// Reads and parses the container's config; refuses a locked one.
pub(crate) async fn load(ctx: &Ctx<'_>) -> Result<Loaded> {
    let path = ctx.target.config_path(ctx.ct);
    let bytes = match ctx.host.read_file(&path).await {
        Ok(b) => b,
        Err(e @ ExecError::NotFound { .. }) => {
            if ct_known_absent(ctx).await {
                return Err(Error::CtNotFound {
                    ct: ctx.ct.to_string(),
                    path,
                });
            }
            return Err(Error::ConfigUnreadable {
                ct: ctx.ct.to_string(),
                path,
                source: e,
            });
        }
        // A node that does not answer is the host's failure, not the config's.
        Err(e @ ExecError::Ssh { .. }) => {
            return Err(Error::exec(
                format!(
                    "cannot read the config of container {} at {}",
                    ctx.ct,
                    path.display()
                ),
                e,
            ))
        }
        Err(e) => {
            return Err(Error::ConfigUnreadable {
                ct: ctx.ct.to_string(),
                path,
                source: e,
            })
        }
    };
    let doc = Document::parse(&bytes, ctx.target.dialect());
    if let Some(problem) = not_a_config(&bytes, &doc) {
        return Err(Error::ConfigGarbled {
            ct: ctx.ct.to_string(),
            path,
            problem,
            backups: ctx.settings.backup_root.join(ctx.ct.as_str()),
        });
    }
    if ctx.target.dialect() == Dialect::Pve {
        if let Some(lock) = doc.main().get("lock") {
            return Err(Error::Locked {
                ct: ctx.ct.to_string(),
                lock: lock.to_owned(),
            });
        }
    }
    Ok(Loaded { path, bytes, doc })
}

/// Why `bytes` (parsed as `doc`) cannot be a container config, if it cannot: the rule that
/// keeps the tool from appending GPU lines to a file a crash zeroed or to something else
/// copied over a config.
///
/// - a NUL byte anywhere: no config holds one; a file zeroed by a crash is all NUL bytes;
/// - no config line at all (`key: value` on Proxmox, `key = value` on LXC; comments and
///   blank lines are not config lines): an empty file, or text that is not a config;
/// - more lines the reader drops (or LXC refuses) than config lines: junk with a few lines
///   that happen to parse, such as random bytes.
///
/// Anything else passes, however odd: CRLF line ends, bytes that are not UTF-8 (a latin-1
/// description), odd spacing, a few invalid lines (Proxmox warns and skips them; the tool
/// keeps them byte for byte).
pub(crate) fn not_a_config(bytes: &[u8], doc: &Document) -> Option<String> {
    let nuls = bytes.iter().filter(|&&b| b == 0).count();
    if nuls > 0 {
        return Some(format!(
            "it holds {nuls} NUL byte(s), which no config has (a crash may have zeroed it)"
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some("it is empty".to_owned());
    }
    let mut keys = doc.main().entries().len();
    keys += doc
        .snapshots()
        .iter()
        .map(|s| s.entries().len())
        .sum::<usize>();
    keys += doc.pending().map_or(0, |s| s.entries().len());
    let form = match doc.dialect() {
        Dialect::Pve => "key: value",
        Dialect::Lxc => "key = value",
    };
    if keys == 0 {
        return Some(format!("none of its lines is a config line ({form})"));
    }
    let junk = doc.invalid_lines().len();
    if junk > keys {
        return Some(format!(
            "{junk} of its lines are not config lines ({form}) and only {keys} are"
        ));
    }
    None
}

/// On Proxmox, whether the cluster's `/etc/pve/.vmlist` says no container has this id.
async fn ct_known_absent(ctx: &Ctx<'_>) -> bool {
    if *ctx.target != Target::Pve {
        return false;
    }
    let Ok(Some(text)) = read_text(ctx.host, "/etc/pve/.vmlist").await else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    match v.get("ids").and_then(|ids| ids.as_object()) {
        Some(ids) => !ids
            .get(ctx.ct.as_str())
            .is_some_and(|e| e.get("type").and_then(|t| t.as_str()) == Some("lxc")),
        None => false,
    }
}

/// Whether the container is unprivileged: `unprivileged: 1` (PVE), `lxc.idmap` lines (LXC).
pub(crate) fn is_unprivileged(doc: &Document) -> bool {
    let main = doc.main();
    match doc.dialect() {
        Dialect::Pve => main.get("unprivileged").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        }),
        Dialect::Lxc => main
            .entries()
            .iter()
            .any(|e| e.key == "lxc.idmap" && !e.value.trim().is_empty()),
    }
}

/// The directory a host under a root maps `/` to (`None` for a host without one): mount
/// sources under it are recognised as the host paths they stand for.
pub(crate) fn host_root(host: &dyn Host) -> Option<PathBuf> {
    let root = host.resolve(Path::new("/"));
    (root != Path::new("/")).then_some(root)
}

/// The evidence the ownership rule decides by ([`Evidence`]): the host's `/proc/devices`, the
/// node record, and, when a line of `doc` needs them, the files the `host-libs` strategy
/// binds now (only with `inv`: without a driver there are none). `host_files`: those files
/// when the caller has them already.
pub(crate) async fn evidence(
    ctx: &Ctx<'_>,
    doc: &Document,
    inv: Option<&Inventory>,
    host_files: Option<Vec<MountEntry>>,
) -> Result<Evidence> {
    let devices = ctx.proc_devices().await?;
    let record = ctx.facts.record(ctx.host, &ctx.settings.record).await?;
    let mut ev = Evidence {
        devices,
        record,
        host_files,
        root: host_root(ctx.host),
    };
    let needed = || {
        let pending = doc.pending();
        let lines = doc
            .main()
            .entries()
            .into_iter()
            .chain(pending.iter().flat_map(|p| p.entries()));
        lines
            .into_iter()
            .any(|e| ev.needs_host_files(e.key, e.value))
    };
    if let Some(inv) = inv.filter(|_| needed()) {
        ev.host_files = Some(match host_libs::mounts(ctx, inv).await {
            Ok(m) => m,
            // No userspace of this version on the host: it binds nothing now.
            Err(Error::HostUserspaceMissing { .. }) => Vec::new(),
            Err(e) => return Err(e),
        });
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(bytes: &[u8], dialect: Dialect) -> Option<String> {
        not_a_config(bytes, &Document::parse(bytes, dialect))
    }

    fn every_file(dir: &str) -> Vec<std::path::PathBuf> {
        let dir = test_support::testdata::lxc_corpus().join(dir);
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        assert!(!v.is_empty(), "{}", dir.display());
        v
    }

    /// Every real config of the corpus (CRLF, latin-1 and UTF-8 descriptions, odd spacing,
    /// a malformed header, invalid lines) is a config; the one file of comments only (an
    /// LXC include fragment) is not.
    #[test]
    fn the_corpus_is_made_of_configs() {
        for (dir, dialect) in [
            ("pve", Dialect::Pve),
            ("pve_rewrites", Dialect::Pve),
            ("synthetic", Dialect::Pve),
            ("plain_lxc", Dialect::Lxc),
        ] {
            for f in every_file(dir) {
                let bytes = std::fs::read(&f).unwrap();
                let v = verdict(&bytes, dialect);
                // An include fragment of LXC's, all comments: no container's config.
                if f.ends_with("lxc-oci.common.conf.in") {
                    assert!(v.unwrap().contains("none of its lines"));
                    continue;
                }
                assert_eq!(v, None, "{}", f.display());
            }
        }
    }

    #[test]
    fn the_rule_at_its_edges() {
        use Dialect::{Lxc, Pve};
        let ok: &[(&[u8], Dialect)] = &[
            (b"arch: amd64\n", Pve),
            (b"arch: amd64", Pve),
            (b"arch:amd64\r\nhostname:   gpu \r\n", Pve),
            (b"#caf\xe9 cr\xe8me\narch: amd64\n", Pve),
            (b"arch: amd64\nthis line is junk\n", Pve),
            (b"arch: amd64\nmemory: 2048\nj1 j1\nj2 j2\n", Pve),
            (b"# comment\n\n\narch: amd64\n", Pve),
            (b"lxc.arch = x86_64\n", Lxc),
            (b"lxc.arch=x86_64\n", Lxc),
            (b"\xff\xfe arch: amd64\narch: amd64\n", Pve),
        ];
        for (bytes, d) in ok {
            assert_eq!(
                verdict(bytes, *d),
                None,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let refused: &[(&[u8], Dialect, &str)] = &[
            (b"", Pve, "empty"),
            (b" \n\t\n\r\n", Pve, "empty"),
            (&[0u8; 1855], Pve, "1855 NUL byte(s)"),
            (b"arch: amd64\n\0", Pve, "1 NUL byte(s)"),
            (b"arch: amd64\x00\nmemory: 1\n", Lxc, "NUL"),
            (b"# only a comment\n", Pve, "none of its lines"),
            (b"Note: hello\n", Pve, "none of its lines"),
            (b"arch = amd64\n", Pve, "none of its lines"),
            (b"lxc.arch: x86_64\n", Lxc, "none of its lines"),
            (b"arch: amd64\nj1 j1\nj2 j2\n", Pve, "2 of its lines"),
        ];
        for (bytes, d, needle) in refused {
            let v = verdict(bytes, *d)
                .unwrap_or_else(|| panic!("accepted {:?}", String::from_utf8_lossy(bytes)));
            assert!(v.contains(needle), "{v:?} lacks {needle:?}");
        }
        // Random bytes without a NUL: junk, with perhaps a line that parses by chance.
        let mut x: u32 = 0x1234_5678;
        let random: Vec<u8> = (0..1855)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 255) as u8 + 1
            })
            .collect();
        assert!(verdict(&random, Pve).is_some());
        assert!(verdict(&random, Lxc).is_some());
    }
}
