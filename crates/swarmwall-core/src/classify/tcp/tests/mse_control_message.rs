//! The late control message (docs/detection.md, "Rules"): flights 3 to 5 of the coalesced
//! layout (124 + PadC with the initiator's handshake inside, the responder's handshake and
//! first messages, the initiator's first messages), then, in flights 6 to 8, a flight that is
//! one lone keep-alive, state message or have: a seeder that unchokes late (rTorrent).

use super::*;

/// An MSE exchange with the given flight sizes, alternating from the client, random bytes.
fn flights_script(seed: u64, sizes: &[usize]) -> Vec<(Direction, Vec<u8>)> {
    sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let direction = if index % 2 == 0 { C } else { S };
            (direction, random_bytes(seed + index as u64, size))
        })
        .collect()
}

/// The flight sizes the proxy saw in the escape from test_mse_seeders.py (libtorrent over a
/// 20 ms round trip, an rTorrent 0.9.8 seeder, the handshake coalesced into flight 3), with
/// what followed on the seeder's side in the split runs of the same cell: keep-alive,
/// interested, unchoke, four requests, two blocks.
const RTORRENT_LATE_UNCHOKE: [usize; 10] = [254, 224, 389, 200, 213, 4, 5, 5, 68, 32_794];

#[test]
fn late_unchoking_seeder_is_blocked_on_defaults() {
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("rTorrent seeder", RTORRENT_LATE_UNCHOKE.to_vec()),
        (
            "unchoke as flight 6",
            vec![254, 224, 389, 200, 213, 5, 17, 16_397],
        ),
        (
            "have as flight 6",
            vec![300, 300, 400, 300, 300, 9, 200, 16_397],
        ),
        // Flight 6 is more than one message; the initiator's `interested` alone is flight 7.
        (
            "interested as flight 7",
            vec![96, 96, 130, 150, 5, 300, 5, 5, 17],
        ),
        // The unchoke comes in flight 8, after more first messages each way.
        (
            "unchoke as flight 8",
            vec![608, 608, 636, 2_642, 1_024, 1_024, 1_024, 5, 85],
        ),
        // The flow ends (or the inspection deadline passes) right after the unchoke.
        ("unchoke, then nothing", vec![254, 224, 389, 200, 213, 4]),
    ];
    for (name, sizes) in cases {
        assert_mse_on_defaults_only(name, &flights_script(1, &sizes));
    }
}

#[test]
fn decided_when_the_control_message_is_over_before_any_piece() {
    let default = with(MseStrictness::Corroborated, false);
    for (sizes, decided_at) in [
        (RTORRENT_LATE_UNCHOKE.to_vec(), 6),
        (vec![96, 96, 130, 150, 5, 300, 5, 5, 17, 16_397], 7),
        (vec![254, 224, 389, 200, 213, 120, 17, 5, 85, 32_794], 8),
    ] {
        let script = flights_script(2, &sizes);
        let mut tcp = TcpFlow::new(default);
        let decision = script
            .iter()
            .enumerate()
            .find_map(|(index, (direction, bytes))| {
                bytes.iter().enumerate().find_map(|(offset, byte)| {
                    let verdict = tcp.handle_data(*direction, std::slice::from_ref(byte));
                    verdict.is_final().then_some((index, offset, verdict))
                })
            });
        // At the first byte of the flight after the control message, which the proxy holds.
        assert_eq!(
            decision,
            Some((decided_at, 0, bt(BtForm::Mse))),
            "{sizes:?}"
        );
        assert_eq!(tcp.mse_rule(), Some("coalesced_control_message"));
        let sizes_u32: Vec<u32> = sizes.iter().map(|&n| n as u32).collect();
        assert_eq!(tcp.flight_sizes(), &sizes_u32[..decided_at]);
    }
}

#[test]
fn control_message_near_misses_are_left_alone() {
    let default = with(MseStrictness::Corroborated, false);
    let cases: Vec<(&str, Vec<usize>)> = vec![
        // No flight of 4, 5 or 9 bytes in flights 6 to 8.
        (
            "sizes 6, 17, 13",
            vec![254, 224, 389, 200, 213, 6, 17, 13, 4],
        ),
        ("sizes 3, 8, 10", vec![254, 224, 389, 200, 213, 3, 8, 10, 5]),
        // The control message only in flight 9: past the window.
        (
            "flight 9",
            vec![254, 224, 389, 200, 213, 100, 100, 100, 5, 16_397],
        ),
        // A flight over 1 KiB before it: bulk data, not first messages.
        (
            "flight 6 = 1025",
            vec![254, 224, 389, 200, 213, 1_025, 5, 5],
        ),
        (
            "flight 7 = 1025",
            vec![254, 224, 389, 200, 213, 100, 1_025, 5],
        ),
        // Flights 3 to 5 outside the coalesced layout.
        ("flight 3 = 123", vec![254, 224, 123, 200, 213, 4, 5, 5]),
        ("flight 3 = 637", vec![254, 224, 637, 200, 213, 4, 5, 5]),
        ("flight 4 = 81", vec![254, 224, 389, 81, 213, 4, 5, 5]),
        ("flight 4 = 2643", vec![254, 224, 389, 2_643, 213, 4, 5, 5]),
        ("flight 5 = 4", vec![254, 224, 389, 200, 4, 4, 5, 5]),
        ("flight 5 = 1025", vec![254, 224, 389, 200, 1_025, 4, 5, 5]),
        // Flights 1 and 2 not a key exchange.
        ("flight 1 = 95", vec![95, 224, 389, 200, 213, 4, 5, 5]),
    ];
    for (name, sizes) in cases {
        assert_eq!(
            check(default, &flights_script(3, &sizes)),
            Verdict::GaveUp,
            "{name}"
        );
    }
    // Flight 5 in clear text is not RC4 output.
    let mut text5 = flights_script(4, &RTORRENT_LATE_UNCHOKE);
    text5[4].1 = b"POST /api/v1/items HTTP/1.1\r\nHost: example\r\n\r\n".repeat(4);
    assert_eq!(check(default, &text5), Verdict::GaveUp, "text flight 5");
}
