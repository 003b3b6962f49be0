//! Per-datagram cost of the UDP classifier on real datagrams: ns for a fresh flow's first
//! datagram (the worst case: every check up to the verdict), and for a datagram on a flow
//! that already has a verdict (the sticky fast path).
//!
//! Run: `cargo bench -p swarmwall-core --bench classify_udp`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarmwall_core::classify::{Direction, FlowContext, UdpFlow};

/// First datagram of a `.flow` fixture (direction u8, length u16 BE, bytes).
fn first(flow: &'static [u8]) -> &'static [u8] {
    let len = usize::from(u16::from_be_bytes([flow[1], flow[2]]));
    &flow[3..3 + len]
}

fn bench(c: &mut Criterion) {
    let cases: [(&str, &[u8]); 6] = [
        (
            "dht_get_peers",
            first(include_bytes!(
                "../src/classify/udp/testdata/libtorrent_dht.flow"
            )),
        ),
        (
            "utp_syn",
            first(include_bytes!(
                "../src/classify/udp/testdata/libtorrent_utp_plain_start.flow"
            )),
        ),
        (
            "utp_data_mid_flow",
            first(include_bytes!(
                "../src/classify/udp/testdata/libtorrent_utp_rc4_mid.flow"
            )),
        ),
        (
            "quic_v1_initial",
            first(include_bytes!(
                "../src/classify/udp/testdata/corpus_quic_v1.flow"
            )),
        ),
        (
            "dns_query",
            first(include_bytes!(
                "../src/classify/udp/testdata/glibc_dns.flow"
            )),
        ),
        (
            "udp_tracker_connect",
            first(include_bytes!(
                "../src/classify/udp/testdata/opentracker_libtorrent.flow"
            )),
        ),
    ];
    let mut group = c.benchmark_group("udp_first_datagram");
    for (name, datagram) in cases {
        group.throughput(Throughput::Bytes(datagram.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut flow = UdpFlow::new(FlowContext::proxy(6881));
                black_box(flow.handle_datagram(Direction::ClientToServer, black_box(datagram)))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("udp_after_verdict");
    let (name, datagram) = cases[3];
    let mut flow = UdpFlow::new(FlowContext::proxy(443));
    flow.handle_datagram(Direction::ClientToServer, datagram);
    group.bench_function(name, |b| {
        b.iter(|| black_box(flow.handle_datagram(Direction::ServerToClient, black_box(datagram))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
