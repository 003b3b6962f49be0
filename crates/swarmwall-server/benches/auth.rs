//! argon2id cost of a login with the configured parameters, and proof that the unknown-user
//! path costs the same as a wrong password for a known user (no user enumeration by timing).
//!
//! Run: `cargo bench -p swarmwall-server --bench auth` (optional `SWARMWALL_BENCH_RUNS`,
//! default 41; `SWARMWALL_BENCH_CONFIG=FILE` to use that file's `[security]` argon2 cost).
//! Prints the median and the 10th/90th percentiles of each path, measured interleaved
//! (known-wrong, unknown, known-right in turn) so that machine noise hits all three alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmwall_server::audit::AuditLog;
use swarmwall_server::auth::{
    AccountsFile, AuthOutcome, Authenticator, HashParams, PseudonymKey, hash_password,
};
use swarmwall_server::config::SecurityConfig;
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::Store;

fn main() {
    let runs: usize = std::env::var("SWARMWALL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(41)
        .max(3);
    let base = match std::env::var_os("SWARMWALL_BENCH_CONFIG") {
        Some(path) => SecurityConfig::load_section(std::path::Path::new(&path))
            .unwrap_or_else(|error| panic!("{error}")),
        None => SecurityConfig::default(),
    };
    // No delays and no lockout: measure the password check alone.
    let config = SecurityConfig {
        failure_delay: Duration::ZERO,
        failure_delay_max: Duration::ZERO,
        max_failures: u32::MAX,
        ..base
    };
    let params = HashParams::from_config(&config);
    let mut accounts = AccountsFile::default();
    accounts
        .add("alice", b"correct horse battery", &params)
        .expect("hash");
    let auth = Authenticator::with_security(
        accounts,
        &config,
        Store::memory(),
        AuditLog::disabled(),
        Arc::new(Metrics::new()),
        None,
        PseudonymKey::random(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = "192.0.2.1".parse().expect("address");
    let time = |user: &[u8], password: &[u8], accepted: bool| {
        let start = Instant::now();
        let outcome = runtime.block_on(auth.authenticate(user, password, client));
        let elapsed = start.elapsed();
        assert_eq!(matches!(outcome, AuthOutcome::Accepted { .. }), accepted);
        elapsed
    };
    // Warm up (page in the argon2 memory, start the blocking pool).
    time(b"alice", b"correct horse battery", true);
    let (mut wrong, mut unknown, mut right, mut hashing) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        wrong.push(time(b"alice", b"wrong password", false));
        unknown.push(time(b"mallory", b"wrong password", false));
        right.push(time(b"alice", b"correct horse battery", true));
        let start = Instant::now();
        hash_password(b"correct horse battery", &params).expect("hash");
        hashing.push(start.elapsed());
    }
    println!(
        "argon2id m={} KiB t={} p={}, {runs} runs each, interleaved",
        params.memory_kib, params.iterations, params.parallelism
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "path", "p10 ms", "median ms", "p90 ms"
    );
    let rows = [
        ("known user, wrong password", &mut wrong),
        ("unknown user", &mut unknown),
        ("known user, right password", &mut right),
        ("hash a new password", &mut hashing),
    ];
    let mut medians = Vec::new();
    for (name, samples) in rows {
        samples.sort();
        let at = |q: usize| samples[(samples.len() - 1) * q / 100].as_secs_f64() * 1e3;
        println!(
            "{name:<28} {:>10.2} {:>10.2} {:>10.2}",
            at(10),
            at(50),
            at(90)
        );
        medians.push(at(50));
    }
    println!(
        "unknown / known-wrong median ratio: {:.3}",
        medians[1] / medians[0]
    );
}
