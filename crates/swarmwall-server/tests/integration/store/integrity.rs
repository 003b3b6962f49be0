//! Integrity of the access-granting values in Redis (issue 18, finding 2): a real
//! `redis-server` on loopback, values forged, edited, copied and deleted by hand with
//! `redis-cli`, as someone with write access to that Redis would.
//!
//! Without the redis-server binary the tests print a loud SKIP line and pass.

use std::sync::Arc;
use std::time::Duration;

use swarmwall_server::config::StoreConfig;
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{Namespace, Store, unix_now_ms};

use super::MIN;
use crate::harness::{RedisServer, metric_value, redis_backend, wait_for};

const KEY: [u8; 32] = [7; 32];

async fn node(redis: &RedisServer, key: Option<[u8; 32]>) -> (Store, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        url: redis_backend(redis),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, dir.path(), metrics.clone())
        .await
        .unwrap();
    if let Some(key) = key {
        store.attach_integrity_key(key);
    }
    (store, metrics)
}

fn forged(metrics: &Metrics, namespace: &str, kind: &str) -> f64 {
    metric_value(
        &metrics.encode(),
        &format!(
            "swarmwall_store_forged_values_total{{namespace=\"{namespace}\",kind=\"{kind}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_copied_trusted_windows_are_rejected_and_counted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (store, metrics) = node(&redis, Some(KEY)).await;
    let now = unix_now_ms();
    let window = Namespace::TrustedWindow;
    store
        .set_until(window, "alice:aaaa", now + 10 * MIN)
        .await
        .unwrap();
    assert_eq!(
        store.active_until(window, "alice:aaaa", now).await.unwrap(),
        Some(now + 10 * MIN)
    );
    let raw = redis.cli(&["GET", "swarmwall:trusted_window:alice:aaaa"]);
    assert!(raw.trim().contains('.'), "value is not signed: {raw}");

    // The attack of the review: a window written by hand (plain deadline, as before).
    let far = (now + 600 * MIN).to_string();
    redis.cli(&["SET", "swarmwall:trusted_window:mallory:bbbb", &far]);
    assert_eq!(
        store
            .active_until(window, "mallory:bbbb", now)
            .await
            .unwrap(),
        None
    );
    // A deadline edited in a signed value.
    let edited = raw.trim().replacen(&(now + 10 * MIN).to_string(), &far, 1);
    redis.cli(&["SET", "swarmwall:trusted_window:alice:aaaa", &edited]);
    assert_eq!(
        store.active_until(window, "alice:aaaa", now).await.unwrap(),
        None
    );
    // A valid value copied to another account or client.
    redis.cli(&["SET", "swarmwall:trusted_window:bob:aaaa", raw.trim()]);
    assert_eq!(
        store.active_until(window, "bob:aaaa", now).await.unwrap(),
        None
    );
    assert_eq!(forged(&metrics, "trusted_window", "edited"), 3.0);
    // A real window replaces a forged one with a far deadline.
    store
        .set_until(window, "mallory:bbbb", now + MIN)
        .await
        .unwrap();
    assert_eq!(
        store
            .active_until(window, "mallory:bbbb", now)
            .await
            .unwrap(),
        Some(now + MIN)
    );
    // A node with another secret (not of this fleet) trusts none of them.
    let (stranger, stranger_metrics) = node(&redis, Some([9; 32])).await;
    assert_eq!(
        stranger
            .active_until(window, "mallory:bbbb", now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(forged(&stranger_metrics, "trusted_window", "edited"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockouts_lifted_by_hand_stay_and_admin_clears_work_fleet_wide() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, a_metrics) = node(&redis, Some(KEY)).await;
    let (b, b_metrics) = node(&redis, Some(KEY)).await;
    let now = unix_now_ms();
    let lockout = Namespace::LockoutAccount;
    a.set_until(lockout, "alice", now + 15 * MIN).await.unwrap();
    // Node B reads it once (and so shadows it too).
    assert_eq!(
        b.active_until(lockout, "alice", now).await.unwrap(),
        Some(now + 15 * MIN)
    );

    // `DEL`: both nodes keep the lockout, count it, and write it back.
    assert_eq!(
        redis
            .cli(&["DEL", "swarmwall:lockout_account:alice"])
            .trim(),
        "1"
    );
    assert_eq!(
        b.active_until(lockout, "alice", now).await.unwrap(),
        Some(now + 15 * MIN)
    );
    assert_eq!(forged(&b_metrics, "lockout_account", "deleted"), 1.0);
    assert!(
        !redis
            .cli(&["GET", "swarmwall:lockout_account:alice"])
            .trim()
            .is_empty(),
        "not written back"
    );
    // Edited to a past deadline: still locked (fail closed), counted.
    redis.cli(&["SET", "swarmwall:lockout_account:alice", "1"]);
    assert!(
        a.active_until(lockout, "alice", now)
            .await
            .unwrap()
            .is_some_and(|until| until > now)
    );
    assert_eq!(forged(&a_metrics, "lockout_account", "edited"), 1.0);
    // A lockout written by hand for someone else locks too (fail closed, not an access grant).
    redis.cli(&["SET", "swarmwall:lockout_account:carol", "5"]);
    assert!(
        a.active_until(lockout, "carol", now)
            .await
            .unwrap()
            .is_some()
    );

    // The admin clear (through either node, or the CLI) is a signed tombstone: every node
    // lets the lockout go, and nothing is counted as forged.
    let before = forged(&a_metrics, "lockout_account", "deleted");
    b.clear(lockout, "alice").await.unwrap();
    b.clear(lockout, "carol").await.unwrap();
    assert_eq!(a.active_until(lockout, "alice", now).await.unwrap(), None);
    assert_eq!(b.active_until(lockout, "alice", now).await.unwrap(), None);
    assert_eq!(a.active_until(lockout, "carol", now).await.unwrap(), None);
    assert_eq!(forged(&a_metrics, "lockout_account", "deleted"), before);
    // Listing sees no cleared lockout; a new lockout after the clear works as usual.
    assert!(a.subjects(lockout, now).await.unwrap().is_empty());
    a.set_until(lockout, "alice", now + MIN).await.unwrap();
    assert_eq!(
        b.active_until(lockout, "alice", now).await.unwrap(),
        Some(now + MIN)
    );
    assert_eq!(a.subjects(lockout, now).await.unwrap(), vec!["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_totp_codes_cannot_be_released_by_editing_the_claim() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (store, metrics) = node(&redis, Some(KEY)).await;
    let now = unix_now_ms();
    let ttl = Duration::from_secs(120);
    let replay = Namespace::TotpReplay;
    assert!(
        store
            .claim_once(replay, "alice:123456:1", ttl, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_once(replay, "alice:123456:1", ttl, now)
            .await
            .unwrap()
    );
    // Edited to an expired claim: refused all the same, counted.
    redis.cli(&["SET", "swarmwall:totp_replay:alice:123456:1", "c1"]);
    assert!(
        !store
            .claim_once(replay, "alice:123456:1", ttl, now)
            .await
            .unwrap()
    );
    assert_eq!(forged(&metrics, "totp_replay", "edited"), 1.0);
    // Parallel claims of one fresh code: exactly one wins.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_once(replay, "bob:654321:2", ttl, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += u32::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_without_the_key_still_read_deadlines() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (node_store, _) = node(&redis, Some(KEY)).await;
    let (tool, _) = node(&redis, None).await;
    let now = unix_now_ms();
    node_store
        .set_until(Namespace::Suspension, "eve", now + 30 * MIN)
        .await
        .unwrap();
    assert_eq!(
        tool.active_until(Namespace::Suspension, "eve", now)
            .await
            .unwrap(),
        Some(now + 30 * MIN)
    );
    let listed = tool.dump(Namespace::Suspension, now).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_deleted_before_another_node_read_it_is_still_known_there() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = node(&redis, Some(KEY)).await;
    let (b, b_metrics) = node(&redis, Some(KEY)).await;
    let lockout = Namespace::LockoutClient;
    // B never reads the lockout before it is deleted: it knows it from A's signed
    // announcement. (Repeated until B's subscription is up: it starts in the background.)
    let mut attempt = 0_u64;
    let known = wait_for(Duration::from_secs(10), async || {
        attempt += 1;
        let subject = format!("net-{attempt}");
        let now = unix_now_ms();
        a.set_until(lockout, &subject, now + 10 * MIN)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        redis.cli(&["DEL", &format!("swarmwall:lockout_client:{subject}")]);
        b.active_until(lockout, &subject, now).await.unwrap() == Some(now + 10 * MIN)
    })
    .await;
    assert!(known, "node B did not learn A's lockout");
    assert!(forged(&b_metrics, "lockout_client", "deleted") >= 1.0);
    // A forged announcement (anyone with Redis access can PUBLISH) teaches B nothing.
    let now = unix_now_ms();
    let far = (now + 60 * MIN).to_string();
    redis.cli(&[
        "PUBLISH",
        "swarmwall:integrity",
        &format!("swarmwall:lockout_client:victim\n{far}.00000000000000000000000000000000"),
    ]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.active_until(lockout, "victim", now).await.unwrap(), None);
    // A clear through A lifts B's shadow too (no false "deleted" once the tombstone is gone).
    let subject = format!("net-{attempt}");
    a.clear(lockout, &subject).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.cli(&["DEL", &format!("swarmwall:lockout_client:{subject}")]);
    let before = forged(&b_metrics, "lockout_client", "deleted");
    assert_eq!(b.active_until(lockout, &subject, now).await.unwrap(), None);
    assert_eq!(forged(&b_metrics, "lockout_client", "deleted"), before);
}
