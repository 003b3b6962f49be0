//! Cost of classifying one TCP flow to its verdict, per opening: a real TLS ClientHello (curl,
//! and Chromium's ~2 KB post-quantum one in two segments), a plain HTTP GET with its response,
//! an HTTP tracker announce, a peer-wire handshake, and an MSE exchange (three flights).
//!
//! `cargo bench -p swarmwall-core --bench classify_tcp`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarmwall_core::bt::peer_wire::{self, Handshake};
use swarmwall_core::classify::{Direction, FlowContext, MseStrictness, TcpFlow, Verdict};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

const CURL_HELLO: &[u8] = include_bytes!("../src/classify/tcp/testdata/curl_client_hello.bin");
const CHROMIUM_HELLO: &[u8] =
    include_bytes!("../src/classify/tcp/testdata/chromium_client_hello.bin");
const LT_ANNOUNCE: &[u8] = include_bytes!("../src/classify/tcp/testdata/libtorrent_announce.bin");

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn classify(context: FlowContext, script: &[(Direction, &[u8])]) -> Verdict {
    let mut flow = TcpFlow::new(context);
    for (direction, bytes) in script {
        let verdict = flow.handle_data(*direction, black_box(bytes));
        if verdict.is_final() {
            return verdict;
        }
    }
    flow.handle_idle()
}

fn benches(c: &mut Criterion) {
    let handshake = Handshake {
        reserved: peer_wire::RESERVED_LIBTORRENT,
        info_hash: [7; 20],
        peer_id: *b"-lt2080-abcdefghijkl",
    }
    .encode();
    let get = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: 1256\r\n\r\n<!doctype html><html>";
    let (hello_a, hello_b) = CHROMIUM_HELLO.split_at(1200);
    let mse = [
        random_bytes(1, 300),
        random_bytes(2, 250),
        random_bytes(3, 124),
    ];
    // The default strictness on the two exact layouts (docs/detection.md): Transmission /
    // rTorrent (flight 3 = 124, responder's flight 4 with its handshake) and libtorrent / aria2
    // (flight 3 = 56 + PadC, 14 + PadD, the 68-byte handshake, the responder's handshake).
    let transmission = [
        random_bytes(4, 159),
        random_bytes(5, 232),
        random_bytes(6, 124),
        random_bytes(7, 355),
        random_bytes(8, 200),
    ];
    let libtorrent = [
        random_bytes(9, 416),
        random_bytes(10, 327),
        random_bytes(11, 506),
        random_bytes(12, 61),
        random_bytes(13, 68),
        random_bytes(14, 294),
    ];
    // libtorrent with its handshake in flight 3 (124 + PadC), decided when the responder's
    // sixth flight completes the first block message (sizes of testdata/libtorrent_rc4_coalesced).
    let coalesced = [
        random_bytes(15, 321),
        random_bytes(16, 476),
        random_bytes(17, 439),
        random_bytes(18, 619),
        random_bytes(19, 287),
        random_bytes(20, 13 + 16 * 1024),
    ];
    // A coalesced flight 3 answered by a Transmission 3.00 seeder's bare 82-byte handshake
    // reply, decided at the first byte of flight 6 (sizes from tests/e2e/test_mse_seeders.py).
    let bare_reply = [
        random_bytes(21, 438),
        random_bytes(22, 515),
        random_bytes(23, 575),
        random_bytes(24, 82),
        random_bytes(25, 203),
        random_bytes(26, 123),
    ];
    // A coalesced flight 3 answered by an rTorrent 0.9.8 seeder that unchokes late: the
    // keep-alive (flight 6) decides at the first byte of flight 7.
    let control_message = [
        random_bytes(27, 254),
        random_bytes(28, 224),
        random_bytes(29, 389),
        random_bytes(30, 200),
        random_bytes(31, 213),
        random_bytes(32, 4),
        random_bytes(33, 5),
    ];
    let default = FlowContext::proxy(51_413);
    let aggressive = FlowContext {
        mse_strictness: MseStrictness::Aggressive,
        ..FlowContext::proxy(51_413)
    };

    type Case<'a> = (&'a str, FlowContext, Vec<(Direction, &'a [u8])>);
    let cases: [Case<'_>; 11] = [
        ("tls_curl", FlowContext::proxy(443), vec![(C, CURL_HELLO)]),
        (
            "tls_chromium_pq_2_segments",
            FlowContext::proxy(443),
            vec![(C, hello_a), (C, hello_b)],
        ),
        (
            "http_get_and_response",
            FlowContext::proxy(80),
            vec![(C, &get[..]), (S, &response[..])],
        ),
        (
            "http_tracker_announce",
            FlowContext::proxy(80),
            vec![(C, LT_ANNOUNCE)],
        ),
        (
            "peer_wire_handshake",
            FlowContext::proxy(6881),
            vec![(C, &handshake[..])],
        ),
        (
            "mse_three_flights",
            aggressive,
            vec![(C, &mse[0][..]), (S, &mse[1][..]), (C, &mse[2][..])],
        ),
        (
            "mse_exact_transmission_layout",
            default,
            transmission
                .iter()
                .zip([C, S, C, S, C])
                .map(|(bytes, direction)| (direction, &bytes[..]))
                .collect(),
        ),
        (
            "mse_exact_libtorrent_layout",
            default,
            libtorrent
                .iter()
                .zip([C, S, C, S, C, S])
                .map(|(bytes, direction)| (direction, &bytes[..]))
                .collect(),
        ),
        (
            "mse_coalesced_libtorrent_layout",
            default,
            coalesced
                .iter()
                .zip([C, S, C, S, C, S])
                .map(|(bytes, direction)| (direction, &bytes[..]))
                .collect(),
        ),
        (
            "mse_bare_reply_transmission_seeder",
            default,
            bare_reply
                .iter()
                .zip([C, S, C, S, C, S])
                .map(|(bytes, direction)| (direction, &bytes[..]))
                .collect(),
        ),
        (
            "mse_control_message_rtorrent_seeder",
            default,
            control_message
                .iter()
                .zip([C, S, C, S, C, S, C])
                .map(|(bytes, direction)| (direction, &bytes[..]))
                .collect(),
        ),
    ];
    let mut group = c.benchmark_group("classify_tcp");
    group.throughput(Throughput::Elements(1));
    for (name, context, script) in &cases {
        assert!(classify(*context, script).is_final(), "{name}");
        group.bench_function(*name, |b| b.iter(|| classify(*context, script)));
    }
    group.finish();
}

criterion_group!(classify_tcp, benches);
criterion_main!(classify_tcp);
