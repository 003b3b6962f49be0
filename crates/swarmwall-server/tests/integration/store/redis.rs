//! The Redis backend against a real `redis-server`: the shared suite, two nodes sharing
//! strikes, outages and slow calls, migration both ways, and a node started before Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmwall_core::classify::BtForm;
use swarmwall_server::audit::AuditLog;
use swarmwall_server::config::{StoreBackend, StrikesSettings};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{self, Namespace, StoreError, StoredValue, unix_now_ms};
use swarmwall_server::strikes::{StrikeOutcome, StrikeSubject, Strikes};

use super::{MIN, SEC, open, shared_suite, strikes_suite};
use crate::harness::{RedisServer, metric_value, redis_backend, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_passes_the_shared_suite() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = open(redis_backend(&redis), dir.path(), metrics.clone()).await;
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
            open(redis_backend(&redis), dir.path(), Arc::new(Metrics::new())).await,
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
    let store = open(redis_backend(&redis), dir.path(), metrics.clone()).await;
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
    let store = open(redis_backend(&redis), dir.path(), Arc::new(Metrics::new())).await;
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

    let redis_store = open(redis_backend(&redis), dir.path(), metrics.clone()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    redis.stop();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    // Opening does not fail: the node must be able to start before Redis.
    let store = open(redis_backend(&redis), dir.path(), metrics.clone()).await;
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
