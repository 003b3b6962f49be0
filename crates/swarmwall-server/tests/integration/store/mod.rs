//! The state store: one shared suite run against every backend (memory, the embedded redb
//! file, a real `redis-server` on loopback), crash safety of the embedded store under `kill -9`,
//! Redis outages and slowness, the graduated response shared by two nodes on one Redis,
//! migration in both directions, and forged or edited Redis state ([`integrity`]).
//!
//! Redis tests start their own `redis-server` on a free loopback port (`--save ''
//! --appendonly no`); without the binary they print a loud SKIP line and pass.

mod embedded;
mod integrity;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use swarmwall_core::classify::BtForm;
use swarmwall_server::config::{StoreBackend, StoreConfig};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{Namespace, Store, unix_now_ms};
use swarmwall_server::strikes::{StrikeOutcome, StrikeSubject, Strikes};

use crate::harness::wait_for;

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
