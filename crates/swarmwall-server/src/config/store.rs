//! The `[store]` section of the configuration file: which backend holds durable state (the
//! embedded file store by default, Redis for a fleet) and how long a call may take.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[store]` keys (see docs/configuration.md). `Debug` never shows a password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend: `embedded` (default, a file in the data directory), `embedded:DIR`,
    /// `redis://HOST:PORT/DB` or `memory` (tests; lost on exit).
    /// `swarmwall serve --store URL` overrides it.
    pub url: StoreBackend,
    /// Key prefix in Redis (`PREFIX:namespace:subject`).
    pub redis_prefix: String,
    /// Longest a single Redis call (or connection attempt) may take before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often the embedded store deletes expired entries (they are ignored on read anyway).
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    /// Accept a Redis URL without a password. Anyone who can write to that Redis can lift
    /// lockouts and suspensions; never set this outside a test bench.
    pub danger_allow_unauthenticated_redis: bool,
    /// PEM file of the certificate authorities that sign the Redis server certificate
    /// (`rediss://` only; without it the system roots are used).
    pub redis_ca_file: Option<PathBuf>,
    /// Redis Sentinel addresses (`HOST:PORT`); when set, the primary is the one the sentinels
    /// name for `sentinel_master`, and `url` only gives the password, database and TLS.
    pub sentinels: Vec<String>,
    /// The master name the sentinels monitor (required with `sentinels`).
    pub sentinel_master: Option<String>,
    /// Authenticate to the sentinels too, with the user and password of `url` (sentinels
    /// with `requirepass`).
    pub sentinel_auth: bool,
    /// What logins do while Redis is unreachable: refuse (`fail_closed`, default) or go on with
    /// node-local lockout and TOTP-replay state (`local`).
    pub on_outage: OutageMode,
}

/// `[store] on_outage`: how logins behave while the shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// Refuse new logins until the store answers (no state can be checked or recorded).
    #[default]
    FailClosed,
    /// Verify passwords and keep lockouts, failure counters, trusted windows and used TOTP
    /// codes on this node; merge them into the store when it returns.
    Local,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: StoreBackend::Embedded(None),
            redis_prefix: "swarmwall".to_owned(),
            timeout: Duration::from_millis(200),
            purge_interval: Duration::from_secs(60),
            danger_allow_unauthenticated_redis: false,
            redis_ca_file: None,
            sentinels: Vec::new(),
            sentinel_master: None,
            sentinel_auth: false,
            on_outage: OutageMode::FailClosed,
        }
    }
}

impl StoreConfig {
    /// Check the values that parse but cannot be used: a Redis URL without a password
    /// (unless `danger_allow_unauthenticated_redis`), a CA file that cannot be read or without
    /// `rediss://`, sentinels without a master name. Returns the dotted key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let StoreBackend::Redis(url) = &self.url else {
            if !self.sentinels.is_empty() {
                return Err((
                    "store.sentinels",
                    "sentinels need a redis:// or rediss:// url (it gives the password)".into(),
                ));
            }
            return Ok(());
        };
        let shown = redact_url(url);
        let info =
            redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|error| {
                (
                    "store.url",
                    format!("`{shown}` is not a Redis URL: {error}"),
                )
            })?;
        let has_password = info
            .redis_settings()
            .password()
            .is_some_and(|password| !password.is_empty());
        if !has_password && !self.danger_allow_unauthenticated_redis {
            return Err((
                "store.url",
                format!(
                    "`{shown}` has no password: anyone who can reach that Redis could forge \
                     login state; put the password in the URL (redis://:PASSWORD@HOST:PORT/) \
                     or set `[store] danger_allow_unauthenticated_redis = true` (test benches)"
                ),
            ));
        }
        if let Some(ca) = &self.redis_ca_file {
            if !url.starts_with("rediss://") {
                return Err((
                    "store.redis_ca_file",
                    "a CA file needs a rediss:// (TLS) url".into(),
                ));
            }
            std::fs::metadata(ca).map_err(|error| {
                (
                    "store.redis_ca_file",
                    format!("cannot read {}: {error}", ca.display()),
                )
            })?;
        }
        if !self.sentinels.is_empty() {
            if self.sentinel_master.as_deref().is_none_or(str::is_empty) {
                return Err((
                    "store.sentinel_master",
                    "required with `sentinels` (the master name they monitor)".into(),
                ));
            }
            for sentinel in &self.sentinels {
                if sentinel_address(sentinel).is_none() {
                    return Err(("store.sentinels", format!("`{sentinel}` is not HOST:PORT")));
                }
            }
        }
        Ok(())
    }
}

/// `HOST:PORT` (or `[V6]:PORT`) of a sentinel, split.
pub(crate) fn sentinel_address(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

/// Which backend holds the state. `Debug` and `Display` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// The embedded redb file `state.redb`, in this directory or else the data directory.
    Embedded(Option<PathBuf>),
    /// Redis at this URL (`redis://` or `rediss://`).
    Redis(String),
    /// In memory, lost on exit (tests).
    Memory,
}

impl StoreBackend {
    /// Parse `embedded`, `embedded:DIR` (also spelled `file:DIR`), `memory` or a `redis://` /
    /// `rediss://` URL.
    pub fn parse(text: &str) -> Result<Self, UnknownStore> {
        let text = text.trim();
        if text == "embedded" || text.is_empty() {
            Ok(Self::Embedded(None))
        } else if let Some(dir) = text
            .strip_prefix("embedded:")
            .or_else(|| text.strip_prefix("file:"))
        {
            Ok(Self::Embedded(Some(PathBuf::from(dir))))
        } else if text == "memory" {
            Ok(Self::Memory)
        } else if text.starts_with("redis://")
            || text.starts_with("rediss://")
            || text.starts_with("redis+unix://")
        {
            Ok(Self::Redis(text.to_owned()))
        } else {
            Err(UnknownStore {
                text: text.to_owned(),
            })
        }
    }
}

impl fmt::Display for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded(None) => f.write_str("embedded"),
            Self::Embedded(Some(dir)) => write!(f, "embedded:{}", dir.display()),
            Self::Memory => f.write_str("memory"),
            // Never print a password that may be part of the URL.
            Self::Redis(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded(dir) => f.debug_tuple("Embedded").field(dir).finish(),
            Self::Redis(url) => f.debug_tuple("Redis").field(&redact_url(url)).finish(),
            Self::Memory => f.write_str("Memory"),
        }
    }
}

/// A `[store] url` (or `--store`) value that names no store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a store (embedded, embedded:DIR, memory, redis://HOST:PORT/)")]
pub struct UnknownStore {
    /// The value given (never a Redis URL: those always parse).
    pub text: String,
}

impl std::str::FromStr for StoreBackend {
    type Err = UnknownStore;

    fn from_str(text: &str) -> Result<Self, UnknownStore> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for StoreBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `redis://user:secret@host/` → `redis://user:***@host/`; a `pass=`/`password=` query
/// value (the `redis+unix://` form) is hidden too. The userinfo ends at the *last* `@`, so a
/// password with an unescaped `@` is hidden whole.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let mut out = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => format!("{scheme}://{rest}"),
    };
    if let Some(query) = query {
        let hidden: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if matches!(name, "pass" | "password") => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&hidden.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_and_display_without_secrets() {
        assert_eq!(
            StoreBackend::parse("embedded").unwrap(),
            StoreBackend::Embedded(None)
        );
        assert_eq!(
            StoreBackend::parse("embedded:/tmp/x").unwrap(),
            StoreBackend::Embedded(Some("/tmp/x".into()))
        );
        let redis = StoreBackend::parse("redis://:hunter2@127.0.0.1:6379/0").unwrap();
        assert!(!redis.to_string().contains("hunter2"), "{redis}");
        assert!(StoreBackend::parse("mysql://x").is_err());
        let config = crate::config::Config::parse(
            "[store]\nurl = \"redis://127.0.0.1:1/\"\ntimeout = \"50ms\"\n",
            std::path::Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(config.store.timeout, Duration::from_millis(50));
        assert!(matches!(config.store.url, StoreBackend::Redis(_)));
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        for url in [
            "redis://:hunter2@127.0.0.1:6379/0",
            "rediss://user:hunter2@h:6380/",
            "redis://:hun@ter2@127.0.0.1/",
            "redis+unix:///run/redis.sock?db=1&pass=hunter2",
        ] {
            let config = StoreConfig {
                url: StoreBackend::parse(url).unwrap(),
                ..StoreConfig::default()
            };
            let debug = format!("{config:?} {:?} {}", config.url, config.url);
            assert!(
                !debug.contains("hunter2") && !debug.contains("ter2"),
                "{debug}"
            );
        }
    }

    #[test]
    fn redis_without_password_is_refused_unless_allowed() {
        let mut config = StoreConfig {
            url: StoreBackend::parse("redis://127.0.0.1:6379/").unwrap(),
            ..StoreConfig::default()
        };
        let (key, message) = config.validate().unwrap_err();
        assert_eq!(key, "store.url");
        assert!(
            message.contains("danger_allow_unauthenticated_redis"),
            "{message}"
        );
        config.url = StoreBackend::parse("rediss://user@127.0.0.1:6379/").unwrap();
        assert!(config.validate().is_err());
        config.danger_allow_unauthenticated_redis = true;
        config.validate().unwrap();
        config.danger_allow_unauthenticated_redis = false;
        config.url = StoreBackend::parse("redis://:s3cret@127.0.0.1:6379/").unwrap();
        config.validate().unwrap();
        config.sentinels = vec!["127.0.0.1:26379".into()];
        assert_eq!(config.validate().unwrap_err().0, "store.sentinel_master");
        config.sentinel_master = Some("mymaster".into());
        config.validate().unwrap();
        config.redis_ca_file = Some("/nonexistent/ca.pem".into());
        assert_eq!(config.validate().unwrap_err().0, "store.redis_ca_file");
    }
}
