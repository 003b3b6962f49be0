//! UDP tracker protocol (BEP 15, with BEP 41 option data after an announce).
//!
//! | message | layout | length |
//! |---|---|---|
//! | connect request | u64 protocol id `0x41727101980`, u32 action 0, u32 tid | 16 |
//! | connect response | u32 action 0, u32 tid, u64 connection id | 16 |
//! | announce request | u64 connection id, u32 action 1, u32 tid, 20 info-hash, 20 peer id, u64 downloaded, u64 left, u64 uploaded, u32 event (0..=3), u32 ip, u32 key, i32 num_want, u16 port | 98 + options |
//! | announce response | u32 action 1, u32 tid, u32 interval, u32 leechers, u32 seeders, peers | 20 + 6n or 20 + 18n (8 from opentracker) |
//! | scrape request | u64 connection id, u32 action 2, u32 tid, 20 × n | 16 + 20n |
//! | scrape response | u32 action 2, u32 tid, 12 × n | 8 + 12n |
//! | error | u32 action 3, u32 tid, message | ≥ 8 |
//!
//! The connect request is decisive by itself (a 64-bit magic and an exact length). Announce and
//! scrape requests may come without a connect in the same flow (connection ids stay valid for a
//! while, so a new association can skip connect); they are only candidates until the tracker's
//! reply with the same transaction id and a matching action and length arrives (docs §1.11).

/// BEP 15 protocol id of the connect request.
const PROTOCOL_ID: [u8; 8] = 0x0000_0417_2710_1980_u64.to_be_bytes();

/// Fixed part of an announce request.
const ANNOUNCE_LEN: usize = 98;

/// Scrape requests carry at most about 74 info-hashes (BEP 15).
const MAX_SCRAPE_HASHES: usize = 74;

/// The request actions a reply can be paired with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// action 1.
    Announce,
    /// action 2.
    Scrape,
}

/// A client-side message recognised by shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// Connect request: decisive.
    Connect,
    /// Announce or scrape request with its transaction id: a candidate awaiting the reply.
    Pending(Action, u32),
}

/// Recognise a request (docs §1.11). `None` for anything else.
pub(super) fn parse_request(datagram: &[u8]) -> Option<Request> {
    if datagram.len() == 16 && datagram.get(..8) == Some(&PROTOCOL_ID[..]) {
        return (be32(datagram, 8)? == 0).then_some(Request::Connect);
    }
    let action = be32(datagram, 8)?;
    let tid = be32(datagram, 12)?;
    match action {
        1 if datagram.len() >= ANNOUNCE_LEN
            && be32(datagram, 80)? <= 3
            && options_ok(datagram.get(ANNOUNCE_LEN..)?) =>
        {
            Some(Request::Pending(Action::Announce, tid))
        }
        2 if datagram.len() >= 36
            && (datagram.len() - 16).is_multiple_of(20)
            && (datagram.len() - 16) / 20 <= MAX_SCRAPE_HASHES =>
        {
            Some(Request::Pending(Action::Scrape, tid))
        }
        _ => None,
    }
}

/// True when `datagram` is the tracker's answer to a pending `action` with transaction `tid`:
/// the same action (or action 3, error) and tid, with the length that action implies.
pub(super) fn is_reply(datagram: &[u8], action: Action, tid: u32) -> bool {
    let (Some(reply_action), Some(reply_tid)) = (be32(datagram, 0), be32(datagram, 4)) else {
        return false;
    };
    if reply_tid != tid {
        return false;
    }
    let len = datagram.len();
    match (reply_action, action) {
        // 6-byte IPv4 or 18-byte IPv6 peers (18 is a multiple of 6). opentracker as packaged
        // by Debian answers an IPv4 announce with the bare 8-byte action + tid (seen in
        // testdata/opentracker_libtorrent.flow); the echoed tid still pairs it.
        (1, Action::Announce) => len == 8 || (len >= 20 && (len - 20).is_multiple_of(6)),
        (2, Action::Scrape) => len >= 8 && (len - 8).is_multiple_of(12),
        (3, _) => len >= 8,
        _ => false,
    }
}

/// BEP 41 options after the announce: 0 end, 1 no-op, 2 URL data (length byte + bytes).
fn options_ok(mut options: &[u8]) -> bool {
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return true,
            1 => options = rest,
            2 => {
                let Some((&len, rest)) = rest.split_first() else {
                    return false;
                };
                let Some(rest) = rest.get(usize::from(len)..) else {
                    return false;
                };
                options = rest;
            }
            _ => return false,
        }
    }
    true
}

fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(offset..offset + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connect request as BEP 15 prints it, with transaction id 0x11223344.
    pub(crate) const CONNECT: [u8; 16] = [
        0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44,
    ];

    fn announce(tid: u32, event: u32) -> Vec<u8> {
        let mut a = vec![0xAB; 8];
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&tid.to_be_bytes());
        a.extend_from_slice(&[0x5A; 20]);
        a.extend_from_slice(b"-lt2080-abcdefghijkl");
        a.extend_from_slice(&[0; 24]);
        a.extend_from_slice(&event.to_be_bytes());
        a.extend_from_slice(&[0; 8]);
        a.extend_from_slice(&(-1i32).to_be_bytes());
        a.extend_from_slice(&6881u16.to_be_bytes());
        assert_eq!(a.len(), ANNOUNCE_LEN);
        a
    }

    #[test]
    fn connect_is_decisive_only_at_length_16() {
        assert_eq!(parse_request(&CONNECT), Some(Request::Connect));
        let mut longer = CONNECT.to_vec();
        longer.push(0);
        assert_eq!(parse_request(&longer), None);
        let mut wrong_action = CONNECT;
        wrong_action[11] = 1;
        assert_eq!(parse_request(&wrong_action), None);
    }

    #[test]
    fn announce_pairs_with_its_reply() {
        let request = announce(0xCAFE_F00D, 2);
        assert_eq!(
            parse_request(&request),
            Some(Request::Pending(Action::Announce, 0xCAFE_F00D))
        );
        let mut with_url = request.clone();
        with_url.extend_from_slice(b"\x02\x09/announce\x00");
        assert!(parse_request(&with_url).is_some());
        assert_eq!(
            parse_request(&announce(1, 4)),
            None,
            "event 4 does not exist"
        );

        let mut reply = vec![0, 0, 0, 1, 0xCA, 0xFE, 0xF0, 0x0D];
        reply.extend_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0, 1, 0, 0, 0, 2]);
        reply.extend_from_slice(&[127, 0, 0, 1, 0x1A, 0xE1]);
        assert!(is_reply(&reply, Action::Announce, 0xCAFE_F00D));
        assert!(!is_reply(&reply, Action::Announce, 0xCAFE_F00E));
        assert!(!is_reply(&reply, Action::Scrape, 0xCAFE_F00D));
        reply.push(0);
        assert!(!is_reply(&reply, Action::Announce, 0xCAFE_F00D));
        let error = b"\x00\x00\x00\x03\xca\xfe\xf0\x0dunknown torrent";
        assert!(is_reply(error, Action::Announce, 0xCAFE_F00D));
    }

    #[test]
    fn scrape_shape() {
        let mut scrape = vec![0xAB; 8];
        scrape.extend_from_slice(&2u32.to_be_bytes());
        scrape.extend_from_slice(&7u32.to_be_bytes());
        scrape.extend_from_slice(&[0x5A; 40]);
        assert_eq!(
            parse_request(&scrape),
            Some(Request::Pending(Action::Scrape, 7))
        );
        scrape.push(0);
        assert_eq!(parse_request(&scrape), None);
        let reply = [0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert!(is_reply(&reply, Action::Scrape, 7));
    }
}
