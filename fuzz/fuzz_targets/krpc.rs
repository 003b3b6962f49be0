//! Fuzz the KRPC (BEP 5) parser (`swarmwall_core::bt::krpc`, used by the monitor) and the
//! node/value walkers. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::bt::krpc::{self, MessageKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = krpc::parse(data)
        && let MessageKind::Response(response) = message.kind
    {
        let _ = response.visit_values(&mut |_| {});
        response.visit_nodes(&mut |_, _| {});
    }
});
