//! T1 and T2: the BitTorrent peer wire in the clear (BEP 3, BEP 6, BEP 10, BEP 52).
//!
//! T1 is the 20-byte protocol string that opens the 68-byte handshake; it is decisive on its
//! own. T2 walks length-prefixed messages from a known boundary (the start of a direction in
//! an offline capture): three consecutive well-formed frames, or one BEP 10 extension
//! handshake whose payload is a bencoded dictionary with an `m` key (spec §1.3).

use super::Match;
use crate::classify::bencode::{self, Limits, Value};

/// First byte of the handshake: the length of the protocol string.
pub(super) const PSTRLEN: u8 = 0x13;
/// `pstrlen` followed by the protocol string (BEP 3).
pub(super) const HANDSHAKE_PREFIX: &[u8; 20] = crate::bt::peer_wire::PROTOCOL_PREFIX;

/// Largest frame accepted for messages whose size is not fixed (bitfield, piece, extended,
/// hashes): 128 KiB covers a 16 KiB block and bitfields of a million pieces.
const MAX_VARIABLE_FRAME: u32 = 1 << 17;
/// Frames needed for a decision without an extension handshake (spec §1.3).
const FRAMES_NEEDED: u32 = 3;
/// Keep-alives tolerated while walking (they carry no evidence).
const MAX_KEEPALIVES: u32 = 4;

/// Does `bytes` start with the handshake prefix?
pub(super) fn handshake_at_start(bytes: &[u8]) -> Match {
    let n = bytes.len().min(HANDSHAKE_PREFIX.len());
    if bytes.get(..n) != HANDSHAKE_PREFIX.get(..n) {
        Match::No
    } else if n == HANDSHAKE_PREFIX.len() {
        Match::Yes
    } else {
        Match::Partial
    }
}

/// Is the handshake prefix anywhere in `bytes` (the I6 scan, spec §2.2)?
pub(super) fn find_handshake(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, HANDSHAKE_PREFIX).is_some()
}

/// Walk peer-wire frames from the start of `bytes` (T2).
pub(super) fn walk_messages(bytes: &[u8]) -> Match {
    let mut pos = 0usize;
    let mut frames = 0u32;
    let mut keepalives = 0u32;
    loop {
        let Some(header) = bytes.get(pos..pos + 4) else {
            return Match::Partial;
        };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if length == 0 {
            keepalives += 1;
            if keepalives > MAX_KEEPALIVES {
                return Match::No;
            }
            pos += 4;
            continue;
        }
        let Some(&id) = bytes.get(pos + 4) else {
            return Match::Partial;
        };
        if !length_fits(id, length) {
            return Match::No;
        }
        let body_start = pos + 5;
        let end = pos + 4 + length as usize;
        let body = bytes
            .get(body_start..end.min(bytes.len()))
            .unwrap_or_default();
        match check_body(id, body, end <= bytes.len()) {
            Body::Decisive => return Match::Yes,
            Body::Bad => return Match::No,
            Body::Unknown if end > bytes.len() => return Match::Partial,
            Body::Unknown | Body::Fine => {}
        }
        frames += 1;
        if frames >= FRAMES_NEEDED {
            return Match::Yes;
        }
        pos = end;
    }
}

/// Is `length` consistent with message `id` (BEP 3, 5, 6, 10, 52)?
fn length_fits(id: u8, length: u32) -> bool {
    match id {
        // choke, unchoke, interested, not interested; have-all, have-none.
        0..=3 | 0x0E | 0x0F => length == 1,
        // have, suggest, allowed-fast.
        4 | 0x0D | 0x11 => length == 5,
        // bitfield.
        5 => (2..=MAX_VARIABLE_FRAME).contains(&length),
        // request, cancel, reject.
        6 | 8 | 0x10 => length == 13,
        // piece: index, begin, block.
        7 => (10..=MAX_VARIABLE_FRAME + 9).contains(&length),
        // port (DHT).
        9 => length == 3,
        // extended: extension id + payload.
        20 => (2..=MAX_VARIABLE_FRAME).contains(&length),
        // hash request, hash reject: root 32, base layer, index, length, proof layers.
        21 | 23 => length == 49,
        // hashes: the request fields followed by 32-byte hashes.
        22 => length > 49 && (length - 49).is_multiple_of(32) && length <= MAX_VARIABLE_FRAME,
        _ => false,
    }
}

enum Body {
    /// The frame alone decides (a BEP 10 extension handshake).
    Decisive,
    /// The frame is fine.
    Fine,
    /// Not yet known (the body is cut off).
    Unknown,
    /// Not a peer-wire frame.
    Bad,
}

/// Light content checks; `complete` is false when the frame continues past the prefix.
fn check_body(id: u8, body: &[u8], complete: bool) -> Body {
    match id {
        // request / cancel / reject: the block length is 1..=128 KiB (BEP 3 uses 16 KiB).
        6 | 8 | 0x10 => match body.get(8..12) {
            Some(&[a, b, c, d]) => {
                let block = u32::from_be_bytes([a, b, c, d]);
                if block == 0 || block > MAX_VARIABLE_FRAME {
                    Body::Bad
                } else {
                    Body::Fine
                }
            }
            _ => Body::Unknown,
        },
        20 => extension_message(body, complete),
        _ if complete => Body::Fine,
        _ => Body::Unknown,
    }
}

/// An extended message (BEP 10): extension id 0 is the handshake, a bencoded dict with `m`.
fn extension_message(body: &[u8], complete: bool) -> Body {
    let Some((&extension_id, payload)) = body.split_first() else {
        return Body::Unknown;
    };
    if extension_id != 0 {
        // Another extension (ut_metadata, ut_pex, ...): a frame like any other.
        return if complete { Body::Fine } else { Body::Unknown };
    }
    if payload.first().is_some_and(|&b| b != b'd') {
        return Body::Bad;
    }
    if !complete {
        return Body::Unknown;
    }
    let limits = Limits {
        max_depth: 4,
        max_items: 512,
    };
    match bencode::parse_exact(payload, limits) {
        Ok(value @ Value::Dict(_)) if matches!(value.get(b"m"), Some(Value::Dict(_))) => {
            Body::Decisive
        }
        _ => Body::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_prefix_streams() {
        assert_eq!(handshake_at_start(b""), Match::Partial);
        assert_eq!(handshake_at_start(b"\x13Bit"), Match::Partial);
        assert_eq!(handshake_at_start(b"\x13Bat"), Match::No);
        assert_eq!(handshake_at_start(b"\x12"), Match::No);
        assert_eq!(handshake_at_start(HANDSHAKE_PREFIX), Match::Yes);
        assert!(find_handshake(b"xx\x13BitTorrent protocolyy"));
        assert!(!find_handshake(b"xx\x13BitTorrent protoco"));
    }

    fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(id);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn three_frames_decide() {
        let mut bytes = frame(2, b""); // interested
        bytes.extend(frame(4, &7u32.to_be_bytes())); // have 7
        let mut request = Vec::new();
        for v in [1u32, 0, 16_384] {
            request.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend(frame(6, &request));
        for cut in 0..bytes.len() {
            assert_eq!(walk_messages(&bytes[..cut]), Match::Partial, "cut {cut}");
        }
        assert_eq!(walk_messages(&bytes), Match::Yes);
    }

    #[test]
    fn keepalives_alone_are_not_evidence() {
        assert_eq!(walk_messages(&[0; 16]), Match::Partial);
        assert_eq!(walk_messages(&[0; 24]), Match::No);
    }

    #[test]
    fn extension_handshake_decides() {
        let dict = b"d1:md11:ut_metadatai2e6:ut_pexi1ee1:pi6881e1:v13:qBittorrent 4e";
        let mut payload = vec![0u8];
        payload.extend_from_slice(dict);
        let bytes = frame(20, &payload);
        assert_eq!(walk_messages(&bytes[..bytes.len() - 1]), Match::Partial);
        assert_eq!(walk_messages(&bytes), Match::Yes);
        // Without `m` it is not a handshake.
        let mut payload = vec![0u8];
        payload.extend_from_slice(b"d1:pi6881ee");
        assert_eq!(walk_messages(&frame(20, &payload)), Match::No);
    }

    #[test]
    fn rejects_other_framings() {
        // A TLS record, HTTP, random-looking bytes.
        assert_eq!(walk_messages(b"\x16\x03\x01\x02\x00\x01"), Match::No);
        assert_eq!(walk_messages(b"GET / HTTP/1.1\r\n"), Match::No);
        assert_eq!(walk_messages(&[0, 0, 0, 5, 0x2A, 0, 0, 0, 0]), Match::No);
        // request with a zero block length.
        assert_eq!(walk_messages(&frame(6, &[0; 12])), Match::No);
    }
}
