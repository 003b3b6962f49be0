//! Iterative BEP 5 `get_peers` lookup: start from the configured bootstrap nodes, keep the
//! closest known nodes (XOR distance to the info-hash), query at most `alpha` at a time and at
//! most `max_queries` in all, each node at most once per lookup and within a per-node rate.
//!
//! Node contacts are kept in memory for the lookup only (they are needed to route) and are
//! never printed or logged; peers from `values` go straight to the caller's visitor.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use swarmwall_core::bt::krpc::{self, MessageKind};

use super::RateLimiter;

/// Most node contacts kept during one lookup.
const MAX_CANDIDATES: usize = 512;
/// Only the closest this many known nodes are worth querying (Kademlia's k is 8).
const CLOSEST_WINDOW: usize = 16;

/// Lookup bounds.
#[derive(Debug, Clone)]
pub struct DhtSettings {
    /// Bootstrap nodes (resolved).
    pub bootstrap: Vec<SocketAddr>,
    /// Most queries sent in one lookup.
    pub max_queries: usize,
    /// Queries in flight at once.
    pub alpha: usize,
    /// How long to wait for each answer.
    pub timeout: Duration,
}

/// What a lookup did (counts only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtOutcome {
    /// Queries sent.
    pub queries: usize,
    /// Responses received.
    pub responses: usize,
    /// Peers handed to the visitor.
    pub peers: usize,
}

struct Candidate {
    distance: [u8; 20],
    address: SocketAddr,
    queried: bool,
}

/// Run one lookup for `info_hash`; peers go to `visit`.
pub(super) async fn lookup(
    info_hash: &[u8; 20],
    settings: &DhtSettings,
    limiter: &RateLimiter,
    visit: &mut dyn FnMut(SocketAddr),
) -> std::io::Result<DhtOutcome> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    let node_id: [u8; 20] = rand::random();
    let mut outcome = DhtOutcome::default();
    let mut candidates: Vec<Candidate> = settings
        .bootstrap
        .iter()
        .filter(|a| a.is_ipv4())
        .map(|&address| Candidate {
            // Unknown id: query bootstrap nodes first, then by distance.
            distance: [0; 20],
            address,
            queried: false,
        })
        .collect();
    let mut in_flight: HashMap<[u8; 2], (SocketAddr, Instant)> = HashMap::new();
    let mut next_transaction: u16 = rand::random();
    let mut buf = vec![0u8; 65_536];
    let alpha = settings.alpha.max(1);
    // Whole-lookup bound on top of the per-query timeout.
    let rounds = settings.max_queries.div_ceil(alpha) as u32 + 2;
    let overall = Instant::now() + settings.timeout.saturating_mul(rounds);

    loop {
        // Fill the window.
        while in_flight.len() < alpha && outcome.queries < settings.max_queries {
            let Some(candidate) = candidates
                .iter_mut()
                .take(CLOSEST_WINDOW)
                .find(|c| !c.queried)
            else {
                break;
            };
            candidate.queried = true;
            if limiter.check_key(&candidate.address.to_string()).is_err() {
                continue;
            }
            let transaction = next_transaction.to_be_bytes();
            next_transaction = next_transaction.wrapping_add(1);
            let query = krpc::get_peers(&transaction, &node_id, info_hash);
            if socket.send_to(&query, candidate.address).await.is_ok() {
                outcome.queries += 1;
                in_flight.insert(
                    transaction,
                    (candidate.address, Instant::now() + settings.timeout),
                );
            }
        }
        if in_flight.is_empty() || Instant::now() >= overall {
            break;
        }
        let earliest = in_flight
            .values()
            .map(|(_, deadline)| *deadline)
            .min()
            .unwrap_or(overall)
            .min(overall);
        match tokio::time::timeout_at(earliest, socket.recv_from(&mut buf)).await {
            Err(_) => {
                let now = Instant::now();
                in_flight.retain(|_, (_, deadline)| *deadline > now);
            }
            Ok(Err(_)) => continue,
            Ok(Ok((len, from))) => {
                let Some(datagram) = buf.get(..len) else {
                    continue;
                };
                let Ok(message) = krpc::parse(datagram) else {
                    continue;
                };
                let Ok(transaction) = <[u8; 2]>::try_from(message.transaction) else {
                    continue;
                };
                match in_flight.get(&transaction) {
                    Some((address, _)) if *address == from => {}
                    _ => continue,
                }
                in_flight.remove(&transaction);
                let MessageKind::Response(response) = message.kind else {
                    continue;
                };
                outcome.responses += 1;
                outcome.peers += response.visit_values(visit);
                response.visit_nodes(&mut |id, address| {
                    if !address.is_ipv4()
                        || address.port() == 0
                        || candidates.iter().any(|c| c.address == address)
                    {
                        return;
                    }
                    let distance = xor(&id, info_hash);
                    let position = candidates.partition_point(|c| c.distance <= distance);
                    if position < MAX_CANDIDATES {
                        candidates.insert(
                            position,
                            Candidate {
                                distance,
                                address,
                                queried: false,
                            },
                        );
                        candidates.truncate(MAX_CANDIDATES);
                    }
                });
            }
        }
    }
    Ok(outcome)
}

fn xor(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    /// A scripted KRPC node: answers every get_peers with `body` (the bencoded `r` dict).
    async fn node(body: Vec<u8>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = krpc::parse(&buf[..len]) else {
                    continue;
                };
                let mut reply = b"d1:r".to_vec();
                reply.extend_from_slice(&body);
                reply.extend_from_slice(format!("1:t{}:", query.transaction.len()).as_bytes());
                reply.extend_from_slice(query.transaction);
                reply.extend_from_slice(b"1:y1:re");
                let _ = socket.send_to(&reply, from).await;
            }
        });
        address
    }

    fn compact(address: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(v4) = address else {
            panic!("v4 only");
        };
        let mut out = v4.ip().octets().to_vec();
        out.extend_from_slice(&v4.port().to_be_bytes());
        out
    }

    fn limiter() -> RateLimiter {
        RateLimiter::keyed(governor::Quota::per_minute(NonZeroU32::new(600).unwrap()))
    }

    #[tokio::test]
    async fn lookup_follows_nodes_to_the_values() {
        let peer: SocketAddr = "127.0.0.2:51413".parse().unwrap();
        let mut far_body = b"d2:id20:".to_vec();
        far_body.extend_from_slice(&[0x11; 20]);
        far_body.extend_from_slice(b"5:token2:tk6:valuesl6:");
        far_body.extend_from_slice(&compact(peer));
        far_body.extend_from_slice(b"ee");
        let holder = node(far_body).await;
        let mut bootstrap_body = b"d2:id20:".to_vec();
        bootstrap_body.extend_from_slice(&[0x22; 20]);
        bootstrap_body.extend_from_slice(b"5:nodes26:");
        bootstrap_body.extend_from_slice(&[0x11; 20]);
        bootstrap_body.extend_from_slice(&compact(holder));
        bootstrap_body.push(b'e');
        let bootstrap = node(bootstrap_body).await;
        let settings = DhtSettings {
            bootstrap: vec![bootstrap],
            max_queries: 10,
            alpha: 3,
            timeout: Duration::from_secs(2),
        };
        let mut seen = Vec::new();
        let outcome = lookup(&[0x10; 20], &settings, &limiter(), &mut |a| seen.push(a))
            .await
            .unwrap();
        assert_eq!(seen, vec![peer]);
        assert_eq!(outcome.queries, 2);
        assert_eq!(outcome.responses, 2);
    }

    #[tokio::test]
    async fn silent_nodes_end_the_lookup_within_its_bound() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let settings = DhtSettings {
            bootstrap: vec![silent.local_addr().unwrap()],
            max_queries: 50,
            alpha: 3,
            timeout: Duration::from_millis(200),
        };
        let started = std::time::Instant::now();
        let outcome = lookup(&[0; 20], &settings, &limiter(), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(outcome.queries, 1);
        assert_eq!(outcome.responses, 0);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
