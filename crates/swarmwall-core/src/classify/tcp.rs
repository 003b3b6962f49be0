//! Per-TCP-flow classification: dispatch on the first bytes of each direction.
//!
//! STUB: the API is fixed; the implementation is being written (classifier-tcp work).

use super::{Direction, FlowContext, Verdict};

/// Classifier state for one TCP flow. Feed each direction's bytes in order as they arrive;
/// stop feeding once the verdict is final. Holds at most a few KiB per direction.
#[derive(Debug)]
pub struct TcpFlow {
    context: FlowContext,
    verdict: Verdict,
}

impl TcpFlow {
    /// A new flow with nothing seen yet.
    pub fn new(context: FlowContext) -> Self {
        Self {
            context,
            verdict: Verdict::NeedMore,
        }
    }

    /// Feed the next bytes of one direction; returns the (possibly still pending) verdict.
    pub fn handle_data(&mut self, direction: Direction, bytes: &[u8]) -> Verdict {
        let _ = (direction, bytes, self.context);
        self.verdict
    }

    /// Tell the flow that time has passed (MSE flights are also bounded in time) or that the
    /// caller will feed no more bytes (`finished`); may turn NeedMore into a final verdict.
    pub fn handle_idle(&mut self, finished: bool) -> Verdict {
        if finished && self.verdict == Verdict::NeedMore {
            self.verdict = Verdict::GaveUp;
        }
        self.verdict
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Bytes inspected so far per direction (client→server, server→client): the decision
    /// depth reported in metrics.
    pub fn bytes_inspected(&self) -> (usize, usize) {
        (0, 0)
    }
}
