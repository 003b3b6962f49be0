//! One full verification at a time per account name and per client network (on this node).
//!
//! Without this, a client that opens many connections at once before its password is
//! remembered would have all of them counted as in-flight attempts and could lock itself out;
//! with it, the first verifies, and the others, once it is their turn, find the password
//! remembered and go through in microseconds. Guesses are verified one after the other, so
//! each is counted as a failure before the next one starts. Entries exist only while someone
//! holds or waits for a turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};

type Locks = Arc<Mutex<HashMap<String, Arc<TurnLock<()>>>>>;
/// Per key: password fingerprints of the attempts in progress, with their counts.
type PendingMap = Arc<Mutex<HashMap<String, HashMap<[u8; 32], u32>>>>;

/// Attempts in progress per account name, by password fingerprint (a keyed MAC, memory only),
/// so that a success can tell a client's own burst (one password) from a burst of guesses.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    map: PendingMap,
}

/// Registered while an attempt is in progress.
pub(crate) struct PendingAttempt {
    map: PendingMap,
    key: String,
    fingerprint: [u8; 32],
}

impl Pending {
    /// Register an attempt with password `fingerprint` under `key`.
    pub(crate) fn register(&self, key: &str, fingerprint: [u8; 32]) -> PendingAttempt {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(key.to_owned())
            .or_default()
            .entry(fingerprint)
            .or_insert(0) += 1;
        PendingAttempt {
            map: Arc::clone(&self.map),
            key: key.to_owned(),
            fingerprint,
        }
    }
}

impl PendingAttempt {
    /// Attempts in progress under the same key with another password.
    pub(crate) fn others(&self) -> u32 {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&self.key).map_or(0, |by_password| {
            by_password
                .iter()
                .filter(|(fingerprint, _)| **fingerprint != self.fingerprint)
                .map(|(_, count)| *count)
                .sum()
        })
    }
}

impl Drop for PendingAttempt {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(by_password) = map.get_mut(&self.key) {
            if let Some(count) = by_password.get_mut(&self.fingerprint) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    by_password.remove(&self.fingerprint);
                }
            }
            if by_password.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// Per-key turns.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    locks: Locks,
}

/// Held while it is this attempt's turn; the next waiter goes on drop.
pub(crate) struct Turn {
    // Field order matters: the guard is released before the entry is cleaned up.
    _guard: OwnedMutexGuard<()>,
    _cleanup: Cleanup,
}

/// Removes a key's entry once nobody holds or waits for it.
struct Cleanup {
    locks: Locks,
    key: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

impl Turns {
    /// Wait at most `timeout` for the turn of `key`; `None` when it did not come.
    pub(crate) async fn take(&self, key: String, timeout: Duration) -> Option<Turn> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let cleanup = Cleanup {
            locks: Arc::clone(&self.locks),
            key,
        };
        let guard = tokio::time::timeout(timeout, lock.lock_owned())
            .await
            .ok()?;
        Some(Turn {
            _guard: guard,
            _cleanup: cleanup,
        })
    }

    /// True while someone holds or waits for the turn of `key`.
    pub(crate) fn busy(&self, key: &str) -> bool {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Keys with a holder or a waiter.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn one_turn_per_key_and_entries_are_removed() {
        let turns = Arc::new(Turns::default());
        let first = turns.take("a".into(), LONG).await.unwrap();
        // Another key is independent.
        let other = turns.take("b".into(), LONG).await.unwrap();
        // The same key waits, and gives up after its timeout.
        assert!(
            turns
                .take("a".into(), Duration::from_millis(20))
                .await
                .is_none()
        );
        let waiter = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move { turns.take("a".into(), LONG).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(first);
        assert!(waiter.await.unwrap());
        assert!(turns.busy("b"));
        let pending = Pending::default();
        let mine = pending.register("a", [1; 32]);
        let same = pending.register("a", [1; 32]);
        let guess = pending.register("a", [2; 32]);
        let elsewhere = pending.register("b", [3; 32]);
        assert_eq!(mine.others(), 1);
        assert_eq!(guess.others(), 2);
        drop((same, guess, elsewhere));
        assert_eq!(mine.others(), 0);
        drop(mine);
        assert!(pending.map.lock().unwrap().is_empty());
        drop(other);
        assert!(!turns.busy("b"));
        assert_eq!(turns.len(), 0);
    }
}
