//! Destination policy: rules (CIDR, port ranges, domain suffixes; allow/deny) and the built-in
//! lateral-movement guard (loopback, private, link-local, CGNAT, multicast, cloud metadata
//! denied unless a rule allows them), plus the per-traffic-class action table.
//!
//! STUB: the API is fixed; the enforcement work fills in the rules. The server calls
//! [`DestinationPolicy::check_domain`] before resolving a name and
//! [`DestinationPolicy::check_address`] on the address it actually connects to (so DNS
//! rebinding cannot get around the guard).

use std::net::SocketAddr;

use swarmwall_core::classify::BtForm;

use crate::config::{ConfigError, PolicyConfig};

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
    /// A configured deny rule matched.
    Rule,
    /// The lateral-movement guard (private, loopback, metadata, ...).
    LateralMovement,
}

impl DenyReason {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::LateralMovement => "lateral_movement",
        }
    }
}

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

/// Validated destination rules and traffic-class actions.
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    extra_allow: Vec<ipnet::IpNet>,
}

impl DestinationPolicy {
    /// Build from the `[policy]` section plus `--allow-destination` CIDRs (allow rules placed
    /// ahead of the lateral-movement guard).
    pub fn new(config: &PolicyConfig, extra_allow: &[ipnet::IpNet]) -> Result<Self, ConfigError> {
        let _ = config;
        Ok(Self {
            extra_allow: extra_allow.to_vec(),
        })
    }

    /// Check a domain-name destination before resolving it (domain-suffix rules).
    pub fn check_domain(&self, domain: &str, port: u16) -> PolicyDecision {
        let _ = (domain, port);
        PolicyDecision::Allow
    }

    /// Check the address actually connected to (after DNS resolution). `domain` is the name the
    /// client asked for, if any.
    pub fn check_address(&self, address: SocketAddr, domain: Option<&str>) -> PolicyDecision {
        let _ = (address, domain, &self.extra_allow);
        PolicyDecision::Allow
    }

    /// The action for BitTorrent of `form` for `account` (per-account overrides apply).
    pub fn action_for(&self, form: BtForm, account: Option<&str>) -> TrafficAction {
        let _ = (form, account);
        TrafficAction::Block
    }
}
