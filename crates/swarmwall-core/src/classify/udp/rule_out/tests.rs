//! Rule-out tests: real benign datagrams are claimed, real BitTorrent datagrams never are.

use super::super::tests::{
    CORPUS_BENIGN, LIBTORRENT_DHT, UTP_PLAIN_MID, UTP_PLAIN_START, UTP_RC4_MID, UTP_RC4_START,
    records,
};
use super::*;

#[test]
fn corpus_first_datagrams_are_claimed() {
    for (name, flow, label) in CORPUS_BENIGN {
        let (_, first) = records(flow)[0];
        assert_eq!(benign(first), Some(*label), "{name}");
    }
}

#[test]
fn bittorrent_datagrams_are_never_claimed() {
    for flow in [
        LIBTORRENT_DHT,
        UTP_PLAIN_START,
        UTP_PLAIN_MID,
        UTP_RC4_START,
        UTP_RC4_MID,
    ] {
        for (_, datagram) in records(flow) {
            assert_eq!(benign(datagram), None, "{datagram:02x?}");
        }
    }
}

#[test]
fn dns_edge_cases() {
    // A 20-byte query for "ab." with id 0x4100: lines up with a uTP SYN except ack_nr.
    let query = [
        0x41, 0x00, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 2, b'a', b'b', 0, 0, 1, 0, 1,
    ];
    assert!(is_dns(&query));
    // QCLASS 0 (where a SYN has ack_nr 0) is not DNS.
    let mut syn_like = query;
    syn_like[19] = 0;
    assert!(!is_dns(&syn_like));
    // Trailing garbage, a forward compression pointer, an over-long label.
    let mut trailing = query.to_vec();
    trailing.push(0);
    assert!(!is_dns(&trailing));
    let forward = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 14, 0, 1, 0, 1,
    ];
    assert!(!is_dns(&forward));
    let mut long_label = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 64];
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(!is_dns(&long_label));
}

#[test]
fn stun_binding_response_is_not_utp_data() {
    // `01 01` (Binding success) is a uTP DATA + SACK prefix; the cookie decides.
    let mut response = vec![0x01, 0x01, 0x00, 0x0C, 0x21, 0x12, 0xA4, 0x42];
    response.extend_from_slice(&[7; 12]);
    response.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0x7D, 0x52, 1, 2, 3, 4]);
    assert!(is_stun(&response));
    response.push(0);
    assert!(!is_stun(&response));
}

#[test]
fn wireguard_initiation_forms() {
    let mut initiation = vec![0u8; 148];
    initiation[0] = 1;
    assert!(is_wireguard(&initiation));
    // Cloudflare-style reserved bytes that cannot start a uTP extension chain.
    initiation[1] = 0x9C;
    assert!(is_wireguard(&initiation));
    // Reserved bytes that would read as a uTP SACK: left to the uTP checks.
    initiation[1] = 1;
    assert!(!is_wireguard(&initiation));
    initiation.push(0);
    assert!(!is_wireguard(&initiation));
}

#[test]
fn ntp_symmetric_mode_does_not_swallow_utp_state() {
    // 0x21: NTP v4 symmetric active, or uTP STATE v1.
    let mut ntp = vec![0u8; 48];
    ntp[0] = 0x21;
    ntp[1] = 2; // stratum 2 = uTP extension type 2
    assert!(!is_ntp(&ntp));
    ntp[1] = 5;
    assert!(is_ntp(&ntp));
    ntp[0] = 0x23; // client mode
    ntp[1] = 0;
    assert!(is_ntp(&ntp));
}
