//! Destination names known as BitTorrent infrastructure (spec §1.13): DHT bootstrap routers,
//! public BitTorrent trackers and WebTorrent trackers, as asked for in a SOCKS5 domain-name
//! request or sent as a TLS server name.
//!
//! A supplement, never the main mechanism: lists go stale, and the payload classifiers decide
//! every flow whatever its name. The lists are the client defaults and the trackers that
//! public torrents name most often; operators add their own names
//! ([`KnownDestinations::with_extra`]).

use std::collections::HashSet;

/// DHT bootstrap routers from client defaults (libtorrent, uTorrent, Transmission, Vuze,
/// BitComet, qBittorrent). They serve nothing but the DHT (BEP 5), on any port.
pub const DHT_ROUTERS: [&str; 8] = [
    "router.bittorrent.com",
    "router.utorrent.com",
    "router.bitcomet.com",
    "dht.transmissionbt.com",
    "dht.libtorrent.org",
    "dht.aelitis.com",
    "router.silotis.us",
    "dht.anacrolix.link",
];

/// Public BitTorrent trackers that public torrents and tracker lists name most often.
pub const PUBLIC_TRACKERS: [&str; 16] = [
    "tracker.opentrackr.org",
    "open.stealth.si",
    "tracker.torrent.eu.org",
    "exodus.desync.com",
    "open.demonii.com",
    "tracker.openbittorrent.com",
    "open.tracker.cl",
    "tracker.tiny-vps.com",
    "explodie.org",
    "tracker.moeking.me",
    "tracker.dler.org",
    "p4p.arenabg.com",
    "tracker.theoks.net",
    "tracker1.bt.moack.co.kr",
    "tracker.bittor.pw",
    "opentracker.i2p.rocks",
];

/// WebTorrent (WebSocket) trackers seen in client defaults (spec §1.8).
pub const WEBTORRENT_TRACKERS: [&str; 5] = [
    "tracker.openwebtorrent.com",
    "tracker.webtorrent.dev",
    "tracker.btorrent.xyz",
    "tracker.fastcast.nz",
    "tracker.files.fm",
];

/// Why a name is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    /// A DHT bootstrap router, a public tracker, or an operator-listed name.
    Infrastructure,
    /// A WebTorrent tracker (reported as the `webtorrent` form).
    WebTorrent,
}

/// The canonical form of a host name for matching: lower case, no trailing dot.
fn canonical(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether `name` is one of the built-in names (no allocation; used on TLS server names).
pub fn builtin_kind(name: &[u8]) -> Option<DestinationKind> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let listed = |list: &[&str]| {
        list.iter()
            .any(|entry| entry.as_bytes().eq_ignore_ascii_case(name))
    };
    if listed(&WEBTORRENT_TRACKERS) {
        Some(DestinationKind::WebTorrent)
    } else if listed(&DHT_ROUTERS) || listed(&PUBLIC_TRACKERS) {
        Some(DestinationKind::Infrastructure)
    } else {
        None
    }
}

/// An invalid operator-supplied name (the message says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?}: {reason}")]
pub struct InvalidName {
    /// The name as given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The names a proxy checks destinations against: the built-in lists (optional) and the
/// operator's own. An operator entry `*.example.org` matches every name under `example.org`
/// (not `example.org` itself); any other entry matches that exact name.
#[derive(Debug, Clone, Default)]
pub struct KnownDestinations {
    builtin: bool,
    exact: HashSet<String>,
    /// Suffixes with their leading dot (`.example.org`).
    suffixes: Vec<String>,
}

impl KnownDestinations {
    /// The built-in lists only.
    pub fn builtin() -> Self {
        Self {
            builtin: true,
            ..Self::default()
        }
    }

    /// No names at all (the feature switched off).
    pub fn none() -> Self {
        Self::default()
    }

    /// Add operator names (`name` or `*.suffix`); each must be a syntactically valid host name.
    pub fn with_extra<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, InvalidName> {
        for name in names {
            let invalid = |reason| InvalidName {
                name: name.to_owned(),
                reason,
            };
            let (wildcard, host) = match name.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, name),
            };
            validate_host_name(host).map_err(invalid)?;
            let host = canonical(host);
            if wildcard {
                self.suffixes.push(format!(".{host}"));
            } else {
                self.exact.insert(host);
            }
        }
        Ok(self)
    }

    /// Whether any name is listed at all.
    pub fn is_empty(&self) -> bool {
        !self.builtin && self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Why `name` is listed, if it is.
    pub fn kind(&self, name: &str) -> Option<DestinationKind> {
        if self.builtin
            && let Some(kind) = builtin_kind(name.as_bytes())
        {
            return Some(kind);
        }
        if self.exact.is_empty() && self.suffixes.is_empty() {
            return None;
        }
        let name = canonical(name);
        let listed = self.exact.contains(&name)
            || self
                .suffixes
                .iter()
                .any(|suffix| name.ends_with(suffix.as_str()));
        listed.then_some(DestinationKind::Infrastructure)
    }
}

/// RFC 1123 host-name syntax: labels of 1..=63 letters, digits and hyphens (not at either
/// end), separated by dots, 253 characters at most; one trailing dot allowed.
fn validate_host_name(name: &str) -> Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        {
            return Err("only letters, digits, hyphens and dots are allowed (and `*.` first)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with a hyphen");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_match_case_and_trailing_dot_insensitively() {
        let known = KnownDestinations::builtin();
        assert_eq!(
            known.kind("router.bittorrent.com"),
            Some(DestinationKind::Infrastructure)
        );
        assert_eq!(
            known.kind("DHT.Transmissionbt.COM."),
            Some(DestinationKind::Infrastructure)
        );
        assert_eq!(
            known.kind("tracker.opentrackr.org"),
            Some(DestinationKind::Infrastructure)
        );
        assert_eq!(
            known.kind("tracker.openwebtorrent.com"),
            Some(DestinationKind::WebTorrent)
        );
        for benign in [
            "bittorrent.com",
            "www.utorrent.com",
            "example.com",
            "router.bittorrent.com.evil.example",
            "xrouter.bittorrent.com",
            "",
        ] {
            assert_eq!(known.kind(benign), None, "{benign}");
        }
    }

    #[test]
    fn operator_names_exact_and_wildcard() {
        let known = KnownDestinations::none()
            .with_extra(["tracker.example.net", "*.swarm.example.org"])
            .unwrap();
        assert_eq!(
            known.kind("Tracker.Example.Net"),
            Some(DestinationKind::Infrastructure)
        );
        assert_eq!(
            known.kind("a.b.swarm.example.org"),
            Some(DestinationKind::Infrastructure)
        );
        assert_eq!(known.kind("swarm.example.org"), None);
        assert_eq!(known.kind("notswarm.example.org"), None);
        // Built-ins are off here.
        assert_eq!(known.kind("router.bittorrent.com"), None);
    }

    #[test]
    fn invalid_operator_names_are_refused_with_a_reason() {
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a_b.example",
            "*.",
            "*",
            "a.*.example",
            "é.example",
        ] {
            let error = KnownDestinations::none().with_extra([bad]).unwrap_err();
            assert_eq!(error.name, bad);
            assert!(!error.reason.is_empty());
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(
            KnownDestinations::none()
                .with_extra([long_label.as_str()])
                .is_err()
        );
    }

    #[test]
    fn none_matches_nothing() {
        assert!(KnownDestinations::none().is_empty());
        assert_eq!(
            KnownDestinations::none().kind("router.bittorrent.com"),
            None
        );
    }
}
