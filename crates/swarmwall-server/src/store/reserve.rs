//! Attempt reservations: a sliding-window counter that is incremented *before* the work it
//! limits starts, atomically in every backend, so that parallel callers cannot all see "below
//! the limit" (the login lockout: at most `max_failures` guesses are ever verified per window,
//! whatever the parallelism). A reservation that turns out not to be a failure (a success, a
//! refusal for another reason) is released again, removing exactly its own event.
//!
//! The events share the keys and layout of [`Store::record_event`] (the failure counters), so
//! [`Store::count_events`], admin listings, migration and "unlock" see them as failures.

use std::time::Duration;

use super::value::StoredValue;
use super::{Namespace, Store, StoreError};

/// One counted attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Events in the window including this one; the attempt is within a limit `L` when
    /// `count <= L`.
    pub count: u32,
    /// The event's time (Unix ms).
    at_ms: u64,
    /// The event's member in a Redis sorted set (unique per reservation).
    member: String,
}

impl Reservation {
    /// True when this attempt is among the first `limit` of its window.
    pub fn within(&self, limit: u32) -> bool {
        self.count <= limit
    }
}

impl Store {
    /// Count one attempt at `now_ms` in `subject`'s window and return its place in it; the
    /// add and the count are one atomic step, so concurrent callers get distinct counts.
    pub async fn reserve_event(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<Reservation, StoreError> {
        let member = format!("{now_ms}-{:016x}", rand::random::<u64>());
        let count = match self {
            Self::Memory(_) | Self::Embedded(_) => {
                self.record_event(namespace, subject, now_ms, window)
                    .await?
            }
            // In `on_outage = "local"` mode an outage counts the attempt on this node (merged
            // back later like any failure counter), exactly as `record_event` does.
            Self::Redis(store) => match store.local_now(namespace, "reserve_event") {
                Some(local) => local.record_event(namespace, subject, now_ms, window),
                None => match store
                    .reserve_event(namespace, subject, now_ms, &member, window)
                    .await
                {
                    Ok(count) => count,
                    Err(error) => match store.local_after(namespace, "reserve_event", &error) {
                        Some(local) => local.record_event(namespace, subject, now_ms, window),
                        None => return Err(error),
                    },
                },
            },
        };
        Ok(Reservation {
            count,
            at_ms: now_ms,
            member,
        })
    }

    /// Remove the event of `reservation` (and only it) from `subject`'s window.
    pub async fn release_event(
        &self,
        namespace: Namespace,
        subject: &str,
        reservation: &Reservation,
    ) -> Result<(), StoreError> {
        let at_ms = reservation.at_ms;
        match self {
            Self::Memory(store) => {
                store.modify(namespace, subject, |old| release(old, at_ms));
                Ok(())
            }
            Self::Embedded(store) => {
                let result = store
                    .update(namespace, subject, 0, move |old| (release(old, at_ms), ()))
                    .await;
                store.observe_result("release_event", result)
            }
            Self::Redis(store) => match store.local_now(namespace, "release_event") {
                Some(local) => {
                    local.modify(namespace, subject, |old| release(old, at_ms));
                    Ok(())
                }
                None => match store
                    .release_event(namespace, subject, &reservation.member)
                    .await
                {
                    Err(error) => match store.local_after(namespace, "release_event", &error) {
                        Some(local) => {
                            local.modify(namespace, subject, |old| release(old, at_ms));
                            Ok(())
                        }
                        None => Err(error),
                    },
                    ok => ok,
                },
            },
        }
    }
}

/// `old` without one event at `at_ms` (unchanged when there is none).
fn release(old: Option<StoredValue>, at_ms: u64) -> Option<StoredValue> {
    match old {
        Some(StoredValue::Events {
            mut times,
            expires_ms,
        }) => {
            if let Some(index) = times.iter().position(|&t| t == at_ms) {
                times.remove(index);
            }
            Some(StoredValue::Events { times, expires_ms })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);

    async fn parallel_reservations_are_distinct(store: Store) {
        let now = 1_000_000;
        let mut tasks = Vec::new();
        let store = Arc::new(store);
        for _ in 0..40 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store
                    .reserve_event(Namespace::AuthFailuresAccount, "alice", now, WINDOW)
                    .await
                    .unwrap()
            }));
        }
        let mut counts = Vec::new();
        let mut reservations = Vec::new();
        for task in tasks {
            let reservation = task.await.unwrap();
            counts.push(reservation.count);
            reservations.push(reservation);
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=40).collect::<Vec<u32>>());
        assert_eq!(reservations.iter().filter(|r| r.within(5)).count(), 5);
        // Releasing one removes exactly one event, even with 40 at the same millisecond.
        store
            .release_event(Namespace::AuthFailuresAccount, "alice", &reservations[0])
            .await
            .unwrap();
        let left = store
            .count_events(Namespace::AuthFailuresAccount, "alice", now, WINDOW)
            .await
            .unwrap();
        assert_eq!(left, 39);
        // Releasing on an empty or absent subject is harmless.
        store
            .release_event(Namespace::AuthFailuresAccount, "nobody", &reservations[1])
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_reservations_are_atomic() {
        parallel_reservations_are_distinct(Store::memory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_reservations_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::EmbeddedStore::open(dir.path()).unwrap();
        parallel_reservations_are_distinct(Store::Embedded(store)).await;
    }

    #[test]
    fn release_removes_one_event() {
        let old = Some(StoredValue::Events {
            times: vec![1, 2, 2, 3],
            expires_ms: 9,
        });
        assert_eq!(
            release(old, 2),
            Some(StoredValue::Events {
                times: vec![1, 2, 3],
                expires_ms: 9
            })
        );
        assert_eq!(release(None, 2), None);
    }
}
