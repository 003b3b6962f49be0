//! The monitor's own Prometheus metrics: one counter, `swarmwall_monitor_leaks_total`, served
//! on `/metrics` by [`serve_metrics`] when asked.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The monitor's counters and the registry that exposes them.
#[derive(Debug)]
pub struct MonitorMetrics {
    registry: Registry,
    leaks: Counter,
}

impl MonitorMetrics {
    /// Fresh counters, registered under the `swarmwall_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("swarmwall");
        let leaks = Counter::default();
        registry.register(
            "monitor_leaks",
            "Own egress addresses seen in watched swarms",
            leaks.clone(),
        );
        Self { registry, leaks }
    }

    /// Count one leak.
    pub fn record_leak(&self) {
        self.leaks.inc();
    }

    /// Leaks counted so far.
    pub fn leaks(&self) -> u64 {
        self.leaks.get()
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for MonitorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serve `/metrics` (Prometheus text) on `listener` until the task is dropped.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<MonitorMetrics>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_are_counted_and_exposed() {
        let metrics = MonitorMetrics::new();
        metrics.record_leak();
        metrics.record_leak();
        assert_eq!(metrics.leaks(), 2);
        let text = metrics.encode();
        assert!(text.contains("swarmwall_monitor_leaks_total 2"), "{text}");
    }
}
