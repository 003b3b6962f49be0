//! The coalesced libtorrent layout (docs/detection.md, "Rules"): flight 3 = 124 + PadC with the
//! handshake inside, decided when the responder's sixth flight carries a whole block message.

use super::*;

const LT_RC4_COALESCED: &[u8] = include_bytes!("../testdata/libtorrent_rc4_coalesced.flow");

#[test]
fn recorded_coalesced_libtorrent_flow_is_blocked_on_defaults() {
    let flow = recorded(LT_RC4_COALESCED);
    let default = with(MseStrictness::Corroborated, false);
    assert_eq!(check(default, &flow), bt(BtForm::Mse));
    assert_eq!(
        check(with(MseStrictness::Off, false), &flow),
        Verdict::GaveUp
    );
    // Decided inside flight 6, at the byte that completes the first block message: the client
    // never gets a whole block.
    let mut tcp = TcpFlow::new(default);
    let mut flight6 = 0usize;
    let mut flights = 0;
    let mut last = None;
    for (direction, bytes) in &flow {
        if last != Some(*direction) {
            flights += 1;
            last = Some(*direction);
        }
        for byte in bytes {
            let verdict = tcp.handle_data(*direction, std::slice::from_ref(byte));
            if flights == 6 {
                flight6 += 1;
            }
            if verdict.is_final() {
                assert_eq!(verdict, bt(BtForm::Mse));
                assert_eq!((flights, flight6), (6, 13 + 16 * 1024));
                return;
            }
        }
    }
    panic!("never decided");
}

#[test]
fn coalesced_layout_blocks_across_pad_sizes() {
    let default = with(MseStrictness::Corroborated, false);
    // The recording's sizes, the extreme pads, a responder whose flight 4 is only VC, select,
    // PadD and its handshake, an initiator that sends only `interested` and one request.
    let cases = [
        (
            "recorded",
            six_flight_script(1, [225, 380, 315], 619, 287, 40_000),
        ),
        ("pads 0", six_flight_script(2, [0, 0, 0], 82, 22, 16_397)),
        (
            "pads 511",
            six_flight_script(3, [511, 511, 511], 2_642, 1_024, 70_000),
        ),
    ];
    for (name, script) in cases {
        assert_eq!(check(default, &script), bt(BtForm::Mse), "{name}");
    }
}

#[test]
fn coalesced_near_misses_and_ping_pong_are_left_alone() {
    let default = with(MseStrictness::Corroborated, false);
    let cases = [
        // Flight 3 just outside 124..=636.
        ("flight 3 = 123", {
            let mut s = six_flight_script(10, [100, 100, 0], 600, 288, 40_000);
            s[2].1 = random_bytes(11, 123);
            s
        }),
        (
            "flight 3 = 637",
            six_flight_script(12, [100, 100, 513], 600, 288, 40_000),
        ),
        // Flight 4 too short for VC, select, len(PadD) and a handshake, or over its bound.
        (
            "flight 4 = 81",
            six_flight_script(13, [100, 100, 100], 81, 288, 40_000),
        ),
        (
            "flight 4 = 2643",
            six_flight_script(14, [100, 100, 100], 2_643, 288, 40_000),
        ),
        // Flight 5 shorter than `interested` + one request, or over its bound.
        (
            "flight 5 = 21",
            six_flight_script(15, [100, 100, 100], 600, 21, 40_000),
        ),
        (
            "flight 5 = 1025",
            six_flight_script(16, [100, 100, 100], 600, 1_025, 40_000),
        ),
        // Flight 6 one byte short of a block message.
        (
            "flight 6 = 16396",
            six_flight_script(17, [100, 100, 100], 600, 288, 16_396),
        ),
        // Echo ping-pong: every answer as long as the question.
        (
            "echo",
            six_flight_script(18, [300, 300, 300], 424, 2048, 2048),
        ),
    ];
    for (name, script) in cases {
        assert_eq!(check(default, &script), Verdict::GaveUp, "{name}");
    }
    // Flight 5 in clear text is not RC4 output.
    let mut text5 = six_flight_script(19, [100, 100, 100], 600, 288, 40_000);
    text5[4].1 = b"POST /api/v1/items HTTP/1.1\r\nHost: example\r\n\r\n".repeat(6);
    assert_eq!(check(default, &text5), Verdict::GaveUp, "text flight 5");
}
