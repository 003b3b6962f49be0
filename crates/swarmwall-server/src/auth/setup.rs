//! One call for `swarmwall serve`: from the `[security]` section (and the `--accounts` /
//! `--audit-log` overrides) to a ready [`Authenticator`] and [`AuditLog`].
//!
//! ```ignore
//! let security = swarmwall_server::auth::SecuritySetup::load(
//!     &config.security, args.accounts.as_deref(), args.audit_log.as_deref(),
//!     store.clone(), Arc::clone(&metrics),
//! )?;
//! let _watcher = security.spawn_accounts_watcher(); // inside the tokio runtime
//! // per connection: security.authenticator.authenticate(user, pass, client_ip).await
//! // on SIGHUP: security.reload(&new_config.security).await?
//! // admin API: security.audit.recent(100); other modules: security.audit.record(...)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::account_store::AccountStore;
use super::directory::{NO_FILE, RADIUS_READ_ONLY};
use super::{
    AccountDirectory, AccountsError, AccountsFile, Authenticator, DirectoryBackend, KeyError,
    PseudonymKey,
};
use crate::audit::{AuditError, AuditLog, AuditOptions};
use crate::config::{AccountsBackend, SecurityConfig};
use crate::geo::{GeoDb, GeoError};
use crate::metrics::Metrics;
use crate::store::Store;

/// File name of the pseudonymisation key when `secret_key_file` is not set.
pub const DEFAULT_KEY_FILE: &str = "swarmwall-secret.key";

/// Why account security could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A `[security]` value is unusable.
    #[error("key `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The accounts file.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The pseudonymisation key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The security event log.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The GeoIP database.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

/// Everything account security needs at run time.
#[derive(Debug, Clone)]
pub struct SecuritySetup {
    /// Decides logins.
    pub authenticator: Authenticator,
    /// The security event log (also for other modules' events: suspensions, admin actions).
    pub audit: AuditLog,
    /// The accounts file in use, if any (watched for changes).
    pub accounts_path: Option<PathBuf>,
    /// The pseudonymisation key (for other modules that must hash client addresses).
    pub key: PseudonymKey,
    /// Provisioning (admin API, import) over the configured accounts backend.
    pub directory: AccountDirectory,
}

/// The secret key file for the data directory `data_dir`: `[security] secret_key_file`, else
/// `swarmwall-secret.key` in `data_dir` (never beside the audit log, never the working
/// directory). `serve --data-dir` sets `secret_key_file` to the same file, so CLI commands
/// given the same `--data-dir` write and verify the log with the server's key.
pub fn key_file_path(config: &SecurityConfig, data_dir: &Path) -> PathBuf {
    config
        .secret_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(DEFAULT_KEY_FILE))
}

impl SecuritySetup {
    /// Validate `config`, load the accounts (`accounts` overrides `[security] accounts`), open
    /// the key file, the audit log (`audit_log` overrides `[security] audit_log`; an empty path
    /// turns it off) and the GeoIP database.
    ///
    /// The key file defaults to `swarmwall-secret.key` in the default data directory
    /// ([`crate::store::default_data_dir`]), never the working directory; `swarmwall serve` sets
    /// `secret_key_file` to the one in its `--data-dir`.
    pub fn load(
        config: &SecurityConfig,
        accounts: Option<&Path>,
        audit_log: Option<&Path>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        config
            .validate()
            .map_err(|(key, message)| SetupError::Invalid { key, message })?;
        let backend = config.accounts_backend();
        let accounts_path = accounts
            .map(Path::to_path_buf)
            .or_else(|| config.accounts.clone());
        if backend != AccountsBackend::File && accounts_path.is_some() {
            return Err(SetupError::Invalid {
                key: "security.accounts",
                message: format!(
                    "an accounts file is given with accounts_backend = \"{}\"; copy it into \
                     the store with `swarmwall user import FILE --store URL`, or drop it",
                    backend.as_str()
                ),
            });
        }
        let accounts = match &accounts_path {
            Some(path) => AccountsFile::load(path)?,
            None => AccountsFile::default(),
        };
        let directory_backend = match (backend, &accounts_path) {
            (AccountsBackend::File, Some(path)) => DirectoryBackend::File(path.clone()),
            (AccountsBackend::File, None) => DirectoryBackend::ReadOnly(NO_FILE),
            (AccountsBackend::Store, _) => {
                DirectoryBackend::Store(AccountStore::for_store(&store).map_err(|error| {
                    SetupError::Invalid {
                        key: "security.accounts_backend",
                        message: format!("state store: {error}"),
                    }
                })?)
            }
            (AccountsBackend::Radius, _) => DirectoryBackend::ReadOnly(RADIUS_READ_ONLY),
        };
        let audit_path = audit_log.unwrap_or(&config.audit_log);
        let audit_on = !audit_path.as_os_str().is_empty();
        let key = PseudonymKey::load_or_create(&key_file_path(
            config,
            &crate::store::default_data_dir(),
        ))?;
        let audit = if audit_on {
            AuditLog::open(audit_path, &key, &AuditOptions::from_config(config))?
        } else {
            let pseudonymise = config.pseudonymise_addresses.then(|| key.clone());
            AuditLog::memory(pseudonymise, config.audit_recent)
        };
        let geo = match &config.geoip_database {
            Some(path) => Some(Arc::new(GeoDb::open(path)?)),
            None => None,
        };
        let authenticator = Authenticator::with_security(
            accounts,
            config,
            store,
            audit.clone(),
            metrics,
            geo,
            key.clone(),
        );
        if backend != AccountsBackend::File {
            authenticator.require_authentication();
        }
        if backend == AccountsBackend::Radius {
            let client =
                super::radius::RadiusClient::from_config(&config.radius).map_err(|error| {
                    SetupError::Invalid {
                        key: "security.radius",
                        message: error.to_string(),
                    }
                })?;
            authenticator.use_radius(client);
        }
        let directory = AccountDirectory::new(authenticator.clone(), directory_backend, config);
        Ok(Self {
            authenticator,
            audit,
            accounts_path,
            key,
            directory,
        })
    }

    /// Apply a re-read `[security]` section (SIGHUP): validate it, re-read the accounts file
    /// and the GeoIP database, then swap them into the same authenticator (counters, lockouts,
    /// windows and history in the store are kept). On error nothing changes. The accounts
    /// path, the audit log and the key file are fixed at start (changing them needs a restart).
    pub async fn reload(&self, config: &SecurityConfig) -> Result<(), SetupError> {
        config
            .validate()
            .map_err(|(key, message)| SetupError::Invalid { key, message })?;
        let accounts = match &self.accounts_path {
            Some(path) => Some(AccountsFile::load(path)?),
            None => None,
        };
        let geo = match &config.geoip_database {
            Some(path) => Some(Arc::new(GeoDb::open(path)?)),
            None => None,
        };
        self.authenticator.reconfigure(config, geo);
        if let Some(accounts) = accounts {
            self.authenticator.reload_accounts(accounts).await;
        }
        Ok(())
    }

    /// Load the accounts kept in the state store (`accounts_backend = "store"`) and, on Redis,
    /// start following changes made by other nodes. A store that does not answer at start is
    /// not fatal: logins are refused until the follower has loaded the accounts. Call once,
    /// inside the tokio runtime.
    pub async fn start_accounts(&self) -> Option<tokio::task::JoinHandle<()>> {
        let DirectoryBackend::Store(store) = self.directory.backend() else {
            return None;
        };
        let position = match store.snapshot().await {
            Ok(snapshot) => {
                tracing::info!(
                    accounts = snapshot.accounts.len(),
                    "accounts loaded from the state store"
                );
                self.authenticator
                    .replace_accounts(super::AccountSet::from_accounts(snapshot.accounts));
                Some(snapshot.position)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "accounts not loaded from the state store; logins are refused until it answers"
                );
                None
            }
        };
        self.directory.spawn_follower(position)
    }

    /// Start the accounts-file watcher (call inside the tokio runtime); `None` without a file.
    pub fn spawn_accounts_watcher(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.accounts_path
            .clone()
            .map(|path| self.authenticator.spawn_accounts_watcher(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loads_everything_beside_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let accounts_path = dir.path().join("accounts.toml");
        let mut file = AccountsFile::default();
        let fast = super::super::HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        file.add("alice", b"pw", &fast).unwrap();
        file.save(&accounts_path).unwrap();
        let audit_path = dir.path().join("audit.jsonl");
        let config = SecurityConfig {
            secret_key_file: Some(dir.path().join(DEFAULT_KEY_FILE)),
            geoip_database: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/geoip/GeoIP2-City-Test.mmdb"
            ))),
            failure_delay: std::time::Duration::ZERO,
            ..SecurityConfig::default()
        };
        let setup = SecuritySetup::load(
            &config,
            Some(&accounts_path),
            Some(&audit_path),
            Store::memory(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        assert!(dir.path().join(DEFAULT_KEY_FILE).exists());
        assert!(setup.authenticator.has_accounts());
        let client = "192.0.2.1".parse().unwrap();
        let outcome = setup
            .authenticator
            .authenticate(b"alice", b"bad", client)
            .await;
        assert!(matches!(outcome, super::super::AuthOutcome::Rejected(_)));
        assert_eq!(setup.audit.recent(10).len(), 1);
        let report = crate::audit::verify(&audit_path, setup.audit.key().unwrap()).unwrap();
        assert_eq!(report.records, 1);
        let watcher = setup.spawn_accounts_watcher().unwrap();
        watcher.abort();

        // A reload with a stricter policy applies to the same authenticator.
        let stricter = SecurityConfig {
            deny_countries: vec!["GB".to_owned()],
            ..config.clone()
        };
        setup.reload(&stricter).await.unwrap();
        let london = "81.2.69.142".parse().unwrap();
        let outcome = setup
            .authenticator
            .authenticate(b"alice", b"pw", london)
            .await;
        assert_eq!(
            outcome,
            super::super::AuthOutcome::Rejected(super::super::RejectReason::GeoDenied)
        );
        // A bad reload changes nothing.
        let broken = SecurityConfig {
            geoip_database: Some(PathBuf::from("/nonexistent.mmdb")),
            ..SecurityConfig::default()
        };
        assert!(setup.reload(&broken).await.is_err());
        let outcome = setup
            .authenticator
            .authenticate(b"alice", b"pw", london)
            .await;
        assert!(matches!(outcome, super::super::AuthOutcome::Rejected(_)));

        // Bad settings are named.
        let bad = SecurityConfig {
            deny_countries: vec!["CN".to_owned()],
            ..SecurityConfig::default()
        };
        let error = SecuritySetup::load(
            &bad,
            None,
            Some(Path::new("")),
            Store::memory(),
            Arc::new(Metrics::new()),
        );
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("security.geoip_database")
        );
    }
}
