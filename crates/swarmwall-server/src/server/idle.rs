//! The idle timeout of a relayed session: the time of the last relayed byte, shared by both
//! directions (TCP relay, splice, UDP association).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time of the last relayed byte, for the idle timeout (milliseconds since the session's
/// start; atomic so both directions can touch it).
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    /// When the session started (this clock was made).
    pub(super) fn started(&self) -> Instant {
        self.start
    }

    /// When the session is idle for `timeout` unless a byte is relayed before.
    pub(super) fn deadline(&self, timeout: Duration) -> Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start + last + timeout
    }

    /// Resolves once nothing was relayed for `timeout`.
    pub(super) async fn idle(&self, timeout: Duration) {
        loop {
            let deadline = self.deadline(timeout);
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}
