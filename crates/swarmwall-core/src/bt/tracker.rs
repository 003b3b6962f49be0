//! Tracker messages, pure: announce URLs, HTTP announce and scrape responses (BEP 3, BEP 23
//! compact peers, BEP 7 `peers6`, BEP 48 scrape) and UDP tracker requests and responses
//! (BEP 15). The parsers never panic on any input (proptest here, a fuzz target in
//! `fuzz/fuzz_targets/tracker_response.rs`); peers are handed to a visitor one by one and never
//! collected here.

use std::net::{IpAddr, SocketAddr};

use super::RESPONSE_LIMITS;
use super::bencode::{self, Value};
use super::compact;

/// BEP 15 protocol id of the connect request.
pub const UDP_PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Why a tracker URL or response is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// The URL is not `http://` or `udp://` or does not parse.
    #[error("unsupported or malformed tracker URL ({0})")]
    Url(&'static str),
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

/// RFC 3986 percent-encoding of every byte outside the unreserved set (`A-Z a-z 0-9 - . _ ~`),
/// as announce queries carry `info_hash` and `peer_id`.
pub fn percent_encode(bytes: &[u8]) -> String {
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
            info.peers += compact::visit_peers(compact, false, visit);
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
        info.peers += compact::visit_peers(compact, true, visit);
    }
    Ok(info)
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

/// A BEP 15 connect request.
pub fn udp_connect_request(transaction: u32) -> Vec<u8> {
    let mut request = UDP_PROTOCOL_ID.to_be_bytes().to_vec();
    request.extend_from_slice(&0u32.to_be_bytes());
    request.extend_from_slice(&transaction.to_be_bytes());
    request
}

/// The `event` of an announce (BEP 15 numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceEvent {
    /// A regular announce (0).
    None,
    /// The download completed (1).
    Completed,
    /// The first announce (2).
    Started,
    /// Leaving the swarm (3).
    Stopped,
}

impl AnnounceEvent {
    /// The BEP 15 wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Completed => 1,
            Self::Started => 2,
            Self::Stopped => 3,
        }
    }
}

/// A BEP 15 announce request.
#[derive(Debug, Clone, Copy)]
pub struct UdpAnnounce<'a> {
    /// Connection id from the connect response.
    pub connection: u64,
    /// Transaction id.
    pub transaction: u32,
    /// Info-hash.
    pub info_hash: &'a [u8; 20],
    /// Our peer id.
    pub peer_id: &'a [u8; 20],
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes left.
    pub left: u64,
    /// Bytes uploaded.
    pub uploaded: u64,
    /// Event.
    pub event: AnnounceEvent,
    /// Random key.
    pub key: u32,
    /// Peers wanted (-1: the tracker's default).
    pub num_want: i32,
    /// The port announced.
    pub port: u16,
}

impl UdpAnnounce<'_> {
    /// The 98 wire bytes (the `ip` field is 0: the source address).
    pub fn encode(&self) -> Vec<u8> {
        let mut request = Vec::with_capacity(98);
        request.extend_from_slice(&self.connection.to_be_bytes());
        request.extend_from_slice(&1u32.to_be_bytes());
        request.extend_from_slice(&self.transaction.to_be_bytes());
        request.extend_from_slice(self.info_hash);
        request.extend_from_slice(self.peer_id);
        request.extend_from_slice(&self.downloaded.to_be_bytes());
        request.extend_from_slice(&self.left.to_be_bytes());
        request.extend_from_slice(&self.uploaded.to_be_bytes());
        request.extend_from_slice(&self.event.to_u32().to_be_bytes());
        request.extend_from_slice(&0u32.to_be_bytes());
        request.extend_from_slice(&self.key.to_be_bytes());
        request.extend_from_slice(&self.num_want.to_be_bytes());
        request.extend_from_slice(&self.port.to_be_bytes());
        request
    }
}

/// A BEP 15 scrape request for one info-hash.
pub fn udp_scrape_request(connection: u64, transaction: u32, info_hash: &[u8; 20]) -> Vec<u8> {
    let mut request = connection.to_be_bytes().to_vec();
    request.extend_from_slice(&2u32.to_be_bytes());
    request.extend_from_slice(&transaction.to_be_bytes());
    request.extend_from_slice(info_hash);
    request
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
    let peers = compact::visit_peers(datagram.get(20..).unwrap_or_default(), ipv6, visit);
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
    fn percent_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(percent_encode(b"aZ9-._~"), "aZ9-._~");
        assert_eq!(percent_encode(&[0x00, b' ', 0xff, b'/']), "%00%20%FF%2F");
    }

    #[test]
    fn udp_requests_have_the_bep15_layout() {
        let connect = udp_connect_request(7);
        assert_eq!(connect.len(), 16);
        assert_eq!(&connect[..8], &UDP_PROTOCOL_ID.to_be_bytes());
        let announce = UdpAnnounce {
            connection: 42,
            transaction: 9,
            info_hash: &[1; 20],
            peer_id: &[2; 20],
            downloaded: 0,
            left: 1,
            uploaded: 0,
            event: AnnounceEvent::Stopped,
            key: 5,
            num_want: 200,
            port: 6881,
        }
        .encode();
        assert_eq!(announce.len(), 98);
        assert_eq!(&announce[80..84], &3u32.to_be_bytes());
        assert_eq!(&announce[96..], &6881u16.to_be_bytes());
        assert_eq!(udp_scrape_request(42, 9, &[1; 20]).len(), 36);
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
