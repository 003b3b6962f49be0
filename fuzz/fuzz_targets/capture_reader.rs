//! Fuzz the offline inspector end to end: any byte string as a pcap/pcapng file (reader, link
//! and IP decoding, TCP reassembly, SOCKS5 unwrapping, classifier), and as a single frame of
//! every supported link type. It must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_capture::{InspectOptions, decode, inspect};

fuzz_target!(|data: &[u8]| {
    let options = InspectOptions {
        max_flows: 64,
        ..InspectOptions::default()
    };
    let _ = inspect(
        std::io::Cursor::new(data),
        Some(data.len() as u64),
        options,
        |_| {},
    );
    for linktype in [0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 192, 228, 229, 276] {
        let _ = decode::decode(linktype, data);
    }
});
