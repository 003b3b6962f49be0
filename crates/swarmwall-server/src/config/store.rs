//! The `[store]` section of the configuration file: which backend holds durable state (the
//! embedded file store by default, Redis for a fleet) and how long a call may take.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[store]` keys (see README, "Configuration reference").
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: StoreBackend::Embedded(None),
            redis_prefix: "swarmwall".to_owned(),
            timeout: Duration::from_millis(200),
            purge_interval: Duration::from_secs(60),
        }
    }
}

/// Which backend holds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub fn parse(text: &str) -> Result<Self, String> {
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
            Err(format!(
                "`{text}` is not a store (embedded, embedded:DIR, memory, redis://HOST:PORT/)"
            ))
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

impl std::str::FromStr for StoreBackend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for StoreBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `redis://user:secret@host/` → `redis://user:***@host/`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
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
}
