//! `swarmwall serve` (run the proxy) and `swarmwall check-config` (validate a file).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use swarmwall_server::config::{Config, LogFormat};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::policy::DestinationPolicy;
use swarmwall_server::server::{ServeOptions, Server, signals::Signals};

/// Arguments of `swarmwall serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML); re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address (overrides `server.listen`); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Accounts file; with accounts, username/password authentication is required.
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
    /// Where accounts come from: `file` (default with `--accounts`), `store` (the state
    /// store, shared by a fleet) or `radius` (`[security.radius]`).
    #[arg(long, value_name = "BACKEND")]
    accounts_backend: Option<swarmwall_server::config::AccountsBackend>,
    /// Allow destinations in this network despite the lateral-movement guard (repeatable).
    #[arg(long = "allow-destination", value_name = "CIDR", value_parser = parse_cidr)]
    allow_destination: Vec<ipnet::IpNet>,
    /// Options handed on to the admin, store and audit parts (boxed: keeps the command enum
    /// small).
    #[command(flatten)]
    wiring: Box<WiringArgs>,
    /// Log format: `human` or `json` (default: `[admin] log_format` of the configuration
    /// file, else `human`).
    #[arg(
        long,
        value_parser = clap::builder::TypedValueParser::try_map(
            clap::builder::PossibleValuesParser::new(["human", "json"]),
            |text| text.parse::<LogFormat>(),
        ),
    )]
    log_format: Option<LogFormat>,
}

/// `serve` options the server core only carries to other parts of the system.
#[derive(Debug, clap::Args)]
struct WiringArgs {
    /// Admin listener address (metrics, API, dashboard).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// File holding the admin API token.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// State store (`memory`, `file:PATH`, `redis://:PASSWORD@HOST:PORT/DB`, `rediss://...`).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Directory for the embedded state store and other state.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Security event log (hash-chained JSON lines).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
}

/// Arguments of `swarmwall check-config`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// Configuration file to check.
    file: PathBuf,
}

/// Run the proxy until SIGTERM/SIGINT.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // The flag wins; else `[admin] log_format` (a file that does not load is reported by the
    // server itself, with logging set up the default way).
    let log_format = args.log_format.unwrap_or_else(|| {
        args.config
            .as_deref()
            .and_then(|path| Config::load(path).ok())
            .map_or(LogFormat::Human, |config| config.admin.log_format)
    });
    init_logging(log_format);
    let options = ServeOptions {
        config_path: args.config,
        listen: args.listen,
        accounts: args.accounts,
        accounts_backend: args.accounts_backend,
        allow_destination: args.allow_destination,
        admin_listen: args.wiring.admin_listen,
        admin_token_file: args.wiring.admin_token_file,
        store: args.wiring.store,
        data_dir: args.wiring.data_dir,
        audit_log: args.wiring.audit_log,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(options))
}

async fn serve(options: ServeOptions) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    let server = Server::bind(options, Arc::clone(&metrics)).await?;
    let address = server.local_addr().context("listener address")?;
    let signals = Signals::install().context("cannot install signal handlers")?;

    // ---- ADMIN LISTENER START (single place) ----------------------------------------------
    let admin = start_admin(&server, &metrics).await?;

    tracing::info!(%address, "SOCKS5 server started");
    // The contract line: tests and tools read the real port from it.
    eprintln!("swarmwall: listening on {address}");
    let handle = server.handle();
    tokio::spawn(signals.watch(handle));
    let left = server.run().await;
    if let Some(admin) = admin {
        admin.shutdown.cancel();
        let _ = admin.running.task.await;
    }
    if left > 0 {
        tracing::warn!(
            sessions = left,
            "shutdown grace period over; closing open sessions"
        );
    } else {
        tracing::info!("all sessions drained; exiting");
    }
    Ok(ExitCode::SUCCESS)
}

/// Check a configuration file: TOML syntax, unknown keys, and values.
pub(crate) fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let result = std::fs::read_to_string(&args.file)
        .map_err(|source| swarmwall_server::config::ConfigError::Read {
            path: args.file.clone(),
            source,
        })
        .and_then(|text| {
            let config = Config::parse(&text, &args.file)?;
            config.server.validate(&text, &args.file)?;
            check_security(&config, &text, &args.file)?;
            DestinationPolicy::new(&config.policy, &[])?;
            config.store.validate().map_err(|(key, message)| {
                swarmwall_server::config::ConfigError::Invalid {
                    path: args.file.clone(),
                    key: key.to_owned(),
                    message,
                }
            })?;
            if let Some(warning) = config.security.weak_argon2_warning() {
                eprintln!("{}: warning: {warning}", args.file.display());
            }
            Ok(())
        });
    match result {
        Ok(()) => {
            println!("{}: ok", args.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `[security]` values, located at their line in `text`: the accounts backend and its RADIUS
/// servers (including a readable secret file), and the other checks of `serve`.
fn check_security(
    config: &Config,
    text: &str,
    path: &std::path::Path,
) -> Result<(), swarmwall_server::config::ConfigError> {
    use swarmwall_server::config::{AccountsBackend, locate_security_error};
    let security = &config.security;
    security.validate_in(text, path)?;
    if security.accounts_backend() == AccountsBackend::Radius
        && let Some(secret) = &security.radius.secret_file
        && let Err(error) = std::fs::File::open(secret)
    {
        return Err(locate_security_error(
            text,
            path,
            "security.radius.secret_file",
            &format!("{}: {error}", secret.display()),
        ));
    }
    if security.accounts_backend() != AccountsBackend::File && security.accounts.is_some() {
        return Err(locate_security_error(
            text,
            path,
            "security.accounts",
            "an accounts file does not go with accounts_backend = \"store\" or \"radius\" \
             (copy it into the store with `swarmwall user import`)",
        ));
    }
    Ok(())
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not a CIDR (e.g. 127.0.0.0/8) or an IP address"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// A started admin listener and the token that stops it.
struct AdminRunning {
    running: swarmwall_server::admin::RunningAdmin,
    shutdown: tokio_util::sync::CancellationToken,
}

/// Start the admin listener (`[admin]`, overridden by `--admin-listen` and
/// `--admin-token-file`). `admin::start` treats a busy *default* address as a warning and an
/// explicitly configured address that cannot be used as fatal.
async fn start_admin(
    server: &Server,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<AdminRunning>> {
    use swarmwall_server::admin::{self, AccountEntry, AdminContext};

    let handle = server.handle();
    let runtime = handle.runtime();
    let options = handle.options().clone();
    let config = runtime
        .config
        .admin
        .clone()
        .with_overrides(options.admin_listen, options.admin_token_file.clone());
    let strikes = handle.strikes();
    let accounts_handle = handle.clone();
    let reload_handle = handle.clone();
    let context = AdminContext::new(
        Arc::clone(metrics),
        strikes.store().clone(),
        strikes,
        handle.audit(),
        env!("CARGO_PKG_VERSION"),
    )
    .with_accounts(Arc::new(move || {
        accounts_handle
            .security()
            .authenticator
            .account_names()
            .into_iter()
            .map(|(name, disabled)| AccountEntry { name, disabled })
            .collect()
    }))
    .with_directory(handle.security().directory.clone())
    .with_reload(Arc::new(move || {
        let handle = reload_handle.clone();
        Box::pin(async move { handle.reload().await.map_err(Into::into) })
    }));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    match admin::start(&config, context, async move { stop.cancelled().await }).await {
        Ok(Some(running)) => {
            eprintln!("swarmwall: {}", admin::startup_line(running.address));
            Ok(Some(AdminRunning { running, shutdown }))
        }
        Ok(None) => Ok(None),
        Err(error) => Err(anyhow::anyhow!(error)),
    }
}
