//! In-memory backend: a map under a mutex. Expired entries are dropped lazily on access.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Namespace;

/// One stored value.
#[derive(Debug, Clone)]
enum Entry {
    Events(VecDeque<u64>),
    Until(u64),
    History {
        entries: VecDeque<Vec<u8>>,
        expires_ms: u64,
    },
    Claim {
        expires_ms: u64,
    },
}

/// In-memory state store (lost on exit). Cheap to clone: clones share the map.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<BTreeMap<(Namespace, String), Entry>>>,
}

/// Most events kept per counter: counters only need to reach their thresholds.
const MAX_EVENTS: usize = 1_024;

fn window_start(now_ms: u64, window: Duration) -> u64 {
    now_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(Namespace, String), Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or mutation), so a poisoned lock is still usable.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn record_event(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> u32 {
        let mut map = self.lock();
        let entry = map
            .entry((namespace, subject.to_owned()))
            .or_insert_with(|| Entry::Events(VecDeque::new()));
        if !matches!(entry, Entry::Events(_)) {
            *entry = Entry::Events(VecDeque::new());
        }
        let Entry::Events(events) = entry else {
            return 0;
        };
        let start = window_start(now_ms, window);
        while events.front().is_some_and(|&t| t < start) {
            events.pop_front();
        }
        events.push_back(now_ms);
        if events.len() > MAX_EVENTS {
            events.pop_front();
        }
        u32::try_from(events.len()).unwrap_or(u32::MAX)
    }

    pub(super) fn events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Vec<u64> {
        let start = window_start(now_ms, window);
        match self.lock().get(&(namespace, subject.to_owned())) {
            Some(Entry::Events(events)) => events.iter().copied().filter(|&t| t >= start).collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn count_events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> u32 {
        u32::try_from(self.events(namespace, subject, now_ms, window).len()).unwrap_or(u32::MAX)
    }

    pub(super) fn set_until(&self, namespace: Namespace, subject: &str, until_ms: u64) {
        let mut map = self.lock();
        let key = (namespace, subject.to_owned());
        let current = match map.get(&key) {
            Some(Entry::Until(current)) => *current,
            _ => 0,
        };
        map.insert(key, Entry::Until(current.max(until_ms)));
    }

    pub(super) fn active_until(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Option<u64> {
        match self.lock().get(&(namespace, subject.to_owned())) {
            Some(Entry::Until(until)) if *until > now_ms => Some(*until),
            _ => None,
        }
    }

    pub(super) fn push_history(
        &self,
        namespace: Namespace,
        subject: &str,
        entry: &[u8],
        max_entries: usize,
        ttl: Duration,
        now_ms: u64,
    ) {
        let mut map = self.lock();
        let slot = map
            .entry((namespace, subject.to_owned()))
            .or_insert_with(|| Entry::History {
                entries: VecDeque::new(),
                expires_ms: 0,
            });
        if !matches!(slot, Entry::History { .. })
            || matches!(slot, Entry::History { expires_ms, .. } if *expires_ms <= now_ms)
        {
            *slot = Entry::History {
                entries: VecDeque::new(),
                expires_ms: 0,
            };
        }
        if let Entry::History {
            entries,
            expires_ms,
        } = slot
        {
            entries.push_back(entry.to_vec());
            while entries.len() > max_entries {
                entries.pop_front();
            }
            *expires_ms = now_ms.saturating_add(duration_ms(ttl));
        }
    }

    pub(super) fn history(&self, namespace: Namespace, subject: &str, now_ms: u64) -> Vec<Vec<u8>> {
        match self.lock().get(&(namespace, subject.to_owned())) {
            Some(Entry::History {
                entries,
                expires_ms,
            }) if *expires_ms > now_ms => entries.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn claim_once(
        &self,
        namespace: Namespace,
        subject: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> bool {
        let mut map = self.lock();
        let key = (namespace, subject.to_owned());
        if let Some(Entry::Claim { expires_ms }) = map.get(&key)
            && *expires_ms > now_ms
        {
            return false;
        }
        map.insert(
            key,
            Entry::Claim {
                expires_ms: now_ms.saturating_add(duration_ms(ttl)),
            },
        );
        true
    }

    pub(super) fn clear(&self, namespace: Namespace, subject: &str) {
        self.lock().remove(&(namespace, subject.to_owned()));
    }

    pub(super) fn subjects(&self, namespace: Namespace, now_ms: u64) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|((ns, _), entry)| {
                *ns == namespace
                    && match entry {
                        Entry::Events(events) => !events.is_empty(),
                        Entry::Until(until) => *until > now_ms,
                        Entry::History { expires_ms, .. } | Entry::Claim { expires_ms } => {
                            *expires_ms > now_ms
                        }
                    }
            })
            .map(|((_, subject), _)| subject.clone())
            .collect()
    }
}
