//! Fuzz the tracker response parsers (`swarmwall_core::bt::tracker`, used by the monitor): HTTP
//! framing (incl. chunked), bencoded announce and scrape bodies, and BEP 15 UDP
//! connect/announce/scrape responses. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::bt::tracker;

fuzz_target!(|data: &[u8]| {
    let transaction = data
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes);
    let mut peers = 0usize;
    let mut visit = |_| peers += 1;
    if let Ok(body) = tracker::parse_http_response(data) {
        let _ = tracker::parse_announce_body(&body, &mut visit);
    }
    let _ = tracker::parse_announce_body(data, &mut visit);
    let _ = tracker::parse_scrape_body(data, &[0; 20]);
    let _ = tracker::parse_udp_connect(data, transaction);
    let _ = tracker::parse_udp_announce(data, transaction, false, &mut visit);
    let _ = tracker::parse_udp_announce(data, transaction, true, &mut visit);
    let _ = tracker::parse_udp_scrape(data, transaction);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tracker::TrackerUrl::parse(text);
    }
});
