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

    /// Open the store (inside a runtime).
    pub(crate) async fn open(&self, config: &Config) -> anyhow::Result<Store> {
        let mut store_config = config.store.clone();
        if let Some(url) = &self.store {
            store_config.url = url.clone();
        }
        open_store(&store_config, self.data_dir.as_deref()).await
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
    }
}
