//! The TCP relay: an inspect phase, then a fast path.
//!
//! Inspect phase: both directions are relayed while every chunk is fed to
//! [`TcpFlow::handle_data`] *before* it is forwarded, so a chunk recognised as BitTorrent is
//! never passed on. A BitTorrent verdict is answered by the traffic-class action (block:
//! close both sides, count, strike; log: count and go on). Any other final verdict (benign,
//! gave up, or the inspect deadline) moves the session to the fast path.
//!
//! Fast path ([`Forwarding`]): a readiness-driven copy per direction with no classifier cost.
//! A direction borrows a relay buffer only while its socket has data and returns it as soon as
//! the socket is drained, so an idle session holds no relay buffer at all. Half-close is
//! forwarded (`shutdown(Write)` on the other side when one side ends), and the session ends
//! when both directions have ended, on the first error, or after `idle_timeout` without a
//! byte either way.
//!
//! One timer per session ([`run`]): the session's clock wakes at the nearer of the inspect
//! deadline (while inspecting) and the idle deadline.

use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::sharded_counter::ShardedCounter;
use socket2::SockRef;
use swarmwall_core::classify::{BtForm, Direction, FlowContext, MseStrictness, TcpFlow, Verdict};
use tokio::net::TcpStream;

use super::context::SessionContext;
use super::drain::{Chunk, Pump, read_chunk, read_ready, write_ready};
use super::enforce;
use super::fast_path::{self, Forwarding};
use super::idle::Activity;
use super::limits::AccountSlot;
use crate::metrics::{DirectionLabels, Metrics, ReasonLabels};
use crate::policy::TrafficAction;

/// Most bytes read at once during the inspect phase.
const INSPECT_CHUNK: usize = 16 * 1024;

/// A relayed session: everything its task keeps while it relays, owned in one place and
/// borrowed by both phases (a copy in a phase's state would stay there for the session's
/// life).
pub(super) struct Relay {
    context: SessionContext,
    client: TcpStream,
    target: TcpStream,
    /// The target's address.
    remote: SocketAddr,
    /// The idle clock (time of the last relayed byte) and the session's start.
    activity: Activity,
    /// Where the inspect phase stands, for the session's clock: [`INSPECTING`],
    /// [`INSPECT_EXPIRED`] or [`INSPECTED`].
    inspect: AtomicU8,
    /// The account's session slot, held until the session ends.
    _slot: Option<AccountSlot>,
}

/// The inspect phase runs and its deadline has not passed.
const INSPECTING: u8 = 0;
/// The inspect deadline passed: the inspect phase ends at its next poll.
const INSPECT_EXPIRED: u8 = 1;
/// The inspect phase is over (or disabled): only the idle deadline is left.
const INSPECTED: u8 = 2;

impl Relay {
    /// A session ready to relay `client` ⇄ `target` (`remote` is the target's address). Its
    /// clocks (inspect deadline, idle timeout) start now.
    pub(super) fn new(
        context: SessionContext,
        client: TcpStream,
        target: TcpStream,
        remote: SocketAddr,
        slot: Option<AccountSlot>,
    ) -> Self {
        Self {
            context,
            client,
            target,
            remote,
            activity: Activity::new(),
            inspect: AtomicU8::new(INSPECTING),
            _slot: slot,
        }
    }

    /// The session's clock rang at `now`: the next time it must ring, or `None` when the
    /// session has been idle for `idle_timeout` (it ends). Past the inspect deadline, marks
    /// the inspect phase expired.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let server = &self.context.runtime.server;
        let idle = self.activity.deadline(server.idle_timeout);
        if now >= idle {
            return None;
        }
        if self.inspect.load(Ordering::Relaxed) == INSPECTING {
            let inspect = self.activity.started() + server.inspect_timeout;
            if now < inspect {
                return Some(idle.min(inspect));
            }
            let _ = self.inspect.compare_exchange(
                INSPECTING,
                INSPECT_EXPIRED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Some(idle)
    }

    /// Resolves once the session's clock marked the inspect phase expired. Registers no
    /// waker: the clock runs in the same task and polls the phases again right after marking
    /// (see [`run`]).
    fn inspect_expired(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|_| {
            if self.inspect.load(Ordering::Relaxed) == INSPECT_EXPIRED {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Relay the session until it ends. `initial` holds client bytes that arrived with the
/// request; `held` (the session's permit and gauge guard) is dropped when the relay ends.
///
/// Not an `async fn`: that moves each argument into a local of its body, and the argument's
/// slot stays in the state beside it (measured: 1,192 bytes instead of 896 for the session's
/// task). Here the captured arguments are the state, used in place. One timer (a tokio
/// `Sleep`, 112 bytes) serves both deadlines: it rings at the nearer of the inspect deadline
/// (while inspecting) and the idle deadline.
#[allow(clippy::manual_async_fn)]
pub(super) fn run<H: Send>(
    relay: Relay,
    mut initial: Vec<u8>,
    held: H,
) -> impl Future<Output = ()> + Send {
    async move {
        let _held = &held;
        let relay = &relay;
        let phases = phases(relay, &mut initial);
        tokio::pin!(phases);
        let now = Instant::now();
        let clock = tokio::time::sleep_until(relay.next_deadline(now).unwrap_or(now).into());
        tokio::pin!(clock);
        loop {
            // Biased: after the clock marked the inspect phase expired, the next turn polls
            // the phases first, and the inspect loop sees the mark.
            tokio::select! {
                biased;
                _ = &mut phases => return,
                () = &mut clock => match relay.next_deadline(Instant::now()) {
                    Some(next) => clock.as_mut().reset(next.into()),
                    None => return,
                },
            }
        }
    }
}

/// The inspect phase (unless disabled), then the fast path. `initial` holds client bytes that
/// arrived with the request.
///
/// Neither phase is boxed: the session's task holds the larger of the two in place. Measured
/// (docs/benchmarks.md, "Idle memory per session"): a boxed inspect state freed for a larger
/// boxed fast-path state left holes the allocator could not reuse, and the extra allocation
/// cost more than the bytes the task saved.
async fn phases(relay: &Relay, initial: &mut Vec<u8>) -> io::Result<()> {
    let inspected = if relay.context.runtime.server.danger_disable_inspection {
        relay.inspect.store(INSPECTED, Ordering::Relaxed);
        // Plain relay (benchmark baseline): forward what came with the request, then copy.
        if !initial.is_empty() {
            write_all(&relay.target, initial).await?;
            relay.counters().to_target.inc_by(initial.len() as u64);
            // Not kept for the whole session.
            *initial = Vec::new();
        }
        Inspected::Pass {
            client_open: true,
            target_open: true,
        }
    } else {
        let inspected = inspect(relay, initial).await;
        relay.inspect.store(INSPECTED, Ordering::Relaxed);
        inspected?
    };
    let Inspected::Pass {
        client_open,
        target_open,
    } = inspected
    else {
        return Ok(());
    };
    let server = &relay.context.runtime.server;
    let counters = relay.counters();
    let pumps = [
        Pump {
            source: &relay.client,
            sink: &relay.target,
            counter: &counters.to_target,
            activity: &relay.activity,
        },
        Pump {
            source: &relay.target,
            sink: &relay.client,
            counter: &counters.to_client,
            activity: &relay.activity,
        },
    ];
    Forwarding::new(
        pumps,
        server.fast_path,
        server.relay_buffer_bytes as usize,
        (client_open, target_open),
    )
    .await
}

/// Bytes of the inspect-phase and fast-path states (see `session::relay_state_bytes`).
pub(super) fn phase_bytes() -> (usize, usize) {
    fn output_size<F, A, B, R>(_: F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        size_of::<R>()
    }
    (output_size(inspect), fast_path::state_bytes())
}

/// The relay's byte counters (handles of the `swarmwall_bytes_total` family, one per
/// direction), made once per server (`Shared`), read by every session.
pub(super) struct Counters {
    pub(super) to_target: ShardedCounter,
    pub(super) to_client: ShardedCounter,
}

impl Counters {
    pub(super) fn new(metrics: &Metrics) -> Self {
        // One statement per family lookup: `get_or_create` holds a read guard until the end
        // of its statement, and a second lookup that creates would then deadlock on the
        // write lock.
        let to_target = metrics
            .bytes
            .get_or_create(&DirectionLabels {
                direction: "client_to_target",
            })
            .clone();
        let to_client = metrics
            .bytes
            .get_or_create(&DirectionLabels {
                direction: "target_to_client",
            })
            .clone();
        Self {
            to_target,
            to_client,
        }
    }
}

impl Relay {
    /// The byte counters (shared by every session).
    fn counters(&self) -> &Counters {
        &self.context.shared.relay_bytes
    }
}

/// How the inspect phase ended.
enum Inspected {
    /// Go to the fast path; `*_open` tell which sides may still send.
    Pass {
        client_open: bool,
        target_open: bool,
    },
    /// The flow was blocked or both sides closed: end the session.
    Ended,
}

/// The inspect phase. Returns once the classifier gave a final verdict or both sides closed.
async fn inspect(relay: &Relay, initial: &mut Vec<u8>) -> io::Result<Inspected> {
    // Fields read through `relay`, not copied out: a copy would stay in the phase's state.
    let shared = &relay.context.shared;
    let corroborated =
        shared
            .correlation
            .is_corroborated(relay.context.client_key, relay.remote, Instant::now());
    let mut flow = TcpFlow::new(FlowContext {
        corroborated,
        mse_strictness: relay.context.runtime.policy.mse_strictness(),
        ..FlowContext::proxy(relay.remote.port())
    });
    let mut verdict = flow.verdict();
    // Bytes held back because they completed a BitTorrent verdict: forwarded only if the
    // policy lets the flow through (log / allow), dropped on block.
    let mut held: Option<(Direction, Vec<u8>)> = None;
    if !initial.is_empty() {
        verdict = flow.handle_data(Direction::ClientToServer, initial);
        if verdict.bittorrent_form().is_none() {
            write_all(&relay.target, initial).await?;
            relay.counters().to_target.inc_by(initial.len() as u64);
            // Not kept for the rest of the session.
            *initial = Vec::new();
        } else {
            held = Some((Direction::ClientToServer, std::mem::take(initial)));
        }
    }
    let (mut client_open, mut target_open) = (true, true);
    let mut candidate_recorded = false;
    while !verdict.is_final() && (client_open || target_open) {
        let (direction, source, sink) = tokio::select! {
            ready = read_ready(&relay.client), if client_open => {
                ready?;
                (Direction::ClientToServer, &relay.client, &relay.target)
            }
            ready = read_ready(&relay.target), if target_open => {
                ready?;
                (Direction::ServerToClient, &relay.target, &relay.client)
            }
            // The inspect deadline (`inspect_timeout` from the session's start), rung by the
            // session's clock in `run`.
            () = relay.inspect_expired() => {
                verdict = flow.handle_idle();
                break;
            }
        };
        let mut chunk = Vec::with_capacity(INSPECT_CHUNK);
        match read_chunk(source, &mut chunk)? {
            Chunk::Empty => continue,
            Chunk::Ended => {
                match direction {
                    Direction::ClientToServer => client_open = false,
                    Direction::ServerToClient => target_open = false,
                }
                let _ = SockRef::from(sink).shutdown(Shutdown::Write);
            }
            Chunk::More(read) | Chunk::Drained(read) => {
                relay.activity.touch();
                verdict = flow.handle_data(direction, &chunk);
                if !verdict.is_final() && flow.is_mse_candidate() {
                    // E4 fan-out: this flow may be the one that makes the client's count, or
                    // another flow of the client may have made it since (checked until the
                    // verdict, at most six flights).
                    let first = !candidate_recorded;
                    candidate_recorded = true;
                    if mse_candidate_corroborated(&relay.context, relay.remote, first) {
                        verdict = flow.corroborate();
                        if verdict.bittorrent_form().is_some() {
                            tracing::debug!("MSE candidate corroborated mid-flow (fan-out)");
                        }
                    }
                }
                if verdict.is_final()
                    && verdict.bittorrent_form().is_none()
                    && flow.is_mse_candidate()
                    && relay.context.runtime.policy.mse_strictness() == MseStrictness::Corroborated
                {
                    // An MSE candidate ends its inspection uncorroborated (no exact layout).
                    // BitTorrent clients open their peer connections together, so hold this
                    // chunk (the seventh flight: requests, before any piece) briefly for the
                    // client's fan-out count to be reached by its sibling connections.
                    let first = !candidate_recorded;
                    candidate_recorded = true;
                    // Boxed: the wait (a timer) is rare and must not size every inspect
                    // phase.
                    if Box::pin(await_fan_out(&relay.context, relay.remote, first)).await {
                        tracing::debug!("MSE candidate corroborated mid-flow (fan-out)");
                        verdict = Verdict::BitTorrent(BtForm::Mse);
                    }
                }
                if verdict.bittorrent_form().is_some() {
                    held = Some((direction, chunk));
                    break;
                }
                write_all(sink, &chunk).await?;
                let counter = match direction {
                    Direction::ClientToServer => &relay.counters().to_target,
                    Direction::ServerToClient => &relay.counters().to_client,
                };
                counter.inc_by(read as u64);
            }
        }
    }
    if !candidate_recorded && flow.is_mse_candidate() {
        mse_candidate_corroborated(&relay.context, relay.remote, true);
    }
    if !verdict.is_final() {
        // Both sides closed before a decision.
        return Ok(Inspected::Ended);
    }
    let (to_server, to_client) = flow.bytes_inspected();
    enforce::record_tcp_verdict(&relay.context, verdict, (to_server + to_client) as f64);
    if verdict == Verdict::BitTorrent(BtForm::Mse) {
        // The flow names its rule; the one-second fan-out wait is decided here, not in it.
        let rule = flow.mse_rule().unwrap_or("fan_out_wait");
        tracing::debug!(rule, flights = ?flow.flight_sizes(), "MSE verdict");
        relay
            .context
            .shared
            .metrics
            .mse_rules
            .get_or_create(&ReasonLabels { reason: rule })
            .inc();
    }
    let Verdict::BitTorrent(form) = verdict else {
        if flow.is_mse_candidate() {
            // Let through without exact sizes or corroboration: the sizes say why.
            tracing::debug!(flights = ?flow.flight_sizes(), ?verdict, "MSE candidate let through");
        }
        return Ok(Inspected::Pass {
            client_open,
            target_open,
        });
    };
    if let Some((Direction::ServerToClient, _)) = &held {
        enforce::remote_spoke(&relay.context, form, relay.remote);
    }
    match enforce::detected(&relay.context, form) {
        TrafficAction::Block => {
            enforce::count_block(&relay.context, "tcp", form);
            tracing::debug!(form = form.as_str(), "blocked BitTorrent flow");
            // Close both sides at once: nothing further is forwarded.
            let _ = SockRef::from(&relay.client).shutdown(Shutdown::Both);
            let _ = SockRef::from(&relay.target).shutdown(Shutdown::Both);
            // Boxed: the store call is large and rare; it must not size every inspect phase.
            Box::pin(enforce::strike(&relay.context, form)).await;
            Ok(Inspected::Ended)
        }
        TrafficAction::Log | TrafficAction::Allow => {
            if let Some((direction, bytes)) = held {
                let (sink, counter) = match direction {
                    Direction::ClientToServer => (&relay.target, &relay.counters().to_target),
                    Direction::ServerToClient => (&relay.client, &relay.counters().to_client),
                };
                write_all(sink, &bytes).await?;
                counter.inc_by(bytes.len() as u64);
            }
            Ok(Inspected::Pass {
                client_open,
                target_open,
            })
        }
    }
}

/// Count an MSE-shaped flow towards the client's fan-out (E4) when `record`; true when the
/// client is now corroborated for this destination.
fn mse_candidate_corroborated(context: &SessionContext, remote: SocketAddr, record: bool) -> bool {
    context.shared.correlation.candidate_corroborated(
        context.client_key,
        remote,
        record,
        Instant::now(),
    )
}

/// How long an uncorroborated MSE candidate waits at the end of its inspection for the
/// client's fan-out count (docs/detection.md, "Rules").
const MSE_FAN_OUT_HOLD: Duration = Duration::from_secs(1);

/// Wait up to [`MSE_FAN_OUT_HOLD`] for the client to become corroborated for `remote`.
async fn await_fan_out(context: &SessionContext, remote: SocketAddr, record: bool) -> bool {
    let deadline = Instant::now() + MSE_FAN_OUT_HOLD;
    let mut record = record;
    loop {
        if mse_candidate_corroborated(context, remote, record) {
            return true;
        }
        record = false;
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Write all of `bytes` to `sink`.
async fn write_all(sink: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sink.try_write(bytes) {
            Ok(written) => bytes = bytes.get(written..).unwrap_or_default(),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => write_ready(sink).await?,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
