//! Authentication of SOCKS5 users (RFC 1929 username/password) and account security.
//!
//! One call, [`Authenticator::authenticate`], decides a login:
//!
//! 1. lockouts: the account name and the client address (as a keyed hash) are each locked for
//!    `lockout_duration` once `max_failures` failures fall within `failure_window`;
//! 2. credentials: one argon2id verification off the async threads, for known and unknown
//!    names alike (unknown names verify a dummy hash with the same parameters), so a wrong
//!    user and a wrong password cost the same and get the same answer;
//! 3. TOTP (accounts with a `totp_secret`): the password is followed by the current 6-digit
//!    code; a good code opens a trusted window for that account from that client address in
//!    which the password alone is accepted; a code opens one window only (replay cache);
//! 4. GeoIP country lists (global and per account; unknown locations by setting);
//! 5. impossible travel against the account's previous login.
//!
//! Failures are counted (growing delay, then lockout), counted in [`Metrics`] and recorded in
//! the security event log ([`AuditLog`]); no password, code or secret is ever logged. State
//! lives in the [`Store`] so that a fleet shares it.
//!
//! The accounts file is re-read without a restart: [`Authenticator::spawn_accounts_watcher`]
//! polls its modification time every second and swaps the new accounts in atomically.

mod account_set;
pub mod account_store;
mod accounts;
mod directory;
mod key;
pub mod radius;
mod setup;
mod source;
pub mod totp;

use source::{FileStamp, file_stamp};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::json;
use zeroize::Zeroizing;

pub use account_set::AccountSet;
pub use accounts::{Account, AccountsError, AccountsFile, HashParams, check_name, hash_password};
pub use directory::{
    AccountDirectory, AccountPatch, DirectoryBackend, DirectoryError, ImportReport, NewAccount,
};
pub use key::{KeyError, PseudonymKey, shared_mode, warn_if_shared};
pub use setup::{DEFAULT_KEY_FILE, SecuritySetup, SetupError, key_file_path};

use crate::audit::AuditLog;
use crate::config::SecurityConfig;
use crate::geo::{
    CountryLists, CountryPolicy, GeoDb, GeoDecision, LoginPoint, TravelAction, travel_speed_kmh,
};
use crate::metrics::{AuthLabels, Metrics, OperationLabels, ReasonLabels};
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
}

/// The reloadable part: settings and the GeoIP database.
#[derive(Debug)]
struct Policy {
    settings: Settings,
    geo: Option<Arc<GeoDb>>,
}

/// The accounts (a map by name) plus a dummy hash with the same argon2 cost.
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
        let first = file.any().map(|account| account.password.as_str());
        let dummy_hash = accounts::dummy_hash_like(first);
        Self { file, dummy_hash }
    }

    /// A new set, keeping the dummy hash when the argon2 cost did not change (no hashing).
    fn replaced(&self, file: AccountSet) -> Self {
        let params = |phc: Option<&str>| {
            phc.and_then(|phc| argon2::PasswordHash::new(phc).ok())
                .and_then(|hash| argon2::Params::try_from(&hash).ok())
        };
        let old = params(self.file.any().map(|a| a.password.as_str()));
        let new = params(file.any().map(|a| a.password.as_str()));
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
    /// the store (counters, lockouts, windows, history) is kept.
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
    /// argon2 verification as a known one.
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

    /// The whole decision; `Err` names the store operation that failed.
    async fn decide(
        &self,
        name: &str,
        password: Zeroizing<Vec<u8>>,
        client: IpAddr,
        now_ms: u64,
    ) -> Result<AuthOutcome, &'static str> {
        let inner = &self.inner;
        let policy = inner.policy.load_full();
        let settings = &policy.settings;
        let store = &inner.store;
        let client_hash = inner.key.hash_address(client);
        let loaded = inner.accounts.load_full();
        let mut account = loaded.file.find(name).cloned();
        // Names that are not accounts reach the store only as keyed hashes (people type
        // passwords into the name field); they are counted and locked all the same.
        let subjects = Subjects {
            name: match account {
                Some(_) => name.to_owned(),
                None => format!("? {}", inner.key.hash_bytes(name.as_bytes())),
            },
            network: inner.key.hash_network(client),
        };

        // 1. Lockouts (account name and client network alike, known names or not).
        let locked_account = store
            .active_until(Namespace::LockoutAccount, &subjects.name, now_ms)
            .await
            .map_err(|_| "active_until")?;
        let locked_client = store
            .active_until(Namespace::LockoutClient, &subjects.network, now_ms)
            .await
            .map_err(|_| "active_until")?;
        if locked_account.is_some() || locked_client.is_some() {
            return Ok(AuthOutcome::Rejected(RejectReason::LockedOut));
        }

        // 2. Credentials: exactly one argon2 verification in the usual cases.
        let window_subject = format!("{name}:{client_hash}");
        let in_window = match account.as_ref().and_then(|a| a.totp_secret.as_ref()) {
            Some(_) => store
                .active_until(Namespace::TrustedWindow, &window_subject, now_ms)
                .await
                .map_err(|_| "active_until")?
                .is_some(),
            None => false,
        };
        let credentials = if let Some(radius) = inner.radius.get() {
            // RADIUS decides the password; the account carries no local settings.
            match radius.verify(name.as_bytes(), &password).await {
                radius::RadiusVerdict::Accept => {
                    account = Some(Account::new(name, String::new()));
                    Credentials::Password
                }
                radius::RadiusVerdict::Reject => Credentials::Bad,
                radius::RadiusVerdict::Unavailable => {
                    return Ok(AuthOutcome::Rejected(RejectReason::AccountsUnavailable));
                }
            }
        } else {
            let account = account.clone();
            tokio::task::spawn_blocking(move || {
                check_credentials(account.as_ref(), &loaded.dummy_hash, &password, in_window)
            })
            .await
            .unwrap_or(Credentials::Bad)
        };
        let account = match (account, credentials) {
            (Some(account), Credentials::Password | Credentials::PasswordAndCode(_))
                if account.disabled =>
            {
                inner.audit.record_at(
                    "auth_failure",
                    Some(name),
                    Some(client),
                    json!({"reason": RejectReason::Disabled.as_str()}),
                    now_ms,
                );
                return Ok(AuthOutcome::Rejected(RejectReason::Disabled));
            }
            (Some(account), Credentials::Password) => match account.totp_secret {
                Some(_) if !in_window => {
                    return self
                        .fail(
                            name,
                            &subjects,
                            true,
                            client,
                            RejectReason::TotpRequired,
                            now_ms,
                        )
                        .await;
                }
                _ => (account, false),
            },
            (Some(account), Credentials::PasswordAndCode(code)) => {
                // Only TOTP accounts accept a code; a code for any other account is bad too.
                let step = account
                    .totp_secret
                    .as_deref()
                    .and_then(|secret| totp::check(secret, &code, now_ms / 1_000));
                let Some(step) = step else {
                    return self
                        .fail(
                            name,
                            &subjects,
                            true,
                            client,
                            RejectReason::BadCredentials,
                            now_ms,
                        )
                        .await;
                };
                if in_window {
                    (account, false)
                } else {
                    // A code is good for one window: claim it for longer than it stays valid.
                    let claimed = store
                        .claim_once(
                            Namespace::TotpReplay,
                            &format!("{name}:{code}:{step}"),
                            Duration::from_secs(4 * totp::STEP_SECS),
                            now_ms,
                        )
                        .await
                        .map_err(|_| "claim_once")?;
                    if !claimed {
                        return self
                            .fail(
                                name,
                                &subjects,
                                true,
                                client,
                                RejectReason::TotpReplay,
                                now_ms,
                            )
                            .await;
                    }
                    (account, true)
                }
            }
            (known, _) => {
                return self
                    .fail(
                        name,
                        &subjects,
                        known.is_some(),
                        client,
                        RejectReason::BadCredentials,
                        now_ms,
                    )
                    .await;
            }
        };
        let (account, opens_window) = account;

        // 3. Country lists.
        let location = policy.geo.as_ref().and_then(|geo| geo.lookup(client));
        let account_lists = CountryLists::new(&account.allow_countries, &account.deny_countries);
        let decision = match &policy.geo {
            Some(_) => settings.countries.decide(
                &account_lists,
                location.as_ref().and_then(|l| l.country.as_deref()),
            ),
            // Per-account lists without a database cannot be honoured: fail closed.
            None if account_lists != CountryLists::default() => GeoDecision::DenyUnknown,
            None => GeoDecision::Allow,
        };
        if decision != GeoDecision::Allow {
            let country = match &decision {
                GeoDecision::DenyCountry(country) => country.as_str(),
                _ => "unknown",
            };
            inner.metrics.geo_denials.inc();
            inner.audit.record_at(
                "geo_denied",
                Some(name),
                Some(client),
                json!({"country": country}),
                now_ms,
            );
            return Ok(AuthOutcome::Rejected(RejectReason::GeoDenied));
        }

        // 4. Impossible travel.
        let point = location.as_ref().and_then(|l| {
            l.coordinates.map(|(lat, lon)| LoginPoint {
                at_ms: now_ms,
                lat,
                lon,
                radius_km: l.accuracy_km,
            })
        });
        if let Some(point) = point
            && settings.travel != TravelAction::Off
        {
            let history = store
                .history(Namespace::LoginHistory, name, now_ms)
                .await
                .map_err(|_| "history")?;
            let previous = history
                .last()
                .and_then(|entry| serde_json::from_slice::<LoginPoint>(entry).ok());
            if let Some(previous) = previous {
                let speed = travel_speed_kmh(&previous, &point);
                if speed > settings.max_speed_kmh {
                    let deny = settings.travel == TravelAction::Deny;
                    let action = if deny { "deny" } else { "alert" };
                    inner
                        .metrics
                        .impossible_travel
                        .get_or_create(&ReasonLabels { reason: action })
                        .inc();
                    let distance = crate::geo::haversine_km(
                        (previous.lat, previous.lon),
                        (point.lat, point.lon),
                    );
                    inner.audit.record_at(
                        "impossible_travel",
                        Some(name),
                        Some(client),
                        json!({
                            "action": action,
                            "speed_kmh": speed.is_finite().then(|| speed.round()),
                            "distance_km": distance.round(),
                            "elapsed_s": now_ms.saturating_sub(previous.at_ms) / 1_000,
                            "country": location.as_ref().and_then(|l| l.country.clone()),
                        }),
                        now_ms,
                    );
                    if deny {
                        return Ok(AuthOutcome::Rejected(RejectReason::ImpossibleTravel));
                    }
                }
            }
            let entry = serde_json::to_vec(&point).map_err(|_| "push_history")?;
            store
                .push_history(
                    Namespace::LoginHistory,
                    name,
                    &entry,
                    settings.history_len,
                    settings.history_ttl,
                    now_ms,
                )
                .await
                .map_err(|_| "push_history")?;
        }

        // 5. Success.
        if opens_window {
            let until = now_ms.saturating_add(duration_ms(settings.trusted_window));
            store
                .set_until(Namespace::TrustedWindow, &window_subject, until)
                .await
                .map_err(|_| "set_until")?;
        }
        store
            .clear(Namespace::AuthFailuresAccount, &subjects.name)
            .await
            .map_err(|_| "clear")?;
        Ok(AuthOutcome::Accepted {
            account: account.name.clone(),
        })
    }

    /// Count a failed login for the account name and the client address, lock either out at
    /// the threshold, record the event, and answer after the growing delay.
    async fn fail(
        &self,
        name: &str,
        subjects: &Subjects,
        known: bool,
        client: IpAddr,
        reason: RejectReason,
        now_ms: u64,
    ) -> Result<AuthOutcome, &'static str> {
        let inner = &self.inner;
        let policy = inner.policy.load_full();
        let settings = &policy.settings;
        let store = &inner.store;
        let window = settings.failure_window;
        let by_account = store
            .record_event(
                Namespace::AuthFailuresAccount,
                &subjects.name,
                now_ms,
                window,
            )
            .await
            .map_err(|_| "record_event")?;
        let by_client = store
            .record_event(
                Namespace::AuthFailuresClient,
                &subjects.network,
                now_ms,
                window,
            )
            .await
            .map_err(|_| "record_event")?;
        // Unknown names are not written to the log: users sometimes type a password there.
        let logged_name = known.then_some(name);
        inner.audit.record_at(
            "auth_failure",
            logged_name,
            Some(client),
            json!({"reason": reason.as_str(), "known_account": known}),
            now_ms,
        );
        let until = now_ms.saturating_add(duration_ms(settings.lockout));
        for (hit, namespace, subject, label) in [
            (
                by_account,
                Namespace::LockoutAccount,
                subjects.name.as_str(),
                "account",
            ),
            (
                by_client,
                Namespace::LockoutClient,
                subjects.network.as_str(),
                "client_address",
            ),
        ] {
            if hit >= settings.max_failures {
                store
                    .set_until(namespace, subject, until)
                    .await
                    .map_err(|_| "set_until")?;
                inner
                    .metrics
                    .lockouts
                    .get_or_create(&ReasonLabels { reason: label })
                    .inc();
                inner.audit.record_at(
                    "lockout",
                    logged_name,
                    Some(client),
                    json!({
                        "scope": label,
                        "failures": hit,
                        "until_ms": until,
                        "known_account": known,
                    }),
                    now_ms,
                );
            }
        }
        let delay = settings.delay(by_account.max(by_client));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(AuthOutcome::Rejected(reason))
    }
}

/// One argon2 verification (two only for a TOTP account inside a trusted window whose input
/// is not the bare password).
fn check_credentials(
    account: Option<&Account>,
    dummy_hash: &str,
    input: &[u8],
    in_window: bool,
) -> Credentials {
    let Some(account) = account else {
        let _ = accounts::verify_password(dummy_hash, input);
        return Credentials::Bad;
    };
    let verify = |password: &[u8]| accounts::verify_password(&account.password, password);
    if account.totp_secret.is_none() {
        return if verify(input) {
            Credentials::Password
        } else {
            Credentials::Bad
        };
    }
    let split = totp::split_code(input);
    if in_window && verify(input) {
        return Credentials::Password;
    }
    match split {
        Some((password, code)) if verify(password) => Credentials::PasswordAndCode(code.to_owned()),
        Some(_) => Credentials::Bad,
        None if !in_window && verify(input) => Credentials::Password,
        None => Credentials::Bad,
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
