//! Link-layer, IP and TCP/UDP decoding of one captured frame.
//!
//! Link types: Ethernet (with 802.1Q/802.1ad VLAN tags, QinQ, PPPoE sessions and MPLS), Linux
//! cooked capture v1 and v2 (SLL, SLL2), raw IP (LINKTYPE_RAW 101, DLT_RAW 12 and 14,
//! LINKTYPE_IPV4/IPV6 228/229), BSD loopback (DLT_NULL 0, DLT_LOOP 108), PPP (9, 50), Cisco
//! HDLC (104) and PPI (192). IPv4/IPv6 (with extension headers) is decoded with `etherparse`'s
//! lax slicer so snap-length-truncated packets still yield their first payload bytes. IP-in-IP
//! (4in4, 6in4, 4in6, 6in6), GRE (plain and PPTP's enhanced GRE), GTP-U (UDP 2152) and VXLAN
//! (UDP 4789) tunnels are unwrapped. IP fragments are not
//! reassembled: they are reported as [`Decoded::Fragment`] and counted, except the first
//! fragment of an IPv4 UDP datagram, whose UDP header and first payload bytes are decoded.
//!
//! Nothing here panics on any input: every access is length-checked.

use std::net::IpAddr;

use etherparse::{IpNumber, LaxIpSlice, TcpSlice, UdpSlice};

/// How deep tunnels (IP-in-IP, GRE, PPI) are unwrapped.
const MAX_DEPTH: u8 = 4;

/// TCP header flags the flow tracker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// A decoded TCP or UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP or UDP details.
    pub transport: Transport,
    /// Transport payload (as captured; may be cut short by the snap length).
    pub payload: &'a [u8],
    /// True when the capture cut the packet short (snap length): `payload` is incomplete.
    pub truncated: bool,
}

/// The transport protocol of a [`Segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP with its sequence number and flags.
    Tcp {
        /// Sequence number of the first payload byte (of the SYN for a SYN segment).
        seq: u32,
        /// Header flags.
        flags: TcpFlags,
    },
    /// UDP.
    Udp,
}

/// What one frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A TCP or UDP packet.
    Segment(Segment<'a>),
    /// An IPv4 or IPv6 fragment (not reassembled).
    Fragment,
    /// IP, but neither TCP nor UDP (ICMP, ...), or not IP at all (ARP, ...).
    Other,
    /// A link type this decoder does not know.
    UnsupportedLink,
    /// Too short or inconsistent headers.
    Malformed,
}

/// Decode one frame of the given link type.
pub fn decode(linktype: i32, frame: &[u8]) -> Decoded<'_> {
    decode_link(linktype, frame, 0)
}

fn decode_link(linktype: i32, frame: &[u8], depth: u8) -> Decoded<'_> {
    if depth > MAX_DEPTH {
        return Decoded::Malformed;
    }
    match linktype {
        // LINKTYPE_ETHERNET
        1 => match frame.get(12..14).zip(frame.get(14..)) {
            Some((ethertype, rest)) => decode_ethertype(
                u16::from_be_bytes([ethertype[0], ethertype[1]]),
                rest,
                depth,
            ),
            None => Decoded::Malformed,
        },
        // LINKTYPE_LINUX_SLL: 16-byte header, protocol in the last two bytes.
        113 => match frame.get(14..16).zip(frame.get(16..)) {
            Some((protocol, rest)) => {
                decode_ethertype(u16::from_be_bytes([protocol[0], protocol[1]]), rest, depth)
            }
            None => Decoded::Malformed,
        },
        // LINKTYPE_LINUX_SLL2: 20-byte header, protocol first.
        276 => match frame.get(0..2).zip(frame.get(20..)) {
            Some((protocol, rest)) => {
                decode_ethertype(u16::from_be_bytes([protocol[0], protocol[1]]), rest, depth)
            }
            None => Decoded::Malformed,
        },
        // LINKTYPE_RAW, DLT_RAW on BSDs (12, 14), LINKTYPE_IPV4, LINKTYPE_IPV6.
        101 | 12 | 14 | 228 | 229 => decode_ip(frame, depth),
        // DLT_NULL (host byte order family) and DLT_LOOP (network byte order).
        0 | 108 => match frame.get(0..4).zip(frame.get(4..)) {
            Some((family, rest)) => {
                let family = [family[0], family[1], family[2], family[3]];
                let le = u32::from_le_bytes(family);
                let be = u32::from_be_bytes(family);
                // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (BSDs, macOS).
                let known = |f: u32| matches!(f, 2 | 10 | 24 | 28 | 30);
                if known(le) || known(be) {
                    decode_ip(rest, depth)
                } else {
                    Decoded::Other
                }
            }
            None => Decoded::Malformed,
        },
        // LINKTYPE_PPP, LINKTYPE_PPP_HDLC: optional ff 03, then a 1- or 2-byte protocol.
        // Cisco HDLC framing (address 0x0f or 0x8f) also appears under these link types.
        9 | 50 => match frame {
            [0x0f | 0x8f, _, hi, lo, rest @ ..] => {
                decode_ethertype(u16::from_be_bytes([*hi, *lo]), rest, depth)
            }
            [0xff, 0x03, rest @ ..] => decode_ppp(rest, depth),
            _ => decode_ppp(frame, depth),
        },
        // LINKTYPE_C_HDLC: address, control, ethertype.
        104 => match frame.get(2..4).zip(frame.get(4..)) {
            Some((protocol, rest)) => {
                decode_ethertype(u16::from_be_bytes([protocol[0], protocol[1]]), rest, depth)
            }
            None => Decoded::Malformed,
        },
        // LINKTYPE_PPI: little-endian header length and inner link type.
        192 => match frame.get(2..8) {
            Some(header) => {
                let length = usize::from(u16::from_le_bytes([header[0], header[1]]));
                let inner = i32::from_le_bytes([header[2], header[3], header[4], header[5]]);
                match frame.get(length..) {
                    Some(rest) if length >= 8 => decode_link(inner, rest, depth + 1),
                    _ => Decoded::Malformed,
                }
            }
            None => Decoded::Malformed,
        },
        _ => Decoded::UnsupportedLink,
    }
}

fn decode_ethertype(mut ethertype: u16, mut rest: &[u8], depth: u8) -> Decoded<'_> {
    // VLAN tags (802.1Q, 802.1ad, the old 0x9100 QinQ), at most a few.
    for _ in 0..4 {
        match ethertype {
            0x8100 | 0x88a8 | 0x9100 => match rest.get(2..4).zip(rest.get(4..)) {
                Some((inner, tail)) => {
                    ethertype = u16::from_be_bytes([inner[0], inner[1]]);
                    rest = tail;
                }
                None => return Decoded::Malformed,
            },
            _ => break,
        }
    }
    match ethertype {
        0x0800 | 0x86dd => decode_ip(rest, depth),
        // PPPoE session: 6-byte header, then the PPP protocol.
        0x8864 => match rest.get(6..) {
            Some(ppp) => decode_ppp(ppp, depth),
            None => Decoded::Malformed,
        },
        // MPLS unicast/multicast: pop labels to the bottom of stack, then guess IP.
        0x8847 | 0x8848 => {
            let mut tail = rest;
            for _ in 0..8 {
                match tail {
                    [_, _, flags, _, more @ ..] => {
                        tail = more;
                        if flags & 0x01 != 0 {
                            return decode_ip(tail, depth);
                        }
                    }
                    _ => return Decoded::Malformed,
                }
            }
            Decoded::Malformed
        }
        _ => Decoded::Other,
    }
}

fn decode_ppp(frame: &[u8], depth: u8) -> Decoded<'_> {
    // Protocol field compression: a 1-byte protocol has its low bit set.
    let (protocol, rest) = match frame {
        [p, rest @ ..] if p & 0x01 == 1 => (u16::from(*p), rest),
        [hi, lo, rest @ ..] => (u16::from_be_bytes([*hi, *lo]), rest),
        _ => return Decoded::Malformed,
    };
    match protocol {
        0x0021 | 0x0057 => decode_ip(rest, depth),
        _ => Decoded::Other,
    }
}

fn decode_ip(packet: &[u8], depth: u8) -> Decoded<'_> {
    if depth > MAX_DEPTH {
        return Decoded::Malformed;
    }
    let Ok((ip, _ext_error)) = LaxIpSlice::from_slice(packet) else {
        return Decoded::Malformed;
    };
    let payload = ip.payload();
    if payload.fragmented {
        // The first IPv4 fragment of a UDP datagram carries the UDP header and the start of
        // the payload: classify that (as nDPI does); later fragments are only counted.
        let first_udp = payload.ip_number == IpNumber::UDP
            && ip
                .ipv4()
                .is_some_and(|v4| v4.header().fragments_offset().value() == 0);
        if !first_udp {
            return Decoded::Fragment;
        }
    }
    let data = payload.payload;
    match payload.ip_number {
        IpNumber::TCP => match TcpSlice::from_slice(data) {
            Ok(tcp) => Decoded::Segment(Segment {
                src: ip.source_addr(),
                dst: ip.destination_addr(),
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                transport: Transport::Tcp {
                    seq: tcp.sequence_number(),
                    flags: TcpFlags {
                        syn: tcp.syn(),
                        ack: tcp.ack(),
                        fin: tcp.fin(),
                        rst: tcp.rst(),
                    },
                },
                payload: tcp.payload(),
                truncated: payload.incomplete,
            }),
            Err(_) => Decoded::Malformed,
        },
        IpNumber::UDP => match UdpSlice::from_slice_lax(data) {
            Ok(udp) if !payload.fragmented && depth < MAX_DEPTH => {
                match decode_udp_tunnel(&udp, depth + 1) {
                    Some(inner) => inner,
                    None => Decoded::Segment(Segment {
                        src: ip.source_addr(),
                        dst: ip.destination_addr(),
                        src_port: udp.source_port(),
                        dst_port: udp.destination_port(),
                        transport: Transport::Udp,
                        payload: udp.payload(),
                        truncated: payload.incomplete,
                    }),
                }
            }
            Ok(udp) => Decoded::Segment(Segment {
                src: ip.source_addr(),
                dst: ip.destination_addr(),
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                transport: Transport::Udp,
                payload: udp.payload(),
                truncated: payload.incomplete,
            }),
            Err(_) => Decoded::Malformed,
        },
        // IP-in-IP: IPv4 (4) or IPv6 (41) inside.
        IpNumber::IPV4 | IpNumber::IPV6 => decode_ip(data, depth + 1),
        IpNumber::GRE => decode_gre(data, depth + 1),
        _ => Decoded::Other,
    }
}

/// GTP-U (UDP 2152, G-PDU) and VXLAN (UDP 4789) tunnels: the inner packet when the outer
/// datagram is one and its inner packet decodes to TCP/UDP, else `None` (classify the outer).
fn decode_udp_tunnel<'a>(udp: &UdpSlice<'a>, depth: u8) -> Option<Decoded<'a>> {
    let ports = [udp.source_port(), udp.destination_port()];
    let data = udp.payload();
    let inner = if ports.contains(&2152) {
        // GTPv1-U: flags (version 1, PT 1), type 0xff (G-PDU), length, TEID; 4 more bytes when
        // E, S or PN is set, then extension headers while the next-type byte is non-zero.
        let (&flags, rest) = data.split_first()?;
        if flags >> 5 != 1 || flags & 0x10 == 0 || rest.first() != Some(&0xff) {
            return None;
        }
        let mut offset = 8;
        if flags & 0x07 != 0 {
            offset = 12;
            let mut next = *data.get(11)?;
            let mut hops = 0;
            while flags & 0x04 != 0 && next != 0 && hops < 8 {
                let words = usize::from(*data.get(offset)?);
                if words == 0 {
                    return None;
                }
                offset += words * 4;
                next = *data.get(offset.checked_sub(1)?)?;
                hops += 1;
            }
        }
        decode_ip(data.get(offset..)?, depth)
    } else if ports.contains(&4789) {
        // VXLAN: flags with the I bit, 3 reserved, VNI, 1 reserved; then an Ethernet frame.
        if data.first() != Some(&0x08) {
            return None;
        }
        decode_link(1, data.get(8..)?, depth)
    } else {
        return None;
    };
    matches!(inner, Decoded::Segment(_) | Decoded::Fragment).then_some(inner)
}

/// Plain GRE (RFC 2784/2890): optional checksum, key and sequence words, then an ethertype.
fn decode_gre(data: &[u8], depth: u8) -> Decoded<'_> {
    let Some(header) = data.get(0..4) else {
        return Decoded::Malformed;
    };
    let flags = header[0];
    let version = header[1] & 0x07;
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    if version == 1 {
        // Enhanced GRE (PPTP, RFC 2637): key always present, optional sequence and ack
        // numbers, PPP inside.
        if protocol != 0x880b {
            return Decoded::Other;
        }
        let mut offset = 8;
        if flags & 0x10 != 0 {
            offset += 4;
        }
        if header[1] & 0x80 != 0 {
            offset += 4;
        }
        return match data.get(offset..) {
            Some([0xff, 0x03, rest @ ..]) | Some(rest) => decode_ppp(rest, depth),
            None => Decoded::Malformed,
        };
    }
    if version != 0 {
        return Decoded::Other;
    }
    let mut offset = 4;
    if flags & 0x80 != 0 {
        offset += 4;
    }
    if flags & 0x20 != 0 {
        offset += 4;
    }
    if flags & 0x10 != 0 {
        offset += 4;
    }
    match data.get(offset..) {
        // Transparent Ethernet bridging carries a whole Ethernet frame.
        Some(rest) if protocol == 0x6558 => decode_link(1, rest, depth),
        Some(rest) => decode_ethertype(protocol, rest, depth),
        None => Decoded::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let builder =
            etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(5000, 53);
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn raw_ipv4_udp() {
        let packet = ipv4_udp(b"hello");
        match decode(101, &packet) {
            Decoded::Segment(segment) => {
                assert_eq!(segment.src_port, 5000);
                assert_eq!(segment.dst_port, 53);
                assert_eq!(segment.payload, b"hello");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ethernet_qinq_and_null_loopback() {
        let ip = ipv4_udp(b"x");
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        frame.extend_from_slice(&ip);
        assert!(matches!(decode(1, &frame), Decoded::Segment(_)));
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        assert!(matches!(decode(0, &null), Decoded::Segment(_)));
        let mut looped = vec![0, 0, 0, 2];
        looped.extend_from_slice(&ip);
        assert!(matches!(decode(108, &looped), Decoded::Segment(_)));
    }

    #[test]
    fn sll2_and_ip_in_ip() {
        let inner = ipv4_udp(b"y");
        let mut outer = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .write(&mut outer, IpNumber::IPV4, &inner)
            .unwrap();
        let mut frame = vec![0x08, 0x00];
        frame.extend_from_slice(&[0u8; 18]);
        frame.extend_from_slice(&outer);
        match decode(276, &frame) {
            Decoded::Segment(segment) => assert_eq!(segment.src, IpAddr::from([10, 0, 0, 1])),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gtp_u_and_vxlan_are_unwrapped() {
        let inner = ipv4_udp(b"inner");
        let mut gtp = vec![0x30, 0xff, 0, inner.len() as u8, 0, 0, 0, 1];
        gtp.extend_from_slice(&inner);
        let mut outer = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(2152, 2152)
            .write(&mut outer, &gtp)
            .unwrap();
        match decode(101, &outer) {
            Decoded::Segment(segment) => assert_eq!(segment.payload, b"inner"),
            other => panic!("unexpected {other:?}"),
        }
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vxlan.extend_from_slice(&[0u8; 12]);
        vxlan.extend_from_slice(&[0x08, 0x00]);
        vxlan.extend_from_slice(&inner);
        let mut outer = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(40000, 4789)
            .write(&mut outer, &vxlan)
            .unwrap();
        match decode(101, &outer) {
            Decoded::Segment(segment) => assert_eq!(segment.dst_port, 53),
            other => panic!("unexpected {other:?}"),
        }
        // Not a G-PDU: the outer datagram is what gets classified.
        let mut outer = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(2152, 2152)
            .write(&mut outer, b"\x30\x01\x00\x00")
            .unwrap();
        assert!(matches!(decode(101, &outer), Decoded::Segment(s) if s.dst_port == 2152));
    }

    #[test]
    fn garbage_never_panics() {
        for linktype in [
            0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 192, 228, 229, 276, 999,
        ] {
            for len in 0..64 {
                let frame: Vec<u8> = (0..len).map(|i| (i * 37 + linktype) as u8).collect();
                let _ = decode(linktype, &frame);
            }
        }
    }
}
