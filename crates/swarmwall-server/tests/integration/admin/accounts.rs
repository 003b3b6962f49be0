//! Account provisioning through the admin API, in-process over real TCP: the contract
//! (`POST` 201, `GET` 200 without secrets, `PATCH` 200, `DELETE` 204, unknown 404, bad bodies
//! 400/422 naming the field, never 5xx), the effect on real logins (`Authenticator` with real
//! argon2id), parallel bursts against one name, the accounts file written atomically with
//! mode 0600, the store backend, and per-account BitTorrent policy overrides (round trip,
//! validation naming `policy.forms.xyz`, audit record, the file across a restart, and two
//! nodes on a real redis-server: set on A, in force on B within a second).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use swarmwall_core::classify::BtForm;
use swarmwall_server::admin::{AccountEntry, AdminContext, AdminToken};
use swarmwall_server::audit::AuditLog;
use swarmwall_server::auth::account_store::AccountStore;
use swarmwall_server::auth::{
    AccountDirectory, AccountsFile, AuthOutcome, Authenticator, DirectoryBackend,
};
use swarmwall_server::config::{PolicyConfig, SecurityConfig, StoreConfig};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::policy::{DestinationPolicy, TrafficAction};
use swarmwall_server::store::Store;
use swarmwall_server::strikes::Strikes;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::http::{TOKEN, request, spawn_admin};

struct Admin {
    address: SocketAddr,
    authenticator: Authenticator,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Cheap argon2 and no failure delay: the tests exercise the API, not the hash cost.
fn security() -> SecurityConfig {
    SecurityConfig {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        failure_delay: Duration::ZERO,
        failure_delay_max: Duration::ZERO,
        max_failures: 1_000,
        ..SecurityConfig::default()
    }
}

async fn start(backend: impl FnOnce(&Store) -> DirectoryBackend) -> Admin {
    start_with(
        Store::memory(),
        AccountsFile::default(),
        AuditLog::disabled(),
        backend,
    )
    .await
}

/// An admin API over `store`, serving `accounts` at start, auditing into `audit`.
async fn start_with(
    store: Store,
    accounts: AccountsFile,
    audit: AuditLog,
    backend: impl FnOnce(&Store) -> DirectoryBackend,
) -> Admin {
    let metrics = Arc::new(Metrics::new());
    let config = security();
    let authenticator = Authenticator::with_security(
        accounts,
        &config,
        store.clone(),
        audit,
        Arc::clone(&metrics),
        None,
        swarmwall_server::auth::PseudonymKey::random(),
    );
    let directory = AccountDirectory::new(authenticator.clone(), backend(&store), &config);
    let view = authenticator.clone();
    let context = AdminContext::new(
        metrics,
        store.clone(),
        Strikes::new(store.clone()),
        AuditLog::disabled(),
        "test",
    )
    .with_token(AdminToken::from_secret(TOKEN.as_bytes()).unwrap())
    .with_directory(directory)
    .with_accounts(Arc::new(move || {
        view.account_names()
            .into_iter()
            .map(|(name, disabled)| AccountEntry { name, disabled })
            .collect()
    }));
    let (address, shutdown) = spawn_admin(context).await;
    Admin {
        address,
        authenticator,
        _shutdown: shutdown,
    }
}

/// One request with the token; returns (status, body text).
async fn call(address: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let answer = request(address, method, path, Some(TOKEN), body).await;
    (answer.status, answer.body)
}

async fn login(admin: &Admin, user: &str, password: &str) -> bool {
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    matches!(
        admin
            .authenticator
            .authenticate(user.as_bytes(), password.as_bytes(), client)
            .await,
        AuthOutcome::Accepted { .. }
    )
}

#[tokio::test]
async fn contract_and_effect_on_logins_in_file_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.toml");
    let file = path.clone();
    let admin = start(move |_| DirectoryBackend::File(file)).await;
    let a = admin.address;

    let (status, body) = call(
        a,
        "POST",
        "/api/v1/accounts",
        Some(r#"{"name":"alice","password":"alice-pw-1"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(login(&admin, "alice", "alice-pw-1").await);
    assert!(!login(&admin, "alice", "alice-pw-2").await);
    // Generated password, returned once.
    let (status, body) = call(a, "POST", "/api/v1/accounts", Some(r#"{"name":"gen"}"#)).await;
    assert_eq!(status, 201);
    let generated = serde_json::from_str::<Value>(&body).unwrap()["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(login(&admin, "gen", &generated).await);
    let (status, body) = call(a, "GET", "/api/v1/accounts/gen", None).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains(&generated) && !body.contains("argon2"),
        "{body}"
    );
    // The file: 0600, hashes only, no temporary file left.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("alice-pw-1") && !text.contains(&generated));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
    // PATCH and DELETE.
    let (status, _) = call(
        a,
        "PATCH",
        "/api/v1/accounts/alice",
        Some(r#"{"disabled":true}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!login(&admin, "alice", "alice-pw-1").await);
    let (status, _) = call(
        a,
        "PATCH",
        "/api/v1/accounts/alice",
        Some(r#"{"disabled":false,"password":"alice-pw-2"}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!login(&admin, "alice", "alice-pw-1").await);
    assert!(login(&admin, "alice", "alice-pw-2").await);
    assert_eq!(
        call(a, "DELETE", "/api/v1/accounts/alice", None).await.0,
        204
    );
    assert!(!login(&admin, "alice", "alice-pw-2").await);
    // Unknown names and bad bodies: 4xx naming the field, never 5xx.
    assert_eq!(call(a, "GET", "/api/v1/accounts/alice", None).await.0, 404);
    assert_eq!(
        call(a, "DELETE", "/api/v1/accounts/alice", None).await.0,
        404
    );
    for (method, path, body, field) in [
        ("POST", "/api/v1/accounts", r#"{"password":"x"}"#, "name"),
        (
            "POST",
            "/api/v1/accounts",
            r#"{"name":"a b","password":"x"}"#,
            "name",
        ),
        (
            "POST",
            "/api/v1/accounts",
            r#"{"name":"x","password":""}"#,
            "password",
        ),
        (
            "POST",
            "/api/v1/accounts",
            r#"{"name":"x","password_hash":"plain"}"#,
            "password_hash",
        ),
        (
            "POST",
            "/api/v1/accounts",
            r#"{"name":"x","extra":1}"#,
            "extra",
        ),
        ("POST", "/api/v1/accounts", r#"{"name":5}"#, "name"),
        (
            "PATCH",
            "/api/v1/accounts/gen",
            r#"{"disabled":"no"}"#,
            "disabled",
        ),
        ("PATCH", "/api/v1/accounts/gen", r#"{}"#, "disabled"),
        (
            "PATCH",
            "/api/v1/accounts/gen",
            r#"{"deny_countries":["XXX"]}"#,
            "deny_countries",
        ),
        ("PATCH", "/api/v1/accounts/gen", r#"[1,2]"#, "body"),
    ] {
        let (status, body) = call(a, method, path, Some(body)).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {body}"
        );
        assert!(
            body.contains(field),
            "{method} {path}: {body} should name `{field}`"
        );
    }
    let too_long = "n".repeat(300);
    let (status, _) = call(a, "GET", &format!("/api/v1/accounts/{too_long}"), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_burst_on_one_name_creates_it_once_and_distinct_names_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.toml");
    let file = path.clone();
    let admin = start(move |_| DirectoryBackend::File(file)).await;
    let a = admin.address;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let body = if i % 2 == 0 {
            json!({"name": "same", "password": format!("pw-{i}")}).to_string()
        } else {
            json!({"name": format!("user{i}"), "password": "pw"}).to_string()
        };
        tasks.push(tokio::spawn(async move {
            call(a, "POST", "/api/v1/accounts", Some(&body)).await.0
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        21,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let file = AccountsFile::load(&path).unwrap();
    assert_eq!(file.accounts.len(), 21);
    assert_eq!(admin.authenticator.accounts().len(), 21);
}

#[tokio::test]
async fn store_backend_provisions_and_lists_with_paging() {
    let admin =
        start(|store| DirectoryBackend::Store(AccountStore::for_store(store).unwrap())).await;
    let a = admin.address;
    let mut lines = String::new();
    for i in 0..25 {
        lines.push_str(&json!({"name": format!("c{i:02}"), "password": "pw"}).to_string());
        lines.push('\n');
    }
    let request = format!(
        "POST /api/v1/accounts/import HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\n\r\n{lines}",
        lines.len()
    );
    let mut stream = TcpStream::connect(a).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains(r#""created":25"#), "{raw}");
    assert!(login(&admin, "c07", "pw").await);
    let (status, body) = call(a, "GET", "/api/v1/accounts?name=c1&offset=2&limit=3", None).await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["total"], 10);
    let names: Vec<&str> = page["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c12", "c13", "c14"]);
    // Each listed account carries its TOTP flag and country lists (the dashboard shows them),
    // never a secret.
    let listed = &page["accounts"][0];
    assert_eq!(listed["totp_enrolled"], false);
    assert_eq!(listed["allow_countries"], json!([]));
    assert_eq!(listed["deny_countries"], json!([]));
    assert!(!body.contains("argon2"), "{body}");
    assert!(listed.get("password").is_none(), "{listed}");
    assert_eq!(call(a, "DELETE", "/api/v1/accounts/c07", None).await.0, 204);
    assert!(!login(&admin, "c07", "pw").await);
    // OpenAPI documents the new routes.
    let (_, doc) = call(a, "GET", "/api/v1/openapi.json", None).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for path in [
        "/api/v1/accounts/{name}",
        "/api/v1/accounts/{name}/totp",
        "/api/v1/accounts/import",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
    assert!(doc["paths"]["/api/v1/accounts"]["post"].is_object());
}

/// The action the data path takes for a `form` flow of `name`, with the account record the
/// authenticator holds (what `SessionContext::action_for` does).
fn action(
    authenticator: &Authenticator,
    config: &PolicyConfig,
    name: &str,
    form: BtForm,
) -> TrafficAction {
    let policy = DestinationPolicy::new(config, &[]).unwrap();
    let record = authenticator.account(name);
    policy.action_with_override(
        form,
        Some(name),
        record.as_ref().and_then(|account| account.policy.as_ref()),
    )
}

#[tokio::test]
async fn policy_override_round_trip_validation_audit_and_restart_in_file_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.toml");
    let file = path.clone();
    let audit = AuditLog::memory(None, 100);
    let admin = start_with(
        Store::memory(),
        AccountsFile::default(),
        audit.clone(),
        move |_| DirectoryBackend::File(file),
    )
    .await;
    let a = admin.address;
    let config = PolicyConfig::default();
    // Created with an override (and one without, whose file entry must stay as before).
    let (status, body) = call(
        a,
        "POST",
        "/api/v1/accounts",
        Some(r#"{"name":"alice","password":"pw","policy":{"forms":{"dht":"log"}}}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["policy"],
        json!({"forms": {"dht": "log"}})
    );
    assert_eq!(
        call(
            a,
            "POST",
            "/api/v1/accounts",
            Some(r#"{"name":"bob","password":"pw"}"#)
        )
        .await
        .0,
        201
    );
    assert_eq!(
        action(&admin.authenticator, &config, "alice", BtForm::Dht),
        TrafficAction::Log
    );
    assert_eq!(
        action(&admin.authenticator, &config, "alice", BtForm::PeerWire),
        TrafficAction::Block
    );
    // PATCH round trip: GET returns exactly what was set.
    let set = json!({"policy": {"bittorrent": "allow", "forms": {"mse": "block"}}});
    let (status, body) = call(a, "PATCH", "/api/v1/accounts/alice", Some(&set.to_string())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(a, "GET", "/api/v1/accounts/alice", None).await;
    assert_eq!(status, 200);
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["policy"], set["policy"], "{body}");
    assert_eq!(
        action(&admin.authenticator, &config, "alice", BtForm::PeerWire),
        TrafficAction::Allow
    );
    assert_eq!(
        action(&admin.authenticator, &config, "alice", BtForm::Mse),
        TrafficAction::Block
    );
    assert_eq!(
        action(&admin.authenticator, &config, "bob", BtForm::PeerWire),
        TrafficAction::Block
    );
    let (_, listed) = call(a, "GET", "/api/v1/accounts?name=alice", None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["accounts"][0]["policy"],
        set["policy"],
        "{listed}"
    );
    // Bad input: 4xx naming the field, nothing changed.
    for (body, field) in [
        (
            r#"{"policy":{"forms":{"xyz":"block"}}}"#,
            "policy.forms.xyz",
        ),
        (r#"{"policy":{"forms":{"mse":"drop"}}}"#, "policy.forms.mse"),
        (r#"{"policy":{"bittorrent":"yes"}}"#, "policy.bittorrent"),
        (r#"{"policy":{"bittorrent":7}}"#, "policy.bittorrent"),
        (r#"{"policy":{"colour":"red"}}"#, "policy.colour"),
        (r#"{"policy":{"forms":"mse"}}"#, "policy.forms"),
        (r#"{"policy":"allow"}"#, "policy"),
    ] {
        let (status, answer) = call(a, "PATCH", "/api/v1/accounts/alice", Some(body)).await;
        assert!((400..500).contains(&status), "{body}: {status} {answer}");
        assert!(
            answer.contains(field),
            "{body}: {answer} should name `{field}`"
        );
    }
    let (status, answer) = call(
        a,
        "POST",
        "/api/v1/accounts",
        Some(r#"{"name":"carol","password":"pw","policy":{"forms":{"dhtt":"log"}}}"#),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("policy.forms.dhtt"), "{answer}");
    assert_eq!(call(a, "GET", "/api/v1/accounts/carol", None).await.0, 404);
    assert_eq!(
        call(
            a,
            "PATCH",
            "/api/v1/accounts/nobody",
            Some(&set.to_string())
        )
        .await
        .0,
        404
    );
    let (_, body) = call(a, "GET", "/api/v1/accounts/alice", None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["policy"],
        set["policy"]
    );
    // Audited as an admin action naming the field and the new override.
    let record = audit
        .recent(100)
        .into_iter()
        .rev()
        .find(|event| event["details"]["action"] == "account_policy")
        .expect("an account_policy admin_action");
    assert_eq!(record["account"], "alice", "{record}");
    assert_eq!(record["details"]["fields"], json!(["policy"]), "{record}");
    assert_eq!(record["details"]["policy"], set["policy"], "{record}");
    // On disk: the override under alice, nothing new under bob (old files stay unchanged).
    let text = std::fs::read_to_string(&path).unwrap();
    let section = |name: &str| {
        text.split("[[account]]")
            .find(|part| part.contains(&format!("name = \"{name}\"")))
            .unwrap()
            .to_owned()
    };
    assert!(section("alice").contains("policy"), "{text}");
    assert!(!section("bob").contains("policy"), "{text}");
    // A restart (a new node reading the same file) enforces the same override.
    let loaded = AccountsFile::load(&path).unwrap();
    assert_eq!(
        loaded
            .find("alice")
            .unwrap()
            .policy
            .as_ref()
            .unwrap()
            .bittorrent,
        Some(TrafficAction::Allow)
    );
    assert!(loaded.find("bob").unwrap().policy.is_none());
    drop(admin);
    let file = path.clone();
    let restarted = start_with(Store::memory(), loaded, AuditLog::disabled(), move |_| {
        DirectoryBackend::File(file)
    })
    .await;
    assert_eq!(
        action(&restarted.authenticator, &config, "alice", BtForm::PeerWire),
        TrafficAction::Allow
    );
    let (_, body) = call(restarted.address, "GET", "/api/v1/accounts/alice", None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["policy"],
        set["policy"]
    );
    // `null` clears it: the configuration file's policy applies again.
    let (status, body) = call(
        restarted.address,
        "PATCH",
        "/api/v1/accounts/alice",
        Some(r#"{"policy":null}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["policy"],
        Value::Null
    );
    assert_eq!(
        action(&restarted.authenticator, &config, "alice", BtForm::PeerWire),
        TrafficAction::Block
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains("policy"));
    // JSON lines import carries it too.
    let line =
        json!({"name": "imp", "password": "pw", "policy": {"bittorrent": "log"}}).to_string();
    let bad =
        json!({"name": "imp2", "password": "pw", "policy": {"forms": {"nope": "log"}}}).to_string();
    for (lines, expect) in [
        (format!("{line}\n{bad}\n"), 422),
        (format!("{line}\n"), 200),
    ] {
        let request = format!(
            "POST /api/v1/accounts/import HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\n\
             Content-Length: {}\r\n\r\n{lines}",
            lines.len()
        );
        let mut stream = TcpStream::connect(restarted.address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with(&format!("HTTP/1.1 {expect}")), "{raw}");
        if expect == 422 {
            assert!(
                raw.contains("line 2") && raw.contains("policy.forms.nope"),
                "{raw}"
            );
        }
    }
    assert_eq!(
        action(&restarted.authenticator, &config, "imp", BtForm::Utp),
        TrafficAction::Log
    );
}

#[tokio::test]
async fn policy_override_set_on_node_a_is_in_force_on_node_b_within_a_second() {
    let Some(redis) = crate::harness::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &'static str| {
        let config = StoreConfig {
            url: crate::harness::redis_backend(&redis),
            ..StoreConfig::default()
        };
        let data = dir.path().join(name);
        async move {
            Store::open(&config, &data, Arc::new(Metrics::new()))
                .await
                .unwrap()
        }
    };
    let a = start_with(
        open("a").await,
        AccountsFile::default(),
        AuditLog::disabled(),
        |store| DirectoryBackend::Store(AccountStore::for_store(store).unwrap()),
    )
    .await;
    // Node B: its own store connection, authenticator and change follower (as `serve` does).
    let store_b = open("b").await;
    let accounts_b = AccountStore::for_store(&store_b).unwrap();
    let snapshot = accounts_b.snapshot().await.unwrap();
    let b = Authenticator::new(AccountsFile::default());
    let directory_b =
        AccountDirectory::new(b.clone(), DirectoryBackend::Store(accounts_b), &security());
    let follower = directory_b.spawn_follower(Some(snapshot.position)).unwrap();
    let config = PolicyConfig::default();

    let (status, body) = call(
        a.address,
        "POST",
        "/api/v1/accounts",
        Some(r#"{"name":"erin","password":"pw"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        crate::harness::wait_for(Duration::from_secs(1), async || b.account("erin").is_some())
            .await
    );
    assert_eq!(
        action(&b, &config, "erin", BtForm::PeerWire),
        TrafficAction::Block
    );
    // Set on A -> in force on B within a second.
    let set = r#"{"policy":{"bittorrent":"allow","forms":{"dht":"block"}}}"#;
    let started = std::time::Instant::now();
    assert_eq!(
        call(a.address, "PATCH", "/api/v1/accounts/erin", Some(set))
            .await
            .0,
        200
    );
    assert!(
        crate::harness::wait_for(Duration::from_secs(1), async || {
            action(&b, &config, "erin", BtForm::PeerWire) == TrafficAction::Allow
        })
        .await,
        "the override did not reach node B within a second"
    );
    let took = started.elapsed();
    assert_eq!(
        action(&b, &config, "erin", BtForm::Dht),
        TrafficAction::Block
    );
    // Cleared on A -> the default again on B.
    assert_eq!(
        call(
            a.address,
            "PATCH",
            "/api/v1/accounts/erin",
            Some(r#"{"policy":null}"#)
        )
        .await
        .0,
        200
    );
    assert!(
        crate::harness::wait_for(Duration::from_secs(1), async || {
            action(&b, &config, "erin", BtForm::PeerWire) == TrafficAction::Block
        })
        .await
    );
    eprintln!("override in force on node B after {} ms", took.as_millis());
    follower.abort();
}
