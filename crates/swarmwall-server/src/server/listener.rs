//! The accept loop: global session limit, exponential back-off on accept errors (EMFILE must
//! not spin a core), one task per session, stop on shutdown (mini-redis `server.rs` shape).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{Shared, session};
use crate::metrics::ReasonLabels;

/// First back-off after a failed accept; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest back-off between accepts while they keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accept until shutdown is signalled.
pub(super) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let max_sessions = shared.runtime.load().server.max_sessions;
    // The limit is read once: a reload cannot resize a semaphore that permits are held on.
    let limit = Arc::new(Semaphore::new(max_sessions as usize));
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = MIN_BACKOFF;
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            shared
                .metrics
                .sessions_refused
                .get_or_create(&ReasonLabels { reason: "limit" })
                .inc();
            drop(stream);
            continue;
        };
        let shared_for_task = Arc::clone(&shared);
        shared.tracker.spawn(async move {
            session::run(shared_for_task, stream, peer).await;
            drop(permit);
        });
    }
}
