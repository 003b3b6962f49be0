//! What a command handler (CONNECT, BIND, UDP ASSOCIATE) gets from its session: the
//! [`SessionContext`], the SOCKS5 reply writer and the refusal counter.

use std::net::IpAddr;
use std::sync::Arc;

use swarmwall_core::classify::ClientKey;
use swarmwall_core::socks5::{Address, Reply, ReplyMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::refusal::Refusal;
use super::{Runtime, Shared};
use crate::metrics::ReasonLabels;
use crate::strikes::StrikeSubject;

/// Everything a command handler needs about its session.
#[derive(Clone)]
pub(super) struct SessionContext {
    pub(super) shared: Arc<Shared>,
    pub(super) runtime: Arc<Runtime>,
    /// The authenticated account, if any.
    pub(super) account: Option<String>,
    /// The client's address (from the PROXY header when the peer is a trusted balancer).
    pub(super) client: IpAddr,
    /// Correlator key (keyed hash).
    pub(super) client_key: ClientKey,
}

impl SessionContext {
    /// Strike subject (account, or keyed hash of the client address). Made when needed (the
    /// suspension check, a strike), not kept: every session would hold its string.
    pub(super) fn subject(&self) -> StrikeSubject {
        self.shared.identity(self.account.as_deref(), self.client).0
    }

    /// Count a refusal under `reason`.
    pub(super) fn refused(&self, reason: Refusal) {
        refused(&self.shared, &reason);
    }
}

/// Write one SOCKS5 reply.
pub(super) async fn send_reply(
    stream: &mut TcpStream,
    reply: Reply,
    bound: &Address,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(22);
    ReplyMessage {
        reply,
        bound: bound.clone(),
    }
    .encode(&mut out);
    stream.write_all(&out).await
}

/// Count a refused session (`swarmwall_sessions_refused_total{reason}`).
pub(super) fn refused(shared: &Shared, reason: &Refusal) {
    let reason = reason.as_str();
    tracing::debug!(reason, "session refused");
    shared
        .metrics
        .sessions_refused
        .get_or_create(&ReasonLabels { reason })
        .inc();
}
