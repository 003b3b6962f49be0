//! The `[security]` section of the configuration file: accounts, argon2 cost, TOTP, brute-force
//! limits, GeoIP policy, impossible travel, the security event log and its pseudonymisation key.
//!
//! Every key is optional; the defaults are the secure ones (lockout on, audit log on, client
//! addresses pseudonymised). Per-account country lists live in the accounts file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{AccountsBackend, ConfigError, RadiusConfig};

use crate::geo::{TravelAction, UnknownLocation, is_country_code};

/// `[security]` keys (see docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Accounts file (TOML, argon2id PHC strings). `swarmwall serve --accounts` overrides it.
    pub accounts: Option<PathBuf>,
    /// Where accounts come from: `file` (default when `accounts` is set), `store` (the state
    /// store, shared by a fleet) or `radius` (`[security.radius]`). `--accounts-backend`
    /// overrides it.
    pub accounts_backend: Option<AccountsBackend>,
    /// RADIUS servers for `accounts_backend = "radius"`.
    pub radius: RadiusConfig,
    /// argon2id memory cost in KiB for new password hashes (`user add`, `user passwd`).
    pub argon2_memory_kib: u32,
    /// argon2id iterations for new password hashes.
    pub argon2_iterations: u32,
    /// argon2id lanes for new password hashes.
    pub argon2_parallelism: u32,
    /// Failed logins (per account, and separately per client address) that start a lockout.
    pub max_failures: u32,
    /// The sliding window in which failures are counted.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a lockout lasts.
    #[serde(with = "humantime_serde")]
    pub lockout_duration: Duration,
    /// Delay before answering the second failure in a window; it doubles with each further
    /// failure, up to `failure_delay_max`. The first failure is answered at once.
    #[serde(with = "humantime_serde")]
    pub failure_delay: Duration,
    /// Upper bound of the growing failure delay.
    #[serde(with = "humantime_serde")]
    pub failure_delay_max: Duration,
    /// After a login with a TOTP code, the password alone is accepted from the same client
    /// address for this long.
    #[serde(with = "humantime_serde")]
    pub totp_trusted_window: Duration,
    /// Issuer shown in authenticator apps (`otpauth://` URI).
    pub totp_issuer: String,
    /// MaxMind DB file (City or Country database). Without it, country lists cannot be
    /// enforced (start-up fails if any are set) and impossible travel is off.
    pub geoip_database: Option<PathBuf>,
    /// ISO 3166-1 alpha-2 country codes allowed to log in (empty: every country).
    pub allow_countries: Vec<String>,
    /// Country codes refused (checked after `allow_countries`).
    pub deny_countries: Vec<String>,
    /// What to do with a client address the database cannot place in a country.
    pub unknown_location: UnknownLocation,
    /// Impossible-travel handling.
    pub impossible_travel: TravelAction,
    /// Travel speed (km/h) above which two consecutive logins of one account are impossible.
    pub max_travel_speed_kmh: f64,
    /// Logins kept per account for the impossible-travel check.
    pub login_history: usize,
    /// How long the login history of an idle account is kept.
    #[serde(with = "humantime_serde")]
    pub login_history_ttl: Duration,
    /// Security event log (hash-chained JSON lines). An empty path turns it off.
    /// `swarmwall serve --audit-log` overrides it.
    pub audit_log: PathBuf,
    /// In-memory ring of recent events kept for the admin API.
    pub audit_recent: usize,
    /// Write keyed hashes instead of client addresses into the security event log.
    pub pseudonymise_addresses: bool,
    /// File holding the 32-byte key for keyed hashes of client addresses (hex). Created with
    /// mode 0600 when missing; refused when group or others may read it or when it lies inside
    /// a git work tree. Never put the key itself in the configuration file. Default:
    /// `swarmwall-secret.key` in the data directory (whatever `audit_log` says).
    pub secret_key_file: Option<PathBuf>,
    /// Rotate the security event log when it would grow past this many bytes (0: never). The
    /// chain continues across files (`FILE.1` is the newest rotated one).
    pub audit_max_bytes: u64,
    /// Rotated security event log files kept (`FILE.1` … `FILE.N`; at least 1).
    pub audit_keep_files: usize,
    /// Emit a signed checkpoint of the log's head after this many records (0: only by time).
    pub audit_checkpoint_records: u64,
    /// Emit a signed checkpoint at this interval when the log's head moved.
    #[serde(with = "humantime_serde")]
    pub audit_checkpoint_interval: Duration,
    /// Syslog datagram socket that receives checkpoints (journald and rsyslog listen on
    /// `/dev/log`); `""` turns the system-log copy off.
    pub audit_syslog: PathBuf,
    /// Node name in checkpoints and in the fleet store key (default: the host name).
    pub audit_node_name: Option<String>,
    /// Accounts whose last verified password is remembered in memory (a keyed MAC under a
    /// per-process key), so repeat logins skip argon2. 0 turns the memory off.
    pub verified_cache_size: usize,
    /// How long a remembered verification stays valid.
    #[serde(with = "humantime_serde")]
    pub verified_cache_ttl: Duration,
    /// argon2 verifications that run at once (each holds its argon2 memory); 0 = one per
    /// CPU core.
    pub hash_workers: usize,
    /// Logins that may wait for a hashing worker; further ones are refused at once
    /// (`auth_results{reason="overloaded"}`).
    pub hash_queue: usize,
    /// Longest wait for a hashing worker before the login is refused as overloaded.
    #[serde(with = "humantime_serde")]
    pub hash_queue_timeout: Duration,
    /// Connections still in the SOCKS5 handshake (greeting, login) per client IPv4 address
    /// or IPv6 /64; further ones are closed at once (`sessions_refused{reason="source_limit"}`).
    pub max_handshakes_per_source: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            accounts: None,
            accounts_backend: None,
            radius: RadiusConfig::default(),
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_failures: 5,
            failure_window: Duration::from_secs(10 * 60),
            lockout_duration: Duration::from_secs(15 * 60),
            failure_delay: Duration::from_millis(250),
            failure_delay_max: Duration::from_secs(2),
            totp_trusted_window: Duration::from_secs(12 * 60 * 60),
            totp_issuer: "swarmwall".to_owned(),
            geoip_database: None,
            allow_countries: Vec::new(),
            deny_countries: Vec::new(),
            unknown_location: UnknownLocation::Allow,
            impossible_travel: TravelAction::Alert,
            max_travel_speed_kmh: 1_000.0,
            login_history: 16,
            login_history_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            audit_log: PathBuf::from("swarmwall-audit.jsonl"),
            audit_recent: 1_000,
            pseudonymise_addresses: true,
            secret_key_file: None,
            audit_max_bytes: 64 * 1024 * 1024,
            audit_keep_files: 10,
            audit_checkpoint_records: 100,
            audit_checkpoint_interval: Duration::from_secs(60),
            audit_syslog: PathBuf::from("/dev/log"),
            audit_node_name: None,
            verified_cache_size: 10_000,
            verified_cache_ttl: Duration::from_secs(60 * 60),
            hash_workers: 0,
            hash_queue: 128,
            hash_queue_timeout: Duration::from_secs(1),
            max_handshakes_per_source: 64,
        }
    }
}

/// True when an argon2id cost (`m` in KiB, `t`) is below every configuration OWASP's
/// Password Storage Cheat Sheet recommends: 46 MiB/t=1, 19 MiB/t=2, 12 MiB/t=3, 9 MiB/t=4,
/// 7 MiB/t=5.
pub fn argon2_cost_is_weak(memory_kib: u32, iterations: u32) -> bool {
    const OWASP_MINIMUMS: [(u32, u32); 5] = [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ];
    !OWASP_MINIMUMS.iter().any(|&(min_memory, min_iterations)| {
        memory_kib >= min_memory && iterations >= min_iterations
    })
}

impl SecurityConfig {
    /// Only the `[security]` section of the configuration file at `path`; other sections are
    /// not checked (for tools such as `swarmwall user` that need nothing else).
    pub fn load_section(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: "security".to_owned(),
            message,
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let section = table
            .remove("security")
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        let config: Self = section
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                key: key.to_owned(),
                message,
            })?;
        Ok(config)
    }

    /// A warning when the argon2id cost is below every configuration OWASP's Password
    /// Storage Cheat Sheet recommends (19 MiB with t=2 is the baseline; 46 MiB/t=1,
    /// 12 MiB/t=3, 9 MiB/t=4 and 7 MiB/t=5 are its equivalents). Weak hashes make a leaked
    /// accounts file cheap to crack; allowed (tests need fast hashes), never silently.
    pub fn weak_argon2_warning(&self) -> Option<String> {
        let (memory, iterations) = (self.argon2_memory_kib, self.argon2_iterations);
        argon2_cost_is_weak(memory, iterations).then(|| {
            format!(
                "security.argon2_memory_kib = {memory} with security.argon2_iterations = \
                 {iterations} is below OWASP's minimum for argon2id (19456 KiB with 2 \
                 iterations, or an equivalent); new password hashes will be cheap to crack"
            )
        })
    }

    /// The accounts backend in force: `accounts_backend`, else `file`.
    pub fn accounts_backend(&self) -> AccountsBackend {
        self.accounts_backend.unwrap_or(AccountsBackend::File)
    }

    /// [`SecurityConfig::validate`] as a located error: `FILE:LINE:1: key ...` when the key is
    /// written in `text`, else `FILE: key ...` (for `check-config`, start-up and reload).
    pub fn validate_in(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        self.validate()
            .map_err(|(key, message)| super::locate_security_error(text, path, key, &message))
    }

    /// Check values that parse but make no sense; returns `(key, message)` for the first one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.radius.validate(self.accounts_backend())?;
        if self.max_failures == 0 {
            return Err(("security.max_failures", "must be at least 1".to_owned()));
        }
        if self.argon2_iterations == 0 || self.argon2_parallelism == 0 {
            return Err((
                "security.argon2_iterations",
                "argon2 iterations and parallelism must be at least 1".to_owned(),
            ));
        }
        if self.argon2_memory_kib < 8 * self.argon2_parallelism {
            return Err((
                "security.argon2_memory_kib",
                "must be at least 8 KiB per lane".to_owned(),
            ));
        }
        if self.audit_keep_files == 0 {
            return Err((
                "security.audit_keep_files",
                "must be at least 1 (rotation never deletes the file it rotates)".to_owned(),
            ));
        }
        if self.audit_checkpoint_interval.is_zero() {
            return Err((
                "security.audit_checkpoint_interval",
                "must be longer than zero".to_owned(),
            ));
        }
        if self
            .audit_node_name
            .as_deref()
            .is_some_and(|name| name.is_empty() || name.contains(char::is_whitespace))
        {
            return Err((
                "security.audit_node_name",
                "must be a non-empty name without spaces".to_owned(),
            ));
        }
        if !(self.max_travel_speed_kmh.is_finite() && self.max_travel_speed_kmh > 0.0) {
            return Err((
                "security.max_travel_speed_kmh",
                "must be a positive number".to_owned(),
            ));
        }
        for code in self.allow_countries.iter().chain(&self.deny_countries) {
            if !is_country_code(code) {
                return Err((
                    "security.allow_countries",
                    format!("`{code}` is not a two-letter ISO 3166-1 country code"),
                ));
            }
        }
        if self.hash_workers > 1_024 {
            return Err((
                "security.hash_workers",
                "must be at most 1024 (0 = one per CPU core)".to_owned(),
            ));
        }
        if self.hash_queue > 1_000_000 {
            return Err(("security.hash_queue", "must be at most 1000000".to_owned()));
        }
        if self.hash_queue_timeout.is_zero() && self.hash_queue > 0 {
            return Err((
                "security.hash_queue_timeout",
                "must be longer than 0s while hash_queue is above 0".to_owned(),
            ));
        }
        if self.verified_cache_size > 10_000_000 {
            return Err((
                "security.verified_cache_size",
                "must be at most 10000000 (0 turns the memory off)".to_owned(),
            ));
        }
        if self.max_handshakes_per_source == 0 {
            return Err((
                "security.max_handshakes_per_source",
                "must be at least 1".to_owned(),
            ));
        }
        if self.geoip_database.is_none()
            && (!self.allow_countries.is_empty() || !self.deny_countries.is_empty())
        {
            return Err((
                "security.geoip_database",
                "country lists need a GeoIP database".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_argon2_costs_are_named() {
        assert_eq!(SecurityConfig::default().weak_argon2_warning(), None);
        let weak = |memory_kib, iterations| SecurityConfig {
            argon2_memory_kib: memory_kib,
            argon2_iterations: iterations,
            ..SecurityConfig::default()
        };
        assert!(weak(64, 1).weak_argon2_warning().is_some());
        assert!(weak(19_455, 2).weak_argon2_warning().is_some());
        assert!(weak(19_456, 1).weak_argon2_warning().is_some());
        assert_eq!(weak(12_288, 3).weak_argon2_warning(), None);
        assert_eq!(weak(65_536, 1).weak_argon2_warning(), None);
        let message = weak(64, 1).weak_argon2_warning().unwrap();
        assert!(message.contains("argon2_memory_kib = 64"), "{message}");
    }

    #[test]
    fn defaults_are_secure() {
        let config: SecurityConfig = toml::from_str("").unwrap();
        assert_eq!(config.max_failures, 5);
        assert_eq!(config.failure_window, Duration::from_secs(600));
        assert_eq!(config.lockout_duration, Duration::from_secs(900));
        assert!(config.pseudonymise_addresses);
        assert!(!config.audit_log.as_os_str().is_empty());
        assert_eq!(config.impossible_travel, TravelAction::Alert);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn keys_parse() {
        let config: SecurityConfig = toml::from_str(
            r#"
            lockout_duration = "1m"
            totp_trusted_window = "2h"
            geoip_database = "/x.mmdb"
            allow_countries = ["GB", "se"]
            unknown_location = "deny"
            impossible_travel = "deny"
            "#,
        )
        .unwrap();
        assert_eq!(config.lockout_duration, Duration::from_secs(60));
        assert_eq!(config.unknown_location, UnknownLocation::Deny);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let config: SecurityConfig = toml::from_str("allow_countries = [\"GBR\"]").unwrap();
        assert_eq!(config.validate().unwrap_err().0, "security.allow_countries");
        let config: SecurityConfig = toml::from_str("deny_countries = [\"CN\"]").unwrap();
        assert_eq!(config.validate().unwrap_err().0, "security.geoip_database");
        assert!(toml::from_str::<SecurityConfig>("nope = 1").is_err());
    }

    #[test]
    fn scale_keys_parse_and_bad_ones_are_located() {
        let text = "[security]\nhash_workers = 3\nhash_queue = 10\nhash_queue_timeout = \"250ms\"\nverified_cache_size = 5\nverified_cache_ttl = \"10m\"\nmax_handshakes_per_source = 8\n";
        let config = crate::config::Config::parse(text, Path::new("c.toml")).unwrap();
        let security = &config.security;
        assert_eq!(security.hash_workers, 3);
        assert_eq!(security.hash_queue, 10);
        assert_eq!(security.hash_queue_timeout, Duration::from_millis(250));
        assert_eq!(security.verified_cache_ttl, Duration::from_secs(600));
        assert_eq!(security.max_handshakes_per_source, 8);
        assert!(security.validate_in(text, Path::new("c.toml")).is_ok());
        let text = "[server]\n[security]\nmax_failures = 5\nmax_handshakes_per_source = 0\n";
        let config = crate::config::Config::parse(text, Path::new("c.toml")).unwrap();
        let error = config
            .security
            .validate_in(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("c.toml:4:1:"), "{error}");
        assert!(
            error.contains("security.max_handshakes_per_source"),
            "{error}"
        );
        let text = "[security]\nhash_queue_timeout = \"0s\"\n";
        let config = crate::config::Config::parse(text, Path::new("c.toml")).unwrap();
        let error = config.security.validate_in(text, Path::new("c.toml"));
        assert!(error.unwrap_err().to_string().starts_with("c.toml:2:1:"));
    }

    #[test]
    fn the_section_alone_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[future]\nx = 1\n[security]\nargon2_iterations = 3\n",
        )
        .unwrap();
        assert_eq!(
            SecurityConfig::load_section(&path)
                .unwrap()
                .argon2_iterations,
            3
        );
        std::fs::write(&path, "[security]\nbogus = 1\n").unwrap();
        let error = SecurityConfig::load_section(&path).unwrap_err().to_string();
        assert!(error.contains("bogus"), "{error}");
    }
}
