//! The session's one clock (`relay::run`): it rings at the inspect deadline and at the idle
//! deadline. Here: the inspect deadline ends the inspect phase of a silent session, so what it
//! sends afterwards goes the fast path, while the same bytes inside the deadline are blocked.

use std::io::{Read, Write};
use std::time::Duration;

use crate::harness::socks5::*;

/// A BitTorrent peer-wire handshake (68 bytes).
fn peer_wire_handshake() -> Vec<u8> {
    let mut handshake = b"\x13BitTorrent protocol".to_vec();
    handshake.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    handshake.extend_from_slice(&[0xab; 20]);
    handshake.extend_from_slice(b"-lt2080-abcdefghijkl");
    handshake
}

#[test]
fn the_inspect_deadline_ends_inspection_of_a_silent_session() {
    let echo = echo_server("127.0.0.1:0");
    let proxy = Proxy::with_config("[server]\ninspect_timeout = \"300ms\"\n", &[]);
    let handshake = peer_wire_handshake();

    // Opened first, silent past the deadline (its clock must ring while the other session is
    // being blocked).
    let (code, mut late) = socks_connect(proxy.address, echo);
    assert_eq!(code, 0);
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Inside the deadline: the handshake is inspected and blocked, nothing comes back.
    let (code, mut early) = socks_connect(proxy.address, echo);
    assert_eq!(code, 0);
    early
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    early.write_all(&handshake).unwrap();
    assert!(
        closed_by_peer(&mut early),
        "a handshake inside the inspect deadline must be blocked"
    );

    // Past the deadline: the session is on the fast path, the same bytes are relayed.
    std::thread::sleep(Duration::from_millis(900));
    late.write_all(&handshake).unwrap();
    let mut echoed = vec![0u8; handshake.len()];
    late.read_exact(&mut echoed)
        .expect("past the inspect deadline the session relays (the clock ended inspection)");
    assert_eq!(echoed, handshake);
}
