//! `swarmwall strikes` and `swarmwall store` against a live `redis-server`: list, clear,
//! suspend, migrate Redis → embedded, and unknown store kinds refused.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use swarmwall_core::classify::BtForm;
use swarmwall_server::config::{StoreBackend, StoreConfig};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{Store, unix_now_ms};
use swarmwall_server::strikes::{StrikeSubject, Strikes};

use crate::harness::{RedisServer, scratch_dir, swarmwall as command};

const SEC: u64 = 1_000;

/// One data directory for every command these tests run.
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Run the real `swarmwall` binary; returns (success, stdout, stderr).
fn swarmwall(args: &[&str]) -> (bool, String, String) {
    // CLI changes are audited into the default data directory's log: keep it out of the
    // machine's /var/lib/swarmwall.
    let output = command()
        .args(args)
        .env("SWARMWALL_DATA_DIR", DATA_DIR.get_or_init(scratch_dir))
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
    let config = StoreConfig {
        url: StoreBackend::Redis(url.clone()),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, dir.path(), Arc::new(Metrics::new()))
        .await
        .unwrap();
    let node = Strikes::new(store);
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
