//! Tracker lookups: HTTP (BEP 3, BEP 23 compact peers, BEP 7 `peers6`, BEP 48 scrape) and UDP
//! (BEP 15). Announce with a large `numwant`, then `stopped` so the monitor leaves the swarm,
//! then scrape. The parsers are pure and never panic on any input (proptest here, fuzz targets
//! in `fuzz/fuzz_targets/tracker_response.rs`); peers are handed to a visitor one by one and
//! never collected here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use swarmwall_core::classify::bencode::{self, Limits, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Largest HTTP tracker response read.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 1024 * 1024;

/// BEP 15 protocol id of the connect request.
const UDP_PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Why a tracker lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// The URL is not `http://` or `udp://` or does not parse.
    #[error("unsupported or malformed tracker URL ({0})")]
    Url(&'static str),
    /// Name resolution failed.
    #[error("cannot resolve the tracker host")]
    Resolve,
    /// No answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Network error.
    #[error("network error: {0}")]
    Io(String),
    /// The HTTP response is malformed or not 200.
    #[error("bad HTTP response: {0}")]
    Http(String),
    /// The body is not a valid tracker response.
    #[error("malformed tracker response: {0}")]
    Malformed(&'static str),
    /// The tracker answered with a failure reason (printable part, truncated).
    #[error("tracker failure: {0}")]
    Failure(String),
}

/// What an announce told us besides the peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnounceInfo {
    /// Re-announce interval, seconds.
    pub interval: Option<u32>,
    /// Seeders, if reported.
    pub complete: Option<u32>,
    /// Leechers, if reported.
    pub incomplete: Option<u32>,
    /// Peer entries handed to the visitor.
    pub peers: usize,
}

/// Scrape counts for one info-hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// A parsed tracker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerUrl {
    /// `http://host[:port]/path[?query]`
    Http {
        /// Host (brackets removed for IPv6).
        host: String,
        /// Port (80 by default).
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
    },
    /// `udp://host:port[/…]`
    Udp {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
}

impl TrackerUrl {
    /// Parse an announce URL.
    pub fn parse(url: &str) -> Result<Self, TrackerError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(TrackerError::Url("no scheme"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(index) => rest.split_at(index),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority)?;
        match scheme.to_ascii_lowercase().as_str() {
            "http" => Ok(Self::Http {
                host,
                port: port.unwrap_or(80),
                path: if path.starts_with('/') {
                    path.to_owned()
                } else {
                    format!("/{path}")
                },
            }),
            "udp" => Ok(Self::Udp {
                host,
                port: port.ok_or(TrackerError::Url("udp tracker without a port"))?,
            }),
            "https" => Err(TrackerError::Url("https trackers are not supported")),
            _ => Err(TrackerError::Url("scheme is not http or udp")),
        }
    }

    /// `scheme://host:port`, the rate-limit key.
    pub fn endpoint(&self) -> String {
        let (scheme, host, port) = match self {
            Self::Http { host, port, .. } => ("http", host, port),
            Self::Udp { host, port } => ("udp", host, port),
        };
        if host.contains(':') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        }
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), TrackerError> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or(TrackerError::Url("unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().map_err(|_| TrackerError::Url("bad port"))?),
            None if after.is_empty() => None,
            None => return Err(TrackerError::Url("junk after IPv6 address")),
        };
        return Ok((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            Some(port.parse().map_err(|_| TrackerError::Url("bad port"))?),
        )),
        None if authority.is_empty() => Err(TrackerError::Url("empty host")),
        None => Ok((authority.to_owned(), None)),
    }
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
) -> Result<(AnnounceInfo, Option<ScrapeCounts>), TrackerError> {
    let query = announce_query(&announce, "started");
    let raw = http_get(host, port, &with_query(path, &query), announce.timeout).await?;
    let body = parse_http_response(&raw)?;
    let info = parse_announce_body(&body, visit)?;
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
                Ok(raw) => parse_http_response(&raw)
                    .ok()
                    .and_then(|body| parse_scrape_body(&body, announce.info_hash).ok()),
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

/// BEP 48 convention: replace the last `announce` path segment with `scrape`.
pub fn scrape_path(path: &str) -> Option<String> {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let (dir, last) = base.rsplit_once('/')?;
    let rest = last.strip_prefix("announce")?;
    let mut out = format!("{dir}/scrape{rest}");
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn http_get(
    host: &str,
    port: u16,
    path_and_query: &str,
    limit: Duration,
) -> Result<Vec<u8>, TrackerError> {
    let exchange = async {
        let mut stream = TcpStream::connect((host, port))
            .await
            .map_err(|error| TrackerError::Io(error.kind().to_string()))?;
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
            .map_err(|error| TrackerError::Io(error.kind().to_string()))?;
        let mut response = Vec::new();
        let mut limited = (&mut stream).take(MAX_HTTP_RESPONSE_BYTES as u64 + 1);
        limited
            .read_to_end(&mut response)
            .await
            .map_err(|error| TrackerError::Io(error.kind().to_string()))?;
        if response.len() > MAX_HTTP_RESPONSE_BYTES {
            return Err(TrackerError::Http("response larger than 1 MiB".to_owned()));
        }
        Ok(response)
    };
    timeout(limit, exchange)
        .await
        .unwrap_or(Err(TrackerError::Timeout(limit)))
}

/// Split an HTTP/1.x response into its body (de-chunked if needed). Status must be 200.
pub fn parse_http_response(raw: &[u8]) -> Result<Vec<u8>, TrackerError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| TrackerError::Http("no end of headers".to_owned()))?;
    let head = raw.get(..split).unwrap_or_default();
    let body = raw.get(split + 4..).unwrap_or_default();
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(TrackerError::Http("not an HTTP/1.x response".to_owned()));
    }
    let status = parts.next().unwrap_or_default();
    if status != "200" {
        return Err(TrackerError::Http(format!(
            "status {}",
            status.chars().take(3).collect::<String>()
        )));
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    if chunked {
        dechunk(body)
    } else {
        Ok(body.to_vec())
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, TrackerError> {
    let bad = || TrackerError::Http("bad chunked encoding".to_owned());
    let mut out = Vec::new();
    // Bounded: every iteration consumes at least the size line.
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text =
            std::str::from_utf8(body.get(..line_end).ok_or_else(bad)?).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        let start = line_end + 2;
        if size == 0 {
            return Ok(out);
        }
        let end = start.checked_add(size).ok_or_else(bad)?;
        out.extend_from_slice(body.get(start..end).ok_or_else(bad)?);
        body = body.get(end + 2..).ok_or_else(bad)?;
    }
}

/// Bounds for tracker and KRPC bencoding: shallow, but room for a few hundred peer dicts.
pub(crate) const RESPONSE_LIMITS: Limits = Limits {
    max_depth: 6,
    max_items: 16_384,
};

/// Parse an announce body: failure reason, interval, counts, and every peer (compact `peers`,
/// dictionary-model `peers`, compact `peers6`) handed to `visit`.
pub fn parse_announce_body(
    body: &[u8],
    visit: &mut dyn FnMut(SocketAddr),
) -> Result<AnnounceInfo, TrackerError> {
    let root = bencode::parse_exact(body, RESPONSE_LIMITS)
        .map_err(|_| TrackerError::Malformed("body is not bencoded"))?;
    if !matches!(root, Value::Dict(_)) {
        return Err(TrackerError::Malformed("body is not a dictionary"));
    }
    if let Some(reason) = root.get(b"failure reason") {
        let text = reason.as_bytes().unwrap_or_default();
        return Err(TrackerError::Failure(printable(text)));
    }
    let count = |key: &[u8]| {
        root.get(key)
            .and_then(|v| v.as_int())
            .and_then(|v| u32::try_from(v).ok())
    };
    let mut info = AnnounceInfo {
        interval: count(b"interval"),
        complete: count(b"complete"),
        incomplete: count(b"incomplete"),
        peers: 0,
    };
    match root.get(b"peers") {
        Some(Value::Bytes(compact)) => {
            info.peers += visit_compact(compact, false, visit);
        }
        Some(list @ Value::List(_)) => {
            for peer in list.list_items() {
                let ip = peer
                    .get(b"ip")
                    .and_then(|v| v.as_bytes())
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<IpAddr>().ok());
                let port = peer
                    .get(b"port")
                    .and_then(|v| v.as_int())
                    .and_then(|p| u16::try_from(p).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    info.peers += 1;
                    visit(SocketAddr::new(ip, port));
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Bytes(compact)) = root.get(b"peers6") {
        info.peers += visit_compact(compact, true, visit);
    }
    Ok(info)
}

/// Visit 6-byte (IPv4) or 18-byte (IPv6) compact peer entries; a trailing partial entry is
/// ignored. Returns the number visited.
pub fn visit_compact(bytes: &[u8], ipv6: bool, visit: &mut dyn FnMut(SocketAddr)) -> usize {
    let size = if ipv6 { 18 } else { 6 };
    let mut count = 0;
    for entry in bytes.chunks_exact(size) {
        if let Some(address) = compact_address(entry) {
            count += 1;
            visit(address);
        }
    }
    count
}

/// One compact address (6 or 18 bytes).
pub fn compact_address(entry: &[u8]) -> Option<SocketAddr> {
    match entry.len() {
        6 => {
            let ip = Ipv4Addr::new(
                *entry.first()?,
                *entry.get(1)?,
                *entry.get(2)?,
                *entry.get(3)?,
            );
            let port = u16::from_be_bytes([*entry.get(4)?, *entry.get(5)?]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        18 => {
            let octets: [u8; 16] = entry.get(..16)?.try_into().ok()?;
            let port = u16::from_be_bytes([*entry.get(16)?, *entry.get(17)?]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
    }
}

/// Parse a scrape body (`d5:filesd20:<hash>d8:completei..e...eee`).
pub fn parse_scrape_body(body: &[u8], info_hash: &[u8; 20]) -> Result<ScrapeCounts, TrackerError> {
    let root = bencode::parse_exact(body, RESPONSE_LIMITS)
        .map_err(|_| TrackerError::Malformed("body is not bencoded"))?;
    if let Some(reason) = root.get(b"failure reason") {
        return Err(TrackerError::Failure(printable(
            reason.as_bytes().unwrap_or_default(),
        )));
    }
    let entry = root
        .get(b"files")
        .and_then(|files| files.get(info_hash))
        .ok_or(TrackerError::Malformed("no entry for the info-hash"))?;
    let count = |key: &[u8]| {
        entry
            .get(key)
            .and_then(|v| v.as_int())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    Ok(ScrapeCounts {
        complete: count(b"complete"),
        downloaded: count(b"downloaded"),
        incomplete: count(b"incomplete"),
    })
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(120)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

// ---------------------------------------------------------------- UDP (BEP 15)

/// Connect, announce (`started`), announce (`stopped`), scrape over UDP. Peers go to `visit`.
pub async fn udp_lookup(
    host: &str,
    port: u16,
    announce: Announce<'_>,
    visit: &mut dyn FnMut(SocketAddr),
) -> Result<(AnnounceInfo, Option<ScrapeCounts>), TrackerError> {
    let target = timeout(announce.timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| TrackerError::Timeout(announce.timeout))?
        .map_err(|_| TrackerError::Resolve)?
        .next()
        .ok_or(TrackerError::Resolve)?;
    let bind: SocketAddr = if target.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|error| TrackerError::Io(error.kind().to_string()))?;
    socket
        .connect(target)
        .await
        .map_err(|error| TrackerError::Io(error.kind().to_string()))?;
    let mut buf = vec![0u8; 65_536];

    let transaction: u32 = rand::random();
    let mut request = UDP_PROTOCOL_ID.to_be_bytes().to_vec();
    request.extend_from_slice(&0u32.to_be_bytes());
    request.extend_from_slice(&transaction.to_be_bytes());
    let reply = udp_exchange(&socket, &request, &mut buf, announce.timeout).await?;
    let connection = parse_udp_connect(reply, transaction)?;

    let transaction = transaction.wrapping_add(1);
    let request = udp_announce_request(connection, transaction, &announce, 2);
    let reply = udp_exchange(&socket, &request, &mut buf, announce.timeout).await?;
    let info = parse_udp_announce(reply, transaction, target.is_ipv6(), visit)?;

    // Leave the swarm: one `stopped` announce; its answer (peers included) is not looked at.
    let request = udp_announce_request(connection, transaction.wrapping_add(1), &announce, 3);
    let _ = udp_exchange(&socket, &request, &mut buf, announce.timeout).await;

    let transaction = transaction.wrapping_add(2);
    let mut request = connection.to_be_bytes().to_vec();
    request.extend_from_slice(&2u32.to_be_bytes());
    request.extend_from_slice(&transaction.to_be_bytes());
    request.extend_from_slice(announce.info_hash);
    let scrape = match udp_exchange(&socket, &request, &mut buf, announce.timeout).await {
        Ok(reply) => parse_udp_scrape(reply, transaction).ok(),
        Err(_) => None,
    };
    Ok((info, scrape))
}

fn udp_announce_request(
    connection: u64,
    transaction: u32,
    announce: &Announce<'_>,
    event: u32,
) -> Vec<u8> {
    let mut request = connection.to_be_bytes().to_vec();
    request.extend_from_slice(&1u32.to_be_bytes());
    request.extend_from_slice(&transaction.to_be_bytes());
    request.extend_from_slice(announce.info_hash);
    request.extend_from_slice(announce.peer_id);
    request.extend_from_slice(&0u64.to_be_bytes()); // downloaded
    request.extend_from_slice(&1u64.to_be_bytes()); // left
    request.extend_from_slice(&0u64.to_be_bytes()); // uploaded
    request.extend_from_slice(&event.to_be_bytes());
    request.extend_from_slice(&0u32.to_be_bytes()); // ip: the source address
    request.extend_from_slice(&rand::random::<u32>().to_be_bytes()); // key
    request.extend_from_slice(
        &i32::try_from(announce.numwant)
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    request.extend_from_slice(&announce.port.to_be_bytes());
    request
}

/// Send `request`; wait for a reply; one retransmission (BEP 15 asks for retries, bounded
/// here by the caller's timeout: at most two waits).
async fn udp_exchange<'b>(
    socket: &UdpSocket,
    request: &[u8],
    buf: &'b mut [u8],
    limit: Duration,
) -> Result<&'b [u8], TrackerError> {
    for _attempt in 0..2 {
        socket
            .send(request)
            .await
            .map_err(|error| TrackerError::Io(error.kind().to_string()))?;
        match timeout(limit / 2, socket.recv(buf)).await {
            Ok(Ok(len)) => return buf.get(..len).ok_or(TrackerError::Malformed("length")),
            Ok(Err(error)) => return Err(TrackerError::Io(error.kind().to_string())),
            Err(_) => continue,
        }
    }
    Err(TrackerError::Timeout(limit))
}

fn check_udp_header(datagram: &[u8], action: u32, transaction: u32) -> Result<(), TrackerError> {
    let head: [u8; 8] = datagram
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(TrackerError::Malformed("datagram shorter than 8 bytes"))?;
    let got_action = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let got_transaction = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if got_transaction != transaction {
        return Err(TrackerError::Malformed("transaction id mismatch"));
    }
    if got_action == 3 {
        return Err(TrackerError::Failure(printable(
            datagram.get(8..).unwrap_or_default(),
        )));
    }
    if got_action != action {
        return Err(TrackerError::Malformed("unexpected action"));
    }
    Ok(())
}

/// Parse a BEP 15 connect response; returns the connection id.
pub fn parse_udp_connect(datagram: &[u8], transaction: u32) -> Result<u64, TrackerError> {
    check_udp_header(datagram, 0, transaction)?;
    let id: [u8; 8] =
        datagram
            .get(8..16)
            .and_then(|b| b.try_into().ok())
            .ok_or(TrackerError::Malformed(
                "connect response shorter than 16 bytes",
            ))?;
    Ok(u64::from_be_bytes(id))
}

/// Parse a BEP 15 announce response; peers (6- or 18-byte entries) go to `visit`.
pub fn parse_udp_announce(
    datagram: &[u8],
    transaction: u32,
    ipv6: bool,
    visit: &mut dyn FnMut(SocketAddr),
) -> Result<AnnounceInfo, TrackerError> {
    check_udp_header(datagram, 1, transaction)?;
    let field = |at: usize| {
        datagram
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let (Some(interval), Some(leechers), Some(seeders)) = (field(8), field(12), field(16)) else {
        return Err(TrackerError::Malformed(
            "announce response shorter than 20 bytes",
        ));
    };
    let peers = visit_compact(datagram.get(20..).unwrap_or_default(), ipv6, visit);
    Ok(AnnounceInfo {
        interval: Some(interval),
        complete: Some(seeders),
        incomplete: Some(leechers),
        peers,
    })
}

/// Parse a BEP 15 scrape response for one info-hash.
pub fn parse_udp_scrape(datagram: &[u8], transaction: u32) -> Result<ScrapeCounts, TrackerError> {
    check_udp_header(datagram, 2, transaction)?;
    let field = |at: usize| {
        datagram
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    match (field(8), field(12), field(16)) {
        (Some(complete), Some(downloaded), Some(incomplete)) => Ok(ScrapeCounts {
            complete,
            downloaded,
            incomplete,
        }),
        _ => Err(TrackerError::Malformed(
            "scrape response shorter than 20 bytes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            TrackerUrl::parse("http://127.0.0.1:6969/announce").unwrap(),
            TrackerUrl::Http {
                host: "127.0.0.1".into(),
                port: 6969,
                path: "/announce".into()
            }
        );
        assert_eq!(
            TrackerUrl::parse("udp://[::1]:6969/announce").unwrap(),
            TrackerUrl::Udp {
                host: "::1".into(),
                port: 6969
            }
        );
        assert!(TrackerUrl::parse("https://t.example/announce").is_err());
        assert!(TrackerUrl::parse("udp://host").is_err());
        assert_eq!(scrape_path("/announce"), Some("/scrape".into()));
        assert_eq!(
            scrape_path("/x/announce.php?k=1"),
            Some("/x/scrape.php?k=1".into())
        );
        assert_eq!(scrape_path("/a"), None);
    }

    #[test]
    fn announce_bodies() {
        let mut seen = Vec::new();
        let body = b"d8:completei2e10:incompletei1e8:intervali900e5:peers12:\x7f\x00\x00\x02\x1a\xe1\x7f\x00\x00\x03\x1a\xe26:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50e";
        let info = parse_announce_body(body, &mut |a| seen.push(a)).unwrap();
        assert_eq!(info.peers, 3);
        assert_eq!(info.interval, Some(900));
        assert_eq!(seen[0], "127.0.0.2:6881".parse().unwrap());
        assert_eq!(seen[2], "[::1]:80".parse().unwrap());

        let body = b"d5:peersld2:ip9:127.0.0.47:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti80eeee";
        let mut seen = Vec::new();
        parse_announce_body(body, &mut |a| seen.push(a)).unwrap();
        assert_eq!(seen, vec!["127.0.0.4:80".parse().unwrap()]);

        let body = b"d14:failure reason9:not founde";
        assert_eq!(
            parse_announce_body(body, &mut |_| {}),
            Err(TrackerError::Failure("not found".into()))
        );
    }

    #[test]
    fn http_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(raw).unwrap(), b"abcde");
        assert!(parse_http_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_http_response(b"garbage").is_err());
    }

    #[test]
    fn udp_responses() {
        let mut reply = 0u32.to_be_bytes().to_vec();
        reply.extend_from_slice(&7u32.to_be_bytes());
        reply.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(parse_udp_connect(&reply, 7), Ok(42));
        assert!(parse_udp_connect(&reply, 8).is_err());
        assert!(parse_udp_connect(&reply[..12], 7).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), tx in any::<u32>()) {
            let _ = parse_http_response(&bytes);
            let _ = parse_announce_body(&bytes, &mut |_| {});
            let _ = parse_scrape_body(&bytes, &[0; 20]);
            let _ = parse_udp_connect(&bytes, tx);
            let _ = parse_udp_announce(&bytes, tx, false, &mut |_| {});
            let _ = parse_udp_announce(&bytes, tx, true, &mut |_| {});
            let _ = parse_udp_scrape(&bytes, tx);
            let _ = TrackerUrl::parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn bencoded_garbage_never_panics(
            peers in proptest::collection::vec(any::<u8>(), 0..64),
            interval in any::<i64>(),
        ) {
            let mut body = format!("d8:intervali{interval}e5:peers{}:", peers.len()).into_bytes();
            body.extend_from_slice(&peers);
            body.push(b'e');
            let mut count = 0;
            let info = parse_announce_body(&body, &mut |_| count += 1).unwrap();
            prop_assert_eq!(info.peers, peers.len() / 6);
            prop_assert_eq!(count, peers.len() / 6);
        }
    }
}
