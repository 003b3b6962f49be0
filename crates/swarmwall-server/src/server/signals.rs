//! Process signals: SIGTERM and SIGINT stop the server gracefully, SIGHUP reloads the
//! configuration (as linkerd's `signal` crate, plus SIGHUP).

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::ServerHandle;

/// Installed signal handlers. Install them before announcing the listener, so a signal sent
/// right after start-up is never handled by the default action (termination).
#[derive(Debug)]
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Install handlers for SIGTERM, SIGINT and SIGHUP (inside a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Handle signals for `handle` until SIGTERM or SIGINT (then call
    /// [`ServerHandle::shutdown`] and return). SIGHUP calls [`ServerHandle::reload`] and logs
    /// the outcome.
    pub async fn watch(mut self, handle: ServerHandle) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => break,
                _ = self.interrupt.recv() => break,
                _ = self.hangup.recv() => match handle.reload().await {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(error) => {
                        tracing::warn!(%error, "configuration reload failed; keeping the old one");
                    }
                },
            }
        }
        tracing::info!("shutting down: no new sessions, draining open ones");
        handle.shutdown();
    }
}
