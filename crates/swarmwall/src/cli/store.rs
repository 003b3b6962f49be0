//! `swarmwall store migrate --from SRC --to DST`: copy every live value (strikes, suspensions,
//! lockouts, failure counters, login history, TOTP replay cache) between the embedded store and
//! Redis, in either direction. Also the `--store`/`--data-dir`/`--config` options shared with
//! `swarmwall strikes`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use swarmwall_server::config::{Config, StoreBackend, StoreConfig};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{self, Store};

/// Arguments of `swarmwall store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Copy all state from one store to another (existing subjects in the target are replaced).
    Migrate {
        /// Source: `embedded` (the data directory), `embedded:DIR` or `redis://HOST:PORT/DB`.
        #[arg(long)]
        from: StoreBackend,
        /// Target, in the same forms.
        #[arg(long)]
        to: StoreBackend,
        /// Data directory for a bare `embedded`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Redis key prefix (both sides).
        #[arg(long, default_value = "swarmwall")]
        redis_prefix: String,
    },
    /// Measure the latency of the store calls one login makes (lockout checks for account and
    /// client, a failure-counter update, a TOTP replay claim) and print percentiles as JSON.
    Bench {
        #[command(flatten)]
        location: StoreLocation,
        /// Logins to simulate.
        #[arg(long, default_value_t = 2_000)]
        iterations: u32,
        /// Logins in flight at once (1 = one after another).
        #[arg(long, default_value_t = 1)]
        concurrency: u32,
    },
}

/// Where `swarmwall strikes` finds the state (the same choices as `swarmwall serve`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreLocation {
    /// State store: `redis://HOST:PORT/DB`, `embedded:DIR`, `embedded`; default: `[store] url`
    /// from `--config`, else the embedded store in the data directory.
    #[arg(long, global = true)]
    store: Option<StoreBackend>,
    /// Data directory of the embedded store (default: /var/lib/swarmwall when writable, else
    /// $XDG_STATE_HOME/swarmwall or ~/.local/state/swarmwall).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Configuration file (for `[store]` and `[policy.strikes]`).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
}

impl StoreLocation {
    /// The configuration file, or the defaults.
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::load(path)?),
            None => Ok(Config::default()),
        }
    }

    /// `--data-dir`, if given.
    pub(crate) fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Open the store (inside a runtime).
    pub(crate) async fn open(&self, config: &Config) -> anyhow::Result<Store> {
        let mut store_config = config.store.clone();
        if let Some(url) = &self.store {
            store_config.url = url.clone();
        }
        let store = open_store(&store_config, self.data_dir.as_deref()).await?;
        attach_fleet_key(
            &store,
            config.security.secret_key_file.as_deref(),
            self.data_dir.as_deref(),
        )?;
        Ok(store)
    }
}

/// Open `config` with the data directory `data_dir` (or the default one).
async fn open_store(config: &StoreConfig, data_dir: Option<&Path>) -> anyhow::Result<Store> {
    let data_dir = data_dir.map_or_else(store::default_data_dir, Path::to_owned);
    let store = Store::open(config, &data_dir, Arc::new(Metrics::new()))
        .await
        .with_context(|| format!("cannot open the state store {}", config.url))?;
    Ok(store)
}

/// With Redis, sign what this command writes with the fleet's secret (`key_file`, else the
/// default key file in the data directory), as the nodes do: an unsigned suspension or a
/// plain `DEL` would be taken for a forgery. Without a key file, warn and go on unsigned.
pub(crate) fn attach_fleet_key(
    store: &Store,
    key_file: Option<&Path>,
    data_dir: Option<&Path>,
) -> anyhow::Result<()> {
    if !matches!(store, Store::Redis(_)) {
        return Ok(());
    }
    let path = key_file.map_or_else(
        || {
            data_dir
                .map_or_else(store::default_data_dir, Path::to_owned)
                .join(swarmwall_server::auth::DEFAULT_KEY_FILE)
        },
        Path::to_owned,
    );
    if !path.exists() {
        eprintln!(
            "warning: no secret key file at {}: values written to Redis are unsigned and the \
             nodes will reject them (pass --config with [security] secret_key_file)",
            path.display()
        );
        return Ok(());
    }
    let key = swarmwall_server::auth::PseudonymKey::load_or_create(&path)
        .with_context(|| format!("cannot read the secret key {}", path.display()))?;
    store.attach_integrity_key(key.derive(store::INTEGRITY_KEY_PURPOSE));
    Ok(())
}

/// A small runtime for one command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Run `swarmwall store`.
pub(crate) fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Migrate {
            from,
            to,
            data_dir,
            redis_prefix,
        } => runtime()?.block_on(async {
            if from == to {
                anyhow::bail!("--from and --to name the same store");
            }
            let side = |url: StoreBackend| StoreConfig {
                url,
                redis_prefix: redis_prefix.clone(),
                ..StoreConfig::default()
            };
            let source = open_store(&side(from), data_dir.as_deref()).await?;
            let target = open_store(&side(to), data_dir.as_deref()).await?;
            for side in [&source, &target] {
                attach_fleet_key(side, None, data_dir.as_deref())?;
            }
            let report = store::migrate(&source, &target, store::unix_now_ms())
                .await
                .context("migration failed")?;
            for (namespace, count) in &report.copied {
                println!("{namespace:<18} {count}");
            }
            println!(
                "copied {} values from {} to {}",
                report.total(),
                source.describe(),
                target.describe()
            );
            Ok(ExitCode::SUCCESS)
        }),
        StoreCommand::Bench {
            location,
            iterations,
            concurrency,
        } => runtime()?.block_on(async {
            let config = location.config()?;
            let store = location.open(&config).await?;
            bench(&store, iterations.max(1), concurrency).await
        }),
    }
}

/// The auth-path sequence, `iterations` times; prints one JSON line.
async fn bench(store: &Store, iterations: u32, concurrency: u32) -> anyhow::Result<ExitCode> {
    use std::time::{Duration, Instant};

    let run = format!("{:08x}", rand_suffix());
    let concurrency = concurrency.clamp(1, iterations);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let store = store.clone();
        let run = run.clone();
        let count = iterations / concurrency + u32::from(worker < iterations % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(count as usize);
            for n in 0..count {
                let i = n * concurrency + worker;
                samples.push(bench_login(&store, &run, i).await?);
            }
            anyhow::Ok(samples)
        }));
    }
    let mut login = Vec::with_capacity(iterations as usize);
    let mut per_op: [Vec<Duration>; 4] = Default::default();
    for task in tasks {
        for (total, ops) in task.await?? {
            login.push(total);
            for (slot, op) in per_op.iter_mut().zip(ops) {
                slot.push(op);
            }
        }
    }
    let elapsed = started.elapsed();
    // Leave no bench state behind.
    for i in 0..64 {
        let account = format!("bench-{run}-{i}");
        store
            .clear(store::Namespace::AuthFailuresAccount, &account)
            .await?;
    }
    let micros = |samples: &mut Vec<Duration>, q: f64| -> f64 {
        samples.sort();
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1_000_000.0)
    };
    let names = [
        "active_until_account",
        "active_until_client",
        "record_event",
        "claim_once",
    ];
    let mut ops = serde_json::Map::new();
    for (name, samples) in names.iter().zip(per_op.iter_mut()) {
        ops.insert(
            (*name).to_owned(),
            serde_json::json!({"p50_us": micros(samples, 0.5), "p99_us": micros(samples, 0.99)}),
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "store": store.describe(),
            "iterations": iterations,
            "concurrency": concurrency,
            "logins_per_second": f64::from(iterations) / elapsed.as_secs_f64(),
            "login_p50_us": micros(&mut login, 0.5),
            "login_p99_us": micros(&mut login, 0.99),
            "operations": ops,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// One login's store calls; returns its total time and each call's time.
async fn bench_login(
    store: &Store,
    run: &str,
    i: u32,
) -> anyhow::Result<(std::time::Duration, [std::time::Duration; 4])> {
    use std::time::{Duration, Instant};

    use swarmwall_server::store::Namespace;

    let account = format!("bench-{run}-{}", i % 64);
    let client = format!("benchclient-{run}-{}", i % 256);
    let now = store::unix_now_ms();
    let started = Instant::now();
    let mut laps = [Duration::ZERO; 4];
    let mut lap = Instant::now();
    store
        .active_until(Namespace::LockoutAccount, &account, now)
        .await?;
    laps[0] = lap.elapsed();
    lap = Instant::now();
    store
        .active_until(Namespace::LockoutClient, &client, now)
        .await?;
    laps[1] = lap.elapsed();
    lap = Instant::now();
    store
        .record_event(
            Namespace::AuthFailuresAccount,
            &account,
            now,
            Duration::from_secs(900),
        )
        .await?;
    laps[2] = lap.elapsed();
    lap = Instant::now();
    store
        .claim_once(
            Namespace::TotpReplay,
            &format!("{account}:{i:06}:{}", now / 30_000),
            Duration::from_secs(90),
            now,
        )
        .await?;
    laps[3] = lap.elapsed();
    Ok((started.elapsed(), laps))
}

/// A per-run tag so concurrent or repeated runs never share subjects.
fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id()
}
