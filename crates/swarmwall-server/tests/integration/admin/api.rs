//! The token-guarded API: every path needs the token, account actions change state and are
//! audited, bad input is a 4xx JSON error, the reload hook, the OpenAPI description and the
//! self-contained dashboard.

use std::time::Duration;

use serde_json::{Value, json};
use swarmwall_server::admin::SecurityEvents;

use super::{Options, scrape, start};
use crate::harness::http::{TOKEN, parse_answer, request, request_raw};

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
