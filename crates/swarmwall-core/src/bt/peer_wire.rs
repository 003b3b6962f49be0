//! The peer-wire handshake (BEP 3): `\x13BitTorrent protocol`, 8 reserved bytes, the 20-byte
//! info-hash and the 20-byte peer id. The one builder every swarmwall tool uses.

/// The first 20 bytes of every handshake: the length byte 19 and the protocol name.
pub const PROTOCOL_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Length of a whole handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// Reserved bytes with no extension bit set.
pub const RESERVED_NONE: [u8; 8] = [0; 8];

/// Reserved bytes as libtorrent sends them: extension protocol (BEP 10), DHT (BEP 5) and Fast
/// (BEP 6) bits set.
pub const RESERVED_LIBTORRENT: [u8; 8] = [0, 0, 0, 0, 0, 0x10, 0, 0x05];

/// A parsed handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The 8 reserved (extension) bytes.
    pub reserved: [u8; 8],
    /// The torrent's info-hash (a v2 hash truncated to 20 bytes, per BEP 52).
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// The 68 wire bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        let parts: [&[u8]; 4] = [
            PROTOCOL_PREFIX,
            &self.reserved,
            &self.info_hash,
            &self.peer_id,
        ];
        let mut at = 0;
        for part in parts {
            if let Some(slot) = out.get_mut(at..at + part.len()) {
                slot.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    /// Parse a handshake from the start of `bytes`; `None` when fewer than 68 bytes are there
    /// or the protocol prefix does not match.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..HANDSHAKE_LEN)?;
        if bytes.get(..20)? != PROTOCOL_PREFIX {
            return None;
        }
        Some(Self {
            reserved: bytes.get(20..28)?.try_into().ok()?,
            info_hash: bytes.get(28..48)?.try_into().ok()?,
            peer_id: bytes.get(48..68)?.try_into().ok()?,
        })
    }
}

/// The printable client prefix of a peer id: the Azureus-style `-XXnnnn-` (its first 8 bytes),
/// with every non-printable byte shown as `.`.
pub fn client_prefix(peer_id: &[u8]) -> String {
    peer_id
        .get(..8)
        .unwrap_or(peer_id)
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_the_bep3_layout() {
        let handshake = Handshake {
            reserved: RESERVED_LIBTORRENT,
            info_hash: [0xaa; 20],
            peer_id: *b"-lt20A0-abcdefghijkl",
        };
        let bytes = handshake.encode();
        assert_eq!(&bytes[..20], PROTOCOL_PREFIX);
        assert_eq!(bytes[25], 0x10);
        assert_eq!(bytes[27], 0x05);
        assert_eq!(&bytes[28..48], &[0xaa; 20]);
        assert_eq!(&bytes[48..], b"-lt20A0-abcdefghijkl");
        assert_eq!(Handshake::decode(&bytes), Some(handshake));
        assert_eq!(Handshake::decode(&bytes[..67]), None);
        let mut wrong = bytes;
        wrong[1] = b'b';
        assert_eq!(Handshake::decode(&wrong), None);
    }

    #[test]
    fn client_prefixes() {
        assert_eq!(client_prefix(b"-lt20A0-abcdefghijkl"), "-lt20A0-");
        assert_eq!(client_prefix(b"\x00\x01abcdefghijklmnopqr"), "..abcdef");
        assert_eq!(client_prefix(b"ab"), "ab");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Handshake::decode(&bytes);
        }
    }
}
