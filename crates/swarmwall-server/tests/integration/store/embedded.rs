//! The memory and embedded (redb) backends: the shared suite, reopening, purging, and every
//! acknowledged strike kept after `kill -9` of a writer process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmwall_core::classify::BtForm;
use swarmwall_server::config::{StoreBackend, StoreConfig};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{self, Namespace, Store, unix_now_ms};
use swarmwall_server::strikes::{StrikeSubject, Strikes};

use super::{MIN, SEC, open, shared_suite, strikes_suite};
use crate::harness::metric_value;

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
    // The writer's test name as libtest knows it: this module's path without the crate name.
    let (_, module) = module_path!().split_once("::").unwrap();
    let writer = format!("{module}::embedded_kill9_child_writer");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &writer, "--nocapture", "--test-threads=1"])
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
