//! T7 over plain WebSocket (`ws:`): the first client frame after the HTTP Upgrade.
//!
//! Client frames are masked (RFC 6455 §5.3), so a substring search on the raw bytes finds
//! nothing; the first frame is unmasked (up to [`SAMPLE`] payload bytes, into a stack buffer)
//! and tested for a JSON object carrying `"action":"announce"` (or `"scrape"`) and an
//! `"info_hash"` member, as WebTorrent trackers expect (spec §1.8).

use memchr::memmem;

use super::Match;

/// Payload bytes of the first frame examined; WebTorrent puts `action` and `info_hash` ahead
/// of the (large) SDP offers.
const SAMPLE: usize = 1024;

/// Does the first client frame in `bytes` carry a WebTorrent announce?
pub(super) fn first_frame_announce(bytes: &[u8]) -> Match {
    let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
        return Match::Partial;
    };
    let opcode = b0 & 0x0F;
    let masked = b1 & 0x80 != 0;
    // Text or binary data frame, masked as every client frame must be.
    if !masked || !(opcode == 0x1 || opcode == 0x2) {
        return Match::No;
    }
    let (length, mut pos) = match b1 & 0x7F {
        126 => match bytes.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Match::Partial,
        },
        127 => match bytes.get(2..10) {
            Some(raw) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(raw);
                (u64::from_be_bytes(be), 10)
            }
            None => return Match::Partial,
        },
        short => (u64::from(short), 2),
    };
    let Some(key) = bytes.get(pos..pos + 4) else {
        return Match::Partial;
    };
    let key = [key[0], key[1], key[2], key[3]];
    pos += 4;
    let wanted = usize::try_from(length).unwrap_or(usize::MAX).min(SAMPLE);
    let available = bytes.get(pos..).unwrap_or_default();
    let n = wanted.min(available.len());
    let mut payload = [0u8; SAMPLE];
    for (i, (slot, byte)) in payload.iter_mut().zip(available).take(n).enumerate() {
        *slot = byte ^ key[i % 4];
    }
    let payload = payload.get(..n).unwrap_or_default();
    if is_announce_json(payload) {
        Match::Yes
    } else if n < wanted {
        Match::Partial
    } else {
        Match::No
    }
}

/// A JSON object with `"action": "announce"|"scrape"` and an `"info_hash"` member.
fn is_announce_json(text: &[u8]) -> bool {
    if text.trim_ascii_start().first() != Some(&b'{') {
        return false;
    }
    let action = member_value(text, b"\"action\"").is_some_and(|value| {
        value.starts_with(b"\"announce\"") || value.starts_with(b"\"scrape\"")
    });
    let info_hash = member_value(text, b"\"info_hash\"")
        .is_some_and(|value| value.starts_with(b"\"") || value.starts_with(b"["));
    action && info_hash
}

/// The text after `"name"` + optional whitespace + `:` + optional whitespace.
fn member_value<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let at = memmem::find(text, name)?;
    let rest = text.get(at + name.len()..)?.trim_ascii_start();
    rest.strip_prefix(b":").map(<[u8]>::trim_ascii_start)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Build a masked client text frame.
    pub(crate) fn masked_frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut out = vec![0x81];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    #[test]
    fn unmasks_an_announce() {
        let json = br#"{"numwant":50,"uploaded":0,"downloaded":0,"event":"started","action":"announce","info_hash":"\u0012\u0034abcdefghijklmnopq","peer_id":"-WW0105-abcdefghijkl","offers":[]}"#;
        let frame = masked_frame(json, [0x11, 0x22, 0x33, 0x44]);
        // The raw bytes do not contain the plaintext.
        assert!(memmem::find(&frame, b"announce").is_none());
        let first_yes = (0..=frame.len())
            .find(|&cut| first_frame_announce(&frame[..cut]) == Match::Yes)
            .unwrap();
        for cut in 0..first_yes {
            assert_eq!(
                first_frame_announce(&frame[..cut]),
                Match::Partial,
                "cut {cut}"
            );
        }
        for cut in first_yes..=frame.len() {
            assert_eq!(first_frame_announce(&frame[..cut]), Match::Yes, "cut {cut}");
        }
    }

    #[test]
    fn other_frames() {
        let frame = masked_frame(br#"{"type":"chat","text":"hello"}"#, [1, 2, 3, 4]);
        assert_eq!(first_frame_announce(&frame), Match::No);
        // Unmasked client frame.
        assert_eq!(first_frame_announce(b"\x81\x05hello"), Match::No);
        // Ping.
        assert_eq!(first_frame_announce(b"\x89\x80abcd"), Match::No);
    }
}
