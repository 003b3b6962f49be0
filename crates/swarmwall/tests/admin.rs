//! The admin surface in-process: `swarmwall_server::admin::serve` on 127.0.0.1:0 with a real
//! `Metrics`, `Store`, `Strikes` and event log, driven over real TCP (and TLS with curl).
//! `/metrics` is scraped and parsed; counters must move by exactly what the test added.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use swarmwall_server::admin::promtext::Scrape;
use swarmwall_server::admin::{
    AccountEntry, AdminContext, AdminToken, MemoryEvents, SecurityEvents, serve,
};
use swarmwall_server::audit::AuditLog;
use swarmwall_server::metrics::{
    AuthLabels, BlockLabels, CommandLabels, DirectionLabels, Metrics, ReasonLabels,
};
use swarmwall_server::store::Store;
use swarmwall_server::strikes::Strikes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "test-token-0123456789abcdef";

/// A running admin listener; dropping it shuts the listener down.
struct Admin {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    events: MemoryEvents,
    store: Store,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, context, async move {
        let _ = stopped.await;
    }));
    Admin {
        address,
        metrics,
        events,
        store,
        _shutdown: shutdown,
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Send one request over a fresh connection (`Connection: close`) and read the answer.
async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    } else if method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    let raw = tokio::time::timeout(
        Duration::from_secs(10),
        request_raw(address, head.as_bytes()),
    )
    .await
    .expect("admin listener answered within 10 s");
    parse_answer(&raw)
}

async fn request_raw(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    out
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

async fn scrape(admin: &Admin) -> Scrape {
    let answer = request(admin.address, "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Scrape::parse(&answer.body).unwrap()
}

#[tokio::test]
async fn metrics_scrape_moves_exactly_with_the_counters() {
    let admin = start(Options::default()).await;
    let answer = request(admin.address, "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200);
    let content_type = answer.header("content-type").unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(answer.body.trim_end().ends_with("# EOF"), "{}", answer.body);
    let before = Scrape::parse(&answer.body).unwrap();
    // Conventions: units in the names (and declared), `_total` on counters.
    assert!(answer.body.contains("# UNIT swarmwall_relay_bytes bytes"));
    assert!(
        answer
            .body
            .contains("# UNIT swarmwall_handshake_duration_seconds seconds")
    );
    assert!(before.has("swarmwall_sessions_active"));
    assert!(before.has("swarmwall_strikes_total"));
    assert!(before.has("swarmwall_handshake_duration_seconds_count"));
    assert!(before.has("swarmwall_classifier_decision_bytes_count"));

    let m = &admin.metrics;
    m.sessions_active.set(3);
    for _ in 0..5 {
        m.sessions_total
            .get_or_create(&CommandLabels { command: "connect" })
            .inc();
    }
    m.sessions_total
        .get_or_create(&CommandLabels {
            command: "udp_associate",
        })
        .inc();
    m.bytes
        .get_or_create(&DirectionLabels {
            direction: "client_to_target",
        })
        .inc_by(1500);
    m.blocks
        .get_or_create(&BlockLabels {
            transport: "tcp",
            form: "peer_wire",
        })
        .inc_by(2);
    m.blocks
        .get_or_create(&BlockLabels {
            transport: "udp",
            form: "dht",
        })
        .inc();
    m.strikes.inc();
    m.handshake_duration.observe(0.002);

    let after = scrape(&admin).await;
    let delta =
        |name: &str, filter: &[(&str, &str)]| after.sum(name, filter) - before.sum(name, filter);
    assert_eq!(after.sum("swarmwall_sessions_active", &[]), 3.0);
    assert_eq!(delta("swarmwall_sessions_total", &[]), 6.0);
    assert_eq!(
        delta("swarmwall_sessions_total", &[("command", "connect")]),
        5.0
    );
    assert_eq!(
        delta(
            "swarmwall_relay_bytes_total",
            &[("direction", "client_to_target")]
        ),
        1500.0
    );
    assert_eq!(delta("swarmwall_blocks_total", &[]), 3.0);
    assert_eq!(
        delta(
            "swarmwall_blocks_total",
            &[("transport", "tcp"), ("form", "peer_wire")]
        ),
        2.0
    );
    assert_eq!(delta("swarmwall_strikes_total", &[]), 1.0);
    assert_eq!(
        delta("swarmwall_handshake_duration_seconds_count", &[]),
        1.0
    );
    // No label may identify a customer.
    let allowed = [
        "command",
        "direction",
        "transport",
        "class",
        "label",
        "form",
        "reason",
        "result",
        "outcome",
        "operation",
        "action",
        "kind",
        "namespace",
        "le",
    ];
    for sample in &after.samples {
        for key in sample.labels.keys() {
            assert!(
                allowed.contains(&key.as_str()),
                "unexpected label {key} on {}",
                sample.name
            );
        }
    }
}

#[tokio::test]
async fn every_api_path_needs_the_token() {
    let admin = start(Options::default()).await;
    let paths = [
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/accounts"),
        ("GET", "/api/v1/events"),
        ("POST", "/api/v1/reload"),
        ("POST", "/api/v1/accounts/alice/suspend"),
        ("POST", "/api/v1/accounts/alice/unsuspend"),
        ("POST", "/api/v1/accounts/alice/strikes/clear"),
        ("POST", "/api/v1/accounts/alice/unlock"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/no-such-thing"),
        ("GET", "/api/"),
        ("GET", "/api"),
        ("DELETE", "/api/v1/status"),
    ];
    let failures_before = scrape(&admin)
        .await
        .sum("swarmwall_admin_auth_failures_total", &[]);
    for (method, path) in paths {
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let answer = request(admin.address, method, path, token, None).await;
            assert_eq!(
                answer.status, 401,
                "{method} {path} with {token:?}: {}",
                answer.body
            );
            assert_eq!(answer.json()["status"], 401);
            assert!(answer.header("www-authenticate").is_some());
        }
    }
    let failures = scrape(&admin)
        .await
        .sum("swarmwall_admin_auth_failures_total", &[]);
    assert_eq!(failures - failures_before, (paths.len() * 3) as f64);
    // The right token in the wrong scheme is refused too.
    let basic = format!(
        "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Basic {TOKEN}\r\n\r\n"
    );
    let answer = parse_answer(&request_raw(admin.address, basic.as_bytes()).await);
    assert_eq!(answer.status, 401);
    // With the token: known paths answer, unknown ones are 404 and wrong methods 405.
    let ok = request(admin.address, "GET", "/api/v1/status", Some(TOKEN), None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let missing = request(
        admin.address,
        "GET",
        "/api/v1/no-such-thing",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["status"], 404);
    let wrong_method = request(admin.address, "DELETE", "/api/v1/status", Some(TOKEN), None).await;
    assert_eq!(wrong_method.status, 405);
    // The page, the description and /metrics stay open.
    for path in [
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/openapi.json",
        "/metrics",
        "/healthz",
    ] {
        let answer = request(admin.address, "GET", path, None, None).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
    }
}

#[tokio::test]
async fn without_a_configured_token_the_api_is_closed() {
    let admin = start(Options {
        token: false,
        ..Options::default()
    })
    .await;
    let answer = request(admin.address, "GET", "/api/v1/status", Some(TOKEN), None).await;
    assert_eq!(answer.status, 401);
    let message = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("no admin token"), "{message}");
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let admin = start(Options {
        metrics_require_token: true,
        ..Options::default()
    })
    .await;
    let open = request(admin.address, "GET", "/metrics", None, None).await;
    assert_eq!(open.status, 401);
    let wrong = request(
        admin.address,
        "GET",
        "/metrics",
        Some("nope-nope-nope-nope-nope"),
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ok = request(admin.address, "GET", "/metrics", Some(TOKEN), None).await;
    assert_eq!(ok.status, 200);
    assert!(
        Scrape::parse(&ok.body)
            .unwrap()
            .has("swarmwall_sessions_active")
    );
}

#[tokio::test]
async fn status_reports_the_metric_totals() {
    let admin = start(Options::default()).await;
    let m = &admin.metrics;
    m.sessions_active.set(2);
    m.sessions_total
        .get_or_create(&CommandLabels { command: "connect" })
        .inc_by(7);
    m.sessions_refused
        .get_or_create(&ReasonLabels { reason: "auth" })
        .inc_by(2);
    m.bytes
        .get_or_create(&DirectionLabels {
            direction: "client_to_target",
        })
        .inc_by(100);
    m.bytes
        .get_or_create(&DirectionLabels {
            direction: "target_to_client",
        })
        .inc_by(900);
    m.blocks
        .get_or_create(&BlockLabels {
            transport: "tcp",
            form: "mse",
        })
        .inc_by(4);
    m.blocks
        .get_or_create(&BlockLabels {
            transport: "udp",
            form: "utp",
        })
        .inc();
    m.auth_results
        .get_or_create(&AuthLabels {
            result: "failure",
            reason: "bad_credentials",
        })
        .inc_by(3);
    m.auth_results
        .get_or_create(&AuthLabels {
            result: "success",
            reason: "ok",
        })
        .inc();
    m.suspensions
        .get_or_create(&ReasonLabels { reason: "short" })
        .inc();
    m.lockouts
        .get_or_create(&ReasonLabels { reason: "account" })
        .inc_by(2);
    m.impossible_travel
        .get_or_create(&ReasonLabels { reason: "alert" })
        .inc();
    m.store_up.set(1);
    let status = request(admin.address, "GET", "/api/v1/status", Some(TOKEN), None)
        .await
        .json();
    assert_eq!(status["version"], "9.9.9-test");
    assert!(status["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(status["sessions"]["active"], 2);
    assert_eq!(status["sessions"]["total"], 7);
    assert_eq!(status["sessions"]["refused"], 2);
    assert_eq!(status["sessions"]["by_command"]["connect"], 7);
    assert_eq!(status["bytes"]["client_to_target"], 100);
    assert_eq!(status["bytes"]["target_to_client"], 900);
    assert_eq!(status["bytes"]["total"], 1000);
    assert_eq!(status["blocks"]["total"], 5);
    // Every form is listed (zero until its first block).
    let by_form = status["blocks"]["by_form"].as_object().unwrap();
    assert_eq!(by_form["mse"], 4);
    assert_eq!(by_form["utp"], 1);
    assert_eq!(by_form["dht"], 0);
    assert_eq!(by_form.values().filter_map(Value::as_u64).sum::<u64>(), 5);
    assert_eq!(
        status["blocks"]["by_transport"],
        json!({ "tcp": 4, "udp": 1 })
    );
    assert_eq!(status["auth_failures"], 3);
    assert_eq!(status["auth"]["successes"], 1);
    assert_eq!(status["auth"]["failures_by_reason"]["bad_credentials"], 3);
    assert_eq!(status["suspensions"], 1);
    assert_eq!(status["lockouts"], 2);
    assert_eq!(status["alerts"]["impossible_travel"], 1);
    assert_eq!(status["alerts"]["total"], 1);
    assert_eq!(status["store_up"], true);
}

#[tokio::test]
async fn account_actions_change_state_and_are_audited() {
    let admin = start(Options::default()).await;
    let now = swarmwall_server::store::unix_now_ms();
    admin
        .store
        .record_event(
            swarmwall_server::store::Namespace::Strikes,
            "alice",
            now,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let accounts = request(admin.address, "GET", "/api/v1/accounts", Some(TOKEN), None)
        .await
        .json();
    let list = accounts["accounts"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "alice");
    assert_eq!(list[0]["strikes"], 1);
    assert_eq!(list[0]["suspended"], false);
    assert_eq!(list[0]["suspended_until_ms"], Value::Null);
    assert_eq!(list[1]["name"], "bob");
    assert_eq!(list[1]["disabled"], true);
    assert_eq!(list[1]["locked_out"], false);

    let suspended = request(
        admin.address,
        "POST",
        "/api/v1/accounts/alice/suspend",
        Some(TOKEN),
        Some(r#"{"duration": "1h", "reason": "test"}"#),
    )
    .await;
    assert_eq!(suspended.status, 200, "{}", suspended.body);
    let until = suspended.json()["suspended_until_ms"].as_u64().unwrap();
    assert!(until >= now + 3_600_000 && until < now + 3_700_000);
    let accounts = request(admin.address, "GET", "/api/v1/accounts", Some(TOKEN), None)
        .await
        .json();
    assert_eq!(accounts["accounts"][0]["suspended"], true);
    assert_eq!(accounts["accounts"][0]["suspended_until_ms"], until);
    let after = scrape(&admin).await;
    assert_eq!(
        after.sum("swarmwall_suspensions_total", &[("reason", "admin")]),
        1.0
    );
    // The restricted listing finds alice (and a suspended unauthenticated client) alone.
    admin
        .store
        .set_until(
            swarmwall_server::store::Namespace::Suspension,
            "client:3f9a1c0e",
            now + 60_000,
        )
        .await
        .unwrap();
    let restricted = request(
        admin.address,
        "GET",
        "/api/v1/accounts?restricted=true",
        Some(TOKEN),
        None,
    )
    .await
    .json();
    let names: Vec<(&str, bool)> = restricted["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["configured"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("alice", true), ("client:3f9a1c0e", false)]);
    admin
        .store
        .clear(
            swarmwall_server::store::Namespace::Suspension,
            "client:3f9a1c0e",
        )
        .await
        .unwrap();

    admin
        .store
        .set_until(
            swarmwall_server::store::Namespace::LockoutAccount,
            "alice",
            now + 60_000,
        )
        .await
        .unwrap();
    for path in [
        "/api/v1/accounts/alice/unsuspend",
        "/api/v1/accounts/alice/strikes/clear",
        "/api/v1/accounts/alice/unlock",
    ] {
        let answer = request(admin.address, "POST", path, Some(TOKEN), None).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.json()["result"], "ok");
    }
    let accounts = request(admin.address, "GET", "/api/v1/accounts", Some(TOKEN), None)
        .await
        .json();
    assert_eq!(accounts["accounts"][0]["suspended"], false);
    assert_eq!(accounts["accounts"][0]["strikes"], 0);
    assert_eq!(accounts["accounts"][0]["locked_out"], false);

    // Every action is in the security events, in order.
    let events = request(
        admin.address,
        "GET",
        "/api/v1/events?limit=10",
        Some(TOKEN),
        None,
    )
    .await
    .json();
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "admin_action")
        .map(|e| e["details"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["suspend", "unsuspend", "clear_strikes", "unlock"]);
    assert_eq!(admin.events.recent(1)[0]["account"], "alice");
    assert_eq!(
        scrape(&admin)
            .await
            .sum("swarmwall_admin_actions_total", &[("result", "ok")]),
        4.0
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_json_error() {
    let admin = start(Options::default()).await;
    let suspend = "/api/v1/accounts/alice/suspend";
    let cases: [(&str, &str, Option<&str>, u16); 15] = [
        (
            "POST",
            "/api/v1/accounts/mallory/suspend",
            Some(r#"{"duration":"1h"}"#),
            404,
        ),
        ("POST", "/api/v1/accounts/mallory/unsuspend", None, 404),
        ("POST", "/api/v1/accounts/mallory/strikes/clear", None, 404),
        ("POST", "/api/v1/accounts/mallory/unlock", None, 404),
        ("POST", suspend, Some(r#"{"duration":"soon"}"#), 400),
        ("POST", suspend, Some(r#"{"duration":"0s"}"#), 400),
        ("POST", suspend, Some(r#"{"duration":"900d"}"#), 400),
        ("POST", suspend, Some(r#"{"duration":5}"#), 422),
        ("POST", suspend, Some(r#"{"duration":"1h","x":1}"#), 422),
        ("POST", suspend, Some("{"), 400),
        ("POST", suspend, None, 415),
        ("GET", "/api/v1/events?limit=abc", None, 400),
        ("GET", "/api/v1/events?limit=5000", None, 400),
        ("GET", "/api/v1/events?limit=-1", None, 400),
        ("GET", "/api/v1/accounts?restricted=maybe", None, 400),
    ];
    for (method, path, body, expected) in cases {
        let answer = request(admin.address, method, path, Some(TOKEN), body).await;
        assert_eq!(
            answer.status, expected,
            "{method} {path} {body:?}: {}",
            answer.body
        );
        let json = answer.json();
        assert_eq!(json["status"], expected);
        assert!(!json["error"].as_str().unwrap().is_empty());
    }
    let long_name = format!("/api/v1/accounts/{}/unsuspend", "a".repeat(300));
    let answer = request(admin.address, "POST", &long_name, Some(TOKEN), None).await;
    assert_eq!(answer.status, 400);
    let bad_utf8 = request(
        admin.address,
        "POST",
        "/api/v1/accounts/%FF/unsuspend",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(bad_utf8.status, 400, "{}", bad_utf8.body);
    let empty = request(
        admin.address,
        "GET",
        "/api/v1/events?limit=0",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(empty.json()["events"], json!([]));
}

#[tokio::test]
async fn reload_hook_success_and_failure_surface() {
    let ok = start(Options::default()).await;
    let answer = request(ok.address, "POST", "/api/v1/reload", Some(TOKEN), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["result"], "ok");

    let failing = start(Options {
        reload_ok: false,
        ..Options::default()
    })
    .await;
    let answer = request(failing.address, "POST", "/api/v1/reload", Some(TOKEN), None).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.json()["error"], "x.toml:3:1: unknown field `bogus`");
    let event = &failing.events.recent(1)[0];
    assert_eq!(event["kind"], "admin_action");
    assert_eq!(event["details"]["action"], "reload");
    assert_eq!(event["details"]["result"], "error");
    let get = request(failing.address, "GET", "/api/v1/reload", Some(TOKEN), None).await;
    assert_eq!(get.status, 405);
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let admin = start(Options::default()).await;
    let open = request(admin.address, "GET", "/openapi.json", None, None).await;
    assert_eq!(open.status, 200);
    let doc = open.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/status",
        "/api/v1/accounts",
        "/api/v1/accounts/{name}/strikes/clear",
        "/api/v1/accounts/{name}/suspend",
        "/api/v1/accounts/{name}/unsuspend",
        "/api/v1/accounts/{name}/unlock",
        "/api/v1/events",
        "/api/v1/reload",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
    let authed = request(
        admin.address,
        "GET",
        "/api/v1/openapi.json",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(authed.json(), doc);
    // Every status field the document requires is present.
    let status = request(admin.address, "GET", "/api/v1/status", Some(TOKEN), None)
        .await
        .json();
    for field in doc["components"]["schemas"]["Status"]["required"]
        .as_array()
        .unwrap()
    {
        assert!(status.get(field.as_str().unwrap()).is_some(), "{field}");
    }
}

#[tokio::test]
async fn dashboard_is_self_contained_and_locked_down() {
    let admin = start(Options::default()).await;
    let page = request(admin.address, "GET", "/", None, None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    for asset in ["/dashboard.js", "/dashboard.css"] {
        assert!(page.body.contains(asset));
        let answer = request(admin.address, "GET", asset, None, None).await;
        assert_eq!(answer.status, 200);
        assert!(!answer.body.contains("http://") && !answer.body.contains("https://"));
    }
}

#[tokio::test]
async fn non_loopback_listener_needs_tls() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (context, _) = context(Arc::new(Metrics::new()));
    let error = serve(listener, context, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("tls_cert"), "{error}");
}

#[tokio::test]
async fn tls_listener_serves_curl_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tls = swarmwall_server::admin::AdminTls::from_pem_files(&cert, &key).unwrap();
    let metrics = Arc::new(Metrics::new());
    metrics.sessions_active.set(4);
    let (context, _) = context(metrics);
    let context = context
        .with_token(AdminToken::from_secret(TOKEN.as_bytes()).unwrap())
        .with_tls(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, context, async move {
        let _ = stopped.await;
    }));
    let curl = |token: Option<&str>| {
        let mut command = std::process::Command::new("curl");
        command
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(&cert);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        command.arg(format!("https://{address}/api/v1/status"));
        tokio::task::spawn_blocking(move || command.output().expect("curl runs"))
    };
    let out = curl(Some(TOKEN)).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(
        code,
        "200",
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_str(body).unwrap();
    assert_eq!(status["sessions"]["active"], 4);
    let out = curl(None).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("\n401"));
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = tokio::time::timeout(
        Duration::from_secs(15),
        request_raw(
            address,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
    )
    .await
    .unwrap();
    assert!(!plain.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn serve_returns_when_shutdown_resolves() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (context, _) = context(Arc::new(Metrics::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, context, async move {
        let _ = stopped.await;
    }));
    assert_eq!(
        request(address, "GET", "/healthz", None, None).await.status,
        200
    );
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returned within 10 s after shutdown");
    assert!(result.unwrap().is_ok());
    assert!(TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn start_follows_the_admin_config() {
    use std::os::unix::fs::PermissionsExt;
    use swarmwall_server::config::AdminConfig;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = AdminConfig {
        metrics_require_token: true,
        ..AdminConfig::default()
    }
    .with_overrides(Some("127.0.0.1:0".parse().unwrap()), Some(token_file));
    let (context, _) = context(Arc::new(Metrics::new()));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = swarmwall_server::admin::start(&config, context, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap()
    .expect("enabled by default");
    assert_ne!(running.address.port(), 0);
    assert_eq!(
        swarmwall_server::admin::startup_line(running.address),
        format!("admin interface on {}", running.address)
    );
    let address = running.address;
    assert_eq!(
        request(address, "GET", "/metrics", None, None).await.status,
        401
    );
    assert_eq!(
        request(address, "GET", "/metrics", Some(TOKEN), None)
            .await
            .status,
        200
    );
    assert_eq!(
        request(address, "GET", "/api/v1/status", Some(TOKEN), None)
            .await
            .status,
        200
    );

    let disabled = AdminConfig {
        enabled: false,
        ..AdminConfig::default()
    };
    let (context, _) = context_pair();
    let none = swarmwall_server::admin::start(&disabled, context, std::future::pending())
        .await
        .unwrap();
    assert!(none.is_none());

    let public = AdminConfig::default().with_overrides(Some("0.0.0.0:0".parse().unwrap()), None);
    let (context, _) = context_pair();
    let error = swarmwall_server::admin::start(&public, context, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("tls_cert"), "{error}");

    // The implicit default address is best effort; an explicit one must bind.
    let holder = std::net::TcpListener::bind(AdminConfig::DEFAULT_LISTEN).ok();
    let (context, _) = context_pair();
    let skipped =
        swarmwall_server::admin::start(&AdminConfig::default(), context, std::future::pending())
            .await
            .unwrap();
    assert!(skipped.is_none(), "default address busy: started anyway");
    let explicit = AdminConfig::default().with_overrides(Some(AdminConfig::DEFAULT_LISTEN), None);
    let (context, _) = context_pair();
    let error = swarmwall_server::admin::start(&explicit, context, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot bind"), "{error}");
    drop(holder);

    let missing = AdminConfig::default().with_overrides(
        Some("127.0.0.1:0".parse().unwrap()),
        Some(dir.path().join("absent")),
    );
    let (context, _) = context_pair();
    let error = swarmwall_server::admin::start(&missing, context, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot read admin token"),
        "{error}"
    );
}

fn context_pair() -> (AdminContext, Store) {
    context(Arc::new(Metrics::new()))
}

#[tokio::test]
async fn idle_connections_are_closed_and_counted_against_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (context, _) = context_pair();
    let context = context.with_connection_limits(1, Duration::from_millis(300));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, context, async move {
        let _ = stopped.await;
    }));
    // A silent client holds the only slot until its idle timeout closes it.
    let started = std::time::Instant::now();
    // Connected first, so accepted first (the backlog is FIFO).
    let mut silent = TcpStream::connect(address).await.unwrap();
    let answer = request(address, "GET", "/healthz", None, None).await;
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the second connection waited for the slot: {:?}",
        started.elapsed()
    );
    // The server closed the silent connection without a byte.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest))
        .await
        .expect("idle connection closed by the server");
    assert!(rest.is_empty());
}
