//! Bounded in-order TCP reassembly for one direction of a flow.
//!
//! Segments are delivered in sequence order. Retransmissions and overlaps are trimmed (the
//! first copy of a byte wins), out-of-order segments wait in a small sorted list. As in
//! smoltcp's `Assembler`, the state is bounded: at most [`MAX_PENDING_SEGMENTS`] waiting
//! segments and [`MAX_PENDING_BYTES`] bytes. When a limit is hit the hole is declared lost (a
//! capture drop) and delivery skips to the first waiting segment; [`Reassembler::gaps`]
//! counts these. Segments further than [`MAX_WINDOW`] ahead are ignored. A segment cut short by
//! the capture's snap length ends delivery for that direction (what follows it is unknown).

/// Most out-of-order segments held per direction.
pub const MAX_PENDING_SEGMENTS: usize = 32;
/// Most out-of-order bytes held per direction.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;
/// Segments starting more than this far beyond the next expected byte are dropped.
pub const MAX_WINDOW: u32 = 1 << 20;

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of the next byte to deliver; `None` until the first SYN or segment.
    next: Option<u32>,
    /// Waiting segments, sorted by their offset from `next` (as sequence numbers).
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
    gaps: u32,
    /// A snap-length-truncated segment was delivered: nothing more is delivered.
    cut: bool,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// A SYN with sequence number `seq` was seen: data starts at `seq + 1`.
    pub fn handle_syn(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some(seq.wrapping_add(1));
        }
    }

    /// Number of holes skipped because the limits were reached.
    pub fn gaps(&self) -> u32 {
        self.gaps
    }

    /// Add a segment starting at `seq`; calls `deliver` with every newly in-order chunk.
    pub fn handle_segment(&mut self, seq: u32, data: &[u8], deliver: impl FnMut(&[u8])) {
        self.handle_segment_truncated(seq, data, false, deliver);
    }

    /// Like [`Reassembler::handle_segment`]; `truncated` says the capture cut `data` short.
    /// Bytes up to the cut are still delivered in order, nothing after them.
    pub fn handle_segment_truncated(
        &mut self,
        seq: u32,
        data: &[u8],
        truncated: bool,
        deliver: impl FnMut(&[u8]),
    ) {
        if self.cut || data.is_empty() {
            return;
        }
        if truncated {
            // Deliver in-order bytes up to the cut, then stop for good. Waiting segments lie
            // beyond the cut and are dropped first so they are not spliced onto it.
            let next = *self.next.get_or_insert(seq);
            let offset = seq.wrapping_sub(next);
            if offset == 0 || offset > u32::MAX / 2 {
                self.pending.clear();
                self.pending_bytes = 0;
                self.handle_segment_inner(seq, data, deliver);
                self.cut = true;
            }
            return;
        }
        self.handle_segment_inner(seq, data, deliver);
    }

    fn handle_segment_inner(&mut self, seq: u32, data: &[u8], mut deliver: impl FnMut(&[u8])) {
        // A flow seen mid-stream starts at its first segment.
        let next = *self.next.get_or_insert(seq);
        let offset = seq.wrapping_sub(next);
        if offset > u32::MAX / 2 {
            // Starts before `next`: a retransmission or an overlap; keep only new bytes.
            let behind = usize::try_from(next.wrapping_sub(seq)).unwrap_or(usize::MAX);
            let Some(fresh) = data.get(behind..).filter(|fresh| !fresh.is_empty()) else {
                return;
            };
            self.advance(fresh, &mut deliver);
        } else if offset == 0 {
            self.advance(data, &mut deliver);
        } else if offset <= MAX_WINDOW {
            self.insert(seq, data);
            if self.pending.len() > MAX_PENDING_SEGMENTS || self.pending_bytes > MAX_PENDING_BYTES {
                // Give the hole up: jump to the first waiting segment.
                if let Some((first_seq, _)) = self.pending.first() {
                    self.next = Some(*first_seq);
                    self.gaps = self.gaps.saturating_add(1);
                }
            }
        } else {
            return;
        }
        self.drain(&mut deliver);
    }

    fn advance(&mut self, data: &[u8], deliver: &mut impl FnMut(&[u8])) {
        if let Some(next) = self.next.as_mut() {
            *next = next.wrapping_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
        }
        deliver(data);
    }

    fn insert(&mut self, seq: u32, data: &[u8]) {
        let Some(next) = self.next else {
            return;
        };
        let offset = seq.wrapping_sub(next);
        let position = self
            .pending
            .partition_point(|(s, _)| s.wrapping_sub(next) <= offset);
        self.pending_bytes += data.len();
        self.pending.insert(position, (seq, data.to_vec()));
    }

    /// Deliver waiting segments that have become in order.
    fn drain(&mut self, deliver: &mut impl FnMut(&[u8])) {
        while let (Some(next), Some((seq, _))) = (self.next, self.pending.first()) {
            let offset = seq.wrapping_sub(next);
            if offset != 0 && offset <= u32::MAX / 2 {
                break; // still a hole before the first waiting segment
            }
            let (seq, data) = self.pending.remove(0);
            self.pending_bytes -= data.len();
            let behind = usize::try_from(next.wrapping_sub(seq)).unwrap_or(usize::MAX);
            if let Some(fresh) = data.get(behind..).filter(|fresh| !fresh.is_empty()) {
                self.advance(fresh, deliver);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segments: &[(u32, &[u8])]) -> Vec<u8> {
        let mut reassembler = Reassembler::new();
        reassembler.handle_syn(999);
        let mut out = Vec::new();
        for (seq, data) in segments {
            reassembler.handle_segment(*seq, data, |chunk| out.extend_from_slice(chunk));
        }
        out
    }

    #[test]
    fn in_order_retransmit_overlap_out_of_order() {
        assert_eq!(run(&[(1000, b"abc"), (1003, b"def")]), b"abcdef");
        assert_eq!(
            run(&[(1000, b"abc"), (1000, b"abc"), (1003, b"d")]),
            b"abcd"
        );
        assert_eq!(run(&[(1000, b"abc"), (1001, b"bcde")]), b"abcde");
        assert_eq!(run(&[(1003, b"def"), (1000, b"abc")]), b"abcdef");
        assert_eq!(
            run(&[(1006, b"ghi"), (1003, b"def"), (1000, b"abcd")]),
            b"abcdefghi"
        );
    }

    #[test]
    fn sequence_wraps() {
        let mut reassembler = Reassembler::new();
        reassembler.handle_syn(u32::MAX - 1);
        let mut out = Vec::new();
        reassembler.handle_segment(1, b"yz", |c| out.extend_from_slice(c));
        reassembler.handle_segment(u32::MAX, b"wx", |c| out.extend_from_slice(c));
        assert_eq!(out, b"wxyz");
    }

    #[test]
    fn mid_stream_start_and_bounded_holes() {
        let mut reassembler = Reassembler::new();
        let mut out = Vec::new();
        reassembler.handle_segment(5000, b"a", |c| out.extend_from_slice(c));
        // A hole at 5001 that never fills; later segments pile up until the limit skips it.
        for i in 0..=MAX_PENDING_SEGMENTS as u32 {
            reassembler.handle_segment(5002 + i, b"b", |c| out.extend_from_slice(c));
        }
        assert_eq!(reassembler.gaps(), 1);
        assert_eq!(out.len(), 1 + MAX_PENDING_SEGMENTS + 1);
        assert!(reassembler.pending.is_empty());
    }

    #[test]
    fn truncated_segment_ends_delivery() {
        let mut reassembler = Reassembler::new();
        reassembler.handle_syn(999);
        let mut out = Vec::new();
        reassembler.handle_segment(1010, b"later", |c| out.extend_from_slice(c));
        reassembler.handle_segment_truncated(1000, b"abc", true, |c| out.extend_from_slice(c));
        reassembler.handle_segment(1003, b"defghij", |c| out.extend_from_slice(c));
        assert_eq!(out, b"abc");
    }

    #[test]
    fn far_segments_are_ignored() {
        assert_eq!(run(&[(1000 + MAX_WINDOW + 1, b"x"), (1000, b"a")]), b"a");
    }
}
