//! The one interface for durable state: strikes and suspensions, lockouts and failure counters,
//! login history, the TOTP replay cache.
//!
//! State is addressed by a [`Namespace`] and a subject string (an account name, or a keyed
//! hash of a client address — never a raw address). A small set of primitives covers every
//! user: sliding-window event counters, "active until" flags, bounded histories and
//! claim-once markers. Time is passed in (`now_ms`, Unix milliseconds) so tests can drive it.
//!
//! Backends: [`MemoryStore`] (tests and `--store memory`), the embedded file store (default,
//! crash-safe) and Redis (fleet). Callers hold a [`Store`] and never see which.

mod memory;

use std::time::Duration;

pub use memory::MemoryStore;

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
}

impl Namespace {
    /// Every namespace (for migration and listing).
    pub const ALL: [Self; 9] = [
        Self::Strikes,
        Self::Suspension,
        Self::AuthFailuresAccount,
        Self::AuthFailuresClient,
        Self::LockoutAccount,
        Self::LockoutClient,
        Self::LoginHistory,
        Self::TotpReplay,
        Self::TrustedWindow,
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
}

/// Handle to the configured backend. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    /// In-memory (tests; state is lost on exit).
    Memory(MemoryStore),
}

impl Store {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self::Memory(MemoryStore::default())
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
        }
    }

    /// The history, oldest first (empty when expired or absent).
    pub async fn history(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.history(namespace, subject, now_ms)),
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
        }
    }

    /// Forget everything about `subject` in `namespace` (admin "clear").
    pub async fn clear(&self, namespace: Namespace, subject: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.clear(namespace, subject);
                Ok(())
            }
        }
    }

    /// Subjects that currently hold live state in `namespace` (for admin listings).
    pub async fn subjects(
        &self,
        namespace: Namespace,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.subjects(namespace, now_ms)),
        }
    }
}

/// The current time as Unix milliseconds (the server's clock; the store never reads it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
