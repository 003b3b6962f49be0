//! Small traits the admin handlers work against, so the admin surface does not depend on the
//! internals of the graduated-response engine or the audit log: [`AccountControl`] (strike,
//! suspension and lockout state and the admin actions on it) and [`SecurityEvents`] (recent
//! events and the sink for admin actions). Default implementations sit over the real
//! [`Store`]/[`Strikes`] and [`AuditLog`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use super::BoxFuture;
use crate::audit::AuditLog;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{Namespace, Store, StoreError};
use crate::strikes::{StrikeSubject, Strikes};

/// One configured account as the accounts view reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountEntry {
    /// Login name.
    pub name: String,
    /// True when logins are refused for this account.
    pub disabled: bool,
}

/// Graduated-response and lockout state of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountState {
    /// Strike incidents within the engine's counting window.
    pub strikes: u32,
    /// Suspension deadline (Unix ms) while suspended.
    pub suspended_until_ms: Option<u64>,
    /// Lockout deadline (Unix ms) while locked out after failed logins.
    pub locked_until_ms: Option<u64>,
}

/// Account state and admin actions, over the graduated-response engine and the store.
pub trait AccountControl: Send + Sync + 'static {
    /// State of `account` at `now_ms`.
    fn state<'a>(
        &'a self,
        account: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<AccountState, StoreError>>;

    /// Forget every strike of `account`.
    fn clear_strikes<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Suspend `account` until `until_ms` (replaces any current suspension).
    fn suspend<'a>(
        &'a self,
        account: &'a str,
        until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// End any suspension of `account`.
    fn unsuspend<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Lift the brute-force lockout of `account` and forget its failed logins.
    fn unlock<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Subjects (account names, or `client:<hash>` for unauthenticated clients) that are
    /// suspended or locked out at `now_ms`, found without visiting every account.
    fn restricted(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
}

/// [`AccountControl`] straight over the store namespaces (`Strikes`, `Suspension`,
/// `LockoutAccount`, subject = account name) plus [`Strikes::suspended_until`]. An admin
/// suspension counts `suspensions{reason="admin"}` when given the metrics.
#[derive(Debug, Clone)]
pub struct StoreAccountControl {
    store: Store,
    strikes: Strikes,
    strike_window: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl StoreAccountControl {
    /// Control over `store` and `strikes`, counting strikes within the last 24 hours.
    pub fn new(store: Store, strikes: Strikes) -> Self {
        Self {
            store,
            strikes,
            strike_window: Duration::from_secs(24 * 3600),
            metrics: None,
        }
    }

    /// Count admin suspensions in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Count strikes within `window` instead.
    pub fn with_strike_window(mut self, window: Duration) -> Self {
        self.strike_window = window;
        self
    }
}

impl AccountControl for StoreAccountControl {
    fn state<'a>(
        &'a self,
        account: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<AccountState, StoreError>> {
        Box::pin(async move {
            let strikes = self
                .store
                .count_events(Namespace::Strikes, account, now_ms, self.strike_window)
                .await?;
            let by_engine = self
                .strikes
                .suspended_until(&StrikeSubject::Account(account.to_owned()), now_ms)
                .await?;
            let by_store = self
                .store
                .active_until(Namespace::Suspension, account, now_ms)
                .await?;
            let locked_until_ms = self
                .store
                .active_until(Namespace::LockoutAccount, account, now_ms)
                .await?;
            Ok(AccountState {
                strikes,
                suspended_until_ms: by_engine.max(by_store),
                locked_until_ms,
            })
        })
    }

    fn clear_strikes<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.store.clear(Namespace::Strikes, account))
    }

    fn suspend<'a>(
        &'a self,
        account: &'a str,
        until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.store.clear(Namespace::Suspension, account).await?;
            self.store
                .set_until(Namespace::Suspension, account, until_ms)
                .await?;
            if let Some(metrics) = &self.metrics {
                metrics
                    .suspensions
                    .get_or_create(&ReasonLabels { reason: "admin" })
                    .inc();
            }
            Ok(())
        })
    }

    fn unsuspend<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.store.clear(Namespace::Suspension, account))
    }

    fn unlock<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.store.clear(Namespace::LockoutAccount, account).await?;
            self.store
                .clear(Namespace::AuthFailuresAccount, account)
                .await
        })
    }

    fn restricted(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut subjects = self.store.subjects(Namespace::Suspension, now_ms).await?;
            subjects.extend(
                self.store
                    .subjects(Namespace::LockoutAccount, now_ms)
                    .await?,
            );
            subjects.sort();
            subjects.dedup();
            Ok(subjects)
        })
    }
}

/// Source of recent security events and sink for admin actions.
pub trait SecurityEvents: Send + Sync + 'static {
    /// Record one event (same contract as [`AuditLog::record`]).
    fn record(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
    );

    /// The most recent `limit` events, newest last.
    fn recent(&self, limit: usize) -> Vec<serde_json::Value>;
}

/// [`SecurityEvents`] over the hash-chained [`AuditLog`].
#[derive(Debug, Clone)]
pub struct AuditEvents {
    log: AuditLog,
}

impl AuditEvents {
    /// Events from and into `log`.
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

impl SecurityEvents for AuditEvents {
    fn record(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
    ) {
        self.log.record(kind, account, client, details);
    }

    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        self.log.recent(limit)
    }
}

/// A bounded in-memory event list (demos and tests). Client addresses are not kept.
#[derive(Debug, Clone)]
pub struct MemoryEvents {
    inner: Arc<Mutex<VecDeque<serde_json::Value>>>,
    capacity: usize,
}

impl MemoryEvents {
    /// Keep at most `capacity` events (oldest dropped first).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(VecDeque::new())),
            capacity: capacity.max(1),
        }
    }
}

impl SecurityEvents for MemoryEvents {
    fn record(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
    ) {
        let _ = client;
        let event = serde_json::json!({
            "ts_ms": crate::store::unix_now_ms(),
            "kind": kind,
            "account": account,
            "details": details,
        });
        let mut events = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() >= self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        let events = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = events.len().saturating_sub(limit);
        events.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_events_are_bounded_and_newest_last() {
        let events = MemoryEvents::new(3);
        for n in 0..5 {
            events.record("auth_failure", None, None, serde_json::json!({ "n": n }));
        }
        let recent = events.recent(10);
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[2]["details"]["n"], 4);
        assert_eq!(events.recent(1)[0]["details"]["n"], 4);
        assert!(events.recent(0).is_empty());
    }

    #[tokio::test]
    async fn store_control_suspends_and_clears() {
        let store = Store::memory();
        let control = StoreAccountControl::new(store.clone(), Strikes::new(store.clone()));
        let now = crate::store::unix_now_ms();
        store
            .record_event(Namespace::Strikes, "alice", now, Duration::from_secs(60))
            .await
            .unwrap();
        control.suspend("alice", now + 60_000).await.unwrap();
        let state = control.state("alice", now).await.unwrap();
        assert_eq!(state.strikes, 1);
        assert_eq!(state.suspended_until_ms, Some(now + 60_000));
        control.suspend("alice", now + 1_000).await.unwrap();
        let state = control.state("alice", now).await.unwrap();
        assert_eq!(state.suspended_until_ms, Some(now + 1_000));
        store
            .set_until(Namespace::LockoutAccount, "bob", now + 5_000)
            .await
            .unwrap();
        assert_eq!(control.restricted(now).await.unwrap(), ["alice", "bob"]);
        control.unsuspend("alice").await.unwrap();
        assert_eq!(control.restricted(now).await.unwrap(), ["bob"]);
        control.unlock("bob").await.unwrap();
        assert!(control.restricted(now).await.unwrap().is_empty());
        control.clear_strikes("alice").await.unwrap();
        assert_eq!(
            control.state("alice", now).await.unwrap(),
            AccountState::default()
        );
    }
}
