//! HAProxy PROXY protocol v1 (text) and v2 (binary) header parsing, sans-IO.
//!
//! The server calls [`parse_header`] on the first bytes of a connection from a trusted load
//! balancer, feeding more bytes while it returns [`ParseOutcome::Incomplete`]. Reference: the
//! HAProxy specification "The PROXY protocol, versions 1 & 2" (2020-03-05), sections 2.1 (v1)
//! and 2.2 (v2).
//!
//! Guarantees: no panics and no allocation proportional to the input; v1 needs at most
//! [`V1_MAX_LEN`] bytes, v2 at most 16 plus its 16-bit length field. TLVs after the v2 address
//! block are skipped (counted in `consumed`). [`encode_v1`] and [`encode_v2`] write headers
//! (tests and clients).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a PROXY header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyProtocolError {
    /// Neither the v1 nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxyProtocol,
    /// The header is malformed (the message says where).
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Result of parsing the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseOutcome {
    /// More bytes are needed (v1 needs at most 107, v2 at most 16 + its length field).
    Incomplete,
    /// A complete header.
    Header {
        /// The original client (None for `UNKNOWN` / `LOCAL`).
        source: Option<SocketAddr>,
        /// The original destination (None for `UNKNOWN` / `LOCAL`).
        destination: Option<SocketAddr>,
        /// Header length: the SOCKS5 greeting starts after it.
        consumed: usize,
    },
    /// Not a valid header: close the connection.
    Invalid(ProxyProtocolError),
}

/// Longest v1 header including `\r\n` (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;

/// The 12-byte v2 signature (spec section 2.2).
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_HEADER_LEN: usize = 16;

/// Parse a PROXY protocol v1 or v2 header at the start of `input`.
pub fn parse_header(input: &[u8]) -> ParseOutcome {
    if input.starts_with(&V2_SIGNATURE) {
        return parse_v2(input);
    }
    if input.starts_with(V1_PREFIX) {
        return parse_v1(input);
    }
    let is_prefix_of = |signature: &[u8]| signature.starts_with(input);
    if is_prefix_of(&V2_SIGNATURE) || is_prefix_of(V1_PREFIX) {
        ParseOutcome::Incomplete
    } else {
        ParseOutcome::Invalid(ProxyProtocolError::NotProxyProtocol)
    }
}

/// A v1 header line for `source` → `destination` (both of one family), or
/// `PROXY UNKNOWN\r\n` when either is `None` or the families differ.
pub fn encode_v1(source: Option<SocketAddr>, destination: Option<SocketAddr>) -> String {
    match (source, destination) {
        (Some(SocketAddr::V4(s)), Some(SocketAddr::V4(d))) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        (Some(SocketAddr::V6(s)), Some(SocketAddr::V6(d))) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        _ => "PROXY UNKNOWN\r\n".to_owned(),
    }
}

/// A v2 header (command PROXY, STREAM) for `source` → `destination`, or a LOCAL header when
/// either is `None` or the families differ. `tlvs` is appended verbatim after the addresses.
pub fn encode_v2(
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    tlvs: &[u8],
) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let mut body = Vec::new();
    let (ver_cmd, family) = match (source, destination) {
        (Some(SocketAddr::V4(s)), Some(SocketAddr::V4(d))) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x11)
        }
        (Some(SocketAddr::V6(s)), Some(SocketAddr::V6(d))) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x21)
        }
        _ => (0x20, 0x00),
    };
    body.extend_from_slice(tlvs);
    out.push(ver_cmd);
    out.push(family);
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body.get(..usize::from(len)).unwrap_or(&body));
    out
}

/// Section 2.1: `PROXY TCP4|TCP6|UNKNOWN ... \r\n`, at most 107 bytes.
fn parse_v1(input: &[u8]) -> ParseOutcome {
    let window = input.get(..input.len().min(V1_MAX_LEN)).unwrap_or(input);
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if input.len() >= V1_MAX_LEN {
            malformed("v1 header longer than 107 bytes")
        } else if window.contains(&b'\n') {
            malformed("v1 header line not ended by CRLF")
        } else {
            ParseOutcome::Incomplete
        };
    };
    let consumed = end + 2;
    let Some(line) = window.get(V1_PREFIX.len()..end) else {
        return malformed("v1 header too short");
    };
    // A bare LF before the CRLF is refused here as it is while the line is incomplete, so
    // feeding bytes one at a time gives the same answer as feeding them all at once.
    if line.contains(&b'\n') {
        return malformed("v1 header line not ended by CRLF");
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return malformed("v1 header is not ASCII");
    };
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return ParseOutcome::Header {
            source: None,
            destination: None,
            consumed,
        };
    }
    let mut fields = line.split(' ');
    let (Some(protocol), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return malformed("v1 header needs protocol, two addresses and two ports");
    };
    let (src, dst): (IpAddr, IpAddr) = match protocol {
        "TCP4" => match (src.parse::<Ipv4Addr>(), dst.parse::<Ipv4Addr>()) {
            (Ok(s), Ok(d)) => (s.into(), d.into()),
            _ => return malformed("v1 TCP4 header with a bad IPv4 address"),
        },
        "TCP6" => match (src.parse::<Ipv6Addr>(), dst.parse::<Ipv6Addr>()) {
            (Ok(s), Ok(d)) => (s.into(), d.into()),
            _ => return malformed("v1 TCP6 header with a bad IPv6 address"),
        },
        _ => return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let (Some(sport), Some(dport)) = (parse_port(sport), parse_port(dport)) else {
        return malformed("v1 header with a bad port");
    };
    ParseOutcome::Header {
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
        consumed,
    }
}

/// A decimal port 0..=65535 without sign or leading zeros.
fn parse_port(text: &str) -> Option<u16> {
    let valid = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if valid { text.parse().ok() } else { None }
}

/// Section 2.2: signature, version/command, family/protocol, length, addresses, TLVs.
fn parse_v2(input: &[u8]) -> ParseOutcome {
    let Some(&[ver_cmd, family, len_hi, len_lo]) = input.get(12..V2_HEADER_LEN) else {
        return ParseOutcome::Incomplete;
    };
    if ver_cmd >> 4 != 0x2 {
        return malformed("v2 version is not 2");
    }
    let consumed = V2_HEADER_LEN + usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let Some(body) = input.get(V2_HEADER_LEN..consumed) else {
        return ParseOutcome::Incomplete;
    };
    let local = ParseOutcome::Header {
        source: None,
        destination: None,
        consumed,
    };
    match ver_cmd & 0x0f {
        // LOCAL: health checks from the proxy itself; the address block is ignored.
        0x0 => return local,
        0x1 => {}
        _ => return malformed("v2 command is neither LOCAL nor PROXY"),
    }
    match family >> 4 {
        // AF_UNSPEC and AF_UNIX carry no usable client address.
        0x0 | 0x3 => local,
        0x1 => match body.get(..12) {
            Some(block) => {
                let (src, dst, sport, dport) = (
                    Ipv4Addr::new(block[0], block[1], block[2], block[3]),
                    Ipv4Addr::new(block[4], block[5], block[6], block[7]),
                    u16::from_be_bytes([block[8], block[9]]),
                    u16::from_be_bytes([block[10], block[11]]),
                );
                ParseOutcome::Header {
                    source: Some(SocketAddr::new(src.into(), sport)),
                    destination: Some(SocketAddr::new(dst.into(), dport)),
                    consumed,
                }
            }
            None => malformed("v2 length too short for IPv4 addresses"),
        },
        0x2 => match body.get(..36) {
            Some(block) => {
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&block[..16]);
                dst.copy_from_slice(&block[16..32]);
                let sport = u16::from_be_bytes([block[32], block[33]]);
                let dport = u16::from_be_bytes([block[34], block[35]]);
                ParseOutcome::Header {
                    source: Some(SocketAddr::new(Ipv6Addr::from(src).into(), sport)),
                    destination: Some(SocketAddr::new(Ipv6Addr::from(dst).into(), dport)),
                    consumed,
                }
            }
            None => malformed("v2 length too short for IPv6 addresses"),
        },
        _ => malformed("v2 address family unknown"),
    }
}

fn malformed(message: &'static str) -> ParseOutcome {
    ParseOutcome::Invalid(ProxyProtocolError::Malformed(message))
}

#[cfg(test)]
mod tests;
