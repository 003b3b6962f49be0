//! Fuzz the UDP classifier: the input is split into datagrams (u8 direction/flags, u8 length,
//! bytes), fed to one `UdpFlow`; the verdict must never change once final.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::classify::{Direction, FlowContext, UdpFlow, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let context = if mode & 1 == 0 {
        FlowContext::proxy(u16::from(mode))
    } else {
        FlowContext::offline(u16::from(mode))
    };
    let mut flow = UdpFlow::new(context);
    let mut last = Verdict::NeedMore;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        let direction = if flags & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let verdict = flow.handle_datagram(direction, datagram);
        assert!(!last.is_final() || verdict == last, "verdict changed");
        last = verdict;
        rest = tail;
    }
});
