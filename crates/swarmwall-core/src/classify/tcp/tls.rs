//! TLS ClientHello → server name (RFC 8446 §4.1.2, RFC 6066 §3), for T6 and T7.
//!
//! T6: libtorrent's SSL torrents put the hex-encoded info-hash in the SNI (40 characters for
//! v1, 64 for v2) and the accepting side reads the torrent from it (spec §1.7). T7: the SNI
//! is a WebTorrent tracker (spec §1.8); a DHT router or public tracker name is
//! `known_destination` (spec §1.13). Any other server name is benign TLS, decided at once.
//!
//! The ClientHello may span TCP segments (post-quantum key shares make it ~1.8 KB) and, rarely,
//! several TLS records; fragments are gathered into a stack buffer only in the latter case.

use super::{C2S_BUDGET, Match};
use crate::classify::BtForm;
use crate::classify::destination::{DestinationKind, builtin_kind};

/// TLS record content type `handshake`.
pub(super) const CONTENT_HANDSHAKE: u8 = 0x16;
/// Handshake message type `client_hello`.
const CLIENT_HELLO: u8 = 0x01;
/// Extension `server_name`.
const EXT_SERVER_NAME: u16 = 0x0000;

/// What the ClientHello says about the server name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello<'a> {
    /// More bytes are needed.
    Incomplete,
    /// The record looked like TLS but the ClientHello is malformed.
    Invalid,
    /// A complete ClientHello without a host-name SNI.
    NoSni,
    /// The host name from the SNI extension (borrowed from the input).
    Sni(&'a [u8]),
}

/// The TLS record header of a ClientHello: `16 03 0x` (x ≤ 4), length, handshake type 1.
pub(super) fn record_start(bytes: &[u8]) -> Match {
    let checks: [fn(u8) -> bool; 6] = [
        |b| b == CONTENT_HANDSHAKE,
        |b| b == 0x03,
        |b| b <= 0x04,
        |_| true,
        |_| true,
        |b| b == CLIENT_HELLO,
    ];
    for (byte, ok) in bytes.iter().zip(checks) {
        if !ok(*byte) {
            return Match::No;
        }
    }
    if let (Some(&hi), Some(&lo)) = (bytes.get(3), bytes.get(4))
        && u16::from_be_bytes([hi, lo]) < 4
    {
        return Match::No;
    }
    if bytes.len() >= 6 {
        Match::Yes
    } else {
        Match::Partial
    }
}

/// Classify a server name: T6 for a hex info-hash, T7 for a WebTorrent tracker,
/// `known_destination` for a DHT router or public tracker (§1.13).
pub(super) fn classify_server_name(name: &[u8]) -> Option<BtForm> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if matches!(name.len(), 40 | 64) && name.iter().all(u8::is_ascii_hexdigit) {
        return Some(BtForm::SslTorrent);
    }
    match builtin_kind(name)? {
        DestinationKind::WebTorrent => Some(BtForm::WebTorrent),
        DestinationKind::Infrastructure => Some(BtForm::KnownDestination),
    }
}

/// What a ClientHello tells about the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// More bytes are needed.
    Incomplete,
    /// The record looked like TLS but the ClientHello is malformed.
    Invalid,
    /// A complete ClientHello without a host-name SNI.
    NoSni,
    /// A server name was found; the BitTorrent form it shows, if any.
    Named(Option<BtForm>),
}

/// Parse the ClientHello at the start of `bytes` (already checked by [`record_start`]) and
/// classify its server name.
pub(super) fn classify_client_hello(bytes: &[u8]) -> Outcome {
    let outcome = |hello: Hello<'_>| match hello {
        Hello::Incomplete => Outcome::Incomplete,
        Hello::Invalid => Outcome::Invalid,
        Hello::NoSni => Outcome::NoSni,
        Hello::Sni(name) => Outcome::Named(classify_server_name(name)),
    };
    let (Some(record), Some(&hi), Some(&lo)) = (bytes.get(5..), bytes.get(3), bytes.get(4)) else {
        return Outcome::Incomplete;
    };
    let record_len = usize::from(u16::from_be_bytes([hi, lo]));
    let in_record = record
        .get(..record_len.min(record.len()))
        .unwrap_or_default();
    let Some(message_len) = in_record
        .get(1..4)
        .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    else {
        return Outcome::Incomplete;
    };
    if 4 + message_len <= record_len {
        // The usual case: the whole ClientHello is in the first record; parse in place.
        let available = in_record.get(4..).unwrap_or_default();
        let complete = available.len() >= message_len;
        let body = available.get(..message_len).unwrap_or(available);
        return outcome(parse_client_hello(body, complete));
    }
    // The ClientHello continues in further handshake records: gather the fragments.
    let mut scratch = [0u8; C2S_BUDGET];
    let mut filled = 0usize;
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + 5) {
        if filled >= 4 + message_len {
            break;
        }
        if header[0] != CONTENT_HANDSHAKE || header[1] != 0x03 {
            return Outcome::Invalid;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let fragment = bytes
            .get(pos + 5..(pos + 5 + len).min(bytes.len()))
            .unwrap_or_default();
        let Some(slot) = scratch.get_mut(filled..filled + fragment.len()) else {
            // Larger than the inspection budget.
            return Outcome::Invalid;
        };
        slot.copy_from_slice(fragment);
        filled += fragment.len();
        if fragment.len() < len {
            break;
        }
        pos += 5 + len;
    }
    let gathered = scratch.get(..filled).unwrap_or_default();
    let available = gathered.get(4..).unwrap_or_default();
    let complete = available.len() >= message_len;
    outcome(parse_client_hello(
        available.get(..message_len).unwrap_or(available),
        complete,
    ))
}

/// A bounds-checked cursor; every read returns `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Parse a ClientHello body (after the 4-byte handshake header); `complete` says whether
/// `body` is the whole message (running out is then malformed, not incomplete).
fn parse_client_hello(body: &[u8], complete: bool) -> Hello<'_> {
    let short = if complete {
        Hello::Invalid
    } else {
        Hello::Incomplete
    };
    let mut reader = Reader {
        bytes: body,
        pos: 0,
    };
    // legacy_version, random.
    let Some(version) = reader.u16() else {
        return short;
    };
    if version >> 8 != 0x03 {
        return Hello::Invalid;
    }
    if reader.take(32).is_none() {
        return short;
    }
    let Some(session_id) = reader.vec8() else {
        return short;
    };
    if session_id.len() > 32 {
        return Hello::Invalid;
    }
    if reader.vec16().is_none() || reader.vec8().is_none() {
        return short;
    }
    if reader.pos == body.len() && complete {
        // No extensions at all (pre-TLS 1.2 style).
        return Hello::NoSni;
    }
    let Some(extensions_len) = reader.u16() else {
        return short;
    };
    let extensions_end = reader.pos + usize::from(extensions_len);
    // The first server_name extension decides, whatever follows it: the verdict must not
    // depend on how the bytes were segmented, and a prefix that already holds the extension
    // decides before the rest arrives (found by the classify_tcp fuzz target: a complete
    // message with a bad extensions length used to be refused while its prefixes were not).
    while reader.pos < extensions_end {
        let (Some(kind), Some(data)) = (reader.u16(), reader.vec16()) else {
            return short;
        };
        if kind == EXT_SERVER_NAME {
            return server_name(data);
        }
    }
    if !complete {
        // No server name yet: only the whole message can tell "none" from "malformed".
        short
    } else if reader.pos == extensions_end && extensions_end == body.len() {
        Hello::NoSni
    } else {
        Hello::Invalid
    }
}

/// The `server_name` extension body: a list of (type, name); type 0 is a host name.
fn server_name(data: &[u8]) -> Hello<'_> {
    let mut reader = Reader {
        bytes: data,
        pos: 0,
    };
    let Some(list) = reader.vec16() else {
        return Hello::Invalid;
    };
    let mut list = Reader {
        bytes: list,
        pos: 0,
    };
    while let Some(kind) = list.u8() {
        let Some(name) = list.vec16() else {
            return Hello::Invalid;
        };
        if kind == 0 {
            return Hello::Sni(name);
        }
    }
    Hello::NoSni
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A minimal ClientHello with the given SNI and an optional filler extension.
    pub(crate) fn client_hello(sni: Option<&[u8]>, filler: usize) -> Vec<u8> {
        let mut extensions = Vec::new();
        if filler > 0 {
            // key_share-sized padding extension (type 0x0015) placed first.
            extensions.extend_from_slice(&0x0015u16.to_be_bytes());
            extensions.extend_from_slice(&(filler as u16).to_be_bytes());
            extensions.extend(std::iter::repeat_n(0u8, filler));
        }
        if let Some(name) = sni {
            let mut entry = vec![0u8];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name);
            extensions.extend_from_slice(&0u16.to_be_bytes());
            extensions.extend_from_slice(&((entry.len() + 2) as u16).to_be_bytes());
            extensions.extend_from_slice(&(entry.len() as u16).to_be_bytes());
            extensions.extend(entry);
        }
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend(extensions);
        let mut handshake = vec![CLIENT_HELLO, 0];
        handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
        handshake.extend(body);
        let mut record = vec![CONTENT_HANDSHAKE, 0x03, 0x01];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }

    #[test]
    fn finds_the_sni_at_any_cut() {
        let hello = client_hello(Some(b"example.com"), 1200);
        for cut in 0..hello.len() {
            let got = classify_client_hello(&hello[..cut]);
            assert_eq!(got, Outcome::Incomplete, "cut {cut}");
        }
        assert_eq!(classify_client_hello(&hello), Outcome::Named(None));
    }

    #[test]
    fn classifies_names() {
        let hex = b"0123456789abcdef0123456789abcdef01234567";
        assert_eq!(classify_server_name(hex), Some(BtForm::SslTorrent));
        assert_eq!(classify_server_name(&[b'a'; 64]), Some(BtForm::SslTorrent));
        assert_eq!(classify_server_name(&[b'a'; 41]), None);
        assert_eq!(
            classify_server_name(b"tracker.openwebtorrent.com"),
            Some(BtForm::WebTorrent)
        );
        assert_eq!(
            classify_server_name(b"Tracker.Opentrackr.org."),
            Some(BtForm::KnownDestination)
        );
        assert_eq!(classify_server_name(b"www.example.com"), None);
        assert_eq!(
            classify_server_name(b"0123456789abcdef0123456789abcdef0123456.com"),
            None
        );
    }

    #[test]
    fn no_sni_and_fragmented_records() {
        assert_eq!(
            classify_client_hello(&client_hello(None, 0)),
            Outcome::NoSni
        );
        // Split the handshake over two records.
        let hello = client_hello(Some(b"0123456789abcdef0123456789abcdef01234567"), 300);
        let handshake = &hello[5..];
        let (a, b) = handshake.split_at(100);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[CONTENT_HANDSHAKE, 0x03, 0x03]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(classify_client_hello(&two[..150]), Outcome::Incomplete);
        assert_eq!(
            classify_client_hello(&two),
            Outcome::Named(Some(BtForm::SslTorrent))
        );
    }

    #[test]
    fn record_header() {
        assert_eq!(
            record_start(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]),
            Match::Yes
        );
        assert_eq!(record_start(&[0x16, 0x03]), Match::Partial);
        assert_eq!(record_start(&[0x16, 0x03, 0x07]), Match::No);
        assert_eq!(
            record_start(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x02]),
            Match::No
        );
    }
}
