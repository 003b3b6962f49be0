//! Any input gives an answer, never a panic: random bytes, and real captures with random bytes
//! flipped or cut (the same idea as the `capture_reader` fuzz target, run as a property test).

use proptest::prelude::*;
use swarmwall_capture::{InspectOptions, inspect};

const CAPTURES: [&[u8]; 4] = [
    include_bytes!("../../../../tests/captures/lt_socks5_peer.pcap"),
    include_bytes!("../../../../tests/captures/lt_mse_forced.pcap"),
    include_bytes!("../../../../tests/captures/lt_udp_tracker.pcap"),
    include_bytes!("../../../../tests/captures/lt_benign.pcap"),
];

fn run(bytes: &[u8]) {
    let options = InspectOptions {
        max_flows: 8,
        ..InspectOptions::default()
    };
    let _ = inspect(
        std::io::Cursor::new(bytes),
        Some(bytes.len() as u64),
        options,
        |_| {},
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        run(&bytes);
    }

    #[test]
    fn mutated_real_captures_never_panic(
        which in 0..CAPTURES.len(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..64),
        cut in any::<usize>(),
    ) {
        let mut bytes = CAPTURES[which].to_vec();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        run(&bytes);
    }
}

#[test]
fn real_captures_are_read_to_the_end() {
    for capture in CAPTURES {
        let report = inspect(
            std::io::Cursor::new(capture),
            None,
            InspectOptions::default(),
            |_| {},
        )
        .expect("a capture");
        assert!(report.stopped.is_none());
        assert!(!report.flows.is_empty());
        assert_eq!(report.stats.malformed, 0);
    }
}
