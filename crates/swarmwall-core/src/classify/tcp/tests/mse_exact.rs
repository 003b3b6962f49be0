//! The MSE exact-size rule (docs/detection.md, "Rules"): each implementation's layout blocks on
//! the default strictness, near misses do not, and mid-flow corroboration (fan-out) does.

use super::*;

/// The flights one implementation writes (sizes from docs/detection.md, "MSE/PE"): `pad_c`
/// `None` means the handshake rides in flight 3 as IA (Transmission, rTorrent); `Some(n)`
/// means an empty IA with PadC = n and the handshake alone in flight 5 (libtorrent 2.0,
/// aria2). The responder's flight 4 is VC, crypto_select, len(PadD), PadD and `extra4` bytes.
fn implementation_script(
    seed: u64,
    pad_a: usize,
    pad_b: usize,
    pad_c: Option<usize>,
    pad_d: usize,
    extra4: usize,
) -> Vec<(Direction, Vec<u8>)> {
    let flight3 = match pad_c {
        None => 124,
        Some(pad) => 56 + pad,
    };
    let mut script = vec![
        (C, random_bytes(seed, 96 + pad_a)),
        (S, random_bytes(seed + 1, 96 + pad_b)),
        (C, random_bytes(seed + 2, flight3)),
        (S, random_bytes(seed + 3, 14 + pad_d + extra4)),
    ];
    if pad_c.is_some() {
        script.push((C, random_bytes(seed + 4, 68)));
    }
    // The responder's handshake / bitfield / extension handshake, then the initiator's.
    script.push((S, random_bytes(seed + 5, 300)));
    script.push((C, random_bytes(seed + 6, 280)));
    script
}

#[test]
fn mse_exact_sizes_of_each_implementation_block_on_defaults() {
    let cases = [
        // Sizes the issue recorded: qBittorrent 416/327/506/61/68, Transmission 159/232/124/
        // 355, aria2 348/506/283/452, rTorrent 510/553/124/123.
        (
            "qBittorrent",
            implementation_script(10, 320, 231, Some(450), 47, 0),
        ),
        (
            "Transmission",
            implementation_script(20, 63, 136, None, 0, 341),
        ),
        (
            "aria2",
            implementation_script(30, 252, 410, Some(227), 370, 0),
        ),
        (
            "rTorrent",
            implementation_script(40, 414, 457, None, 0, 109),
        ),
        // Extremes of the pads.
        ("pads 0", implementation_script(50, 0, 0, Some(0), 0, 0)),
        (
            "pads 512",
            implementation_script(60, 512, 512, Some(512), 512, 0),
        ),
        ("IA, pads 0", implementation_script(70, 0, 0, None, 0, 68)),
        (
            "IA, PadD 512",
            implementation_script(80, 512, 512, None, 512, 68),
        ),
    ];
    for (name, script) in cases {
        assert_mse_on_defaults_only(name, &script);
    }
}

#[test]
fn mse_near_misses_are_left_alone_on_defaults() {
    let default = with(MseStrictness::Corroborated, false);
    let mut cases = Vec::new();
    // Flight 3 one byte off the IA layout, with no flight-5 handshake.
    for flight3 in [123usize, 125] {
        let mut script = implementation_script(90, 100, 100, None, 0, 68);
        script[2].1 = random_bytes(91, flight3);
        cases.push((format!("flight 3 = {flight3}"), script));
    }
    // Flight 5 one byte off the handshake length.
    for flight5 in [67usize, 69, 136] {
        let mut script = implementation_script(92, 100, 100, Some(100), 100, 0);
        script[4].1 = random_bytes(93, flight5);
        cases.push((format!("flight 5 = {flight5}"), script));
    }
    // PadC or PadD over 512 in the empty-IA layout.
    cases.push((
        "PadC 513".into(),
        implementation_script(94, 100, 100, Some(513), 0, 0),
    ));
    cases.push((
        "flight 4 over 526".into(),
        implementation_script(95, 100, 100, Some(10), 513, 0),
    ));
    // Flight 4 shorter than VC + crypto_select + len(PadD).
    let mut short4 = implementation_script(96, 100, 100, None, 0, 0);
    short4[3].1 = random_bytes(97, 13);
    short4.truncate(4);
    cases.push(("flight 4 = 13".into(), short4));
    // IA layout without the responder's handshake in flight 4 (14 + PadD only).
    let mut no_handshake4 = implementation_script(100, 100, 100, None, 0, 0);
    no_handshake4[3].1 = random_bytes(101, 81);
    no_handshake4.truncate(4);
    no_handshake4.push((C, random_bytes(104, 200)));
    cases.push(("flight 4 = 81 after IA".into(), no_handshake4));
    // Empty-IA layout whose flight 6 is too short to hold the responder's handshake.
    let mut short6 = implementation_script(102, 100, 100, Some(100), 100, 0);
    short6[5].1 = random_bytes(103, 67);
    short6.truncate(6);
    cases.push(("flight 6 = 67".into(), short6));
    // Printable flight 4 or flight 5 (not RC4 output).
    let mut text4 = implementation_script(98, 100, 100, None, 0, 68);
    text4[3].1 = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n".repeat(2);
    cases.push(("text flight 4".into(), text4));
    let mut text5 = implementation_script(99, 100, 100, Some(30), 30, 0);
    text5[4].1 = b"PING PING PING PING PING PING PING PING PING PING PING PING PING!!!!".to_vec();
    cases.push(("text flight 5".into(), text5));
    for (name, script) in cases {
        assert_eq!(check(default, &script), Verdict::GaveUp, "{name}");
        // Still a candidate for the fan-out counter and Aggressive.
        assert_eq!(
            check(with(MseStrictness::Aggressive, false), &script),
            bt(BtForm::Mse),
            "{name} (aggressive)"
        );
    }
}

#[test]
fn mse_candidate_blocks_once_corroborated_mid_flow() {
    let script = implementation_script(100, 100, 100, Some(100), 600, 0);
    let mut flow = TcpFlow::new(with(MseStrictness::Corroborated, false));
    for (direction, bytes) in script.iter().take(3) {
        assert_eq!(flow.handle_data(*direction, bytes), Verdict::NeedMore);
    }
    // Flight 4 begins: the shape is complete, the exact sizes are not (PadD > 512).
    assert_eq!(flow.handle_data(S, &script[3].1), Verdict::NeedMore);
    assert!(flow.is_mse_candidate());
    // The fan-out counter reached its threshold: the proxy tells the flow.
    assert_eq!(flow.corroborate(), bt(BtForm::Mse));
    // Off never blocks on the shape, corroborated or not.
    let mut off = TcpFlow::new(with(MseStrictness::Off, false));
    for (direction, bytes) in script.iter().take(4) {
        off.handle_data(*direction, bytes);
    }
    assert_eq!(off.corroborate(), Verdict::NeedMore);
}

/// Every key exchange reaches the exact layouts whatever its random bytes: before, about 1 in
/// 100 split flows escaped (a 14-byte VC flight judged "70 % printable") and 1 in 2,500 (a
/// first flight opening with an upper-case letter and a space, taken for an HTTP method).
/// Also the split layout whose PadC is 68: its flight 3 is 124 bytes, the Transmission size.
#[test]
fn split_layout_is_blocked_whatever_the_random_bytes() {
    let default = with(MseStrictness::Corroborated, false);
    for (seed, sizes) in (0..3_000u64)
        .map(|seed| (seed, [253, 215, 468, 14, 68, 186]))
        .chain([
            (3_000, [449, 260, 124, 54, 68, 186]),
            (3_001, [96, 96, 124, 14, 68, 68]),
        ])
    {
        let script: Vec<(Direction, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(index, &size)| {
                let direction = if index % 2 == 0 { C } else { S };
                (direction, random_bytes(seed * 11 + index as u64, size))
            })
            .collect();
        assert_eq!(run(default, &script), bt(BtForm::Mse), "seed {seed}");
    }
}

/// How often a genuine exchange of each layout is missed on defaults, over random pads
/// (0..=512 bytes each, BEP 8) and random bytes, 100,000 flows each: printed, not asserted (a rate, for
/// docs/detection.md). `cargo test --release -p swarmwall-core --lib genuine_exchange_miss_rate
/// -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: about 20 s in a release build"]
fn genuine_exchange_miss_rate() {
    const FLOWS: u64 = 100_000;
    let default = with(MseStrictness::Corroborated, false);
    /// Flight sizes of one layout from four pad lengths.
    type Sizes = fn([usize; 4]) -> Vec<usize>;
    let layouts: [(&str, Sizes); 5] = [
        ("handshake_in_flight5", |[a, b, c, d]| {
            vec![96 + a, 96 + b, 56 + c, 14 + d, 68, 186]
        }),
        ("handshake_in_flight3", |[a, b, _, d]| {
            vec![96 + a, 96 + b, 124, 82 + d, 117]
        }),
        ("coalesced_first_block", |[a, b, c, d]| {
            vec![96 + a, 96 + b, 124 + c, 82 + d + 100, 288, 16_397]
        }),
        ("coalesced_bare_reply", |[a, b, c, _]| {
            vec![96 + a, 96 + b, 124 + c, 82, 203, 123]
        }),
        ("coalesced_control_message", |[a, b, c, _]| {
            vec![96 + a, 96 + b, 124 + c, 200, 213, 4, 5, 5]
        }),
    ];
    for (name, sizes_of) in layouts {
        let mut missed = 0;
        for flow in 0..FLOWS {
            let pads = random_bytes(flow ^ 0x5eed, 8);
            let pad =
                |i: usize| (usize::from(pads[2 * i]) << 8 | usize::from(pads[2 * i + 1])) % 513;
            let sizes = sizes_of([pad(0), pad(1), pad(2), pad(3)]);
            let script: Vec<(Direction, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(index, &size)| {
                    let direction = if index % 2 == 0 { C } else { S };
                    (direction, random_bytes(flow * 16 + index as u64, size))
                })
                .collect();
            let verdict = run(default, &script);
            if verdict != bt(BtForm::Mse) {
                missed += 1;
                if missed <= 3 {
                    let start = script.first().map(|(_, bytes)| &bytes[..4]);
                    println!(
                        "  {name} missed: {sizes:?}, {verdict:?}, flight 1 opens {start:02x?}"
                    );
                }
            }
        }
        println!("{name}: missed {missed} of {FLOWS}");
    }
}
