//! `[store] on_outage = "local"`: while Redis is unreachable, the login state (failure
//! counters, lockouts, trusted windows, used TOTP codes, login history) is kept in memory on
//! this node, so password verification goes on; when Redis answers again the counters,
//! lockouts, windows and claims are merged into it (raise-only, signed) and the local copy is
//! dropped. Strikes and suspensions are not kept here: strikes are buffered by the strikes
//! engine, and suspension checks answer from what the node last knew.
//!
//! The trade-off (docs/operations.md, "Fleet: state store"): during an outage each node counts failures
//! and replayed TOTP codes on its own, so a guesser spread over N nodes gets N times the
//! failure budget, and a TOTP code used on one node can be used once more on another until
//! its step passes; lockouts set elsewhere before the outage are known only if this node had
//! seen them. `fail_closed` (the default) refuses new logins instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::RedisStore;
use crate::metrics::OperationLabels;
use crate::store::memory::MemoryStore;
use crate::store::value::StoredValue;
use crate::store::{Namespace, StoreError};

/// Most node-local values during one outage: beyond it (a flood of names or addresses) the
/// node stops answering locally and fails closed, as in `fail_closed` mode.
const MAX_LOCAL_VALUES: usize = 200_000;

/// The node-local state and the merge guard.
#[derive(Default)]
pub(super) struct Local {
    store: MemoryStore,
    merging: AtomicBool,
    full_warned: AtomicBool,
}

impl Local {
    /// The local store, unless it is full (then warn once per outage).
    fn usable(&self) -> Option<&MemoryStore> {
        if self.store.len() < MAX_LOCAL_VALUES {
            return Some(&self.store);
        }
        if !self.full_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = MAX_LOCAL_VALUES,
                "node-local login state is full during the store outage; failing closed"
            );
        }
        None
    }
}

impl Namespace {
    /// Login state a node may keep on its own during an outage.
    fn kept_locally(self) -> bool {
        matches!(
            self,
            Self::AuthFailuresAccount
                | Self::AuthFailuresClient
                | Self::LockoutAccount
                | Self::LockoutClient
                | Self::TrustedWindow
                | Self::TotpReplay
                | Self::LoginHistory
        )
    }
}

/// Namespaces merged back into Redis, in this order (lockouts before the counters).
const MERGED: [Namespace; 6] = [
    Namespace::LockoutAccount,
    Namespace::LockoutClient,
    Namespace::TotpReplay,
    Namespace::TrustedWindow,
    Namespace::AuthFailuresAccount,
    Namespace::AuthFailuresClient,
];

impl RedisStore {
    /// In `local` mode, while Redis is known to be down: the node-local store for
    /// `namespace` (the call is counted).
    pub(crate) fn local_now(
        &self,
        namespace: Namespace,
        operation: &'static str,
    ) -> Option<&MemoryStore> {
        let local = self.inner.local.as_ref()?;
        if !namespace.kept_locally() || self.is_up() {
            return None;
        }
        let store = local.usable()?;
        self.count_local(operation);
        Some(store)
    }

    /// In `local` mode, after a Redis call failed for want of Redis: the node-local store.
    pub(crate) fn local_after(
        &self,
        namespace: Namespace,
        operation: &'static str,
        error: &StoreError,
    ) -> Option<&MemoryStore> {
        let local = self.inner.local.as_ref()?;
        if !namespace.kept_locally()
            || !matches!(error, StoreError::Timeout | StoreError::Unavailable(_))
        {
            return None;
        }
        let store = local.usable()?;
        self.count_local(operation);
        Some(store)
    }

    /// A lockout's deadline from node-local state: what was set here during the outage, or
    /// what this node knew before it (the shadow of signed values).
    pub(crate) fn local_active_until(
        &self,
        local: &MemoryStore,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Option<u64> {
        let here = local.active_until(namespace, subject, now_ms);
        let known = self.shadowed_until(&self.key(namespace, subject), now_ms);
        here.max(known)
    }

    fn count_local(&self, operation: &'static str) {
        self.inner
            .metrics
            .store_local_operations
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Merge the node-local state into Redis in the background (after an outage).
    pub(super) fn spawn_merge_local(&self) {
        if self.inner.local.is_none() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        handle.spawn(async move {
            match store.merge_local().await {
                Ok(0) => {}
                Ok(merged) => tracing::info!(
                    merged,
                    "state store back: merged {merged} node-local login records into it"
                ),
                Err(error) => tracing::warn!(
                    %error,
                    "merging node-local login records into the state store failed; will retry"
                ),
            }
        });
    }

    /// Write every node-local value into Redis (raise-only, signed) and drop it locally.
    async fn merge_local(&self) -> Result<usize, StoreError> {
        let Some(local) = self.inner.local.as_ref() else {
            return Ok(0);
        };
        if local.merging.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let result = self.merge_values(&local.store).await;
        if result.is_ok() {
            local.full_warned.store(false, Ordering::Relaxed);
        }
        local.merging.store(false, Ordering::Release);
        result
    }

    async fn merge_values(&self, local: &MemoryStore) -> Result<usize, StoreError> {
        let now = crate::store::unix_now_ms();
        let mut merged = 0;
        for namespace in MERGED {
            for (subject, value) in local.dump(namespace, now) {
                match &value {
                    StoredValue::Events { times, expires_ms } => {
                        let newest = times.last().copied().unwrap_or(now);
                        let window = Duration::from_millis(expires_ms.saturating_sub(newest));
                        for &at in times {
                            self.record_event(namespace, &subject, at, window).await?;
                        }
                    }
                    StoredValue::Until { until_ms } => {
                        self.set_until(namespace, &subject, *until_ms).await?;
                    }
                    StoredValue::Claim { expires_ms } => {
                        let ttl = Duration::from_millis(expires_ms.saturating_sub(now).max(1));
                        // Already claimed in Redis (another node): nothing to add.
                        self.claim_once(namespace, &subject, ttl, now).await?;
                    }
                    StoredValue::History { .. } => {}
                }
                local.clear(namespace, &subject);
                merged += 1;
            }
        }
        // Login histories of the outage stay behind (impossible travel across nodes was not
        // checked meanwhile); drop them.
        for (subject, _) in local.dump(Namespace::LoginHistory, now) {
            local.clear(Namespace::LoginHistory, &subject);
        }
        Ok(merged)
    }
}
