//! Admin listener: Prometheus `/metrics`, the JSON API under `/api/v1/`, its OpenAPI
//! description and the web dashboard, on one listener kept off the data path.
//!
//! Layout:
//! - [`AdminContext`]: everything the handlers need (metrics, store-backed account control,
//!   security events, accounts view, reload hook, token), built once by `swarmwall serve`.
//! - [`serve`]: runs the router on a bound listener until `shutdown` resolves; refuses a
//!   non-loopback address unless TLS is configured ([`AdminTls`]).
//! - [`AdminToken`]: the bearer token, kept as a SHA-256 hash and compared in constant time.
//! - [`AccountControl`], [`SecurityEvents`]: small traits over the graduated-response engine
//!   and the audit log, so the admin surface does not depend on their internals.
//! - [`promtext`]: a small parser of the Prometheus text format (the status endpoint reads
//!   its totals from the same encoding `/metrics` serves; tests use it to scrape).
//!
//! Routes: `GET /` (dashboard), `GET /metrics`, `GET /openapi.json`, `GET /healthz` and the
//! API (`/api/v1/status`, `/api/v1/accounts`, `/api/v1/accounts/{name}/strikes/clear`,
//! `/api/v1/accounts/{name}/suspend`, `/api/v1/accounts/{name}/unsuspend`,
//! `/api/v1/accounts/{name}/unlock`,
//! `/api/v1/events`, `/api/v1/reload`, `/api/v1/openapi.json`). Every `/api/` path, known or
//! not, answers 401 without the right `Authorization: Bearer` token.

mod accounts;
mod auth;
mod conn;
mod control;
mod handlers;
pub mod promtext;
mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use crate::config::check_listen_address;
pub use auth::{AdminToken, AdminTokenError};
pub use control::{
    AccountControl, AccountEntry, AccountState, AuditEvents, MemoryEvents, SecurityEvents,
    StoreAccountControl,
};
pub use tls::{AdminTls, AdminTlsError};

use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::strikes::Strikes;

/// A boxed, sendable future (the admin hooks return these so they can be trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reload hook: re-read and apply the configuration; `Err` carries a message for the operator
/// (the old configuration stays in force). The hook's owner counts `config_reloads`.
pub type ReloadHook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), ReloadFailed>> + Send + Sync>;

/// Why the reload hook did not apply a reload (any error; its message goes to the API caller).
pub type ReloadFailed = Box<dyn std::error::Error + Send + Sync>;

/// Accounts view: the configured accounts (name and disabled flag), read on each request.
pub type AccountsView = Arc<dyn Fn() -> Vec<AccountEntry> + Send + Sync>;

/// Everything the admin surface needs. Cheap to clone; build it once with
/// [`AdminContext::new`] and adjust with the `with_*` methods.
#[derive(Clone)]
pub struct AdminContext {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<Arc<AdminToken>>,
    pub(crate) metrics_require_token: bool,
    pub(crate) control: Arc<dyn AccountControl>,
    pub(crate) events: Arc<dyn SecurityEvents>,
    pub(crate) accounts: AccountsView,
    pub(crate) directory: Option<crate::auth::AccountDirectory>,
    pub(crate) reload: ReloadHook,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) version: String,
    pub(crate) tls: Option<AdminTls>,
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
}

impl std::fmt::Debug for AdminContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminContext")
            .field("token", &self.token.as_ref().map(|_| "<configured>"))
            .field("metrics_require_token", &self.metrics_require_token)
            .field("version", &self.version)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminContext {
    /// A context over the real metrics, store, strikes engine and audit log, with no token
    /// (the API then refuses every request), no accounts, and a reload hook that reports
    /// "reload is not available". `version` is shown by `/api/v1/status`.
    pub fn new(
        metrics: Arc<Metrics>,
        store: Store,
        strikes: Strikes,
        audit: AuditLog,
        version: impl Into<String>,
    ) -> Self {
        let control = StoreAccountControl::new(store, strikes).with_metrics(Arc::clone(&metrics));
        Self {
            metrics,
            token: None,
            metrics_require_token: false,
            control: Arc::new(control),
            events: Arc::new(AuditEvents::new(audit)),
            accounts: Arc::new(Vec::new),
            directory: None,
            reload: Arc::new(|| Box::pin(async { Err("reload is not available".into()) })),
            started: Instant::now(),
            started_at: SystemTime::now(),
            version: version.into(),
            tls: None,
            max_connections: conn::MAX_CONNECTIONS,
            idle_timeout: conn::IDLE_TIMEOUT,
        }
    }

    /// Require `token` on every `/api/` request (and on `/metrics` when asked to).
    pub fn with_token(mut self, token: AdminToken) -> Self {
        self.token = Some(Arc::new(token));
        self
    }

    /// Require the token on `/metrics` too (`[admin] metrics_require_token`).
    pub fn with_metrics_require_token(mut self, require: bool) -> Self {
        self.metrics_require_token = require;
        self
    }

    /// Use `control` for account strike/suspension state and actions (the graduated-response
    /// engine once it has its admin methods). The control counts its own suspensions in the
    /// metrics; the handlers only count `admin_actions`.
    pub fn with_account_control(mut self, control: Arc<dyn AccountControl>) -> Self {
        self.control = control;
        self
    }

    /// Use `events` as the security event source and the sink for admin actions.
    pub fn with_events(mut self, events: Arc<dyn SecurityEvents>) -> Self {
        self.events = events;
        self
    }

    /// Use `accounts` to list the configured accounts.
    pub fn with_accounts(mut self, accounts: AccountsView) -> Self {
        self.accounts = accounts;
        self
    }

    /// Provision accounts through `directory` (`POST/GET/PATCH/DELETE /api/v1/accounts...`);
    /// also lists its accounts.
    pub fn with_directory(mut self, directory: crate::auth::AccountDirectory) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Use `reload` for `POST /api/v1/reload`.
    pub fn with_reload(mut self, reload: ReloadHook) -> Self {
        self.reload = reload;
        self
    }

    /// Serve at most `max_connections` admin connections at once (default 64; more wait in
    /// the kernel backlog) and close a connection idle for `idle_timeout` (default 60 s).
    pub fn with_connection_limits(
        mut self,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Self {
        self.max_connections = max_connections;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Serve over TLS (required for a non-loopback address).
    pub fn with_tls(mut self, tls: AdminTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// The admin router (dashboard, metrics, OpenAPI, API with its token check).
pub fn router(context: AdminContext) -> Router {
    let context = Arc::new(context);
    let api = Router::new()
        .route("/status", get(handlers::status))
        .route("/accounts", get(handlers::accounts).post(accounts::create))
        .route(
            "/accounts/import",
            post(accounts::import).layer(DefaultBodyLimit::max(accounts::MAX_IMPORT_BYTES)),
        )
        .route(
            "/accounts/{name}",
            get(accounts::get)
                .patch(accounts::patch)
                .delete(accounts::delete),
        )
        .route(
            "/accounts/{name}/totp",
            post(accounts::enrol_totp).delete(accounts::remove_totp),
        )
        .route(
            "/accounts/{name}/strikes/clear",
            post(handlers::clear_strikes),
        )
        .route("/accounts/{name}/suspend", post(handlers::suspend))
        .route("/accounts/{name}/unsuspend", post(handlers::unsuspend))
        .route("/accounts/{name}/unlock", post(handlers::unlock))
        .route("/events", get(handlers::events))
        .route("/reload", post(handlers::reload))
        .route("/openapi.json", get(handlers::openapi));
    Router::new()
        .route("/", get(handlers::dashboard_html))
        .route("/dashboard.js", get(handlers::dashboard_js))
        .route("/dashboard.css", get(handlers::dashboard_css))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .nest("/api/v1", api)
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&context),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn(handlers::security_headers))
        .with_state(context)
}

/// Serve the admin surface on `listener` until `shutdown` resolves.
///
/// Refuses (`InvalidInput`) a listener bound to a non-loopback address unless the context
/// has TLS: the token would otherwise cross the network in clear text.
pub async fn serve(
    listener: tokio::net::TcpListener,
    context: AdminContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    check_listen_address(local, context.tls.is_some())?;
    let tls = context.tls.clone();
    let (max, idle) = (context.max_connections, context.idle_timeout);
    let app = router(context);
    match tls {
        None => {
            let listener = conn::GuardedListener::new(listener, max, idle);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let listener = conn::GuardedListener::new(tls.listener(listener), max, idle);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// A running admin listener started by [`start`].
#[derive(Debug)]
pub struct RunningAdmin {
    /// The bound address (the real port when `listen` had port 0).
    pub address: SocketAddr,
    /// The server task; it ends with `Ok(())` once `shutdown` resolves.
    pub task: tokio::task::JoinHandle<io::Result<()>>,
}

/// Why [`start`] could not start the admin listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminStartError {
    /// The token file could not be used.
    #[error(transparent)]
    Token(#[from] AdminTokenError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] AdminTlsError),
    /// The address is not allowed (non-loopback without TLS).
    #[error("{0}")]
    Refused(io::Error),
    /// The address could not be bound.
    #[error("admin listener {address}: cannot bind: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Cause.
        source: io::Error,
    },
}

/// Start the admin listener as `config` says (token file, `metrics_require_token`, TLS,
/// address) on a spawned task. `None` when `[admin] enabled = false`, or when no address was
/// configured and the default one (127.0.0.1:9090) is taken (a warning is logged). The caller
/// prints [`startup_line`] with the returned address.
pub async fn start(
    config: &crate::config::AdminConfig,
    mut context: AdminContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<RunningAdmin>, AdminStartError> {
    if !config.enabled {
        return Ok(None);
    }
    if let Some(path) = &config.token_file {
        context = context.with_token(AdminToken::from_file(path)?);
    }
    context = context.with_metrics_require_token(config.metrics_require_token);
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        context = context.with_tls(AdminTls::from_pem_files(cert, key)?);
    }
    let wanted = config.listen_address();
    check_listen_address(wanted, context.tls.is_some()).map_err(AdminStartError::Refused)?;
    let bind_error = |source| AdminStartError::Bind {
        address: wanted,
        source,
    };
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => listener,
        // Only the implicit default may be skipped: an address the operator chose must bind.
        Err(error) if config.listen.is_none() && error.kind() == io::ErrorKind::AddrInUse => {
            tracing::warn!(
                address = %wanted,
                "default admin address is in use; running without the admin listener \
                 (set [admin] listen or --admin-listen)"
            );
            return Ok(None);
        }
        Err(error) => return Err(bind_error(error)),
    };
    let address = listener.local_addr().map_err(bind_error)?;
    let task = tokio::spawn(serve(listener, context, shutdown));
    Ok(Some(RunningAdmin { address, task }))
}

/// The line `swarmwall serve` prints on stderr once the admin listener is bound:
/// `admin interface on ADDR` (tests wait for it; it deliberately does not match the proxy's
/// `listening on ADDR` line).
pub fn startup_line(address: SocketAddr) -> String {
    format!("admin interface on {address}")
}
