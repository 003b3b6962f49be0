//! The `[admin]` section of the configuration file: the admin listener (metrics, JSON API,
//! dashboard), its token and TLS, and the log format.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// How log lines are written (`[admin] log_format`; the binary sets logging up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours only when stderr is a terminal).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}` (human, json)")),
        }
    }
}

/// `[admin]` keys (see docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Run the admin listener at all.
    pub enabled: bool,
    /// Address of the admin listener (metrics, API, dashboard). Loopback unless TLS is set.
    /// `None` means [`AdminConfig::DEFAULT_LISTEN`] on a best-effort basis: if that port is
    /// taken, the proxy starts without its admin listener and logs a warning; an address set
    /// here or with `--admin-listen` must bind or the start fails.
    pub listen: Option<SocketAddr>,
    /// File holding the API bearer token (plain text, mode 0600). Without one the API answers
    /// 401 to everything. `--admin-token-file` overrides it.
    pub token_file: Option<PathBuf>,
    /// Require the token on `/metrics` too (it is open by default, on loopback).
    pub metrics_require_token: bool,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `human` (default) or `json` log lines on stderr.
    pub log_format: LogFormat,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token_file: None,
            metrics_require_token: false,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Human,
        }
    }
}

impl AdminConfig {
    /// The admin address when none is configured.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

    /// The address to bind: the configured one or [`Self::DEFAULT_LISTEN`].
    pub fn listen_address(&self) -> SocketAddr {
        self.listen.unwrap_or(Self::DEFAULT_LISTEN)
    }

    /// Apply the command-line overrides (`--admin-listen`, `--admin-token-file`).
    pub fn with_overrides(
        mut self,
        listen: Option<SocketAddr>,
        token_file: Option<PathBuf>,
    ) -> Self {
        if listen.is_some() {
            self.listen = listen;
        }
        if token_file.is_some() {
            self.token_file = token_file;
        }
        self
    }

    /// Check the section as a whole; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("admin.{key}"),
            message: message.to_owned(),
        };
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(invalid("tls_key", "tls_cert is set but tls_key is not"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert", "tls_key is set but tls_cert is not"));
            }
            _ => {}
        }
        if !self.enabled {
            return Ok(());
        }
        if check_listen_address(self.listen_address(), self.tls()).is_err() {
            return Err(invalid(
                "listen",
                "a non-loopback admin address needs tls_cert and tls_key (the token would \
                 cross the network in clear text)",
            ));
        }
        if self.metrics_require_token && self.token_file.is_none() {
            return Err(invalid(
                "metrics_require_token",
                "needs a token: set admin.token_file or pass --admin-token-file",
            ));
        }
        Ok(())
    }

    /// True when both TLS files are set.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

/// Refuse a non-loopback admin address without TLS (config validation and the admin listener).
pub fn check_listen_address(address: SocketAddr, tls: bool) -> io::Result<()> {
    if address.ip().is_loopback() || tls {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "admin listener {address} is not a loopback address: set [admin] tls_cert and \
                 tls_key to serve it over TLS, or listen on 127.0.0.1 / ::1"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<AdminConfig, ConfigError> {
        let config = Config::parse(text, Path::new("x.toml"))?;
        config.admin.validate(Path::new("x.toml"))?;
        Ok(config.admin)
    }

    #[test]
    fn defaults_are_loopback_without_token() {
        let admin = parse("").unwrap();
        assert!(admin.enabled);
        assert_eq!(admin.listen, None);
        assert_eq!(admin.listen_address(), "127.0.0.1:9090".parse().unwrap());
        assert!(admin.token_file.is_none());
        assert!(!admin.metrics_require_token);
        assert_eq!(admin.log_format, LogFormat::Human);
    }

    #[test]
    fn every_key_parses() {
        let admin = parse(
            "[admin]\nenabled = true\nlisten = \"0.0.0.0:9443\"\ntoken_file = \"/etc/t\"\n\
             metrics_require_token = true\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n\
             log_format = \"json\"\n",
        )
        .unwrap();
        assert!(admin.tls());
        assert_eq!(admin.log_format, LogFormat::Json);
    }

    #[test]
    fn public_listen_without_tls_is_refused() {
        let error = parse("[admin]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(error.to_string().contains("admin.listen"), "{error}");
        let error = parse("[admin]\nlisten = \"[::]:9090\"\n").unwrap_err();
        assert!(error.to_string().contains("tls_cert"), "{error}");
        assert!(parse("[admin]\nenabled = false\nlisten = \"0.0.0.0:9090\"\n").is_ok());
    }

    #[test]
    fn half_tls_and_tokenless_metrics_guard_are_refused() {
        assert!(parse("[admin]\ntls_cert = \"c.pem\"\n").is_err());
        assert!(parse("[admin]\ntls_key = \"k.pem\"\n").is_err());
        assert!(parse("[admin]\nmetrics_require_token = true\n").is_err());
        let error = parse("[admin]\nlog_format = \"xml\"\n").unwrap_err();
        assert!(error.to_string().starts_with("x.toml:2:"), "{error}");
    }

    #[test]
    fn the_sample_config_is_valid() {
        let text = include_str!("../../../../packaging/swarmwall.example.toml");
        let admin = parse(text).unwrap();
        assert_eq!(admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert!(!admin.metrics_require_token);
    }

    #[test]
    fn overrides_apply() {
        let admin = AdminConfig::default().with_overrides(
            Some("127.0.0.1:0".parse().unwrap()),
            Some(PathBuf::from("/run/token")),
        );
        assert_eq!(admin.listen_address().port(), 0);
        assert_eq!(admin.token_file.as_deref(), Some(Path::new("/run/token")));
    }
}
