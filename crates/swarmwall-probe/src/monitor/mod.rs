//! `swarmwall monitor`: watch known swarms for the operator's own egress addresses.
//!
//! For each watched work ([`watchlist`]) the monitor asks its trackers ([`tracker`]: HTTP and
//! UDP, announce with a large `numwant`, then `stopped`, then scrape) and the DHT ([`dht`]:
//! iterative `get_peers`) for peers. Every peer address is checked against the egress ranges
//! **on sight**: an address outside them is dropped at once (never stored, printed or logged);
//! an address inside them is a [`Leak`]: evidence that blocking failed somewhere. A leak can be
//! confirmed with a BitTorrent handshake to that address, which also yields the peer's client
//! id. Leaks are counted in [`MonitorMetrics`] (`swarmwall_monitor_leaks_total`).
//!
//! Every network step has a timeout; requests are rate-limited per tracker and per DHT node
//! (governor); the DHT lookup is bounded in queries and concurrency.

pub mod dht;
mod metrics;
pub mod tracker;
pub mod watchlist;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::Quota;
use ipnet::IpNet;
use swarmwall_core::bt::peer_wire::{self, Handshake};
use swarmwall_core::bt::tracker::TrackerUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use metrics::{MonitorMetrics, serve_metrics};
use tracker::Announce;
pub use watchlist::{EntryError, Work};

/// Keyed (by `host:port`) rate limiter for trackers and DHT nodes.
pub(crate) type RateLimiter = governor::DefaultKeyedRateLimiter<String>;

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The operator's egress ranges: a peer inside one of them is a leak.
    pub egress: Vec<IpNet>,
    /// Trackers asked for every work, on top of the work's own.
    pub extra_trackers: Vec<String>,
    /// DHT bootstrap nodes (`HOST:PORT`). Empty: no DHT lookup.
    pub dht_bootstrap: Vec<String>,
    /// Bound on each network request.
    pub timeout: Duration,
    /// Peers asked for in each announce.
    pub numwant: u32,
    /// The port the monitor announces (it leaves with `stopped` right after). A peer at exactly
    /// this port on an egress address is the monitor itself and is not reported.
    pub announce_port: u16,
    /// Most DHT queries per lookup.
    pub dht_max_queries: usize,
    /// DHT queries in flight at once.
    pub dht_alpha: usize,
    /// Confirm each leak with a BitTorrent handshake (gives the peer's client id).
    pub confirm: bool,
    /// Requests per minute to any one tracker.
    pub tracker_rate_per_minute: NonZeroU32,
    /// Queries per minute to any one DHT node.
    pub dht_rate_per_minute: NonZeroU32,
}

impl MonitorConfig {
    /// Defaults for everything but the egress ranges.
    pub fn new(egress: Vec<IpNet>) -> Self {
        Self {
            egress,
            extra_trackers: Vec::new(),
            dht_bootstrap: Vec::new(),
            timeout: Duration::from_secs(10),
            numwant: 200,
            announce_port: 6881,
            dht_max_queries: 200,
            dht_alpha: 3,
            confirm: true,
            tracker_rate_per_minute: NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN),
            dht_rate_per_minute: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Where a leak was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakSource {
    /// A tracker's announce response (its URL).
    Tracker(String),
    /// A DHT `get_peers` response.
    Dht,
}

impl LeakSource {
    /// `tracker` or `dht`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tracker(_) => "tracker",
            Self::Dht => "dht",
        }
    }
}

/// One of our own egress addresses seen in a watched swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// When it was seen.
    pub time: SystemTime,
    /// The work's info-hash.
    pub info_hash: [u8; 20],
    /// Our address (inside an egress range).
    pub address: IpAddr,
    /// The port announced.
    pub port: u16,
    /// Tracker or DHT.
    pub source: LeakSource,
    /// The peer's client id (printable peer-id prefix, e.g. `-lt20A0-`) when a BitTorrent
    /// handshake to that address confirmed it.
    pub peer_client: Option<String>,
}

/// How one source (a tracker, the DHT) went for one work; counts only, no addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// Tracker URL or `dht`.
    pub source: String,
    /// Whether the lookup succeeded.
    pub ok: bool,
    /// Counts or the error.
    pub detail: String,
}

/// The result of checking one work.
#[derive(Debug, Clone)]
pub struct WorkReport {
    /// The work.
    pub work: Work,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Leaks found.
    pub leaks: Vec<Leak>,
}

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// No egress range was given.
    #[error("at least one egress range is needed")]
    NoEgress,
}

/// The monitor: configuration, rate limiters and metrics, reused across runs.
#[derive(Debug)]
pub struct Monitor {
    config: MonitorConfig,
    peer_id: [u8; 20],
    tracker_limiter: RateLimiter,
    dht_limiter: RateLimiter,
    metrics: Arc<MonitorMetrics>,
}

impl Monitor {
    /// A monitor with its own rate limiters.
    pub fn new(config: MonitorConfig, metrics: Arc<MonitorMetrics>) -> Result<Self, MonitorError> {
        if config.egress.is_empty() {
            return Err(MonitorError::NoEgress);
        }
        let mut peer_id = *b"-SW0100-000000000000";
        for byte in peer_id.iter_mut().skip(8) {
            *byte = b'0' + rand::random::<u8>() % 10;
        }
        Ok(Self {
            tracker_limiter: RateLimiter::keyed(
                Quota::per_minute(config.tracker_rate_per_minute)
                    .allow_burst(NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN)),
            ),
            dht_limiter: RateLimiter::keyed(Quota::per_minute(config.dht_rate_per_minute)),
            config,
            peer_id,
            metrics,
        })
    }

    /// True when `ip` is inside one of the egress ranges (IPv4-mapped IPv6 counts as IPv4).
    pub fn is_egress(&self, ip: IpAddr) -> bool {
        is_egress(&self.config.egress, ip)
    }

    /// Check one work on every tracker and the DHT.
    pub async fn check(&self, work: &Work) -> WorkReport {
        let mut sources = Vec::new();
        let mut found: Vec<(SocketAddr, LeakSource)> = Vec::new();
        let mut trackers: Vec<&str> = work.trackers.iter().map(String::as_str).collect();
        for extra in &self.config.extra_trackers {
            if !trackers.contains(&extra.as_str()) {
                trackers.push(extra);
            }
        }
        for url in trackers {
            let mut filter = PeerFilter::new(&self.config.egress, self.config.announce_port);
            let result = self.tracker_lookup(url, work, &mut filter).await;
            sources.push(match result {
                Ok(detail) => SourceReport {
                    source: url.to_owned(),
                    ok: true,
                    detail: format!("{detail}; {} peers seen", filter.seen),
                },
                Err(error) => SourceReport {
                    source: url.to_owned(),
                    ok: false,
                    detail: error.to_string(),
                },
            });
            for address in filter.matches {
                found.push((address, LeakSource::Tracker(url.to_owned())));
            }
        }
        if !self.config.dht_bootstrap.is_empty() {
            let mut filter = PeerFilter::new(&self.config.egress, self.config.announce_port);
            let report = match self.dht_lookup(work, &mut filter).await {
                Ok(outcome) => SourceReport {
                    source: "dht".to_owned(),
                    ok: outcome.responses > 0,
                    detail: format!(
                        "{} queries, {} responses, {} peers seen",
                        outcome.queries, outcome.responses, filter.seen
                    ),
                },
                Err(error) => SourceReport {
                    source: "dht".to_owned(),
                    ok: false,
                    detail: error.to_string(),
                },
            };
            sources.push(report);
            for address in filter.matches {
                found.push((address, LeakSource::Dht));
            }
        }
        let mut leaks = Vec::new();
        for (address, source) in found {
            let peer_client = if self.config.confirm {
                confirm(address, &work.info_hash, &self.peer_id, self.config.timeout).await
            } else {
                None
            };
            self.metrics.record_leak();
            leaks.push(Leak {
                time: SystemTime::now(),
                info_hash: work.info_hash,
                address: address.ip(),
                port: address.port(),
                source,
                peer_client,
            });
        }
        // Forget rate-limit state of trackers and nodes not seen recently.
        self.tracker_limiter.retain_recent();
        self.dht_limiter.retain_recent();
        WorkReport {
            work: work.clone(),
            sources,
            leaks,
        }
    }

    async fn tracker_lookup(
        &self,
        url: &str,
        work: &Work,
        filter: &mut PeerFilter<'_>,
    ) -> Result<String, SourceError> {
        let parsed = TrackerUrl::parse(url)?;
        let key = parsed.endpoint();
        // Up to four requests per lookup (connect/announce/stopped/scrape).
        for _ in 0..4 {
            tokio::time::timeout(
                self.config.timeout,
                self.tracker_limiter.until_key_ready(&key),
            )
            .await
            .map_err(|_| SourceError::RateLimited)?;
        }
        let announce = Announce {
            info_hash: &work.info_hash,
            peer_id: &self.peer_id,
            port: self.config.announce_port,
            numwant: self.config.numwant,
            timeout: self.config.timeout,
        };
        let mut visit = |address: SocketAddr| filter.offer(address);
        let (info, scrape) = match &parsed {
            TrackerUrl::Http { host, port, path } => {
                tracker::http_lookup(host, *port, path, announce, &mut visit).await
            }
            TrackerUrl::Udp { host, port } => {
                tracker::udp_lookup(host, *port, announce, &mut visit).await
            }
        }?;
        let mut detail = format!(
            "announce ok (seeders {}, leechers {})",
            info.complete.map_or("?".to_owned(), |v| v.to_string()),
            info.incomplete.map_or("?".to_owned(), |v| v.to_string()),
        );
        if let Some(scrape) = scrape {
            detail.push_str(&format!(
                "; scrape: {} complete, {} incomplete, {} downloaded",
                scrape.complete, scrape.incomplete, scrape.downloaded
            ));
        }
        Ok(detail)
    }

    async fn dht_lookup(
        &self,
        work: &Work,
        filter: &mut PeerFilter<'_>,
    ) -> Result<dht::DhtOutcome, SourceError> {
        let mut bootstrap = Vec::new();
        for node in &self.config.dht_bootstrap {
            let resolved = tokio::time::timeout(self.config.timeout, tokio::net::lookup_host(node))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(addresses) = resolved {
                bootstrap.extend(addresses.filter(SocketAddr::is_ipv4).take(4));
            }
        }
        if bootstrap.is_empty() {
            return Err(SourceError::NoBootstrap);
        }
        let settings = dht::DhtSettings {
            bootstrap,
            max_queries: self.config.dht_max_queries,
            alpha: self.config.dht_alpha,
            timeout: self.config.timeout,
        };
        let mut visit = |address: SocketAddr| filter.offer(address);
        dht::lookup(&work.info_hash, &settings, &self.dht_limiter, &mut visit)
            .await
            .map_err(|error| SourceError::DhtSocket(error.kind()))
    }
}

/// Why a tracker or the DHT gave no answer (a source report's detail).
#[derive(Debug, thiserror::Error)]
enum SourceError {
    /// The tracker URL does not parse.
    #[error("{0}")]
    Url(#[from] swarmwall_core::bt::tracker::TrackerError),
    /// The per-tracker rate limit did not free a slot in time.
    #[error("rate limit for this tracker not free within the timeout")]
    RateLimited,
    /// The announce or scrape failed.
    #[error("{0}")]
    Lookup(#[from] tracker::LookupError),
    /// None of the DHT bootstrap names resolved.
    #[error("no DHT bootstrap node resolved")]
    NoBootstrap,
    /// The DHT socket failed.
    #[error("DHT socket error: {0}")]
    DhtSocket(std::io::ErrorKind),
}

/// Drops every address outside the egress ranges the moment it is offered; keeps only ours.
struct PeerFilter<'a> {
    egress: &'a [IpNet],
    own_port: u16,
    seen: usize,
    matches: Vec<SocketAddr>,
}

impl<'a> PeerFilter<'a> {
    fn new(egress: &'a [IpNet], own_port: u16) -> Self {
        Self {
            egress,
            own_port,
            seen: 0,
            matches: Vec::new(),
        }
    }

    fn offer(&mut self, address: SocketAddr) {
        self.seen += 1;
        if !is_egress(self.egress, address.ip()) || address.port() == self.own_port {
            return;
        }
        let address = SocketAddr::new(canonical(address.ip()), address.port());
        if self.matches.len() < 1024 && !self.matches.contains(&address) {
            self.matches.push(address);
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_egress(egress: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    egress.iter().any(|net| net.contains(&ip))
}

/// BitTorrent handshake to `address` for `info_hash`; the peer's printable client prefix when
/// it answers with a handshake for the same info-hash.
async fn confirm(
    address: SocketAddr,
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
    limit: Duration,
) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        let ours = Handshake {
            reserved: peer_wire::RESERVED_NONE,
            info_hash: *info_hash,
            peer_id: *peer_id,
        };
        stream.write_all(&ours.encode()).await.ok()?;
        let mut reply = [0u8; peer_wire::HANDSHAKE_LEN];
        stream.read_exact(&mut reply).await.ok()?;
        let theirs = Handshake::decode(&reply)?;
        if theirs.info_hash != *info_hash {
            return None;
        }
        Some(peer_wire::client_prefix(&theirs.peer_id))
    };
    tokio::time::timeout(limit, exchange).await.ok().flatten()
}

/// RFC 3339 UTC timestamp with seconds (`2026-11-23T10:00:00Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_only_egress_addresses() {
        let egress: Vec<IpNet> = vec![
            "127.0.0.2/32".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let mut filter = PeerFilter::new(&egress, 6881);
        filter.offer("127.0.0.3:1000".parse().unwrap());
        filter.offer("127.0.0.2:1000".parse().unwrap());
        filter.offer("127.0.0.2:1000".parse().unwrap());
        filter.offer("127.0.0.2:6881".parse().unwrap());
        filter.offer("[::ffff:127.0.0.2]:2000".parse().unwrap());
        filter.offer("[2001:db8::1]:3000".parse().unwrap());
        assert_eq!(filter.seen, 6);
        assert_eq!(
            filter.matches,
            vec![
                "127.0.0.2:1000".parse().unwrap(),
                "127.0.0.2:2000".parse().unwrap(),
                "[2001:db8::1]:3000".parse().unwrap()
            ]
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_431_078);
        assert_eq!(rfc3339(t), "2026-11-23T10:51:18Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
