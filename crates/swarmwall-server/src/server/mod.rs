//! The SOCKS5 server: listener, session, relay, UDP ASSOCIATE, BIND, limits, shutdown.
//!
//! Layout:
//! - `listener`: the accept loop (session limit, accept back-off, PROXY protocol, shutdown).
//! - `session`: one task per connection; drives [`swarmwall_core::socks5::ServerHandshake`],
//!   authenticates, checks suspensions, dispatches the command.
//! - `connect`: destination names and policy, resolution and outbound connection with the
//!   precise reply code.
//! - `udp`, `bind`: UDP ASSOCIATE and BIND; `udp_batch`: the association's batched datagram
//!   I/O (`recvmmsg`/`sendmmsg`, a per-thread buffer pool).
//! - `context`: what a command handler gets from its session (context, reply writer,
//!   refusal counter).
//! - `enforce`: verdict → action → count → strike, for TCP, UDP and destination names.
//! - `relay`: the inspect phase (classifier fed both directions) then the fast path.
//! - `splice`, `idle`: the zero-copy fast path and the idle timeout.
//!
//! Imports run one way: `session → {connect, bind, udp} → {relay, context, enforce}`,
//! `relay → {splice, idle}` (checked by `scripts/check-module-cycles.py`).
//! - `limits`: per-account session counting, per-source handshake counting.
//! - `fd_reserve`: the open-file limit raised at start and descriptors kept for the admin
//!   listener.
//! - `signals`: SIGTERM/SIGINT (graceful shutdown) and SIGHUP (reload).
//! - `reload`: what a reload refuses (an empty file) and the start-only keys it keeps.
//!
//! Everything derived from the configuration files (authenticator, destination policy,
//! limits) lives in one [`Runtime`] snapshot behind an [`ArcSwap`]; [`ServerHandle::reload`]
//! builds a new one and swaps it atomically. A session loads the snapshot once when it starts
//! and keeps it, so a reload never disturbs live sessions.

mod bind;
mod connect;
mod context;
mod correlation;
mod drain;
mod enforce;
mod fast_path;
pub mod fd_reserve;
mod idle;
mod limits;
mod listener;
mod lookup;
mod refusal;
mod relay;
mod reload;
mod runtime;
mod session;
pub mod signals;
mod splice;
mod udp;
mod udp_batch;
mod udp_socket;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use swarmwall_core::classify::ClientKey;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::auth::{Authenticator, SecuritySetup};
use crate::config::{Config, ServerConfig};
use crate::metrics::Metrics;
use crate::policy::DestinationPolicy;
use crate::store::Store;
use crate::strikes::{StrikeSubject, Strikes};

/// Start-up options: the command line (`swarmwall serve`), layered over the config file.
/// Options that belong to other parts of the server (admin, store, audit) are carried here so
/// the binary can hand them on; the server core itself does not interpret them.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--config FILE`: re-read on reload.
    pub config_path: Option<PathBuf>,
    /// `--listen ADDR`: overrides `server.listen`.
    pub listen: Option<SocketAddr>,
    /// `--accounts FILE`: overrides `server.accounts`; re-read on reload.
    pub accounts: Option<PathBuf>,
    /// `--accounts-backend`: overrides `[security] accounts_backend`.
    pub accounts_backend: Option<crate::config::AccountsBackend>,
    /// `--allow-destination CIDR` (repeatable): allow rules ahead of the lateral-movement guard.
    pub allow_destination: Vec<ipnet::IpNet>,
    /// `--admin-listen ADDR`.
    pub admin_listen: Option<SocketAddr>,
    /// `--admin-token-file FILE`.
    pub admin_token_file: Option<PathBuf>,
    /// `--store URL` (`memory`, `file:PATH`, `redis://...`).
    pub store: Option<String>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--audit-log FILE`.
    pub audit_log: Option<PathBuf>,
}

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration file is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The accounts file is invalid.
    #[error("{0}")]
    Accounts(#[from] crate::auth::AccountsError),
    /// A non-loopback listener without authentication was requested.
    #[error(
        "refusing to listen on {0} without authentication: that would be an open proxy. \
         Configure accounts (--accounts FILE or server.accounts), listen on a loopback \
         address, or set `danger_allow_public_listen_without_auth = true` in [server]"
    )]
    PublicWithoutAuth(SocketAddr),
    /// A component (state store, account security, audit log) could not start.
    #[error("{0}")]
    Setup(String),
    /// Binding the listener failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a reload was not applied (the running configuration stays in force).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The configuration or accounts file is invalid, or the listener would become open.
    #[error("{0}")]
    Load(#[from] ServerError),
    /// The task reading the files failed (panicked or was cancelled).
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    /// The configuration file is empty: applying it would reset every setting.
    #[error(
        "{}: the configuration file is empty; refusing to reset every setting to its default \
         (reload not applied)",
        path.display()
    )]
    EmptyConfig {
        /// The configuration file.
        path: PathBuf,
    },
    /// Account security (accounts backend, GeoIP, keys) refused the new `[security]` section.
    #[error("account security: {0}")]
    Security(#[from] crate::auth::SetupError),
}

/// The configuration-derived part of the server, swapped as a whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The parsed configuration file (defaults when none is given).
    pub config: Config,
    /// `[server]` after command-line overrides.
    pub server: ServerConfig,
    /// `Some` when accounts are configured: RFC 1929 authentication is then required.
    pub authenticator: Option<Authenticator>,
    /// Destination rules, lateral-movement guard and traffic-class actions.
    pub policy: DestinationPolicy,
    /// The configuration file holds no key at all (refused on reload).
    pub config_file_empty: bool,
}

impl Runtime {
    /// Read the config file and accounts file named by `options`, apply the command-line
    /// overrides and validate everything.
    pub fn load(options: &ServeOptions) -> Result<Self, ServerError> {
        let (config, text, path) = match &options.config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    crate::config::ConfigError::Read {
                        path: path.clone(),
                        source,
                    }
                })?;
                (Config::parse(&text, path)?, text, path.clone())
            }
            None => (
                Config::default(),
                String::new(),
                PathBuf::from("<defaults>"),
            ),
        };
        config.server.validate(&text, &path)?;
        let mut server = config.server.clone();
        if let Some(listen) = options.listen {
            server.listen = listen;
        }
        if let Some(accounts) = &options.accounts {
            server.accounts = Some(accounts.clone());
        }
        // The accounts are read once, by the long-lived authenticator in `Shared::security`
        // (lockouts, TOTP windows, watcher), attached by `Server::bind` /
        // `ServerHandle::reload`; a broken file fails start-up or reload there with a precise
        // error. Until then `authenticator` is `None`.
        let authenticator: Option<Authenticator> = None;
        let policy = DestinationPolicy::new(&config.policy, &options.allow_destination)?;
        let config_file_empty = options.config_path.is_some() && reload::is_empty_config(&text);
        Ok(Self {
            config,
            server,
            authenticator,
            policy,
            config_file_empty,
        })
    }

    /// Use the long-lived authenticator of `security` (lockouts, TOTP windows, GeoIP, travel,
    /// audit) whenever accounts are configured.
    pub fn attach_authenticator(&mut self, security: &SecuritySetup) {
        self.authenticator = (self.authenticator.is_some()
            || security.authenticator.has_accounts())
        .then(|| security.authenticator.clone());
    }

    /// True when an accounts file or another accounts backend is configured (their accounts
    /// are loaded later, by [`SecuritySetup`]).
    pub fn accounts_configured(&self, options: &ServeOptions) -> bool {
        self.server.accounts.is_some()
            || self.config.security.accounts.is_some()
            || options
                .accounts_backend
                .or(self.config.security.accounts_backend)
                .is_some_and(|backend| backend != crate::config::AccountsBackend::File)
    }

    /// Refuse an open proxy: a non-loopback listener without authentication, unless the
    /// `danger_` override is set.
    pub fn check_listen(&self, address: SocketAddr) -> Result<(), ServerError> {
        if self.authenticator.is_none()
            && !address.ip().is_loopback()
            && !self.server.danger_allow_public_listen_without_auth
        {
            return Err(ServerError::PublicWithoutAuth(address));
        }
        Ok(())
    }
}

/// State shared by the listener and every session.
pub(crate) struct Shared {
    pub(crate) options: ServeOptions,
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: AuditLog,
    pub(crate) strikes: Strikes,
    pub(crate) security: SecuritySetup,
    pub(crate) correlation: correlation::Correlation,
    pub(crate) account_sessions: limits::AccountSessions,
    pub(crate) handshakes: limits::SourceHandshakes,
    /// UDP datagrams held while their destination names resolve, all associations together.
    pub(crate) held_datagrams: limits::HeldDatagramBytes,
    /// Name lookups running, per client and in total.
    pub(crate) lookups: lookup::Lookups,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// The relayed byte counters (`swarmwall_bytes_total` by direction), the same for every
    /// session: kept here, not in each session's state.
    relay_bytes: relay::Counters,
    pseudonym_key: [u8; 32],
}

impl Shared {
    /// Keyed hash of a client address: strike subject and correlator key for unauthenticated
    /// clients, never reversible without the per-process key.
    pub(crate) fn pseudonym(&self, label: &str, value: &[u8]) -> [u8; 32] {
        crate::pseudonym::hmac_sha256(&self.pseudonym_key, &[label.as_bytes(), value])
    }

    /// The strike subject and correlator key of a session.
    pub(crate) fn identity(
        &self,
        account: Option<&str>,
        client: IpAddr,
    ) -> (StrikeSubject, ClientKey) {
        let (subject, digest) = match account {
            Some(account) => (
                StrikeSubject::Account(account.to_owned()),
                self.pseudonym("account:", account.as_bytes()),
            ),
            None => {
                // IPv6 clients by their /64: one host usually holds a whole /64, and rotating
                // addresses inside it must not reset its strikes.
                let digest = self.pseudonym("client:", client_network(client).as_bytes());
                let hex = hex::encode(digest.get(..12).unwrap_or(&digest));
                (StrikeSubject::Client(hex), digest)
            }
        };
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        (subject, ClientKey(u64::from_be_bytes(first)))
    }
}

/// The strike identity of an unauthenticated client address: IPv4 (and IPv4-mapped) as the
/// address, IPv6 as its /64 network.
fn client_network(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
    }
}

/// A bound, not yet running server.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
}

impl Server {
    /// Load the configuration, refuse an open proxy, and bind the listener. `metrics` is shared
    /// with the admin surface.
    pub async fn bind(options: ServeOptions, metrics: Arc<Metrics>) -> Result<Self, ServerError> {
        let runtime = Runtime::load(&options)?;
        if runtime.config_file_empty {
            tracing::warn!(
                file = ?options.config_path,
                "the configuration file is empty: every setting has its default"
            );
        }
        let address = runtime.server.listen;
        // Accounts are loaded below (after the store): refuse an open proxy now when none are
        // configured at all, and again once they are loaded (an empty file is no protection).
        if !runtime.accounts_configured(&options) {
            runtime.check_listen(address)?;
        }
        if runtime.server.danger_disable_inspection {
            tracing::warn!(
                "server.danger_disable_inspection is set: TCP sessions are NOT inspected and \
                 BitTorrent over TCP is not blocked"
            );
        }
        if let Some(warning) = runtime.config.security.weak_argon2_warning() {
            tracing::warn!("{warning}");
        }
        if let Err(error) = fd_reserve::init(runtime.server.max_sessions) {
            tracing::warn!(%error, "cannot read the open-file limit; no descriptor reserve");
        }
        let listeners =
            runtime::bind_listeners(address, runtime::listener_count(runtime.server.runtime))
                .map_err(|source| ServerError::Bind { address, source })?;

        // ---- STORE CONSTRUCTION (single place) -------------------------------------------
        let mut store_config = runtime.config.store.clone();
        if let Some(url) = &options.store {
            store_config.url = url.parse().map_err(|error: crate::config::UnknownStore| {
                ServerError::Config(crate::config::ConfigError::Invalid {
                    path: PathBuf::from("<command line>"),
                    key: "--store".to_owned(),
                    message: error.to_string(),
                })
            })?;
        }
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(crate::store::default_data_dir);
        // Whatever the store: the data directory also holds the secret key and (by default)
        // the audit log.
        crate::store::create_private_dir(&data_dir)
            .map_err(|error| ServerError::Setup(format!("data directory: {error}")))?;
        let store = Store::open(&store_config, &data_dir, Arc::clone(&metrics))
            .await
            .map_err(|error| ServerError::Setup(format!("state store: {error}")))?;
        tracing::info!(store = %store.describe(), "state store ready");
        // ---- ACCOUNT SECURITY AND AUDIT LOG (single place) -------------------------------
        // The audit log (and the secret key file beside it) default to the data directory;
        // `--audit-log` or an explicit `[security] audit_log` win.
        let audit_path = crate::audit::resolve_path(
            &runtime.config.security.audit_log,
            options.audit_log.as_deref(),
            &data_dir,
        )
        .unwrap_or_default();
        if let Some(parent) = audit_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::store::create_private_dir(parent)
                .map_err(|error| ServerError::Setup(format!("audit log: {error}")))?;
        }
        // The secret key lives in the data directory unless configured elsewhere: never in
        // the working directory (which may be a checkout) nor beside a relocated audit log.
        let mut security_config = runtime.config.security.clone();
        security_config
            .secret_key_file
            .get_or_insert_with(|| data_dir.join(crate::auth::DEFAULT_KEY_FILE));
        if let Some(backend) = options.accounts_backend {
            security_config.accounts_backend = Some(backend);
        }
        let security = SecuritySetup::load(
            &security_config,
            runtime.server.accounts.as_deref(),
            Some(&audit_path),
            store.clone(),
            Arc::clone(&metrics),
        )
        .map_err(|error| ServerError::Setup(format!("account security: {error}")))?;
        security.spawn_accounts_watcher();
        // Lockouts, suspensions and TOTP state in Redis carry a MAC from the fleet's secret.
        store.attach_integrity_key(security.key.derive(crate::store::INTEGRITY_KEY_PURPOSE));
        security.start_accounts().await;
        let audit = security.audit.clone();
        crate::audit::spawn_checkpointer(
            audit.clone(),
            crate::audit::CheckpointSettings::from_config(&runtime.config.security),
            store.clone(),
        );
        // From the persistent secret file, so that strike subjects of unauthenticated clients
        // survive restarts and agree across nodes that share the key file.
        let pseudonym_key = security.key.derive("session-pseudonym");
        let mut runtime = runtime;
        runtime.attach_authenticator(&security);
        runtime.check_listen(address)?;
        let strikes = Strikes::with_config(
            store,
            &runtime.config.policy.strikes,
            Arc::clone(&metrics),
            audit.clone(),
        );

        let relay_bytes = relay::Counters::new(&metrics);
        let shared = Arc::new(Shared {
            options,
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            audit,
            strikes,
            security,
            correlation: correlation::Correlation::new(),
            account_sessions: limits::AccountSessions::default(),
            handshakes: limits::SourceHandshakes::default(),
            held_datagrams: limits::HeldDatagramBytes::default(),
            lookups: lookup::Lookups::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            relay_bytes,
            pseudonym_key,
        });
        Ok(Self { listeners, shared })
    }

    /// The address actually bound (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners
            .first()
            .ok_or_else(|| std::io::Error::other("no listener"))?
            .local_addr()
    }

    /// A handle for reload and shutdown (cheap to clone, usable from other tasks).
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accept and serve until [`ServerHandle::shutdown`]; then stop accepting and wait for the
    /// open sessions up to `shutdown_grace`. Returns the number of sessions still open when
    /// the grace period ended (they are dropped with the runtime).
    pub async fn run(self) -> usize {
        // The accept loop runs as a task on the worker threads (next to the sessions and the
        // I/O driver) rather than on the thread that called `run`.
        let layout = self.shared.runtime.load().server.runtime;
        let cores = match runtime::accept_all(self.listeners, &self.shared, layout).await {
            Ok(cores) => Some(cores),
            Err(error) => {
                tracing::error!(%error, "cannot start the session runtimes");
                self.shared.shutdown.cancel();
                None
            }
        };
        let grace = self.shared.runtime.load().server.shutdown_grace;
        self.shared.tracker.close();
        let left = match tokio::time::timeout(grace, self.shared.tracker.wait()).await {
            Ok(()) => 0,
            Err(_elapsed) => self.shared.tracker.len(),
        };
        if let Some(cores) = cores {
            cores.join().await;
        }
        left
    }
}

/// Handle to a running server.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The graduated-response engine (for the admin surface).
    pub fn strikes(&self) -> Strikes {
        self.shared.strikes.clone()
    }

    /// The security event log.
    pub fn audit(&self) -> AuditLog {
        self.shared.audit.clone()
    }

    /// The account-security setup (authenticator, key).
    pub fn security(&self) -> &SecuritySetup {
        &self.shared.security
    }

    /// The command-line options the server was started with.
    pub fn options(&self) -> &ServeOptions {
        &self.shared.options
    }

    /// Re-read the config file and accounts file, validate, and swap the runtime snapshot
    /// atomically. On error the old snapshot stays. Counts `config_reloads{result}`.
    ///
    /// An empty configuration file is refused (it would reset every setting to its default).
    /// Keys only read at start (`server.listen`, `server.max_sessions`, `[store]`, `[admin]`,
    /// ...) keep their running values and are logged by name as not applied.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let options = self.shared.options.clone();
        let loaded = tokio::task::spawn_blocking(move || Runtime::load(&options))
            .await
            .map_err(ReloadError::from)
            .and_then(|loaded| loaded.map_err(ReloadError::from));
        let current = self.shared.runtime.load_full();
        let loaded = loaded.and_then(|runtime| {
            if runtime.config_file_empty {
                let path = self.shared.options.config_path.clone().unwrap_or_default();
                return Err(ReloadError::EmptyConfig { path });
            }
            Ok(runtime)
        });
        let loaded = match loaded {
            Ok(mut runtime) => match self.shared.security.reload(&runtime.config.security).await {
                Ok(()) => {
                    runtime.attach_authenticator(&self.shared.security);
                    Ok(runtime)
                }
                Err(error) => Err(ReloadError::Security(error)),
            },
            Err(error) => Err(error),
        };
        let result = loaded.and_then(|mut runtime| {
            runtime.check_listen(current.server.listen)?;
            let not_applied = reload::keep_start_only_settings(&current, &mut runtime);
            if !not_applied.is_empty() {
                tracing::warn!(
                    keys = %not_applied.join(", "),
                    "configuration changes that need a restart were NOT applied"
                );
            }
            self.shared.runtime.store(Arc::new(runtime));
            Ok(())
        });
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .metrics
            .config_reloads
            .get_or_create(&crate::metrics::ResultLabels { result: label })
            .inc();
        result
    }

    /// Stop accepting; [`Server::run`] then drains open sessions.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// The current runtime snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// Sessions currently open (handshaking or relaying).
    pub fn open_sessions(&self) -> usize {
        self.shared.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::client_network;

    #[test]
    fn unauthenticated_ipv6_clients_are_known_by_their_slash_64() {
        let a = client_network("2001:db8:1:2::1".parse().unwrap());
        let b = client_network("2001:db8:1:2:ffff:ee:dd:7".parse().unwrap());
        let c = client_network("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(client_network("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(
            client_network("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7"
        );
    }
}
