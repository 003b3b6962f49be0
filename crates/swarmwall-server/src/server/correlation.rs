//! The node's cross-flow evidence ([`Correlator`], docs/detection.md "Rules") without a global
//! lock: per-client evidence (E1 detections, E2 endpoints, E4 fan-out) lives in one of
//! [`SHARDS`] correlators chosen by the client's key, so sessions of different clients on
//! different cores rarely meet on a lock; the known-peer set (E3), shared by every client,
//! has its own read-write lock, read per flow and written only when a remote's own bytes were
//! decisive BitTorrent.
//! Every lock is held for one map operation, never across an await.

use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use swarmwall_core::classify::{BtForm, ClientKey, Correlator, CorrelatorConfig};

/// Client shards (a power of two): comfortably more than the cores of a large node, so two
/// cores contend only when their clients' keys share the low bits.
pub(crate) const SHARDS: usize = 64;

/// Cross-flow evidence, sharded by client.
pub(crate) struct Correlation {
    /// Per-client evidence; shard `key % SHARDS`, each bounded to its share of the clients.
    clients: Box<[Mutex<Correlator>]>,
    /// E3: endpoints that spoke decisive BitTorrent themselves, for every client (a
    /// correlator that holds no client); read under a shared lock.
    peers: RwLock<Correlator>,
}

impl Correlation {
    /// Empty evidence with the default limits (the client bound split across the shards).
    pub(crate) fn new() -> Self {
        let config = CorrelatorConfig::default();
        let per_shard = CorrelatorConfig {
            max_clients: config.max_clients.div_ceil(SHARDS),
            ..config
        };
        Self {
            clients: (0..SHARDS)
                .map(|_| Mutex::new(Correlator::new(per_shard)))
                .collect(),
            peers: RwLock::new(Correlator::new(config)),
        }
    }

    /// Run `f` on the shard holding `client` (nothing when a panic poisoned it).
    fn with_client<T>(&self, client: ClientKey, f: impl FnOnce(&mut Correlator) -> T) -> Option<T> {
        let index = (client.0 as usize) % SHARDS;
        let shard = self.clients.get(index)?;
        shard.lock().ok().map(|mut correlator| f(&mut correlator))
    }

    /// A decisive detection of `client` (E1).
    pub(crate) fn record_detection(&self, client: ClientKey, form: BtForm, now: Instant) {
        self.with_client(client, |c| c.record_detection(client, form, now));
    }

    /// A remote endpoint the client reached over UDP (E2); true when a flow from `client` to
    /// it is now corroborated.
    pub(crate) fn record_endpoint_corroborated(
        &self,
        client: ClientKey,
        endpoint: SocketAddr,
        now: Instant,
    ) -> bool {
        let own = self.with_client(client, |c| {
            c.record_endpoint(client, endpoint, now);
            c.is_corroborated(client, endpoint, now)
        });
        own.unwrap_or(false) || self.is_known_peer(endpoint, now)
    }

    /// An MSE candidate of `client` to `destination`, counted for its fan-out (E4) when
    /// `record`; true when a flow from `client` to it is now corroborated.
    pub(crate) fn candidate_corroborated(
        &self,
        client: ClientKey,
        destination: SocketAddr,
        record: bool,
        now: Instant,
    ) -> bool {
        let own = self.with_client(client, |c| {
            if record {
                c.record_candidate(client, destination, now);
            }
            c.is_corroborated(client, destination, now)
        });
        own.unwrap_or(false) || self.is_known_peer(destination, now)
    }

    /// A remote endpoint whose own bytes were decisive BitTorrent (E3).
    pub(crate) fn record_bt_endpoint(&self, endpoint: SocketAddr, now: Instant) {
        if let Ok(mut peers) = self.peers.write() {
            peers.record_bt_endpoint(endpoint, now);
        }
    }

    /// True when a new flow from `client` to `destination` has corroborating evidence.
    pub(crate) fn is_corroborated(
        &self,
        client: ClientKey,
        destination: SocketAddr,
        now: Instant,
    ) -> bool {
        self.with_client(client, |c| c.is_corroborated(client, destination, now))
            .unwrap_or(false)
            || self.is_known_peer(destination, now)
    }

    /// E3 only, under the shared lock.
    fn is_known_peer(&self, destination: SocketAddr, now: Instant) -> bool {
        self.peers
            .read()
            .map(|peers| peers.is_known_peer(destination, now))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;

    fn endpoint(host: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)), port)
    }

    #[test]
    fn a_known_peer_corroborates_every_client() {
        let correlation = Correlation::new();
        let now = Instant::now();
        let peer = endpoint(1, 51_413);
        assert!(!correlation.is_corroborated(ClientKey(1), peer, now));
        correlation.record_bt_endpoint(peer, now);
        for client in 0..(SHARDS as u64 * 2) {
            assert!(
                correlation.is_corroborated(ClientKey(client), peer, now),
                "{client}"
            );
        }
        assert!(!correlation.is_corroborated(ClientKey(1), endpoint(2, 51_413), now));
    }

    #[test]
    fn client_evidence_stays_with_its_client() {
        let correlation = Correlation::new();
        let now = Instant::now();
        let (a, b) = (ClientKey(7), ClientKey(7 + SHARDS as u64));
        correlation.record_detection(a, BtForm::PeerWire, now);
        assert!(correlation.is_corroborated(a, endpoint(9, 6881), now));
        // Same shard, another client: nothing.
        assert!(!correlation.is_corroborated(b, endpoint(9, 6881), now));
        // E2: the endpoint one client reached over UDP corroborates that client only.
        assert!(correlation.record_endpoint_corroborated(b, endpoint(3, 7000), now));
        assert!(!correlation.is_corroborated(ClientKey(8), endpoint(3, 7000), now));
    }

    #[test]
    fn fan_out_counts_per_client_under_parallel_sessions() {
        // Eight threads, each one client, each with candidates to six distinct addresses:
        // every client reaches the fan-out threshold on its own sixth address, no earlier,
        // and no client is corroborated by another's candidates.
        let correlation = Arc::new(Correlation::new());
        let now = Instant::now();
        let threads: Vec<_> = (0..8u64)
            .map(|client| {
                let correlation = Arc::clone(&correlation);
                std::thread::spawn(move || {
                    let key = ClientKey(client * 1_000_003);
                    (1..=6u8)
                        .map(|host| {
                            correlation.candidate_corroborated(key, endpoint(host, 6881), true, now)
                        })
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        for thread in threads {
            let seen = thread.join().unwrap();
            assert_eq!(seen, [false, false, false, false, false, true]);
        }
        assert!(!correlation.is_corroborated(ClientKey(999), endpoint(1, 6881), now));
    }
}
