//! Authentication of SOCKS5 users (RFC 1929 username/password) and account security.
//!
//! One call, [`Authenticator::authenticate`], decides a login:
//!
//! 1. lockouts: the account name and the client address (as a keyed hash) are each locked for
//!    `lockout_duration` once `max_failures` failures fall within `failure_window`; every
//!    attempt that needs an argon2 verification is counted *before* it starts (atomically in
//!    the store), so at most `max_failures` guesses are verified per window whatever the
//!    parallelism, and attempts still in flight when the limit is reached are refused;
//! 2. credentials: a password that verified recently is recognised by a keyed MAC kept in
//!    memory ([`verified`]); anything else costs one argon2id verification on the bounded
//!    hashing pool ([`pool`]: fixed workers, bounded queue, refused as `overloaded` when no
//!    worker is free in time), for known and unknown names alike (unknown names verify a
//!    dummy hash at the highest cost found in the accounts file; disabled accounts are
//!    verified in full and fail like a wrong password), so the answers and their timing
//!    match;
//! 3. TOTP (accounts with a `totp_secret`): the password is followed by the current 6-digit
//!    code; a good code opens a trusted window for that account from that client address in
//!    which the password alone is accepted; every code seen is claimed (replay cache), so a
//!    code opens one window at most, even when it was first used inside a window;
//! 4. GeoIP country lists (global and per account; unknown locations by setting);
//! 5. impossible travel against the account's previous login.
//!
//! Failures are counted (growing delay, then lockout), counted in [`Metrics`] and recorded in
//! the security event log ([`AuditLog`]); no password, code or secret is ever logged. State
//! lives in the [`Store`] so that a fleet shares it.
//!
//! The accounts file is re-read without a restart: [`Authenticator::spawn_accounts_watcher`]
//! polls its modification time every second and swaps the new accounts in atomically.

mod account_errors;
mod account_set;
pub mod account_store;
mod accounts;
mod decide;
mod directory;
mod lockout;
mod pool;
pub mod radius;
mod setup;
mod source;
pub mod totp;
mod turns;
mod verified;

use source::{FileStamp, file_stamp};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::json;
use zeroize::Zeroizing;

use pool::HashPool;
use turns::{Pending, Turns};
use verified::VerifiedCache;

pub use crate::pseudonym::{KeyError, PseudonymKey, shared_mode, warn_if_shared};
pub use account_set::AccountSet;
pub use accounts::{
    Account, AccountError, AccountsError, AccountsFile, HashParams, NameError, check_name,
    hash_password,
};
pub use directory::{
    AccountDirectory, AccountPatch, DirectoryBackend, DirectoryError, ImportReport, NewAccount,
};
pub use setup::{DEFAULT_KEY_FILE, SecuritySetup, SetupError, key_file_path};

use crate::audit::AuditLog;
use crate::config::SecurityConfig;
use crate::geo::{CountryLists, CountryPolicy, GeoDb, TravelAction};
use crate::metrics::{AuthLabels, Metrics, OperationLabels};
use crate::store::{Namespace, Store, StoreError};

/// Why a login was refused. Clients always see the same RFC 1929 failure; this is for metrics
/// and security events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Unknown user or wrong password (indistinguishable on purpose), or a wrong TOTP code.
    BadCredentials,
    /// The account is disabled.
    Disabled,
    /// Right password without a TOTP code, outside a trusted window.
    TotpRequired,
    /// A TOTP code already used to open a window from another address.
    TotpReplay,
    /// The account or the client address is locked out.
    LockedOut,
    /// The client's country is not allowed.
    GeoDenied,
    /// The login implies an impossible travel speed (with `impossible_travel = "deny"`).
    ImpossibleTravel,
    /// The state store did not answer (logins fail closed).
    StoreUnavailable,
    /// The accounts backend (RADIUS) did not answer (logins fail closed).
    AccountsUnavailable,
    /// No password-hashing worker was free in time (`hash_queue`, `hash_queue_timeout`).
    Overloaded,
}

impl RejectReason {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadCredentials => "bad_credentials",
            Self::Disabled => "disabled",
            Self::TotpRequired => "totp_required",
            Self::TotpReplay => "totp_replay",
            Self::LockedOut => "locked_out",
            Self::GeoDenied => "geo_denied",
            Self::ImpossibleTravel => "impossible_travel",
            Self::StoreUnavailable => "store_unavailable",
            Self::AccountsUnavailable => "accounts_unavailable",
            Self::Overloaded => "overloaded",
        }
    }
}

/// Result of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Logged in as this account.
    Accepted {
        /// Account name.
        account: String,
    },
    /// Refused.
    Rejected(RejectReason),
}

/// Checks credentials against the loaded accounts and applies the account-security rules.
/// Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    accounts: ArcSwap<Loaded>,
    policy: ArcSwap<Policy>,
    store: Store,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    key: PseudonymKey,
    /// Accounts files the watcher could not load (kept the old accounts).
    reload_failures: std::sync::atomic::AtomicU64,
    /// Authentication is required even with no account loaded (store and RADIUS backends).
    always_required: std::sync::atomic::AtomicBool,
    /// RADIUS verifies passwords instead of the local accounts (`accounts_backend = "radius"`).
    radius: std::sync::OnceLock<Arc<radius::RadiusClient>>,
    /// The accounts file as this node last wrote it (API edits): the watcher skips re-reading
    /// what is already in force.
    own_write: std::sync::Mutex<Option<FileStamp>>,
    /// Recently verified passwords (keyed MACs, memory only).
    verified: VerifiedCache,
    /// The bounded argon2 workers.
    pool: HashPool,
    /// One full verification at a time per account name and per client network.
    turns: Turns,
    /// Attempts in progress per account name, by password fingerprint.
    pending: Pending,
}

/// The reloadable part: settings and the GeoIP database.
#[derive(Debug)]
struct Policy {
    settings: Settings,
    geo: Option<Arc<GeoDb>>,
}

/// The accounts (a map by name) plus a dummy hash at the highest argon2 cost among them.
struct Loaded {
    file: AccountSet,
    dummy_hash: String,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("file", &self.file)
            .field("dummy_hash", &"<redacted>")
            .finish()
    }
}

impl Loaded {
    fn new(file: AccountSet) -> Self {
        let costliest = accounts::costliest(file.iter().map(|a| a.password.as_str()));
        let dummy_hash = accounts::dummy_hash_like(costliest);
        Self { file, dummy_hash }
    }

    /// A new set, keeping the dummy hash when the argon2 cost did not change (no hashing).
    fn replaced(&self, file: AccountSet) -> Self {
        let params = |phc: Option<&str>| {
            phc.and_then(|phc| argon2::PasswordHash::new(phc).ok())
                .and_then(|hash| argon2::Params::try_from(&hash).ok())
        };
        // The dummy hash was made at the old set's highest cost: keep it while that is the
        // new set's highest cost too (a parse of each PHC string, no hashing).
        let old = params(Some(self.dummy_hash.as_str()));
        let new = params(accounts::costliest(
            file.iter().map(|a| a.password.as_str()),
        ));
        if old.is_some() && old == new {
            Self {
                file,
                dummy_hash: self.dummy_hash.clone(),
            }
        } else {
            Self::new(file)
        }
    }
}

/// Validated runtime settings.
#[derive(Debug, Clone)]
struct Settings {
    max_failures: u32,
    failure_window: Duration,
    lockout: Duration,
    failure_delay: Duration,
    failure_delay_max: Duration,
    trusted_window: Duration,
    countries: CountryPolicy,
    travel: TravelAction,
    max_speed_kmh: f64,
    history_len: usize,
    history_ttl: Duration,
    verified_ttl: Duration,
    hash_queue_timeout: Duration,
}

impl Settings {
    fn new(config: &SecurityConfig) -> Self {
        Self {
            max_failures: config.max_failures.max(1),
            failure_window: config.failure_window,
            lockout: config.lockout_duration,
            failure_delay: config.failure_delay,
            failure_delay_max: config.failure_delay_max,
            trusted_window: config.totp_trusted_window,
            countries: CountryPolicy {
                global: CountryLists::new(&config.allow_countries, &config.deny_countries),
                unknown: config.unknown_location,
            },
            travel: config.impossible_travel,
            max_speed_kmh: config.max_travel_speed_kmh,
            history_len: config.login_history.max(1),
            history_ttl: config.login_history_ttl,
            verified_ttl: config.verified_cache_ttl,
            hash_queue_timeout: config.hash_queue_timeout,
        }
    }

    /// No delay for the first failure, then `failure_delay` doubling per failure up to the cap.
    fn delay(&self, failures: u32) -> Duration {
        if failures <= 1 {
            return Duration::ZERO;
        }
        let doublings = (failures - 2).min(16);
        self.failure_delay
            .saturating_mul(1 << doublings)
            .min(self.failure_delay_max)
    }
}

/// Store subjects of one login attempt.
struct Subjects {
    /// The account name, or `? <keyed hash>` for a name that is not an account.
    name: String,
    /// Keyed hash of the client's network (IPv4 address, IPv6 /64).
    network: String,
}

/// What the password check found.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    /// Unknown user or wrong password.
    Bad,
    /// The password alone matched.
    Password,
    /// The password matched with this 6-digit code after it.
    PasswordAndCode(String),
}

impl Authenticator {
    /// Authenticator over a loaded accounts file with the default `[security]` settings, an
    /// in-memory store, no event log, no GeoIP and a random pseudonymisation key.
    pub fn new(accounts: AccountsFile) -> Self {
        Self::with_security(
            accounts,
            &SecurityConfig::default(),
            Store::memory(),
            AuditLog::disabled(),
            Arc::new(Metrics::new()),
            None,
            PseudonymKey::random(),
        )
    }

    /// The full authenticator: `config` is the `[security]` section, `store` the shared state
    /// store, `audit` the security event log, `geo` the opened GeoIP database (required for
    /// country lists and impossible travel), `key` the pseudonymisation key (the same one the
    /// audit log uses, from [`PseudonymKey::load_or_create`]).
    pub fn with_security(
        accounts: AccountsFile,
        config: &SecurityConfig,
        store: Store,
        audit: AuditLog,
        metrics: Arc<Metrics>,
        geo: Option<Arc<GeoDb>>,
        key: PseudonymKey,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts: ArcSwap::from_pointee(Loaded::new(AccountSet::from(accounts))),
                policy: ArcSwap::from_pointee(Policy {
                    settings: Settings::new(config),
                    geo,
                }),
                store,
                audit,
                metrics,
                key,
                reload_failures: std::sync::atomic::AtomicU64::new(0),
                always_required: std::sync::atomic::AtomicBool::new(false),
                radius: std::sync::OnceLock::new(),
                own_write: std::sync::Mutex::new(None),
                verified: VerifiedCache::new(config.verified_cache_size),
                pool: HashPool::new(config.hash_workers, config.hash_queue),
                turns: Turns::default(),
                pending: Pending::default(),
            }),
        }
    }

    /// True when at least one account exists (the server then requires RFC 1929).
    pub fn has_accounts(&self) -> bool {
        self.inner
            .always_required
            .load(std::sync::atomic::Ordering::Relaxed)
            || !self.inner.accounts.load().file.is_empty()
    }

    /// Names of the loaded accounts with their disabled flag (admin listings), by name.
    pub fn account_names(&self) -> Vec<(String, bool)> {
        let loaded = self.inner.accounts.load();
        loaded
            .file
            .sorted_names()
            .iter()
            .filter_map(|name| loaded.file.find(name))
            .map(|account| (account.name.clone(), account.disabled))
            .collect()
    }

    /// Swap in new `[security]` settings and GeoIP database (configuration reload). State in
    /// the store (counters, lockouts, windows, history) is kept. `hash_workers`, `hash_queue`
    /// and `verified_cache_size` keep their start-up values (a restart changes them).
    pub fn reconfigure(&self, config: &SecurityConfig, geo: Option<Arc<GeoDb>>) {
        self.inner.policy.store(Arc::new(Policy {
            settings: Settings::new(config),
            geo,
        }));
    }

    /// Lift the lockouts of `account` (admin "unlock").
    pub async fn unlock_account(&self, account: &str) -> Result<(), StoreError> {
        let store = &self.inner.store;
        store.clear(Namespace::LockoutAccount, account).await?;
        store.clear(Namespace::AuthFailuresAccount, account).await?;
        self.inner.audit.record(
            "admin_action",
            Some(account),
            None,
            json!({"action": "unlock"}),
        );
        Ok(())
    }

    /// Verify `username`/`password` for a client at `client`. An unknown user costs the same
    /// argon2 verification as a known one (a remembered right password costs microseconds).
    pub async fn authenticate(
        &self,
        username: &[u8],
        password: &[u8],
        client: IpAddr,
    ) -> AuthOutcome {
        self.authenticate_at(username, password, client, crate::store::unix_now_ms())
            .await
    }

    /// [`Authenticator::authenticate`] at an explicit time (Unix ms; tests drive the clock).
    pub async fn authenticate_at(
        &self,
        username: &[u8],
        password: &[u8],
        client: IpAddr,
        now_ms: u64,
    ) -> AuthOutcome {
        let name = String::from_utf8_lossy(username).into_owned();
        let password = Zeroizing::new(password.to_vec());
        let outcome = match self.decide(&name, password, client, now_ms).await {
            Ok(outcome) => outcome,
            Err(operation) => {
                self.inner
                    .metrics
                    .store_errors
                    .get_or_create(&OperationLabels { operation })
                    .inc();
                AuthOutcome::Rejected(RejectReason::StoreUnavailable)
            }
        };
        let (result, reason) = match &outcome {
            AuthOutcome::Accepted { .. } => ("success", "ok"),
            AuthOutcome::Rejected(reason) => ("failure", reason.as_str()),
        };
        self.inner
            .metrics
            .auth_results
            .get_or_create(&AuthLabels { result, reason })
            .inc();
        outcome
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
