//! Per-UDP-flow classification with a little per-endpoint context (uTP ids, UDP tracker
//! transaction ids).
//!
//! One [`UdpFlow`] per association × remote endpoint in the proxy, per 5-tuple in a capture.
//! Each datagram goes through, in order:
//!
//! 1. the decisive single-datagram forms: DHT KRPC ([`dht`], first byte `d`, whole-datagram
//!    bencode validation), the BEP 15 connect request ([`udp_tracker`], magic + length 16) and
//!    the BEP 14 announcement ([`lsd`], start line + `Infohash:`);
//! 2. the reply half of a pending candidate: a tracker reply with the announce/scrape's
//!    transaction id;
//! 3. while the flow holds no candidate, the benign rule-outs ([`rule_out`]: DNS, QUIC, STUN,
//!    DTLS, WireGuard, OpenVPN, NTP, SSDP, RTP) → `Benign`, final;
//! 4. announce/scrape request shapes (candidates awaiting their reply);
//! 5. uTP ([`utp`]): a DATA payload starting with the peer-wire handshake and a perfect SYN are
//!    decisive at once; otherwise the SYN → STATE confirmation or three consistent datagrams
//!    (the mid-flow rule, in both modes because an association may start inside a uTP
//!    connection) decide.
//!
//! Budget (docs §0.4 "give up early"): a flow gives up after 4 datagrams that matched nothing
//! while no candidate is pending ([`UNMATCHED_BUDGET`]), or after 16 datagrams in all
//! ([`TOTAL_BUDGET`]). A verdict other than `NeedMore` is final and the flow is not examined
//! any more. A capture that ends while a flow is still `NeedMore` should report it as unknown.
//!
//! [`Mode`](super::Mode) changes nothing here: the proxy sees an association from its first
//! datagram, but the association may start inside a uTP connection the client opened through
//! an earlier one, so the mid-flow rule runs in both modes. Real clients send DHT and uTP from
//! one socket, so one flow may show both; whichever decides first gives the form.
//!
//! The uTP SYN trade-off: in the proxy a SYN to a peer that the operator blocks elsewhere (or
//! that is offline) is never answered, so waiting for the STATE would let a client probe peers
//! forever. A SYN that is structurally perfect (see [`utp::Header::is_perfect_syn`]) and that no
//! rule-out claims is therefore decisive on its own. The price: any other protocol whose
//! datagram happens to have first byte `0x41`, byte 1 ∈ {0, 2}, non-zero bytes 2..8, zero bytes
//! 8..12 and 18..20, and exactly 20 (or 30) bytes is blocked as uTP. Random or encrypted bytes
//! give that with probability below 2^-60; the one structured protocol known to line up (DNS
//! with id `41 00`) is excluded because its QCLASS sits in `ack_nr`.

mod dht;
mod lsd;
mod rule_out;
mod udp_tracker;
mod utp;

use super::{BtForm, Direction, FlowContext, Verdict};

/// Datagrams matching no form, while no candidate is pending, before the flow gives up.
const UNMATCHED_BUDGET: u8 = 4;

/// Datagrams examined in all before the flow gives up (a candidate that is never confirmed).
const TOTAL_BUDGET: u8 = 16;

/// Classifier state for the datagrams exchanged with one remote endpoint (one UDP "flow": an
/// association × remote endpoint in the proxy, a 5-tuple in a capture). At most 64 bytes (a
/// test holds it to that).
#[derive(Debug, Clone)]
pub struct UdpFlow {
    context: FlowContext,
    verdict: Verdict,
    /// Datagrams examined so far (saturating).
    datagrams: u8,
    /// Datagrams that matched nothing while no candidate was pending.
    unmatched: u8,
    /// A BEP 15 announce/scrape awaiting its reply: (request direction, action, transaction id).
    tracker: Option<(Direction, udp_tracker::Action, u32)>,
    /// uTP evidence.
    utp: utp::Tracker,
}

impl UdpFlow {
    /// A new UDP flow; `context.server_port` is the remote endpoint's port.
    pub fn new(context: FlowContext) -> Self {
        Self {
            context,
            verdict: Verdict::NeedMore,
            datagrams: 0,
            unmatched: 0,
            tracker: None,
            utp: utp::Tracker::default(),
        }
    }

    /// Classify one datagram. Returns the flow's verdict after it: a final verdict sticks.
    pub fn handle_datagram(&mut self, direction: Direction, payload: &[u8]) -> Verdict {
        if self.verdict.is_final() {
            return self.verdict;
        }
        self.datagrams = self.datagrams.saturating_add(1);
        match self.examine(direction, payload) {
            Examined::Final(verdict) => self.verdict = verdict,
            Examined::Candidate => {}
            Examined::Nothing => {
                if !self.has_candidate() {
                    self.unmatched = self.unmatched.saturating_add(1);
                }
            }
        }
        if !self.verdict.is_final()
            && (self.unmatched >= UNMATCHED_BUDGET || self.datagrams >= TOTAL_BUDGET)
        {
            self.verdict = Verdict::GaveUp;
        }
        self.verdict
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The context this flow was created with.
    pub fn context(&self) -> FlowContext {
        self.context
    }

    /// Datagrams examined so far (stops counting at the verdict, saturates at 255).
    pub fn datagrams_examined(&self) -> u8 {
        self.datagrams
    }

    fn has_candidate(&self) -> bool {
        self.tracker.is_some() || self.utp.is_candidate()
    }

    fn examine(&mut self, direction: Direction, payload: &[u8]) -> Examined {
        use Examined::{Candidate, Final, Nothing};
        let bittorrent = |form| Final(Verdict::BitTorrent(form));

        // 1. Decisive single-datagram forms.
        match payload.first() {
            Some(b'd') if dht::is_krpc(payload) => return bittorrent(BtForm::Dht),
            Some(b'B') if lsd::is_bt_search(payload) => return bittorrent(BtForm::Lsd),
            _ => {}
        }
        let request = udp_tracker::parse_request(payload);
        if request == Some(udp_tracker::Request::Connect) {
            return bittorrent(BtForm::UdpTracker);
        }
        // 2. The reply to a pending announce/scrape.
        if let Some((request_direction, action, tid)) = self.tracker
            && request_direction != direction
            && udp_tracker::is_reply(payload, action, tid)
        {
            return bittorrent(BtForm::UdpTracker);
        }
        // 3. Rule-outs, unless BitTorrent evidence is already pending on this flow. An
        //    announce/scrape starts with a random connection id that the loose rules (RTP, NTP)
        //    could claim, so such a shape is only ruled out by a full DNS parse.
        let shaped = matches!(request, Some(udp_tracker::Request::Pending(..)));
        if !self.has_candidate() {
            if shaped && rule_out::is_dns(payload) {
                return Final(Verdict::Benign(super::Benign::Dns));
            }
            if !shaped && let Some(benign) = rule_out::benign(payload) {
                return Final(Verdict::Benign(benign));
            }
        }
        // 4. Announce/scrape shapes.
        if let Some(udp_tracker::Request::Pending(action, tid)) = request {
            self.tracker = Some((direction, action, tid));
            return Candidate;
        }
        // 5. uTP.
        let Some(header) = utp::Header::parse(payload) else {
            return Nothing;
        };
        if header.carries_handshake(payload) || header.is_perfect_syn() {
            return bittorrent(BtForm::Utp);
        }
        match self.utp.handle(direction, &header) {
            utp::Step::Decided => bittorrent(BtForm::Utp),
            utp::Step::Pending => Candidate,
            utp::Step::Inconsistent => Nothing,
        }
    }
}

/// What one datagram contributed.
enum Examined {
    /// The flow's verdict.
    Final(Verdict),
    /// BitTorrent evidence that is not decisive yet.
    Candidate,
    /// Nothing recognised.
    Nothing,
}

#[cfg(test)]
mod tests;
