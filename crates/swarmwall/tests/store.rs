//! The state store: one shared suite run against every backend (memory, the embedded redb
//! file, a real `redis-server` on loopback), crash safety of the embedded store under `kill -9`,
//! Redis outages and slowness, the graduated response shared by two nodes on one Redis, and
//! migration in both directions.
//!
//! Redis tests start their own `redis-server` on a free loopback port (`--save ''
//! --appendonly no`); without the binary they print a loud SKIP line and pass.

mod store_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmwall_core::classify::BtForm;
use swarmwall_server::audit::AuditLog;
use swarmwall_server::config::{StoreBackend, StoreConfig, StrikesSettings};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{self, Namespace, Store, StoreError, StoredValue, unix_now_ms};
use swarmwall_server::strikes::{StrikeOutcome, StrikeSubject, Strikes};

use store_support::{RedisServer, metric_value, wait_for};

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;

async fn open(url: StoreBackend, dir: &std::path::Path, metrics: Arc<Metrics>) -> Store {
    let config = StoreConfig {
        url,
        ..StoreConfig::default()
    };
    Store::open(&config, dir, metrics).await.unwrap()
}

/// The behaviour every backend must share. `now` is the real clock (Redis expires keys by its
/// own clock); values further in the future are injected.
async fn shared_suite(store: &Store, tag: &str) {
    let now = unix_now_ms();
    let w = Duration::from_secs(60);
    let s = |name: &str| format!("{tag}-{name}");

    // Sliding-window events.
    for i in 0..5 {
        let count = store
            .record_event(Namespace::Strikes, &s("ev"), now + i * SEC, w)
            .await
            .unwrap();
        assert_eq!(count, u32::try_from(i + 1).unwrap(), "{tag}");
    }
    assert_eq!(
        store
            .count_events(Namespace::Strikes, &s("ev"), now + 4 * SEC, w)
            .await
            .unwrap(),
        5
    );
    // 62 s on: the events at +0 s and +1 s left the window.
    assert_eq!(
        store
            .count_events(Namespace::Strikes, &s("ev"), now + 62 * SEC, w)
            .await
            .unwrap(),
        3,
        "{tag}"
    );
    assert_eq!(
        store
            .events(Namespace::Strikes, &s("ev"), now + 62 * SEC, w)
            .await
            .unwrap(),
        vec![now + 2 * SEC, now + 3 * SEC, now + 4 * SEC]
    );
    // Two events in the same millisecond are two events.
    store
        .record_event(Namespace::AuthFailuresAccount, &s("same"), now, w)
        .await
        .unwrap();
    assert_eq!(
        store
            .record_event(Namespace::AuthFailuresAccount, &s("same"), now, w)
            .await
            .unwrap(),
        2,
        "{tag}"
    );
    // Recording prunes what left the window.
    assert_eq!(
        store
            .record_event(Namespace::Strikes, &s("ev"), now + 200 * SEC, w)
            .await
            .unwrap(),
        1,
        "{tag}"
    );

    // "Active until" marks only ever move later, and end by the caller's clock.
    store
        .set_until(Namespace::LockoutAccount, &s("lock"), now + 10 * MIN)
        .await
        .unwrap();
    store
        .set_until(Namespace::LockoutAccount, &s("lock"), now + 5 * MIN)
        .await
        .unwrap();
    assert_eq!(
        store
            .active_until(Namespace::LockoutAccount, &s("lock"), now)
            .await
            .unwrap(),
        Some(now + 10 * MIN),
        "{tag}"
    );
    assert_eq!(
        store
            .active_until(Namespace::LockoutAccount, &s("lock"), now + 10 * MIN)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .active_until(Namespace::LockoutAccount, &s("absent"), now)
            .await
            .unwrap(),
        None
    );

    // Bounded history, oldest first.
    for i in 0..5_u8 {
        store
            .push_history(
                Namespace::LoginHistory,
                &s("hist"),
                &[i, 0xff],
                3,
                Duration::from_secs(600),
                now,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .history(Namespace::LoginHistory, &s("hist"), now)
            .await
            .unwrap(),
        vec![vec![2, 0xff], vec![3, 0xff], vec![4, 0xff]],
        "{tag}"
    );
    // Histories expire (by the real clock on Redis, so poll).
    store
        .push_history(
            Namespace::LoginHistory,
            &s("short"),
            b"x",
            3,
            Duration::from_millis(150),
            unix_now_ms(),
        )
        .await
        .unwrap();
    let gone = wait_for(Duration::from_secs(5), async || {
        store
            .history(Namespace::LoginHistory, &s("short"), unix_now_ms())
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    assert!(gone, "{tag}: history did not expire");

    // Claim once; claimable again once lapsed.
    let ttl = Duration::from_secs(90);
    assert!(
        store
            .claim_once(Namespace::TotpReplay, &s("code"), ttl, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_once(Namespace::TotpReplay, &s("code"), ttl, now + 89 * SEC)
            .await
            .unwrap(),
        "{tag}"
    );
    assert!(
        store
            .claim_once(Namespace::TotpReplay, &s("code"), ttl, now + 91 * SEC)
            .await
            .unwrap(),
        "{tag}"
    );

    // Claims are atomic under concurrency: exactly one winner.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        let subject = s("race");
        tasks.push(tokio::spawn(async move {
            store
                .claim_once(Namespace::TotpReplay, &subject, ttl, now)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "{tag}");
    // Concurrent increments are all counted.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let subject = s("inc");
        tasks.push(tokio::spawn(async move {
            store
                .record_event(Namespace::AuthFailuresClient, &subject, now + i, w)
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store
            .count_events(Namespace::AuthFailuresClient, &s("inc"), now + 40, w)
            .await
            .unwrap(),
        32,
        "{tag}"
    );

    // Listing and clearing.
    let subjects = store
        .subjects(Namespace::LockoutAccount, now)
        .await
        .unwrap();
    assert!(subjects.contains(&s("lock")), "{tag}: {subjects:?}");
    store
        .clear(Namespace::LockoutAccount, &s("lock"))
        .await
        .unwrap();
    assert_eq!(
        store
            .active_until(Namespace::LockoutAccount, &s("lock"), now)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .subjects(Namespace::LockoutAccount, now)
            .await
            .unwrap()
            .contains(&s("lock"))
    );

    // Subjects with odd characters are stored verbatim.
    let odd = s("we*ird:[subject] ü");
    store
        .set_until(Namespace::Suspension, &odd, now + MIN)
        .await
        .unwrap();
    assert!(
        store
            .subjects(Namespace::Suspension, now)
            .await
            .unwrap()
            .contains(&odd),
        "{tag}"
    );
}

/// Strikes over `store`: the same expectations on every backend.
async fn strikes_suite(store: Store, tag: &str) {
    let strikes = Strikes::new(store);
    let now = unix_now_ms();
    let subject = StrikeSubject::Account(format!("{tag}-striker"));
    let mut outcomes = Vec::new();
    for offset in [0, SEC, 6 * SEC, 7 * SEC, 12 * SEC] {
        outcomes.push(
            strikes
                .record_block(&subject, BtForm::PeerWire, now + offset)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        outcomes,
        vec![
            StrikeOutcome::Counted { incidents: 1 },
            StrikeOutcome::SameIncident,
            StrikeOutcome::Warned,
            StrikeOutcome::SameIncident,
            StrikeOutcome::Suspended {
                until_ms: now + 12 * SEC + 10 * MIN
            },
        ],
        "{tag}"
    );
    assert_eq!(
        strikes
            .suspended_until(&subject, now + 13 * SEC)
            .await
            .unwrap(),
        Some(now + 12 * SEC + 10 * MIN)
    );
    let listed = strikes.list(now + 13 * SEC).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r.subject == subject && r.incidents == 3)
    );
    strikes.clear(&subject).await.unwrap();
    assert_eq!(
        strikes
            .suspended_until(&subject, now + 13 * SEC)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn memory_backend_passes_the_shared_suite() {
    shared_suite(&Store::memory(), "mem").await;
    strikes_suite(Store::memory(), "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_passes_the_shared_suite_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let url = StoreBackend::Embedded(None);
    {
        let store = open(url.clone(), dir.path(), metrics.clone()).await;
        assert!(
            store.describe().starts_with("embedded:"),
            "{}",
            store.describe()
        );
        shared_suite(&store, "emb").await;
        strikes_suite(store.clone(), "emb").await;
        store
            .set_until(Namespace::Suspension, "kept", unix_now_ms() + 60 * MIN)
            .await
            .unwrap();
        // A second process (or a second open) is refused with a clear message.
        let second = EmbeddedStoreProbe::open(dir.path());
        assert!(second.contains("in use"), "{second}");
    }
    // Dropped and reopened: state is still there.
    let store = wait_reopen(url, dir.path(), metrics.clone()).await;
    assert!(
        store
            .active_until(Namespace::Suspension, "kept", unix_now_ms())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        metric_value(&metrics.encode(), "swarmwall_store_up"),
        Some(1.0)
    );
}

/// Opening the same file twice.
struct EmbeddedStoreProbe;

impl EmbeddedStoreProbe {
    fn open(dir: &std::path::Path) -> String {
        match store::EmbeddedStore::open(dir) {
            Ok(_) => "opened twice".to_owned(),
            Err(error) => error.to_string(),
        }
    }
}

/// Reopen once the previous handle's background tasks let go of the file.
async fn wait_reopen(url: StoreBackend, dir: &std::path::Path, metrics: Arc<Metrics>) -> Store {
    let config = StoreConfig {
        url,
        ..StoreConfig::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(&config, dir, metrics.clone()).await {
            Ok(store) => return store,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("reopen failed: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_purge_drops_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = store::EmbeddedStore::open(dir.path()).unwrap();
    let store = Store::Embedded(embedded.clone());
    let now = unix_now_ms();
    store
        .set_until(Namespace::LockoutClient, "old", now + SEC)
        .await
        .unwrap();
    store
        .set_until(Namespace::LockoutClient, "new", now + 60 * MIN)
        .await
        .unwrap();
    store
        .claim_once(Namespace::TotpReplay, "c", Duration::from_secs(1), now)
        .await
        .unwrap();
    assert_eq!(embedded.purge(now + 2 * SEC).unwrap(), 2);
    assert_eq!(
        store
            .dump(Namespace::LockoutClient, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>(),
        vec!["new".to_owned()]
    );
}

/// Child side of the kill -9 test: writes strikes forever, printing each acknowledged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill9_child_writer() {
    let Some(dir) = std::env::var_os("SWARMWALL_KILL9_DIR") else {
        return; // only runs as the child of `embedded_store_keeps_every_acknowledged_strike`
    };
    let store = open(
        StoreBackend::Embedded(None),
        std::path::Path::new(&dir),
        Arc::new(Metrics::new()),
    )
    .await;
    let strikes = Strikes::new(store);
    let now = unix_now_ms();
    for i in 0..1_000_000_u64 {
        let subject = StrikeSubject::Account(format!("user{i}"));
        strikes
            .record_block(&subject, BtForm::PeerWire, now + i)
            .await
            .unwrap();
        println!("ack {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_every_acknowledged_strike_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embedded_kill9_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SWARMWALL_KILL9_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line
                .strip_prefix("ack ")
                .and_then(|n| n.parse::<u64>().ok())
                && sender.send(n).is_err()
            {
                break;
            }
        }
    });
    // Let it acknowledge a few hundred strikes, then kill it mid-write.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = Vec::new();
    while acked.len() < 300 && Instant::now() < deadline {
        if let Ok(n) = receiver.recv_timeout(Duration::from_millis(100)) {
            acked.push(n);
        }
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever was printed before the kill was acknowledged too: read the pipe to its end.
    while let Ok(n) = receiver.recv_timeout(Duration::from_secs(10)) {
        acked.push(n);
    }
    assert!(
        acked.len() >= 300,
        "child acknowledged only {}",
        acked.len()
    );

    let store = open(
        StoreBackend::Embedded(None),
        dir.path(),
        Arc::new(Metrics::new()),
    )
    .await;
    let now = unix_now_ms();
    for n in &acked {
        let count = store
            .count_events(
                Namespace::Strikes,
                &format!("user{n}"),
                now + 60 * MIN,
                Duration::from_secs(24 * 3600),
            )
            .await
            .unwrap();
        assert_eq!(count, 1, "acknowledged strike user{n} lost after kill -9");
    }
    eprintln!(
        "kill -9: {} acknowledged strikes, all present after reopen",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_passes_the_shared_suite() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = open(redis.backend(), dir.path(), metrics.clone()).await;
    shared_suite(&store, "redis").await;
    strikes_suite(store.clone(), "redis").await;
    // Keys carry the configured prefix.
    let keys = redis.cli(&["--scan", "--pattern", "swarmwall:suspension:*"]);
    assert!(keys.contains("swarmwall:suspension:redis-we*ird"), "{keys}");
    assert_eq!(
        metric_value(&metrics.encode(), "swarmwall_store_up"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis_share_strikes_and_suspensions() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = async || {
        Strikes::with_config(
            open(redis.backend(), dir.path(), Arc::new(Metrics::new())).await,
            &StrikesSettings::default(),
            Arc::new(Metrics::new()),
            AuditLog::disabled(),
        )
    };
    let a = node().await;
    let b = node().await;
    let subject = StrikeSubject::Account("roaming".into());
    let now = unix_now_ms();
    // One burst seen by both nodes is one incident.
    assert_eq!(
        a.record_block(&subject, BtForm::PeerWire, now)
            .await
            .unwrap(),
        StrikeOutcome::Counted { incidents: 1 }
    );
    assert_eq!(
        b.record_block(&subject, BtForm::Dht, now + 500)
            .await
            .unwrap(),
        StrikeOutcome::SameIncident
    );
    assert_eq!(
        b.record_block(&subject, BtForm::Dht, now + 6 * SEC)
            .await
            .unwrap(),
        StrikeOutcome::Warned
    );
    let outcome = a
        .record_block(&subject, BtForm::Utp, now + 12 * SEC)
        .await
        .unwrap();
    assert!(
        matches!(outcome, StrikeOutcome::Suspended { .. }),
        "{outcome:?}"
    );
    // Suspended by A, refused by B.
    assert_eq!(
        b.suspended_until(&subject, now + 13 * SEC).await.unwrap(),
        Some(now + 12 * SEC + 10 * MIN)
    );
    // An admin on B lifts it for A.
    b.unsuspend(&subject).await.unwrap();
    assert_eq!(
        a.suspended_until(&subject, now + 13 * SEC).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_bounded_buffered_and_converges() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = open(redis.backend(), dir.path(), metrics.clone()).await;
    let strikes = Strikes::with_config(
        store.clone(),
        &StrikesSettings::default(),
        metrics.clone(),
        AuditLog::disabled(),
    );
    let subject = StrikeSubject::Client("c0ffee".into());
    let now = unix_now_ms();
    strikes
        .record_block(&subject, BtForm::PeerWire, now)
        .await
        .unwrap();
    strikes
        .suspend(&StrikeSubject::Account("known".into()), now + 60 * MIN)
        .await
        .unwrap();

    redis.stop();

    // Every call fails within the timeout (200 ms) plus slack, never panics.
    let started = Instant::now();
    let lockout = store
        .active_until(Namespace::LockoutAccount, "x", now)
        .await;
    let claim = store
        .claim_once(Namespace::TotpReplay, "x", Duration::from_secs(30), now)
        .await;
    assert!(lockout.is_err() && claim.is_err(), "{lockout:?} {claim:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Strikes during the outage: buffered (the first of a burst says so; not an error).
    let first = strikes
        .record_block(&subject, BtForm::PeerWire, now + 10 * SEC)
        .await;
    assert_eq!(first.unwrap(), StrikeOutcome::Buffered);
    assert_eq!(
        strikes
            .record_block(&subject, BtForm::PeerWire, now + 11 * SEC)
            .await
            .unwrap(),
        StrikeOutcome::SameIncident
    );
    let _ = strikes
        .record_block(&subject, BtForm::PeerWire, now + 20 * SEC)
        .await;
    assert_eq!(strikes.pending_len(), 2);
    // Suspension checks fall back to what this node knew.
    assert_eq!(
        strikes
            .suspended_until(&StrikeSubject::Account("known".into()), now)
            .await
            .unwrap(),
        Some(now + 60 * MIN)
    );
    let text = metrics.encode();
    assert_eq!(
        metric_value(&text, "swarmwall_store_up"),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "swarmwall_store_errors_total{operation=\"claim_once\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );

    // Redis comes back (empty: no persistence): the connection recovers by itself and the
    // buffered incidents arrive with their original times.
    redis.restart();
    let converged = wait_for(Duration::from_secs(20), async || {
        store
            .count_events(
                Namespace::Strikes,
                &subject.store_key(),
                now + 30 * SEC,
                Duration::from_secs(600),
            )
            .await
            .is_ok_and(|count| count == 2)
            && strikes.pending_len() == 0
    })
    .await;
    assert!(converged, "buffered strikes did not arrive");
    assert_eq!(
        store
            .events(
                Namespace::Strikes,
                &subject.store_key(),
                now + 30 * SEC,
                Duration::from_secs(600)
            )
            .await
            .unwrap(),
        vec![now + 10 * SEC, now + 20 * SEC]
    );
    let up = wait_for(Duration::from_secs(10), async || {
        metric_value(&metrics.encode(), "swarmwall_store_up") == Some(1.0)
    })
    .await;
    assert!(up, "store_up did not return to 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_calls_time_out() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(redis.backend(), dir.path(), Arc::new(Metrics::new())).await;
    store
        .set_until(Namespace::LockoutAccount, "slow", unix_now_ms() + MIN)
        .await
        .unwrap();
    // Block the server for 1.5 s from another connection.
    let sleeper = redis.cli_spawn(&["DEBUG", "SLEEP", "1.5"]);
    let blocked = wait_for(Duration::from_secs(5), async || {
        let started = Instant::now();
        let result = store
            .active_until(Namespace::LockoutAccount, "slow", unix_now_ms())
            .await;
        matches!(result, Err(StoreError::Timeout)) && started.elapsed() < Duration::from_millis(600)
    })
    .await;
    assert!(blocked, "no bounded timeout while Redis was busy");
    drop(sleeper);
    let back = wait_for(Duration::from_secs(10), async || {
        store
            .active_until(Namespace::LockoutAccount, "slow", unix_now_ms())
            .await
            .is_ok_and(|until| until.is_some())
    })
    .await;
    assert!(back, "store did not answer again after the stall");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_embedded_to_redis_and_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let now = unix_now_ms();
    let embedded = open(StoreBackend::Embedded(None), dir.path(), metrics.clone()).await;
    embedded
        .set_until(Namespace::Suspension, "alice", now + 30 * MIN)
        .await
        .unwrap();
    for i in 0..3 {
        embedded
            .record_event(
                Namespace::Strikes,
                "alice",
                now + i * SEC,
                Duration::from_secs(86_400),
            )
            .await
            .unwrap();
    }
    embedded
        .push_history(
            Namespace::LoginHistory,
            "alice",
            b"{\"country\":\"DE\"}",
            10,
            Duration::from_secs(3600),
            now,
        )
        .await
        .unwrap();
    embedded
        .claim_once(
            Namespace::TotpReplay,
            "alice:123456:1",
            Duration::from_secs(90),
            now,
        )
        .await
        .unwrap();

    let redis_store = open(redis.backend(), dir.path(), metrics.clone()).await;
    let report = store::migrate(&embedded, &redis_store, now).await.unwrap();
    assert_eq!(report.total(), 4, "{report:?}");
    assert_eq!(
        redis_store
            .active_until(Namespace::Suspension, "alice", now)
            .await
            .unwrap(),
        Some(now + 30 * MIN)
    );
    assert_eq!(
        redis_store
            .count_events(
                Namespace::Strikes,
                "alice",
                now + 3 * SEC,
                Duration::from_secs(600)
            )
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        redis_store
            .history(Namespace::LoginHistory, "alice", now)
            .await
            .unwrap(),
        vec![b"{\"country\":\"DE\"}".to_vec()]
    );
    assert!(
        !redis_store
            .claim_once(
                Namespace::TotpReplay,
                "alice:123456:1",
                Duration::from_secs(90),
                now + SEC
            )
            .await
            .unwrap(),
        "replay cache entry not migrated"
    );

    // And back into a fresh embedded store.
    let dir2 = tempfile::tempdir().unwrap();
    let back = open(StoreBackend::Embedded(None), dir2.path(), metrics).await;
    let report = store::migrate(&redis_store, &back, now).await.unwrap();
    assert_eq!(report.total(), 4, "{report:?}");
    let original = embedded.dump(Namespace::Strikes, now).await.unwrap();
    let round_trip = back.dump(Namespace::Strikes, now).await.unwrap();
    let times = |values: &[(String, StoredValue)]| match &values[0].1 {
        StoredValue::Events { times, .. } => times.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(times(&original), times(&round_trip));
    assert_eq!(
        back.active_until(Namespace::Suspension, "alice", now)
            .await
            .unwrap(),
        Some(now + 30 * MIN)
    );
}

/// Run the real `swarmwall` binary; returns (success, stdout, stderr).
fn swarmwall(args: &[&str]) -> (bool, String, String) {
    // CLI changes are audited into the default data directory's log: keep it out of the
    // machine's /var/lib/swarmwall.
    let data_dir = std::env::temp_dir().join(format!("swarmwall-cli-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_swarmwall"))
        .args(args)
        .env("SWARMWALL_DATA_DIR", data_dir)
        .output()
        .expect("run swarmwall");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strikes_and_store_commands_work_on_a_live_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let node = Strikes::new(open(redis.backend(), dir.path(), Arc::new(Metrics::new())).await);
    let mallory = StrikeSubject::Account("mallory".into());
    let now = unix_now_ms();
    for offset in [0, 6 * SEC, 12 * SEC] {
        node.record_block(&mallory, BtForm::PeerWire, now + offset)
            .await
            .unwrap();
    }

    let (ok, out, err) = swarmwall(&["strikes", "list", "--json", "--store", &url]);
    assert!(ok, "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let record = records
        .iter()
        .find(|r| r["subject"]["id"] == "mallory")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(record["incidents"], 3);
    assert!(record["suspended_until_ms"].as_u64().unwrap() > now);

    let (ok, _, err) = swarmwall(&["strikes", "clear", "mallory", "--store", &url]);
    assert!(ok, "{err}");
    assert_eq!(
        node.suspended_until(&mallory, now + 13 * SEC)
            .await
            .unwrap(),
        None
    );

    // Suspend by command, then migrate Redis → embedded and list there.
    let (ok, _, err) = swarmwall(&["strikes", "suspend", "eve", "--for", "2h", "--store", &url]);
    assert!(ok, "{err}");
    assert!(
        node.suspended_until(&StrikeSubject::Account("eve".into()), unix_now_ms())
            .await
            .unwrap()
            .is_some()
    );
    let target = format!("embedded:{}", dir.path().join("migrated").display());
    let (ok, out, err) = swarmwall(&["store", "migrate", "--from", &url, "--to", &target]);
    assert!(ok, "{err}");
    assert!(out.contains("copied"), "{out}");
    let (ok, out, err) = swarmwall(&["strikes", "list", "--json", "--store", &target]);
    assert!(ok, "{err}");
    assert!(out.contains("\"eve\""), "{out}");
    // Unknown store kinds are refused with a clear message.
    let (ok, _, err) = swarmwall(&["strikes", "list", "--store", "mysql://x"]);
    assert!(!ok && err.contains("is not a store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    redis.stop();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    // Opening does not fail: the node must be able to start before Redis.
    let store = open(redis.backend(), dir.path(), metrics.clone()).await;
    let started = Instant::now();
    assert!(
        store
            .set_until(Namespace::Suspension, "early", unix_now_ms() + MIN)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        metric_value(&metrics.encode(), "swarmwall_store_up"),
        Some(0.0)
    );
    redis.restart();
    let connected = wait_for(Duration::from_secs(20), async || {
        store
            .set_until(Namespace::Suspension, "early", unix_now_ms() + MIN)
            .await
            .is_ok()
    })
    .await;
    assert!(connected, "never connected after Redis came up");
    assert!(
        store
            .active_until(Namespace::Suspension, "early", unix_now_ms())
            .await
            .unwrap()
            .is_some()
    );
}
