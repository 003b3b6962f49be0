//! A stand-alone admin surface for the dashboard browser test and the API fuzz run: the real
//! `admin::serve` with a real `Metrics`, in-memory store and event list, plus a SEPARATE
//! debug listener (this example only, never in the product) through which a test generates
//! activity by bumping counters.
//!
//! ```text
//! cargo run -p swarmwall-server --example admin_demo -- --token-file FILE [--listen ADDR]
//! ```
//!
//! Account provisioning (`POST /api/v1/accounts`, ...) works on a scratch accounts file in the
//! temporary directory, with cheap argon2 parameters.
//!
//! Prints `admin interface on ADDR` and `debug listening on ADDR` on stderr. The debug
//! listener takes `POST /activity` with a JSON body such as
//! `{"sessions": 2, "bytes": 4096, "blocks": {"dht": 3}, "auth_failures": 1, "alerts": 1,
//!   "suspend": "alice", "lockout": "bob"}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use swarmwall_server::admin::{
    AccountEntry, AdminContext, AdminToken, MemoryEvents, SecurityEvents, serve,
};
use swarmwall_server::audit::AuditLog;
use swarmwall_server::metrics::{
    AuthLabels, BlockLabels, CommandLabels, DirectionLabels, Metrics, ReasonLabels,
};
use swarmwall_server::store::{Namespace, Store, unix_now_ms};
use swarmwall_server::strikes::Strikes;

#[derive(Clone)]
struct Demo {
    metrics: Arc<Metrics>,
    events: MemoryEvents,
    store: Store,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut token_file = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut fail_reload = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--token-file" => token_file = args.next().map(PathBuf::from),
            "--listen" => listen = args.next().ok_or("--listen needs ADDR")?.parse()?,
            "--fail-reload" => fail_reload = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let token_file = token_file.ok_or("--token-file FILE is required")?;
    // Logging set-up belongs to the binary; the demo installs a plain stderr subscriber.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let metrics = Arc::new(Metrics::new());
    metrics.store_up.set(1);
    let store = Store::memory();
    let events = MemoryEvents::new(1000);
    let security = swarmwall_server::config::SecurityConfig {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..swarmwall_server::config::SecurityConfig::default()
    };
    let accounts_file =
        std::env::temp_dir().join(format!("swarmwall-admin-demo-{}.toml", std::process::id()));
    let authenticator =
        swarmwall_server::auth::Authenticator::new(swarmwall_server::auth::AccountsFile::default());
    let directory = swarmwall_server::auth::AccountDirectory::new(
        authenticator,
        swarmwall_server::auth::DirectoryBackend::File(accounts_file),
        &security,
    );
    let context = AdminContext::new(
        Arc::clone(&metrics),
        store.clone(),
        Strikes::new(store.clone()),
        AuditLog::disabled(),
        env!("CARGO_PKG_VERSION"),
    )
    .with_token(AdminToken::from_file(&token_file)?)
    .with_events(Arc::new(events.clone()))
    .with_directory(directory)
    .with_accounts(Arc::new(|| {
        ["alice", "bob", "carol"]
            .into_iter()
            .map(|name| AccountEntry {
                name: name.to_owned(),
                disabled: name == "carol",
            })
            .collect()
    }))
    .with_reload(Arc::new(move || {
        Box::pin(async move {
            if fail_reload {
                Err("demo.toml:1:1: reload refused (demo)".into())
            } else {
                Ok(())
            }
        })
    }));

    let admin = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "{}",
        swarmwall_server::admin::startup_line(admin.local_addr()?)
    );
    let debug = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("debug listening on {}", debug.local_addr()?);
    let demo = Demo {
        metrics,
        events,
        store,
    };
    let debug_app = axum::Router::new()
        .route("/activity", post(activity))
        .with_state(demo);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::spawn(async move {
        let _ = axum::serve(debug, debug_app).await;
    });
    serve(admin, context, shutdown).await?;
    Ok(())
}

/// Bump counters and record events as the proxy would.
async fn activity(State(demo): State<Demo>, Json(body): Json<Value>) -> Json<Value> {
    let m = &demo.metrics;
    let number = |key: &str| body.get(key).and_then(Value::as_u64).unwrap_or(0);
    let sessions = number("sessions");
    m.sessions_total
        .get_or_create(&CommandLabels { command: "connect" })
        .inc_by(sessions);
    if let Some(active) = body.get("active").and_then(Value::as_i64) {
        m.sessions_active.set(active);
    }
    let bytes = number("bytes");
    for direction in ["client_to_target", "target_to_client"] {
        m.bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes / 2);
    }
    if let Some(blocks) = body.get("blocks").and_then(Value::as_object) {
        for (form, count) in blocks {
            let Some(form) = swarmwall_core::classify::BtForm::ALL
                .into_iter()
                .find(|known| known.as_str() == form)
            else {
                continue;
            };
            let transport = match form.as_str() {
                "utp" | "dht" | "udp_tracker" | "lsd" => "udp",
                _ => "tcp",
            };
            let count = count.as_u64().unwrap_or(0);
            m.blocks
                .get_or_create(&BlockLabels {
                    transport,
                    form: form.as_str(),
                })
                .inc_by(count);
            m.strikes.inc_by(count);
            for _ in 0..count.min(20) {
                demo.events.record(
                    "bittorrent_blocked",
                    Some("alice"),
                    None,
                    json!({ "form": form.as_str(), "transport": transport }),
                );
            }
        }
    }
    let failures = number("auth_failures");
    m.auth_results
        .get_or_create(&AuthLabels {
            result: "failure",
            reason: "bad_credentials",
        })
        .inc_by(failures);
    for _ in 0..failures.min(20) {
        demo.events.record(
            "auth_failure",
            Some("bob"),
            None,
            json!({ "reason": "bad_credentials" }),
        );
    }
    let alerts = number("alerts");
    m.impossible_travel
        .get_or_create(&ReasonLabels { reason: "alert" })
        .inc_by(alerts);
    for _ in 0..alerts.min(20) {
        demo.events.record(
            "impossible_travel",
            Some("bob"),
            None,
            json!({ "speed_kmh": 4200, "action": "alert" }),
        );
    }
    let now = unix_now_ms();
    if let Some(account) = body.get("suspend").and_then(Value::as_str) {
        let _ = demo
            .store
            .set_until(Namespace::Suspension, account, now + 3_600_000)
            .await;
        m.suspensions
            .get_or_create(&ReasonLabels { reason: "short" })
            .inc();
        demo.events.record(
            "suspension",
            Some(account),
            None,
            json!({ "reason": "short", "duration_secs": 3600 }),
        );
    }
    if let Some(account) = body.get("lockout").and_then(Value::as_str) {
        let _ = demo
            .store
            .set_until(Namespace::LockoutAccount, account, now + 900_000)
            .await;
        let _ = demo
            .store
            .record_event(
                Namespace::Strikes,
                account,
                now,
                Duration::from_secs(86_400),
            )
            .await;
        m.lockouts
            .get_or_create(&ReasonLabels { reason: "account" })
            .inc();
        demo.events.record(
            "lockout",
            Some(account),
            None,
            json!({ "failures": 5, "duration_secs": 900 }),
        );
    }
    Json(json!({ "ok": true }))
}
