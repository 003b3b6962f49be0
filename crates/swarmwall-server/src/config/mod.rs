//! Configuration: serde structs mirroring the TOML file (one file per section, unknown keys
//! rejected), loaded with precise errors (file, line, column, key) and validated into runtime
//! types by each section's owner.
//!
//! Sections: `[server]` ([`ServerConfig`]), `[security]` ([`SecurityConfig`]), `[policy]`
//! ([`PolicyConfig`]), `[store]` ([`StoreConfig`]), `[admin]` ([`AdminConfig`]).

mod accounts;
mod admin;
mod policy;
mod security;
mod server;
mod store;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use accounts::{AccountsBackend, RadiusConfig, locate_security_error};
pub use admin::{AdminConfig, LogFormat, check_listen_address};
pub use policy::{
    AccountPolicy, DestinationRule, FormActions, MseStrictnessSetting, PolicyConfig,
    PolicyFieldError, PortRange, RuleAction, StrikesSettings, TrafficAction, normalize_domain,
    normalized_domain,
};
pub use security::{SecurityConfig, argon2_cost_is_weak};
pub use server::{FastPath, RuntimeLayout, ServerConfig};
pub(crate) use store::sentinel_address;
pub use store::{OutageMode, StoreBackend, StoreConfig, UnknownStore};

/// The whole configuration file. Every section and key is optional; defaults are secure.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, limits and timeouts.
    pub server: ServerConfig,
    /// Accounts, TOTP, brute-force limits, GeoIP, impossible travel, audit log, PROXY protocol.
    pub security: SecurityConfig,
    /// Traffic-class actions, destination rules, graduated response, classifier settings.
    pub policy: PolicyConfig,
    /// State store (embedded file or Redis).
    pub store: StoreConfig,
    /// Admin listener, metrics, dashboard, logging.
    pub admin: AdminConfig,
}

/// A configuration error, printed as `FILE:LINE:COLUMN: message` with the key when known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// File name as given.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TOML syntax or type error, located.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// File name as given.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong (names the key).
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// File name as given (or `<command line>`).
        path: PathBuf,
        /// Dotted key path, e.g. `server.listen`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: error.message().trim().to_owned(),
            }
        })
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert!(Config::parse("", Path::new("x.toml")).is_ok());
    }

    #[test]
    fn unknown_key_is_located() {
        let error = Config::parse("\n[server]\nbogus_key = 1\n", Path::new("x.toml")).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("x.toml:3:"), "{text}");
        assert!(text.contains("bogus_key"), "{text}");
    }
}
