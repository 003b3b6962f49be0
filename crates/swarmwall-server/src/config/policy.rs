//! The `[policy]` section of the configuration file: traffic-class actions (globally and per
//! account), destination rules, MSE strictness, UDP teardown and the graduated response
//! (`[policy.strikes]`). Validated into [`crate::policy::DestinationPolicy`] and
//! [`crate::strikes::StrikesConfig`].
//!
//! Values that can be wrong (CIDRs, port ranges, durations, form names) are checked while
//! parsing, so the TOML error names the file, line, column and key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// What to do with a flow of a traffic class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficAction {
    /// Close the flow (TCP) or drop the datagram (UDP), count it, strike the account.
    #[default]
    Block,
    /// Count it and let it through.
    Log,
    /// Let it through silently (still counted in verdict metrics).
    Allow,
}

/// A domain name as rules compare it: lower-case, without a trailing dot.
pub fn normalize_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// [`normalize_domain`] without an allocation when the name is already in normal form (the
/// UDP relay checks a name per datagram).
pub fn normalized_domain(domain: &str) -> std::borrow::Cow<'_, str> {
    if domain.ends_with('.') || domain.bytes().any(|byte| byte.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(normalize_domain(domain))
    } else {
        std::borrow::Cow::Borrowed(domain)
    }
}

/// `[policy]` keys (see docs/configuration.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Action for every BitTorrent form (default `block`).
    pub bittorrent: TrafficAction,
    /// Per-form overrides of `bittorrent` (`[policy.forms]`, e.g. `dht = "log"`).
    pub forms: FormActions,
    /// Per-account overrides (`[policy.accounts.NAME]`).
    pub accounts: BTreeMap<String, AccountPolicy>,
    /// How far the MSE (encrypted BitTorrent) heuristic may go on its own.
    pub mse_strictness: MseStrictnessSetting,
    /// Close a UDP association after this many BitTorrent datagrams were dropped on it
    /// (0 = never; dropped datagrams are always counted).
    pub udp_teardown_after_blocks: u32,
    /// Destination rules, first match wins (`[[policy.destinations]]`).
    pub destinations: Vec<DestinationRule>,
    /// What happens to a destination no rule matched and the guard did not deny.
    pub default_destination: RuleAction,
    /// Graduated response (`[policy.strikes]`).
    pub strikes: StrikesSettings,
    /// Destination names known as BitTorrent infrastructure (`[policy.known_destinations]`).
    pub known_destinations: KnownDestinationsConfig,
}

/// `[policy.known_destinations]`: names of DHT routers and trackers (spec §1.13). A SOCKS5
/// request for such a name (CONNECT, or a UDP datagram) is the `known_destination` form, acted
/// on like every other form (`[policy.forms] known_destination`, default: the `bittorrent`
/// action).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnownDestinationsConfig {
    /// Use the built-in lists (DHT bootstrap routers, public and WebTorrent trackers).
    pub builtin: bool,
    /// The operator's own names: `host.example` (exactly) or `*.example` (every name under it).
    #[serde(deserialize_with = "deserialize_host_names")]
    pub extra: Vec<String>,
}

impl Default for KnownDestinationsConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            extra: Vec::new(),
        }
    }
}

impl KnownDestinationsConfig {
    /// The matcher these settings describe (names were validated when parsed).
    pub fn matcher(&self) -> swarmwall_core::classify::KnownDestinations {
        let base = if self.builtin {
            swarmwall_core::classify::KnownDestinations::builtin()
        } else {
            swarmwall_core::classify::KnownDestinations::none()
        };
        let extra = self.extra.iter().map(String::as_str);
        base.clone().with_extra(extra).unwrap_or(base)
    }
}

fn deserialize_host_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let names = OneOrMany::<String>::deserialize(deserializer)?.into_vec();
    swarmwall_core::classify::KnownDestinations::none()
        .with_extra(names.iter().map(String::as_str))
        .map_err(|error| {
            serde::de::Error::custom(format!(
                "{error} (expected a host name such as tracker.example.net or *.example.net)"
            ))
        })?;
    Ok(names)
}

/// `[policy.accounts.NAME]`: overrides for one account. The same shape is the `policy` field
/// of an account record (accounts file, state store, admin API), which takes precedence over
/// the configuration file (see [`crate::policy::DestinationPolicy::action_for`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountPolicy {
    /// Action for every BitTorrent form for this account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bittorrent: Option<TrafficAction>,
    /// Per-form overrides for this account.
    #[serde(skip_serializing_if = "FormActions::is_empty")]
    pub forms: FormActions,
}

/// A bad value in a JSON policy override: the field path (`policy.forms.xyz`) and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct PolicyFieldError {
    /// Dotted path of the field, starting at `policy`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Longest key quoted back in a [`PolicyFieldError`] (a longer one is cut).
const MAX_QUOTED_KEY: usize = 64;

impl AccountPolicy {
    /// True when it overrides nothing.
    pub fn is_empty(&self) -> bool {
        self.bittorrent.is_none() && self.forms.is_empty()
    }

    /// Parse the JSON shape of `[policy.accounts.NAME]` (`{"bittorrent": "allow", "forms":
    /// {"mse": "block"}}`), naming the first bad field (`policy.forms.xyz`). A `null` action
    /// means "no override" for that key.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, PolicyFieldError> {
        let fail = |field: String, message: &str| PolicyFieldError {
            field,
            message: message.to_owned(),
        };
        let object = value.as_object().ok_or_else(|| {
            fail(
                "policy".to_owned(),
                "an object such as {\"bittorrent\": \"allow\", \"forms\": {\"mse\": \"block\"}} or null",
            )
        })?;
        let mut policy = Self::default();
        for (key, value) in object {
            match key.as_str() {
                "bittorrent" => {
                    policy.bittorrent = parse_action(value)
                        .map_err(|message| fail("policy.bittorrent".to_owned(), message))?;
                }
                "forms" => {
                    if value.is_null() {
                        continue;
                    }
                    let forms = value.as_object().ok_or_else(|| {
                        fail(
                            "policy.forms".to_owned(),
                            "an object of form name → action, such as {\"mse\": \"block\"}",
                        )
                    })?;
                    for (form, action) in forms {
                        let field = format!("policy.forms.{}", quoted_key(form));
                        let slot = policy.forms.slot_mut(form).ok_or_else(|| {
                            fail(
                                field.clone(),
                                &format!("unknown form; one of {}", form_list()),
                            )
                        })?;
                        *slot = parse_action(action).map_err(|message| fail(field, message))?;
                    }
                }
                other => {
                    return Err(fail(
                        format!("policy.{}", quoted_key(other)),
                        "unknown field; `bittorrent` and `forms` are accepted",
                    ));
                }
            }
        }
        Ok(policy)
    }
}

/// `block`, `log`, `allow` or null.
fn parse_action(value: &serde_json::Value) -> Result<Option<TrafficAction>, &'static str> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => match text.as_str() {
            "block" => Ok(Some(TrafficAction::Block)),
            "log" => Ok(Some(TrafficAction::Log)),
            "allow" => Ok(Some(TrafficAction::Allow)),
            _ => Err("unknown action; one of `block`, `log`, `allow`"),
        },
        _ => Err("an action: `block`, `log` or `allow`"),
    }
}

/// `key` as it may be echoed in an error: at most [`MAX_QUOTED_KEY`] characters.
fn quoted_key(key: &str) -> String {
    if key.chars().count() <= MAX_QUOTED_KEY {
        key.to_owned()
    } else {
        let mut cut: String = key.chars().take(MAX_QUOTED_KEY).collect();
        cut.push('…');
        cut
    }
}

/// The form labels, for error messages.
fn form_list() -> String {
    swarmwall_core::classify::BtForm::ALL
        .iter()
        .map(|form| format!("`{}`", form.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One optional action per BitTorrent form; keys are the form labels of
/// [`swarmwall_core::classify::BtForm::as_str`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // one field per `BtForm`, documented there
pub struct FormActions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_wire: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_wire_messages: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_tracker: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_seed: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_torrent: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webtorrent: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torrent_file: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utp: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dht: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_tracker: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsd: Option<TrafficAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_destination: Option<TrafficAction>,
}

impl FormActions {
    /// True when no form has an action.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The slot of the form labelled `label` (`mse`, `dht`, ...); `None` for an unknown label.
    pub fn slot_mut(&mut self, label: &str) -> Option<&mut Option<TrafficAction>> {
        Some(match label {
            "peer_wire" => &mut self.peer_wire,
            "peer_wire_messages" => &mut self.peer_wire_messages,
            "mse" => &mut self.mse,
            "http_tracker" => &mut self.http_tracker,
            "web_seed" => &mut self.web_seed,
            "ssl_torrent" => &mut self.ssl_torrent,
            "webtorrent" => &mut self.webtorrent,
            "torrent_file" => &mut self.torrent_file,
            "utp" => &mut self.utp,
            "dht" => &mut self.dht,
            "udp_tracker" => &mut self.udp_tracker,
            "lsd" => &mut self.lsd,
            "known_destination" => &mut self.known_destination,
            _ => return None,
        })
    }
}

/// `mse_strictness` values (mirrors `swarmwall_core::classify::MseStrictness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MseStrictnessSetting {
    /// Never block on the MSE shape alone.
    Off,
    /// Block MSE-shaped flows only with corroborating BitTorrent evidence (default).
    #[default]
    Corroborated,
    /// Block every MSE-shaped flow.
    Aggressive,
}

/// Allow or deny (destination rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Connect.
    #[default]
    Allow,
    /// Refuse (SOCKS5 reply 0x02).
    Deny,
}

/// `[[policy.destinations]]`: a rule matches when every criterion it names matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRule {
    /// `allow` or `deny`.
    pub action: RuleAction,
    /// Networks (`10.0.0.0/8`, `2001:db8::/32`, or a bare address).
    #[serde(default, deserialize_with = "deserialize_networks")]
    pub cidr: Vec<ipnet::IpNet>,
    /// Destination ports (`443`, `"8000-9000"`).
    #[serde(default)]
    pub ports: Vec<PortRange>,
    /// Domain suffixes (`example.com` matches it and every subdomain).
    #[serde(default, deserialize_with = "deserialize_domains")]
    pub domains: Vec<String>,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// True when `port` lies in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// `[policy.strikes]`: graduated response (see docs/enforcement.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrikesSettings {
    /// Off: blocks are still enforced and counted, accounts are never suspended.
    pub enabled: bool,
    /// Blocked flows within this long of an incident's first block are the same incident.
    #[serde(with = "humantime_serde")]
    pub burst_window: Duration,
    /// Incidents within `window` that earn a warning.
    pub warn_incidents: u32,
    /// Incidents within `window` that earn the short suspension.
    pub suspend_incidents: u32,
    /// The short sliding window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Length of the short suspension.
    #[serde(with = "humantime_serde")]
    pub suspend_for: Duration,
    /// Incidents within `long_window` that earn the long suspension.
    pub long_suspend_incidents: u32,
    /// The long sliding window.
    #[serde(with = "humantime_serde")]
    pub long_window: Duration,
    /// Length of the long suspension.
    #[serde(with = "humantime_serde")]
    pub long_suspend_for: Duration,
}

impl Default for StrikesSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            burst_window: Duration::from_secs(5),
            warn_incidents: 2,
            suspend_incidents: 3,
            window: Duration::from_secs(10 * 60),
            suspend_for: Duration::from_secs(10 * 60),
            long_suspend_incidents: 10,
            long_window: Duration::from_secs(24 * 60 * 60),
            long_suspend_for: Duration::from_secs(24 * 60 * 60),
        }
    }
}

fn deserialize_networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts = OneOrMany::<String>::deserialize(deserializer)?.into_vec();
    texts
        .iter()
        .map(|text| parse_network(text).map_err(serde::de::Error::custom))
        .collect()
}

/// A `[policy]` network or port value that does not parse (the message names the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyValueError {
    /// Neither a CIDR nor an address.
    #[error("`{0}` is not a network (CIDR such as 10.0.0.0/8) or address")]
    Network(String),
    /// Neither a port nor `FIRST-LAST`.
    #[error("`{0}` is not a port or port range (such as 8000-9000)")]
    Port(String),
    /// `FIRST-LAST` with `FIRST > LAST`.
    #[error("port range `{0}` ends before it starts")]
    ReversedRange(String),
}

/// Parse `a.b.c.d/n`, `x::/n` or a bare address (a single-address network).
pub(crate) fn parse_network(text: &str) -> Result<ipnet::IpNet, PolicyValueError> {
    let text = text.trim();
    if let Ok(network) = text.parse::<ipnet::IpNet>() {
        return Ok(network.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| PolicyValueError::Network(text.to_owned()))
}

fn deserialize_domains<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let texts = OneOrMany::<String>::deserialize(deserializer)?.into_vec();
    texts
        .iter()
        .map(|text| {
            let domain = normalize_domain(text.trim_start_matches("*.").trim_start_matches('.'));
            if domain.is_empty()
                || !domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                Err(serde::de::Error::custom(format!(
                    "`{text}` is not a domain suffix (such as example.com)"
                )))
            } else {
                Ok(domain)
            }
        })
        .collect()
}

/// A single value or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(value) => vec![value],
            Self::Many(values) => values,
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PortRange;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (443) or an inclusive range (\"8000-9000\")")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<PortRange, E> {
                let port = u16::try_from(value)
                    .map_err(|_| E::custom(format!("port {value} is out of range 0-65535")))?;
                Ok(PortRange {
                    first: port,
                    last: port,
                })
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<PortRange, E> {
                self.visit_i64(i64::try_from(value).unwrap_or(i64::MAX))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PortRange, E> {
                parse_port_range(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parse `443` or `8000-9000`.
pub(crate) fn parse_port_range(text: &str) -> Result<PortRange, PolicyValueError> {
    let port = |part: &str| {
        part.trim()
            .parse::<u16>()
            .map_err(|_| PolicyValueError::Port(text.to_owned()))
    };
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (port(first)?, port(last)?),
        None => {
            let single = port(text)?;
            (single, single)
        }
    };
    if first > last {
        return Err(PolicyValueError::ReversedRange(text.to_owned()));
    }
    Ok(PortRange { first, last })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// A name already in normal form is borrowed; any other comes out as `normalize_domain`
    /// makes it.
    #[test]
    fn normalized_domain_borrows_only_names_already_normal() {
        use std::borrow::Cow;
        assert!(matches!(
            super::normalized_domain("tracker.example"),
            Cow::Borrowed("tracker.example")
        ));
        for name in [
            "Tracker.Example",
            "tracker.example.",
            "TRACKER.EXAMPLE..",
            "",
        ] {
            let normalized = super::normalized_domain(name);
            assert_eq!(normalized, super::normalize_domain(name), "{name}");
            assert_eq!(
                matches!(normalized, Cow::Owned(_)),
                !name.is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn full_policy_section_parses() {
        let config = Config::parse(
            r#"
[policy]
bittorrent = "block"
mse_strictness = "aggressive"
udp_teardown_after_blocks = 20
default_destination = "allow"
[policy.forms]
dht = "log"
[policy.accounts.alice]
bittorrent = "allow"
forms = { mse = "block" }
[[policy.destinations]]
action = "allow"
cidr = ["10.1.0.0/16", "192.168.1.7"]
ports = [443, "8000-8080"]
[[policy.destinations]]
action = "deny"
domains = "*.Example.COM."
[policy.strikes]
burst_window = "2s"
suspend_for = "1h"
"#,
            Path::new("p.toml"),
        )
        .unwrap();
        let policy = config.policy;
        assert_eq!(policy.destinations.len(), 2);
        assert_eq!(policy.destinations[1].domains, vec!["example.com"]);
        assert_eq!(policy.destinations[0].cidr[1].to_string(), "192.168.1.7/32");
        assert_eq!(policy.strikes.burst_window.as_secs(), 2);
        assert_eq!(policy.strikes.suspend_for.as_secs(), 3600);
        assert!(policy.accounts.contains_key("alice"));
    }

    #[test]
    fn bad_values_are_located() {
        for (text, line) in [
            ("[policy]\nbittorrent = \"drop\"\n", 2),
            ("[policy.forms]\ndhtt = \"log\"\n", 2),
            (
                "[[policy.destinations]]\naction = \"deny\"\ncidr = \"10.0.0.0/33\"\n",
                3,
            ),
            (
                "[[policy.destinations]]\naction = \"deny\"\nports = [\"90-80\"]\n",
                3,
            ),
            (
                "[[policy.destinations]]\naction = \"deny\"\nports = [70000]\n",
                3,
            ),
            ("[policy.strikes]\nwindow = \"ten minutes\"\n", 2),
        ] {
            let error = Config::parse(text, Path::new("p.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("p.toml:{line}:")),
                "{text}: {error}"
            );
        }
    }
}
