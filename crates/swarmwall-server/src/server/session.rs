//! One session per accepted connection: optional PROXY protocol header, the SOCKS5 handshake
//! (driven through the sans-IO [`ServerHandshake`]), authentication, suspension check, then
//! the command (`connect`, `bind`, `udp`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::Either;
use swarmwall_core::proxy_protocol::{self, ParseOutcome};
use swarmwall_core::socks5::{Address, Command, Event, Reply, Request, ServerHandshake};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::context::{SessionContext, refused, send_reply};
use super::limits::AccountSlot;
use super::refusal::Refusal;
use super::{Runtime, Shared, bind, connect, relay, udp};
use crate::auth::AuthOutcome;
use crate::metrics::CommandLabels;

/// Longest PROXY protocol header accepted (v2 with TLVs is bounded well below this).
const MAX_PROXY_HEADER: usize = 232;
/// Read size during the handshake (one read never holds more than one small message).
const HANDSHAKE_READ: usize = 512;

/// What the handshake produced.
struct Handshaken {
    request: Request,
    account: Option<String>,
    client: IpAddr,
    remaining: Vec<u8>,
}

/// The task of one accepted connection: serve it, then give its session permit back.
///
/// Everything before the relay (PROXY header, handshake, authentication, suspension check,
/// name enforcement, resolution, connect) runs boxed and is freed when done, so the task
/// itself, which every relayed (often idle) session keeps for its whole life, is sized for
/// the relay alone. Not an `async fn`: the arguments would stay in the task's state for its
/// whole life; here they move straight into the boxed first phase.
pub(super) fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    let metrics = Arc::clone(&shared.metrics);
    metrics.sessions_active.inc();
    let active = scopeguard(move || {
        metrics.sessions_active.dec();
    });
    let admitted = (permit, active);
    // Not an `async` block either: one keeps a moved-from local's slot for its whole life, so
    // the relay would sit beside a dead copy of the `Relay` it was made from. `then` makes the
    // first phase and the relay the two states of one enum (futures-util's `Flatten`).
    Box::pin(open(shared, stream, peer)).then(move |opened| match opened {
        Some((relay, initial)) => Either::Left(relay::run(relay, initial, admitted)),
        None => Either::Right(std::future::ready(())),
    })
}

/// Bytes of state a session keeps while it relays: its task's future (from [`serve`]), which
/// holds in place the state of the inspect phase or of the fast path (the larger of the two,
/// also reported). Logged at start (debug) and bounded by a test, so that state creeping into
/// the task shows. Not counted: tokio's task header, the two sockets' registrations, the
/// allocator.
pub(super) fn relay_state_bytes() -> RelayStateBytes {
    fn output_size<F, A, B, C, D, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D) -> R,
    {
        size_of::<R>()
    }
    let (inspect, fast_path) = relay::phase_bytes();
    RelayStateBytes {
        task: output_size(serve),
        inspect,
        fast_path,
    }
}

/// See [`relay_state_bytes`].
#[derive(Debug, Clone, Copy)]
pub(super) struct RelayStateBytes {
    pub(super) task: usize,
    pub(super) inspect: usize,
    pub(super) fast_path: usize,
}

/// Serve one connection up to its relay: `Some` for a CONNECT to relay; BIND and UDP
/// ASSOCIATE (and every refusal) end here. With the relay comes the client bytes that arrived
/// with the request.
async fn open(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Option<(relay::Relay, Vec<u8>)> {
    let runtime = shared.runtime.load_full();
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    // Boxed: the handshake (with authentication and its store calls) is the largest state
    // of this phase; freed once done, it does not size a BIND or UDP session either.
    let handshaken = match tokio::time::timeout(
        runtime.server.handshake_timeout,
        Box::pin(handshake(&shared, &runtime, &mut stream, peer)),
    )
    .await
    {
        Err(_elapsed) => {
            refused(&shared, &Refusal::HandshakeTimeout);
            return None;
        }
        Ok(Err(reason)) => {
            refused(&shared, &reason);
            return None;
        }
        Ok(Ok(handshaken)) => handshaken,
    };
    shared
        .metrics
        .handshake_duration
        .observe(started.elapsed().as_secs_f64());
    let Handshaken {
        request,
        account,
        client,
        remaining,
    } = handshaken;
    let (subject, client_key) = shared.identity(account.as_deref(), client);
    let context = SessionContext {
        shared: Arc::clone(&shared),
        runtime,
        account,
        client,
        client_key,
    };

    let slot: Option<AccountSlot> = match &context.account {
        Some(account) => {
            let limit = context.runtime.server.max_sessions_per_account;
            match shared.account_sessions.acquire(account, limit) {
                Some(slot) => Some(slot),
                None => {
                    context.refused(Refusal::AccountLimit);
                    let _ = send_reply(&mut stream, Reply::NotAllowed, &Address::UNSPECIFIED).await;
                    return None;
                }
            }
        }
        None => None,
    };

    let now_ms = crate::store::unix_now_ms();
    match shared.strikes.suspended_until(&subject, now_ms).await {
        Ok(Some(_until)) => {
            context.refused(Refusal::Suspended);
            let _ = send_reply(&mut stream, Reply::NotAllowed, &Address::UNSPECIFIED).await;
            return None;
        }
        Ok(None) => {}
        Err(error) => {
            // Fail open on a store outage: blocking still works, only suspensions lapse.
            tracing::warn!(%error, "suspension check failed");
            shared
                .metrics
                .store_errors
                .get_or_create(&crate::metrics::OperationLabels {
                    operation: "suspended_until",
                })
                .inc();
        }
    }

    shared
        .metrics
        .sessions_total
        .get_or_create(&CommandLabels {
            command: request.command.as_str(),
        })
        .inc();
    tracing::debug!(command = request.command.as_str(), "request");
    match request.command {
        Command::Connect => {
            let (target, remote) =
                connect::establish(&context, &mut stream, &request.destination).await?;
            // An empty remainder gives its capacity back: it would live as long as the
            // inspect phase.
            let initial = if remaining.is_empty() {
                Vec::new()
            } else {
                remaining
            };
            return Some((
                relay::Relay::new(context, stream, target, remote, slot),
                initial,
            ));
        }
        // Boxed: BIND and UDP ASSOCIATE have larger states than CONNECT, and this phase
        // would otherwise be sized for them.
        Command::Bind => Box::pin(bind::run(&context, stream, &request.destination)).await,
        Command::UdpAssociate => {
            Box::pin(udp::run(&context, stream, &request.destination)).await;
        }
    }
    drop(slot);
    None
}

/// Read the PROXY header (trusted peers only), then run the SOCKS5 handshake to a request.
/// The connection holds one of its source's handshake slots (`max_handshakes_per_source`)
/// until the handshake ends.
async fn handshake(
    shared: &Shared,
    runtime: &Runtime,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<Handshaken, Refusal> {
    let mut client = peer.ip().to_canonical();
    let mut machine = ServerHandshake::new(runtime.authenticator.is_some());
    let trusted = runtime
        .server
        .proxy_protocol_trusted
        .iter()
        .any(|net| net.contains(&client));
    if trusted {
        let (source, leftover) = read_proxy_header(stream).await?;
        if let Some(source) = source {
            client = source.ip().to_canonical();
        }
        // A pipelining client may have sent its credentials right behind the header.
        let leftover = zeroize::Zeroizing::new(leftover);
        machine.handle_input(&leftover);
    }
    // A pre-login slot: given back once the client has logged in (or at the end of the
    // handshake when no login is required).
    let limit = runtime.config.security.max_handshakes_per_source;
    let Some(slot) = shared.handshakes.acquire(client, limit) else {
        return Err(Refusal::SourceLimit);
    };
    let mut slot = Some(slot);

    // Holds raw RFC 1929 credentials after a read: wiped when the handshake ends.
    let mut buffer = zeroize::Zeroizing::new(vec![0u8; HANDSHAKE_READ]);
    let mut account = None;
    loop {
        while let Some(bytes) = machine.poll_transmit() {
            stream.write_all(&bytes).await.map_err(|_| Refusal::Io)?;
        }
        match machine.poll_event() {
            Some(Event::Authenticate(credentials)) => {
                account = authenticate(runtime, &credentials, client).await;
                machine.handle_auth_result(account.is_some());
                if account.is_some() {
                    slot = None;
                }
                continue;
            }
            Some(Event::Request(request)) => {
                drop(slot);
                return Ok(Handshaken {
                    request,
                    account,
                    client,
                    remaining: machine.take_remaining(),
                });
            }
            Some(Event::Failed(error)) => {
                while let Some(bytes) = machine.poll_transmit() {
                    let _ = stream.write_all(&bytes).await;
                }
                return Err(Refusal::Handshake(error));
            }
            None => {}
        }
        let read = stream.read(&mut buffer).await.map_err(|_| Refusal::Io)?;
        if read == 0 {
            return Err(Refusal::Eof);
        }
        machine.handle_input(buffer.get(..read).unwrap_or_default());
    }
}

/// Check credentials; `Some(account)` on success. The authenticator counts
/// `auth_results`, applies lockout/TOTP/geo/travel and writes the security events itself
/// (without raw usernames that are not accounts), so nothing is counted twice here.
async fn authenticate(
    runtime: &Runtime,
    credentials: &swarmwall_core::socks5::PasswordRequest,
    client: IpAddr,
) -> Option<String> {
    let authenticator = runtime.authenticator.as_ref()?;
    match authenticator
        .authenticate(&credentials.username, &credentials.password, client)
        .await
    {
        AuthOutcome::Accepted { account } => Some(account),
        AuthOutcome::Rejected(_) => None,
    }
}

/// Read a PROXY protocol header: the source address (None for LOCAL/UNKNOWN) and the bytes
/// that followed it (the start of the SOCKS5 greeting).
async fn read_proxy_header(
    stream: &mut TcpStream,
) -> Result<(Option<SocketAddr>, Vec<u8>), Refusal> {
    // Bytes past the header may be the client's credentials: both buffers are wiped.
    let mut buffer = zeroize::Zeroizing::new(Vec::with_capacity(MAX_PROXY_HEADER));
    let mut chunk = zeroize::Zeroizing::new([0u8; 64]);
    loop {
        let outcome = if buffer.is_empty() {
            ParseOutcome::Incomplete
        } else {
            proxy_protocol::parse_header(&buffer)
        };
        match outcome {
            ParseOutcome::Header {
                source, consumed, ..
            } => {
                let leftover = buffer.get(consumed..).unwrap_or_default().to_vec();
                return Ok((source, leftover));
            }
            ParseOutcome::Invalid(_) => return Err(Refusal::BadProxyHeader),
            ParseOutcome::Incomplete => {}
        }
        if buffer.len() >= MAX_PROXY_HEADER {
            return Err(Refusal::BadProxyHeader);
        }
        // Never read past the longest header, so SOCKS5 bytes are not consumed needlessly.
        let room = (MAX_PROXY_HEADER - buffer.len()).min(chunk.len());
        let read = stream
            .read(chunk.get_mut(..room).unwrap_or_default())
            .await
            .map_err(|_| Refusal::Io)?;
        if read == 0 {
            return Err(Refusal::Eof);
        }
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
}

/// Run `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Measured on x86_64 (2026-12-07): task 896 (one timer, the fast path hand-written),
    // inspect 376, fast path 168 (it holds its two directions' pointers; it shares the
    // inspect phase's larger slot). The task's bound is what fits tokio's 1,024-byte task
    // cell: 104 bytes of tokio's header, scheduler, id and trailer, 8 of the `TaskTracker`
    // token. Before: task 1,416 (inspect 528, fast path 672); 1,864 on 2026-12-06.
    const MAX_TASK: usize = 1_024 - 104 - 8;
    const MAX_INSPECT: usize = 384;
    const MAX_FAST_PATH: usize = 176;

    /// What every relayed (often idle) session keeps stays small: state that creeps into the
    /// task (the handshake, the connect, a second timer), or a phase that grows, fails here.
    #[test]
    fn a_relayed_session_keeps_little_state() {
        let bytes = relay_state_bytes();
        assert!(bytes.task <= MAX_TASK, "{bytes:?}: task over {MAX_TASK}");
        assert!(
            bytes.inspect <= MAX_INSPECT,
            "{bytes:?}: inspect over {MAX_INSPECT}"
        );
        assert!(
            bytes.fast_path <= MAX_FAST_PATH,
            "{bytes:?}: fast path over {MAX_FAST_PATH}"
        );
    }
}
