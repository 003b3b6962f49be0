//! `/metrics` and `/api/v1/status`: counters move by exactly what the test added, the token
//! can guard the scrape, and the status document sums the same counters.

use serde_json::{Value, json};
use swarmwall_server::admin::promtext::Scrape;
use swarmwall_server::metrics::{
    AuthLabels, BlockLabels, CommandLabels, DirectionLabels, ReasonLabels,
};

use super::{Options, scrape, start};
use crate::harness::http::{TOKEN, request};

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
