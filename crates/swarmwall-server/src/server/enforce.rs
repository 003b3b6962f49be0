//! Enforcement, in one place for TCP (the relay), UDP (the association) and destination names
//! (CONNECT and UDP requests): a verdict is counted, its BitTorrent form is told to the
//! correlator and mapped to the traffic-class action (account overrides included), a block is
//! counted and struck (graduated response, `strikes.rs`).
//!
//! The callers do the I/O (closing sockets, dropping datagrams); this module decides and
//! counts.

use std::net::SocketAddr;
use std::time::Instant;

use swarmwall_core::classify::{BtForm, Verdict};

use super::context::SessionContext;
use crate::metrics::{BlockLabels, VerdictLabels};
use crate::policy::TrafficAction;

/// Count a final TCP verdict and the bytes it needed.
pub(super) fn record_tcp_verdict(context: &SessionContext, verdict: Verdict, decision_bytes: f64) {
    let (class, label) = match verdict {
        Verdict::BitTorrent(form) => ("bittorrent", form.as_str()),
        Verdict::Benign(benign) => ("benign", benign.as_str()),
        Verdict::GaveUp | Verdict::NeedMore => ("unknown", "unknown"),
    };
    let metrics = &context.shared.metrics;
    metrics
        .verdicts
        .get_or_create(&VerdictLabels {
            transport: "tcp",
            class,
            label,
        })
        .inc();
    metrics.classifier_decision_bytes.observe(decision_bytes);
}

/// Record a BitTorrent detection with the correlator and return the form's action.
pub(super) fn detected(context: &SessionContext, form: BtForm) -> TrafficAction {
    context
        .shared
        .correlation
        .record_detection(context.client_key, form, Instant::now());
    action_for(context, form)
}

/// The remote endpoint's own bytes completed a verdict of `form`: when that is a protocol
/// swarm members speak (peer wire, uTP, DHT), any client's later flow to the endpoint is
/// corroborated (correlator E3). Callers pass only verdicts completed by what the remote sent.
pub(super) fn remote_spoke(context: &SessionContext, form: BtForm, remote: SocketAddr) {
    if !form.is_peer_protocol() {
        return;
    }
    context
        .shared
        .correlation
        .record_bt_endpoint(remote, Instant::now());
}

/// The traffic-class action for `form` in this session (account overrides included).
///
/// The account record's `policy` override is looked up in the node's in-memory accounts
/// (O(1), no store read) each time a flow is classified, so an API change applies to the
/// next flow classified, in sessions already open too.
pub(super) fn action_for(context: &SessionContext, form: BtForm) -> TrafficAction {
    let account = context.account.as_deref();
    let record = account
        .zip(context.runtime.authenticator.as_ref())
        .and_then(|(name, authenticator)| authenticator.account(name));
    context.runtime.policy.action_with_override(
        form,
        account,
        record.as_ref().and_then(|record| record.policy.as_ref()),
    )
}

/// Count one blocked flow or datagram (`swarmwall_blocks_total`).
pub(super) fn count_block(context: &SessionContext, transport: &'static str, form: BtForm) {
    context
        .shared
        .metrics
        .blocks
        .get_or_create(&BlockLabels {
            transport,
            form: form.as_str(),
        })
        .inc();
}

/// A request named a destination known as BitTorrent infrastructure (`form` is
/// `known_destination` or `webtorrent`): count the verdict, tell the correlator, and apply the
/// form's action. True when the request must be refused (block: counted and struck).
pub(super) async fn enforce_destination_name(
    context: &SessionContext,
    form: BtForm,
    transport: &'static str,
) -> bool {
    let shared = &context.shared;
    shared
        .metrics
        .verdicts
        .get_or_create(&VerdictLabels {
            transport,
            class: "bittorrent",
            label: form.as_str(),
        })
        .inc();
    if detected(context, form) != TrafficAction::Block {
        return false;
    }
    count_block(context, transport, form);
    tracing::debug!(
        form = form.as_str(),
        "blocked a BitTorrent destination name"
    );
    Box::pin(strike(context, form)).await;
    true
}

/// Record a strike for a blocked flow or datagram and audit a resulting suspension.
pub(super) async fn strike(context: &SessionContext, form: BtForm) {
    let shared = &context.shared;
    let now_ms = crate::store::unix_now_ms();
    match shared
        .strikes
        .record_block(&context.subject(), form, now_ms)
        .await
    {
        // The strikes engine counts `strikes`/`suspensions` and records the suspension event.
        Ok(crate::strikes::StrikeOutcome::Buffered) => {
            // The strikes engine logged the outage once; replay logs the write-back.
            tracing::debug!(
                form = form.as_str(),
                "strike buffered until the store is back"
            );
        }
        Ok(outcome) => tracing::debug!(?outcome, form = form.as_str(), "strike recorded"),
        Err(error) => {
            tracing::warn!(%error, "recording a strike failed (not buffered)");
            shared
                .metrics
                .store_errors
                .get_or_create(&crate::metrics::OperationLabels {
                    operation: "record_block",
                })
                .inc();
        }
    }
}
