//! The `[server]` section of the configuration file: listener, limits, timeouts, relay.
//!
//! Two layers as everywhere in `config`: [`ServerConfig`] mirrors the TOML (unknown keys are
//! rejected, every key has a secure default) and [`ServerConfig::validate`] refuses values that
//! parse but make no sense, naming the file, line and key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[server]` keys (see docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the SOCKS5 listener binds (`--listen` overrides). Default `127.0.0.1:1080`.
    pub listen: SocketAddr,
    /// Accounts file (`--accounts` overrides). With accounts, RFC 1929 auth is required.
    pub accounts: Option<PathBuf>,
    /// Allow a non-loopback listener without authentication (an open proxy). Default false.
    pub danger_allow_public_listen_without_auth: bool,
    /// Skip the inspect phase on TCP sessions: every CONNECT/BIND goes straight to the fast
    /// path, so BitTorrent over TCP is NOT blocked. For benchmarks (the "plain relay" baseline)
    /// and troubleshooting only; UDP datagrams are still classified.
    pub danger_disable_inspection: bool,
    /// Time allowed from accept to a complete request (greeting, auth, request).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time allowed to resolve and connect to the destination.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A relayed TCP session with no bytes either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A UDP association with no datagram either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub udp_idle_timeout: Duration,
    /// After relaying datagrams, a UDP association keeps polling its sockets (yielding to the
    /// other sessions of its thread) for this long before it sleeps: on hosts where waking an
    /// idle core is slow, a busy association then never waits for that wake-up. Costs CPU for
    /// up to this long after every burst. 0 = off (the default); at most 1 ms.
    #[serde(with = "humantime_serde")]
    pub udp_busy_poll: Duration,
    /// BIND: how long to wait for the incoming connection.
    #[serde(with = "humantime_serde")]
    pub bind_timeout: Duration,
    /// Longest inspect phase; after it the flow counts as "gave up" and takes the fast path.
    #[serde(with = "humantime_serde")]
    pub inspect_timeout: Duration,
    /// On SIGTERM/SIGINT, how long open sessions may drain before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Most sessions open at once; further connections are closed at accept.
    pub max_sessions: u32,
    /// Most sessions open at once per account (0 = no per-account limit).
    pub max_sessions_per_account: u32,
    /// Most remote endpoints tracked per UDP association (one classifier state each).
    pub max_udp_flows_per_association: u32,
    /// Tear a UDP association down after this many BitTorrent datagrams (0 = never).
    pub udp_teardown_after_blocks: u32,
    /// Relay buffer per direction while data flows (bytes); released when idle.
    pub relay_buffer_bytes: u32,
    /// Peers allowed to send a PROXY protocol v1/v2 header (load balancers), as CIDRs.
    pub proxy_protocol_trusted: Vec<ipnet::IpNet>,
    /// How relayed bytes are moved after the inspect phase.
    pub fast_path: FastPath,
    /// How SOCKS5 sessions are scheduled over threads (start-only).
    pub runtime: RuntimeLayout,
}

/// The session runtime layout (`server.runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeLayout {
    /// One single-threaded runtime per core the process may run on, each accepting on its own
    /// `SO_REUSEPORT` listener: a session lives on one thread from accept to close (no
    /// work-stealing hops, no cross-thread wake-ups on the message path).
    #[default]
    PerCore,
    /// One work-stealing multi-threaded runtime for everything (one listener).
    MultiThread,
}

/// The fast-path implementation (`server.fast_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FastPath {
    /// Copy first; a direction that has moved `fast_path::SPLICE_AFTER` bytes (bulk) switches to
    /// `splice`. Short exchanges never pay for a pipe, bulk transfers skip the user-space copy.
    #[default]
    Auto,
    /// Readiness-driven copy through a user-space buffer held only while data flows.
    Copy,
    /// Linux `splice(2)` through a pipe per direction (created on the first byte).
    Splice,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1080),
            accounts: None,
            danger_allow_public_listen_without_auth: false,
            danger_disable_inspection: false,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            udp_idle_timeout: Duration::from_secs(120),
            udp_busy_poll: Duration::ZERO,
            bind_timeout: Duration::from_secs(60),
            inspect_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_sessions: 10_000,
            max_sessions_per_account: 0,
            max_udp_flows_per_association: 1_024,
            udp_teardown_after_blocks: 0,
            relay_buffer_bytes: 32 * 1024,
            proxy_protocol_trusted: Vec::new(),
            fast_path: FastPath::Auto,
            runtime: RuntimeLayout::PerCore,
        }
    }
}

impl ServerConfig {
    /// Refuse values that parse but cannot work. `text` is the file's content (used to find
    /// the line of the offending key); `path` names the file in the error.
    pub fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let durations = [
            ("handshake_timeout", self.handshake_timeout),
            ("connect_timeout", self.connect_timeout),
            ("idle_timeout", self.idle_timeout),
            ("udp_idle_timeout", self.udp_idle_timeout),
            ("bind_timeout", self.bind_timeout),
            ("inspect_timeout", self.inspect_timeout),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err(invalid(text, path, key, "must be greater than zero"));
            }
        }
        if self.max_sessions == 0 {
            return Err(invalid(text, path, "max_sessions", "must be at least 1"));
        }
        if self.udp_busy_poll > Duration::from_millis(1) {
            return Err(invalid(text, path, "udp_busy_poll", "must be at most 1ms"));
        }
        if self.max_udp_flows_per_association == 0 {
            return Err(invalid(
                text,
                path,
                "max_udp_flows_per_association",
                "must be at least 1",
            ));
        }
        if !(1024..=1024 * 1024).contains(&self.relay_buffer_bytes) {
            return Err(invalid(
                text,
                path,
                "relay_buffer_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        Ok(())
    }
}

/// A validation error for `server.<key>`, located at the key's line when the key is in `text`.
fn invalid(text: &str, path: &Path, key: &str, message: &str) -> ConfigError {
    match locate_key(text, "server", key) {
        Some(line) => ConfigError::Parse {
            path: path.to_owned(),
            line,
            column: 1,
            message: format!("key `server.{key}`: {message}"),
        },
        None => ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("server.{key}"),
            message: message.to_owned(),
        },
    }
}

/// 1-based line of `key = ...` inside `[section]` of a TOML text (see
/// [`super::accounts::locate`]).
pub(super) fn locate_key(text: &str, section: &str, key: &str) -> Option<usize> {
    super::accounts::locate(text, section, key).map(|(line, _)| line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_are_secure_and_valid() {
        let config = ServerConfig::default();
        assert!(config.listen.ip().is_loopback());
        assert!(!config.danger_allow_public_listen_without_auth);
        assert!(config.validate("", Path::new("x.toml")).is_ok());
    }

    #[test]
    fn durations_parse_and_zero_is_located() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n\nidle_timeout = \"0s\"\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        let error = config
            .server
            .validate(text, Path::new("x.toml"))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("x.toml:4:1:"), "{message}");
        assert!(message.contains("server.idle_timeout"), "{message}");
    }

    #[test]
    fn runtime_layout_parses_and_unknown_is_located() {
        let text = "[server]\nruntime = \"multi_thread\"\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.server.runtime, RuntimeLayout::MultiThread);
        let text = "[server]\nruntime = \"per_core\"\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.server.runtime, RuntimeLayout::PerCore);
        let text = "[server]\n\nruntime = \"per_thread\"\n";
        let message = Config::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("x.toml:3:"), "{message}");
        assert!(message.contains("per_core"), "{message}");
    }

    #[test]
    fn udp_busy_poll_is_off_by_default_and_bounded() {
        assert!(ServerConfig::default().udp_busy_poll.is_zero());
        let text = "[server]\nudp_busy_poll = \"50us\"\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.server.udp_busy_poll, Duration::from_micros(50));
        assert!(config.server.validate(text, Path::new("x.toml")).is_ok());
        let text = "[server]\n\nudp_busy_poll = \"5ms\"\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        let message = config
            .server
            .validate(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("x.toml:3:1:"), "{message}");
        assert!(message.contains("server.udp_busy_poll"), "{message}");
    }

    #[test]
    fn proxy_protocol_cidrs_parse() {
        let text = "[server]\nproxy_protocol_trusted = [\"10.0.0.0/8\", \"::1/128\"]\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.server.proxy_protocol_trusted.len(), 2);
    }
}
