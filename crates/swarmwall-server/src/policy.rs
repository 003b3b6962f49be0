//! Destination policy: rules (CIDR, port ranges, domain suffixes; allow/deny) and the built-in
//! lateral-movement guard (loopback, private, link-local, CGNAT, multicast, cloud metadata
//! denied unless a rule allows them), plus the per-traffic-class action table.
//!
//! The server calls [`DestinationPolicy::check_domain`] before resolving a name (an early
//! answer for domain rules, no DNS query for a name that is denied anyway) and
//! [`DestinationPolicy::check_address`] on the address it actually connects to, so DNS
//! rebinding cannot get around the guard.
//!
//! Evaluation order in [`DestinationPolicy::check_address`]:
//! 1. `[[policy.destinations]]` rules in file order, first match wins;
//! 2. `--allow-destination` networks (allow rules);
//! 3. the lateral-movement guard;
//! 4. `default_destination`.
//!
//! An allow rule lifts the guard only for the networks it names in `cidr`: an allow rule with
//! only `domains` or `ports` never lets a name resolve into a guarded network. Addresses are
//! checked in every form that reaches the same IPv4 host: IPv4-mapped (`::ffff:a.b.c.d`),
//! IPv4-compatible (`::a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::/96`),
//! 6to4 (`2002::/16`) and Teredo (`2001::/32`) all go through the IPv4 guard.
//!
//! The guard also covers every address of the proxy host's own interfaces (re-read every
//! [`host_addresses::REFRESH_INTERVAL`]), whatever network it is in: a customer must not reach
//! services the node binds to `0.0.0.0` through its public address.

pub mod host_addresses;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use swarmwall_core::classify::{BtForm, DestinationKind, KnownDestinations, MseStrictness};

use crate::config::normalized_domain;
pub use crate::config::{TrafficAction, normalize_domain};

use crate::config::{
    AccountPolicy, ConfigError, FormActions, MseStrictnessSetting, PolicyConfig, PortRange,
    RuleAction,
};

/// Outcome of a destination check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDecision {
    /// Connect.
    Allow,
    /// Refuse with SOCKS5 reply 0x02 (not allowed by ruleset).
    Deny(DenyReason),
}

/// Why a destination was refused (metrics label via [`DenyReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// A configured deny rule matched (or `default_destination = "deny"`).
    Rule,
    /// The lateral-movement guard (private, loopback, metadata, ...).
    LateralMovement,
    /// An address of the proxy host's own interfaces (part of the guard).
    OwnAddress,
}

impl DenyReason {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::LateralMovement => "lateral_movement",
            Self::OwnAddress => "own_address",
        }
    }
}

/// Validated destination rules and traffic-class actions.
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    rules: Vec<Rule>,
    extra_allow: Vec<IpNet>,
    default_action: RuleAction,
    actions: [TrafficAction; BtForm::ALL.len()],
    accounts: std::collections::BTreeMap<String, [TrafficAction; BtForm::ALL.len()]>,
    mse_strictness: MseStrictness,
    udp_teardown_after_blocks: u32,
    known_destinations: KnownDestinations,
}

/// One validated destination rule.
#[derive(Debug, Clone)]
struct Rule {
    action: RuleAction,
    networks: Vec<IpNet>,
    ports: Vec<PortRange>,
    domains: Vec<String>,
}

impl DestinationPolicy {
    /// Build from the `[policy]` section plus `--allow-destination` CIDRs (allow rules placed
    /// after the configured rules and ahead of the lateral-movement guard).
    pub fn new(config: &PolicyConfig, extra_allow: &[IpNet]) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(config.destinations.len());
        for (index, rule) in config.destinations.iter().enumerate() {
            if rule.cidr.is_empty() && rule.ports.is_empty() && rule.domains.is_empty() {
                return Err(ConfigError::Invalid {
                    path: "<config>".into(),
                    key: format!("policy.destinations[{index}]"),
                    message: "a rule needs at least one of `cidr`, `ports`, `domains`".into(),
                });
            }
            rules.push(Rule {
                action: rule.action,
                networks: rule.cidr.iter().map(IpNet::trunc).collect(),
                ports: rule.ports.clone(),
                domains: rule.domains.clone(),
            });
        }
        let global = resolve_actions(config.bittorrent, &config.forms);
        let accounts = config
            .accounts
            .iter()
            .map(|(name, account)| (name.clone(), account_actions(&global, account)))
            .collect();
        Ok(Self {
            rules,
            extra_allow: extra_allow.iter().map(IpNet::trunc).collect(),
            default_action: config.default_destination,
            actions: global,
            accounts,
            mse_strictness: match config.mse_strictness {
                MseStrictnessSetting::Off => MseStrictness::Off,
                MseStrictnessSetting::Corroborated => MseStrictness::Corroborated,
                MseStrictnessSetting::Aggressive => MseStrictness::Aggressive,
            },
            udp_teardown_after_blocks: config.udp_teardown_after_blocks,
            known_destinations: config.known_destinations.matcher(),
        })
    }

    /// The BitTorrent form a requested destination name shows (spec §1.13), if any: a DHT
    /// router or tracker name is `known_destination`, a WebTorrent tracker `webtorrent`.
    pub fn destination_form(&self, name: &str) -> Option<BtForm> {
        Some(match self.known_destinations.kind(name)? {
            DestinationKind::Infrastructure => BtForm::KnownDestination,
            DestinationKind::WebTorrent => BtForm::WebTorrent,
        })
    }

    /// Check a domain-name destination before resolving it (domain-suffix rules).
    ///
    /// Rules that name networks cannot be decided before resolution and are skipped here;
    /// [`Self::check_address`] is the authoritative check.
    pub fn check_domain(&self, domain: &str, port: u16) -> PolicyDecision {
        let domain = normalized_domain(domain);
        for rule in &self.rules {
            if !rule.networks.is_empty() {
                continue;
            }
            if rule.matches_port(port) && rule.matches_domain(Some(&domain)) {
                return match rule.action {
                    RuleAction::Deny => PolicyDecision::Deny(DenyReason::Rule),
                    // Still subject to the guard once resolved.
                    RuleAction::Allow => PolicyDecision::Allow,
                };
            }
        }
        PolicyDecision::Allow
    }

    /// Check the address actually connected to (after DNS resolution). `domain` is the name the
    /// client asked for, if any.
    pub fn check_address(&self, address: SocketAddr, domain: Option<&str>) -> PolicyDecision {
        let ip = address.ip();
        let canonical = ip.to_canonical();
        let domain = domain.map(normalized_domain);
        let guard = if is_guarded(ip) {
            Some(DenyReason::LateralMovement)
        } else if is_own_address(ip) {
            Some(DenyReason::OwnAddress)
        } else {
            None
        };
        let guarded = guard.is_some();
        for rule in &self.rules {
            let network_match = rule.networks.is_empty()
                || rule
                    .networks
                    .iter()
                    .any(|net| net.contains(&ip) || net.contains(&canonical));
            if !(network_match
                && rule.matches_port(address.port())
                && rule.matches_domain(domain.as_deref()))
            {
                continue;
            }
            return match rule.action {
                RuleAction::Deny => PolicyDecision::Deny(DenyReason::Rule),
                RuleAction::Allow if !rule.networks.is_empty() || !guarded => PolicyDecision::Allow,
                RuleAction::Allow => {
                    PolicyDecision::Deny(guard.unwrap_or(DenyReason::LateralMovement))
                }
            };
        }
        if self
            .extra_allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return PolicyDecision::Allow;
        }
        if let Some(reason) = guard {
            return PolicyDecision::Deny(reason);
        }
        match self.default_action {
            RuleAction::Allow => PolicyDecision::Allow,
            RuleAction::Deny => PolicyDecision::Deny(DenyReason::Rule),
        }
    }

    /// The action for BitTorrent of `form` for `account` (per-account overrides apply).
    ///
    /// Precedence: the account's per-form action, the account's `bittorrent`, the global
    /// per-form action, the global `bittorrent` (default `block`).
    pub fn action_for(&self, form: BtForm, account: Option<&str>) -> TrafficAction {
        let index = form_index(form);
        let table = account
            .and_then(|name| self.accounts.get(name))
            .unwrap_or(&self.actions);
        table.get(index).copied().unwrap_or_default()
    }

    /// The action for BitTorrent of `form` for `account` whose account record carries the
    /// override `record` (the `policy` field of the account, set through the admin API).
    ///
    /// Precedence: the record's per-form action, the record's `bittorrent`, then
    /// [`Self::action_for`] (`[policy.accounts.NAME]` per form and `bittorrent`, the global
    /// per-form action, the global `bittorrent`).
    pub fn action_with_override(
        &self,
        form: BtForm,
        account: Option<&str>,
        record: Option<&AccountPolicy>,
    ) -> TrafficAction {
        record
            .and_then(|record| form_override(&record.forms, form).or(record.bittorrent))
            .unwrap_or_else(|| self.action_for(form, account))
    }

    /// MSE heuristic strictness for the classifier's [`swarmwall_core::classify::FlowContext`].
    pub fn mse_strictness(&self) -> MseStrictness {
        self.mse_strictness
    }

    /// Close a UDP association after this many dropped BitTorrent datagrams (`None` = never).
    pub fn udp_teardown_after_blocks(&self) -> Option<u32> {
        (self.udp_teardown_after_blocks > 0).then_some(self.udp_teardown_after_blocks)
    }
}

impl Rule {
    fn matches_port(&self, port: u16) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|range| range.contains(port))
    }

    /// A rule without domains matches any destination; a rule with domains matches only a
    /// destination requested by a name under one of them.
    fn matches_domain(&self, domain: Option<&str>) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        let Some(domain) = domain else {
            return false;
        };
        self.domains.iter().any(|suffix| {
            domain == suffix
                || domain
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        })
    }
}

/// True when `ip` (in any of its IPv4-embedding forms) is a destination the lateral-movement
/// guard refuses: loopback, private, link-local, CGNAT, multicast, unspecified, broadcast,
/// reserved, documentation and cloud metadata addresses.
pub fn is_guarded(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_guarded_v4(v4),
        IpAddr::V6(v6) => is_guarded_v6(v6),
    }
}

/// True when `ip`, or an IPv4 address it embeds, is one of the proxy host's own addresses.
pub fn is_own_address(ip: IpAddr) -> bool {
    let canonical = ip.to_canonical();
    if host_addresses::is_host_address(canonical) {
        return true;
    }
    match canonical {
        IpAddr::V6(v6) => embedded_v4(v6)
            .into_iter()
            .any(|v4| host_addresses::is_host_address(IpAddr::V4(v4))),
        IpAddr::V4(_) => false,
    }
}

/// IPv4 networks the guard refuses.
const GUARDED_V4: &[(u8, u8, u8, u8, u8)] = &[
    (0, 0, 0, 0, 8),        // "this network", unspecified
    (10, 0, 0, 0, 8),       // RFC 1918
    (100, 64, 0, 0, 10),    // CGNAT (RFC 6598); also Alibaba metadata 100.100.100.200
    (127, 0, 0, 0, 8),      // loopback
    (169, 254, 0, 0, 16),   // link-local; AWS/GCP/Azure/OCI metadata 169.254.169.254
    (172, 16, 0, 0, 12),    // RFC 1918
    (192, 0, 0, 0, 24),     // IETF protocol assignments
    (192, 0, 2, 0, 24),     // documentation
    (192, 88, 99, 0, 24),   // deprecated 6to4 relay anycast
    (192, 168, 0, 0, 16),   // RFC 1918
    (198, 18, 0, 0, 15),    // benchmarking
    (198, 51, 100, 0, 24),  // documentation
    (203, 0, 113, 0, 24),   // documentation
    (224, 0, 0, 0, 4),      // multicast
    (240, 0, 0, 0, 4),      // reserved, incl. broadcast 255.255.255.255
    (168, 63, 129, 16, 32), // Azure WireServer / metadata (a public address)
];

/// IPv6 networks the guard refuses outright (IPv4-embedding prefixes are handled separately).
const GUARDED_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0x0064, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64 (RFC 8215)
    (Ipv6Addr::new(0x0100, 0, 0, 0, 0, 0, 0, 0), 64),      // discard-only
    (Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local; AWS metadata fd00:ec2::254
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

fn is_guarded_v4(ip: Ipv4Addr) -> bool {
    GUARDED_V4.iter().any(|&(a, b, c, d, prefix)| {
        Ipv4Net::new(Ipv4Addr::new(a, b, c, d), prefix).is_ok_and(|net| net.contains(&ip))
    })
}

fn is_guarded_v6(ip: Ipv6Addr) -> bool {
    if GUARDED_V6
        .iter()
        .any(|&(addr, prefix)| Ipv6Net::new(addr, prefix).is_ok_and(|net| net.contains(&ip)))
    {
        return true;
    }
    embedded_v4(ip).iter().any(|&v4| is_guarded_v4(v4))
}

/// The IPv4 addresses an IPv6 address reaches or names: mapped, compatible, translated,
/// NAT64 well-known prefix, 6to4, and Teredo (server and de-obfuscated client).
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let octets = ip.octets();
    let low = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    let mut found = Vec::new();
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (translated)
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        found.push(low);
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        found.push(low);
    }
    // 64:ff9b::/96 (NAT64, RFC 6052)
    if s[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        found.push(low);
    }
    // 2002:AABB:CCDD::/48 (6to4, RFC 3056)
    if s[0] == 0x2002 {
        found.push(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    // 2001:0000:SERVER:FLAGS:PORT:CLIENT (Teredo, RFC 4380; client address inverted)
    if s[0] == 0x2001 && s[1] == 0 {
        found.push(Ipv4Addr::new(octets[4], octets[5], octets[6], octets[7]));
        found.push(Ipv4Addr::new(
            !octets[12],
            !octets[13],
            !octets[14],
            !octets[15],
        ));
    }
    found
}

fn form_index(form: BtForm) -> usize {
    BtForm::ALL
        .iter()
        .position(|&candidate| candidate == form)
        .unwrap_or(0)
}

fn form_override(forms: &FormActions, form: BtForm) -> Option<TrafficAction> {
    match form {
        BtForm::PeerWire => forms.peer_wire,
        BtForm::PeerWireMessages => forms.peer_wire_messages,
        BtForm::Mse => forms.mse,
        BtForm::HttpTracker => forms.http_tracker,
        BtForm::WebSeed => forms.web_seed,
        BtForm::SslTorrent => forms.ssl_torrent,
        BtForm::WebTorrent => forms.webtorrent,
        BtForm::TorrentFile => forms.torrent_file,
        BtForm::Utp => forms.utp,
        BtForm::Dht => forms.dht,
        BtForm::UdpTracker => forms.udp_tracker,
        BtForm::Lsd => forms.lsd,
        BtForm::KnownDestination => forms.known_destination,
        // A form added later follows the `bittorrent` setting until it gets its own key.
        _ => None,
    }
}

/// Per-form table: `forms[form]`, else `base`.
fn resolve_actions(base: TrafficAction, forms: &FormActions) -> [TrafficAction; BtForm::ALL.len()] {
    BtForm::ALL.map(|form| form_override(forms, form).unwrap_or(base))
}

fn account_actions(
    global: &[TrafficAction; BtForm::ALL.len()],
    account: &AccountPolicy,
) -> [TrafficAction; BtForm::ALL.len()] {
    let mut table = *global;
    for (slot, form) in table.iter_mut().zip(BtForm::ALL) {
        if let Some(action) = form_override(&account.forms, form).or(account.bittorrent) {
            *slot = action;
        }
    }
    table
}

#[cfg(test)]
mod tests;
