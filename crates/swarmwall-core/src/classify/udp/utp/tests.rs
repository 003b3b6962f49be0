//! Header and tracker tests on real libtorrent datagrams, sing-box's libutp vectors and
//! hand-made near misses.

use super::super::tests::{UTP_PLAIN_START, UTP_RC4_MID, UTP_RC4_START, records};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// libutp datagrams from `SagerNet/sing-box: common/sniff/bittorrent_test.go` (a 30-byte SYN
/// with the extension-bits extension, and a STATE).
const LIBUTP_SYN: &str = "410277ef0b1fb1f60000000000040000c233000000080000000000000000";
const LIBUTP_STATE: &str = "21001ecb6817f2805d044fd700100000dbd03029";

#[test]
fn libtorrent_syn_state_and_handshake() {
    let datagrams = records(UTP_PLAIN_START);
    let syn = Header::parse(datagrams[0].1).unwrap();
    assert_eq!(syn.kind, PacketType::Syn);
    assert!(syn.is_perfect_syn());
    let state = Header::parse(datagrams[1].1).unwrap();
    assert_eq!(state.kind, PacketType::State);
    assert_eq!(state.connection_id, syn.connection_id);
    assert_eq!(state.ack_nr, syn.seq_nr);
    let data = Header::parse(datagrams[2].1).unwrap();
    assert_eq!(data.connection_id, syn.connection_id.wrapping_add(1));
    assert!(data.carries_handshake(datagrams[2].1));
    // Every datagram of the captures is a valid uTP header.
    for flow in [UTP_PLAIN_START, UTP_RC4_START, UTP_RC4_MID] {
        for (_, datagram) in records(flow) {
            assert!(Header::parse(datagram).is_some(), "{datagram:02x?}");
        }
    }
}

#[test]
fn libutp_vectors() {
    let syn = Header::parse(&hex(LIBUTP_SYN)).unwrap();
    assert!(syn.is_perfect_syn());
    assert_eq!(syn.payload_offset, 30);
    assert_eq!(syn.extensions, 1 << 2);
    let state = Header::parse(&hex(LIBUTP_STATE)).unwrap();
    assert_eq!(state.kind, PacketType::State);
    assert!(!state.is_perfect_syn());
}

#[test]
fn near_misses_are_rejected() {
    let syn = hex(LIBUTP_SYN);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut edit = |name, f: &dyn Fn(&mut Vec<u8>)| {
        let mut d = syn.clone();
        f(&mut d);
        cases.push((name, d));
    };
    edit("version 0", &|d| d[0] = 0x40);
    edit("type 5", &|d| d[0] = 0x51);
    edit("unknown extension type 4", &|d| d[1] = 4);
    edit("extension runs past the end", &|d| d[21] = 9);
    edit("extension-bits length 7", &|d| {
        d[21] = 7;
        d.pop();
    });
    edit("SYN with payload", &|d| d.push(0));
    edit("SYN with tdiff", &|d| d[11] = 1);
    edit("SYN with ack_nr", &|d| d[19] = 1);
    edit("zero connection id", &|d| d[2..4].copy_from_slice(&[0, 0]));
    edit("zero timestamp", &|d| d[4..8].copy_from_slice(&[0; 4]));
    edit("too short", &|d| d.truncate(19));
    edit("endless chain", &|d| {
        d.truncate(20);
        d[1] = 1;
        for _ in 0..6 {
            d.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
        }
    });
    for (name, datagram) in cases {
        assert_eq!(Header::parse(&datagram), None, "{name}");
    }
    let mut state = hex(LIBUTP_STATE);
    state.push(0);
    assert_eq!(Header::parse(&state), None, "STATE with payload");
    let mut data = hex(LIBUTP_STATE);
    data[0] = 0x01;
    assert_eq!(Header::parse(&data), None, "DATA without payload");
}

#[test]
fn mid_flow_tracker_needs_consistent_ids() {
    let datagrams = records(UTP_RC4_MID);
    let headers: Vec<_> = datagrams
        .iter()
        .map(|(d, p)| (*d, Header::parse(p).unwrap()))
        .collect();
    let mut tracker = Tracker::default();
    assert_eq!(tracker.handle(headers[0].0, &headers[0].1), Step::Pending);
    assert!(tracker.is_candidate());
    // A packet from the same direction with another connection id does not count.
    let mut stranger = headers[0].1;
    stranger.connection_id ^= 0x5555;
    assert_eq!(tracker.handle(headers[0].0, &stranger), Step::Inconsistent);
    // A far-away sequence number does not count either.
    let mut far = headers[0].1;
    far.seq_nr = far.seq_nr.wrapping_add(0x8000);
    assert_eq!(tracker.handle(headers[0].0, &far), Step::Inconsistent);
    // A timestamp that goes backwards does not count.
    let mut older = headers[0].1;
    older.timestamp = older.timestamp.wrapping_sub(1_000_000);
    assert_eq!(tracker.handle(headers[0].0, &older), Step::Inconsistent);
    assert_eq!(tracker.handle(headers[1].0, &headers[1].1), Step::Pending);
    assert_eq!(tracker.handle(headers[2].0, &headers[2].1), Step::Decided);
}

#[test]
fn other_side_must_use_the_neighbouring_id() {
    let datagrams = records(UTP_RC4_MID);
    let (d0, p0) = datagrams[0];
    let first = Header::parse(p0).unwrap();
    let reply_direction = match d0 {
        Direction::ClientToServer => Direction::ServerToClient,
        Direction::ServerToClient => Direction::ClientToServer,
    };
    let mut reply = first;
    reply.connection_id = first.connection_id.wrapping_add(7);
    let mut tracker = Tracker::default();
    tracker.handle(d0, &first);
    assert_eq!(tracker.handle(reply_direction, &reply), Step::Inconsistent);
}
