//! Where accounts come from: `[security] accounts_backend` and `[security.radius]`.
//!
//! ```toml
//! [security]
//! accounts_backend = "radius"          # "file" (default with `accounts`), "store", "radius"
//!
//! [security.radius]
//! servers = ["127.0.0.1:1812", "10.0.0.2:1812"]   # tried in order (failover)
//! secret_file = "/etc/swarmwall/radius.secret"    # shared secret, never in this file
//! timeout = "1s"                                  # per attempt
//! retries = 2                                     # retransmissions per server
//! nas_identifier = "swarmwall"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[security] accounts_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountsBackend {
    /// The accounts file (TOML), watched for changes; the single-node default.
    File,
    /// The configured state store (embedded redb or Redis): shared by a fleet.
    Store,
    /// A RADIUS server (RFC 2865 Access-Request with PAP).
    Radius,
}

impl AccountsBackend {
    /// Stable label (`file`, `store`, `radius`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Store => "store",
            Self::Radius => "radius",
        }
    }
}

impl std::str::FromStr for AccountsBackend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "file" => Ok(Self::File),
            "store" => Ok(Self::Store),
            "radius" => Ok(Self::Radius),
            other => Err(format!(
                "`{other}` is not an accounts backend (file, store, radius)"
            )),
        }
    }
}

/// `[security.radius]`: the RADIUS servers of `accounts_backend = "radius"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusConfig {
    /// Servers (`HOST:PORT`), tried in order: the next one when one does not answer.
    pub servers: Vec<SocketAddr>,
    /// File holding the shared secret (one line; mode 0600). Never put the secret here.
    pub secret_file: Option<PathBuf>,
    /// How long to wait for an answer to one transmission.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retransmissions per server after the first transmission.
    pub retries: u32,
    /// NAS-Identifier sent with every request.
    pub nas_identifier: String,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            secret_file: None,
            timeout: Duration::from_secs(1),
            retries: 2,
            nas_identifier: "swarmwall".to_owned(),
        }
    }
}

/// Most RADIUS retransmissions per server.
const MAX_RETRIES: u32 = 10;

impl RadiusConfig {
    /// Check the settings `backend` needs; `(key, message)` for the first bad one.
    pub fn validate(&self, backend: AccountsBackend) -> Result<(), (&'static str, String)> {
        if backend != AccountsBackend::Radius {
            return Ok(());
        }
        if self.servers.is_empty() {
            return Err((
                "security.radius.servers",
                "accounts_backend = \"radius\" needs at least one server".to_owned(),
            ));
        }
        if self.secret_file.is_none() {
            return Err((
                "security.radius.secret_file",
                "accounts_backend = \"radius\" needs the shared secret in a file".to_owned(),
            ));
        }
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(30) {
            return Err((
                "security.radius.timeout",
                "must be between 10ms and 30s".to_owned(),
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err((
                "security.radius.retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        if self.nas_identifier.is_empty() || self.nas_identifier.len() > 253 {
            return Err((
                "security.radius.nas_identifier",
                "must be 1 to 253 bytes".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A `[security]` validation error located at its key's line in `text` (file:line:column),
/// or named by key when the key is not written in the file (a default).
pub fn locate_security_error(text: &str, path: &Path, key: &str, message: &str) -> ConfigError {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    // A missing RADIUS key is reported where RADIUS was asked for.
    let found = locate(text, section, leaf).or_else(|| {
        key.starts_with("security.radius.")
            .then(|| locate(text, "security", "accounts_backend"))
            .flatten()
    });
    match found {
        Some((line, column)) => ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: format!("key `{key}`: {message}"),
        },
        None => ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        },
    }
}

/// 1-based line and column of `leaf = ...` inside `[section]` of `text` (a plain scan: good
/// enough for error messages, never used to read values).
pub(super) fn locate(text: &str, section: &str, leaf: &str) -> Option<(usize, usize)> {
    let header = format!("[{section}]");
    let mut in_section = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_section = trimmed == header;
            continue;
        }
        if in_section
            && let Some(rest) = trimmed.strip_prefix(leaf)
            && rest.trim_start().starts_with('=')
        {
            let column = line.len() - line.trim_start().len() + 1;
            return Some((index + 1, column));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_settings_are_checked_and_located() {
        let config = RadiusConfig::default();
        assert!(config.validate(AccountsBackend::File).is_ok());
        assert_eq!(
            config.validate(AccountsBackend::Radius).unwrap_err().0,
            "security.radius.servers"
        );
        let text = "[security]\naccounts_backend = \"radius\"\n[security.radius]\n  retries = 99\n";
        let error = locate_security_error(
            text,
            Path::new("c.toml"),
            "security.radius.retries",
            "must be at most 10",
        )
        .to_string();
        assert!(
            error.starts_with("c.toml:4:3: key `security.radius.retries`"),
            "{error}"
        );
        assert_eq!(
            "store".parse::<AccountsBackend>(),
            Ok(AccountsBackend::Store)
        );
        assert!("ldap".parse::<AccountsBackend>().is_err());
    }
}
