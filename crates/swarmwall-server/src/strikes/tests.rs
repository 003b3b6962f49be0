//! Graduated response over the in-memory store with injected time. The same engine over the
//! embedded store and over two nodes on one Redis is tested in
//! `crates/swarmwall-server/tests/integration/store/`.

use super::*;

const T0: u64 = 1_700_000_000_000;
const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;

fn alice() -> StrikeSubject {
    StrikeSubject::Account("alice".into())
}

fn engine() -> Strikes {
    Strikes::new(Store::memory())
}

#[tokio::test]
async fn blocks_within_the_burst_window_are_one_incident() {
    let strikes = engine();
    let s = alice();
    assert_eq!(
        strikes
            .record_block(&s, BtForm::PeerWire, T0)
            .await
            .unwrap(),
        StrikeOutcome::Counted { incidents: 1 }
    );
    for offset in [1, 2_000, 4_999] {
        assert_eq!(
            strikes
                .record_block(&s, BtForm::Dht, T0 + offset)
                .await
                .unwrap(),
            StrikeOutcome::SameIncident,
            "offset {offset}"
        );
    }
    assert_eq!(
        strikes
            .record_block(&s, BtForm::Utp, T0 + 5 * SEC)
            .await
            .unwrap(),
        StrikeOutcome::Warned
    );
    // Another subject is independent.
    assert_eq!(
        strikes
            .record_block(
                &StrikeSubject::Client("ab12".into()),
                BtForm::Dht,
                T0 + 5 * SEC
            )
            .await
            .unwrap(),
        StrikeOutcome::Counted { incidents: 1 }
    );
}

#[tokio::test]
async fn third_incident_suspends_for_ten_minutes_and_it_ends() {
    let strikes = engine();
    let s = alice();
    strikes
        .record_block(&s, BtForm::PeerWire, T0)
        .await
        .unwrap();
    strikes
        .record_block(&s, BtForm::PeerWire, T0 + 6 * SEC)
        .await
        .unwrap();
    let outcome = strikes
        .record_block(&s, BtForm::PeerWire, T0 + 12 * SEC)
        .await
        .unwrap();
    let until = T0 + 12 * SEC + 10 * MIN;
    assert_eq!(outcome, StrikeOutcome::Suspended { until_ms: until });
    assert_eq!(
        strikes.suspended_until(&s, T0 + 13 * SEC).await.unwrap(),
        Some(until)
    );
    assert_eq!(strikes.suspended_until(&s, until).await.unwrap(), None);
    assert_eq!(
        strikes
            .suspended_until(&StrikeSubject::Account("bob".into()), T0)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn strikes_decay_out_of_the_window() {
    let strikes = engine();
    let s = alice();
    strikes
        .record_block(&s, BtForm::PeerWire, T0)
        .await
        .unwrap();
    assert_eq!(
        strikes
            .record_block(&s, BtForm::PeerWire, T0 + MIN)
            .await
            .unwrap(),
        StrikeOutcome::Warned
    );
    // 10.5 minutes after the first: only the second is still in the 10-minute window.
    assert_eq!(
        strikes
            .record_block(&s, BtForm::PeerWire, T0 + 10 * MIN + 30 * SEC)
            .await
            .unwrap(),
        StrikeOutcome::Warned
    );
    assert_eq!(
        strikes
            .record_block(&s, BtForm::PeerWire, T0 + 30 * MIN)
            .await
            .unwrap(),
        StrikeOutcome::Counted { incidents: 1 }
    );
}

#[tokio::test]
async fn ten_incidents_in_a_day_suspend_for_a_day() {
    let strikes = engine();
    let s = alice();
    let mut last = StrikeOutcome::SameIncident;
    for i in 0..10 {
        // 30 minutes apart: never three in ten minutes.
        last = strikes
            .record_block(&s, BtForm::Dht, T0 + i * 30 * MIN)
            .await
            .unwrap();
        if i < 9 {
            assert_eq!(
                last,
                StrikeOutcome::Counted { incidents: 1 },
                "incident {i}"
            );
        }
    }
    let at = T0 + 9 * 30 * MIN;
    assert_eq!(
        last,
        StrikeOutcome::Suspended {
            until_ms: at + 24 * 60 * MIN
        }
    );
}

#[tokio::test]
async fn custom_thresholds_and_disabled_engine() {
    let settings = StrikesSettings {
        burst_window: Duration::from_millis(100),
        warn_incidents: 0,
        suspend_incidents: 2,
        suspend_for: Duration::from_secs(30),
        ..StrikesSettings::default()
    };
    let metrics = Arc::new(Metrics::new());
    let strikes = Strikes::with_config(
        Store::memory(),
        &settings,
        metrics.clone(),
        AuditLog::disabled(),
    );
    let s = alice();
    assert_eq!(
        strikes.record_block(&s, BtForm::Mse, T0).await.unwrap(),
        StrikeOutcome::Counted { incidents: 1 }
    );
    assert_eq!(
        strikes
            .record_block(&s, BtForm::Mse, T0 + 100)
            .await
            .unwrap(),
        StrikeOutcome::Suspended {
            until_ms: T0 + 100 + 30 * SEC
        }
    );
    let text = metrics.encode();
    assert!(text.contains("swarmwall_strikes_total 2"), "{text}");
    assert!(
        text.contains("swarmwall_suspensions_total{reason=\"short\"} 1"),
        "{text}"
    );

    let off = Strikes::with_config(
        Store::memory(),
        &StrikesSettings {
            enabled: false,
            ..StrikesSettings::default()
        },
        metrics,
        AuditLog::disabled(),
    );
    for i in 0..20 {
        off.record_block(&s, BtForm::Mse, T0 + i * MIN)
            .await
            .unwrap();
    }
    assert_eq!(off.suspended_until(&s, T0 + 20 * MIN).await.unwrap(), None);
}

#[tokio::test]
async fn admin_list_clear_suspend_unsuspend() {
    let strikes = engine();
    let s = alice();
    let client = StrikeSubject::Client("9f86d081".into());
    strikes
        .record_block(&s, BtForm::PeerWire, T0)
        .await
        .unwrap();
    strikes
        .record_block(&client, BtForm::Dht, T0)
        .await
        .unwrap();
    strikes
        .record_block(&client, BtForm::Dht, T0 + 10 * SEC)
        .await
        .unwrap();

    let list = strikes.list(T0 + 20 * SEC).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let record = list.iter().find(|r| r.subject == client).unwrap();
    assert_eq!(record.incidents, 2);
    assert_eq!(record.last_incident_ms, Some(T0 + 10 * SEC));
    assert_eq!(record.suspended_until_ms, None);
    assert_eq!(
        serde_json::to_value(record).unwrap()["subject"],
        serde_json::json!({"kind": "client", "id": "9f86d081"})
    );

    strikes.suspend(&s, T0 + 5 * MIN).await.unwrap();
    assert_eq!(
        strikes.suspended_until(&s, T0 + MIN).await.unwrap(),
        Some(T0 + 5 * MIN)
    );
    // An admin may shorten a suspension.
    strikes.suspend(&s, T0 + 2 * MIN).await.unwrap();
    assert_eq!(
        strikes.suspended_until(&s, T0 + MIN).await.unwrap(),
        Some(T0 + 2 * MIN)
    );
    strikes.unsuspend(&s).await.unwrap();
    assert_eq!(strikes.suspended_until(&s, T0 + MIN).await.unwrap(), None);
    assert_eq!(strikes.list(T0 + MIN).await.unwrap().len(), 2);

    strikes.clear(&client).await.unwrap();
    let list = strikes.list(T0 + MIN).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subject, s);
    // Past the long window nothing is listed.
    assert!(strikes.list(T0 + 25 * 60 * MIN).await.unwrap().is_empty());
}

#[test]
fn subjects_round_trip_through_store_keys() {
    for subject in [
        StrikeSubject::Account("alice".into()),
        StrikeSubject::Client("00ff".into()),
    ] {
        assert_eq!(StrikeSubject::from_store_key(&subject.store_key()), subject);
    }
}
