//! The bare handshake reply (docs/detection.md, "Rules"): flight 3 = 124 + PadC with the
//! initiator's handshake inside (or 56 + PadC with an empty IA), flight 4 exactly VC,
//! crypto_select, an empty PadD and the responder's handshake (82 bytes: a Transmission 3.00
//! seeder), decided when the initiator's first messages (flight 5) are over.

use super::*;

#[test]
fn transmission_seeder_sizes_are_blocked_on_defaults() {
    // Flight sizes the proxy logged in tests/e2e/test_mse_seeders.py against a Transmission
    // 3.00 seeder (qBittorrent, aria2, libtorrent initiators), and the extremes.
    let cases = [
        (
            "qbittorrent",
            six_flight_script(1, [342, 419, 451], 82, 203, 123),
        ),
        ("aria2", six_flight_script(2, [321, 332, 212], 82, 242, 123)),
        (
            "libtorrent",
            six_flight_script(3, [414, 93, 58], 82, 218, 123),
        ),
        (
            "pads 0, one message",
            six_flight_script(4, [0, 0, 0], 82, 5, 5),
        ),
        (
            "pads 511",
            six_flight_script(5, [511, 511, 511], 82, 1_024, 2_000),
        ),
        // aria2 (empty IA) with a PadC under 68: flight 3 = 56 + 67, its handshake in flight 5.
        ("aria2, short flight 3", {
            let mut s = six_flight_script(6, [130, 369, 0], 82, 242, 123);
            s[2].1 = random_bytes(60, 123);
            s
        }),
        ("flight 3 = 56, flight 5 = 68", {
            let mut s = six_flight_script(8, [0, 0, 0], 82, 68, 123);
            s[2].1 = random_bytes(61, 56);
            s
        }),
    ];
    for (name, script) in cases {
        assert_mse_on_defaults_only(name, &script);
    }
}

#[test]
fn decided_at_the_first_byte_of_flight_six() {
    let default = with(MseStrictness::Corroborated, false);
    let script = six_flight_script(7, [342, 419, 451], 82, 203, 123);
    let mut tcp = TcpFlow::new(default);
    for (index, (direction, bytes)) in script.iter().enumerate() {
        for (offset, byte) in bytes.iter().enumerate() {
            let verdict = tcp.handle_data(*direction, std::slice::from_ref(byte));
            if verdict.is_final() {
                assert_eq!(verdict, bt(BtForm::Mse));
                assert_eq!((index, offset), (5, 0), "decided at flight 6, byte 1");
                assert_eq!(tcp.mse_rule(), Some("coalesced_bare_reply"));
                assert_eq!(tcp.flight_sizes(), &[438, 515, 575, 82, 203, 1]);
                return;
            }
        }
    }
    panic!("never decided");
}

#[test]
fn bare_reply_near_misses_are_left_alone() {
    let default = with(MseStrictness::Corroborated, false);
    let cases = [
        // Flight 4 one byte off a bare handshake reply (flight 6 no block: the coalesced rule
        // does not apply either).
        (
            "flight 4 = 81",
            six_flight_script(10, [100, 100, 100], 81, 200, 123),
        ),
        (
            "flight 4 = 83",
            six_flight_script(11, [100, 100, 100], 83, 200, 123),
        ),
        // Flight 3 outside 56..=636.
        (
            "flight 3 = 637",
            six_flight_script(12, [100, 100, 513], 82, 200, 123),
        ),
        ("flight 3 = 55", {
            let mut s = six_flight_script(13, [100, 100, 0], 82, 200, 123);
            s[2].1 = random_bytes(14, 55);
            s
        }),
        // A flight 3 without room for the handshake, and no handshake in flight 5 either.
        ("flight 3 = 123, flight 5 = 67", {
            let mut s = six_flight_script(19, [100, 100, 0], 82, 67, 123);
            s[2].1 = random_bytes(20, 123);
            s
        }),
        // Flight 5 shorter than one message, or over its bound.
        (
            "flight 5 = 4",
            six_flight_script(15, [100, 100, 100], 82, 4, 123),
        ),
        (
            "flight 5 = 1025",
            six_flight_script(16, [100, 100, 100], 82, 1_025, 123),
        ),
    ];
    for (name, script) in cases {
        assert_eq!(check(default, &script), Verdict::GaveUp, "{name}");
    }
    // Flight 5 in clear text is not RC4 output.
    let mut text5 = six_flight_script(17, [100, 100, 100], 82, 200, 123);
    text5[4].1 = b"POST /api/v1/items HTTP/1.1\r\nHost: example\r\n\r\n".repeat(4);
    assert_eq!(check(default, &text5), Verdict::GaveUp, "text flight 5");
    // Flight 4 in clear text (its first 68 bytes) is not RC4 output either.
    let mut text4 = six_flight_script(18, [100, 100, 100], 82, 200, 123);
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".repeat(2);
    reply.truncate(82);
    text4[3].1 = reply;
    assert_eq!(check(default, &text4), Verdict::GaveUp, "text flight 4");
}
