//! One session per accepted connection: optional PROXY protocol header, the SOCKS5 handshake
//! (driven through the sans-IO [`ServerHandshake`]), authentication, suspension check, then
//! the command (`connect`, `bind`, `udp`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use swarmwall_core::proxy_protocol::{self, ParseOutcome};
use swarmwall_core::socks5::{Address, Command, Event, Reply, Request, ServerHandshake};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::context::{SessionContext, refused, send_reply};
use super::limits::AccountSlot;
use super::refusal::Refusal;
use super::{Runtime, Shared, bind, connect, udp};
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

/// Serve one connection to its end.
pub(super) async fn run(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let metrics = Arc::clone(&shared.metrics);
    metrics.sessions_active.inc();
    let _active = scopeguard(move || {
        metrics.sessions_active.dec();
    });
    let runtime = shared.runtime.load_full();
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let started = Instant::now();
    // Boxed: the handshake (with authentication and its store calls) is the largest state
    // of a session; on the heap it is freed once done instead of sizing every session's
    // task for its whole life (2.9 KiB of a 4 KiB task before this).
    let handshaken = match tokio::time::timeout(
        runtime.server.handshake_timeout,
        Box::pin(handshake(&shared, &runtime, &mut stream, peer)),
    )
    .await
    {
        Err(_elapsed) => return refused(&shared, &Refusal::HandshakeTimeout),
        Ok(Err(reason)) => return refused(&shared, &reason),
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
        subject,
        client_key,
        local,
    };

    let _slot: Option<AccountSlot> = match &context.account {
        Some(account) => {
            let limit = context.runtime.server.max_sessions_per_account;
            match shared.account_sessions.acquire(account, limit) {
                Some(slot) => Some(slot),
                None => {
                    context.refused(Refusal::AccountLimit);
                    let _ = send_reply(&mut stream, Reply::NotAllowed, &Address::UNSPECIFIED).await;
                    return;
                }
            }
        }
        None => None,
    };

    let now_ms = crate::store::unix_now_ms();
    match shared
        .strikes
        .suspended_until(&context.subject, now_ms)
        .await
    {
        Ok(Some(_until)) => {
            context.refused(Refusal::Suspended);
            let _ = send_reply(&mut stream, Reply::NotAllowed, &Address::UNSPECIFIED).await;
            return;
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
        Command::Connect => connect::run(&context, stream, &request.destination, remaining).await,
        // Boxed: BIND and UDP ASSOCIATE have larger states than CONNECT, and the task of
        // every session would otherwise be sized for them.
        Command::Bind => Box::pin(bind::run(&context, stream, &request.destination)).await,
        Command::UdpAssociate => {
            Box::pin(udp::run(&context, stream, &request.destination)).await;
        }
    }
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
