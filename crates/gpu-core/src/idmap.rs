//! A container's user and group id maps: which host id each id inside is.
//!
//! A privileged container's ids are the host's. An unprivileged one maps ranges of its ids to
//! host ids with `lxc.idmap = u|g|b CT HOST COUNT` lines; a Proxmox VE container with
//! `unprivileged: 1` and no such line gets Proxmox's default, `0 100000 65536` for both.
//! A host id outside every range is not mapped: inside it shows as the overflow id, 65534.

use lxc_conf::Document;

/// The id a host id that the container does not map shows as inside (`nobody`, `nogroup`).
pub(crate) const OVERFLOW_ID: u32 = 65534;

/// Proxmox VE's map of an unprivileged container without `lxc.idmap` lines.
const PVE_DEFAULT: Range = Range {
    ct: 0,
    host: 100_000,
    count: 65_536,
};

/// One range: `count` ids from `ct` inside are `host` onwards on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    ct: u32,
    host: u32,
    count: u32,
}

/// A container's uid and gid maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdMap {
    /// `None`: ids are the host's (a privileged container).
    maps: Option<(Vec<Range>, Vec<Range>)>,
}

/// Which kind of id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Id {
    /// A user id.
    User,
    /// A group id.
    Group,
}

impl IdMap {
    /// The map of a container whose config is `doc`.
    pub fn of(doc: &Document, unprivileged: bool) -> IdMap {
        let (mut uids, mut gids) = (Vec::new(), Vec::new());
        for e in doc.main().entries() {
            if e.key != "lxc.idmap" {
                continue;
            }
            let f: Vec<&str> = e.value.split_whitespace().collect();
            let [kind, ct, host, count] = f[..] else {
                continue;
            };
            let (Ok(ct), Ok(host), Ok(count)) = (ct.parse(), host.parse(), count.parse()) else {
                continue;
            };
            let r = Range { ct, host, count };
            match kind {
                "u" => uids.push(r),
                "g" => gids.push(r),
                "b" => {
                    uids.push(r);
                    gids.push(r);
                }
                _ => {}
            }
        }
        if uids.is_empty() && gids.is_empty() {
            if !unprivileged {
                return IdMap { maps: None };
            }
            (uids, gids) = (vec![PVE_DEFAULT], vec![PVE_DEFAULT]);
        }
        IdMap {
            maps: Some((uids, gids)),
        }
    }

    fn ranges(&self, id: Id) -> Option<&[Range]> {
        self.maps.as_ref().map(|(u, g)| match id {
            Id::User => u.as_slice(),
            Id::Group => g.as_slice(),
        })
    }

    /// The host id of the container's id `ct`; `None` when the container does not map it.
    pub fn to_host(&self, id: Id, ct: u32) -> Option<u32> {
        let Some(ranges) = self.ranges(id) else {
            return Some(ct);
        };
        ranges
            .iter()
            .find(|r| ct >= r.ct && ct - r.ct < r.count)
            .map(|r| r.host + (ct - r.ct))
    }

    /// What the host id `host` shows as inside the container (the overflow id when it is not
    /// mapped).
    pub fn seen_inside(&self, id: Id, host: u32) -> u32 {
        let Some(ranges) = self.ranges(id) else {
            return host;
        };
        ranges
            .iter()
            .find(|r| host >= r.host && host - r.host < r.count)
            .map_or(OVERFLOW_ID, |r| r.ct + (host - r.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lxc_conf::Dialect;

    #[test]
    fn privileged_ids_are_the_hosts() {
        let doc = Document::parse(b"arch: amd64\n", Dialect::Pve);
        let m = IdMap::of(&doc, false);
        assert_eq!(m.to_host(Id::User, 0), Some(0));
        assert_eq!(m.seen_inside(Id::Group, 44), 44);
    }

    #[test]
    fn proxmox_default_for_unprivileged_without_lines() {
        let doc = Document::parse(b"arch: amd64\nunprivileged: 1\n", Dialect::Pve);
        let m = IdMap::of(&doc, true);
        assert_eq!(m.to_host(Id::User, 0), Some(100_000));
        assert_eq!(m.to_host(Id::Group, 44), Some(100_044));
        assert_eq!(m.to_host(Id::Group, 70_000), None);
        assert_eq!(m.seen_inside(Id::User, 0), OVERFLOW_ID);
        assert_eq!(m.seen_inside(Id::Group, 100_044), 44);
    }

    #[test]
    fn lxc_idmap_lines_with_holes() {
        let doc = Document::parse(
            b"lxc.idmap = u 0 100000 1000\nlxc.idmap = u 1000 1000 1\nlxc.idmap = u 1001 101001 64535\nlxc.idmap = g 0 200000 65536\n",
            Dialect::Lxc,
        );
        let m = IdMap::of(&doc, true);
        assert_eq!(m.to_host(Id::User, 1000), Some(1000));
        assert_eq!(m.to_host(Id::User, 1001), Some(101_001));
        assert_eq!(m.to_host(Id::Group, 5), Some(200_005));
        assert_eq!(m.seen_inside(Id::User, 1000), 1000);
        assert_eq!(m.seen_inside(Id::User, 100_999), 999);
        assert_eq!(m.seen_inside(Id::Group, 100_000), OVERFLOW_ID);
    }
}
