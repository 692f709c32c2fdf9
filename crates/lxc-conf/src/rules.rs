//! Proxmox's rules as data: raw `lxc.*` key validity, the schema's value types and their
//! normalisation (`check_type`), and the description text encoding.

/// What `is_valid_lxc_conf_key` says about a raw `lxc.*` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LxcValidity {
    /// Accepted silently.
    Valid,
    /// Accepted with a warning (renamed or deprecated key); the text says why.
    Deprecated(&'static str),
    /// Rejected with a specific message; the line is dropped.
    Rejected(&'static str),
    /// Not a known key; the line is dropped.
    Unknown,
}

impl LxcValidity {
    /// Whether Proxmox keeps the entry.
    pub(crate) fn is_kept(self) -> bool {
        matches!(self, Self::Valid | Self::Deprecated(_))
    }
}

const VALID_LXC_KEYS: &[&str] = &[
    "lxc.apparmor.profile",
    "lxc.apparmor.allow_incomplete",
    "lxc.apparmor.allow_nesting",
    "lxc.apparmor.raw",
    "lxc.selinux.context",
    "lxc.include",
    "lxc.arch",
    "lxc.uts.name",
    "lxc.signal.halt",
    "lxc.signal.reboot",
    "lxc.signal.stop",
    "lxc.init.cmd",
    "lxc.init.cwd",
    "lxc.init.uid",
    "lxc.init.gid",
    "lxc.init.groups",
    "lxc.pty.max",
    "lxc.console.logfile",
    "lxc.console.path",
    "lxc.tty.max",
    "lxc.devtty.dir",
    "lxc.hook.autodev",
    "lxc.autodev",
    "lxc.kmsg",
    "lxc.mount.fstab",
    "lxc.mount.entry",
    "lxc.mount.auto",
    "lxc.rootfs.mount",
    "lxc.cap.drop",
    "lxc.cap.keep",
    "lxc.seccomp.profile",
    "lxc.seccomp.notify.proxy",
    "lxc.seccomp.notify.cookie",
    "lxc.idmap",
    "lxc.hook.pre-start",
    "lxc.hook.pre-mount",
    "lxc.hook.mount",
    "lxc.hook.start",
    "lxc.hook.stop",
    "lxc.hook.post-stop",
    "lxc.hook.clone",
    "lxc.hook.destroy",
    "lxc.hook.version",
    "lxc.log.level",
    "lxc.log.file",
    "lxc.start.auto",
    "lxc.start.delay",
    "lxc.start.order",
    "lxc.group",
    "lxc.environment",
    "lxc.environment.runtime",
    "lxc.environment.hooks",
    "lxc.sysctl.fs.mqueue",
    "lxc.sysctl.kernel.msgmax",
    "lxc.sysctl.kernel.msgmnb",
    "lxc.sysctl.kernel.msgmni",
    "lxc.sysctl.kernel.sem",
    "lxc.sysctl.kernel.shmall",
    "lxc.sysctl.kernel.shmmax",
    "lxc.sysctl.kernel.shmmni",
    "lxc.sysctl.kernel.shm_rmid_forced",
];

const DEPRECATED_LXC_KEYS: &[&str] = &[
    "lxc.aa_profile",
    "lxc.aa_allow_incomplete",
    "lxc.console",
    "lxc.devttydir",
    "lxc.haltsignal",
    "lxc.rebootsignal",
    "lxc.stopsignal",
    "lxc.id_map",
    "lxc.init_cmd",
    "lxc.loglevel",
    "lxc.logfile",
    "lxc.mount",
    "lxc.network.type",
    "lxc.network.flags",
    "lxc.network.link",
    "lxc.network.mtu",
    "lxc.network.name",
    "lxc.network.hwaddr",
    "lxc.network.ipv4",
    "lxc.network.ipv4.gateway",
    "lxc.network.ipv6",
    "lxc.network.ipv6.gateway",
    "lxc.network.script.up",
    "lxc.network.script.down",
    "lxc.pts",
    "lxc.se_context",
    "lxc.seccomp",
    "lxc.tty",
    "lxc.utsname",
];

/// `is_valid_lxc_conf_key` of pve-container.
pub(crate) fn lxc_validity(key: &[u8]) -> LxcValidity {
    if key.starts_with(b"lxc.limit.") {
        return LxcValidity::Deprecated("lxc.limit.* was renamed to lxc.prlimit.*");
    }
    if DEPRECATED_LXC_KEYS.iter().any(|k| k.as_bytes() == key) {
        return LxcValidity::Deprecated("deprecated key (renamed in lxc 3.0)");
    }
    if key == b"lxc.rootfs.path" {
        return LxcValidity::Rejected("lxc.rootfs.path is auto generated from rootfs");
    }
    if key == b"lxc.rootfs.options" {
        return LxcValidity::Rejected(
            "lxc.rootfs.options is not supported, please use mount point options in the \"rootfs\" key",
        );
    }
    if key.starts_with(b"lxc.cgroup.") {
        return LxcValidity::Deprecated("lxc.cgroup.* only applies to the cgroup v1 hierarchy");
    }
    if VALID_LXC_KEYS.iter().any(|k| k.as_bytes() == key)
        || key.starts_with(b"lxc.cgroup2.")
        || key.starts_with(b"lxc.prlimit.")
        || key.starts_with(b"lxc.net.")
    {
        return LxcValidity::Valid;
    }
    LxcValidity::Unknown
}

/// Keys that Proxmox handles specially: a `key: value` line with one of them does not set that
/// key as written.
pub(crate) fn is_reserved_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"digest" | b"pending" | b"snapshots" | b"snapname" | b"lxc" | b"env" | b"description"
    )
}

/// A schema type that `check_type` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    Boolean,
    Integer,
    Number,
    String,
}

/// `$confdesc` of pve-container: the type of a known top-level key.
pub(crate) fn key_type(key: &[u8]) -> Option<ValueType> {
    const BOOL: &[&str] = &[
        "onboot",
        "template",
        "console",
        "protection",
        "unprivileged",
        "debug",
    ];
    const INT: &[&str] = &["tty", "cores", "cpuunits", "memory", "swap", "snaptime"];
    const STRING: &[&str] = &[
        "lock",
        "startup",
        "arch",
        "ostype",
        "hostname",
        "description",
        "searchdomain",
        "nameserver",
        "timezone",
        "rootfs",
        "parent",
        "cmode",
        "entrypoint",
        "features",
        "hookscript",
        "tags",
        "env",
    ];
    let is = |list: &[&str]| list.iter().any(|k| k.as_bytes() == key);
    if is(BOOL) {
        return Some(ValueType::Boolean);
    }
    if is(INT) {
        return Some(ValueType::Integer);
    }
    if key == b"cpulimit" {
        return Some(ValueType::Number);
    }
    if is(STRING) {
        return Some(ValueType::String);
    }
    for (prefix, max) in [("net", 32u32), ("mp", 256), ("unused", 256), ("dev", 256)] {
        if let Some(i) = key.strip_prefix(prefix.as_bytes()).and_then(parse_index) {
            if i < max {
                return Some(ValueType::String);
            }
        }
    }
    None
}

/// A canonical decimal index: `0` or digits without a leading zero.
pub(crate) fn parse_index(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The outcome of `check_type` for a value of a `key: value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Known key, value accepted; the value Proxmox stores (maybe normalised).
    Ok(Vec<u8>),
    /// Not in the schema: warned about, stored as written.
    UnknownKey,
    /// Type check failed: warned about, stored as written. The text says why.
    Invalid(String),
}

/// `check_type`: the value Proxmox keeps for `key: value`, or why it complains.
pub(crate) fn check_type(key: &[u8], value: &[u8]) -> Checked {
    let Some(ty) = key_type(key) else {
        return Checked::UnknownKey;
    };
    if value.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Checked::Invalid("property contains a line feed".into());
    }
    let lossy = String::from_utf8_lossy(value);
    match ty {
        ValueType::Boolean => {
            let lower = value.to_ascii_lowercase();
            if value == b"1" || matches!(lower.as_slice(), b"on" | b"yes" | b"true") {
                Checked::Ok(b"1".to_vec())
            } else if value == b"0" || matches!(lower.as_slice(), b"off" | b"no" | b"false") {
                Checked::Ok(b"0".to_vec())
            } else {
                Checked::Invalid(format!("type check ('boolean') failed - got '{lossy}'"))
            }
        }
        ValueType::Integer => {
            if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                Checked::Ok(perl_int(value).into_bytes())
            } else {
                Checked::Invalid(format!("type check ('integer') failed - got '{lossy}'"))
            }
        }
        ValueType::Number => {
            let (int, frac) = match value.iter().position(|&b| b == b'.') {
                Some(p) => (&value[..p], Some(&value[p + 1..])),
                None => (value, None),
            };
            let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
            if digits(int) && frac.map_or(true, digits) {
                Checked::Ok(value.to_vec())
            } else {
                Checked::Invalid(format!("type check ('number') failed - got '{lossy}'"))
            }
        }
        ValueType::String => Checked::Ok(value.to_vec()),
    }
}

/// Perl's `int("digits")` printed back: exact below 2**64, `%.15g` above.
pub(crate) fn perl_int(digits: &[u8]) -> String {
    let s = std::str::from_utf8(digits)
        .unwrap_or("0")
        .trim_start_matches('0');
    if s.is_empty() {
        return "0".into();
    }
    if let Ok(v) = s.parse::<u64>() {
        return v.to_string();
    }
    let f: f64 = s.parse().unwrap_or(f64::INFINITY);
    if f.is_infinite() {
        return "Inf".into();
    }
    // %.15g with an exponent >= 19 is always the exponential form
    let e = format!("{f:.14e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let mant = if mant.contains('.') {
        mant.trim_end_matches('0').trim_end_matches('.')
    } else {
        mant
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// `PVE::Tools::encode_text`: percent-encode control, high, `%` and `:` bytes (uppercase hex).
pub(crate) fn encode_text(text: &str, out: &mut Vec<u8>) {
    for b in text.bytes() {
        if matches!(b, 0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

/// `PVE::Tools::decode_text`: `%XX` (any case) to bytes, then UTF-8 (malformed bytes replaced).
pub(crate) fn decode_text(data: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut bytes = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' && i + 2 < data.len() {
            if let (Some(h), Some(l)) = (hex(data[i + 1]), hex(data[i + 2])) {
                bytes.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        bytes.push(data[i]);
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Perl truthiness of a string: neither empty nor `"0"`.
pub(crate) fn truthy(s: &[u8]) -> bool {
    !s.is_empty() && s != b"0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_type_normalises_like_pve() {
        assert_eq!(check_type(b"onboot", b"Yes"), Checked::Ok(b"1".to_vec()));
        assert_eq!(check_type(b"debug", b"off"), Checked::Ok(b"0".to_vec()));
        assert_eq!(check_type(b"memory", b"0512"), Checked::Ok(b"512".to_vec()));
        assert_eq!(
            check_type(b"cpulimit", b"1.50"),
            Checked::Ok(b"1.50".to_vec())
        );
        assert!(matches!(
            check_type(b"cpulimit", b"1."),
            Checked::Invalid(_)
        ));
        assert!(matches!(check_type(b"memory", b"1G"), Checked::Invalid(_)));
        assert_eq!(check_type(b"futurekey", b"x"), Checked::UnknownKey);
        assert_eq!(check_type(b"net31", b"x"), Checked::Ok(b"x".to_vec()));
        assert_eq!(check_type(b"net32", b"x"), Checked::UnknownKey);
        assert_eq!(check_type(b"dev07", b"x"), Checked::UnknownKey);
    }

    #[test]
    fn perl_int_overflows_to_float_notation() {
        assert_eq!(perl_int(b"000"), "0");
        assert_eq!(perl_int(b"18446744073709551615"), "18446744073709551615");
        assert_eq!(perl_int(b"100000000000000000000"), "1e+20");
        assert_eq!(perl_int(b"18446744073709551616"), "1.84467440737096e+19");
    }

    #[test]
    fn text_encoding_round_trips() {
        let mut out = Vec::new();
        encode_text("WAN: ETH1 -> vmbr0 100% é\t\r", &mut out);
        assert_eq!(out, b"WAN%3A ETH1 -> vmbr0 100%25 %C3%A9%09%0D");
        assert_eq!(decode_text(&out), "WAN: ETH1 -> vmbr0 100% é\t\r");
        assert_eq!(decode_text(b"a%2fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn lxc_key_validity() {
        assert_eq!(lxc_validity(b"lxc.mount.entry"), LxcValidity::Valid);
        assert!(matches!(
            lxc_validity(b"lxc.cgroup.devices.allow"),
            LxcValidity::Deprecated(_)
        ));
        assert_eq!(
            lxc_validity(b"lxc.cgroup2.devices.allow"),
            LxcValidity::Valid
        );
        assert!(matches!(
            lxc_validity(b"lxc.aa_profile"),
            LxcValidity::Deprecated(_)
        ));
        assert!(matches!(
            lxc_validity(b"lxc.rootfs.path"),
            LxcValidity::Rejected(_)
        ));
        assert_eq!(
            lxc_validity(b"lxc.namespace.share.net"),
            LxcValidity::Unknown
        );
    }
}
