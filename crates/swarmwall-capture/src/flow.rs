//! The flow table: groups decoded packets into TCP and UDP flows, reassembles TCP, unwraps
//! SOCKS5, and feeds `swarmwall_core::classify` exactly as the proxy does.
//!
//! Direction: the initiator (`a`, the classifier's client) is the SYN sender; without a SYN,
//! the receiver of a SYN-ACK; without either, the side not on a well-known port (< 1024) when
//! exactly one side is; otherwise the first packet's sender. The table holds at most
//! [`InspectOptions::max_flows`] flows; when full, the least recently seen eighth is finished
//! early (their records are kept).
//!
//! Corroboration: as in the proxy, a [`Correlator`] keyed by the client (here: the initiator's
//! IP address) collects BitTorrent detections and UDP endpoints, and a new flow's
//! [`FlowContext::corroborated`] comes from it. Its clock is the capture's own time (packet
//! timestamps, never going backwards), anchored at the moment the inspector was created.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use swarmwall_core::classify::{
    Benign, ClientKey, Correlator, CorrelatorConfig, Direction, FlowContext, MseStrictness,
    TcpFlow, UdpFlow, Verdict,
};

use crate::decode::{Decoded, Segment, Transport, decode};
use crate::reader::PacketRecord;
use crate::reassembly::Reassembler;
use crate::socks5::{self, Address, Command, TcpPrefix};

/// Most inner destinations classified separately on one SOCKS5 UDP relay flow.
const MAX_RELAY_DESTINATIONS: usize = 64;

/// Options of the offline inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectOptions {
    /// MSE heuristic strictness passed to every flow's [`FlowContext`].
    pub mse_strictness: MseStrictness,
    /// Most flows tracked at once.
    pub max_flows: usize,
    /// Detect and skip SOCKS5 negotiations, classifying the tunnelled bytes.
    pub socks5: bool,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            mse_strictness: MseStrictness::default(),
            max_flows: 1 << 20,
            socks5: true,
        }
    }
}

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4 {
    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// The result for one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// Creation order within the capture (0-based).
    pub id: u64,
    /// TCP or UDP.
    pub l4: L4,
    /// The initiator (client) endpoint.
    pub initiator: SocketAddr,
    /// The responder (server) endpoint.
    pub responder: SocketAddr,
    /// The classifier's final verdict (for SOCKS5 flows: of the tunnelled bytes).
    pub verdict: Verdict,
    /// True when the flow was SOCKS5 (TCP negotiation, or datagrams on a UDP relay).
    pub socks5: bool,
    /// Packets seen in both directions.
    pub packets: u64,
    /// Frame bytes on the wire (as recorded in the capture) in both directions.
    pub bytes: u64,
    /// Out-of-order holes given up on during TCP reassembly (capture drops).
    pub gaps: u32,
}

impl FlowRecord {
    /// Report label: `bittorrent.<form>` for BitTorrent (also inside SOCKS5), the benign
    /// protocol or `unknown` otherwise; SOCKS5 flows get a `socks5.` prefix (`socks5.tls`,
    /// `socks5.unknown`), and `socks5` alone when no tunnel was set up.
    pub fn label(&self) -> String {
        match self.verdict {
            Verdict::BitTorrent(_) => self.verdict.label(),
            Verdict::Benign(Benign::Socks5) => "socks5".to_owned(),
            verdict if self.socks5 => {
                let inner = if verdict.is_final() {
                    verdict.label()
                } else {
                    "unknown".to_owned()
                };
                format!("socks5.{inner}")
            }
            Verdict::NeedMore => "unknown".to_owned(),
            verdict => verdict.label(),
        }
    }
}

/// Counters over all packets handed to the inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketStats {
    /// Packet records seen.
    pub packets: u64,
    /// TCP or UDP packets assigned to flows.
    pub tcp_udp: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// Other IP protocols or non-IP frames.
    pub other: u64,
    /// Frames of an unsupported link type.
    pub unsupported_link: u64,
    /// Frames whose headers did not parse.
    pub malformed: u64,
    /// Flows finished early because the table was full.
    pub evicted_flows: u64,
}

/// Offline inspector for one capture: feed packets, then [`Inspector::finish`].
#[derive(Debug)]
pub struct Inspector {
    options: InspectOptions,
    flows: HashMap<FlowKey, Flow, FastHash>,
    relays: HashSet<SocketAddr, FastHash>,
    done: Vec<FlowRecord>,
    next_id: u64,
    stats: PacketStats,
    correlator: Correlator,
    clock: CaptureClock,
}

/// Maps capture timestamps onto [`Instant`]s for the correlator.
#[derive(Debug)]
struct CaptureClock {
    anchor: Instant,
    first: Option<Duration>,
    elapsed: Duration,
}

impl CaptureClock {
    fn handle_timestamp(&mut self, timestamp: Duration) {
        let first = *self.first.get_or_insert(timestamp);
        self.elapsed = self.elapsed.max(timestamp.saturating_sub(first));
    }

    fn now(&self) -> Instant {
        self.anchor.checked_add(self.elapsed).unwrap_or(self.anchor)
    }
}

impl Inspector {
    /// A new inspector with empty state.
    pub fn new(options: InspectOptions) -> Self {
        Self {
            options,
            flows: HashMap::default(),
            relays: HashSet::default(),
            done: Vec::new(),
            next_id: 0,
            stats: PacketStats::default(),
            correlator: Correlator::new(CorrelatorConfig::default()),
            clock: CaptureClock {
                anchor: Instant::now(),
                first: None,
                elapsed: Duration::ZERO,
            },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PacketStats {
        self.stats
    }

    /// Decode and account one packet record.
    pub fn handle_packet(&mut self, record: &PacketRecord<'_>) {
        self.stats.packets += 1;
        self.clock.handle_timestamp(record.timestamp);
        match decode(record.linktype, record.data) {
            Decoded::Segment(segment) => {
                self.stats.tcp_udp += 1;
                self.handle_segment(&segment, u64::from(record.wire_len));
            }
            Decoded::Fragment => self.stats.fragments += 1,
            Decoded::Other => self.stats.other += 1,
            Decoded::UnsupportedLink => self.stats.unsupported_link += 1,
            Decoded::Malformed => self.stats.malformed += 1,
        }
    }

    /// Finish every flow (the classifier is told no more bytes come) and return all records in
    /// creation order.
    pub fn finish(mut self) -> (Vec<FlowRecord>, PacketStats) {
        let flows: Vec<Flow> = self.flows.drain().map(|(_, flow)| flow).collect();
        for flow in flows {
            self.done.push(flow.finish());
        }
        self.done.sort_unstable_by_key(|record| record.id);
        (self.done, self.stats)
    }

    fn handle_segment(&mut self, segment: &Segment<'_>, wire_len: u64) {
        let src = SocketAddr::new(segment.src, segment.src_port);
        let dst = SocketAddr::new(segment.dst, segment.dst_port);
        let l4 = match segment.transport {
            Transport::Tcp { .. } => L4::Tcp,
            Transport::Udp => L4::Udp,
        };
        let key = FlowKey::new(l4, src, dst);
        let tick = self.stats.packets;
        // A new SYN on a closed TCP flow starts a new flow.
        if let Transport::Tcp { flags, .. } = segment.transport
            && flags.syn
            && !flags.ack
            && self.flows.get(&key).is_some_and(Flow::is_closed)
            && let Some(old) = self.flows.remove(&key)
        {
            self.done.push(old.finish());
        }
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.options.max_flows.max(1) {
                self.evict();
            }
            let flow = self.new_flow(segment, src, dst);
            self.flows.insert(key, flow);
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        flow.packets += 1;
        flow.bytes += wire_len;
        flow.last_seen = tick;
        let direction = if src == flow.initiator {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let server_ip = flow.responder.ip();
        let learned = match (&mut flow.state, segment.transport) {
            (State::Tcp(tcp), Transport::Tcp { seq, flags }) => {
                tcp.handle(direction, seq, flags, segment, server_ip)
            }
            (State::Udp(udp), Transport::Udp) => {
                udp.handle(direction, segment.payload);
                None
            }
            _ => None,
        };
        if let State::Tcp(tcp) = &mut flow.state
            && !tcp.candidate_recorded
            && tcp.classifier.is_mse_candidate()
        {
            // E4 fan-out, as in the proxy: this flow may make the client's count.
            tcp.candidate_recorded = true;
            let client = client_key(flow.initiator.ip());
            let now = self.clock.now();
            self.correlator
                .record_candidate(client, flow.responder, now);
            if self.correlator.is_corroborated(client, flow.responder, now) {
                tcp.classifier.corroborate();
            }
        }
        if !flow.reported
            && let Some(form) = flow.verdict().bittorrent_form()
        {
            flow.reported = true;
            let client = client_key(flow.initiator.ip());
            self.correlator
                .record_detection(client, form, self.clock.now());
        }
        if let Some(relay) = learned
            && self.relays.len() < self.options.max_flows
        {
            self.relays.insert(relay);
        }
    }

    fn new_flow(&mut self, segment: &Segment<'_>, src: SocketAddr, dst: SocketAddr) -> Flow {
        let id = self.next_id;
        self.next_id += 1;
        let sender_initiates = match segment.transport {
            Transport::Tcp { flags, .. } if flags.syn => !flags.ack,
            Transport::Udp if self.relays.contains(&dst) => true,
            Transport::Udp if self.relays.contains(&src) => false,
            // Without a handshake: the side on a well-known port is the server.
            _ => !(segment.src_port < 1024 && segment.dst_port >= 1024),
        };
        let (initiator, responder) = if sender_initiates {
            (src, dst)
        } else {
            (dst, src)
        };
        let mut context = FlowContext::offline(responder.port());
        context.mse_strictness = self.options.mse_strictness;
        let client = client_key(initiator.ip());
        let now = self.clock.now();
        context.corroborated = self.correlator.is_corroborated(client, responder, now);
        if let Transport::Udp = segment.transport {
            self.correlator.record_endpoint(client, responder, now);
        }
        let state = match segment.transport {
            Transport::Tcp { .. } => State::Tcp(Box::new(TcpState {
                context,
                reassembly: [Reassembler::new(), Reassembler::new()],
                classifier: TcpFlow::new(context),
                socks: if self.options.socks5 {
                    Socks::Detecting(Vec::new(), Vec::new())
                } else {
                    Socks::Off
                },
                fin: [false, false],
                rst: false,
                decided: false,
                candidate_recorded: false,
            })),
            Transport::Udp => State::Udp(Box::new(UdpState {
                context,
                classifier: UdpFlow::new(context),
                relay: self.relays.contains(&responder).then(Vec::new),
            })),
        };
        Flow {
            id,
            initiator,
            responder,
            packets: 0,
            bytes: 0,
            last_seen: 0,
            reported: false,
            state,
        }
    }

    /// Finish the least recently seen eighth of the table.
    fn evict(&mut self) {
        let mut ages: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .map(|(key, flow)| (flow.last_seen, *key))
            .collect();
        let count = (ages.len() / 8).max(1);
        if count < ages.len() {
            ages.select_nth_unstable_by_key(count, |(age, _)| *age);
        }
        for (_, key) in ages.into_iter().take(count) {
            if let Some(flow) = self.flows.remove(&key) {
                self.stats.evicted_flows += 1;
                self.done.push(flow.finish());
            }
        }
    }
}

/// Canonical (direction-free) flow key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    l4: L4,
    low: SocketAddr,
    high: SocketAddr,
}

impl FlowKey {
    fn new(l4: L4, a: SocketAddr, b: SocketAddr) -> Self {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        Self { l4, low, high }
    }
}

#[derive(Debug)]
struct Flow {
    id: u64,
    initiator: SocketAddr,
    responder: SocketAddr,
    packets: u64,
    bytes: u64,
    last_seen: u64,
    /// The BitTorrent verdict was passed to the correlator.
    reported: bool,
    state: State,
}

impl Flow {
    /// The verdict so far (of the tunnelled bytes for SOCKS5).
    fn verdict(&self) -> Verdict {
        match &self.state {
            State::Tcp(tcp) => tcp.classifier.verdict(),
            State::Udp(udp) => match &udp.relay {
                None => udp.classifier.verdict(),
                Some(inner) => inner
                    .iter()
                    .map(|(_, flow)| flow.verdict())
                    .find(|v| v.bittorrent_form().is_some())
                    .unwrap_or(Verdict::NeedMore),
            },
        }
    }

    fn is_closed(&self) -> bool {
        match &self.state {
            State::Tcp(tcp) => tcp.rst || (tcp.fin[0] && tcp.fin[1]),
            State::Udp(_) => false,
        }
    }

    fn finish(self) -> FlowRecord {
        let (l4, verdict, socks5, gaps) = match self.state {
            State::Tcp(mut tcp) => {
                let verdict = tcp.finish();
                let gaps = tcp.reassembly[0].gaps() + tcp.reassembly[1].gaps();
                (L4::Tcp, verdict, !matches!(tcp.socks, Socks::Off), gaps)
            }
            State::Udp(mut udp) => {
                let (verdict, socks5) = udp.finish();
                (L4::Udp, verdict, socks5, 0)
            }
        };
        FlowRecord {
            id: self.id,
            l4,
            initiator: self.initiator,
            responder: self.responder,
            verdict,
            socks5,
            packets: self.packets,
            bytes: self.bytes,
            gaps,
        }
    }
}

#[derive(Debug)]
enum State {
    Tcp(Box<TcpState>),
    Udp(Box<UdpState>),
}

/// SOCKS5 handling of a TCP flow.
#[derive(Debug)]
enum Socks {
    /// Not SOCKS5 (or detection disabled).
    Off,
    /// Buffering the first bytes of each direction (client, server).
    Detecting(Vec<u8>, Vec<u8>),
    /// Negotiation skipped; the classifier sees the tunnelled bytes.
    Tunnel,
    /// SOCKS5 without a CONNECT tunnel (refused, BIND, UDP ASSOCIATE).
    NoTunnel,
}

#[derive(Debug)]
struct TcpState {
    context: FlowContext,
    reassembly: [Reassembler; 2],
    classifier: TcpFlow,
    socks: Socks,
    fin: [bool; 2],
    rst: bool,
    /// A final verdict was reached: stop reassembling.
    decided: bool,
    /// The flow was counted towards the client's MSE fan-out (E4).
    candidate_recorded: bool,
}

impl TcpState {
    /// Handle one segment; returns a UDP relay endpoint learned from a SOCKS5 reply.
    fn handle(
        &mut self,
        direction: Direction,
        seq: u32,
        flags: crate::decode::TcpFlags,
        segment: &Segment<'_>,
        server_ip: IpAddr,
    ) -> Option<SocketAddr> {
        let index = usize::from(direction == Direction::ServerToClient);
        if flags.rst {
            self.rst = true;
        }
        if flags.fin {
            self.fin[index] = true;
        }
        if self.decided {
            return None;
        }
        let mut data_seq = seq;
        if flags.syn {
            self.reassembly[index].handle_syn(seq);
            data_seq = seq.wrapping_add(1);
        }
        let mut learned = None;
        let Self {
            reassembly,
            classifier,
            socks,
            context,
            decided,
            ..
        } = self;
        let (payload, truncated) = (segment.payload, segment.truncated);
        reassembly[index].handle_segment_truncated(data_seq, payload, truncated, |chunk| {
            if *decided {
                return;
            }
            if let Some(relay) = feed(classifier, socks, context, direction, chunk, server_ip) {
                learned = Some(relay);
            }
            *decided = classifier.verdict().is_final() || matches!(socks, Socks::NoTunnel);
        });
        if self.decided {
            // Free the reassembly buffers early.
            self.reassembly = [Reassembler::new(), Reassembler::new()];
            if let Socks::Detecting(..) = self.socks {
                self.socks = Socks::Off;
            }
        }
        learned
    }

    fn finish(&mut self) -> Verdict {
        match self.socks {
            Socks::NoTunnel => Verdict::Benign(Benign::Socks5),
            Socks::Detecting(..) => {
                let (client, server) = match std::mem::replace(&mut self.socks, Socks::Off) {
                    Socks::Detecting(client, server) => (client, server),
                    _ => (Vec::new(), Vec::new()),
                };
                flush(&mut self.classifier, &client, &server);
                self.classifier.handle_idle()
            }
            _ => self.classifier.handle_idle(),
        }
    }
}

/// Feed one in-order chunk to the SOCKS5 detector or the classifier.
fn feed(
    classifier: &mut TcpFlow,
    socks: &mut Socks,
    context: &FlowContext,
    direction: Direction,
    chunk: &[u8],
    server_ip: IpAddr,
) -> Option<SocketAddr> {
    let Socks::Detecting(client, server) = socks else {
        classifier.handle_data(direction, chunk);
        return None;
    };
    let buffer = match direction {
        Direction::ClientToServer => &mut *client,
        Direction::ServerToClient => &mut *server,
    };
    let room = socks5::MAX_PREFIX_BYTES.saturating_sub(buffer.len());
    let (kept, overflow) = chunk.split_at(chunk.len().min(room));
    buffer.extend_from_slice(kept);
    let mut learned = None;
    match socks5::parse_tcp_prefix(client, server) {
        TcpPrefix::NeedMore if overflow.is_empty() => return None,
        TcpPrefix::NeedMore | TcpPrefix::NotSocks => {
            flush(classifier, client, server);
            *socks = Socks::Off;
        }
        TcpPrefix::Refused => *socks = Socks::NoTunnel,
        TcpPrefix::Established(done) => match done.command {
            Command::Connect => {
                let mut inner_context = *context;
                inner_context.server_port = done.target_port;
                *classifier = TcpFlow::new(inner_context);
                flush(
                    classifier,
                    client.get(done.client_bytes..).unwrap_or_default(),
                    server.get(done.server_bytes..).unwrap_or_default(),
                );
                *socks = Socks::Tunnel;
            }
            Command::UdpAssociate => {
                let (address, port) = done.bound;
                let ip = match address {
                    Address::Ip(ip) if !ip.is_unspecified() => ip,
                    _ => server_ip,
                };
                learned = Some(SocketAddr::new(ip, port));
                *socks = Socks::NoTunnel;
            }
            Command::Bind => *socks = Socks::NoTunnel,
        },
    }
    if !overflow.is_empty() && !matches!(socks, Socks::NoTunnel) {
        classifier.handle_data(direction, overflow);
    }
    learned
}

fn flush(classifier: &mut TcpFlow, client: &[u8], server: &[u8]) {
    if !client.is_empty() && !classifier.verdict().is_final() {
        classifier.handle_data(Direction::ClientToServer, client);
    }
    if !server.is_empty() && !classifier.verdict().is_final() {
        classifier.handle_data(Direction::ServerToClient, server);
    }
}

#[derive(Debug)]
struct UdpState {
    context: FlowContext,
    classifier: UdpFlow,
    /// Inner destinations of a SOCKS5 UDP relay flow, each with its own classifier.
    relay: Option<Vec<(SocketAddr, UdpFlow)>>,
}

impl UdpState {
    fn handle(&mut self, direction: Direction, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let Some(inner) = self.relay.as_mut() else {
            if !self.classifier.verdict().is_final() {
                self.classifier.handle_datagram(direction, payload);
            }
            return;
        };
        let Some(header) = socks5::parse_udp_header(payload) else {
            return;
        };
        let Some(key) = socks5::udp_inner_key(payload, &header) else {
            return;
        };
        let datagram = payload.get(header.length..).unwrap_or_default();
        let position = inner.iter().position(|(k, _)| *k == key);
        let flow = match position {
            Some(i) => inner.get_mut(i),
            None if inner.len() < MAX_RELAY_DESTINATIONS => {
                let mut context = self.context;
                context.server_port = header.port;
                inner.push((key, UdpFlow::new(context)));
                inner.last_mut()
            }
            None => None,
        };
        if let Some((_, flow)) = flow
            && !flow.verdict().is_final()
        {
            flow.handle_datagram(direction, datagram);
        }
    }

    fn finish(&mut self) -> (Verdict, bool) {
        match &self.relay {
            None => (self.classifier.verdict(), false),
            Some(inner) => {
                let verdicts = inner.iter().map(|(_, flow)| flow.verdict());
                let bittorrent = verdicts.clone().find(|v| v.bittorrent_form().is_some());
                let first_final = verdicts.clone().find(|v| v.is_final());
                (bittorrent.or(first_final).unwrap_or(Verdict::GaveUp), true)
            }
        }
    }
}

/// The correlator's client key for an address (the correlator holds no address).
fn client_key(ip: IpAddr) -> ClientKey {
    let mut hasher = FxHasher::default();
    match ip {
        IpAddr::V4(v4) => hasher.write_u32(u32::from(v4)),
        IpAddr::V6(v6) => hasher.write(&v6.octets()),
    }
    ClientKey(hasher.finish())
}

/// A small, fast, non-cryptographic hasher for flow keys (FxHash's multiply-rotate). Flow keys
/// come from a capture file, not from a live attacker, so hash flooding is not a concern.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FastHash = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests;
