//! BIND (RFC 1928 §4): listen on the address the client reached us on, send the first reply
//! with that port, accept one incoming connection (from the host named in the request when it
//! is an IP address), send the second reply with the peer's address, then relay with the same
//! inspect phase as CONNECT.

use std::net::SocketAddr;

use swarmwall_core::socks5::{Address, Reply};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::context::{SessionContext, send_reply};
use super::refusal::Refusal;
use super::relay;
use crate::policy::PolicyDecision;

/// Carry out a BIND request.
pub(super) async fn run(context: &SessionContext, mut control: TcpStream, requested: &Address) {
    // The listener binds on the address the client connected to.
    let Ok(local) = control.local_addr() else {
        return;
    };
    let listener = match TcpListener::bind(SocketAddr::new(local.ip(), 0))
        .await
        .and_then(|listener| super::fd_reserve::check(&listener).map(|()| listener))
    {
        Ok(listener) => listener,
        Err(error) => {
            context.refused(Refusal::BindFailed);
            let reply = Reply::from_io_kind(error.kind());
            let _ = send_reply(&mut control, reply, &Address::UNSPECIFIED).await;
            return;
        }
    };
    let bound = listener
        .local_addr()
        .map_or(Address::UNSPECIFIED, Address::Ip);
    if send_reply(&mut control, Reply::Succeeded, &bound)
        .await
        .is_err()
    {
        return;
    }
    // Wait for the incoming connection; the control connection closing cancels the BIND.
    let mut early = Vec::new();
    let mut probe = [0u8; 512];
    let deadline = tokio::time::sleep(context.runtime.server.bind_timeout);
    tokio::pin!(deadline);
    let (incoming, peer) = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    if expected_peer(requested, peer) && allowed(context, peer) {
                        break (stream, peer);
                    }
                    // Someone else: refuse the whole BIND (RFC 1928 leaves this to policy).
                    context.refused(Refusal::Policy);
                    let _ = send_reply(&mut control, Reply::NotAllowed, &Address::UNSPECIFIED).await;
                    return;
                }
                Err(_) => {
                    let _ = send_reply(&mut control, Reply::GeneralFailure, &Address::UNSPECIFIED).await;
                    return;
                }
            },
            read = control.read(&mut probe) => match read {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    if early.len() + read > 64 * 1024 {
                        return;
                    }
                    early.extend_from_slice(probe.get(..read).unwrap_or_default());
                }
            },
            () = &mut deadline => {
                context.refused(Refusal::BindTimeout);
                let _ = send_reply(&mut control, Reply::TtlExpired, &Address::UNSPECIFIED).await;
                return;
            }
        }
    };
    drop(listener);
    let _ = incoming.set_nodelay(true);
    if send_reply(&mut control, Reply::Succeeded, &Address::Ip(peer))
        .await
        .is_err()
    {
        return;
    }
    // A copy of the context (BIND is rare): the relay owns what it borrows for its life.
    let relay = relay::Relay::new(context.clone(), control, incoming, peer, None);
    relay::run(relay, early, ()).await;
}

/// True when `peer` is the host the client named (any host for an unspecified address or a
/// domain name, which cannot be compared without resolving).
fn expected_peer(requested: &Address, peer: SocketAddr) -> bool {
    match requested {
        Address::Ip(address) if !address.ip().is_unspecified() => {
            address.ip().to_canonical() == peer.ip()
        }
        _ => true,
    }
}

fn allowed(context: &SessionContext, peer: SocketAddr) -> bool {
    context.runtime.policy.check_address(peer, None) == PolicyDecision::Allow
}
