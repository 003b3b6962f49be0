//! Benign UDP protocols recognised by structure (docs §2.5), checked before uTP so that a
//! look-alike first byte never becomes a uTP verdict.
//!
//! Collisions with uTP this table exists for (docs §1.9):
//! - DNS: a 20-byte query with id `41 00` lines up with a uTP SYN field by field except that its
//!   QCLASS (1, IN) sits where a SYN has `ack_nr == 0`. The DNS check here parses the whole
//!   message and requires a real QCLASS (never 0), so a DNS query is never a valid SYN and a
//!   valid SYN is never DNS.
//! - STUN: a Binding success response starts `01 01`, a valid uTP DATA + SACK prefix; the magic
//!   cookie and the length field rule it out.
//! - QUIC short headers may start `0x41` (uTP SYN); they cannot be recognised alone, but a SYN
//!   needs four zero bytes of `tdiff` and a zero `ack_nr` that encrypted bytes do not give.
//!   Long headers (version, connection-id lengths) are recognised here.
//! - WireGuard handshake initiation starts `01 00 00 00` (uTP DATA with id 0, which uTP rejects);
//!   with Cloudflare's non-zero reserved bytes it is accepted by its exact length 148.
//! - NTP symmetric-active mode with version 2 or 4 gives first bytes `0x11`/`0x21` (uTP FIN or
//!   STATE); there the stratum byte must also be out of uTP's extension range.
//!
//! Every function looks at a bounded prefix, allocates nothing and cannot panic.

use super::super::Benign;

/// The first rule that matches `datagram`, if any.
pub(super) fn benign(datagram: &[u8]) -> Option<Benign> {
    if is_dns(datagram) {
        Some(Benign::Dns)
    } else if is_quic(datagram) {
        Some(Benign::Quic)
    } else if is_stun(datagram) {
        Some(Benign::Stun)
    } else if is_dtls(datagram) {
        Some(Benign::Dtls)
    } else if is_wireguard(datagram) {
        Some(Benign::WireGuard)
    } else if is_openvpn(datagram) {
        Some(Benign::OpenVpn)
    } else if is_ntp(datagram) {
        Some(Benign::Ntp)
    } else if is_ssdp(datagram) {
        Some(Benign::Ssdp)
    } else if is_rtp(datagram) {
        Some(Benign::Rtp)
    } else {
        None
    }
}

/// Most records of each DNS section read (RFC 1035 §4.1).
const DNS_MAX_RECORDS: u16 = 64;

/// DNS (RFC 1035 §4.1; mDNS and LLMNR share the format): the header, every question and every
/// resource record parse and end exactly at the end of the datagram.
pub(super) fn is_dns(datagram: &[u8]) -> bool {
    let (Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) = (
        be16(datagram, 2),
        be16(datagram, 4),
        be16(datagram, 6),
        be16(datagram, 8),
        be16(datagram, 10),
    ) else {
        return false;
    };
    let opcode = (flags >> 11) & 0x0F;
    // Opcodes 0 query, 1 inverse query, 2 status, 4 notify, 5 update; the Z bit is zero.
    if !matches!(opcode, 0 | 1 | 2 | 4 | 5) || flags & 0x0040 != 0 {
        return false;
    }
    let is_response = flags & 0x8000 != 0;
    if qd == 0 && !is_response || qd > 4 || [an, ns, ar].iter().any(|&n| n > DNS_MAX_RECORDS) {
        return false;
    }
    let mut offset = 12;
    for _ in 0..qd {
        let Some(end) = skip_name(datagram, offset) else {
            return false;
        };
        let (Some(qtype), Some(qclass)) = (be16(datagram, end), be16(datagram, end + 2)) else {
            return false;
        };
        if qtype == 0 || !dns_class_ok(qclass) {
            return false;
        }
        offset = end + 4;
    }
    for _ in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let Some(end) = skip_name(datagram, offset) else {
            return false;
        };
        let (Some(rtype), Some(class), Some(rdlen)) = (
            be16(datagram, end),
            be16(datagram, end + 2),
            be16(datagram, end + 8),
        ) else {
            return false;
        };
        // OPT (41, RFC 6891) keeps the UDP payload size in the class field.
        if rtype == 0 || (rtype != 41 && !dns_class_ok(class)) {
            return false;
        }
        offset = end + 10 + usize::from(rdlen);
        if offset > datagram.len() {
            return false;
        }
    }
    offset == datagram.len()
}

/// IN, CH, HS, NONE, ANY; the top bit is mDNS's unicast-response / cache-flush flag.
fn dns_class_ok(class: u16) -> bool {
    matches!(class & 0x7FFF, 1 | 3 | 4 | 254 | 255)
}

/// A domain name at `offset`; returns the offset just past it. Labels ≤ 63 bytes, a
/// compression pointer ends the name and must point backwards; at most 255 bytes.
fn skip_name(datagram: &[u8], mut offset: usize) -> Option<usize> {
    let start = offset;
    loop {
        let len = *datagram.get(offset)?;
        match len {
            0 => return Some(offset + 1),
            1..=63 => {
                offset += 1 + usize::from(len);
                if offset - start > 255 {
                    return None;
                }
            }
            0xC0..=0xFF => {
                let low = *datagram.get(offset + 1)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3F, low]));
                return (target < start).then_some(offset + 2);
            }
            _ => return None,
        }
    }
}

/// QUIC: an IETF long header (RFC 9000 §17.2) with a known version family and connection-id
/// lengths that fit, a version negotiation packet, or a Google QUIC (Q0xx) public header.
pub(super) fn is_quic(datagram: &[u8]) -> bool {
    let Some(&first) = datagram.first() else {
        return false;
    };
    // gQUIC public header: version flag 0x01 with an 8-byte connection id (0x08), then "Q0".
    if first & 0x89 == 0x09 && datagram.get(9..11) == Some(&b"Q0"[..]) && datagram.len() >= 13 {
        return true;
    }
    if first & 0x80 == 0 {
        return false;
    }
    let Some(version) = be32(datagram, 1) else {
        return false;
    };
    let known = match version {
        // Version negotiation (fixed bit unused).
        0 => true,
        // v1, v2 (RFC 9369), drafts, mvfst, Google's Q0xx/T0xx with IETF headers.
        0x0000_0001 | 0x6B33_43CF => true,
        0xFF00_0000..=0xFF00_00FF | 0xFACE_B000..=0xFACE_B0FF => true,
        v if v >> 16 == 0x5130 || v >> 16 == 0x5430 => true,
        // Version greasing (RFC 9000 §15): 0x?a?a?a?a.
        v => v & 0x0F0F_0F0F == 0x0A0A_0A0A,
    };
    if !known || (version != 0 && first & 0x40 == 0) {
        return false;
    }
    let Some(&dcid_len) = datagram.get(5) else {
        return false;
    };
    if version >> 16 == 0x5130 {
        // Q046/Q050 put nibble-coded lengths here; the version alone is enough.
        return datagram.len() >= 14;
    }
    let scid_at = 6 + usize::from(dcid_len);
    let Some(&scid_len) = datagram.get(scid_at) else {
        return false;
    };
    dcid_len <= 20 && scid_len <= 20 && scid_at + 1 + usize::from(scid_len) <= datagram.len()
}

/// STUN/TURN (RFC 5389 §6): top two bits zero, the length field matches and is a multiple of
/// four, and the magic cookie `21 12 A4 42`; or a classic RFC 3489 Binding message (no cookie)
/// whose length field matches exactly.
pub(super) fn is_stun(datagram: &[u8]) -> bool {
    let (Some(kind), Some(len)) = (be16(datagram, 0), be16(datagram, 2)) else {
        return false;
    };
    if kind & 0xC000 != 0
        || usize::from(len) + 20 != datagram.len()
        || !len.is_multiple_of(4)
        || datagram.len() < 20
    {
        return false;
    }
    be32(datagram, 4) == Some(0x2112_A442)
        || matches!(kind, 0x0001 | 0x0101 | 0x0111 | 0x0002 | 0x0102 | 0x0112)
}

/// DTLS 1.0/1.2 records (RFC 6347 §4.1): content type 20..=23 or 25, version `FE FF`/`FE FD`,
/// and record lengths that walk exactly to the end of the datagram.
pub(super) fn is_dtls(datagram: &[u8]) -> bool {
    let mut offset = 0;
    let mut records = 0;
    while offset < datagram.len() && records < 16 {
        let (Some(&kind), Some(version), Some(len)) = (
            datagram.get(offset),
            be16(datagram, offset + 1),
            be16(datagram, offset + 11),
        ) else {
            return false;
        };
        if !matches!(kind, 20..=23 | 25) || !matches!(version, 0xFEFF | 0xFEFD) {
            return false;
        }
        offset += 13 + usize::from(len);
        records += 1;
    }
    records > 0 && offset == datagram.len()
}

/// WireGuard (whitepaper §5.4): handshake initiation 148 bytes, response 92, cookie reply 64,
/// transport data ≥ 32 bytes in 16-byte steps. The reserved bytes are zero in the reference
/// implementation but Cloudflare WARP reuses them, so they are required only for data messages
/// and for an initiation that would otherwise read as a uTP DATA header.
pub(super) fn is_wireguard(datagram: &[u8]) -> bool {
    let Some(&[kind, r0, r1, r2]) = datagram.get(..4).and_then(|h| <&[u8; 4]>::try_from(h).ok())
    else {
        return false;
    };
    let reserved_zero = r0 == 0 && r1 == 0 && r2 == 0;
    match (kind, datagram.len()) {
        // Byte 1 > 3 cannot start a uTP extension chain, so the initiation cannot be uTP.
        (1, 148) => reserved_zero || r0 > 3,
        (2, 92) | (3, 64) => true,
        (4, len) => reserved_zero && len >= 32 && len.is_multiple_of(16),
        _ => false,
    }
}

/// OpenVPN over UDP: a hard-reset control packet (opcode 7 client v2, 8 server v2, 10 client
/// v3; key id 0) with an 8-byte session id, in one of the layouts OpenVPN produces: 14 bytes
/// without `tls-auth` (empty ack array, packet id 0); `tls-auth` with an HMAC of 16..=64 bytes,
/// then packet id and a net time (seconds since 1970) that must be plausible (2009..2038, a
/// range check, not a clock comparison); or `tls-crypt` (≥ 56 bytes) with the net time right
/// after the session id and packet id. The time check keeps RPC/NFS (random xid) out.
pub(super) fn is_openvpn(datagram: &[u8]) -> bool {
    let Some(&first) = datagram.first() else {
        return false;
    };
    if !matches!(first, 0x38 | 0x40 | 0x50) {
        return false;
    }
    let plausible_time = |offset: usize| {
        be32(datagram, offset).is_some_and(|t| (0x4B00_0000..0x8000_0000).contains(&t))
    };
    let len = datagram.len();
    if len == 14 {
        return datagram.get(9..14) == Some(&[0, 0, 0, 0, 0][..]);
    }
    // tls-auth: 1 + 8 + HMAC + 4 (packet id) + 4 (time) + 1 (ack count 0) + 4 (message id).
    let tls_auth =
        matches!(len.checked_sub(22), Some(16 | 20 | 28 | 32 | 48 | 64)) && plausible_time(len - 9);
    let tls_crypt = (56..=1500).contains(&len) && plausible_time(13);
    tls_auth || tls_crypt
}

/// NTP (RFC 5905 §7.3): 48 bytes (plus extension fields or a MAC, in 4-byte steps), version
/// 1..=4, mode 1..=5, stratum ≤ 16. Modes 1 with versions 2/4 collide with uTP first bytes, so
/// for those the stratum must also be above 3 (outside uTP's extension types).
pub(super) fn is_ntp(datagram: &[u8]) -> bool {
    let (Some(&first), Some(&stratum)) = (datagram.first(), datagram.get(1)) else {
        return false;
    };
    let version = (first >> 3) & 0x07;
    let mode = first & 0x07;
    let len = datagram.len();
    if !(48..=1024).contains(&len) || !len.is_multiple_of(4) || !(1..=4).contains(&version) {
        return false;
    }
    if !(1..=5).contains(&mode) || stratum > 16 {
        return false;
    }
    let utp_like = first & 0x0F == 1 && first >> 4 <= 4;
    !utp_like || stratum > 3
}

/// SSDP and similar HTTP-over-UDP discovery (UPnP): `M-SEARCH`/`NOTIFY` request lines or an
/// HTTP/1.1 response line.
pub(super) fn is_ssdp(datagram: &[u8]) -> bool {
    [
        &b"M-SEARCH * HTTP/1.1\r\n"[..],
        b"NOTIFY * HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
    ]
    .iter()
    .any(|line| datagram.starts_with(line))
}

/// RTP/RTCP (RFC 3550): version 2; RTCP packet types 192..=223 with a length that fits; RTP
/// with a static (0..=34) or dynamic (96..=127) payload type, room for the CSRC list, and a
/// padding count (P bit) that fits.
pub(super) fn is_rtp(datagram: &[u8]) -> bool {
    let (Some(&first), Some(&second)) = (datagram.first(), datagram.get(1)) else {
        return false;
    };
    if first & 0xC0 != 0x80 {
        return false;
    }
    if (192..=223).contains(&second) {
        return be16(datagram, 2)
            .is_some_and(|words| (usize::from(words) + 1) * 4 <= datagram.len());
    }
    let payload_type = second & 0x7F;
    let header = 12 + 4 * usize::from(first & 0x0F);
    let padding_ok = first & 0x20 == 0
        || datagram
            .last()
            .is_some_and(|&pad| pad > 0 && header + usize::from(pad) <= datagram.len());
    (payload_type <= 34 || payload_type >= 96) && datagram.len() >= header && padding_ok
}

fn be16(bytes: &[u8], offset: usize) -> Option<u16> {
    let word: [u8; 2] = bytes.get(offset..offset + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(word))
}

fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(offset..offset + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

#[cfg(test)]
mod tests;
