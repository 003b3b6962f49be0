//! Per-client evidence for the encrypted-BitTorrent tier (docs/detection.md, "Rules"):
//! bounded memory, entries expire. Keys are opaque (the proxy passes a keyed hash of the
//! account or client address), so no account name is held here; endpoints are kept only in
//! memory and never printed (the `Debug` output shows counts only).
//!
//! Evidence kept per client:
//! - E1: the time of the last decisive detection (any form); corroborates every new flow of the
//!   client for [`CorrelatorConfig::evidence_window`].
//! - E2/E5: remote endpoints of the client ([`Correlator::record_endpoint`]; the proxy and
//!   `inspect` record the UDP destinations it reaches; peers listed in tracker or DHT replies
//!   are not harvested); a later TCP flow to one of them is corroborated for
//!   [`CorrelatorConfig::endpoint_ttl`]. At most
//!   [`CorrelatorConfig::max_endpoints_per_client`] per client, oldest dropped first.
//! - E3: remote endpoints (any client's) that spoke decisive BitTorrent recently
//!   ([`Correlator::record_bt_endpoint`]; high ports only, at most 65,536, 30 min). The
//!   proxy records an endpoint only when the endpoint's *own* bytes completed a peer-protocol
//!   verdict ([`BtForm::is_peer_protocol`]): what a client sent proves nothing about the
//!   remote, and would let one client mark any server as a peer for every client.
//! - E4: distinct destination IPs of the client's MSE-shaped candidate flows in the last 120 s
//!   ([`Correlator::record_candidate`]); six or more corroborate.
//!
//! Bounds: at most [`CorrelatorConfig::max_clients`] clients; when full, the least recently
//! touched client is evicted (an ordered index makes that O(log n)). Time is passed in; nothing
//! here reads a clock. A `now` earlier than a stored time counts as no time passed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::BtForm;

/// Window of the E4 fan-out counter (spec §2.4).
const FAN_OUT_WINDOW: Duration = Duration::from_secs(120);
/// Distinct candidate destinations that corroborate (spec §2.4).
const FAN_OUT_THRESHOLD: usize = 6;
/// Candidate destinations remembered per client (a small set is enough, spec §2.4).
const FAN_OUT_SLOTS: usize = 16;
/// E3: most endpoints in the global cache of peers that spoke decisive BitTorrent.
const GLOBAL_ENDPOINTS: usize = 65_536;
/// E3: how long such an endpoint stays suspicious (spec §2.4: 30 min).
const GLOBAL_ENDPOINT_TTL: Duration = Duration::from_secs(30 * 60);
/// E3 holds high ports only: low ports are shared services (spec §2.4).
const GLOBAL_MIN_PORT: u16 = 1024;

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
pub struct Correlator {
    config: CorrelatorConfig,
    clients: HashMap<ClientKey, Evidence>,
    /// Recency index: touch stamp → client; the first entry is the least recently touched.
    recency: BTreeMap<u64, ClientKey>,
    next_stamp: u64,
    /// E3, shared by all clients.
    global: Endpoints,
}

impl fmt::Debug for Correlator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: endpoints are customer data.
        f.debug_struct("Correlator")
            .field("config", &self.config)
            .field("clients", &self.clients.len())
            .field("bt_endpoints", &self.global.latest.len())
            .finish_non_exhaustive()
    }
}

impl Correlator {
    /// An empty correlator.
    pub fn new(config: CorrelatorConfig) -> Self {
        Self {
            config,
            clients: HashMap::new(),
            recency: BTreeMap::new(),
            next_stamp: 0,
            global: Endpoints::default(),
        }
    }

    /// Record a decisive BitTorrent detection for `client` (E1). An MSE verdict is a
    /// heuristic one and is not recorded: one flow that happened to have MSE's sizes must not
    /// turn every later random-looking flow of the client into a block for the whole evidence
    /// window (docs/detection.md, "Rules"); the fan-out count (E4) is its cross-flow evidence.
    pub fn record_detection(&mut self, client: ClientKey, form: BtForm, now: Instant) {
        if self.config.max_clients == 0 || form == BtForm::Mse {
            return;
        }
        let evidence = self.touch(client);
        evidence.detection = Some((now, form));
    }

    /// Record a remote endpoint the client reached over UDP or learned from a tracker or DHT
    /// reply (E2, E5).
    pub fn record_endpoint(&mut self, client: ClientKey, endpoint: SocketAddr, now: Instant) {
        if self.config.max_clients == 0 || self.config.max_endpoints_per_client == 0 {
            return;
        }
        let config = self.config;
        let evidence = self.touch(client);
        evidence.endpoints.insert(endpoint, now, &config);
    }

    /// Record an MSE-shaped candidate flow from `client` to `destination` (E4 fan-out).
    pub fn record_candidate(&mut self, client: ClientKey, destination: SocketAddr, now: Instant) {
        if self.config.max_clients == 0 {
            return;
        }
        let evidence = self.touch(client);
        evidence.fan_out.insert(destination.ip(), now);
    }

    /// Record a remote endpoint that spoke decisive BitTorrent (T1, T2, uTP, DHT) so that
    /// any client's later flow to it is corroborated (E3). Ports below 1024 are ignored.
    pub fn record_bt_endpoint(&mut self, endpoint: SocketAddr, now: Instant) {
        if endpoint.port() < GLOBAL_MIN_PORT {
            return;
        }
        self.global.insert(endpoint, now, &Self::global_limits());
    }

    /// E3 alone, without touching anything: true when `endpoint` spoke decisive BitTorrent
    /// within the last 30 minutes (for callers that keep the known-peer set apart and read it
    /// under a shared lock).
    pub fn is_known_peer(&self, endpoint: SocketAddr, now: Instant) -> bool {
        self.global
            .latest
            .get(&endpoint)
            .is_some_and(|&at| elapsed(at, now) < GLOBAL_ENDPOINT_TTL)
    }

    /// True when a new flow from `client` to `destination` has corroborating evidence.
    pub fn is_corroborated(
        &mut self,
        client: ClientKey,
        destination: SocketAddr,
        now: Instant,
    ) -> bool {
        if self
            .global
            .contains(destination, now, &Self::global_limits())
        {
            return true;
        }
        let config = self.config;
        let Some(evidence) = self.clients.get_mut(&client) else {
            return false;
        };
        let recent_detection = evidence
            .detection
            .is_some_and(|(at, _)| elapsed(at, now) < config.evidence_window);
        let known_endpoint = evidence.endpoints.contains(destination, now, &config);
        let fan_out = evidence.fan_out.distinct(now) >= FAN_OUT_THRESHOLD;
        let corroborated = recent_detection || known_endpoint || fan_out;
        if !corroborated && evidence.is_stale(now, &config) {
            self.remove(client);
        }
        corroborated
    }

    /// The most recent decisive detection of `client` still inside the evidence window.
    pub fn last_detection(&self, client: ClientKey, now: Instant) -> Option<BtForm> {
        let (at, form) = self.clients.get(&client)?.detection?;
        (elapsed(at, now) < self.config.evidence_window).then_some(form)
    }

    /// Drop clients whose evidence has all expired (call now and then; the store stays
    /// bounded without it, this only frees memory earlier).
    pub fn purge(&mut self, now: Instant) {
        self.global.expire(now, &Self::global_limits());
        let config = self.config;
        let stale: Vec<ClientKey> = self
            .clients
            .iter()
            .filter(|(_, evidence)| evidence.is_stale(now, &config))
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.remove(key);
        }
    }

    /// Limits of the E3 cache, in the shape the endpoint set expects.
    fn global_limits() -> CorrelatorConfig {
        CorrelatorConfig {
            max_endpoints_per_client: GLOBAL_ENDPOINTS,
            endpoint_ttl: GLOBAL_ENDPOINT_TTL,
            ..CorrelatorConfig::default()
        }
    }

    /// Number of clients currently tracked.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client's evidence, created if needed, marked most recently used; evicts the least
    /// recently used client when full.
    fn touch(&mut self, client: ClientKey) -> &mut Evidence {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some(old) = self.clients.get(&client).map(|e| e.stamp) {
            self.recency.remove(&old);
        } else {
            while self.clients.len() >= self.config.max_clients {
                let Some((_, oldest)) = self.recency.pop_first() else {
                    break;
                };
                self.clients.remove(&oldest);
            }
        }
        self.recency.insert(stamp, client);
        let evidence = self.clients.entry(client).or_default();
        evidence.stamp = stamp;
        evidence
    }

    fn remove(&mut self, client: ClientKey) {
        if let Some(evidence) = self.clients.remove(&client) {
            self.recency.remove(&evidence.stamp);
        }
    }
}

/// Time from `then` to `now`, zero if the clock went backwards.
fn elapsed(then: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(then)
}

/// Everything known about one client.
#[derive(Debug, Default)]
struct Evidence {
    /// Recency stamp (key in [`Correlator::recency`]).
    stamp: u64,
    /// E1: last decisive detection.
    detection: Option<(Instant, BtForm)>,
    /// E2/E5: endpoints with the time they were (last) recorded.
    endpoints: Endpoints,
    /// E4: candidate destinations.
    fan_out: FanOut,
}

impl Evidence {
    fn is_stale(&self, now: Instant, config: &CorrelatorConfig) -> bool {
        let detection_live = self
            .detection
            .is_some_and(|(at, _)| elapsed(at, now) < config.evidence_window);
        !detection_live
            && self.endpoints.all_expired(now, config)
            && self.fan_out.distinct(now) == 0
    }
}

/// Endpoint set with a FIFO of insertion times: insertion order is expiry order because every
/// entry has the same TTL. Re-recording an endpoint refreshes it (the stale FIFO entry is
/// skipped when it reaches the front).
#[derive(Debug, Default)]
struct Endpoints {
    latest: HashMap<SocketAddr, Instant>,
    order: VecDeque<(SocketAddr, Instant)>,
}

impl Endpoints {
    fn insert(&mut self, endpoint: SocketAddr, now: Instant, config: &CorrelatorConfig) {
        self.expire(now, config);
        if !self.latest.contains_key(&endpoint) {
            while self.latest.len() >= config.max_endpoints_per_client {
                self.pop_oldest();
            }
        }
        self.latest.insert(endpoint, now);
        self.order.push_back((endpoint, now));
        // Refreshes leave stale entries in the FIFO; keep it within twice the cap.
        if self.order.len() > 2 * config.max_endpoints_per_client + 16 {
            let latest = &self.latest;
            self.order
                .retain(|(endpoint, at)| latest.get(endpoint) == Some(at));
        }
    }

    fn contains(&mut self, endpoint: SocketAddr, now: Instant, config: &CorrelatorConfig) -> bool {
        self.expire(now, config);
        self.latest.contains_key(&endpoint)
    }

    fn all_expired(&self, now: Instant, config: &CorrelatorConfig) -> bool {
        self.latest
            .values()
            .all(|&at| elapsed(at, now) >= config.endpoint_ttl)
    }

    /// Drop entries older than the TTL from the front.
    fn expire(&mut self, now: Instant, config: &CorrelatorConfig) {
        while let Some(&(_, at)) = self.order.front() {
            if elapsed(at, now) < config.endpoint_ttl {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Remove the oldest live entry (skipping FIFO entries superseded by a refresh).
    fn pop_oldest(&mut self) {
        while let Some((endpoint, at)) = self.order.pop_front() {
            if self.latest.get(&endpoint) == Some(&at) {
                self.latest.remove(&endpoint);
                return;
            }
        }
    }
}

/// E4: a small ring of (destination IP, time) for MSE-shaped candidate flows.
#[derive(Debug, Default)]
struct FanOut {
    slots: [Option<(IpAddr, Instant)>; FAN_OUT_SLOTS],
    next: usize,
}

impl FanOut {
    fn insert(&mut self, ip: IpAddr, now: Instant) {
        if let Some(slot) = self
            .slots
            .iter_mut()
            .flatten()
            .find(|(known, _)| *known == ip)
        {
            slot.1 = now;
            return;
        }
        if let Some(slot) = self.slots.get_mut(self.next % FAN_OUT_SLOTS) {
            *slot = Some((ip, now));
        }
        self.next = (self.next + 1) % FAN_OUT_SLOTS;
    }

    fn distinct(&self, now: Instant) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|(_, at)| elapsed(*at, now) < FAN_OUT_WINDOW)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests need some base instant; the core itself never reads the clock.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Instant {
        Instant::now()
    }

    fn addr(i: u32, port: u16) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), port))
    }

    fn small() -> CorrelatorConfig {
        CorrelatorConfig {
            max_clients: 3,
            evidence_window: Duration::from_secs(60),
            max_endpoints_per_client: 4,
            endpoint_ttl: Duration::from_secs(30),
        }
    }

    #[test]
    fn detection_window() {
        let t0 = start();
        let mut c = Correlator::new(small());
        let client = ClientKey(1);
        let dest = addr(1, 6881);
        assert!(!c.is_corroborated(client, dest, t0));
        c.record_detection(client, BtForm::Dht, t0);
        assert!(c.is_corroborated(client, dest, t0 + Duration::from_secs(59)));
        assert_eq!(c.last_detection(client, t0), Some(BtForm::Dht));
        assert!(!c.is_corroborated(ClientKey(2), dest, t0));
        assert!(!c.is_corroborated(client, dest, t0 + Duration::from_secs(60)));
        // Expired and nothing else: the client was dropped.
        assert!(c.is_empty());
        // A clock going backwards counts as no time passed.
        c.record_detection(client, BtForm::Utp, t0 + Duration::from_secs(100));
        assert!(c.is_corroborated(client, dest, t0));
    }

    #[test]
    fn an_mse_verdict_does_not_corroborate_other_flows() {
        let t0 = start();
        let mut c = Correlator::new(small());
        let client = ClientKey(4);
        c.record_detection(client, BtForm::Mse, t0);
        assert!(!c.is_corroborated(client, addr(2, 6881), t0));
        assert_eq!(c.last_detection(client, t0), None);
    }

    #[test]
    fn endpoints_expire_and_are_capped() {
        let t0 = start();
        let mut c = Correlator::new(small());
        let client = ClientKey(7);
        for i in 0..10 {
            c.record_endpoint(
                client,
                addr(i, 6881),
                t0 + Duration::from_secs(u64::from(i)),
            );
        }
        let now = t0 + Duration::from_secs(10);
        // Only the last four remain.
        for i in 0..6 {
            assert!(!c.is_corroborated(client, addr(i, 6881), now), "{i}");
        }
        for i in 6..10 {
            assert!(c.is_corroborated(client, addr(i, 6881), now), "{i}");
        }
        // Another port on the same IP is another endpoint.
        assert!(!c.is_corroborated(client, addr(9, 6882), now));
        let evidence = &c.clients[&client];
        assert!(evidence.endpoints.latest.len() <= 4);
        // TTL: endpoint 6 was recorded at t0+6s, expires at t0+36s.
        assert!(!c.is_corroborated(client, addr(6, 6881), t0 + Duration::from_secs(36)));
        assert!(c.is_corroborated(client, addr(9, 6881), t0 + Duration::from_secs(38)));
    }

    #[test]
    fn refreshing_an_endpoint_extends_it() {
        let t0 = start();
        let mut c = Correlator::new(small());
        let client = ClientKey(7);
        let peer = addr(1, 51_413);
        for i in 0..100u64 {
            c.record_endpoint(client, peer, t0 + Duration::from_secs(i));
        }
        assert!(c.is_corroborated(client, peer, t0 + Duration::from_secs(120)));
        let evidence = &c.clients[&client];
        assert!(evidence.endpoints.order.len() <= 2 * 4 + 16);
    }

    #[test]
    fn clients_are_bounded_lru() {
        let t0 = start();
        let mut c = Correlator::new(small());
        for i in 0..3 {
            c.record_detection(ClientKey(i), BtForm::PeerWire, t0);
        }
        // Touch client 0 so that client 1 is the least recently used.
        c.record_endpoint(ClientKey(0), addr(1, 1), t0);
        c.record_detection(ClientKey(3), BtForm::PeerWire, t0);
        assert_eq!(c.len(), 3);
        let dest = addr(2, 2);
        assert!(c.is_corroborated(ClientKey(0), dest, t0));
        assert!(!c.is_corroborated(ClientKey(1), dest, t0));
        assert!(c.is_corroborated(ClientKey(2), dest, t0));
        assert!(c.is_corroborated(ClientKey(3), dest, t0));
        for i in 10..1000 {
            c.record_detection(ClientKey(i), BtForm::Dht, t0);
            assert!(c.len() <= 3 && c.recency.len() == c.len());
        }
    }

    #[test]
    fn fan_out_needs_six_distinct_ips_within_two_minutes() {
        let t0 = start();
        let mut c = Correlator::new(small());
        let client = ClientKey(5);
        let dest = addr(100, 40_000);
        for i in 0..5 {
            c.record_candidate(client, addr(i, 40_000 + i as u16), t0);
            c.record_candidate(client, addr(i, 50_000), t0);
        }
        assert!(!c.is_corroborated(client, dest, t0));
        c.record_candidate(client, addr(5, 40_000), t0);
        assert!(c.is_corroborated(client, dest, t0 + Duration::from_secs(119)));
        assert!(!c.is_corroborated(client, dest, t0 + Duration::from_secs(120)));
    }

    #[test]
    fn global_bt_endpoints() {
        let t0 = start();
        let mut c = Correlator::new(small());
        let peer = addr(3, 51_413);
        c.record_bt_endpoint(peer, t0);
        c.record_bt_endpoint(addr(4, 80), t0);
        // The read-only query agrees, up to the 30-minute expiry.
        assert!(c.is_known_peer(peer, t0 + Duration::from_secs(1799)));
        assert!(!c.is_known_peer(peer, t0 + Duration::from_secs(1800)));
        assert!(!c.is_known_peer(addr(4, 80), t0));
        // Any client, even one never seen.
        assert!(c.is_corroborated(ClientKey(42), peer, t0 + Duration::from_secs(1799)));
        assert!(!c.is_corroborated(ClientKey(42), addr(4, 80), t0));
        assert!(!c.is_corroborated(ClientKey(42), peer, t0 + Duration::from_secs(1800)));
        for i in 0..(GLOBAL_ENDPOINTS as u32 + 10) {
            c.record_bt_endpoint(addr(i, 6881), t0);
        }
        assert_eq!(c.global.latest.len(), GLOBAL_ENDPOINTS);
        assert!(!c.is_corroborated(ClientKey(1), addr(0, 6881), t0));
        assert!(c.is_corroborated(ClientKey(1), addr(GLOBAL_ENDPOINTS as u32 + 9, 6881), t0));
    }

    #[test]
    fn purge_and_debug_hide_endpoints() {
        let t0 = start();
        let mut c = Correlator::new(small());
        c.record_endpoint(ClientKey(1), addr(0x0A00_0001, 6881), t0);
        c.record_detection(ClientKey(2), BtForm::Dht, t0);
        let shown = format!("{c:?}");
        assert!(!shown.contains("10.0.0.1"), "{shown}");
        c.purge(t0 + Duration::from_secs(31));
        assert_eq!(c.len(), 1);
        c.purge(t0 + Duration::from_secs(61));
        assert!(c.is_empty());
        assert!(c.recency.is_empty());
    }
}
