//! [`Document::to_pve_canonical`]: Proxmox's `write_pct_config`, fed by the file's lines read
//! with `parse_pct_config`'s rules.

use std::collections::BTreeMap;

use crate::document::Document;
use crate::line::{classify_pve, Kind, Line};
use crate::rules::{check_type, encode_text, parse_index, truthy, Checked};
use crate::section::{read_description, split_sections, Effective};
use crate::types::{Dialect, SectionKind};

impl Document {
    /// What Proxmox's `write_pct_config` writes after reading this file with
    /// `parse_pct_config`: description as `#` lines first, plain keys sorted bytewise with
    /// booleans and integers normalised, `lxc.environment.runtime` then the other `lxc.*`
    /// entries as `key: value`, then `[pve:pending]`, then the snapshots sorted by name.
    /// Dropped lines are gone, duplicates resolved. A plain-LXC document is read as PVE would.
    pub fn to_pve_canonical(&self) -> Vec<u8> {
        write(&self.lines, &self.pve_kinds())
    }

    fn pve_kinds(&self) -> Vec<Kind> {
        match self.dialect {
            Dialect::Pve => self.lines.iter().map(|l| l.kind.clone()).collect(),
            Dialect::Lxc => self.lines.iter().map(|l| classify_pve(&l.text)).collect(),
        }
    }
}

/// `$conf` of one section as `parse_pct_config` builds it.
#[derive(Default)]
struct Model {
    description: Option<Vec<u8>>,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    env: Option<Vec<u8>>,
    lxc: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Model {
    fn build(lines: &[Line], kinds: &[Kind], body: std::ops::Range<usize>, pending: bool) -> Self {
        let mut m = Model {
            description: read_description(
                body.clone().map(|i| (lines[i].text.as_slice(), &kinds[i])),
            ),
            ..Model::default()
        };
        for i in body {
            let t = &lines[i].text;
            match &kinds[i] {
                Kind::Lxc {
                    key,
                    value,
                    validity,
                    ..
                } if validity.is_kept() => {
                    let (k, v) = (t[key.clone()].to_vec(), t[value.clone()].to_vec());
                    if k == b"lxc.environment.runtime" {
                        m.env = Some(match m.env.take() {
                            Some(mut e) => {
                                e.push(0);
                                e.extend_from_slice(&v);
                                e
                            }
                            None => v,
                        });
                    } else {
                        m.lxc.push((k, v));
                    }
                }
                Kind::Snapstate { value } => {
                    m.keys
                        .insert(b"snapstate".to_vec(), t[value.clone()].to_vec());
                }
                Kind::Delete { value } if pending => {
                    m.keys.insert(b"delete".to_vec(), t[value.clone()].to_vec());
                }
                Kind::Plain { key, value, .. } => {
                    let (k, raw) = (&t[key.clone()], &t[value.clone()]);
                    let v = match check_type(k, raw) {
                        Checked::Ok(v) => v,
                        Checked::UnknownKey | Checked::Invalid(_) => raw.to_vec(),
                    };
                    match k {
                        b"description" => {} // read by read_description
                        b"env" => m.env = Some(v),
                        _ => {
                            m.keys.insert(k.to_vec(), v);
                        }
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// Whether the hash has any key (`scalar(keys %$pending)`).
    fn has_keys(&self) -> bool {
        self.description.is_some()
            || !self.keys.is_empty()
            || self.env.is_some()
            || !self.lxc.is_empty()
    }

    fn write(&self, out: &mut Vec<u8>) {
        if let Some(d) = self.description.as_deref().filter(|d| truthy(d)) {
            let d = String::from_utf8_lossy(d);
            for line in perl_split(d.as_bytes(), b'\n', false) {
                out.push(b'#');
                encode_text(&String::from_utf8_lossy(line), out);
                out.push(b'\n');
            }
        }
        for (k, v) in &self.keys {
            if matches!(
                k.as_slice(),
                b"digest" | b"pending" | b"snapshots" | b"snapname" | b"lxc"
            ) {
                continue;
            }
            write_entry(out, k, v);
        }
        if let Some(env) = self.env.as_deref().filter(|e| truthy(e)) {
            for v in perl_split(env, 0, true) {
                write_entry(out, b"lxc.environment.runtime", v);
            }
        }
        for (k, v) in &self.lxc {
            write_entry(out, k, v);
        }
    }

    /// `write_pct_config` step 1: drop `unusedN` whose volume rootfs or an mpN still uses.
    fn drop_used_unused(&mut self) {
        let used: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter(|(k, _)| {
                k.as_slice() == b"rootfs"
                    || k.strip_prefix(b"mp".as_slice())
                        .and_then(parse_index)
                        .is_some_and(|i| i < 256)
            })
            .filter_map(|(_, v)| volume_of(v))
            .filter(|vol| is_volid(vol))
            .collect();
        self.keys
            .retain(|k, v| !(k.starts_with(b"unused") && used.iter().any(|u| u == v)));
    }
}

/// One `key: value` line as `write_pct_config` writes it.
fn write_entry(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The `volume` of a mount point property string (default key or `volume=`).
fn volume_of(value: &[u8]) -> Option<Vec<u8>> {
    let mut default = None;
    for part in value.split(|&b| b == b',').filter(|p| !p.is_empty()) {
        match part.iter().position(|&b| b == b'=') {
            Some(eq) if eq > 0 && eq + 1 < part.len() => {
                if &part[..eq] == b"volume" {
                    return Some(part[eq + 1..].to_vec());
                }
            }
            _ => {
                if default.is_none() {
                    default = Some(part.to_vec());
                }
            }
        }
    }
    default
}

/// A storage volume (not a bind mount or device) that `parse_volume_id` accepts.
fn is_volid(vol: &[u8]) -> bool {
    if vol.starts_with(b"/") {
        return false;
    }
    let Some(colon) = vol.iter().position(|&b| b == b':') else {
        return false;
    };
    let (sid, rest) = (&vol[..colon], &vol[colon + 1..]);
    let ok_mid = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    sid.len() >= 2
        && sid[0].is_ascii_alphabetic()
        && sid[sid.len() - 1].is_ascii_alphanumeric()
        && sid.iter().all(ok_mid)
        && !rest.is_empty()
}

/// Perl `split(/SEP/, $s)` (or `/SEP+/` when `runs`): leading empty fields stay, trailing
/// empty fields go.
fn perl_split(s: &[u8], sep: u8, runs: bool) -> Vec<&[u8]> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i] == sep {
            fields.push(&s[start..i]);
            i += 1;
            if runs {
                while i < s.len() && s[i] == sep {
                    i += 1;
                }
            }
            start = i;
        } else {
            i += 1;
        }
    }
    fields.push(&s[start..]);
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    fields
}

/// The bytes `write_pct_config` writes for a file whose lines have these PVE kinds.
fn write(lines: &[Line], kinds: &[Kind]) -> Vec<u8> {
    let raw = split_sections(lines, kinds);
    let eff = Effective::of(&raw);
    let mut out = Vec::new();

    let mut main = Model::build(lines, kinds, raw[eff.main].body.clone(), false);
    main.keys.remove(b"snapstate".as_slice());
    main.drop_used_unused();
    main.write(&mut out);

    if let Some(p) = eff.pending {
        let pending = Model::build(lines, kinds, raw[p].body.clone(), true);
        if pending.has_keys() {
            out.extend_from_slice(b"\n[pve:pending]\n");
            pending.write(&mut out);
        }
    }

    let mut snaps: Vec<(&str, usize)> = eff
        .snapshots
        .iter()
        .filter_map(|&i| match &raw[i].kind {
            SectionKind::Snapshot(name) => Some((name.as_str(), i)),
            _ => None,
        })
        .collect();
    snaps.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, i) in snaps {
        out.extend_from_slice(b"\n[");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"]\n");
        Model::build(lines, kinds, raw[i].body.clone(), false).write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::pve;

    #[test]
    fn canonical_drops_unused_volumes_still_in_use_and_orders_env() {
        let d = pve("unused1: local:vm-1-disk-1\nunused0: local:vm-1-disk-0\nlxc.idmap: u 0 1 2\n\
                     lxc.environment.runtime: A=1\nrootfs: local:vm-1-disk-0,size=8G\nsnapstate: prepare\n");
        assert_eq!(
            String::from_utf8(d.to_pve_canonical()).unwrap(),
            "rootfs: local:vm-1-disk-0,size=8G\nunused1: local:vm-1-disk-1\n\
             lxc.environment.runtime: A=1\nlxc.idmap: u 0 1 2\n"
        );
        assert_eq!(
            pve("[bb]\n[BB]\n[c]\n").to_pve_canonical(),
            b"\n[BB]\n\n[bb]\n"
        );
    }

    #[test]
    fn perl_split_semantics() {
        assert_eq!(
            perl_split(b"\nabc\n\n", b'\n', false),
            vec![b"".as_slice(), b"abc"]
        );
        assert_eq!(
            perl_split(b"a\0\0b\0", 0, true),
            vec![b"a".as_slice(), b"b"]
        );
        assert!(perl_split(b"", b'\n', false).is_empty());
    }

    #[test]
    fn volumes() {
        assert_eq!(
            volume_of(b"local-lvm:vm-1-disk-0,mp=/srv"),
            Some(b"local-lvm:vm-1-disk-0".to_vec())
        );
        assert_eq!(volume_of(b"mp=/srv,volume=a:b"), Some(b"a:b".to_vec()));
        assert!(is_volid(b"local-lvm:vm-1-disk-0"));
        assert!(!is_volid(b"/tank/storage"));
    }
}
