//! uTP (BEP 29): header view, extension-chain walk, the "perfect SYN" test, the peer-wire
//! handshake inside a DATA payload, and the per-flow tracker that confirms a SYN by its STATE
//! reply or accepts a flow seen mid-way after three consistent datagrams.
//!
//! Header (20 bytes, BEP 29): `type << 4 | version` (version 1), first extension type,
//! `connection_id` u16, `timestamp_microseconds` u32, `timestamp_difference_microseconds` u32,
//! `wnd_size` u32, `seq_nr` u16, `ack_nr` u16; then the extension chain
//! (`next_type` u8, `len` u8, `len` bytes) and the payload.
//!
//! Connection ids (BEP 29 "connection setup"): the initiator's SYN carries its receive id X;
//! the acceptor sends every packet with X; the initiator sends everything after the SYN with
//! X + 1. So within one direction the id is constant and across directions it differs by one.
//!
//! The timestamp is the sender's own microsecond clock (it wraps every ~71.6 minutes); it is
//! never compared with wall-clock time, only with the sender's previous timestamp.

use super::super::Direction;

/// Length of the fixed uTP header.
pub(super) const HEADER_LEN: usize = 20;

/// At most this many extensions in a chain (libtorrent sends at most two).
const MAX_EXTENSIONS: usize = 4;

/// Wrapping distance (in sequence numbers) still treated as "the same stream". libtorrent's
/// send window is at most a few hundred packets; reordering and retransmits stay well inside.
const SEQ_WINDOW: u16 = 1024;

/// Consistent datagrams needed to accept a flow seen without its SYN (docs §1.9, the mid-flow
/// rule; nDPI likewise waits for more than two packets on DATA-only evidence).
pub(super) const MID_FLOW_DATAGRAMS: u8 = 3;

/// The peer-wire handshake prefix (BEP 3): pstrlen 19 then the protocol string.
const PEER_WIRE_PREFIX: &[u8; 20] = crate::bt::peer_wire::PROTOCOL_PREFIX;

/// uTP packet types (BEP 29 `type` nibble).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PacketType {
    /// ST_DATA: carries payload.
    Data,
    /// ST_FIN: end of stream.
    Fin,
    /// ST_STATE: acknowledgement, no payload.
    State,
    /// ST_RESET: abort.
    Reset,
    /// ST_SYN: connection request.
    Syn,
}

/// A parsed, validated uTP header (docs §1.9 "single-datagram validation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Packet type.
    pub(super) kind: PacketType,
    /// `connection_id`.
    pub(super) connection_id: u16,
    /// `timestamp_microseconds` of the sender.
    pub(super) timestamp: u32,
    /// `timestamp_difference_microseconds`.
    pub(super) timestamp_difference: u32,
    /// `seq_nr`.
    pub(super) seq_nr: u16,
    /// `ack_nr`.
    pub(super) ack_nr: u16,
    /// Offset of the payload (after the extension chain).
    pub(super) payload_offset: usize,
    /// Bit `1 << type` set for every extension type present in the chain.
    pub(super) extensions: u8,
}

impl Header {
    /// Parse and validate one datagram as a uTP packet; `None` when any rule of docs §1.9
    /// fails (version, type, extension chain, payload presence per type, zero id/timestamp).
    pub(super) fn parse(datagram: &[u8]) -> Option<Self> {
        let fixed: &[u8; HEADER_LEN] = datagram.get(..HEADER_LEN)?.try_into().ok()?;
        let [
            b0,
            first_extension,
            c0,
            c1,
            t0,
            t1,
            t2,
            t3,
            d0,
            d1,
            d2,
            d3,
            _,
            _,
            _,
            _,
            s0,
            s1,
            a0,
            a1,
        ] = *fixed;
        if b0 & 0x0F != 1 {
            return None;
        }
        let kind = match b0 >> 4 {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        };
        let (payload_offset, extensions) = walk_extensions(datagram, first_extension)?;
        let payload_len = datagram.len() - payload_offset;
        let payload_ok = match kind {
            PacketType::Syn | PacketType::State => payload_len == 0,
            PacketType::Data => payload_len > 0,
            PacketType::Fin | PacketType::Reset => true,
        };
        let header = Self {
            kind,
            connection_id: u16::from_be_bytes([c0, c1]),
            timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
            timestamp_difference: u32::from_be_bytes([d0, d1, d2, d3]),
            seq_nr: u16::from_be_bytes([s0, s1]),
            ack_nr: u16::from_be_bytes([a0, a1]),
            payload_offset,
            extensions,
        };
        let syn_ok =
            kind != PacketType::Syn || (header.timestamp_difference == 0 && header.ack_nr == 0);
        (payload_ok && syn_ok && header.connection_id != 0 && header.timestamp != 0)
            .then_some(header)
    }

    /// A SYN good enough to block on its own: valid (so `tdiff == 0`, `ack_nr == 0`, no
    /// payload, non-zero id and timestamp) and with no extension a SYN has no use for. A
    /// selective ACK (type 1) or a close reason (type 3) in a SYN is legal-looking but odd, so
    /// such a SYN waits for the acceptor's STATE. libtorrent sends no extension in its SYN;
    /// libutp sends the 8-byte extension-bits extension (type 2).
    pub(super) fn is_perfect_syn(&self) -> bool {
        self.kind == PacketType::Syn && self.extensions & !(1 << 2) == 0
    }

    /// True when this DATA packet's payload starts with the peer-wire handshake (docs §1.2:
    /// "inside uTP the handshake follows the uTP header and its extension chain").
    pub(super) fn carries_handshake(&self, datagram: &[u8]) -> bool {
        self.kind == PacketType::Data
            && datagram
                .get(self.payload_offset..)
                .and_then(|payload| payload.get(..PEER_WIRE_PREFIX.len()))
                .is_some_and(|prefix| prefix == PEER_WIRE_PREFIX)
    }
}

/// Walk the extension chain from offset 20; returns (payload offset, extension-type mask).
/// Known types: 1 selective ACK (len ≥ 4, multiple of 4), 2 extension bits (len 8, libutp),
/// 3 close reason (len 4, libtorrent `utp_stream.hpp`). At most [`MAX_EXTENSIONS`] entries.
fn walk_extensions(datagram: &[u8], first: u8) -> Option<(usize, u8)> {
    let mut offset = HEADER_LEN;
    let mut kind = first;
    let mut mask = 0u8;
    for _ in 0..=MAX_EXTENSIONS {
        if kind == 0 {
            return Some((offset, mask));
        }
        let next = *datagram.get(offset)?;
        let len = usize::from(*datagram.get(offset + 1)?);
        let len_ok = match kind {
            1 => len >= 4 && len.is_multiple_of(4),
            2 => len == 8,
            3 => len == 4,
            _ => false,
        };
        let end = offset + 2 + len;
        if !len_ok || end > datagram.len() {
            return None;
        }
        mask |= 1 << kind;
        offset = end;
        kind = next;
    }
    None
}

/// What one uTP datagram did to the flow's uTP evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The evidence is now decisive (SYN confirmed by its STATE, or the mid-flow count reached).
    Decided,
    /// Consistent with the flow so far; not yet decisive.
    Pending,
    /// Inconsistent with what was seen before (does not count).
    Inconsistent,
}

/// Per-direction memory of the last consistent uTP packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Side {
    seen: bool,
    connection_id: u16,
    seq_nr: u16,
    timestamp: u32,
}

/// uTP evidence of one UDP flow (docs §5.3: "8 bytes of uTP context"; this is 24).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tracker {
    /// Index 0: client to server, 1: server to client.
    sides: [Side; 2],
    /// A SYN waiting for its STATE: (direction index, connection id, seq_nr).
    syn: Option<(u8, u16, u16)>,
    /// Consistent datagrams so far.
    consistent: u8,
}

impl Tracker {
    /// True once any uTP datagram was accepted as consistent (the flow is a uTP candidate).
    pub(super) fn is_candidate(&self) -> bool {
        self.consistent > 0
    }

    /// Feed one valid uTP header seen in `direction`.
    pub(super) fn handle(&mut self, direction: Direction, header: &Header) -> Step {
        let me = side_index(direction);
        let other = 1 - me;
        // SYN → STATE confirmation (docs §1.9): the acceptor answers with the SYN's id and
        // acknowledges the SYN's sequence number.
        if let Some((syn_side, id, seq)) = self.syn
            && usize::from(syn_side) == other
            && header.kind == PacketType::State
            && header.connection_id == id
            && header.ack_nr == seq
        {
            return Step::Decided;
        }
        if header.kind == PacketType::Syn {
            // The initiator's later packets carry id + 1 and continue from the SYN's seq_nr.
            // `me` is 0 or 1 (side_index), so the cast cannot truncate.
            self.syn = Some((me as u8, header.connection_id, header.seq_nr));
            self.sides[me] = Side {
                seen: true,
                connection_id: header.connection_id.wrapping_add(1),
                seq_nr: header.seq_nr,
                timestamp: header.timestamp,
            };
            return self.count();
        }
        if !self.consistent_with(me, header) {
            return Step::Inconsistent;
        }
        let side = &mut self.sides[me];
        if !side.seen || forward(side.seq_nr, header.seq_nr) {
            side.seq_nr = header.seq_nr;
        }
        side.seen = true;
        side.connection_id = header.connection_id;
        side.timestamp = header.timestamp;
        self.count()
    }

    fn count(&mut self) -> Step {
        self.consistent = self.consistent.saturating_add(1);
        if self.consistent >= MID_FLOW_DATAGRAMS {
            Step::Decided
        } else {
            Step::Pending
        }
    }

    /// Docs §1.9 mid-flow rule: same id within a direction, ids one apart across directions,
    /// sequence numbers within a window of the last, timestamps non-decreasing per direction,
    /// and the ack number within a window of what the other side sent.
    fn consistent_with(&self, me: usize, header: &Header) -> bool {
        let mine = &self.sides[me];
        let theirs = &self.sides[1 - me];
        if mine.seen
            && (header.connection_id != mine.connection_id
                || !near(mine.seq_nr, header.seq_nr)
                || header.timestamp.wrapping_sub(mine.timestamp) >= 1 << 31)
        {
            return false;
        }
        if theirs.seen {
            let diff = header.connection_id.wrapping_sub(theirs.connection_id);
            if diff != 1 && diff != u16::MAX {
                return false;
            }
            if !near(theirs.seq_nr, header.ack_nr) {
                return false;
            }
        }
        true
    }
}

fn side_index(direction: Direction) -> usize {
    match direction {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// `b` is within [`SEQ_WINDOW`] of `a`, either way (wrapping).
fn near(a: u16, b: u16) -> bool {
    a.wrapping_sub(b) <= SEQ_WINDOW || b.wrapping_sub(a) <= SEQ_WINDOW
}

/// `b` is ahead of `a` (wrapping).
fn forward(a: u16, b: u16) -> bool {
    let diff = b.wrapping_sub(a);
    diff != 0 && diff < 1 << 15
}

#[cfg(test)]
mod tests;
