//! Fuzz the PROXY protocol v1/v2 header parser: any input must parse, ask for more bytes or be
//! refused, never panic; a parsed header never claims more bytes than it was given, and
//! feeding the same bytes one at a time reaches the same answer.
//!
//! Run: `cargo fuzz run --sanitizer none proxy_protocol`
//! (Cargo.toml entry: `[[bin]] name = "proxy_protocol" path = "fuzz_targets/proxy_protocol.rs"
//! test = false doc = false bench = false`)

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::proxy_protocol::{ParseOutcome, parse_header};

fuzz_target!(|data: &[u8]| {
    let whole = parse_header(data);
    if let ParseOutcome::Header { consumed, .. } = &whole {
        assert!(*consumed <= data.len());
    }
    // Incremental feeding: the first non-Incomplete answer must equal the answer on the whole
    // input when it is a header (the bytes after a header never change it).
    for end in 0..=data.len().min(512) {
        match parse_header(&data[..end]) {
            ParseOutcome::Incomplete => continue,
            ParseOutcome::Header { .. } => {
                assert_eq!(parse_header(&data[..end]), whole);
                break;
            }
            ParseOutcome::Invalid(_) => break,
        }
    }
});
