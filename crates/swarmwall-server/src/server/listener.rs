//! The accept loop: global session limit, exponential back-off on accept errors (EMFILE must
//! not spin a core), the descriptor reserve, one task per session, stop on shutdown
//! (mini-redis `server.rs` shape).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::refusal::Refusal;
use super::{Shared, session};
use crate::metrics::ReasonLabels;

/// First back-off after a failed accept; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest back-off between accepts while they keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one "accept failed" warning per this interval (a shortage that comes and goes
/// would otherwise write hundreds of lines a second).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Rate limit for the "accept failed" warning: the first failure is logged at once, later
/// ones at most every [`WARN_INTERVAL`] with the number left unlogged in between.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(suppressed)` when a warning is due now.
    fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Accept until shutdown is signalled; `limit` holds one permit per session allowed (shared
/// by every listener of the server).
pub(super) async fn run(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    let state = session::relay_state_bytes();
    tracing::debug!(
        task = state.task,
        inspect = state.inspect,
        fast_path = state.fast_path,
        "bytes of state per relayed session (task future; phase states inside it)"
    );
    let mut backoff = MIN_BACKOFF;
    let mut warnings = WarnLimiter::default();
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
                shared
                    .metrics
                    .sessions_refused
                    .get_or_create(&ReasonLabels {
                        reason: Refusal::AcceptFailed.as_str(),
                    })
                    .inc();
                if let Some(suppressed) = warnings.due(Instant::now()) {
                    tracing::warn!(
                        %error,
                        backoff_ms = backoff.as_millis() as u64,
                        suppressed,
                        "accept failed (further failures logged at most every {}s; \
                         swarmwall_sessions_refused_total{{reason=\"accept_failed\"}} counts all)",
                        WARN_INTERVAL.as_secs()
                    );
                }
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if super::fd_reserve::check(&stream).is_err() {
            // The descriptors left belong to the admin listener: refuse this client at once.
            shared
                .metrics
                .sessions_refused
                .get_or_create(&ReasonLabels {
                    reason: Refusal::FdReserve.as_str(),
                })
                .inc();
            if let Some(suppressed) = warnings.due(Instant::now()) {
                tracing::warn!(
                    suppressed,
                    "open-file limit nearly reached: refusing new sessions to keep descriptors \
                     for the admin listener"
                );
            }
            drop(stream);
            continue;
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            shared
                .metrics
                .sessions_refused
                .get_or_create(&ReasonLabels {
                    reason: Refusal::Limit.as_str(),
                })
                .inc();
            drop(stream);
            continue;
        };
        shared
            .tracker
            .spawn(session::serve(Arc::clone(&shared), stream, peer, permit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_warnings_are_rate_limited() {
        let mut limiter = WarnLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.due(start), Some(0));
        for step in 1..=183 {
            assert_eq!(limiter.due(start + Duration::from_millis(step * 20)), None);
        }
        assert_eq!(limiter.due(start + WARN_INTERVAL), Some(183));
        assert_eq!(limiter.due(start + WARN_INTERVAL), None);
    }
}
