//! The listener itself: TLS off loopback (served to curl), shutdown, `admin::start` following
//! the configuration, and idle connections closed and counted against the limit.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use swarmwall_server::admin::{AdminToken, serve};
use swarmwall_server::metrics::Metrics;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::{context, context_pair};
use crate::harness::http::{TOKEN, request, request_raw};

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
