//! Flow-table tests on packets built in memory (raw IP link type).

use std::net::{Ipv4Addr, SocketAddr};

use etherparse::PacketBuilder;

use super::*;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const PROXY: [u8; 4] = [10, 0, 0, 9];

struct Packets {
    inspector: Inspector,
}

impl Packets {
    fn new(options: InspectOptions) -> Self {
        Self {
            inspector: Inspector::new(options),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let record = PacketRecord {
            number: 0,
            linktype: 101,
            data: bytes,
            wire_len: u32::try_from(bytes.len()).unwrap_or(0),
            timestamp: Duration::ZERO,
        };
        self.inspector.handle_packet(&record);
    }

    fn tcp(
        &mut self,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        seq: u32,
        (syn, ack): (bool, bool),
        payload: &[u8],
    ) {
        let mut builder = PacketBuilder::ipv4(src.0, dst.0, 64).tcp(src.1, dst.1, seq, 65535);
        if syn {
            builder = builder.syn();
        }
        if ack {
            builder = builder.ack(1);
        }
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        self.push(&out);
    }

    fn udp(&mut self, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src.0, dst.0, 64)
            .udp(src.1, dst.1)
            .write(&mut out, payload)
            .unwrap();
        self.push(&out);
    }

    fn finish(self) -> Vec<FlowRecord> {
        self.inspector.finish().0
    }
}

const SYN: (bool, bool) = (true, false);
const SYN_ACK: (bool, bool) = (true, true);
const ACK: (bool, bool) = (false, true);

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(ip), port))
}

#[test]
fn initiator_is_the_syn_sender_even_when_the_syn_ack_comes_first() {
    let mut p = Packets::new(InspectOptions::default());
    // SYN-ACK first (capture started between SYN and SYN-ACK): its receiver initiated.
    p.tcp(([10, 0, 0, 2], 6881), (CLIENT, 50000), 7000, SYN_ACK, b"");
    p.tcp((CLIENT, 50000), ([10, 0, 0, 2], 6881), 1001, ACK, b"hello");
    let flows = p.finish();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].initiator, addr(CLIENT, 50000));
    assert_eq!(flows[0].responder, addr([10, 0, 0, 2], 6881));
    assert_eq!(flows[0].packets, 2);
    assert_eq!(flows[0].l4, L4::Tcp);
}

#[test]
fn without_a_handshake_the_well_known_port_is_the_server() {
    let mut p = Packets::new(InspectOptions::default());
    p.tcp(
        ([10, 0, 0, 2], 443),
        (CLIENT, 50000),
        1,
        ACK,
        b"\x17\x03\x03",
    );
    p.udp(([10, 0, 0, 3], 53), (CLIENT, 40000), b"reply");
    // Both ports high: the first sender initiates.
    p.udp((CLIENT, 40001), ([10, 0, 0, 4], 6881), b"d1:ad2:id20:");
    let flows = p.finish();
    assert_eq!(flows.len(), 3);
    assert_eq!(flows[0].responder, addr([10, 0, 0, 2], 443));
    assert_eq!(flows[1].responder, addr([10, 0, 0, 3], 53));
    assert_eq!(flows[2].initiator, addr(CLIENT, 40001));
}

#[test]
fn a_new_syn_after_close_starts_a_new_flow() {
    let mut p = Packets::new(InspectOptions::default());
    let server = ([10, 0, 0, 2], 80);
    p.tcp((CLIENT, 50000), server, 1, SYN, b"");
    let mut rst = Vec::new();
    PacketBuilder::ipv4(server.0, CLIENT, 64)
        .tcp(80, 50000, 1, 0)
        .rst()
        .write(&mut rst, b"")
        .unwrap();
    p.push(&rst);
    p.tcp((CLIENT, 50000), server, 99, SYN, b"");
    assert_eq!(p.finish().len(), 2);
}

#[test]
fn the_flow_table_is_bounded_and_evicted_flows_are_still_reported() {
    let mut p = Packets::new(InspectOptions {
        max_flows: 4,
        ..InspectOptions::default()
    });
    for port in 0..40u16 {
        p.udp((CLIENT, 10_000 + port), ([10, 0, 0, 2], 9999), b"x");
        assert!(p.inspector.flows.len() <= 4);
    }
    let evicted = p.inspector.stats().evicted_flows;
    let flows = p.finish();
    assert_eq!(flows.len(), 40);
    assert!(evicted >= 36);
    // Creation order is kept across evictions.
    assert!(flows.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn socks5_udp_associate_marks_the_relay_and_unwraps_its_datagrams() {
    let mut p = Packets::new(InspectOptions::default());
    let socks = (PROXY, 1080);
    let me = (CLIENT, 50000);
    p.tcp(me, socks, 100, SYN, b"");
    p.tcp(socks, me, 500, SYN_ACK, b"");
    p.tcp(me, socks, 101, ACK, b"\x05\x01\x00");
    p.tcp(socks, me, 501, ACK, b"\x05\x00");
    // UDP ASSOCIATE 0.0.0.0:0; reply: relay at 0.0.0.0:40000 (= the proxy's address).
    p.tcp(
        me,
        socks,
        104,
        ACK,
        b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00",
    );
    p.tcp(
        socks,
        me,
        503,
        ACK,
        b"\x05\x00\x00\x01\x00\x00\x00\x00\x9c\x40",
    );
    let mut datagram = b"\x00\x00\x00\x01\x0a\x00\x00\x07\x1a\xe1".to_vec();
    datagram.extend_from_slice(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe");
    p.udp((CLIENT, 50001), (PROXY, 40000), &datagram);
    let flows = p.finish();
    assert_eq!(flows.len(), 2);
    let tcp = &flows[0];
    assert!(tcp.socks5);
    assert_eq!(tcp.label(), "socks5");
    let udp = &flows[1];
    assert!(udp.socks5, "datagrams on the relay are unwrapped");
    assert_eq!(udp.initiator, addr(CLIENT, 50001));
    assert!(udp.label().starts_with("socks5.") || udp.verdict.bittorrent_form().is_some());
}

#[test]
fn socks5_connect_is_skipped_and_a_plain_flow_is_not_mistaken_for_it() {
    let mut p = Packets::new(InspectOptions::default());
    let socks = (PROXY, 1080);
    let me = (CLIENT, 50002);
    p.tcp(me, socks, 100, SYN, b"");
    p.tcp(socks, me, 500, SYN_ACK, b"");
    p.tcp(me, socks, 101, ACK, b"\x05\x01\x00");
    p.tcp(socks, me, 501, ACK, b"\x05\x00");
    p.tcp(
        me,
        socks,
        104,
        ACK,
        b"\x05\x01\x00\x01\x0a\x00\x00\x07\x1a\xe1",
    );
    p.tcp(
        socks,
        me,
        503,
        ACK,
        b"\x05\x00\x00\x01\x0a\x00\x00\x09\x9c\x41",
    );
    p.tcp(me, socks, 114, ACK, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    // A plain HTTP flow.
    p.tcp(
        (CLIENT, 50003),
        ([10, 0, 0, 8], 80),
        1,
        ACK,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    let flows = p.finish();
    assert!(flows[0].socks5);
    assert!(
        flows[0].label().starts_with("socks5."),
        "{}",
        flows[0].label()
    );
    assert!(!flows[1].socks5);
}

#[test]
fn out_of_order_segments_are_reassembled_before_classification() {
    // The SOCKS5 detector sees the whole greeting only when reassembly puts it back in order.
    let mut p = Packets::new(InspectOptions::default());
    let socks = (PROXY, 1080);
    let me = (CLIENT, 50004);
    p.tcp(me, socks, 100, SYN, b"");
    p.tcp(me, socks, 103, ACK, b"\x00");
    p.tcp(me, socks, 101, ACK, b"\x05\x01");
    p.tcp(me, socks, 101, ACK, b"\x05\x01"); // retransmission
    p.tcp(socks, me, 500, SYN_ACK, b"");
    p.tcp(socks, me, 501, ACK, b"\x05\xff");
    let flows = p.finish();
    assert_eq!(flows[0].label(), "socks5");
}
