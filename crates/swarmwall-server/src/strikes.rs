//! Graduated response: each blocked BitTorrent attempt is a strike against the account (or
//! the client address hash when unauthenticated); blocked flows close together in time form one
//! incident; thresholds within sliding windows lead to a warning, then a short suspension, then
//! a long one. Strikes decay as they leave their windows.
//!
//! All state lives in the [`Store`], so a fleet sharing Redis shares it:
//! - burst grouping: the first block of a subject claims `StrikeBurst/<subject>` for
//!   `burst_window` (an atomic claim-once in every backend); blocks while the claim holds are the
//!   same incident, on any node;
//! - incidents: one event per incident in `Strikes/<subject>`, counted in the short `window`
//!   and the `long_window`;
//! - suspensions: `Suspension/<subject>` holds the deadline (the server refuses new sessions
//!   of a suspended subject with "not allowed by ruleset").
//!
//! Store subjects: an account is its name; an unauthenticated client is `client:<hash>`.
//!
//! When the store fails (Redis down), incidents are buffered in memory (bounded) and replayed
//! with their original times once it answers again, so strikes converge; suspension checks
//! fall back to the suspensions this node last knew.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use swarmwall_core::classify::BtForm;

use crate::audit::AuditLog;
use crate::config::StrikesSettings;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{Namespace, Store, StoreError};

/// Most incidents buffered while the store is unreachable (the oldest are dropped beyond it).
const MAX_PENDING: usize = 10_000;
/// Most suspensions remembered locally for the store-down fallback.
const MAX_KNOWN_SUSPENSIONS: usize = 10_000;
/// Store subject prefix of unauthenticated clients.
pub const CLIENT_PREFIX: &str = "client:";

/// Who a strike is against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum StrikeSubject {
    /// An authenticated account.
    Account(String),
    /// An unauthenticated client, by keyed hash of its address (never the raw address).
    Client(String),
}

impl StrikeSubject {
    /// The subject string in the store (`alice`, `client:3fa2...`).
    pub fn store_key(&self) -> String {
        match self {
            Self::Account(name) => name.clone(),
            Self::Client(hash) => format!("{CLIENT_PREFIX}{hash}"),
        }
    }

    /// Inverse of [`Self::store_key`] (also parses what an admin types).
    pub fn from_store_key(key: &str) -> Self {
        match key.strip_prefix(CLIENT_PREFIX) {
            Some(hash) => Self::Client(hash.to_owned()),
            None => Self::Account(key.to_owned()),
        }
    }

    fn account(&self) -> Option<&str> {
        match self {
            Self::Account(name) => Some(name),
            Self::Client(_) => None,
        }
    }
}

impl std::fmt::Display for StrikeSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.store_key())
    }
}

/// What a recorded block led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrikeOutcome {
    /// Part of an incident already counted (burst).
    SameIncident,
    /// A new incident below every threshold.
    Counted {
        /// Incidents in the shortest window.
        incidents: u32,
    },
    /// A new incident reaching the warning threshold.
    Warned,
    /// A new incident that started a suspension until this Unix-ms deadline.
    Suspended {
        /// Deadline (Unix ms).
        until_ms: u64,
    },
    /// The store is unreachable: the incident is buffered on this node and will be written
    /// (with its original time) when the store answers again.
    Buffered,
}

/// One subject's graduated-response state (admin listings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StrikeRecord {
    /// Whose state.
    pub subject: StrikeSubject,
    /// Incidents within the short window.
    pub incidents: u32,
    /// Incidents within the long window.
    pub incidents_long: u32,
    /// Time of the latest incident (Unix ms).
    pub last_incident_ms: Option<u64>,
    /// Suspension deadline (Unix ms) while suspended.
    pub suspended_until_ms: Option<u64>,
}

/// Graduated-response engine. Cheap to clone (clones share buffers).
#[derive(Debug, Clone)]
pub struct Strikes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    settings: StrikesSettings,
    metrics: Option<Arc<Metrics>>,
    audit: AuditLog,
    pending: Mutex<Pending>,
    /// True while a task replays the queue (one at a time).
    replaying: AtomicBool,
    known_suspensions: Mutex<HashMap<String, u64>>,
}

/// Clears a flag when dropped (also when the replay future is cancelled).
struct ResetOnDrop<'a>(&'a AtomicBool);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Incidents waiting for the store.
#[derive(Debug, Default)]
struct Pending {
    incidents: VecDeque<PendingIncident>,
    /// Start of the latest buffered burst per subject (local burst grouping while down).
    burst_started: HashMap<String, u64>,
    dropped: u64,
}

#[derive(Debug, Clone)]
struct PendingIncident {
    subject: StrikeSubject,
    form: BtForm,
    now_ms: u64,
}

impl Strikes {
    /// Engine over `store` with default thresholds, no metrics and no audit log. Inside a
    /// tokio runtime it starts the task that replays incidents buffered during store outages.
    pub fn new(store: Store) -> Self {
        Self::build(
            store,
            StrikesSettings::default(),
            None,
            AuditLog::disabled(),
        )
    }

    /// Engine over `store` with `[policy.strikes]` settings, counting in `metrics` and
    /// recording suspensions in `audit`. Inside a tokio runtime it also starts the task that
    /// replays incidents buffered while the store was unreachable.
    pub fn with_config(
        store: Store,
        settings: &StrikesSettings,
        metrics: Arc<Metrics>,
        audit: AuditLog,
    ) -> Self {
        Self::build(store, settings.clone(), Some(metrics), audit)
    }

    fn build(
        store: Store,
        settings: StrikesSettings,
        metrics: Option<Arc<Metrics>>,
        audit: AuditLog,
    ) -> Self {
        let strikes = Self {
            inner: Arc::new(Inner {
                store,
                settings,
                metrics,
                audit,
                pending: Mutex::new(Pending::default()),
                replaying: AtomicBool::new(false),
                known_suspensions: Mutex::new(HashMap::new()),
            }),
        };
        strikes.spawn_replay();
        strikes
    }

    /// The settings in force.
    pub fn settings(&self) -> &StrikesSettings {
        &self.inner.settings
    }

    /// The store this engine writes to.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Record one blocked flow of `form` for `subject` at `now_ms`.
    ///
    /// On a store error the incident is buffered ([`StrikeOutcome::Buffered`], or
    /// [`StrikeOutcome::SameIncident`] when it joins a buffered burst); it is replayed with
    /// its original time when the store answers again.
    pub async fn record_block(
        &self,
        subject: &StrikeSubject,
        form: BtForm,
        now_ms: u64,
    ) -> Result<StrikeOutcome, StoreError> {
        if !self.inner.settings.enabled {
            return Ok(StrikeOutcome::Counted { incidents: 0 });
        }
        if self.pending_len() > 0 {
            // The store failed recently and the replay task has not caught up yet: queue
            // behind the earlier incidents (keeps their order, and a block never waits for a
            // store that is known to be down).
            return Ok(self.buffer_outcome(subject, form, now_ms));
        }
        match self.record_incident(subject, form, now_ms, true).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                tracing::debug!(%error, "strike not written; buffering it");
                Ok(self.buffer_outcome(subject, form, now_ms))
            }
        }
    }

    /// The suspension deadline (Unix ms) if `subject` is suspended now.
    ///
    /// When the store fails this answers from the suspensions this node last knew (set or
    /// read here) rather than failing every session: see docs/operations.md, "Fleet: state store".
    pub async fn suspended_until(
        &self,
        subject: &StrikeSubject,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let key = subject.store_key();
        match self
            .inner
            .store
            .active_until(Namespace::Suspension, &key, now_ms)
            .await
        {
            Ok(until) => {
                let mut known = self.known();
                match until {
                    Some(until) => remember(&mut known, key, until, now_ms),
                    None => {
                        known.remove(&key);
                    }
                }
                Ok(until)
            }
            Err(_) => Ok(self
                .known()
                .get(&key)
                .copied()
                .filter(|&until| until > now_ms)),
        }
    }

    /// Every subject with incidents in the long window or an active suspension.
    pub async fn list(&self, now_ms: u64) -> Result<Vec<StrikeRecord>, StoreError> {
        let store = &self.inner.store;
        let mut keys = store.subjects(Namespace::Strikes, now_ms).await?;
        keys.extend(store.subjects(Namespace::Suspension, now_ms).await?);
        keys.sort();
        keys.dedup();
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            let long = store
                .events(
                    Namespace::Strikes,
                    &key,
                    now_ms,
                    self.inner.settings.long_window,
                )
                .await?;
            let incidents = store
                .count_events(Namespace::Strikes, &key, now_ms, self.inner.settings.window)
                .await?;
            let suspended_until_ms = store
                .active_until(Namespace::Suspension, &key, now_ms)
                .await?;
            if long.is_empty() && suspended_until_ms.is_none() {
                continue;
            }
            records.push(StrikeRecord {
                subject: StrikeSubject::from_store_key(&key),
                incidents,
                incidents_long: u32::try_from(long.len()).unwrap_or(u32::MAX),
                last_incident_ms: long.last().copied(),
                suspended_until_ms,
            });
        }
        Ok(records)
    }

    /// Forget `subject`'s incidents, burst marker and suspension (admin "clear").
    pub async fn clear(&self, subject: &StrikeSubject) -> Result<(), StoreError> {
        let key = subject.store_key();
        for namespace in [
            Namespace::Strikes,
            Namespace::StrikeBurst,
            Namespace::Suspension,
        ] {
            self.inner.store.clear(namespace, &key).await?;
        }
        self.known().remove(&key);
        self.lock_pending()
            .incidents
            .retain(|incident| incident.subject != *subject);
        Ok(())
    }

    /// Suspend `subject` until `until_ms` (admin), replacing any current suspension even when
    /// that one ends later.
    pub async fn suspend(&self, subject: &StrikeSubject, until_ms: u64) -> Result<(), StoreError> {
        let key = subject.store_key();
        self.inner.store.clear(Namespace::Suspension, &key).await?;
        self.inner
            .store
            .set_until(Namespace::Suspension, &key, until_ms)
            .await?;
        {
            let mut known = self.known();
            known.remove(&key);
            remember(&mut known, key, until_ms, 0);
        }
        self.note_suspension(subject, until_ms, "admin", None, None);
        Ok(())
    }

    /// Lift `subject`'s suspension (admin). Incidents stay: clear them with [`Self::clear`].
    pub async fn unsuspend(&self, subject: &StrikeSubject) -> Result<(), StoreError> {
        let key = subject.store_key();
        self.inner.store.clear(Namespace::Suspension, &key).await?;
        self.known().remove(&key);
        Ok(())
    }

    /// Replay incidents buffered while the store was down, oldest first; stops at the first
    /// failure (the rest stay queued). Returns how many were replayed.
    pub async fn replay_pending(&self) -> Result<usize, StoreError> {
        if self.inner.replaying.swap(true, Ordering::AcqRel) {
            return Ok(0); // another task is replaying
        }
        let _reset = ResetOnDrop(&self.inner.replaying);
        let mut replayed = 0;
        // Bounded: the queue never holds more than MAX_PENDING; allow for arrivals meanwhile.
        for _ in 0..MAX_PENDING * 2 {
            let Some(incident) = self.lock_pending().incidents.front().cloned() else {
                break;
            };
            self.record_incident(&incident.subject, incident.form, incident.now_ms, false)
                .await?;
            let mut pending = self.lock_pending();
            // `clear` may have removed it meanwhile; pop only the incident just written.
            if pending.incidents.front().is_some_and(|front| {
                front.now_ms == incident.now_ms && front.subject == incident.subject
            }) {
                pending.incidents.pop_front();
            }
            replayed += 1;
        }
        let mut pending = self.lock_pending();
        if pending.incidents.is_empty() {
            pending.burst_started.clear();
        }
        drop(pending);
        if replayed > 0 {
            tracing::info!(
                written = replayed,
                "state store back: written {replayed} buffered strikes"
            );
        }
        Ok(replayed)
    }

    /// Incidents waiting for the store.
    pub fn pending_len(&self) -> usize {
        self.lock_pending().incidents.len()
    }

    /// One new (or, with `claim`, possibly grouped) incident against the store.
    async fn record_incident(
        &self,
        subject: &StrikeSubject,
        form: BtForm,
        now_ms: u64,
        claim: bool,
    ) -> Result<StrikeOutcome, StoreError> {
        let settings = &self.inner.settings;
        let store = &self.inner.store;
        let key = subject.store_key();
        if claim
            && !store
                .claim_once(Namespace::StrikeBurst, &key, settings.burst_window, now_ms)
                .await?
        {
            return Ok(StrikeOutcome::SameIncident);
        }
        let long = store
            .record_event(Namespace::Strikes, &key, now_ms, settings.long_window)
            .await?;
        let short = store
            .count_events(Namespace::Strikes, &key, now_ms, settings.window)
            .await?;
        if let Some(metrics) = &self.inner.metrics {
            metrics.strikes.inc();
        }
        let tier = if long >= settings.long_suspend_incidents.max(1) {
            Some((settings.long_suspend_for, "long"))
        } else if short >= settings.suspend_incidents.max(1) {
            Some((settings.suspend_for, "short"))
        } else {
            None
        };
        if let Some((length, reason)) = tier {
            let until_ms = now_ms.saturating_add(duration_ms(length));
            store
                .set_until(Namespace::Suspension, &key, until_ms)
                .await?;
            remember(&mut self.known(), key, until_ms, now_ms);
            self.note_suspension(subject, until_ms, reason, Some(form), Some(long));
            return Ok(StrikeOutcome::Suspended { until_ms });
        }
        if settings.warn_incidents > 0 && short >= settings.warn_incidents {
            tracing::info!(subject = %subject, incidents = short, form = form.as_str(), "strike warning");
            self.inner.audit.record(
                "strike_warning",
                subject.account(),
                None,
                serde_json::json!({
                    "subject": subject.store_key(),
                    "incidents": short,
                    "form": form.as_str(),
                }),
            );
            return Ok(StrikeOutcome::Warned);
        }
        Ok(StrikeOutcome::Counted { incidents: short })
    }

    /// Metrics, log line and audit event of a new suspension.
    fn note_suspension(
        &self,
        subject: &StrikeSubject,
        until_ms: u64,
        reason: &'static str,
        form: Option<BtForm>,
        incidents: Option<u32>,
    ) {
        if let Some(metrics) = &self.inner.metrics {
            metrics
                .suspensions
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
        tracing::warn!(subject = %subject, until_ms, reason, "subject suspended");
        self.inner.audit.record(
            "suspension",
            subject.account(),
            None,
            serde_json::json!({
                "subject": subject.store_key(),
                "until_ms": until_ms,
                "reason": reason,
                "form": form.map(BtForm::as_str),
                "incidents": incidents,
            }),
        );
    }

    /// Queue an incident for replay and say so: the first incident of an outage logs one
    /// warning ("buffered, will be written when the store is back"), the rest are counted.
    fn buffer_outcome(&self, subject: &StrikeSubject, form: BtForm, now_ms: u64) -> StrikeOutcome {
        let was_empty = self.pending_len() == 0;
        if self.buffer(subject, form, now_ms) {
            return StrikeOutcome::SameIncident;
        }
        if was_empty {
            tracing::warn!(
                capacity = MAX_PENDING,
                "state store unreachable: strikes are buffered on this node and will be \
                 written when it is back"
            );
        }
        StrikeOutcome::Buffered
    }

    /// Queue an incident for replay. True when it joins a burst already queued (the caller
    /// may then report [`StrikeOutcome::SameIncident`]).
    fn buffer(&self, subject: &StrikeSubject, form: BtForm, now_ms: u64) -> bool {
        let burst = duration_ms(self.inner.settings.burst_window);
        let key = subject.store_key();
        let mut pending = self.lock_pending();
        if let Some(&started) = pending.burst_started.get(&key)
            && now_ms >= started
            && now_ms - started < burst
        {
            return true;
        }
        if pending.burst_started.len() >= MAX_PENDING {
            pending.burst_started.clear();
        }
        pending.burst_started.insert(key, now_ms);
        if pending.incidents.len() >= MAX_PENDING {
            pending.incidents.pop_front();
            pending.dropped += 1;
            tracing::warn!(
                dropped = pending.dropped,
                "strike buffer full while the state store is down; oldest incident dropped"
            );
        }
        pending.incidents.push_back(PendingIncident {
            subject: subject.clone(),
            form,
            now_ms,
        });
        false
    }

    /// Replay buffered incidents once a second while the engine lives.
    fn spawn_replay(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let strikes = Self { inner };
                if strikes.pending_len() > 0 {
                    let _ = strikes.replay_pending().await;
                }
            }
        });
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        // Every update of the queue is a single push/pop/drain: a poisoned lock is consistent.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn known(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.inner
            .known_suspensions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Remember a suspension locally (bounded: expired entries go first, then new ones are skipped).
fn remember(known: &mut HashMap<String, u64>, key: String, until_ms: u64, now_ms: u64) {
    if known.len() >= MAX_KNOWN_SUSPENSIONS {
        known.retain(|_, &mut until| until > now_ms);
    }
    if known.len() < MAX_KNOWN_SUSPENSIONS || known.contains_key(&key) {
        let entry = known.entry(key).or_insert(0);
        *entry = (*entry).max(until_ms);
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
