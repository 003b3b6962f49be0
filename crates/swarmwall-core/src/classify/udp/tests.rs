//! Flow-level tests of [`UdpFlow`] on real captured traffic (`testdata/`, see the scripts there)
//! and property tests.

use proptest::prelude::*;

use super::super::{Benign, BtForm, Direction, FlowContext, Mode, Verdict};
use super::UdpFlow;

/// Parse a `.flow` fixture: records of direction u8 (0 = first sender), length u16 BE, bytes.
pub(super) fn records(mut flow: &[u8]) -> Vec<(Direction, &[u8])> {
    let mut out = Vec::new();
    while let [direction, hi, lo, rest @ ..] = flow {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (payload, tail) = rest.split_at(len);
        let direction = if *direction == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        out.push((direction, payload));
        flow = tail;
    }
    assert!(flow.is_empty(), "truncated fixture");
    out
}

pub(super) const LIBTORRENT_DHT: &[u8] = include_bytes!("testdata/libtorrent_dht.flow");
pub(super) const UTP_PLAIN_START: &[u8] =
    include_bytes!("testdata/libtorrent_utp_plain_start.flow");
pub(super) const UTP_PLAIN_MID: &[u8] = include_bytes!("testdata/libtorrent_utp_plain_mid.flow");
pub(super) const UTP_RC4_START: &[u8] = include_bytes!("testdata/libtorrent_utp_rc4_start.flow");
pub(super) const UTP_RC4_MID: &[u8] = include_bytes!("testdata/libtorrent_utp_rc4_mid.flow");
const MIXED_START: &[u8] = include_bytes!("testdata/libtorrent_mixed_start.flow");
const OPENTRACKER: &[u8] = include_bytes!("testdata/opentracker_libtorrent.flow");
const GLIBC_DNS: &[u8] = include_bytes!("testdata/glibc_dns.flow");
const CORPUS_LSD: &[u8] = include_bytes!("testdata/corpus_lsd.flow");
const CORPUS_BITTORRENT_UTP: &[u8] = include_bytes!("testdata/corpus_bittorrent_utp.flow");

/// Benign captures (nDPI test corpus) and the label each must get.
pub(super) const CORPUS_BENIGN: &[(&str, &[u8], Benign)] = &[
    (
        "dns",
        include_bytes!("testdata/corpus_dns.flow"),
        Benign::Dns,
    ),
    (
        "quic v1",
        include_bytes!("testdata/corpus_quic_v1.flow"),
        Benign::Quic,
    ),
    (
        "quic v2",
        include_bytes!("testdata/corpus_quic_v2.flow"),
        Benign::Quic,
    ),
    (
        "quic draft-29",
        include_bytes!("testdata/corpus_quic_draft29.flow"),
        Benign::Quic,
    ),
    (
        "gquic Q024",
        include_bytes!("testdata/corpus_gquic_q024.flow"),
        Benign::Quic,
    ),
    (
        "gquic Q046",
        include_bytes!("testdata/corpus_quic_q46.flow"),
        Benign::Quic,
    ),
    (
        "gquic Q050",
        include_bytes!("testdata/corpus_gquic_q050.flow"),
        Benign::Quic,
    ),
    (
        "stun",
        include_bytes!("testdata/corpus_stun.flow"),
        Benign::Stun,
    ),
    (
        "stun classic",
        include_bytes!("testdata/corpus_stun_classic.flow"),
        Benign::Stun,
    ),
    (
        "dtls",
        include_bytes!("testdata/corpus_dtls.flow"),
        Benign::Dtls,
    ),
    (
        "wireguard",
        include_bytes!("testdata/corpus_wireguard.flow"),
        Benign::WireGuard,
    ),
    (
        "openvpn",
        include_bytes!("testdata/corpus_openvpn.flow"),
        Benign::OpenVpn,
    ),
    (
        "ntp v4",
        include_bytes!("testdata/corpus_ntp_v4.flow"),
        Benign::Ntp,
    ),
    (
        "ntp v3",
        include_bytes!("testdata/corpus_ntp_v3.flow"),
        Benign::Ntp,
    ),
    (
        "rtp",
        include_bytes!("testdata/corpus_rtp.flow"),
        Benign::Rtp,
    ),
    (
        "ssdp",
        include_bytes!("testdata/corpus_ssdp.flow"),
        Benign::Ssdp,
    ),
];

/// Feed `datagrams` to a fresh flow; returns the verdict after each one.
fn run(mode: Mode, datagrams: &[(Direction, &[u8])]) -> Vec<Verdict> {
    let context = match mode {
        Mode::Proxy => FlowContext::proxy(6881),
        Mode::Offline => FlowContext::offline(6881),
    };
    let mut flow = UdpFlow::new(context);
    datagrams
        .iter()
        .map(|(direction, payload)| flow.handle_datagram(*direction, payload))
        .collect()
}

/// Index of the first datagram after which the verdict is final.
fn decided_at(verdicts: &[Verdict]) -> Option<usize> {
    verdicts.iter().position(|v| v.is_final())
}

const BOTH_MODES: [Mode; 2] = [Mode::Proxy, Mode::Offline];

#[test]
fn every_libtorrent_dht_datagram_is_decisive_alone() {
    let datagrams = records(LIBTORRENT_DHT);
    assert!(datagrams.len() > 40);
    for (direction, payload) in datagrams {
        let verdicts = run(Mode::Proxy, &[(direction, payload)]);
        assert_eq!(
            verdicts,
            [Verdict::BitTorrent(BtForm::Dht)],
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn libtorrent_utp_syn_is_decisive_at_once() {
    for flow in [UTP_PLAIN_START, UTP_RC4_START] {
        let verdicts = run(Mode::Proxy, &records(flow));
        assert_eq!(verdicts[0], Verdict::BitTorrent(BtForm::Utp));
        assert!(verdicts.iter().all(|v| *v == verdicts[0]), "sticky");
    }
}

#[test]
fn utp_data_with_the_handshake_is_decisive_alone() {
    // Plain (no MSE) libtorrent: the initiator's first DATA carries the 68-byte handshake.
    let datagrams = records(UTP_PLAIN_START);
    let (direction, data) = datagrams[2];
    assert_eq!(data.len(), 20 + 68);
    assert_eq!(
        run(Mode::Proxy, &[(direction, data)]),
        [Verdict::BitTorrent(BtForm::Utp)]
    );
}

#[test]
fn utp_without_syn_decides_by_the_mid_flow_rule() {
    // The connection start minus the SYN (association opened after it), and slices from the
    // middle of the transfer, plaintext and RC4 (MSE inside uTP).
    for mode in BOTH_MODES {
        for (name, flow, skip) in [
            ("rc4 start", UTP_RC4_START, 1),
            ("plain mid", UTP_PLAIN_MID, 0),
            ("rc4 mid", UTP_RC4_MID, 0),
        ] {
            let datagrams = &records(flow)[skip..];
            let verdicts = run(mode, datagrams);
            assert_eq!(
                decided_at(&verdicts),
                Some(2),
                "{name} {mode:?}: {verdicts:?}"
            );
            assert_eq!(verdicts[2], Verdict::BitTorrent(BtForm::Utp));
            // One direction only (the other side's datagrams lost or not relayed).
            let sender = datagrams[0].0;
            let one_way: Vec<_> = datagrams
                .iter()
                .copied()
                .filter(|(d, _)| *d == sender)
                .collect();
            let verdicts = run(mode, &one_way);
            assert_eq!(
                verdicts.get(2),
                Some(&Verdict::BitTorrent(BtForm::Utp)),
                "{name} one way"
            );
        }
    }
}

#[test]
fn imperfect_syn_waits_for_the_matching_state() {
    let datagrams = records(UTP_RC4_START);
    let (syn_direction, syn) = datagrams[0];
    let (state_direction, state) = datagrams[1];
    // The real SYN with a (pointless) selective ACK extension appended.
    let mut odd_syn = syn.to_vec();
    odd_syn[1] = 1;
    odd_syn.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
    let verdicts = run(
        Mode::Proxy,
        &[(syn_direction, &odd_syn), (state_direction, state)],
    );
    assert_eq!(
        verdicts,
        [Verdict::NeedMore, Verdict::BitTorrent(BtForm::Utp)]
    );
    // A STATE acknowledging another sequence number does not confirm it.
    let mut wrong_ack = state.to_vec();
    wrong_ack[19] ^= 0x80;
    let verdicts = run(
        Mode::Proxy,
        &[(syn_direction, &odd_syn), (state_direction, &wrong_ack)],
    );
    assert_eq!(verdicts, [Verdict::NeedMore, Verdict::NeedMore]);
}

#[test]
fn dht_and_utp_on_one_endpoint() {
    // libtorrent sends DHT and uTP from one socket: the 5-tuple starts with DHT.
    let verdicts = run(Mode::Offline, &records(MIXED_START));
    assert_eq!(verdicts[0], Verdict::BitTorrent(BtForm::Dht));
    assert!(verdicts.iter().all(|v| *v == verdicts[0]));
    // uTP first, DHT later: still BitTorrent (uTP decided first, and it sticks).
    let utp = records(UTP_RC4_MID);
    let dht = records(LIBTORRENT_DHT);
    let verdicts = run(Mode::Proxy, &[utp[0], dht[0]]);
    assert_eq!(
        verdicts,
        [Verdict::NeedMore, Verdict::BitTorrent(BtForm::Dht)]
    );
}

#[test]
fn opentracker_exchange() {
    let datagrams = records(OPENTRACKER);
    // Connect request: decisive at once.
    assert_eq!(
        run(Mode::Proxy, &datagrams)[0],
        Verdict::BitTorrent(BtForm::UdpTracker)
    );
    // An association that skips connect: announce (candidate), then the paired reply.
    let announce = datagrams
        .iter()
        .position(|(d, p)| *d == Direction::ClientToServer && p.len() >= 98)
        .unwrap();
    let reply = datagrams
        .iter()
        .position(|(d, p)| *d == Direction::ServerToClient && p.starts_with(&[0, 0, 0, 1]))
        .unwrap();
    assert_eq!(
        run(Mode::Proxy, &[datagrams[announce], datagrams[reply]]),
        [Verdict::NeedMore, Verdict::BitTorrent(BtForm::UdpTracker)]
    );
    // The same reply from the client side does not pair.
    let (_, reply_bytes) = datagrams[reply];
    assert_eq!(
        run(
            Mode::Proxy,
            &[
                datagrams[announce],
                (Direction::ClientToServer, reply_bytes)
            ]
        ),
        [Verdict::NeedMore, Verdict::NeedMore]
    );
}

#[test]
fn corpus_lsd_and_bittorrent_utp() {
    assert_eq!(
        run(Mode::Offline, &records(CORPUS_LSD)),
        [Verdict::BitTorrent(BtForm::Lsd)]
    );
    let verdicts = run(Mode::Offline, &records(CORPUS_BITTORRENT_UTP));
    assert!(verdicts[0].bittorrent_form().is_some(), "{verdicts:?}");
}

#[test]
fn corpus_benign_flows_get_their_label() {
    for mode in BOTH_MODES {
        for (name, flow, label) in CORPUS_BENIGN {
            let verdicts = run(mode, &records(flow));
            assert_eq!(verdicts[0], Verdict::Benign(*label), "{name}");
            assert!(verdicts.iter().all(|v| *v == verdicts[0]), "{name}");
        }
    }
}

#[test]
fn glibc_dns_queries_and_the_0x4100_collision() {
    for (direction, query) in records(GLIBC_DNS) {
        assert_eq!(
            run(Mode::Proxy, &[(direction, query)]),
            [Verdict::Benign(Benign::Dns)]
        );
        // The same real query had the resolver picked id 0x4100.
        let mut collision = query.to_vec();
        collision[..2].copy_from_slice(&[0x41, 0x00]);
        assert_eq!(
            run(Mode::Proxy, &[(direction, &collision)]),
            [Verdict::Benign(Benign::Dns)]
        );
        assert_eq!(super::utp::Header::parse(&collision), None);
    }
    // glibc's query for "ab." is exactly 20 bytes: the uTP-SYN-sized case of Xray PR #6715.
    assert!(records(GLIBC_DNS).iter().any(|(_, q)| q.len() == 20));
}

#[test]
fn unknown_traffic_gives_up_and_stays_given_up() {
    let noise: [&[u8]; 5] = [
        b"\xde\xad\xbe\xef",
        b"hello",
        b"\x07\x07\x07",
        b"xyz",
        b"\x41",
    ];
    let mut flow = UdpFlow::new(FlowContext::proxy(9999));
    let verdicts: Vec<_> = noise
        .iter()
        .map(|p| flow.handle_datagram(Direction::ClientToServer, p))
        .collect();
    assert_eq!(verdicts[2], Verdict::NeedMore);
    assert_eq!(verdicts[3], Verdict::GaveUp);
    // Even a DHT datagram does not change a final verdict.
    let dht = records(LIBTORRENT_DHT)[0].1;
    assert_eq!(
        flow.handle_datagram(Direction::ClientToServer, dht),
        Verdict::GaveUp
    );
    assert_eq!(flow.datagrams_examined(), 4);
}

#[test]
fn a_candidate_that_is_never_confirmed_gives_up_at_the_total_budget() {
    // An announce shape retransmitted without a reply (e.g. the tracker is blocked).
    let datagrams = records(OPENTRACKER);
    let announce = datagrams.iter().find(|(_, p)| p.len() >= 98).unwrap().1;
    let mut flow = UdpFlow::new(FlowContext::proxy(451));
    for n in 1..=super::TOTAL_BUDGET {
        let verdict = flow.handle_datagram(Direction::ClientToServer, announce);
        let expected = if n < super::TOTAL_BUDGET {
            Verdict::NeedMore
        } else {
            Verdict::GaveUp
        };
        assert_eq!(verdict, expected, "datagram {n}");
    }
}

#[test]
fn flow_state_stays_small() {
    let size = size_of::<UdpFlow>();
    eprintln!("UdpFlow is {size} bytes");
    assert!(size <= 64, "{size}");
}

/// A DNS query as a stub resolver builds it: random labels, a real QTYPE and QCLASS, maybe an
/// EDNS OPT record.
fn dns_query(id: u16) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(proptest::collection::vec(b'a'..=b'z', 1..20), 1..4),
        prop_oneof![
            Just(1u16),
            Just(28),
            Just(15),
            Just(16),
            Just(33),
            Just(65),
            Just(255)
        ],
        prop_oneof![Just(1u16), Just(3), Just(255)],
        any::<bool>(),
    )
        .prop_map(move |(rd, labels, qtype, qclass, edns)| {
            let mut q = id.to_be_bytes().to_vec();
            q.extend_from_slice(&[if rd { 0x01 } else { 0x00 }, 0x00, 0, 1, 0, 0, 0, 0, 0]);
            q.push(u8::from(edns));
            for label in labels {
                q.push(label.len() as u8);
                q.extend_from_slice(&label);
            }
            q.push(0);
            q.extend_from_slice(&qtype.to_be_bytes());
            q.extend_from_slice(&qclass.to_be_bytes());
            if edns {
                q.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
            }
            q
        })
}

/// A structurally perfect uTP SYN (libtorrent's layout, optionally libutp's extension bits).
fn perfect_syn() -> impl Strategy<Value = Vec<u8>> {
    (1u16.., 1u32.., any::<u32>(), any::<u16>(), any::<bool>()).prop_map(
        |(id, ts, wnd, seq, ext_bits)| {
            let mut syn = vec![0x41, if ext_bits { 2 } else { 0 }];
            syn.extend_from_slice(&id.to_be_bytes());
            syn.extend_from_slice(&ts.to_be_bytes());
            syn.extend_from_slice(&[0; 4]);
            syn.extend_from_slice(&wnd.to_be_bytes());
            syn.extend_from_slice(&seq.to_be_bytes());
            syn.extend_from_slice(&[0, 0]);
            if ext_bits {
                syn.extend_from_slice(&[0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            syn
        },
    )
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::ClientToServer),
        Just(Direction::ServerToClient)
    ]
}

proptest! {
    #[test]
    fn never_panics_and_verdicts_stick(
        datagrams in proptest::collection::vec(
            (direction(), proptest::collection::vec(any::<u8>(), 0..200)), 1..24),
        offline in any::<bool>(),
    ) {
        let context = if offline { FlowContext::offline(1) } else { FlowContext::proxy(1) };
        let mut flow = UdpFlow::new(context);
        let mut final_verdict = None;
        for (direction, payload) in &datagrams {
            let verdict = flow.handle_datagram(*direction, payload);
            prop_assert_eq!(verdict, flow.verdict());
            if let Some(previous) = final_verdict {
                prop_assert_eq!(verdict, previous);
            } else if verdict.is_final() {
                final_verdict = Some(verdict);
            }
        }
        prop_assert!(flow.datagrams_examined() <= super::TOTAL_BUDGET);
    }

    #[test]
    fn utp_shaped_noise_never_panics(
        head in prop_oneof![Just(0x01u8), Just(0x11), Just(0x21), Just(0x31), Just(0x41)],
        ext in 0u8..5,
        rest in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut datagram = vec![head, ext];
        datagram.extend_from_slice(&rest);
        let mut flow = UdpFlow::new(FlowContext::proxy(1));
        let _ = flow.handle_datagram(Direction::ClientToServer, &datagram);
        let _ = flow.handle_datagram(Direction::ServerToClient, &datagram);
    }

    #[test]
    fn dns_query_with_id_0x4100_is_never_utp(query in dns_query(0x4100)) {
        let mut flow = UdpFlow::new(FlowContext::proxy(53));
        prop_assert_eq!(
            flow.handle_datagram(Direction::ClientToServer, &query),
            Verdict::Benign(Benign::Dns)
        );
        prop_assert!(super::utp::Header::parse(&query).is_none_or(|h| !h.is_perfect_syn()));
    }

    #[test]
    fn perfect_syn_is_utp_and_never_dns(syn in perfect_syn()) {
        prop_assert!(!super::rule_out::is_dns(&syn));
        let mut flow = UdpFlow::new(FlowContext::proxy(6881));
        prop_assert_eq!(
            flow.handle_datagram(Direction::ClientToServer, &syn),
            Verdict::BitTorrent(BtForm::Utp)
        );
    }
}
