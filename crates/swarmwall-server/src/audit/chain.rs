//! The record format: one JSON object per line ending with its keyed hash, and the key.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::pseudonym::{PseudonymKey, hmac_sha256};

/// `prev` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Kind of the record that opens a file after rotation (it links to the previous file).
pub const ROTATION_KIND: &str = "log_rotated";

/// The member every line ends with: `,"hash":"` + 64 hex + `"}`.
pub(super) const HASH_PREFIX: &str = ",\"hash\":\"";
pub(super) const HASH_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + 2;

/// Purpose label of the chain key derived from the node secret.
const KEY_PURPOSE: &str = "audit-chain-v2";

/// The key of the chain: HMAC-SHA256 keyed with a subkey of the node secret file, so nobody
/// without that file can recompute a record's hash. Debug output is redacted; wiped on drop.
#[derive(Clone)]
pub struct AuditKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// The chain key of the node whose secret key file holds `secret`.
    pub fn from_secret(secret: &PseudonymKey) -> Self {
        Self {
            key: Zeroizing::new(secret.derive(KEY_PURPOSE)),
        }
    }

    /// A random key (in-memory logs that are never verified from a file).
    pub fn random() -> Self {
        Self::from_secret(&PseudonymKey::random())
    }

    /// Hex HMAC of a record body (the line without its `hash` member; always starts with `{`).
    pub(super) fn record_hash(&self, body: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.key[..], &[body]))
    }

    /// Hex HMAC of a checkpoint's canonical text (domain-separated from record bodies).
    pub(super) fn checkpoint_mac(&self, canonical: &str) -> String {
        hex::encode(hmac_sha256(
            &self.key[..],
            &[b"checkpoint:", canonical.as_bytes()],
        ))
    }
}

/// How a record's hash is computed when verifying.
#[derive(Debug, Clone, Copy)]
pub enum ChainHash<'a> {
    /// HMAC-SHA256 with the node's chain key (every log written since the keyed format).
    Keyed(&'a AuditKey),
    /// Plain SHA-256 of the body: the first, unkeyed format (anyone could recompute it).
    LegacySha256,
}

impl ChainHash<'_> {
    fn hash(self, body: &[u8]) -> String {
        match self {
            Self::Keyed(key) => key.record_hash(body),
            Self::LegacySha256 => hex::encode(Sha256::digest(body)),
        }
    }
}

/// Constant-time comparison of two hex strings.
pub(super) fn same_hex(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// What the chain needs from one line.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) seq: u64,
    pub(super) prev: String,
    pub(super) hash: String,
    pub(super) kind: String,
}

/// A finished line (with `\n`) and its hash, for `body` (a JSON object).
pub(super) fn seal(key: &AuditKey, body: &serde_json::Value) -> Option<(String, String)> {
    let body_text = body.to_string();
    let hash = key.record_hash(body_text.as_bytes());
    let without_brace = body_text.strip_suffix('}')?;
    Some((format!("{without_brace}{HASH_PREFIX}{hash}\"}}\n"), hash))
}

/// The body of a record (before sealing).
pub(super) fn body(
    seq: u64,
    ts_ms: u64,
    kind: &str,
    account: Option<&str>,
    client: Option<&str>,
    details: &serde_json::Value,
    prev: &str,
) -> serde_json::Value {
    serde_json::json!({
        "seq": seq,
        "ts_ms": ts_ms,
        "kind": kind,
        "account": account,
        "client": client,
        "details": details,
        "prev": prev,
    })
}

/// Split one line into its body and hash, check the hash, read `seq`, `prev` and `kind`.
pub(super) fn parse_record(line: &[u8], chain: ChainHash<'_>) -> Result<Record, &'static str> {
    let line = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
    if line.len() < HASH_SUFFIX_LEN {
        return Err("too short to be a record");
    }
    let split = line.len() - HASH_SUFFIX_LEN;
    let (body_start, suffix) = (
        line.get(..split).ok_or("not a record")?,
        line.get(split..).ok_or("not a record")?,
    );
    let hash = suffix
        .strip_prefix(HASH_PREFIX)
        .and_then(|rest| rest.strip_suffix("\"}"))
        .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("the record does not end with its hash")?;
    let body = format!("{body_start}}}");
    if !same_hex(&chain.hash(body.as_bytes()), hash) {
        return Err(
            "the record's hash does not match its content and the key (the record was edited, \
             forged, or written with another key)",
        );
    }
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|_| "not JSON")?;
    let seq = value
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no `seq`")?;
    let prev = value
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .ok_or("no `prev`")?
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(Record {
        seq,
        prev,
        hash: hash.to_owned(),
        kind,
    })
}

/// `seq` and `hash` of a line without checking its hash (for `audit head`, which needs no key).
pub(super) fn peek_record(line: &[u8]) -> Option<(u64, String)> {
    let line = std::str::from_utf8(line).ok()?;
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let seq = value.get("seq")?.as_u64()?;
    let hash = value.get("hash")?.as_str()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (seq, hash.to_owned()))
}
