//! SOCKS5 (RFC 1928, RFC 1929) as seen on a proxy's client side, parsed just far enough to skip
//! it and classify the tunnelled bytes.
//!
//! TCP: the greeting (`05 N methods`), the method reply (`05 M`), optional username/password
//! sub-negotiation (`01 ...` / `01 S`), the request (`05 CMD 00 ATYP addr port`) and the reply
//! (`05 REP 00 ATYP addr port`). [`parse_tcp_prefix`] looks at the first bytes of both
//! directions and says how many bytes of each belong to SOCKS5. UDP: the request header of
//! relayed datagrams (`00 00 FRAG ATYP addr port`), [`parse_udp_header`].
//!
//! This is a small read-only parser for the inspector; the proxy's codec lives in
//! `swarmwall-core::socks5`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of each direction buffered while deciding whether a flow is SOCKS5.
pub const MAX_PREFIX_BYTES: usize = 1024;

/// A SOCKS5 command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// CONNECT (1).
    Connect,
    /// BIND (2).
    Bind,
    /// UDP ASSOCIATE (3).
    UdpAssociate,
}

/// A SOCKS5 address: an IP address or a domain name (kept as its length only; never logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A domain name of this many bytes.
    Domain(u8),
}

/// Outcome of looking at the start of a TCP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpPrefix {
    /// Could still be SOCKS5; feed more bytes.
    NeedMore,
    /// Not SOCKS5.
    NotSocks,
    /// SOCKS5 that did not reach a tunnel (method or request refused, or GSSAPI).
    Refused,
    /// A complete SOCKS5 negotiation.
    Established(Established),
}

/// A complete SOCKS5 negotiation at the start of a TCP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Established {
    /// The command requested.
    pub command: Command,
    /// Destination port of the request (the tunnelled flow's server port).
    pub target_port: u16,
    /// Bound address and port from the reply (the UDP relay for UDP ASSOCIATE).
    pub bound: (Address, u16),
    /// SOCKS5 bytes at the start of the client-to-server direction.
    pub client_bytes: usize,
    /// SOCKS5 bytes at the start of the server-to-client direction.
    pub server_bytes: usize,
}

/// Parse the SOCKS5 negotiation at the start of both directions of a TCP flow.
pub fn parse_tcp_prefix(client: &[u8], server: &[u8]) -> TcpPrefix {
    let client_part = parse_client(client);
    let server_part = parse_server(server);
    match (client_part, server_part) {
        (Part::Invalid, _) | (_, Part::Invalid) => TcpPrefix::NotSocks,
        (_, Part::Refused) => TcpPrefix::Refused,
        (Part::Done(request), Part::Done(reply)) => TcpPrefix::Established(Established {
            command: request.command,
            target_port: request.port,
            bound: (reply.address, reply.port),
            client_bytes: request.length,
            server_bytes: reply.length,
        }),
        _ if client.len() >= MAX_PREFIX_BYTES || server.len() >= MAX_PREFIX_BYTES => {
            TcpPrefix::NotSocks
        }
        _ => TcpPrefix::NeedMore,
    }
}

/// A parsed SOCKS5 UDP request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    /// Destination (client to relay) or source (relay to client) address.
    pub address: Address,
    /// Its port.
    pub port: u16,
    /// Length of the header; the payload follows.
    pub length: usize,
}

/// Parse the SOCKS5 UDP request header (RFC 1928 §7): `00 00 FRAG ATYP addr port`. Fragmented
/// datagrams (FRAG ≠ 0) are rejected.
pub fn parse_udp_header(datagram: &[u8]) -> Option<UdpHeader> {
    match datagram {
        [0, 0, 0, rest @ ..] => {
            let (address, port, length) = parse_address::<()>(rest).ok()?;
            Some(UdpHeader {
                address,
                port,
                length: 3 + length,
            })
        }
        _ => None,
    }
}

/// A key for an inner UDP destination (address, or domain length plus a cheap fingerprint).
pub fn udp_inner_key(datagram: &[u8], header: &UdpHeader) -> Option<SocketAddr> {
    match header.address {
        Address::Ip(ip) => Some(SocketAddr::new(ip, header.port)),
        Address::Domain(_) => {
            // Domains are keyed by a hash folded into an IPv6 address of the reserved
            // documentation prefix; the name itself is not kept.
            let name = datagram.get(5..header.length.checked_sub(2)?)?;
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for &byte in name {
                hash = (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x100_0000_01b3);
            }
            let mut octets = [0u8; 16];
            octets[0] = 0x20;
            octets[1] = 0x01;
            octets[2] = 0x0d;
            octets[3] = 0xb8;
            octets[8..].copy_from_slice(&hash.to_be_bytes());
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                header.port,
            ))
        }
    }
}

enum Part<T> {
    NeedMore,
    Invalid,
    Refused,
    Done(T),
}

struct Request {
    command: Command,
    port: u16,
    length: usize,
}

struct Reply {
    address: Address,
    port: u16,
    length: usize,
}

/// Client side: greeting, optional RFC 1929 sub-negotiation, request.
fn parse_client(bytes: &[u8]) -> Part<Request> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Part::NeedMore;
    };
    if version != 0x05 {
        return Part::Invalid;
    }
    let Some((&count, rest)) = rest.split_first() else {
        return Part::NeedMore;
    };
    if count == 0 || count > 16 {
        return Part::Invalid;
    }
    let Some(methods) = rest.get(..usize::from(count)) else {
        return if rest.iter().all(|&m| plausible_method(m)) {
            Part::NeedMore
        } else {
            Part::Invalid
        };
    };
    if !methods.iter().all(|&m| plausible_method(m)) {
        return Part::Invalid;
    }
    let mut offset = 2 + usize::from(count);
    // RFC 1929 username/password: 01 ULEN UNAME PLEN PASSWD.
    if bytes.get(offset) == Some(&0x01) {
        let Some(&user_len) = bytes.get(offset + 1) else {
            return Part::NeedMore;
        };
        let password_at = offset + 2 + usize::from(user_len);
        let Some(&password_len) = bytes.get(password_at) else {
            return Part::NeedMore;
        };
        offset = password_at + 1 + usize::from(password_len);
    }
    let Some(request) = bytes.get(offset..) else {
        return Part::NeedMore;
    };
    match request {
        [] | [0x05] | [0x05, _] | [0x05, _, _] => Part::NeedMore,
        [0x05, command, 0x00, address @ ..] => {
            let command = match command {
                1 => Command::Connect,
                2 => Command::Bind,
                3 => Command::UdpAssociate,
                _ => return Part::Invalid,
            };
            match parse_address(address) {
                Ok((_, port, length)) => Part::Done(Request {
                    command,
                    port,
                    length: offset + 3 + length,
                }),
                Err(incomplete) => incomplete,
            }
        }
        _ => Part::Invalid,
    }
}

/// Server side: method choice, optional sub-negotiation status, reply.
fn parse_server(bytes: &[u8]) -> Part<Reply> {
    let (method, mut offset) = match bytes {
        [] | [0x05] => return Part::NeedMore,
        [0x05, 0xff, ..] => return Part::Refused,
        [0x05, method, ..] if *method == 0x00 || *method == 0x02 => (*method, 2),
        [0x05, method, ..] if plausible_method(*method) => return Part::Refused,
        _ => return Part::Invalid,
    };
    if method == 0x02 {
        match bytes.get(offset..offset + 2) {
            None => return Part::NeedMore,
            Some([0x01, 0x00]) => offset += 2,
            Some([0x01, _]) => return Part::Refused,
            Some(_) => return Part::Invalid,
        }
    }
    match bytes.get(offset..).unwrap_or_default() {
        [] | [0x05] | [0x05, _] | [0x05, _, _] => Part::NeedMore,
        [0x05, 0x00, 0x00, address @ ..] => match parse_address(address) {
            Ok((address, port, length)) => Part::Done(Reply {
                address,
                port,
                length: offset + 3 + length,
            }),
            Err(incomplete) => incomplete,
        },
        [0x05, 0x01..=0x08, 0x00, ..] => Part::Refused,
        _ => Part::Invalid,
    }
}

/// ATYP, address, port. Returns the address, port and bytes used.
fn parse_address<T>(bytes: &[u8]) -> Result<(Address, u16, usize), Part<T>> {
    let (&kind, rest) = bytes.split_first().ok_or(Part::NeedMore)?;
    let (address, length) = match kind {
        0x01 => {
            let octets: [u8; 4] = rest
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(Part::NeedMore)?;
            (Address::Ip(IpAddr::V4(Ipv4Addr::from(octets))), 4)
        }
        0x04 => {
            let octets: [u8; 16] = rest
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or(Part::NeedMore)?;
            (Address::Ip(IpAddr::V6(Ipv6Addr::from(octets))), 16)
        }
        0x03 => {
            let &name_len = rest.first().ok_or(Part::NeedMore)?;
            if name_len == 0 {
                return Err(Part::Invalid);
            }
            (Address::Domain(name_len), 1 + usize::from(name_len))
        }
        _ => return Err(Part::Invalid),
    };
    let port = rest.get(length..length + 2).ok_or(Part::NeedMore)?;
    Ok((
        address,
        u16::from_be_bytes([port[0], port[1]]),
        1 + length + 2,
    ))
}

/// Method codes: 0 no auth, 1 GSSAPI, 2 username/password, 3..=9 IANA-assigned, 0x80..=0xfe
/// private.
fn plausible_method(method: u8) -> bool {
    method <= 0x09 || (0x80..=0xfe).contains(&method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_with_password_then_tunnel() {
        let mut client = vec![0x05, 0x02, 0x00, 0x02];
        client.extend_from_slice(&[0x01, 0x01, b'u', 0x02, b'p', b'w']);
        client.extend_from_slice(&[
            0x05, 0x01, 0x00, 0x03, 0x04, b'h', b'o', b's', b't', 0x1a, 0xe1,
        ]);
        let socks_len = client.len();
        let handshake = swarmwall_core::bt::peer_wire::Handshake {
            reserved: swarmwall_core::bt::peer_wire::RESERVED_NONE,
            info_hash: [1; 20],
            peer_id: [2; 20],
        };
        client.extend_from_slice(&handshake.encode());
        let mut server = vec![0x05, 0x02, 0x01, 0x00];
        server.extend_from_slice(&[0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x30, 0x39]);
        let server_len = server.len();
        match parse_tcp_prefix(&client, &server) {
            TcpPrefix::Established(done) => {
                assert_eq!(done.command, Command::Connect);
                assert_eq!(done.target_port, 6881);
                assert_eq!(done.client_bytes, socks_len);
                assert_eq!(done.server_bytes, server_len);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Every strict prefix is undecided, never wrong.
        for cut in 0..socks_len {
            assert_eq!(
                parse_tcp_prefix(&client[..cut], &server),
                TcpPrefix::NeedMore,
                "{cut}"
            );
        }
    }

    #[test]
    fn other_protocols_are_not_socks() {
        assert_eq!(
            parse_tcp_prefix(b"GET / HTTP/1.1\r\n", b""),
            TcpPrefix::NotSocks
        );
        assert_eq!(
            parse_tcp_prefix(b"\x16\x03\x01\x02\x00", b""),
            TcpPrefix::NotSocks
        );
        assert_eq!(
            parse_tcp_prefix(b"\x05\x01\x00", b"\x05\xff"),
            TcpPrefix::Refused
        );
        assert_eq!(parse_tcp_prefix(b"\x05\x00", b""), TcpPrefix::NotSocks);
    }

    #[test]
    fn udp_header() {
        let datagram = [0, 0, 0, 1, 10, 0, 0, 1, 0x1a, 0xe1, b'd', b'1'];
        let header = parse_udp_header(&datagram).unwrap();
        assert_eq!(header.port, 6881);
        assert_eq!(&datagram[header.length..], b"d1");
        assert!(parse_udp_header(&[0, 0, 1, 1, 10, 0, 0, 1, 0, 1]).is_none());
        assert!(parse_udp_header(&[0, 0, 0, 9]).is_none());
        let domain = [0, 0, 0, 3, 2, b'a', b'b', 0, 53, 0xff];
        let header = parse_udp_header(&domain).unwrap();
        assert!(udp_inner_key(&domain, &header).is_some());
    }
}
