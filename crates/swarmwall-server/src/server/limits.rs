//! Per-account session counting (`max_sessions_per_account`), per-source handshake counting
//! (`max_handshakes_per_source`) and the process-wide budget of UDP datagrams held while
//! their destination names resolve. The global session limit is a semaphore in the listener.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of UDP datagrams held, all associations together, while their destination names
/// resolve (a lookup can take `connect_timeout`; the datagrams wait for it as exact-size
/// copies, not in a receive batch). Past it, a datagram that would be held is dropped.
pub(crate) const HELD_DATAGRAM_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The process-wide count of held datagram bytes (at most [`HELD_DATAGRAM_BYTES_MAX`]).
#[derive(Debug, Default)]
pub(crate) struct HeldDatagramBytes {
    held: AtomicUsize,
}

/// Bytes reserved in a [`HeldDatagramBytes`]; given back on drop.
#[derive(Debug)]
pub(crate) struct HeldBytes<'a> {
    budget: &'a HeldDatagramBytes,
    bytes: usize,
}

impl HeldDatagramBytes {
    /// Reserve `bytes`, or `None` when the budget (`limit` bytes) cannot hold them.
    pub(crate) fn reserve(&self, bytes: usize, limit: usize) -> Option<HeldBytes<'_>> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= limit)
            })
            .ok()?;
        Some(HeldBytes {
            budget: self,
            bytes,
        })
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Slots counted per key, at most a limit per key at once. A key's entry is removed when its
/// count drops to zero, so the map holds only keys with a slot taken.
#[derive(Debug)]
pub(crate) struct CountedSlots<K: Eq + Hash> {
    counts: Arc<Mutex<HashMap<K, u32>>>,
}

/// A slot of a [`CountedSlots`]; released on drop.
#[derive(Debug)]
pub(crate) struct CountedSlot<K: Eq + Hash> {
    counts: Arc<Mutex<HashMap<K, u32>>>,
    key: K,
}

impl<K: Eq + Hash> Default for CountedSlots<K> {
    fn default() -> Self {
        Self {
            counts: Arc::default(),
        }
    }
}

impl<K: Eq + Hash> Clone for CountedSlots<K> {
    fn clone(&self) -> Self {
        Self {
            counts: Arc::clone(&self.counts),
        }
    }
}

impl<K: Eq + Hash + Clone> CountedSlots<K> {
    /// Take a slot for `key`, or `None` when it already holds `limit` (0 = no limit).
    pub(crate) fn acquire(&self, key: K, limit: u32) -> Option<CountedSlot<K>> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(key.clone()).or_insert(0);
        if limit != 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(CountedSlot {
            counts: Arc::clone(&self.counts),
            key,
        })
    }

    /// Keys with a slot taken.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        lock(&self.counts).len()
    }
}

impl<K: Eq + Hash> Drop for CountedSlot<K> {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn lock<K>(counts: &Mutex<HashMap<K, u32>>) -> std::sync::MutexGuard<'_, HashMap<K, u32>> {
    counts.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Connections still in the handshake per client network (IPv4 address, IPv6 /64).
#[derive(Debug, Default, Clone)]
pub(crate) struct SourceHandshakes {
    slots: CountedSlots<IpAddr>,
}

/// Held while a connection is in its handshake.
pub(crate) type HandshakeSlot = CountedSlot<IpAddr>;

impl SourceHandshakes {
    /// Take a handshake slot for `client`'s network, or `None` when it already holds `limit`.
    pub(crate) fn acquire(&self, client: IpAddr, limit: u32) -> Option<HandshakeSlot> {
        self.slots.acquire(source_network(client), limit.max(1))
    }
}

/// The network a client address is counted under: IPv4 address, or IPv6 /64.
fn source_network(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Open sessions per account: at most one map entry per account with an open session.
#[derive(Debug, Default, Clone)]
pub(crate) struct AccountSessions {
    slots: CountedSlots<String>,
}

/// Held for the life of a session.
pub(crate) type AccountSlot = CountedSlot<String>;

impl AccountSessions {
    /// Take a slot for `account`, or `None` when it already has `limit` sessions (0 = none).
    pub(crate) fn acquire(&self, account: &str, limit: u32) -> Option<AccountSlot> {
        self.slots.acquire(account.to_owned(), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_datagram_bytes_never_pass_the_limit_under_concurrency() {
        let budget = HeldDatagramBytes::default();
        let limit = 64 * 1024;
        let most = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for round in 0..20_000usize {
                        let size = 1 + round % 9_000;
                        if let Some(reserved) = budget.reserve(size, limit) {
                            most.fetch_max(budget.held(), Ordering::Relaxed);
                            if round % 3 == 0 {
                                std::thread::yield_now();
                            }
                            drop(reserved);
                        }
                    }
                });
            }
        });
        assert!(most.load(Ordering::Relaxed) <= limit);
        assert_eq!(budget.held(), 0, "every reservation was given back");
        let whole = budget.reserve(limit, limit).unwrap();
        assert!(budget.reserve(1, limit).is_none());
        drop(whole);
        assert!(budget.reserve(1, limit).is_some());
    }

    #[test]
    fn slots_are_limited_and_released() {
        let sessions = AccountSessions::default();
        let first = sessions.acquire("alice", 2).unwrap();
        let _second = sessions.acquire("alice", 2).unwrap();
        assert!(sessions.acquire("alice", 2).is_none());
        assert!(sessions.acquire("bob", 2).is_some());
        drop(first);
        assert!(sessions.acquire("alice", 2).is_some());
        assert!(sessions.acquire("carol", 0).is_some());
    }

    #[test]
    fn handshakes_are_limited_per_network() {
        let handshakes = SourceHandshakes::default();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let first = handshakes.acquire(a, 2).unwrap();
        let _second = handshakes.acquire(same_64, 2).unwrap();
        assert!(handshakes.acquire(a, 2).is_none());
        assert!(handshakes.acquire(other_64, 2).is_some());
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _v4 = handshakes.acquire(v4, 1).unwrap();
        assert!(handshakes.acquire(mapped, 1).is_none());
        assert!(
            handshakes
                .acquire("192.0.2.2".parse().unwrap(), 1)
                .is_some()
        );
        drop(first);
        assert!(handshakes.acquire(a, 2).is_some());
        assert_eq!(handshakes.slots.keys(), 2, "empty entries are removed");
    }
}
