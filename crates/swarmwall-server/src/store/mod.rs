//! The one interface for durable state: strikes and suspensions, lockouts and failure counters,
//! login history, the TOTP replay cache.
//!
//! State is addressed by a [`Namespace`] and a subject string (an account name, or a keyed
//! hash of a client address — never a raw address). A small set of primitives covers every
//! user: sliding-window event counters, "active until" flags, bounded histories and
//! claim-once markers. Time is passed in (`now_ms`, Unix milliseconds) so tests can drive it.
//!
//! Backends: [`MemoryStore`] (tests and `--store memory`), [`EmbeddedStore`] (default: a redb
//! file in the data directory, crash-safe) and [`RedisStore`] (a fleet sharing state). Callers
//! hold a [`Store`] and never see which; [`Store::open`] picks one from `[store]`.
//!
//! Layout: `value.rs` (the value model and update rules shared by memory and embedded, and the
//! unit of migration), `memory.rs`, `embedded.rs`, `redis.rs`, `migrate.rs`.

mod embedded;
mod memory;
mod migrate;
mod redis;
mod reserve;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use embedded::{EmbeddedStore, FILE_NAME as EMBEDDED_FILE_NAME};
pub use memory::MemoryStore;
pub use migrate::{MigrationReport, migrate};
pub use redis::RedisStore;
pub use reserve::Reservation;
pub use value::StoredValue;

use crate::config::{StoreBackend, StoreConfig};
use crate::metrics::Metrics;

/// Label of the subkey (of the node secret) that signs Redis values: see
/// [`Store::attach_integrity_key`].
pub const INTEGRITY_KEY_PURPOSE: &str = "store-integrity";

/// A Redis call that, in `on_outage = "local"` mode, is answered from node-local state while
/// Redis is known down or when the call fails for want of Redis (see `redis/outage.rs`).
macro_rules! redis_or_local {
    ($store:expr, $namespace:expr, $operation:literal, |$local:ident| $local_call:expr, $redis_call:expr) => {{
        let store = $store;
        if let Some($local) = store.local_now($namespace, $operation) {
            return Ok($local_call);
        }
        match $redis_call.await {
            Err(error) => match store.local_after($namespace, $operation, &error) {
                Some($local) => Ok($local_call),
                None => Err(error),
            },
            ok => ok,
        }
    }};
}

/// Which kind of state a key holds; also the key prefix in every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// Blocked-BitTorrent incidents per account (graduated response).
    Strikes,
    /// Suspension deadline per account.
    Suspension,
    /// Failed logins per account.
    AuthFailuresAccount,
    /// Failed logins per client address (keyed hash).
    AuthFailuresClient,
    /// Lockout deadline per account.
    LockoutAccount,
    /// Lockout deadline per client address (keyed hash).
    LockoutClient,
    /// Recent logins per account (impossible travel).
    LoginHistory,
    /// TOTP codes already used (replay cache), subject `account:code:timestep`.
    TotpReplay,
    /// TOTP trusted windows, subject `account:client-hash`.
    TrustedWindow,
    /// Burst markers of the graduated response: one claim per subject and burst window makes
    /// several blocked flows one incident, atomically across nodes.
    StrikeBurst,
}

impl Namespace {
    /// Every namespace (for migration and listing).
    pub const ALL: [Self; 10] = [
        Self::Strikes,
        Self::Suspension,
        Self::AuthFailuresAccount,
        Self::AuthFailuresClient,
        Self::LockoutAccount,
        Self::LockoutClient,
        Self::LoginHistory,
        Self::TotpReplay,
        Self::TrustedWindow,
        Self::StrikeBurst,
    ];

    /// Stable key prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strikes => "strikes",
            Self::Suspension => "suspension",
            Self::AuthFailuresAccount => "authfail_account",
            Self::AuthFailuresClient => "authfail_client",
            Self::LockoutAccount => "lockout_account",
            Self::LockoutClient => "lockout_client",
            Self::LoginHistory => "login_history",
            Self::TotpReplay => "totp_replay",
            Self::TrustedWindow => "trusted_window",
            Self::StrikeBurst => "strike_burst",
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend did not answer within its timeout.
    #[error("state store timed out")]
    Timeout,
    /// The backend is unreachable or returned an error.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("state store holds corrupt data: {0}")]
    Corrupt(String),
    /// The `[store]` section cannot be used (names the key).
    #[error("invalid configuration: key {0}")]
    Config(String),
}

/// The state a login reads before anything else ([`Store::login_marks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginMarks {
    /// The account name or the client network is locked out.
    pub locked_out: bool,
    /// The account's failures within the window, when the backend read them with the marks.
    pub account_failures: Option<u32>,
}

/// Handle to the configured backend. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    /// In-memory (tests; state is lost on exit).
    Memory(MemoryStore),
    /// The embedded redb file (default).
    Embedded(EmbeddedStore),
    /// Redis (fleet).
    Redis(RedisStore),
}

impl Store {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self::Memory(MemoryStore::default())
    }

    /// Open the backend `config.url` names: the embedded file in `data_dir` (or the directory
    /// given as `embedded:DIR`), Redis, or memory. The embedded store starts its purge task and
    /// Redis its health check, so call this inside the tokio runtime.
    pub async fn open(
        config: &StoreConfig,
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        config
            .validate()
            .map_err(|(key, message)| StoreError::Config(format!("`{key}`: {message}")))?;
        match &config.url {
            StoreBackend::Memory => {
                metrics.store_up.set(1);
                Ok(Self::memory())
            }
            StoreBackend::Embedded(dir) => {
                let dir = dir.clone().unwrap_or_else(|| data_dir.to_owned());
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                    .await
                    .map_err(|error| StoreError::Unavailable(error.to_string()))??;
                store.attach_metrics(metrics);
                store.spawn_purge(config.purge_interval);
                Ok(Self::Embedded(store))
            }
            StoreBackend::Redis(url) => {
                metrics.store_up.set(0);
                let store = RedisStore::connect(config, url, metrics).await?;
                // One ping so the log says at start whether Redis answers; a failure is not
                // fatal (the node serves and reconnects when Redis returns).
                if let Err(error) = store.ping().await {
                    tracing::warn!(%error, "state store not reachable at start; will retry");
                }
                Ok(Self::Redis(store))
            }
        }
    }

    /// Sign and check the access-granting values (lockouts, suspensions, trusted windows,
    /// used TOTP codes) with `key` from now on. Only Redis values are signed: the embedded
    /// and memory stores live on this node, beside the secret itself.
    pub fn attach_integrity_key(&self, key: [u8; 32]) {
        if let Self::Redis(store) = self {
            store.attach_integrity_key(key);
        }
    }

    /// Which backend, for logs (`embedded:/var/lib/swarmwall/state.redb`, a Redis URL without
    /// password, `memory`).
    pub fn describe(&self) -> String {
        match self {
            Self::Memory(_) => "memory".to_owned(),
            Self::Embedded(store) => format!("embedded:{}", store.path().display()),
            Self::Redis(store) => store.describe(),
        }
    }

    /// Keep `checkpoint` (JSON) as the latest security event log checkpoint of `node`. Only
    /// Redis holds checkpoints (an embedded or memory store is on the host being protected):
    /// `Ok(false)` for the others.
    pub async fn put_audit_checkpoint(
        &self,
        node: &str,
        checkpoint: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Redis(store) => store
                .put_audit_checkpoint(node, checkpoint)
                .await
                .map(|()| true),
            Self::Memory(_) | Self::Embedded(_) => Ok(false),
        }
    }

    /// The latest security event log checkpoint of `node` (Redis only; `None` elsewhere).
    pub async fn audit_checkpoint(&self, node: &str) -> Result<Option<String>, StoreError> {
        match self {
            Self::Redis(store) => store.audit_checkpoint(node).await,
            Self::Memory(_) | Self::Embedded(_) => Ok(None),
        }
    }

    /// Record one event at `now_ms` and return how many events fall within the last `window`
    /// (including this one). Older events are forgotten.
    pub async fn record_event(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<u32, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.record_event(namespace, subject, now_ms, window)),
            Self::Embedded(store) => {
                let result = store
                    .update(namespace, subject, now_ms, move |old| {
                        let (new, count) = value::record_event(old, now_ms, window);
                        (Some(new), count)
                    })
                    .await;
                store.observe_result("record_event", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "record_event",
                |local| local.record_event(namespace, subject, now_ms, window),
                store.record_event(namespace, subject, now_ms, window)
            ),
        }
    }

    /// Count the events within the last `window` without recording one.
    pub async fn count_events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<u32, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.count_events(namespace, subject, now_ms, window)),
            Self::Embedded(_) => {
                let events = self.events(namespace, subject, now_ms, window).await?;
                Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "count_events",
                |local| local.count_events(namespace, subject, now_ms, window),
                store.count_events(namespace, subject, now_ms, window)
            ),
        }
    }

    /// Timestamps (Unix ms) of the events within the last `window`, oldest first.
    pub async fn events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<Vec<u64>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.events(namespace, subject, now_ms, window)),
            Self::Embedded(store) => {
                let result = store
                    .get(namespace, subject, now_ms)
                    .map(|old| value::events(old.as_ref(), now_ms, window));
                store.observe_result("events", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "events",
                |local| local.events(namespace, subject, now_ms, window),
                store.events(namespace, subject, now_ms, window)
            ),
        }
    }

    /// Mark `subject` active until `until_ms` (a lockout, a suspension, a trusted window).
    /// A later deadline replaces an earlier one; an earlier one never shortens a later one.
    pub async fn set_until(
        &self,
        namespace: Namespace,
        subject: &str,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.set_until(namespace, subject, until_ms);
                Ok(())
            }
            Self::Embedded(store) => {
                let result = store
                    .update(namespace, subject, 0, move |old| {
                        (Some(value::set_until(old.as_ref(), until_ms)), ())
                    })
                    .await;
                store.observe_result("set_until", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "set_until",
                |local| local.set_until(namespace, subject, until_ms),
                store.set_until(namespace, subject, until_ms)
            ),
        }
    }

    /// What every login reads first, in one go where the backend allows it: whether the
    /// account name or the client network is locked out, and (embedded and memory backends)
    /// how many failures the account has within `window`. The embedded store reads all three
    /// in one transaction; Redis reads the two marks and leaves the count to a later
    /// [`Store::count_events`] (`account_failures: None`) so that failing logins pay no extra
    /// round trip.
    pub async fn login_marks(
        &self,
        account: &str,
        network: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<LoginMarks, StoreError> {
        match self {
            Self::Embedded(store) => {
                let result = store
                    .get_many(
                        [
                            (Namespace::LockoutAccount, account),
                            (Namespace::LockoutClient, network),
                            (Namespace::AuthFailuresAccount, account),
                        ],
                        now_ms,
                    )
                    .map(|[account_mark, network_mark, failures]| {
                        let failures = value::events(failures.as_ref(), now_ms, window).len();
                        LoginMarks {
                            locked_out: value::active_until(account_mark.as_ref(), now_ms)
                                .is_some()
                                || value::active_until(network_mark.as_ref(), now_ms).is_some(),
                            account_failures: Some(u32::try_from(failures).unwrap_or(u32::MAX)),
                        }
                    });
                store.observe_result("login_marks", result)
            }
            Self::Memory(_) | Self::Redis(_) => {
                let locked_out = self
                    .active_until(Namespace::LockoutAccount, account, now_ms)
                    .await?
                    .is_some()
                    || self
                        .active_until(Namespace::LockoutClient, network, now_ms)
                        .await?
                        .is_some();
                let account_failures = match self {
                    Self::Memory(store) => Some(store.count_events(
                        Namespace::AuthFailuresAccount,
                        account,
                        now_ms,
                        window,
                    )),
                    _ => None,
                };
                Ok(LoginMarks {
                    locked_out,
                    account_failures,
                })
            }
        }
    }

    /// The deadline of an active mark, or `None` when there is none or it has passed.
    pub async fn active_until(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.active_until(namespace, subject, now_ms)),
            Self::Embedded(store) => {
                let result = store
                    .get(namespace, subject, now_ms)
                    .map(|old| value::active_until(old.as_ref(), now_ms));
                store.observe_result("active_until", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "active_until",
                |local| store.local_active_until(local, namespace, subject, now_ms),
                store.active_until(namespace, subject, now_ms)
            ),
        }
    }

    /// Append `entry` to a bounded history (newest last), keeping at most `max_entries`;
    /// the whole history expires `ttl` after the last append.
    pub async fn push_history(
        &self,
        namespace: Namespace,
        subject: &str,
        entry: &[u8],
        max_entries: usize,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.push_history(namespace, subject, entry, max_entries, ttl, now_ms);
                Ok(())
            }
            Self::Embedded(store) => {
                let entry = entry.to_vec();
                let result = store
                    .update(namespace, subject, now_ms, move |old| {
                        let new = value::push_history(old, &entry, max_entries, ttl, now_ms);
                        (Some(new), ())
                    })
                    .await;
                store.observe_result("push_history", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "push_history",
                |local| local.push_history(namespace, subject, entry, max_entries, ttl, now_ms),
                store.push_history(namespace, subject, entry, max_entries, ttl)
            ),
        }
    }

    /// The history, oldest first (empty when expired or absent). On Redis the history expires
    /// by Redis's own clock (`PEXPIRE`), not by `now_ms`.
    pub async fn history(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.history(namespace, subject, now_ms)),
            Self::Embedded(store) => {
                let result = store
                    .get(namespace, subject, now_ms)
                    .map(|old| value::history(old.as_ref(), now_ms));
                store.observe_result("history", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "history",
                |local| local.history(namespace, subject, now_ms),
                store.history(namespace, subject)
            ),
        }
    }

    /// Atomically claim `subject` for `ttl`: true the first time, false while a claim holds
    /// (the TOTP replay cache). Expired claims can be claimed again.
    pub async fn claim_once(
        &self,
        namespace: Namespace,
        subject: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.claim_once(namespace, subject, ttl, now_ms)),
            Self::Embedded(store) => {
                let result = store
                    .update(
                        namespace,
                        subject,
                        now_ms,
                        move |old| match value::claim_once(old.as_ref(), ttl, now_ms) {
                            Some(claim) => (Some(claim), true),
                            None => (old, false),
                        },
                    )
                    .await;
                store.observe_result("claim_once", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "claim_once",
                |local| local.claim_once(namespace, subject, ttl, now_ms),
                store.claim_once(namespace, subject, ttl, now_ms)
            ),
        }
    }

    /// Forget everything about `subject` in `namespace` (admin "clear").
    pub async fn clear(&self, namespace: Namespace, subject: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.clear(namespace, subject);
                Ok(())
            }
            Self::Embedded(store) => {
                let result = store.update(namespace, subject, 0, |_| (None, ())).await;
                store.observe_result("clear", result)
            }
            Self::Redis(store) => redis_or_local!(
                store,
                namespace,
                "clear",
                |local| local.clear(namespace, subject),
                store.clear(namespace, subject)
            ),
        }
    }

    /// Subjects that currently hold live state in `namespace` (for admin listings).
    pub async fn subjects(
        &self,
        namespace: Namespace,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .dump(namespace, now_ms)
            .await?
            .into_iter()
            .map(|(subject, _)| subject)
            .collect())
    }

    /// Every live value in `namespace` (listing and migration).
    pub async fn dump(
        &self,
        namespace: Namespace,
        now_ms: u64,
    ) -> Result<Vec<(String, StoredValue)>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.dump(namespace, now_ms)),
            Self::Embedded(store) => {
                let result = store.dump(namespace, now_ms);
                store.observe_result("dump", result)
            }
            Self::Redis(store) => store.dump(namespace, now_ms).await,
        }
    }

    /// Write `value` for `subject` as-is, replacing what was there (migration).
    pub async fn restore(
        &self,
        namespace: Namespace,
        subject: &str,
        value: &StoredValue,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.restore(namespace, subject, value.clone());
                Ok(())
            }
            Self::Embedded(store) => {
                let value = value.clone();
                let result = store
                    .update(namespace, subject, 0, move |_| (Some(value), ()))
                    .await;
                store.observe_result("restore", result)
            }
            Self::Redis(store) => store.restore(namespace, subject, value).await,
        }
    }
}

/// The default data directory: `$SWARMWALL_DATA_DIR` when set, else `/var/lib/swarmwall` when
/// it exists and is writable or can be created, else `$XDG_STATE_HOME/swarmwall`, else
/// `~/.local/state/swarmwall`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWARMWALL_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let system = Path::new("/var/lib/swarmwall");
    if dir_is_writable(system) {
        return system.to_owned();
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("swarmwall");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/state/swarmwall");
    }
    PathBuf::from(".swarmwall-state")
}

/// Create the data directory `dir` (and missing parents) with mode 0700: it holds the state
/// store, the secret key and the audit log. An existing directory is left as it is, with a
/// warning when group or others may enter it (it may be shared on purpose, e.g. `/tmp`).
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(metadata) = std::fs::metadata(dir)
        && metadata.is_dir()
    {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                directory = %dir.display(),
                mode = format_args!("{mode:04o}"),
                "data directory is accessible by group or others; run chmod 700"
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", dir.display()))
        })
}

/// True when `dir` exists and accepts a new file, or can be created.
fn dir_is_writable(dir: &Path) -> bool {
    if !dir.exists() {
        return dir.parent().is_some_and(|parent| {
            nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK).is_ok()
        });
    }
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The current time as Unix milliseconds (the server's clock; the store never reads it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{EmbeddedStore, LoginMarks, Namespace, Store};

    /// `login_marks` reads what the separate calls read, on every local backend.
    async fn marks_match_separate_reads(store: Store) {
        let now = 1_000_000;
        let window = Duration::from_secs(60);
        let clean = store.login_marks("acct", "net", now, window).await.unwrap();
        assert_eq!(
            clean,
            LoginMarks {
                locked_out: false,
                account_failures: Some(0)
            }
        );
        for i in 0..3 {
            store
                .record_event(Namespace::AuthFailuresAccount, "acct", now + i, window)
                .await
                .unwrap();
        }
        // An old failure outside the window does not count.
        store
            .record_event(
                Namespace::AuthFailuresAccount,
                "acct",
                now - 120_000,
                window,
            )
            .await
            .unwrap();
        let counted = store
            .login_marks("acct", "net", now + 5, window)
            .await
            .unwrap();
        assert_eq!(counted.account_failures, Some(3));
        assert!(!counted.locked_out);
        // A lockout of the network alone, then of the account alone, is seen; an expired one
        // is not.
        store
            .set_until(Namespace::LockoutClient, "net", now + 10)
            .await
            .unwrap();
        assert!(
            store
                .login_marks("other", "net", now + 5, window)
                .await
                .unwrap()
                .locked_out
        );
        assert!(
            !store
                .login_marks("other", "net", now + 11, window)
                .await
                .unwrap()
                .locked_out
        );
        store
            .set_until(Namespace::LockoutAccount, "acct", now + 50)
            .await
            .unwrap();
        assert!(
            store
                .login_marks("acct", "net2", now + 20, window)
                .await
                .unwrap()
                .locked_out
        );
        assert!(
            !store
                .login_marks("acct2", "net2", now + 20, window)
                .await
                .unwrap()
                .locked_out
        );
    }

    #[tokio::test]
    async fn memory_login_marks() {
        marks_match_separate_reads(Store::memory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_login_marks_in_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        marks_match_separate_reads(Store::Embedded(store)).await;
    }
}
