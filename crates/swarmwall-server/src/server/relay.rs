//! The TCP relay: an inspect phase, then a fast path.
//!
//! Inspect phase: both directions are relayed while every chunk is fed to
//! [`TcpFlow::handle_data`] *before* it is forwarded, so a chunk recognised as BitTorrent is
//! never passed on. A BitTorrent verdict is answered by the traffic-class action (block:
//! close both sides, count, strike; log: count and go on). Any other final verdict (benign,
//! gave up, or the inspect deadline) moves the session to the fast path.
//!
//! Fast path: a readiness-driven copy per direction with no classifier cost. A direction
//! borrows a relay buffer only while its socket has data and returns it as soon as the socket
//! is drained, so an idle session holds no relay buffer at all (the readiness wait is a few
//! words of task state). Half-close is forwarded (`shutdown(Write)` on the other side when
//! one side ends), and the session ends when both directions have ended, on the first error,
//! or after `idle_timeout` without a byte either way.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use crate::sharded_counter::ShardedCounter;
use socket2::SockRef;
use swarmwall_core::classify::{BtForm, Direction, FlowContext, MseStrictness, TcpFlow, Verdict};
use tokio::net::TcpStream;

use super::context::SessionContext;
use super::drain::{Chunk, Pump, read_chunk, read_ready, write_ready};
use super::enforce;
use super::idle::Activity;
use super::splice;
use crate::config::FastPath;
use crate::metrics::{DirectionLabels, ReasonLabels};
use crate::policy::TrafficAction;

/// Most bytes read at once during the inspect phase.
const INSPECT_CHUNK: usize = 16 * 1024;

/// Relay `client` ⇄ `target` (`remote` is the target's address) until the session ends.
/// `initial` holds client bytes that arrived with the request.
///
/// Not an `async fn`: its arguments would stay in the state of every relayed session beside
/// the [`Relay`] built from them; here they move into it before the state is made.
pub(super) fn run<'a>(
    context: &'a SessionContext,
    client: &'a TcpStream,
    target: &'a TcpStream,
    initial: Vec<u8>,
    remote: SocketAddr,
) -> impl Future<Output = ()> + Send + 'a {
    let metrics = &context.shared.metrics;
    // One statement per family lookup: `get_or_create` holds a read guard until the end of
    // its statement, and a second lookup that creates would then deadlock on the write lock.
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
    let relay = Relay {
        context,
        client,
        target,
        remote,
        counters: Counters {
            to_target,
            to_client,
        },
        activity: Activity::new(),
    };
    async move {
        let relay = &relay;
        // Both phases under one idle clock: a single timer for the session's whole relay.
        tokio::select! {
            _ = phases(relay, initial) => {}
            () = relay.activity.idle(relay.context.runtime.server.idle_timeout) => {}
        }
    }
}

/// What both phases of a relay share: owned by the session's task, borrowed by each phase.
struct Relay<'a> {
    context: &'a SessionContext,
    client: &'a TcpStream,
    target: &'a TcpStream,
    /// The target's address.
    remote: SocketAddr,
    counters: Counters,
    activity: Activity,
}

/// The inspect phase (unless disabled), then the fast path. `initial` holds client bytes that
/// arrived with the request.
///
/// Neither phase is boxed: the session's task holds the larger of the two in place. Measured
/// (docs/benchmarks.md, "Idle memory per session"): a boxed inspect state freed for a larger
/// boxed fast-path state left holes the allocator could not reuse, and the extra allocation
/// cost more than the bytes the task saved.
async fn phases(relay: &Relay<'_>, initial: Vec<u8>) -> io::Result<()> {
    let server = &relay.context.runtime.server;
    let inspected = if server.danger_disable_inspection {
        // Plain relay (benchmark baseline): forward what came with the request, then copy.
        if !initial.is_empty() {
            write_all(relay.target, &initial).await?;
            relay.counters.to_target.inc_by(initial.len() as u64);
        }
        // Not kept for the whole session.
        drop(initial);
        Inspected::Pass {
            client_open: true,
            target_open: true,
        }
    } else {
        inspect(relay, initial).await?
    };
    let Inspected::Pass {
        client_open,
        target_open,
    } = inspected
    else {
        return Ok(());
    };
    fast_path(relay, (client_open, target_open)).await
}

/// Bytes of the inspect-phase and fast-path states (see `session::relay_state_bytes`).
pub(super) fn phase_bytes() -> (usize, usize) {
    fn output_size<F, A, B, R>(_: F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        size_of::<R>()
    }
    (output_size(inspect), output_size(fast_path))
}

/// Byte counters of one session (cloned handles of the shared families).
struct Counters {
    to_target: ShardedCounter,
    to_client: ShardedCounter,
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
async fn inspect(relay: &Relay<'_>, initial: Vec<u8>) -> io::Result<Inspected> {
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
        verdict = flow.handle_data(Direction::ClientToServer, &initial);
        if verdict.bittorrent_form().is_none() {
            write_all(relay.target, &initial).await?;
            relay.counters.to_target.inc_by(initial.len() as u64);
            // Not kept for the rest of the inspect phase.
            drop(initial);
        } else {
            held = Some((Direction::ClientToServer, initial));
        }
    }
    let (mut client_open, mut target_open) = (true, true);
    let mut candidate_recorded = false;
    let deadline = tokio::time::sleep(relay.context.runtime.server.inspect_timeout);
    tokio::pin!(deadline);
    while !verdict.is_final() && (client_open || target_open) {
        let (direction, source, sink) = tokio::select! {
            ready = read_ready(relay.client), if client_open => {
                ready?;
                (Direction::ClientToServer, relay.client, relay.target)
            }
            ready = read_ready(relay.target), if target_open => {
                ready?;
                (Direction::ServerToClient, relay.target, relay.client)
            }
            () = &mut deadline => {
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
                    if mse_candidate_corroborated(relay.context, relay.remote, first) {
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
                    if Box::pin(await_fan_out(relay.context, relay.remote, first)).await {
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
                    Direction::ClientToServer => &relay.counters.to_target,
                    Direction::ServerToClient => &relay.counters.to_client,
                };
                counter.inc_by(read as u64);
            }
        }
    }
    if !candidate_recorded && flow.is_mse_candidate() {
        mse_candidate_corroborated(relay.context, relay.remote, true);
    }
    if !verdict.is_final() {
        // Both sides closed before a decision.
        return Ok(Inspected::Ended);
    }
    let (to_server, to_client) = flow.bytes_inspected();
    enforce::record_tcp_verdict(relay.context, verdict, (to_server + to_client) as f64);
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
        enforce::remote_spoke(relay.context, form, relay.remote);
    }
    match enforce::detected(relay.context, form) {
        TrafficAction::Block => {
            enforce::count_block(relay.context, "tcp", form);
            tracing::debug!(form = form.as_str(), "blocked BitTorrent flow");
            // Close both sides at once: nothing further is forwarded.
            let _ = SockRef::from(relay.client).shutdown(Shutdown::Both);
            let _ = SockRef::from(relay.target).shutdown(Shutdown::Both);
            // Boxed: the store call is large and rare; it must not size every inspect phase.
            Box::pin(enforce::strike(relay.context, form)).await;
            Ok(Inspected::Ended)
        }
        TrafficAction::Log | TrafficAction::Allow => {
            if let Some((direction, bytes)) = held {
                let (sink, counter) = match direction {
                    Direction::ClientToServer => (relay.target, &relay.counters.to_target),
                    Direction::ServerToClient => (relay.client, &relay.counters.to_client),
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

/// The fast path: both directions until both ended or an error (the caller's idle clock
/// ends it after `idle_timeout`). `open` tells which sides (client, target) may still send.
async fn fast_path(relay: &Relay<'_>, open: (bool, bool)) -> io::Result<()> {
    let server = &relay.context.runtime.server;
    let buffer = server.relay_buffer_bytes as usize;
    let mode = server.fast_path;
    let to_target = Pump {
        source: relay.client,
        sink: relay.target,
        counter: &relay.counters.to_target,
        activity: &relay.activity,
    };
    let to_client = Pump {
        source: relay.target,
        sink: relay.client,
        counter: &relay.counters.to_client,
        activity: &relay.activity,
    };
    tokio::try_join!(
        forward(&to_target, open.0, mode, buffer),
        forward(&to_client, open.1, mode, buffer),
    )
    .map(drop)
}

/// The fast path of one direction: nothing when `open` is false (that side already ended),
/// else per `mode`: `splice`, the readiness-driven copy, or (auto) the copy until
/// [`SPLICE_AFTER`] bytes went by, then `splice`.
async fn forward(pump: &Pump<'_>, open: bool, mode: FastPath, buffer: usize) -> io::Result<()> {
    if !open {
        return Ok(());
    }
    match mode {
        FastPath::Splice => splice::copy(pump, None).await,
        FastPath::Copy => copy(pump, buffer, None).await.map(drop),
        FastPath::Auto => match copy(pump, buffer, Some(SPLICE_AFTER)).await? {
            Copied::Ended => Ok(()),
            // Without a pipe (descriptors exhausted) the copy simply goes on.
            Copied::Limit => match splice::new_pipe() {
                Ok(pipe) => splice::copy(pump, Some(pipe)).await,
                Err(_) => copy(pump, buffer, None).await.map(drop),
            },
        },
    }
}

/// Bytes a direction copies through user space before `fast_path = "auto"` switches it to
/// `splice` (a pipe costs two descriptors and a few syscalls: worth it only for bulk).
pub(crate) const SPLICE_AFTER: u64 = 256 * 1024;

/// How [`copy`] stopped (without an error).
enum Copied {
    /// The source ended (its write side was shut down on the sink).
    Ended,
    /// The byte limit was reached; everything read so far was written.
    Limit,
}

/// Copy `source` → `sink` until `source` ends (then half-close `sink`), an error, or (with a
/// `limit`) once at least `limit` bytes were copied.
async fn copy(pump: &Pump<'_>, buffer_size: usize, limit: Option<u64>) -> io::Result<Copied> {
    // Fields read through `pump`, not copied out: a copy would stay in the loop's state.
    let mut copied = 0u64;
    loop {
        read_ready(pump.source).await?;
        // Borrow a buffer only while the socket has data.
        let mut buffer = Vec::with_capacity(buffer_size);
        loop {
            let (read, drained) = match read_chunk(pump.source, &mut buffer)? {
                Chunk::Ended => {
                    let _ = SockRef::from(pump.sink).shutdown(Shutdown::Write);
                    return Ok(Copied::Ended);
                }
                Chunk::Empty => break,
                Chunk::More(read) => (read, false),
                Chunk::Drained(read) => (read, true),
            };
            write_all(pump.sink, &buffer).await?;
            buffer.clear();
            pump.counter.inc_by(read as u64);
            pump.activity.touch();
            copied += read as u64;
            // Only bulk (a read that filled the buffer) moves to `splice`: a long interactive
            // session of small messages stays on the copy, which costs the same calls.
            if !drained && limit.is_some_and(|limit| copied >= limit) {
                return Ok(Copied::Limit);
            }
            if drained {
                break;
            }
        }
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
