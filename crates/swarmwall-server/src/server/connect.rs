//! CONNECT: known BitTorrent destination names, destination policy, asynchronous resolution,
//! the outbound connection (with the precise reply code for each failure), then the relay.

use std::net::SocketAddr;
use std::time::Instant;

use swarmwall_core::socks5::{Address, Reply};
use tokio::net::TcpStream;

use super::context::{SessionContext, send_reply};
use super::enforce;
use super::refusal::Refusal;
use crate::policy::PolicyDecision;

/// Carry out a CONNECT request up to the relay: the target's stream and address once the
/// client was told `succeeded`, `None` when the request was refused (the client was told why).
/// The relay itself runs in the session's task (`session::serve`), so that nothing of this
/// phase (name enforcement, resolution, the connect timeout) sizes a relayed session.
pub(super) async fn establish(
    context: &SessionContext,
    client: &mut TcpStream,
    destination: &Address,
) -> Option<(TcpStream, SocketAddr)> {
    if let Address::Domain(name, _) = destination
        && let Some(form) = context.runtime.policy.destination_form(name)
        && enforce::enforce_destination_name(context, form, "tcp").await
    {
        context.refused(Refusal::BittorrentDestination);
        let _ = send_reply(client, Reply::NotAllowed, &Address::UNSPECIFIED).await;
        return None;
    }
    let started = Instant::now();
    let connected = tokio::time::timeout(
        context.runtime.server.connect_timeout,
        connect(context, destination),
    )
    .await
    .unwrap_or_else(|_elapsed| Err(ConnectRefusal::from_reply(Reply::TtlExpired)));
    let (target, remote) = match connected {
        Ok(connected) => connected,
        Err(ConnectRefusal { reply, reason }) => {
            context.refused(reason);
            let _ = send_reply(client, reply, &Address::UNSPECIFIED).await;
            return None;
        }
    };
    context
        .shared
        .metrics
        .connect_duration
        .observe(started.elapsed().as_secs_f64());
    let _ = target.set_nodelay(true);
    let bound = target
        .local_addr()
        .map_or(Address::UNSPECIFIED, Address::Ip);
    send_reply(client, Reply::Succeeded, &bound).await.ok()?;
    Some((target, remote))
}

/// A refused CONNECT: the reply the client gets and the `sessions_refused` reason the
/// operator sees (they differ when the reply must not tell the client why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ConnectRefusal {
    pub(super) reply: Reply,
    pub(super) reason: Refusal,
}

impl ConnectRefusal {
    fn from_reply(reply: Reply) -> Self {
        Self {
            reply,
            reason: Refusal::from_reply(reply),
        }
    }
}

/// Resolve (names) and check every candidate address, connect to the first that works.
/// `Err` carries the refusal for the last failure.
///
/// A *name* whose every address the policy refuses is answered 0x04 (host unreachable),
/// exactly like a name that does not resolve: 0x02 there would tell a customer which names
/// resolve into guarded networks and so map the operator's internal zones. The operator
/// still sees the real reason (`sessions_refused{reason="policy"}`). A literal address the
/// policy refuses keeps 0x02 (the client already knows the address; nothing is revealed).
pub(super) async fn connect(
    context: &SessionContext,
    destination: &Address,
) -> Result<(TcpStream, SocketAddr), ConnectRefusal> {
    let policy = &context.runtime.policy;
    let (candidates, domain) = resolve(context, destination).await?;
    let policy_refusal = if domain.is_some() {
        ConnectRefusal {
            reply: Reply::HostUnreachable,
            reason: Refusal::Policy,
        }
    } else {
        ConnectRefusal::from_reply(Reply::NotAllowed)
    };
    let mut last = ConnectRefusal::from_reply(Reply::HostUnreachable);
    for candidate in candidates {
        if let PolicyDecision::Deny(_) = policy.check_address(candidate, domain) {
            last = policy_refusal.clone();
            continue;
        }
        match super::fd_reserve::connect(candidate).await {
            Ok(stream) => return Ok((stream, candidate)),
            Err(error) => last = ConnectRefusal::from_reply(Reply::from_io_kind(error.kind())),
        }
    }
    Err(last)
}

/// The addresses to try for `destination` (at most four) and the name asked for, if any.
/// Names are checked against the policy before they are resolved; the lookup waits for one of
/// the client's lookup permits (`server/lookup.rs`) within `connect_timeout`.
async fn resolve<'a>(
    context: &SessionContext,
    destination: &'a Address,
) -> Result<(Vec<SocketAddr>, Option<&'a str>), ConnectRefusal> {
    match destination {
        Address::Ip(address) => Ok((vec![*address], None)),
        Address::Domain(name, port) => {
            if let PolicyDecision::Deny(_) = context.runtime.policy.check_domain(name, *port) {
                return Err(ConnectRefusal::from_reply(Reply::NotAllowed));
            }
            let mut candidates = context
                .shared
                .lookups
                .addresses(context.client_key, name, *port)
                .await
                .map_err(|_not_found| ConnectRefusal::from_reply(Reply::HostUnreachable))?;
            // Prefer IPv4 first: hosts often lack a working IPv6 route.
            candidates.sort_by_key(SocketAddr::is_ipv6);
            Ok((candidates, Some(name.as_str())))
        }
    }
}
