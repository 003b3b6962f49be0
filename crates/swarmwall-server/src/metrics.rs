//! Prometheus metrics for the whole process (prometheus-client). Every counter is aggregated:
//! labels name commands, forms, reasons and outcomes, never accounts or addresses.
//!
//! One [`Metrics`] value is created at start-up and shared (`Arc`) by the listener, sessions,
//! auth, store and admin surface; `/metrics` encodes [`Metrics::registry`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::sharded_counter::ShardedCounter;

/// Label set with one `command` label (`connect`, `bind`, `udp_associate`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// SOCKS5 command.
    pub command: &'static str,
}

/// Label set with one `direction` label (`client_to_target`, `target_to_client`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// Direction of the bytes.
    pub direction: &'static str,
}

/// The `reason` values of `swarmwall_mse_rules_total` (docs/detection.md, "Rules").
pub const MSE_RULES: [&str; 8] = [
    "handshake_in_flight3",
    "handshake_in_flight5",
    "coalesced_first_block",
    "coalesced_bare_reply",
    "coalesced_control_message",
    "corroborated",
    "fan_out_wait",
    "aggressive",
];

/// Classifier verdict labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// `bittorrent`, `benign` or `unknown`.
    pub class: &'static str,
    /// The BitTorrent form or benign protocol (`peer_wire`, `tls`, ...; `unknown`).
    pub label: &'static str,
}

/// Block labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabels {
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// BitTorrent form.
    pub form: &'static str,
}

/// A single `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (a fixed, documented set of values per metric).
    pub reason: &'static str,
}

/// Authentication result labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `success` or `failure`.
    pub result: &'static str,
    /// `ok`, `bad_credentials`, `totp_required`, `totp_replay`, `locked_out`, `geo_denied`,
    /// `impossible_travel`, `disabled`, `suspended`, `store_unavailable`, `overloaded`.
    pub reason: &'static str,
}

/// A single `kind` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Which kind (a fixed, documented set of values per metric).
    pub kind: &'static str,
}

/// UDP datagram outcome labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatagramLabels {
    /// `client_to_target` or `target_to_client`.
    pub direction: &'static str,
    /// `relayed`, `dropped_bittorrent`, `dropped_fragment`, `dropped_foreign_source`,
    /// `dropped_policy`, `dropped_malformed`.
    pub outcome: &'static str,
}

/// A single `result` label (`ok`, `error`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Outcome.
    pub result: &'static str,
}

/// A single `operation` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// Store operation kind.
    pub operation: &'static str,
}

/// Labels of a store value that failed its integrity check.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgedLabels {
    /// Store namespace (`lockout_account`, `trusted_window`, ...).
    pub namespace: &'static str,
    /// `edited` (wrong or missing MAC) or `deleted` (gone while this node knew it active).
    pub kind: &'static str,
}

/// Admin action labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminActionLabels {
    /// `clear_strikes`, `suspend`, `unsuspend`, `unlock` or `reload`.
    pub action: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// All metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions currently open.
    pub sessions_active: Gauge,
    /// Sessions accepted, by command (counted once the request is parsed).
    pub sessions_total: Family<CommandLabels, Counter>,
    /// Sessions refused before or at the request, by reason (`limit`, `handshake_timeout`,
    /// `bad_handshake`, `auth`, `policy`, `suspended`, ...).
    pub sessions_refused: Family<ReasonLabels, Counter>,
    /// Payload bytes relayed, by direction.
    pub bytes: Family<DirectionLabels, ShardedCounter>,
    /// Classifier verdicts.
    pub verdicts: Family<VerdictLabels, Counter>,
    /// Flows or datagrams blocked as BitTorrent.
    pub blocks: Family<BlockLabels, Counter>,
    /// TCP `mse` verdicts by the rule that gave them (`reason`: `handshake_in_flight3`,
    /// `handshake_in_flight5`, `coalesced_first_block`, `coalesced_bare_reply`,
    /// `coalesced_control_message`, `corroborated`, `fan_out_wait`, `aggressive`;
    /// docs/detection.md).
    pub mse_rules: Family<ReasonLabels, Counter>,
    /// Strike incidents recorded (graduated response).
    pub strikes: Counter,
    /// Suspensions started, by `reason` (`short`, `long`, `admin`).
    pub suspensions: Family<ReasonLabels, Counter>,
    /// Authentication results.
    pub auth_results: Family<AuthLabels, Counter>,
    /// Lockouts started, by `reason` (`account`, `client_address`).
    pub lockouts: Family<ReasonLabels, Counter>,
    /// Password checks by `kind`: `argon2` (a full verification on the hashing pool) or
    /// `remembered` (recognised by the verification memory, no argon2).
    pub auth_verifications: Family<KindLabels, Counter>,
    /// Geo policy denials.
    pub geo_denials: Counter,
    /// Impossible-travel detections, by `reason` (`alert`, `deny`).
    pub impossible_travel: Family<ReasonLabels, Counter>,
    /// UDP datagrams by direction and outcome.
    pub udp_datagrams: Family<DatagramLabels, ShardedCounter>,
    /// Time from accept to a parsed request, seconds.
    pub handshake_duration: Histogram,
    /// Time to connect to the target, seconds.
    pub connect_duration: Histogram,
    /// Bytes the classifier needed before a final verdict (both directions together).
    pub classifier_decision_bytes: Histogram,
    /// Configuration reloads by `result`.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Store operations that failed or timed out, by operation.
    pub store_errors: Family<OperationLabels, Counter>,
    /// 1 while the state store answers, 0 while it does not.
    pub store_up: Gauge,
    /// Redis values that failed their integrity check (forged, edited or deleted by hand).
    pub store_forged_values: Family<ForgedLabels, Counter>,
    /// Store operations answered from node-local state during an outage (`on_outage = local`).
    pub store_local_operations: Family<OperationLabels, Counter>,
    /// Monitor: our own egress address seen in a watched swarm.
    pub monitor_leaks: Counter,
    /// Admin API requests refused for a missing or wrong bearer token.
    pub admin_auth_failures: Counter,
    /// Admin actions performed through the API, by `action` (`clear_strikes`, `suspend`,
    /// `unsuspend`, `unlock`, `reload`) and `result` (`ok`, `error`).
    pub admin_actions: Family<AdminActionLabels, Counter>,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("swarmwall");
        let metrics = Self {
            sessions_active: Gauge::default(),
            sessions_total: Family::default(),
            sessions_refused: Family::default(),
            bytes: Family::default(),
            verdicts: Family::default(),
            blocks: Family::default(),
            mse_rules: Family::default(),
            strikes: Counter::default(),
            suspensions: Family::default(),
            auth_results: Family::default(),
            lockouts: Family::default(),
            auth_verifications: Family::default(),
            geo_denials: Counter::default(),
            impossible_travel: Family::default(),
            udp_datagrams: Family::default(),
            handshake_duration: Histogram::new(exponential_buckets(0.000_1, 4.0, 10)),
            connect_duration: Histogram::new(exponential_buckets(0.000_1, 4.0, 10)),
            classifier_decision_bytes: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            config_reloads: Family::default(),
            store_errors: Family::default(),
            store_up: Gauge::default(),
            store_forged_values: Family::default(),
            store_local_operations: Family::default(),
            monitor_leaks: Counter::default(),
            admin_auth_failures: Counter::default(),
            admin_actions: Family::default(),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register(
            "sessions_active",
            "Sessions currently open",
            m.sessions_active.clone(),
        );
        registry.register(
            "sessions",
            "Sessions accepted, by command",
            m.sessions_total.clone(),
        );
        registry.register(
            "sessions_refused",
            "Sessions refused, by reason",
            m.sessions_refused.clone(),
        );
        registry.register_with_unit(
            "relay",
            "Payload bytes relayed, by direction",
            Unit::Bytes,
            m.bytes.clone(),
        );
        registry.register("verdicts", "Classifier verdicts", m.verdicts.clone());
        registry.register(
            "mse_rules",
            "TCP MSE verdicts by the rule that gave them",
            m.mse_rules.clone(),
        );
        registry.register(
            "blocks",
            "Flows or datagrams blocked as BitTorrent",
            m.blocks.clone(),
        );
        registry.register("strikes", "Strike incidents recorded", m.strikes.clone());
        registry.register("suspensions", "Suspensions started", m.suspensions.clone());
        registry.register(
            "auth_results",
            "Authentication results",
            m.auth_results.clone(),
        );
        registry.register("lockouts", "Lockouts started", m.lockouts.clone());
        registry.register(
            "auth_verifications",
            "Password checks, by kind (argon2, remembered)",
            m.auth_verifications.clone(),
        );
        registry.register(
            "geo_denials",
            "Logins denied by geo policy",
            m.geo_denials.clone(),
        );
        registry.register(
            "impossible_travel",
            "Impossible-travel detections",
            m.impossible_travel.clone(),
        );
        registry.register(
            "udp_datagrams",
            "UDP datagrams by outcome",
            m.udp_datagrams.clone(),
        );
        registry.register_with_unit(
            "handshake_duration",
            "Time from accept to a parsed SOCKS5 request",
            Unit::Seconds,
            m.handshake_duration.clone(),
        );
        registry.register_with_unit(
            "connect_duration",
            "Time to connect to the target",
            Unit::Seconds,
            m.connect_duration.clone(),
        );
        registry.register_with_unit(
            "classifier_decision",
            "Bytes inspected before a final verdict",
            Unit::Bytes,
            m.classifier_decision_bytes.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads",
            m.config_reloads.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations",
            m.store_errors.clone(),
        );
        registry.register(
            "store_up",
            "1 while the state store answers",
            m.store_up.clone(),
        );
        registry.register(
            "store_forged_values",
            "Redis values rejected by their integrity check (forged, edited, deleted)",
            m.store_forged_values.clone(),
        );
        registry.register(
            "store_local_operations",
            "Store operations answered from node-local state during an outage",
            m.store_local_operations.clone(),
        );
        registry.register(
            "monitor_leaks",
            "Own egress addresses seen in watched swarms",
            m.monitor_leaks.clone(),
        );
        registry.register(
            "admin_auth_failures",
            "Admin requests refused for a missing or wrong token",
            m.admin_auth_failures.clone(),
        );
        registry.register(
            "admin_actions",
            "Admin actions performed through the API",
            m.admin_actions.clone(),
        );
        let metrics = Self {
            registry,
            ..metrics
        };
        metrics.initialise_series();
        metrics
    }

    /// Create the label sets known in advance at zero, so that every series exists from the
    /// first scrape (`rate()` and dashboards need a zero before the first event).
    fn initialise_series(&self) {
        use swarmwall_core::classify::BtForm;
        for command in ["connect", "bind", "udp_associate"] {
            let _ = self
                .sessions_total
                .get_or_create(&CommandLabels { command });
        }
        for direction in ["client_to_target", "target_to_client"] {
            let _ = self.bytes.get_or_create(&DirectionLabels { direction });
        }
        for form in BtForm::ALL {
            let transport = match form {
                BtForm::Utp | BtForm::Dht | BtForm::UdpTracker | BtForm::Lsd => "udp",
                _ => "tcp",
            };
            let form = form.as_str();
            let _ = self.blocks.get_or_create(&BlockLabels { transport, form });
        }
        for reason in MSE_RULES {
            let _ = self.mse_rules.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["short", "long", "admin"] {
            let _ = self.suspensions.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["account", "client_address"] {
            let _ = self.lockouts.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["alert", "deny"] {
            let _ = self
                .impossible_travel
                .get_or_create(&ReasonLabels { reason });
        }
        for kind in ["argon2", "remembered"] {
            let _ = self.auth_verifications.get_or_create(&KindLabels { kind });
        }
        for (result, reason) in [
            ("success", "ok"),
            ("failure", "bad_credentials"),
            ("failure", "locked_out"),
            ("failure", "overloaded"),
        ] {
            let _ = self
                .auth_results
                .get_or_create(&AuthLabels { result, reason });
        }
        for result in ["ok", "error"] {
            let _ = self.config_reloads.get_or_create(&ResultLabels { result });
        }
    }

    /// The registry to encode for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Encode every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
