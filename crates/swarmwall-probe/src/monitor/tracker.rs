//! Tracker lookups over the network: HTTP (BEP 3, BEP 48 scrape) and UDP (BEP 15). Announce
//! with a large `numwant`, then `stopped` so the monitor leaves the swarm, then scrape. The
//! messages are built and parsed by the pure [`swarmwall_core::bt::tracker`]; peers are handed
//! to a visitor one by one and never collected here.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use swarmwall_core::bt::tracker::{
    self, AnnounceEvent, AnnounceInfo, ScrapeCounts, TrackerError, UdpAnnounce, percent_encode,
    scrape_path,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Largest HTTP tracker response read.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a tracker lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Name resolution failed.
    #[error("cannot resolve the tracker host")]
    Resolve,
    /// No answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Network error (its kind only: no addresses).
    #[error("network error: {0}")]
    Io(String),
    /// The URL or the tracker's answer is unusable.
    #[error(transparent)]
    Tracker(#[from] TrackerError),
}

/// Parameters of one announce.
#[derive(Debug, Clone, Copy)]
pub struct Announce<'a> {
    /// Info-hash.
    pub info_hash: &'a [u8; 20],
    /// Our peer id.
    pub peer_id: &'a [u8; 20],
    /// The port we announce.
    pub port: u16,
    /// Peers asked for.
    pub numwant: u32,
    /// Per-request bound.
    pub timeout: Duration,
}

// ---------------------------------------------------------------- HTTP

/// Announce (`started`), then `stopped`, then scrape over HTTP. Peers go to `visit`.
pub async fn http_lookup(
    host: &str,
    port: u16,
    path: &str,
    announce: Announce<'_>,
    visit: &mut dyn FnMut(SocketAddr),
) -> Result<(AnnounceInfo, Option<ScrapeCounts>), LookupError> {
    let query = announce_query(&announce, "started");
    let raw = http_get(host, port, &with_query(path, &query), announce.timeout).await?;
    let body = tracker::parse_http_response(&raw)?;
    let info = tracker::parse_announce_body(&body, visit)?;
    // Leave the swarm; the answer does not matter (its peers are not looked at).
    let stopped = announce_query(&announce, "stopped");
    let _ = http_get(host, port, &with_query(path, &stopped), announce.timeout).await;
    let scrape = match scrape_path(path) {
        Some(scrape_path) => {
            let query = format!("info_hash={}", percent_encode(announce.info_hash));
            match http_get(
                host,
                port,
                &with_query(&scrape_path, &query),
                announce.timeout,
            )
            .await
            {
                Ok(raw) => tracker::parse_http_response(&raw)
                    .ok()
                    .and_then(|body| tracker::parse_scrape_body(&body, announce.info_hash).ok()),
                Err(_) => None,
            }
        }
        None => None,
    };
    Ok((info, scrape))
}

fn announce_query(announce: &Announce<'_>, event: &str) -> String {
    format!(
        "info_hash={}&peer_id={}&port={}&uploaded=0&downloaded=0&left=1&compact=1&numwant={}\
         &event={event}",
        percent_encode(announce.info_hash),
        percent_encode(announce.peer_id),
        announce.port,
        announce.numwant,
    )
}

fn with_query(path: &str, query: &str) -> String {
    if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

async fn http_get(
    host: &str,
    port: u16,
    path_and_query: &str,
    limit: Duration,
) -> Result<Vec<u8>, LookupError> {
    let exchange = async {
        let mut stream = TcpStream::connect((host, port))
            .await
            .map_err(|error| LookupError::Io(error.kind().to_string()))?;
        let host_header = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let request = format!(
            "GET {path_and_query} HTTP/1.0\r\nHost: {host_header}\r\n\
             User-Agent: swarmwall-monitor/{}\r\nAccept-Encoding: identity\r\n\
             Connection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| LookupError::Io(error.kind().to_string()))?;
        let mut response = Vec::new();
        let mut limited = (&mut stream).take(MAX_HTTP_RESPONSE_BYTES as u64 + 1);
        limited
            .read_to_end(&mut response)
            .await
            .map_err(|error| LookupError::Io(error.kind().to_string()))?;
        if response.len() > MAX_HTTP_RESPONSE_BYTES {
            return Err(LookupError::Tracker(TrackerError::Http(
                "response larger than 1 MiB".to_owned(),
            )));
        }
        Ok(response)
    };
    timeout(limit, exchange)
        .await
        .unwrap_or(Err(LookupError::Timeout(limit)))
}

// ---------------------------------------------------------------- UDP (BEP 15)

/// Connect, announce (`started`), announce (`stopped`), scrape over UDP. Peers go to `visit`.
pub async fn udp_lookup(
    host: &str,
    port: u16,
    announce: Announce<'_>,
    visit: &mut dyn FnMut(SocketAddr),
) -> Result<(AnnounceInfo, Option<ScrapeCounts>), LookupError> {
    let target = timeout(announce.timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| LookupError::Timeout(announce.timeout))?
        .map_err(|_| LookupError::Resolve)?
        .next()
        .ok_or(LookupError::Resolve)?;
    let bind: SocketAddr = if target.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|error| LookupError::Io(error.kind().to_string()))?;
    socket
        .connect(target)
        .await
        .map_err(|error| LookupError::Io(error.kind().to_string()))?;
    let mut buf = vec![0u8; 65_536];

    let transaction: u32 = rand::random();
    let request = tracker::udp_connect_request(transaction);
    let reply = udp_exchange(&socket, &request, &mut buf, announce.timeout).await?;
    let connection = tracker::parse_udp_connect(reply, transaction)?;

    let announce_request = |transaction, event| {
        UdpAnnounce {
            connection,
            transaction,
            info_hash: announce.info_hash,
            peer_id: announce.peer_id,
            downloaded: 0,
            left: 1,
            uploaded: 0,
            event,
            key: rand::random(),
            num_want: i32::try_from(announce.numwant).unwrap_or(i32::MAX),
            port: announce.port,
        }
        .encode()
    };
    let transaction = transaction.wrapping_add(1);
    let request = announce_request(transaction, AnnounceEvent::Started);
    let reply = udp_exchange(&socket, &request, &mut buf, announce.timeout).await?;
    let info = tracker::parse_udp_announce(reply, transaction, target.is_ipv6(), visit)?;

    // Leave the swarm: one `stopped` announce; its answer (peers included) is not looked at.
    let request = announce_request(transaction.wrapping_add(1), AnnounceEvent::Stopped);
    let _ = udp_exchange(&socket, &request, &mut buf, announce.timeout).await;

    let transaction = transaction.wrapping_add(2);
    let request = tracker::udp_scrape_request(connection, transaction, announce.info_hash);
    let scrape = match udp_exchange(&socket, &request, &mut buf, announce.timeout).await {
        Ok(reply) => tracker::parse_udp_scrape(reply, transaction).ok(),
        Err(_) => None,
    };
    Ok((info, scrape))
}

/// Send `request`; wait for a reply; one retransmission (BEP 15 asks for retries, bounded
/// here by the caller's timeout: at most two waits).
async fn udp_exchange<'b>(
    socket: &UdpSocket,
    request: &[u8],
    buf: &'b mut [u8],
    limit: Duration,
) -> Result<&'b [u8], LookupError> {
    for _attempt in 0..2 {
        socket
            .send(request)
            .await
            .map_err(|error| LookupError::Io(error.kind().to_string()))?;
        match timeout(limit / 2, socket.recv(buf)).await {
            Ok(Ok(len)) => {
                return buf
                    .get(..len)
                    .ok_or(LookupError::Tracker(TrackerError::Malformed("length")));
            }
            Ok(Err(error)) => return Err(LookupError::Io(error.kind().to_string())),
            Err(_) => continue,
        }
    }
    Err(LookupError::Timeout(limit))
}
