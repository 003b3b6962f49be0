//! UDP ASSOCIATE (RFC 1928 §7).
//!
//! Two sockets per association: the *relay* socket, bound on the address the client reached
//! us on, talks only to the client; the *outbound* socket (dual-stack when the host allows)
//! talks to targets. The relay socket accepts datagrams only from the client's address and,
//! once known, its port (from the request, or the first datagram). Fragments (FRAG != 0),
//! headers with a non-zero RSV field and datagrams to port 0 are dropped and counted. Each (association, remote endpoint) pair has a [`UdpFlow`] classifier
//! state in a bounded map; BitTorrent datagrams are dropped, counted and struck, and an
//! association that keeps sending them can be torn down (`udp_teardown_after_blocks`).
//! Datagrams from endpoints the client never sent to are dropped. Replies are wrapped in the
//! SOCKS UDP header. The association ends with its TCP control connection or when idle.
//!
//! Datagrams move in batches (`recvmmsg`/`sendmmsg`, [`super::udp_batch`]): each datagram of
//! a batch is checked, classified and enforced on its own, in order, and the ones to relay go
//! out together, without a copy or an allocation per datagram.
//!
//! A batch never waits for a name lookup: a client datagram addressed by a name not yet in the
//! association's cache is held as an exact-size copy (at most 32 datagrams and 64 KiB per
//! association, 16 MiB for the whole process; past that it is dropped and counted
//! `dropped_resolving`), and once the batch is given back the names are looked up and the held
//! datagrams relayed in order. A slow resolver (a lookup waits up to `connect_timeout`) thus
//! pins no receive batch: before, each association waiting for a lookup held one, with every
//! page its datagrams had touched (about 420 KB per association when flooded with large
//! datagrams to names that never resolve).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use swarmwall_core::classify::{BtForm, Direction, FlowContext, UdpFlow, Verdict};
use swarmwall_core::socks5::{
    Address, AddressRef, Error as Socks5Error, Reply, UdpHeader, UdpHeaderRef,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::context::{SessionContext, send_reply};
use super::enforce::{self, enforce_destination_name, strike};
use super::idle::Activity;
use super::limits::{self, HeldBytes};
use super::refusal::Refusal;
use super::udp_batch::{DatagramBatch, Sent};
use super::udp_socket::DatagramSocket;
use crate::metrics::{DatagramLabels, DirectionLabels, VerdictLabels};
use crate::policy::{PolicyDecision, TrafficAction};
use crate::sharded_counter::ShardedCounter;

/// Most resolved names cached per association.
const MAX_NAMES: usize = 64;
/// Most ports cached per resolved name.
const MAX_PORTS_PER_NAME: usize = 8;
/// Most bytes of datagrams one association holds while their destination names resolve
/// (beside the process-wide [`limits::HELD_DATAGRAM_BYTES_MAX`]).
const MAX_HELD_BYTES: usize = 64 * 1024;
/// Most datagrams one association holds while their destination names resolve.
const MAX_HELD_DATAGRAMS: usize = 32;

/// Carry out a UDP ASSOCIATE request.
pub(super) async fn run(context: &SessionContext, mut control: TcpStream, requested: &Address) {
    // The relay socket binds on the address the client connected to.
    let Ok(local) = control.local_addr() else {
        return;
    };
    let relay = match DatagramSocket::bind(SocketAddr::new(local.ip(), 0)).and_then(outside_reserve)
    {
        Ok(socket) => socket,
        Err(error) => {
            context.refused(Refusal::BindFailed);
            let reply = Reply::from_io_kind(error.kind());
            let _ = send_reply(&mut control, reply, &Address::UNSPECIFIED).await;
            return;
        }
    };
    let outbound = match bind_outbound().and_then(outside_reserve) {
        Ok(socket) => socket,
        Err(error) => {
            context.refused(Refusal::BindFailed);
            let reply = Reply::from_io_kind(error.kind());
            let _ = send_reply(&mut control, reply, &Address::UNSPECIFIED).await;
            return;
        }
    };
    let bound = relay.local_addr().map_or(Address::UNSPECIFIED, Address::Ip);
    if send_reply(&mut control, Reply::Succeeded, &bound)
        .await
        .is_err()
    {
        return;
    }
    // Read once: the family of the outbound socket decides how targets are addressed.
    let outbound_v6 = outbound.local_addr().is_ok_and(|local| local.is_ipv6());
    let client_port = match requested {
        Address::Ip(address) if address.port() != 0 => Some(address.port()),
        _ => None,
    };
    let mut association = Association {
        context,
        relay,
        outbound,
        client_ip: context.client,
        client_port,
        flows: HashMap::new(),
        names: HashMap::new(),
        named: HashSet::new(),
        blocked: 0,
        relayed_since_touch: false,
        batch_received: Instant::now(),
        held: Vec::new(),
        failed_lookups: Vec::new(),
        outbound_v6,
        relayed: RelayedCounters::new(context),
        wrapped: Vec::with_capacity(32),
    };
    association.run(&mut control).await;
}

/// A datagram from the client whose destination name was not resolved when its batch was
/// handled: an exact-size copy, relayed once the batch is given back and the name resolved.
struct HeldDatagram<'a> {
    bytes: Box<[u8]>,
    source: SocketAddr,
    /// Its share of the process-wide budget, given back when it is relayed or dropped.
    _reserved: HeldBytes<'a>,
}

/// Per-remote-endpoint state.
struct Flow {
    classifier: UdpFlow,
    last_seen: Instant,
    /// Verdict already counted in metrics.
    counted: bool,
    /// A strike was already recorded for this endpoint.
    struck: bool,
}

struct Association<'a> {
    context: &'a SessionContext,
    relay: DatagramSocket,
    outbound: DatagramSocket,
    client_ip: IpAddr,
    client_port: Option<u16>,
    flows: HashMap<SocketAddr, Flow>,
    /// Resolved names: per name, the ports asked for and their addresses (looked up by the
    /// borrowed name, so a cached name costs no allocation per datagram).
    names: HashMap<String, Vec<(u16, SocketAddr)>>,
    /// Known BitTorrent destination names already counted and struck (bounded).
    named: HashSet<String>,
    blocked: u32,
    /// A datagram was relayed since the idle clock was last touched.
    relayed_since_touch: bool,
    /// When the batch being handled was received: the time of every datagram in it (one clock
    /// read per batch, not one per datagram).
    batch_received: Instant,
    /// Datagrams waiting for their destination names to resolve, in arrival order: a lookup
    /// never runs while a receive batch (32 slots of 64 KiB) is held.
    held: Vec<HeldDatagram<'a>>,
    /// Names and ports whose lookup failed while relaying the held datagrams (each is looked
    /// up once per round, not once per datagram).
    failed_lookups: Vec<(String, u16)>,
    /// The outbound socket is IPv6 (targets are addressed as IPv4-mapped IPv6).
    outbound_v6: bool,
    /// Counters of relayed datagrams, looked up once per association.
    relayed: RelayedCounters,
    /// Reused buffer for the SOCKS UDP header of a reply (no allocation per datagram).
    wrapped: Vec<u8>,
}

/// The per-datagram counters of the relayed path, per direction: datagrams and bytes.
struct RelayedCounters {
    to_target: (ShardedCounter, ShardedCounter),
    to_client: (ShardedCounter, ShardedCounter),
}

impl RelayedCounters {
    fn new(context: &SessionContext) -> Self {
        let metrics = &context.shared.metrics;
        // One statement per lookup (a family read guard lives until the statement's end).
        let pair = |direction: &'static str| {
            let datagrams = metrics
                .udp_datagrams
                .get_or_create(&DatagramLabels {
                    direction,
                    outcome: "relayed",
                })
                .clone();
            let bytes = metrics
                .bytes
                .get_or_create(&DirectionLabels { direction })
                .clone();
            (datagrams, bytes)
        };
        Self {
            to_target: pair("client_to_target"),
            to_client: pair("target_to_client"),
        }
    }
}

/// What to do after a datagram or a batch.
enum Next {
    Continue,
    TearDown,
}

/// What becomes of one datagram.
enum Forward {
    /// Relay bytes `offset..` of the datagram to `destination` (after the header in
    /// `Association::wrapped`, when `wrapped`).
    To {
        offset: usize,
        destination: SocketAddr,
        wrapped: bool,
    },
    /// Its destination name is not resolved yet: hold a copy and relay it after the batch.
    Unresolved,
    /// Dropped (and counted).
    Drop,
    /// Dropped, and the association ends.
    TearDown,
}

impl From<Next> for Forward {
    fn from(next: Next) -> Self {
        match next {
            Next::Continue => Self::Drop,
            Next::TearDown => Self::TearDown,
        }
    }
}

/// Which side a batch came from.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Target,
}

impl Association<'_> {
    async fn run(&mut self, control: &mut TcpStream) {
        let mut probe = [0u8; 64];
        let idle_timeout = self.context.runtime.server.udp_idle_timeout;
        // One idle timer for the whole association (not one per datagram): it re-reads the
        // time of the last relayed datagram whenever it fires.
        let activity = Activity::new();
        let idle = activity.idle(idle_timeout);
        tokio::pin!(idle);
        // `[server] udp_busy_poll`: after a relayed batch, poll again (yielding, so the thread's
        // other sessions and its I/O driver run) until this deadline instead of sleeping.
        let busy_poll = self.context.runtime.server.udp_busy_poll;
        let mut polling_until: Option<Instant> = None;
        loop {
            let next = tokio::select! {
                read = control.read(&mut probe) => match read {
                    // The association ends with its control connection (bytes on it are ignored).
                    Ok(0) | Err(_) => return,
                    Ok(_) => Next::Continue,
                },
                ready = self.relay.readable() => match ready {
                    Ok(()) => self.batch(Side::Client).await,
                    Err(_) => return,
                },
                ready = self.outbound.readable() => match ready {
                    Ok(()) => self.batch(Side::Target).await,
                    Err(_) => return,
                },
                () = &mut idle => return,
                () = tokio::task::yield_now(), if polling_until.is_some() => {
                    if polling_until.is_some_and(|until| Instant::now() >= until) {
                        polling_until = None;
                    }
                    Next::Continue
                }
            };
            if std::mem::take(&mut self.relayed_since_touch) {
                activity.touch();
                if !busy_poll.is_zero() {
                    polling_until = Some(Instant::now() + busy_poll);
                }
            }
            if let Next::TearDown = next {
                tracing::debug!("UDP association torn down after repeated BitTorrent");
                return;
            }
        }
    }

    /// Receive a batch on one side's socket, handle each datagram in order and send the ones
    /// relayed out of the other side's socket together.
    async fn batch(&mut self, side: Side) -> Next {
        let mut batch = DatagramBatch::take();
        let next = self.batch_in(side, &mut batch).await;
        batch.give_back();
        match next {
            Next::Continue if !self.held.is_empty() => self.relay_held().await,
            next => next,
        }
    }

    async fn batch_in(&mut self, side: Side, batch: &mut DatagramBatch) -> Next {
        let socket = match side {
            Side::Client => &self.relay,
            Side::Target => &self.outbound,
        };
        if batch.try_recv(socket).is_err() {
            return Next::Continue;
        }
        self.batch_received = Instant::now();
        let mut next = Next::Continue;
        for index in 0..batch.received() {
            let Some((datagram, source)) = batch.datagram(index) else {
                continue;
            };
            let forward = match side {
                Side::Client => {
                    self.handle_client_datagram(datagram, source, Resolution::Hold)
                        .await
                }
                Side::Target => self.handle_target_datagram(datagram, source).await,
            };
            match forward {
                Forward::To {
                    offset,
                    destination,
                    wrapped,
                } => {
                    let header: &[u8] = if wrapped { &self.wrapped } else { &[] };
                    batch.queue(index, offset, header, destination);
                }
                Forward::Unresolved => self.hold(datagram, source),
                Forward::Drop => {}
                Forward::TearDown => {
                    next = Next::TearDown;
                    break;
                }
            }
        }
        let (socket, counters) = match side {
            Side::Client => (&self.outbound, &self.relayed.to_target),
            Side::Target => (&self.relay, &self.relayed.to_client),
        };
        let sent = batch.flush(socket).await;
        if sent != Sent::default() {
            counters.0.inc_by(sent.datagrams);
            counters.1.inc_by(sent.payload_bytes);
            self.relayed_since_touch = true;
        }
        next
    }

    fn count(&self, direction: &'static str, outcome: &'static str) {
        self.context
            .shared
            .metrics
            .udp_datagrams
            .get_or_create(&DatagramLabels { direction, outcome })
            .inc();
    }

    /// Keep an exact-size copy of a datagram whose destination name is being resolved, within
    /// the association's and the process's budgets; past either it is dropped and counted.
    fn hold(&mut self, datagram: &[u8], source: SocketAddr) {
        let held_bytes: usize = self.held.iter().map(|held| held.bytes.len()).sum();
        let fits =
            self.held.len() < MAX_HELD_DATAGRAMS && held_bytes + datagram.len() <= MAX_HELD_BYTES;
        let reserved = fits
            .then(|| {
                self.context
                    .shared
                    .held_datagrams
                    .reserve(datagram.len(), limits::HELD_DATAGRAM_BYTES_MAX)
            })
            .flatten();
        let Some(reserved) = reserved else {
            self.count("client_to_target", "dropped_resolving");
            return;
        };
        self.held.push(HeldDatagram {
            bytes: datagram.into(),
            source,
            _reserved: reserved,
        });
    }

    /// Relay the held datagrams, in order, now that no receive batch is held: each name is
    /// looked up (once per name and port), then the datagram goes through the same checks as
    /// any other and out of the outbound socket on its own.
    async fn relay_held(&mut self) -> Next {
        let held = std::mem::take(&mut self.held);
        for datagram in held {
            let forward = self
                .handle_client_datagram(&datagram.bytes, datagram.source, Resolution::Lookup)
                .await;
            match forward {
                Forward::To {
                    offset,
                    destination,
                    ..
                } => {
                    let payload = datagram.bytes.get(offset..).unwrap_or_default();
                    if self.outbound.send_to(payload, destination).await.is_ok() {
                        self.relayed.to_target.0.inc_by(1);
                        self.relayed.to_target.1.inc_by(payload.len() as u64);
                        self.relayed_since_touch = true;
                    }
                }
                Forward::Unresolved | Forward::Drop => {}
                Forward::TearDown => return Next::TearDown,
            }
        }
        self.failed_lookups.clear();
        Next::Continue
    }

    async fn handle_client_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        resolution: Resolution,
    ) -> Forward {
        const DIRECTION: &str = "client_to_target";
        if source.ip().to_canonical() != self.client_ip
            || self.client_port.is_some_and(|port| port != source.port())
        {
            self.count(DIRECTION, "dropped_foreign_source");
            return Forward::Drop;
        }
        // Borrowed: nothing is allocated per datagram, a domain name included.
        let (header, offset) = match UdpHeaderRef::decode(datagram) {
            Ok(decoded) => decoded,
            Err(Socks5Error::ReservedNotZero) => {
                self.count(DIRECTION, "dropped_reserved");
                return Forward::Drop;
            }
            Err(_) => {
                self.count(DIRECTION, "dropped_malformed");
                return Forward::Drop;
            }
        };
        if header.frag != 0 {
            self.count(DIRECTION, "dropped_fragment");
            return Forward::Drop;
        }
        if header.address.port() == 0 {
            // Nothing listens on port 0 and the kernel refuses to send there: say so.
            self.count(DIRECTION, "dropped_port_zero");
            return Forward::Drop;
        }
        self.client_port = Some(source.port());
        if let AddressRef::Domain(name, _) = header.address
            && let Some(form) = self.context.runtime.policy.destination_form(name)
            && let Some(next) = self.enforce_name(name, form, DIRECTION).await
        {
            return next.into();
        }
        let target = match self.resolve(header.address, resolution).await {
            Resolved::To(target) => target,
            Resolved::Pending => return Forward::Unresolved,
            Resolved::Refused => {
                self.count(DIRECTION, "dropped_policy");
                return Forward::Drop;
            }
        };
        let payload = datagram.get(offset..).unwrap_or_default();
        let verdict = self.classify(target, Direction::ClientToServer, payload, true);
        if let Some(next) = self.enforce(verdict, target, DIRECTION).await {
            return next.into();
        }
        let destination = if self.outbound_v6 {
            map_to_ipv6(target)
        } else {
            target
        };
        Forward::To {
            offset,
            destination,
            wrapped: false,
        }
    }

    async fn handle_target_datagram(&mut self, datagram: &[u8], source: SocketAddr) -> Forward {
        const DIRECTION: &str = "target_to_client";
        let source = SocketAddr::new(source.ip().to_canonical(), source.port());
        let (Some(port), true) = (self.client_port, self.flows.contains_key(&source)) else {
            self.count(DIRECTION, "dropped_foreign_source");
            return Forward::Drop;
        };
        let verdict = self.classify(source, Direction::ServerToClient, datagram, false);
        if let Some(next) = self.enforce(verdict, source, DIRECTION).await {
            return next.into();
        }
        // The reply goes out as this header, then the datagram as received (no copy).
        self.wrapped.clear();
        UdpHeader {
            frag: 0,
            address: Address::Ip(source),
        }
        .encode(&mut self.wrapped);
        Forward::To {
            offset: 0,
            destination: SocketAddr::new(self.client_ip, port),
            wrapped: true,
        }
    }

    /// Classify a datagram exchanged with `remote`; `create` makes the flow when missing.
    fn classify(
        &mut self,
        remote: SocketAddr,
        direction: Direction,
        payload: &[u8],
        create: bool,
    ) -> Verdict {
        let now = self.batch_received;
        if !self.flows.contains_key(&remote) {
            if !create {
                return Verdict::NeedMore;
            }
            let max = self.context.runtime.server.max_udp_flows_per_association as usize;
            if self.flows.len() >= max
                && let Some(oldest) = self
                    .flows
                    .iter()
                    .min_by_key(|(_, flow)| flow.last_seen)
                    .map(|(key, _)| *key)
            {
                self.flows.remove(&oldest);
            }
            let corroborated = self
                .context
                .shared
                .correlation
                .record_endpoint_corroborated(self.context.client_key, remote, now);
            let classifier = UdpFlow::new(FlowContext {
                corroborated,
                ..FlowContext::proxy(remote.port())
            });
            self.flows.insert(
                remote,
                Flow {
                    classifier,
                    last_seen: now,
                    counted: false,
                    struck: false,
                },
            );
        }
        let Some(flow) = self.flows.get_mut(&remote) else {
            return Verdict::NeedMore;
        };
        flow.last_seen = now;
        let verdict = flow.classifier.handle_datagram(direction, payload);
        if verdict.is_final() && !flow.counted {
            flow.counted = true;
            if let (Verdict::BitTorrent(form), Direction::ServerToClient) = (verdict, direction) {
                enforce::remote_spoke(self.context, form, remote);
            }
            let (class, label) = match verdict {
                Verdict::BitTorrent(form) => ("bittorrent", form.as_str()),
                Verdict::Benign(benign) => ("benign", benign.as_str()),
                Verdict::GaveUp | Verdict::NeedMore => ("unknown", "unknown"),
            };
            self.context
                .shared
                .metrics
                .verdicts
                .get_or_create(&VerdictLabels {
                    transport: "udp",
                    class,
                    label,
                })
                .inc();
        }
        verdict
    }

    /// Apply the traffic-class action to a BitTorrent verdict: `Some` when the datagram must
    /// not be relayed.
    async fn enforce(
        &mut self,
        verdict: Verdict,
        remote: SocketAddr,
        direction: &'static str,
    ) -> Option<Next> {
        let form = verdict.bittorrent_form()?;
        let context = self.context;
        if enforce::detected(context, form) != TrafficAction::Block {
            return None;
        }
        self.count(direction, "dropped_bittorrent");
        enforce::count_block(context, "udp", form);
        let first = self
            .flows
            .get_mut(&remote)
            .map(|flow| !std::mem::replace(&mut flow.struck, true))
            .unwrap_or(false);
        if first {
            strike(context, form).await;
        }
        Some(self.after_block())
    }

    /// A datagram addressed to a known BitTorrent destination name (spec §1.13): counted and
    /// struck once per name, every such datagram dropped while the form's action is block.
    async fn enforce_name(
        &mut self,
        name: &str,
        form: BtForm,
        direction: &'static str,
    ) -> Option<Next> {
        let name = crate::policy::normalize_domain(name);
        let context = self.context;
        if !self.named.contains(&name) {
            if self.named.len() >= MAX_NAMES {
                self.named.clear();
            }
            self.named.insert(name);
            // Counts the verdict, applies the action and strikes on block.
            if !enforce_destination_name(context, form, "udp").await {
                return None;
            }
        } else {
            if enforce::action_for(context, form) != TrafficAction::Block {
                return None;
            }
            enforce::count_block(context, "udp", form);
        }
        self.count(direction, "dropped_bittorrent");
        Some(self.after_block())
    }

    /// Count one more blocked datagram; tear the association down past the configured limit.
    fn after_block(&mut self) -> Next {
        let context = self.context;
        self.blocked = self.blocked.saturating_add(1);
        // `[policy] udp_teardown_after_blocks` wins; `[server]` keeps the older spelling.
        let limit = context
            .runtime
            .policy
            .udp_teardown_after_blocks()
            .unwrap_or(context.runtime.server.udp_teardown_after_blocks);
        if limit != 0 && self.blocked >= limit {
            return Next::TearDown;
        }
        Next::Continue
    }

    /// The address to send to: names are checked, resolved (cached) and the address checked.
    /// With [`Resolution::Hold`] a name not in the cache is not looked up: `Pending`.
    async fn resolve(&mut self, address: AddressRef<'_>, resolution: Resolution) -> Resolved {
        let policy = &self.context.runtime.policy;
        let (target, domain) = match address {
            AddressRef::Ip(target) => (target, None),
            AddressRef::Domain(name, port) => {
                let cached = self.names.get(name).and_then(|ports| {
                    ports
                        .iter()
                        .find_map(|&(cached, target)| (cached == port).then_some(target))
                });
                let target = match cached {
                    Some(target) => target,
                    None => {
                        if let PolicyDecision::Deny(_) = policy.check_domain(name, port) {
                            return Resolved::Refused;
                        }
                        if let Resolution::Hold = resolution {
                            return Resolved::Pending;
                        }
                        match self.look_up(name, port).await {
                            Some(target) => target,
                            None => return Resolved::Refused,
                        }
                    }
                };
                (target, Some(name))
            }
        };
        let target = SocketAddr::new(target.ip().to_canonical(), target.port());
        match policy.check_address(target, domain) {
            PolicyDecision::Allow => Resolved::To(target),
            PolicyDecision::Deny(_) => Resolved::Refused,
        }
    }

    /// Look `name` up (bounded by `connect_timeout`) and cache its first address, IPv4 first;
    /// `None` when it has none or the lookup failed (remembered until the held datagrams are
    /// relayed, so a name is not looked up once per datagram).
    async fn look_up(&mut self, name: &str, port: u16) -> Option<SocketAddr> {
        let failed = |(failed, failed_port): &(String, u16)| failed == name && *failed_port == port;
        if self.failed_lookups.iter().any(failed) {
            return None;
        }
        let context = self.context;
        let lookup = tokio::time::timeout(
            context.runtime.server.connect_timeout,
            context
                .shared
                .lookups
                .addresses(context.client_key, name, port),
        )
        .await;
        let mut candidates = match lookup {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(_)) | Err(_) => Vec::new(),
        };
        candidates.sort_by_key(SocketAddr::is_ipv6);
        let Some(&target) = candidates.first() else {
            if self.failed_lookups.len() < MAX_HELD_DATAGRAMS {
                self.failed_lookups.push((name.to_owned(), port));
            }
            return None;
        };
        if self.names.len() >= MAX_NAMES && !self.names.contains_key(name) {
            self.names.clear();
        }
        let ports = self.names.entry(name.to_owned()).or_default();
        if ports.len() >= MAX_PORTS_PER_NAME {
            ports.clear();
        }
        ports.push((port, target));
        Some(target)
    }
}

/// Whether a name missing from the cache is looked up now or left for later.
#[derive(Clone, Copy)]
enum Resolution {
    /// Inside a receive batch: never wait for a lookup (the datagram is held instead).
    Hold,
    /// Outside any batch: look the name up.
    Lookup,
}

/// The destination of a client datagram.
enum Resolved {
    /// Relay to this address.
    To(SocketAddr),
    /// The name is not resolved yet (only with [`Resolution::Hold`]).
    Pending,
    /// Refused by policy, or the name has no address.
    Refused,
}

/// The outbound socket: dual-stack `[::]:0` when possible, else `0.0.0.0:0`.
fn bind_outbound() -> std::io::Result<DatagramSocket> {
    let dual = (|| {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_only_v6(false)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).into())?;
        DatagramSocket::new(socket.into())
    })();
    match dual {
        Ok(socket) => Ok(socket),
        Err(_) => DatagramSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    }
}

/// `socket`, unless its descriptor lies in the admin listener's reserve.
fn outside_reserve(socket: DatagramSocket) -> std::io::Result<DatagramSocket> {
    super::fd_reserve::check(&socket).map(|()| socket)
}

/// IPv4 targets are sent to as IPv4-mapped IPv6 addresses on a dual-stack socket.
fn map_to_ipv6(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), address.port()),
        IpAddr::V6(_) => address,
    }
}
