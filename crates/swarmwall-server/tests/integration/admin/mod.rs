//! The admin surface in-process: `swarmwall_server::admin::serve` on 127.0.0.1:0 with a real
//! `Metrics`, `Store`, `Strikes` and event log, driven over real TCP (and TLS with curl).
//! `/metrics` is scraped and parsed; counters must move by exactly what the test added.

mod accounts;
mod api;
mod listener;
mod metrics;

use std::sync::Arc;

use std::net::SocketAddr;

use swarmwall_server::admin::promtext::Scrape;
use swarmwall_server::admin::{AccountEntry, AdminContext, AdminToken, MemoryEvents};
use swarmwall_server::audit::AuditLog;
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::Store;
use swarmwall_server::strikes::Strikes;

use crate::harness::http::{TOKEN, request, spawn_admin};

/// A running admin listener; dropping it shuts the listener down.
struct Admin {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    events: MemoryEvents,
    store: Store,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// How [`start`] configures the listener.
struct Options {
    token: bool,
    metrics_require_token: bool,
    reload_ok: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token: true,
            metrics_require_token: false,
            reload_ok: true,
        }
    }
}

/// An admin context over `metrics`, a memory store, strikes and no audit log.
fn context(metrics: Arc<Metrics>) -> (AdminContext, Store) {
    let store = Store::memory();
    let context = AdminContext::new(
        metrics,
        store.clone(),
        Strikes::new(store.clone()),
        AuditLog::disabled(),
        "9.9.9-test",
    );
    (context, store)
}

/// [`context`] with fresh metrics.
fn context_pair() -> (AdminContext, Store) {
    context(Arc::new(Metrics::new()))
}

/// A listener with two accounts (alice, bob disabled), an event log and a reload hook.
async fn start(options: Options) -> Admin {
    let metrics = Arc::new(Metrics::new());
    let events = MemoryEvents::new(100);
    let reload_ok = options.reload_ok;
    let (context, store) = context(Arc::clone(&metrics));
    let mut context = context
        .with_events(Arc::new(events.clone()))
        .with_metrics_require_token(options.metrics_require_token)
        .with_accounts(Arc::new(|| {
            vec![
                AccountEntry {
                    name: "alice".to_owned(),
                    disabled: false,
                },
                AccountEntry {
                    name: "bob".to_owned(),
                    disabled: true,
                },
            ]
        }))
        .with_reload(Arc::new(move || {
            Box::pin(async move {
                if reload_ok {
                    Ok(())
                } else {
                    Err("x.toml:3:1: unknown field `bogus`".into())
                }
            })
        }));
    if options.token {
        context = context.with_token(AdminToken::from_secret(TOKEN.as_bytes()).unwrap());
    }
    let (address, shutdown) = spawn_admin(context).await;
    Admin {
        address,
        metrics,
        events,
        store,
        _shutdown: shutdown,
    }
}

/// `GET /metrics` without a token, parsed.
async fn scrape(admin: &Admin) -> Scrape {
    let answer = request(admin.address, "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Scrape::parse(&answer.body).unwrap()
}
