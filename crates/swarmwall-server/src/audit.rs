//! Hash-chained, append-only JSON-lines security event log and its verifier.
//!
//! STUB: the API is fixed; the account-security work fills it in (file writer, hash chain,
//! keyed pseudonymisation of client addresses, `verify`).

use std::net::IpAddr;

/// Handle to the security event log. Cheap to clone; recording never blocks the caller on
/// disk I/O for long and never fails the caller (failures are counted and logged).
#[derive(Debug, Clone, Default)]
pub struct AuditLog {}

impl AuditLog {
    /// A log that records nothing (tests, or `audit_log = ""`).
    pub fn disabled() -> Self {
        Self {}
    }

    /// Record one security event: `kind` is a stable snake_case name (`auth_failure`,
    /// `lockout`, `geo_denied`, `impossible_travel`, `suspension`, `admin_action`, ...);
    /// `client` is pseudonymised before it is written; `details` must hold no secret.
    pub fn record(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
    ) {
        let _ = (kind, account, client, details);
    }

    /// The most recent `limit` events, newest last, as written (for the admin API).
    pub fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        let _ = limit;
        Vec::new()
    }
}
