//! Fuzz the TCP classifier: the input is a script of segments (first byte of each record:
//! bit 0 = direction, bits 1..=7 = length up to 127; then that many bytes), fed to a
//! `TcpFlow` under a context chosen by the first input byte. Checks that nothing panics, that
//! a final verdict never changes, that the budgets hold, and that feeding the same script one
//! byte at a time gives the same verdict.
//!
//! `cargo fuzz run --sanitizer none classify_tcp`

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::classify::{Direction, FlowContext, Mode, MseStrictness, TcpFlow, Verdict};

fn script(data: &[u8]) -> Vec<(Direction, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let direction = if head & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let n = usize::from(head >> 1).min(tail.len());
        let (segment, tail) = tail.split_at(n);
        out.push((direction, segment));
        rest = tail;
    }
    out
}

fn run(context: FlowContext, script: &[(Direction, &[u8])], chunk: usize) -> Verdict {
    let mut flow = TcpFlow::new(context);
    let mut last = Verdict::NeedMore;
    for (direction, bytes) in script {
        for piece in bytes.chunks(chunk) {
            let verdict = flow.handle_data(*direction, piece);
            if last.is_final() {
                assert_eq!(verdict, last);
            }
            last = verdict;
            let (c2s, s2c) = flow.bytes_inspected();
            assert!(c2s <= 4096 && s2c <= 2048);
        }
    }
    flow.handle_idle()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let context = FlowContext {
        server_port: [6881, 443, 80, 51_413][usize::from(selector & 3)],
        mode: if selector & 4 == 0 {
            Mode::Proxy
        } else {
            Mode::Offline
        },
        mse_strictness: match (selector >> 3) & 3 {
            0 => MseStrictness::Off,
            1 => MseStrictness::Corroborated,
            _ => MseStrictness::Aggressive,
        },
        corroborated: selector & 0x20 != 0,
    };
    let script = script(data);
    let whole = run(context, &script, usize::MAX);
    assert!(whole.is_final());
    assert_eq!(run(context, &script, 1), whole);
});
