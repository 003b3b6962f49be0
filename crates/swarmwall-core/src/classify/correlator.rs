//! Per-client evidence for the encrypted-BitTorrent tier (docs/bittorrent-detection.md §2.4):
//! bounded memory, entries expire. Keys are opaque (the proxy passes a keyed hash of the
//! account or client address), so no address or name is held here.
//!
//! STUB: the API is fixed; the implementation is being written (classifier-tcp work).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::BtForm;

/// Opaque identity of a client (account or address), already hashed by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(pub u64);

/// Limits of the correlator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorConfig {
    /// Most clients tracked at once; the least recently seen are evicted first.
    pub max_clients: usize,
    /// How long a decisive detection corroborates the client's other flows (E1).
    pub evidence_window: Duration,
    /// Most harvested peer endpoints kept per client (E2).
    pub max_endpoints_per_client: usize,
    /// How long a harvested endpoint is kept (E2, E5).
    pub endpoint_ttl: Duration,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            max_clients: 65_536,
            evidence_window: Duration::from_secs(15 * 60),
            max_endpoints_per_client: 4_096,
            endpoint_ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// Bounded per-client evidence store.
#[derive(Debug)]
pub struct Correlator {
    config: CorrelatorConfig,
}

impl Correlator {
    /// An empty correlator.
    pub fn new(config: CorrelatorConfig) -> Self {
        Self { config }
    }

    /// Record a decisive BitTorrent detection for `client` (E1).
    pub fn record_detection(&mut self, client: ClientKey, form: BtForm, now: Instant) {
        let _ = (client, form, now, self.config);
    }

    /// Record a remote endpoint the client reached over UDP or learned from a tracker or DHT
    /// reply (E2, E5).
    pub fn record_endpoint(&mut self, client: ClientKey, endpoint: SocketAddr, now: Instant) {
        let _ = (client, endpoint, now);
    }

    /// True when a new flow from `client` to `destination` has corroborating evidence.
    pub fn is_corroborated(
        &mut self,
        client: ClientKey,
        destination: SocketAddr,
        now: Instant,
    ) -> bool {
        let _ = (client, destination, now);
        false
    }

    /// Number of clients currently tracked.
    pub fn len(&self) -> usize {
        0
    }

    /// True when no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
