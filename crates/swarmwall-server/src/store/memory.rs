//! In-memory backend: a map under a mutex, with the same value model and update rules as the
//! embedded store ([`super::value`]). Expired entries are ignored on read and dropped when the
//! map is next written for the same key or listed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Namespace;
use super::value::{self, StoredValue};

type Map = BTreeMap<(Namespace, String), StoredValue>;

/// In-memory state store (lost on exit). Cheap to clone: clones share the map.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<Map>>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Map> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or removal), so a poisoned lock is still usable.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Values held (live or not yet dropped).
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn key(namespace: Namespace, subject: &str) -> (Namespace, String) {
        (namespace, subject.to_owned())
    }

    pub(super) fn record_event(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> u32 {
        let mut map = self.lock();
        let key = Self::key(namespace, subject);
        let (new, count) = value::record_event(map.remove(&key), now_ms, window);
        map.insert(key, new);
        count
    }

    pub(super) fn events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Vec<u64> {
        value::events(
            self.lock().get(&Self::key(namespace, subject)),
            now_ms,
            window,
        )
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
        let key = Self::key(namespace, subject);
        let new = value::set_until(map.get(&key), until_ms);
        map.insert(key, new);
    }

    pub(super) fn active_until(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Option<u64> {
        value::active_until(self.lock().get(&Self::key(namespace, subject)), now_ms)
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
        let key = Self::key(namespace, subject);
        let new = value::push_history(map.remove(&key), entry, max_entries, ttl, now_ms);
        map.insert(key, new);
    }

    pub(super) fn history(&self, namespace: Namespace, subject: &str, now_ms: u64) -> Vec<Vec<u8>> {
        value::history(self.lock().get(&Self::key(namespace, subject)), now_ms)
    }

    pub(super) fn claim_once(
        &self,
        namespace: Namespace,
        subject: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> bool {
        let mut map = self.lock();
        let key = Self::key(namespace, subject);
        match value::claim_once(map.get(&key), ttl, now_ms) {
            Some(claim) => {
                map.insert(key, claim);
                true
            }
            None => false,
        }
    }

    /// Replace the value of one key through `update` (`None` deletes it).
    pub(super) fn modify(
        &self,
        namespace: Namespace,
        subject: &str,
        update: impl FnOnce(Option<StoredValue>) -> Option<StoredValue>,
    ) {
        let mut map = self.lock();
        let key = Self::key(namespace, subject);
        if let Some(new) = update(map.remove(&key)) {
            map.insert(key, new);
        }
    }

    pub(super) fn clear(&self, namespace: Namespace, subject: &str) {
        self.lock().remove(&Self::key(namespace, subject));
    }

    pub(super) fn dump(&self, namespace: Namespace, now_ms: u64) -> Vec<(String, StoredValue)> {
        let mut map = self.lock();
        map.retain(|_, value| value.is_live(now_ms));
        map.iter()
            .filter(|((ns, _), _)| *ns == namespace)
            .map(|((_, subject), value)| (subject.clone(), value.clone()))
            .collect()
    }

    pub(super) fn restore(&self, namespace: Namespace, subject: &str, value: StoredValue) {
        self.lock().insert(Self::key(namespace, subject), value);
    }
}
