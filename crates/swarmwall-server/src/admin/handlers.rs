//! Request handlers of the admin router. Every error is a JSON object
//! `{"error": "...", "status": N}`; bad input is a 4xx, a failing state store a 503.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminContext;
use super::control::AccountEntry;
use super::promtext::Scrape;
use crate::metrics::AdminActionLabels;
use crate::store::{StoreError, unix_now_ms};

/// Events returned when `limit` is absent.
const DEFAULT_EVENTS: usize = 100;
/// Most events one request may ask for.
const MAX_EVENTS: usize = 1000;
/// Longest admin suspension.
const MAX_SUSPENSION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest account name looked up.
const MAX_NAME_BYTES: usize = 256;
/// Longest free-text reason kept with an admin action.
const MAX_REASON_CHARS: usize = 200;

const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
const OPENAPI: &str = include_str!("openapi.json");

type ApiResult = Result<Response, ApiError>;

/// An error answer: status and message, rendered as JSON.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.message).into_response()
    }
}

/// A JSON error body with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({ "error": message, "status": status.as_u16() })),
    )
}

pub(crate) fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        message: message.to_owned(),
    }
}

fn store_error(failure: &StoreError) -> ApiError {
    tracing::warn!(%failure, "admin request: state store failed");
    error(StatusCode::SERVICE_UNAVAILABLE, &failure.to_string())
}

/// Headers on every answer: no caching, no sniffing, no framing, a strict CSP.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

fn static_text(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /`: the dashboard page.
pub(crate) async fn dashboard_html() -> Response {
    static_text("text/html; charset=utf-8", DASHBOARD_HTML)
}

/// `GET /dashboard.js`.
pub(crate) async fn dashboard_js() -> Response {
    static_text("text/javascript; charset=utf-8", DASHBOARD_JS)
}

/// `GET /dashboard.css`.
pub(crate) async fn dashboard_css() -> Response {
    static_text("text/css; charset=utf-8", DASHBOARD_CSS)
}

/// `GET /openapi.json` and `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> Response {
    static_text("application/json", OPENAPI)
}

/// `GET /healthz`: liveness, no details.
pub(crate) async fn healthz() -> Response {
    static_text("text/plain; charset=utf-8", "ok\n")
}

/// Fallback: JSON 404 (after the token check for `/api/` paths).
pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such resource").into_response()
}

/// Fallback for a known path with the wrong method.
pub(crate) async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response()
}

/// `GET /metrics`: the Prometheus/OpenMetrics text exposition.
pub(crate) async fn metrics(State(context): State<Arc<AdminContext>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        context.metrics.encode(),
    )
        .into_response()
}

/// `GET /api/v1/status`: version, uptime and totals read from the metrics.
pub(crate) async fn status(State(context): State<Arc<AdminContext>>) -> ApiResult {
    let scrape = Scrape::parse(&context.metrics.encode()).map_err(|parse_error| {
        tracing::error!(%parse_error, "cannot read back own metrics");
        error(StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable")
    })?;
    let total = |name: &str| count(scrape.sum(name, &[]));
    let by = |name: &str, label: &str| -> serde_json::Map<String, Value> {
        scrape
            .sum_by(name, label)
            .into_iter()
            .map(|(key, value)| (key, json!(count(value))))
            .collect()
    };
    let to_target = count(scrape.sum(
        "swarmwall_relay_bytes_total",
        &[("direction", "client_to_target")],
    ));
    let to_client = count(scrape.sum(
        "swarmwall_relay_bytes_total",
        &[("direction", "target_to_client")],
    ));
    let auth_failures = count(scrape.sum("swarmwall_auth_results_total", &[("result", "failure")]));
    let impossible_travel = total("swarmwall_impossible_travel_total");
    let geo_denials = total("swarmwall_geo_denials_total");
    let monitor_leaks = total("swarmwall_monitor_leaks_total");
    let body = json!({
        "version": context.version,
        "uptime_seconds": context.started.elapsed().as_secs_f64(),
        "started_at_ms": unix_ms(context.started_at),
        "now_ms": unix_now_ms(),
        "sessions": {
            "active": total("swarmwall_sessions_active"),
            "total": total("swarmwall_sessions_total"),
            "refused": total("swarmwall_sessions_refused_total"),
            "by_command": by("swarmwall_sessions_total", "command"),
        },
        "bytes": {
            "client_to_target": to_target,
            "target_to_client": to_client,
            "total": to_target.saturating_add(to_client),
        },
        "blocks": {
            "total": total("swarmwall_blocks_total"),
            "by_form": by("swarmwall_blocks_total", "form"),
            "by_transport": by("swarmwall_blocks_total", "transport"),
        },
        "auth": {
            "successes": count(scrape.sum("swarmwall_auth_results_total", &[("result", "success")])),
            "failures": auth_failures,
            "failures_by_reason": failures_by_reason(&scrape),
        },
        "auth_failures": auth_failures,
        "strikes": total("swarmwall_strikes_total"),
        "suspensions": total("swarmwall_suspensions_total"),
        "lockouts": total("swarmwall_lockouts_total"),
        "alerts": {
            "total": impossible_travel + geo_denials + monitor_leaks,
            "impossible_travel": impossible_travel,
            "geo_denials": geo_denials,
            "monitor_leaks": monitor_leaks,
        },
        "config_reloads": by("swarmwall_config_reloads_total", "result"),
        "store_up": scrape.sum("swarmwall_store_up", &[]) >= 1.0,
    });
    Ok(Json(body).into_response())
}

fn failures_by_reason(scrape: &Scrape) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for sample in &scrape.samples {
        if sample.name == "swarmwall_auth_results_total"
            && sample.labels.get("result").is_some_and(|r| r == "failure")
            && let Some(reason) = sample.labels.get("reason")
        {
            let entry = out.entry(reason.clone()).or_insert(json!(0_u64));
            let sum = entry
                .as_u64()
                .unwrap_or(0)
                .saturating_add(count(sample.value));
            *entry = json!(sum);
        }
    }
    out
}

/// A counter value as an integer (counters here only ever hold whole, non-negative numbers).
fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        // Saturating float-to-int conversion.
        value as u64
    } else {
        0
    }
}

fn unix_ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Most subjects one accounts listing returns.
const MAX_LISTED: usize = 10_000;

/// Accounts one listing page returns when `limit` is absent.
const DEFAULT_PAGE: usize = 1_000;

/// Query of `GET /api/v1/accounts`.
#[derive(Debug, Deserialize)]
pub(crate) struct AccountsQuery {
    /// Only subjects currently suspended or locked out (cheap: no visit of every account).
    restricted: Option<bool>,
    /// Only names containing this text.
    name: Option<String>,
    /// Skip this many (after filtering, in name order).
    offset: Option<usize>,
    /// At most this many (default 1000, at most 10000).
    limit: Option<usize>,
}

/// `GET /api/v1/accounts[?restricted=true]`: accounts with their enforcement state.
pub(crate) async fn accounts(
    State(context): State<Arc<AdminContext>>,
    query: Result<Query<AccountsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) =
        query.map_err(|rejection| error(StatusCode::BAD_REQUEST, &rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit > MAX_LISTED {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "limit must be at most 10000",
        ));
    }
    let offset = query.offset.unwrap_or(0);
    let filter = query.name.unwrap_or_default();
    let now = unix_now_ms();
    let mut configured = (context.accounts)();
    if !filter.is_empty() {
        configured.retain(|entry| entry.name.contains(filter.as_str()));
    }
    let total = configured.len();
    let listed: Vec<(String, bool, bool)> = if query.restricted.unwrap_or(false) {
        let subjects = context
            .control
            .restricted(now)
            .await
            .map_err(|e| store_error(&e))?;
        subjects
            .into_iter()
            .map(|subject| {
                let entry = configured.iter().find(|entry| entry.name == subject);
                let disabled = entry.is_some_and(|entry| entry.disabled);
                (subject, disabled, entry.is_some())
            })
            .collect()
    } else {
        configured
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|entry| (entry.name, entry.disabled, true))
            .collect()
    };
    let mut out = Vec::new();
    for (name, disabled, is_configured) in listed.into_iter().take(MAX_LISTED) {
        let state = context
            .control
            .state(&name, now)
            .await
            .map_err(|e| store_error(&e))?;
        let mut listed = json!({
            "name": name,
            "configured": is_configured,
            "disabled": disabled,
            "strikes": state.strikes,
            "suspended": state.suspended_until_ms.is_some(),
            "suspended_until_ms": state.suspended_until_ms,
            "locked_out": state.locked_until_ms.is_some(),
            "locked_until_ms": state.locked_until_ms,
        });
        // With a directory: TOTP enrolment, country lists and policy override (never a secret).
        if let Some(account) = context.directory.as_ref().and_then(|d| d.get(&name))
            && let Some(object) = listed.as_object_mut()
        {
            object.insert(
                "totp_enrolled".to_owned(),
                json!(account.totp_secret.is_some()),
            );
            object.insert("allow_countries".to_owned(), json!(account.allow_countries));
            object.insert("deny_countries".to_owned(), json!(account.deny_countries));
            object.insert("policy".to_owned(), json!(account.policy));
        }
        out.push(listed);
    }
    Ok(Json(json!({
        "now_ms": now,
        "total": total,
        "offset": offset,
        "accounts": out,
    }))
    .into_response())
}

/// The configured account named by the path, or a 400/404 answer.
fn account_from_path(
    context: &AdminContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<AccountEntry, ApiError> {
    let Path(name) =
        path.map_err(|rejection| error(StatusCode::BAD_REQUEST, &rejection.body_text()))?;
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(error(StatusCode::BAD_REQUEST, "bad account name"));
    }
    (context.accounts)()
        .into_iter()
        .find(|entry| entry.name == name)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such account"))
}

fn count_action(context: &AdminContext, action: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    context
        .metrics
        .admin_actions
        .get_or_create(&AdminActionLabels { action, result })
        .inc();
}

/// `POST /api/v1/accounts/{name}/strikes/clear`.
pub(crate) async fn clear_strikes(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let account = account_from_path(&context, path)?;
    let result = context.control.clear_strikes(&account.name).await;
    count_action(&context, "clear_strikes", result.is_ok());
    context.events.record(
        "admin_action",
        Some(&account.name),
        None,
        json!({ "action": "clear_strikes", "result": if result.is_ok() { "ok" } else { "error" } }),
    );
    result.map_err(|e| store_error(&e))?;
    Ok(
        Json(json!({ "account": account.name, "action": "clear_strikes", "result": "ok" }))
            .into_response(),
    )
}

/// Body of `POST /api/v1/accounts/{name}/suspend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuspendBody {
    /// How long, humantime syntax (`90s`, `30m`, `12h`, `7d`).
    duration: String,
    /// Why (kept in the security log).
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/accounts/{name}/suspend` with `{"duration": "1h", "reason": "..."}`.
pub(crate) async fn suspend(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SuspendBody>, JsonRejection>,
) -> ApiResult {
    let account = account_from_path(&context, path)?;
    let Json(body) = body.map_err(|rejection| error(rejection.status(), &rejection.body_text()))?;
    let duration = humantime_serde::re::humantime::parse_duration(body.duration.trim())
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad duration: {e}")))?;
    if duration < Duration::from_secs(1) || duration > MAX_SUSPENSION {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "duration must be between 1s and 366d",
        ));
    }
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(error(StatusCode::BAD_REQUEST, "reason is too long"));
    }
    let now = unix_now_ms();
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let until = now.saturating_add(millis);
    let result = context.control.suspend(&account.name, until).await;
    count_action(&context, "suspend", result.is_ok());
    context.events.record(
        "admin_action",
        Some(&account.name),
        None,
        json!({
            "action": "suspend",
            "duration_secs": duration.as_secs(),
            "until_ms": until,
            "reason": reason,
            "result": if result.is_ok() { "ok" } else { "error" },
        }),
    );
    result.map_err(|e| store_error(&e))?;
    Ok(Json(json!({
        "account": account.name,
        "action": "suspend",
        "result": "ok",
        "suspended_until_ms": until,
    }))
    .into_response())
}

/// `POST /api/v1/accounts/{name}/unsuspend`.
pub(crate) async fn unsuspend(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let account = account_from_path(&context, path)?;
    let result = context.control.unsuspend(&account.name).await;
    count_action(&context, "unsuspend", result.is_ok());
    context.events.record(
        "admin_action",
        Some(&account.name),
        None,
        json!({ "action": "unsuspend", "result": if result.is_ok() { "ok" } else { "error" } }),
    );
    result.map_err(|e| store_error(&e))?;
    Ok(
        Json(json!({ "account": account.name, "action": "unsuspend", "result": "ok" }))
            .into_response(),
    )
}

/// `POST /api/v1/accounts/{name}/unlock`: lift a brute-force lockout.
pub(crate) async fn unlock(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let account = account_from_path(&context, path)?;
    let result = context.control.unlock(&account.name).await;
    count_action(&context, "unlock", result.is_ok());
    context.events.record(
        "admin_action",
        Some(&account.name),
        None,
        json!({ "action": "unlock", "result": if result.is_ok() { "ok" } else { "error" } }),
    );
    result.map_err(|e| store_error(&e))?;
    Ok(
        Json(json!({ "account": account.name, "action": "unlock", "result": "ok" }))
            .into_response(),
    )
}

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// How many events (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /api/v1/events?limit=N`: recent security events, newest last.
pub(crate) async fn events(
    State(context): State<Arc<AdminContext>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) =
        query.map_err(|rejection| error(StatusCode::BAD_REQUEST, &rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS);
    if limit > MAX_EVENTS {
        return Err(error(StatusCode::BAD_REQUEST, "limit must be at most 1000"));
    }
    let events = context.events.recent(limit);
    Ok(Json(json!({ "events": events })).into_response())
}

/// `POST /api/v1/reload`: run the reload hook; 200 on success, 422 with its message if the
/// new configuration was refused (the old one stays in force).
pub(crate) async fn reload(State(context): State<Arc<AdminContext>>) -> ApiResult {
    let result = (context.reload)().await;
    count_action(&context, "reload", result.is_ok());
    let outcome = match &result {
        Ok(()) => json!({ "action": "reload", "result": "ok" }),
        Err(failure) => {
            json!({ "action": "reload", "result": "error", "error": failure.to_string() })
        }
    };
    context.events.record("admin_action", None, None, outcome);
    match result {
        Ok(()) => Ok(Json(json!({ "action": "reload", "result": "ok" })).into_response()),
        Err(failure) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &failure.to_string(),
        )),
    }
}
