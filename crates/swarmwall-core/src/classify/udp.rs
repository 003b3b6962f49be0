//! Per-UDP-datagram classification with a little per-endpoint context (uTP ids, UDP tracker
//! transaction ids).
//!
//! STUB: the API is fixed; the implementation is being written (classifier-udp work).

use super::{Direction, FlowContext, Verdict};

/// Classifier state for the datagrams exchanged with one remote endpoint (one UDP "flow": an
/// association × remote endpoint in the proxy, a 5-tuple in a capture). Small and `Copy`-sized.
#[derive(Debug, Clone)]
pub struct UdpFlow {
    context: FlowContext,
    verdict: Verdict,
}

impl UdpFlow {
    /// A new UDP flow; `context.server_port` is the remote endpoint's port.
    pub fn new(context: FlowContext) -> Self {
        Self {
            context,
            verdict: Verdict::NeedMore,
        }
    }

    /// Classify one datagram. Returns the flow's verdict after it: a final verdict sticks.
    pub fn handle_datagram(&mut self, direction: Direction, payload: &[u8]) -> Verdict {
        let _ = (direction, payload, self.context);
        self.verdict
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}
