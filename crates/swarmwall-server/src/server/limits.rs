//! Per-account session counting (`max_sessions_per_account`) and per-source handshake
//! counting (`max_handshakes_per_source`). The global limit is a semaphore in the listener.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Connections still in the handshake per client network (IPv4 address, IPv6 /64). Entries
/// are removed when their count drops to zero.
#[derive(Debug, Default, Clone)]
pub(crate) struct SourceHandshakes {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// Held while a connection is in its handshake; releases its slot on drop.
#[derive(Debug)]
pub(crate) struct HandshakeSlot {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
    network: IpAddr,
}

impl SourceHandshakes {
    /// Take a handshake slot for `client`'s network, or `None` when it already holds `limit`.
    pub(crate) fn acquire(&self, client: IpAddr, limit: u32) -> Option<HandshakeSlot> {
        let network = source_network(client);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = counts.entry(network).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(HandshakeSlot {
            counts: Arc::clone(&self.counts),
            network,
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = counts.get_mut(&self.network) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.network);
            }
        }
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

/// Open sessions per account. Entries are removed when their count drops to zero, so the
/// map holds at most one entry per account with an open session.
#[derive(Debug, Default, Clone)]
pub(crate) struct AccountSessions {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// Held for the life of a session; releases its slot on drop.
#[derive(Debug)]
pub(crate) struct AccountSlot {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    account: String,
}

impl AccountSessions {
    /// Take a slot for `account`, or `None` when it already has `limit` sessions (0 = none).
    pub(crate) fn acquire(&self, account: &str, limit: u32) -> Option<AccountSlot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = counts.entry(account.to_owned()).or_insert(0);
        if limit != 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(AccountSlot {
            counts: Arc::clone(&self.counts),
            account: account.to_owned(),
        })
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = counts.get_mut(&self.account) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            handshakes.counts.lock().unwrap().len(),
            2,
            "empty entries are removed"
        );
    }
}
