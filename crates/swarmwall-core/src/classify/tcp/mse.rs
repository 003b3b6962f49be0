//! T3: the MSE/PE shape heuristic and the exact client layouts (docs/detection.md).
//!
//! Message Stream Encryption has no fixed byte, so the flow is judged by its first three
//! flights: the initiator's DH value plus padding (96..=608 bytes, I1), the responder's
//! (96..=608, I2), the initiator's second flight (≥ 56 bytes, I3), all random-looking (I4).
//! Randomness: mean popcount per byte in [3.4, 4.6] (4 ± 5 σ when that is wider: flights
//! under 139 bytes), under 70 % printable, no printable run longer than 20 bytes. These are looser than the exemptions the GFW applies to fully
//! encrypted first payloads (Wu et al., USENIX Security 2023: under half printable, first six
//! bytes not all printable), which reject about 1 % of genuine random flights each; a client
//! that retries dozens of times would slip through on one of them (docs/detection.md). Random
//! data fails these bounds with a probability below one in a million per flight.
//!
//! [`exact`] then looks for the sizes the four reference implementations actually write after
//! the key exchange (docs/detection.md, "What each implementation writes"): either the
//! initiator's third flight is exactly 124 bytes (hashes, VC, crypto_provide, no PadC, the
//! 68-byte handshake as IA: Transmission and rTorrent) and the responder's fourth carries VC,
//! crypto_select, PadD and its own handshake; or the third flight is 56 + PadC bytes and, after
//! the responder's VC flight, the initiator sends its 68-byte handshake alone and the responder
//! answers with at least its own (libtorrent 2.0 / qBittorrent, aria2); or, libtorrent with its
//! handshake coalesced into the third flight (124 + PadC), the handshake phase fits flights 3
//! to 5 and the responder's sixth flight brings the first 16 KiB block ([`coalesced`]). Those
//! exact layouts are what let the default strictness block without corroboration.

use super::{Direction, Flights};

/// Smallest DH flight: the 96-byte public value (768-bit group).
const DH_LEN: u32 = 96;
/// Largest DH flight: public value plus at most 512 bytes of padding.
pub(super) const DH_MAX: u32 = 608;
/// Smallest third flight: two 20-byte hashes, VC, crypto_provide, len(PadC), len(IA).
const STEP3_MIN: u32 = 56;
/// Bytes of the third flight judged for randomness (the decision point when it is longer).
const STEP3_SAMPLE: u16 = 128;
/// Largest PadC / PadD (BEP 8 and every implementation read: 512).
const PAD_MAX: u32 = 512;
/// Length of the BitTorrent handshake (BEP 3), the initial payload IA.
const HANDSHAKE_LEN: u32 = 68;
/// Third flight with the handshake as IA and no PadC: 40 + 8 + 4 + 2 + 0 + 2 + 68.
const STEP3_WITH_IA: u32 = STEP3_MIN + HANDSHAKE_LEN;
/// Smallest responder flight 4: ENCRYPT(VC, crypto_select, len(PadD)).
const STEP4_MIN: u32 = 8 + 4 + 2;
/// A `piece` message carrying one 16 KiB block (BEP 3: 4-byte length, id, index, begin, 16384
/// bytes of data), the unit every client requests in.
const BLOCK_MESSAGE: u32 = 13 + 16 * 1024;
/// The least an initiator sends before a piece can come: `interested` (5) and one `request`
/// (17).
const FIRST_REQUEST: u32 = 5 + 17;
/// Largest responder flight 4 in the coalesced layout: VC, crypto_select, len(PadD), PadD, its
/// handshake, then at most 2 KiB of first messages (libtorrent seeder: extension handshake
/// about 220 bytes, have_all, unchoke; a bitfield instead of have_all fits up to 16,000
/// pieces). Measured cost of the bound, docs/detection.md.
const COALESCED_FLIGHT4_MAX: u32 = STEP4_MIN + PAD_MAX + HANDSHAKE_LEN + 2048;
/// Largest initiator flight 5 in the coalesced layout: extension handshake (libtorrent about
/// 210 bytes, qBittorrent about 300), have_none or a bitfield, `interested`, the first
/// requests (libtorrent measured 288 bytes in all).
const COALESCED_FLIGHT5_MAX: u32 = 1024;
/// Responder flight 4 that is exactly ENCRYPT(VC, crypto_select, len(PadD) = 0) and its own
/// handshake: Transmission 3.00 answering flight 3.
const BARE_REPLY: u32 = STEP4_MIN + HANDSHAKE_LEN;
/// The least an initiator's first messages can be: one peer-wire message with an id (4-byte
/// length, id), e.g. `have_none` or `interested`.
const FIRST_MESSAGE: u32 = 5;
/// Bytes of a clear handshake that make it recognisable (`\x13BitTorrent protocol`).
const I6_PREFIX: u32 = 20;
/// Sizes of a lone peer-wire message with no payload or a 4-byte one (BEP 3, BEP 6), which RC4
/// keeps as they are: keep-alive (4); choke, unchoke, interested, not interested, have_all,
/// have_none (5); have (9).
const CONTROL_MESSAGES: [u32; 3] = [4, 5, 9];
/// Last flight in which [`control_message`] looks for a lone control message.
pub(super) const CONTROL_WINDOW_END: u8 = 8;

/// Destination ports where the MSE shape is never evaluated (docs/detection.md, "Rules").
const EXCLUDED_PORTS: [u16; 16] = [
    22, 25, 53, 80, 110, 143, 443, 465, 587, 853, 993, 995, 3389, 5222, 5228, 8443,
];

/// True when the MSE shape is not evaluated for flows to `port`.
pub(super) fn port_excluded(port: u16) -> bool {
    EXCLUDED_PORTS.contains(&port)
}

/// Randomness of `bytes[start..start + min(len, cap)]`: the judged part of one flight.
fn flight_stats(bytes: &[u8], start: u32, len: u32, cap: u16) -> Randomness {
    let start = start as usize;
    let end = start.saturating_add(len.min(u32::from(cap)) as usize);
    let mut stats = Randomness::default();
    stats.push(
        bytes.get(start..end.min(bytes.len())).unwrap_or_default(),
        cap,
    );
    stats
}

/// Streaming randomness statistics over the first bytes of one flight.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Randomness {
    /// Bytes counted.
    n: u16,
    /// Sum of popcounts.
    ones: u32,
    /// Printable bytes (0x20..=0x7e).
    printable: u16,
    /// Current run of printable bytes.
    run: u16,
    /// Longest run of printable bytes.
    max_run: u16,
}

impl Randomness {
    /// Count the bytes of `bytes` that still fall under `cap`.
    fn push(&mut self, bytes: &[u8], cap: u16) {
        let room = usize::from(cap.saturating_sub(self.n));
        for &byte in bytes.iter().take(room) {
            let printable = (0x20..=0x7e).contains(&byte);
            if printable {
                self.printable += 1;
                self.run += 1;
                self.max_run = self.max_run.max(self.run);
            } else {
                self.run = 0;
            }
            self.ones += byte.count_ones();
            self.n += 1;
        }
    }

    /// Already excluded whatever follows: a printable run longer than 20 bytes (text).
    fn early_fail(&self) -> bool {
        self.max_run > 20
    }

    /// The test for the short flights after the key exchange (VC flight, RC4 handshake, first
    /// messages): no long printable run, and no more printable bytes than random data shows
    /// once in a million: 5 σ above the binomial mean (95 of 256 byte values are printable).
    /// A fixed share would refuse genuine RC4 output of a few bytes (70 % refused about 1 in
    /// 100 random 14-byte flights and 1 in 15 of 5 bytes); this bound never refuses a flight
    /// under 15 bytes on its share, refuses at most about 5 in 10,000,000 random flights of
    /// any length, and still refuses text from about 20 bytes on (68 bytes: over 45 printable).
    /// No popcount band: over 14 bytes its spread would reject genuine RC4 output.
    fn not_text(&self) -> bool {
        const PRINTABLE: f64 = 95.0 / 256.0;
        let n = f64::from(self.n);
        let limit = n * PRINTABLE + 5.0 * (n * PRINTABLE * (1.0 - PRINTABLE)).sqrt();
        !self.early_fail() && f64::from(self.printable) <= limit
    }

    /// The complete randomness test (I4).
    fn looks_random(&self) -> bool {
        if self.n == 0 || self.early_fail() {
            return false;
        }
        let n = u32::from(self.n);
        // Mean popcount within 4 ± max(0.6, 5 σ), σ = √(2 / n) for random bytes: the fixed
        // [3.4, 4.6] alone refused 1.5 in 1,000 random 56-byte flights (3 in 100,000 of 96).
        let mean = f64::from(self.ones) / f64::from(n);
        let half_band = (5.0 * (2.0 / f64::from(n)).sqrt()).max(0.6);
        (mean - 4.0).abs() <= half_band && u32::from(self.printable) * 10 < n * 7
    }
}

/// Where the shape test stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// Not MSE-shaped.
    Failed,
    /// Consistent so far.
    Pending,
    /// Three flights with the MSE shape.
    Complete,
}

/// Judge the first three flights from the inspected prefixes (`c2s` holds flights 1 and 3,
/// `s2c` flight 2); `finished` means no further bytes will come. Randomness is computed here,
/// on demand, so that flows taking other paths (TLS, HTTP) pay nothing per byte for it.
pub(super) fn shape(flights: &Flights, c2s: &[u8], s2c: &[u8], finished: bool) -> Shape {
    if flights.first != Some(Direction::ClientToServer) {
        return Shape::Failed;
    }
    let [l1, l2, l3, ..] = flights.len;
    // Flight 1 (I1): Ya + PadA.
    if l1 > DH_MAX {
        return Shape::Failed;
    }
    let s1 = flight_stats(c2s, 0, l1, DH_MAX as u16 + 1);
    if s1.early_fail() {
        return Shape::Failed;
    }
    if flights.count < 2 {
        return if finished {
            Shape::Failed
        } else {
            Shape::Pending
        };
    }
    if l1 < DH_LEN || !s1.looks_random() {
        return Shape::Failed;
    }
    // Flight 2 (I2): Yb + PadB.
    if l2 > DH_MAX {
        return Shape::Failed;
    }
    let s2 = flight_stats(s2c, 0, l2, DH_MAX as u16 + 1);
    if s2.early_fail() {
        return Shape::Failed;
    }
    if flights.count < 3 {
        return if finished {
            Shape::Failed
        } else {
            Shape::Pending
        };
    }
    if l2 < DH_LEN || !s2.looks_random() {
        return Shape::Failed;
    }
    // Flight 3 (I3): hashes, RC4(VC, provide, PadC, IA), judged on its first 128 bytes.
    let s3 = flight_stats(c2s, l1, l3, STEP3_SAMPLE);
    if s3.early_fail() {
        return Shape::Failed;
    }
    let flight3_over = flights.count >= 4 || finished;
    if s3.n < STEP3_SAMPLE && !flight3_over {
        return Shape::Pending;
    }
    if l3 < STEP3_MIN || !s3.looks_random() {
        return Shape::Failed;
    }
    Shape::Complete
}

/// Which implementation family the exact sizes point to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Flight 3 is 124 bytes: no PadC, IA = the handshake (Transmission, rTorrent).
    HandshakeInFlight3,
    /// Flight 3 is 56 + PadC with an empty IA; flight 5 is the 68-byte handshake alone
    /// (libtorrent 2.0 / qBittorrent 4.5, aria2).
    HandshakeInFlight5,
    /// Flight 3 is 124 + PadC (the handshake joined it); flight 6 carries the first block
    /// (libtorrent 2.0 / qBittorrent 4.5 over a real round trip).
    HandshakeCoalesced,
    /// The responder's flight 4 is exactly 82 bytes: VC, crypto_select, an empty PadD and its
    /// handshake (a Transmission 3.00 seeder; libtorrent 2.0 / qBittorrent and aria2
    /// initiators), flight 5 the initiator's first messages.
    BareHandshakeReply,
    /// Flights 3 to 5 as in [`Layout::HandshakeCoalesced`], then, in flights 6 to 8, a flight
    /// that is one lone control message (keep-alive, a state message, have): a seeder that
    /// unchokes late (an rTorrent 0.9.8 seeder answering a coalesced libtorrent initiator).
    ControlMessage,
}

impl Layout {
    /// The name reported by [`super::TcpFlow::mse_rule`].
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::HandshakeInFlight3 => "handshake_in_flight3",
            Self::HandshakeInFlight5 => "handshake_in_flight5",
            Self::HandshakeCoalesced => "coalesced_first_block",
            Self::BareHandshakeReply => "coalesced_bare_reply",
            Self::ControlMessage => "coalesced_control_message",
        }
    }
}

/// Where the exact-size test stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exact {
    /// The sizes do not match any implementation's layout.
    No,
    /// Consistent so far; the next flight decides.
    Pending,
    /// The flights have the sizes one implementation writes.
    Yes(Layout),
}

/// The exact-size test on a flow whose [`shape`] is already [`Shape::Complete`]: flights 3 to
/// 5 as the reference implementations write them. `finished` means no further bytes will come.
pub(super) fn exact(flights: &Flights, c2s: &[u8], s2c: &[u8], finished: bool) -> Exact {
    let [_, l2, _, l4, ..] = flights.len;
    let over = |n: u8| flights.count > n || finished;
    if flights.count < 4 {
        return if finished { Exact::No } else { Exact::Pending };
    }
    // Flight 4 starts with ENCRYPT(VC, crypto_select, len(PadD)) and more RC4 output (PadD,
    // the handshake); judged on its first 68 bytes once they are there (or it ended).
    let s4 = flight_stats(s2c, l2, l4, HANDSHAKE_LEN as u16);
    if s4.early_fail() || ((l4 >= HANDSHAKE_LEN || over(4)) && !s4.not_text()) {
        return Exact::No;
    }
    let layouts = [
        split(flights, c2s, finished),
        coalesced(flights, c2s, finished),
        bare_reply(flights, c2s, finished),
        control_message(flights, c2s, finished),
    ];
    if let Some(&found) = layouts.iter().find(|e| matches!(e, Exact::Yes(_))) {
        found
    } else if layouts.contains(&Exact::Pending) {
        Exact::Pending
    } else {
        Exact::No
    }
}

/// The two layouts whose handshakes leave as flights of their own (or as the exact IA of a
/// 124-byte flight 3): Transmission, rTorrent, aria2, and libtorrent when its two writes split.
fn split(flights: &Flights, c2s: &[u8], finished: bool) -> Exact {
    let [l1, _, l3, l4, l5, l6, ..] = flights.len;
    // Flight `n` (1-based) can grow no more.
    let over = |n: u8| flights.count > n || finished;
    // Enough of flight `n` is seen for the I6 scan (a clear handshake prefix is 20 bytes) to
    // have had its chance: the verdict form must not depend on segmentation.
    let scanned =
        |n: u8, len: u32| finished || (flights.count >= n && (len >= I6_PREFIX || over(n)));
    let pending = if finished { Exact::No } else { Exact::Pending };
    // A flight 3 of 124 bytes is also 56 + a PadC of 68 with an empty IA (1 in 513 of the
    // flight-5 layout's flows): a flight 4 too short for a handshake reply then goes on to
    // that layout.
    if l3 == STEP3_WITH_IA && !(over(4) && l4 < STEP4_MIN + HANDSHAKE_LEN) {
        // The responder has the initiator's handshake (IA) and answers with its own right
        // after PadD, before the initiator may send anything else.
        if l4 < STEP4_MIN + HANDSHAKE_LEN {
            return pending;
        }
        // A clear handshake after PadD would show by this point (I6 first).
        return if l4 >= STEP4_MIN + PAD_MAX + I6_PREFIX || scanned(5, l5) {
            Exact::Yes(Layout::HandshakeInFlight3)
        } else {
            pending
        };
    }
    if !(STEP3_MIN..=STEP3_MIN + PAD_MAX).contains(&l3) || l4 > STEP4_MIN + PAD_MAX {
        return Exact::No;
    }
    if flights.count < 5 {
        return pending;
    }
    if l4 < STEP4_MIN || l5 > HANDSHAKE_LEN {
        return Exact::No;
    }
    // Flight 5: the initiator's handshake, RC4-encrypted (plaintext is the I6 case).
    let s5 = flight_stats(c2s, l1 + l3, l5, HANDSHAKE_LEN as u16);
    if s5.early_fail() || (over(5) && !s5.not_text()) {
        return Exact::No;
    }
    if !over(5) {
        return Exact::Pending;
    }
    if l5 != HANDSHAKE_LEN {
        return Exact::No;
    }
    // Flight 6: the responder's own handshake (and whatever follows it).
    if l6 >= HANDSHAKE_LEN && scanned(6, l6) {
        Exact::Yes(Layout::HandshakeInFlight5)
    } else if over(6) {
        Exact::No
    } else {
        pending
    }
}

/// libtorrent 2.0 (qBittorrent) when its encrypted handshake joins flight 3 (its second write
/// leaves before the peer's flight 4 arrives, the common case over a real round trip):
/// flight 3 is 124 + PadC; flight 4 (82 ..= [`COALESCED_FLIGHT4_MAX`]) carries VC,
/// crypto_select, PadD, the responder's handshake and its first messages (extension handshake,
/// bitfield or have_all, unchoke) but no piece, since nothing was requested; flight 5
/// (22 ..= [`COALESCED_FLIGHT5_MAX`]) the initiator's first messages (extension handshake,
/// bitfield or have_none, `interested`, its first `request`s); flight 6, the responder's
/// answer, carries at least one whole block message (13 + 16 KiB).
/// Decided when flight 6 reaches [`BLOCK_MESSAGE`] bytes: the chunk that completes the first
/// block is held, so the client never holds a complete block (docs/detection.md).
fn coalesced(flights: &Flights, c2s: &[u8], finished: bool) -> Exact {
    let pending = if finished { Exact::No } else { Exact::Pending };
    if let Err(early) = coalesced_prefix(flights, c2s, finished) {
        return early;
    }
    let [_, _, _, _, l5, l6, ..] = flights.len;
    if l5 < FIRST_REQUEST {
        return Exact::No;
    }
    if l6 >= BLOCK_MESSAGE {
        Exact::Yes(Layout::HandshakeCoalesced)
    } else if flights.count > 6 || finished {
        Exact::No
    } else {
        pending
    }
}

/// The responder whose flight 4 is exactly VC, crypto_select, an empty PadD and its own
/// handshake, and then waits for the initiator: Transmission 3.00 (`libtransmission/handshake.c`,
/// `readIA`: it answers only once the whole IA is there, and writes VC, crypto_select,
/// len(PadD) = 0 and its handshake in one buffer, whatever the IA held; its extension handshake
/// and bitfield follow only after the initiator's first messages, and it unchokes at its next
/// rechoke, so the first block comes seconds later, in flight 8). Flight 3 is 124 + PadC when
/// the initiator's handshake is the IA (libtorrent 2.0 / qBittorrent declare len(IA) = 68, and
/// Transmission waits for it) or 56 + PadC with an empty IA (aria2, whose handshake then opens
/// flight 5); flight 4 exactly 82; flight 5 the initiator's first messages
/// ([`FIRST_MESSAGE`] ..= [`COALESCED_FLIGHT5_MAX`] bytes, at least its 68-byte handshake when
/// flight 3 was too short to hold it; not text). Decided when flight 5 is over, at the first
/// byte of flight 6 (which the proxy holds): before any piece.
fn bare_reply(flights: &Flights, c2s: &[u8], finished: bool) -> Exact {
    let [l1, _, l3, l4, l5, ..] = flights.len;
    let over = |n: u8| flights.count > n || finished;
    let pending = if finished { Exact::No } else { Exact::Pending };
    if !(STEP3_MIN..=STEP3_WITH_IA + PAD_MAX).contains(&l3) || l4 > BARE_REPLY {
        return Exact::No;
    }
    if flights.count < 5 {
        return pending;
    }
    if l4 != BARE_REPLY || l5 > COALESCED_FLIGHT5_MAX {
        return Exact::No;
    }
    // Flight 5 is RC4 output: not text (its first 68 bytes, once there or once it ended).
    let s5 = flight_stats(c2s, l1 + l3, l5, HANDSHAKE_LEN as u16);
    if s5.early_fail() || ((l5 >= HANDSHAKE_LEN || over(5)) && !s5.not_text()) {
        return Exact::No;
    }
    if !over(5) {
        return pending;
    }
    // A flight 3 shorter than 124 bytes had no room for the handshake: flight 5 brings it.
    let least = if l3 < STEP3_WITH_IA {
        HANDSHAKE_LEN
    } else {
        FIRST_MESSAGE
    };
    if l5 < least {
        Exact::No
    } else {
        Exact::Yes(Layout::BareHandshakeReply)
    }
}

/// Flights 3 to 5 of the coalesced layout with the initiator's first messages over: flight 3
/// of 124 + PadC, flight 4 of 82 ..= [`COALESCED_FLIGHT4_MAX`] (the responder's handshake
/// and first messages), flight 5 of [`FIRST_MESSAGE`] ..= [`COALESCED_FLIGHT5_MAX`], not text.
/// `Ok` when they are; else the verdict to give meanwhile: `Err(Exact::No)` when the sizes
/// rule it out, `Err(Exact::Pending)` while flight 5 can still grow (`Exact::No` once the flow
/// is `finished`).
fn coalesced_prefix(flights: &Flights, c2s: &[u8], finished: bool) -> Result<(), Exact> {
    let pending = if finished { Exact::No } else { Exact::Pending };
    let [l1, _, l3, l4, l5, ..] = flights.len;
    if !(STEP3_WITH_IA..=STEP3_WITH_IA + PAD_MAX).contains(&l3) || l4 > COALESCED_FLIGHT4_MAX {
        return Err(Exact::No);
    }
    if flights.count < 5 {
        return Err(pending);
    }
    if l4 < STEP4_MIN + HANDSHAKE_LEN || l5 > COALESCED_FLIGHT5_MAX {
        return Err(Exact::No);
    }
    let s5 = flight_stats(c2s, l1 + l3, l5, HANDSHAKE_LEN as u16);
    if s5.early_fail() {
        return Err(Exact::No);
    }
    if flights.count == 5 && !finished {
        return Err(pending);
    }
    if l5 >= FIRST_MESSAGE && s5.not_text() {
        Ok(())
    } else {
        Err(Exact::No)
    }
}

/// A seeder that answers a coalesced flight 3 with its handshake and first messages (flight
/// 4) and unchokes only later: after the initiator's first messages (flight 5), one of flights
/// 6 to [`CONTROL_WINDOW_END`] is exactly one lone control message ([`CONTROL_MESSAGES`]:
/// keep-alive, unchoke or interested, have), every flight before it at most
/// [`COALESCED_FLIGHT5_MAX`] bytes. rTorrent 0.9.8 seeding to libtorrent 2.0 over a 20 ms round
/// trip: 254 / 224 / 389 / 200 / 213 / **4** (keep-alive) / 5 (interested) / 5 (unchoke) / 68
/// (four requests) / 32,794 (two blocks). RC4 keeps message sizes; an authenticated tunnel
/// (TLS, SSH, Shadowsocks AEAD, obfs4, VMess) cannot send 4, 5 or 9 bytes (tag and framing
/// alone are 16 bytes or more). Decided when that flight is over (at the first byte of the
/// next, which the proxy holds): before any piece.
fn control_message(flights: &Flights, c2s: &[u8], finished: bool) -> Exact {
    let pending = if finished { Exact::No } else { Exact::Pending };
    if let Err(early) = coalesced_prefix(flights, c2s, finished) {
        return early;
    }
    for n in 6..=CONTROL_WINDOW_END {
        if flights.count < n {
            return pending;
        }
        let len = flights.len[usize::from(n - 1)];
        if len > COALESCED_FLIGHT5_MAX {
            return Exact::No;
        }
        if flights.count == n && !finished {
            return pending;
        }
        if CONTROL_MESSAGES.contains(&len) {
            return Exact::Yes(Layout::ControlMessage);
        }
    }
    Exact::No
}

/// True when the current flight (over, since the other direction just spoke) leaves
/// [`control_message`] undecided: the flow is inspected for one more flight, up to
/// [`CONTROL_WINDOW_END`].
pub(super) fn control_window_open(flights: &Flights, c2s: &[u8]) -> bool {
    flights.count < CONTROL_WINDOW_END
        && coalesced_prefix(flights, c2s, true).is_ok()
        && flights
            .len
            .get(5..usize::from(flights.count))
            .unwrap_or_default()
            .iter()
            .all(|len| *len <= COALESCED_FLIGHT5_MAX && !CONTROL_MESSAGES.contains(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift64*), standing in for DH values and RC4.
    pub(crate) fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    fn stats(bytes: &[u8]) -> Randomness {
        let mut r = Randomness::default();
        r.push(bytes, 4096);
        r
    }

    #[test]
    fn random_data_looks_random() {
        let mut rejected = 0;
        for seed in 0..2000 {
            if !stats(&random_bytes(seed, 96)).looks_random() {
                rejected += 1;
            }
        }
        // Not one genuine random flight may be rejected: a retrying client would use it.
        assert_eq!(rejected, 0, "{rejected} of 2000 rejected");
    }

    #[test]
    fn text_and_zeros_do_not() {
        assert!(!stats(&[0u8; 200]).looks_random());
        assert!(!stats(&[0xFFu8; 200]).looks_random());
        let text = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n".repeat(3);
        assert!(!stats(&text).looks_random());
        let mut prefixed = b"abcdefghijklmnopqrstu".to_vec();
        prefixed.extend(random_bytes(1, 120));
        assert!(stats(&prefixed).early_fail());
    }

    #[test]
    fn short_random_flights_look_random() {
        // Flight 3 can be as short as 56 bytes (no PadC): no genuine one refused.
        for len in [56, 60, 80, 96] {
            for seed in 0..20_000 {
                assert!(
                    stats(&random_bytes(seed, len)).looks_random(),
                    "{len} bytes, seed {seed}"
                );
            }
        }
    }

    #[test]
    fn short_random_flights_are_not_text_and_text_is() {
        // Genuine RC4 output of the short flights the exact layouts judge (14-byte VC flight,
        // 5-byte first message, 68-byte handshake): never refused, whatever the seed.
        for len in [5, 9, 14, 20, 32, 68] {
            for seed in 0..20_000 {
                assert!(
                    stats(&random_bytes(seed, len)).not_text(),
                    "{len} bytes, seed {seed}"
                );
            }
        }
        // All-printable bytes are refused from 15 bytes on; an HTTP reply line always.
        assert!(stats(b"abcdefghijklmn").not_text());
        assert!(!stats(b"abcdefghijklmno").not_text());
        let reply =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 123\r\nServer: x\r\n";
        assert!(!stats(&reply[..68]).not_text());
    }

    #[test]
    fn stats_are_chunking_independent() {
        let data = random_bytes(9, 700);
        let mut whole = Randomness::default();
        whole.push(&data, 609);
        let mut pieces = Randomness::default();
        for chunk in data.chunks(7) {
            pieces.push(chunk, 609);
        }
        assert_eq!(whole, pieces);
        assert_eq!(whole.n, 609);
        assert_eq!(flight_stats(&data, 0, 700, 609), whole);
    }
}
