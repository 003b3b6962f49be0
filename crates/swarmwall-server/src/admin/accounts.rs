//! Account provisioning endpoints (bearer token, audited as `admin_action`):
//!
//! - `POST /api/v1/accounts` `{"name", "password"?}` → 201 (password omitted: generated and
//!   returned once as `password`);
//! - `GET /api/v1/accounts/{name}` → 200 without secrets; `PATCH` with `disabled`, `password`,
//!   `allow_countries`, `deny_countries`, `policy` (`{"bittorrent": ..., "forms": {...}}`, or
//!   `null` to clear) → 200; `DELETE` → 204;
//! - `POST /api/v1/accounts/{name}/totp` `{"replace"?}` → 200 with `otpauth_uri` (once);
//!   `DELETE /api/v1/accounts/{name}/totp` → 204;
//! - `POST /api/v1/accounts/import[?replace=true]`: JSON lines or CSV (`Content-Type:
//!   text/csv`, header `name,password,password_hash,disabled,allow_countries,deny_countries`,
//!   optional `policy` (the JSON object); country lists separated by spaces or `;`) → 200 with
//!   counts; a bad record → 422 naming its line and field, nothing imported.
//!
//! Unknown name → 404, taken name → 409, bad body → 400/422 naming the field, RADIUS backend
//! → 409, a failing store → 503.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::AdminContext;
use super::handlers::{ApiError, error};
use crate::auth::{Account, AccountDirectory, AccountPatch, DirectoryError, NewAccount};
use crate::config::AccountPolicy;
use crate::metrics::AdminActionLabels;

type ApiResult = Result<Response, ApiError>;

/// Most records one import takes.
const MAX_IMPORT_RECORDS: usize = 1_000_000;
/// Largest import body (bytes).
pub(crate) const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// Body of `POST /api/v1/accounts` (also one JSON line of an import).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    allow_countries: Vec<String>,
    #[serde(default)]
    deny_countries: Vec<String>,
    /// Checked by [`AccountPolicy::from_json`] so errors name `policy.forms.xyz`.
    #[serde(default)]
    policy: Option<Value>,
}

impl TryFrom<CreateBody> for NewAccount {
    type Error = DirectoryError;

    fn try_from(body: CreateBody) -> Result<Self, DirectoryError> {
        Ok(Self {
            policy: policy_from(body.policy)?.flatten(),
            name: body.name,
            password: body.password.map(Zeroizing::new),
            password_hash: body.password_hash,
            disabled: body.disabled,
            allow_countries: body.allow_countries,
            deny_countries: body.deny_countries,
        })
    }
}

/// `None` when absent, `Some(None)` for `null` (clear), else the checked override.
fn policy_from(value: Option<Value>) -> Result<Option<Option<AccountPolicy>>, DirectoryError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(value) => Ok(Some(Some(AccountPolicy::from_json(&value)?))),
    }
}

/// Keep an explicit `null` as `Some(Value::Null)` (an absent key stays `None`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Body of `PATCH /api/v1/accounts/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    allow_countries: Option<Vec<String>>,
    #[serde(default)]
    deny_countries: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    policy: Option<Value>,
}

/// Body of `POST /api/v1/accounts/{name}/totp`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct TotpBody {
    #[serde(default)]
    replace: bool,
}

/// Query of the import.
#[derive(Deserialize)]
pub(crate) struct ImportQuery {
    replace: Option<bool>,
}

fn directory(context: &AdminContext) -> Result<&AccountDirectory, ApiError> {
    context.directory.as_ref().ok_or_else(|| {
        error(
            StatusCode::CONFLICT,
            "account provisioning is not available on this node",
        )
    })
}

fn directory_error(failure: DirectoryError) -> ApiError {
    let status = match &failure {
        DirectoryError::NotFound(_) => StatusCode::NOT_FOUND,
        DirectoryError::Exists(_) | DirectoryError::Unsupported(_) | DirectoryError::Contended => {
            StatusCode::CONFLICT
        }
        DirectoryError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DirectoryError::Backend(_) => {
            tracing::warn!(%failure, "account provisioning: backend failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    error(status, &failure.to_string())
}

fn count(context: &AdminContext, action: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    context
        .metrics
        .admin_actions
        .get_or_create(&AdminActionLabels { action, result })
        .inc();
}

fn name_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) =
        path.map_err(|rejection| error(StatusCode::BAD_REQUEST, &rejection.body_text()))?;
    crate::auth::check_name(&name)
        .map_err(|message| error(StatusCode::BAD_REQUEST, &format!("`name`: {message}")))?;
    Ok(name)
}

fn body_error(rejection: &JsonRejection) -> ApiError {
    error(rejection.status(), &rejection.body_text())
}

/// The public view of an account: never the hash or the TOTP secret.
pub(crate) fn account_json(account: &Account) -> Value {
    json!({
        "name": account.name,
        "disabled": account.disabled,
        "totp_enrolled": account.totp_secret.is_some(),
        "allow_countries": account.allow_countries,
        "deny_countries": account.deny_countries,
        "policy": account.policy,
    })
}

/// `POST /api/v1/accounts`.
pub(crate) async fn create(
    State(context): State<Arc<AdminContext>>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> ApiResult {
    let directory = directory(&context)?;
    let Json(body) = body.map_err(|rejection| body_error(&rejection))?;
    let name = body.name.clone();
    let result = match NewAccount::try_from(body) {
        Ok(new) => directory.create(new).await,
        Err(failure) => Err(failure),
    };
    count(&context, "account_create", result.is_ok());
    let generated = result.map_err(directory_error)?;
    let mut answer = directory
        .get(&name)
        .map_or_else(|| json!({ "name": name }), |account| account_json(&account));
    if let Some(password) = generated
        && let Some(object) = answer.as_object_mut()
    {
        object.insert("password".to_owned(), json!(password.as_str()));
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /api/v1/accounts/{name}`: the account and its enforcement state.
pub(crate) async fn get(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = name_from(path)?;
    let account = match &context.directory {
        Some(directory) => directory.get(&name),
        None => None,
    }
    .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such account"))?;
    let mut answer = account_json(&account);
    let now = crate::store::unix_now_ms();
    if let Ok(state) = context.control.state(&name, now).await
        && let Some(object) = answer.as_object_mut()
    {
        object.insert("strikes".to_owned(), json!(state.strikes));
        object.insert(
            "suspended_until_ms".to_owned(),
            json!(state.suspended_until_ms),
        );
        object.insert("locked_until_ms".to_owned(), json!(state.locked_until_ms));
    }
    Ok(Json(answer).into_response())
}

/// `PATCH /api/v1/accounts/{name}`.
pub(crate) async fn patch(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PatchBody>, JsonRejection>,
) -> ApiResult {
    let name = name_from(path)?;
    let directory = directory(&context)?;
    let Json(body) = body.map_err(|rejection| body_error(&rejection))?;
    let result = match policy_from(body.policy) {
        Ok(policy) => {
            let patch = AccountPatch {
                disabled: body.disabled,
                password: body.password.map(Zeroizing::new),
                allow_countries: body.allow_countries,
                deny_countries: body.deny_countries,
                policy,
            };
            directory.update(&name, patch).await
        }
        Err(failure) => Err(failure),
    };
    count(&context, "account_update", result.is_ok());
    let account = result.map_err(directory_error)?;
    Ok(Json(account_json(&account)).into_response())
}

/// `DELETE /api/v1/accounts/{name}`.
pub(crate) async fn delete(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = name_from(path)?;
    let directory = directory(&context)?;
    let result = directory.delete(&name).await;
    count(&context, "account_delete", result.is_ok());
    result.map_err(directory_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/accounts/{name}/totp`: enrol; the otpauth URI is returned once.
pub(crate) async fn enrol_totp(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult {
    let name = name_from(path)?;
    let directory = directory(&context)?;
    let body: TotpBody = if body.iter().all(u8::is_ascii_whitespace) {
        TotpBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("body: {e}")))?
    };
    let result = directory.enrol_totp(&name, body.replace).await;
    count(&context, "totp_enrol", result.is_ok());
    let uri = result.map_err(directory_error)?;
    Ok(Json(json!({ "name": name, "otpauth_uri": uri.as_str() })).into_response())
}

/// `DELETE /api/v1/accounts/{name}/totp`.
pub(crate) async fn remove_totp(
    State(context): State<Arc<AdminContext>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = name_from(path)?;
    let directory = directory(&context)?;
    let result = directory.remove_totp(&name).await;
    count(&context, "totp_remove", result.is_ok());
    result.map_err(directory_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/accounts/import[?replace=true]`.
pub(crate) async fn import(
    State(context): State<Arc<AdminContext>>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let Query(query) =
        query.map_err(|rejection| error(StatusCode::BAD_REQUEST, &rejection.body_text()))?;
    let directory = directory(&context)?.clone();
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/csv"));
    let records = if csv {
        parse_csv(&body)
    } else {
        parse_json_lines(&body)
    }
    .map_err(|message| error(StatusCode::UNPROCESSABLE_ENTITY, &message))?;
    // Hash every password off the async threads; the first bad record stops the import.
    let prepared = {
        let directory = directory.clone();
        tokio::task::spawn_blocking(move || {
            records
                .into_iter()
                .map(|(line, record)| {
                    directory
                        .prepare_import(record)
                        .map_err(|e| format!("line {line}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "import interrupted"))?
        .map_err(|message| error(StatusCode::UNPROCESSABLE_ENTITY, &message))?
    };
    let result = directory
        .import(prepared, query.replace.unwrap_or(false))
        .await;
    count(&context, "accounts_import", result.is_ok());
    let report = result.map_err(directory_error)?;
    Ok(Json(json!(report)).into_response())
}

/// JSON lines: one [`CreateBody`] per non-empty line.
fn parse_json_lines(body: &[u8]) -> Result<Vec<(usize, NewAccount)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if records.len() >= MAX_IMPORT_RECORDS {
            return Err(format!("more than {MAX_IMPORT_RECORDS} records"));
        }
        // serde's message names the field; it never quotes a value.
        let record: CreateBody =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", index + 1))?;
        let record =
            NewAccount::try_from(record).map_err(|e| format!("line {}: {e}", index + 1))?;
        records.push((index + 1, record));
    }
    Ok(records)
}

/// CSV with a header row naming the columns (`name` required).
fn parse_csv(body: &[u8]) -> Result<Vec<(usize, NewAccount)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| format!("line 1: {e}"))?
        .clone();
    let known = [
        "name",
        "password",
        "password_hash",
        "disabled",
        "allow_countries",
        "deny_countries",
        "policy",
    ];
    if let Some(unknown) = headers.iter().find(|h| !known.contains(h)) {
        return Err(format!("line 1: unknown column `{unknown}`"));
    }
    let column = |name: &str| headers.iter().position(|h| h == name);
    let name_column = column("name").ok_or("line 1: no `name` column")?;
    let mut records = Vec::new();
    for (index, row) in reader.records().enumerate() {
        let line = index + 2;
        let row = row.map_err(|e| format!("line {line}: {e}"))?;
        if records.len() >= MAX_IMPORT_RECORDS {
            return Err(format!("more than {MAX_IMPORT_RECORDS} records"));
        }
        let field = |name: &str| {
            column(name)
                .and_then(|i| row.get(i))
                .filter(|value| !value.is_empty())
        };
        let list = |name: &str| -> Vec<String> {
            field(name)
                .map(|v| {
                    v.split([' ', ';'])
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let disabled = match field("disabled") {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(_) => return Err(format!("line {line}: `disabled`: true or false")),
        };
        let policy = match field("policy") {
            None => None,
            Some(text) => {
                let value: Value = serde_json::from_str(text)
                    .map_err(|_| format!("line {line}: `policy`: not a JSON object"))?;
                policy_from(Some(value))
                    .map_err(|e| format!("line {line}: {e}"))?
                    .flatten()
            }
        };
        records.push((
            line,
            NewAccount {
                name: row.get(name_column).unwrap_or_default().to_owned(),
                password: field("password").map(|p| Zeroizing::new(p.to_owned())),
                password_hash: field("password_hash").map(str::to_owned),
                disabled,
                allow_countries: list("allow_countries"),
                deny_countries: list("deny_countries"),
                policy,
            },
        ));
    }
    Ok(records)
}
