//! Signed checkpoints of the log's head (node, seq, hash, time, MAC), sent where an attacker
//! on the host cannot rewrite them: the system log (syslog socket, read by journald or
//! rsyslog and usually forwarded) and, with Redis, the fleet store (the latest checkpoint per
//! node). `swarmwall audit verify --checkpoint` / `--store` compare a log with one: cutting
//! the newest records or emptying the file is then found.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::AuditLog;
use super::chain::{AuditKey, same_hex};
use crate::store::Store;

/// A signed statement "record `seq` of `node`'s log has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Node name (`[security] audit_node_name`, default the host name).
    pub node: String,
    /// Sequence number of the newest record.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// When the checkpoint was made (Unix ms).
    pub ts_ms: u64,
    /// HMAC over the above with the chain key (hex).
    pub mac: String,
}

impl Checkpoint {
    /// A checkpoint of `(seq, hash)` signed with `key`.
    pub fn sign(key: &AuditKey, node: &str, seq: u64, hash: &str, ts_ms: u64) -> Self {
        let mut checkpoint = Self {
            node: node.to_owned(),
            seq,
            hash: hash.to_owned(),
            ts_ms,
            mac: String::new(),
        };
        checkpoint.mac = key.checkpoint_mac(&checkpoint.canonical());
        checkpoint
    }

    fn canonical(&self) -> String {
        format!("{}|{}|{}|{}", self.node, self.seq, self.hash, self.ts_ms)
    }

    /// True when the MAC was made with `key` (the checkpoint is genuine).
    pub fn verify(&self, key: &AuditKey) -> bool {
        same_hex(&key.checkpoint_mac(&self.canonical()), &self.mac)
    }

    /// `swarmwall audit checkpoint node=N seq=S hash=H ts_ms=T mac=M` (the system-log line).
    pub fn to_line(&self) -> String {
        format!(
            "swarmwall audit checkpoint node={} seq={} hash={} ts_ms={} mac={}",
            self.node, self.seq, self.hash, self.ts_ms, self.mac
        )
    }

    /// The JSON form kept in the fleet store.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "node": self.node, "seq": self.seq, "hash": self.hash,
            "ts_ms": self.ts_ms, "mac": self.mac,
        })
        .to_string()
    }

    /// Parse the JSON form or a line holding the `key=value` form (a whole journal line may be
    /// pasted).
    pub fn parse(text: &str) -> Result<Self, CheckpointParseError> {
        let text = text.trim();
        let bad = |what: &str| CheckpointParseError {
            missing: what.to_owned(),
        };
        if text.starts_with('{') {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|_| bad("invalid JSON"))?;
            let field = |name: &str| {
                value
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| bad(name))
            };
            let number = |name: &str| {
                value
                    .get(name)
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| bad(name))
            };
            return Ok(Self {
                node: field("node")?,
                seq: number("seq")?,
                hash: field("hash")?,
                ts_ms: number("ts_ms")?,
                mac: field("mac")?,
            });
        }
        let field = |name: &str| {
            let start = text
                .find(&format!(" {name}="))
                .or_else(|| text.starts_with(&format!("{name}=")).then_some(0))
                .ok_or_else(|| bad(name))?;
            let rest = &text[start..];
            let rest = rest.trim_start().get(name.len() + 1..).unwrap_or_default();
            Ok::<_, CheckpointParseError>(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )
        };
        let number = |name: &str| field(name)?.parse::<u64>().map_err(|_| bad(name));
        Ok(Self {
            node: field("node")?,
            seq: number("seq")?,
            hash: field("hash")?,
            ts_ms: number("ts_ms")?,
            mac: field("mac")?,
        })
    }
}

/// Text that is not a checkpoint: `missing` names the field that is absent or malformed
/// (or `invalid JSON`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint ({missing})")]
pub struct CheckpointParseError {
    /// The field not found (or `invalid JSON`).
    pub missing: String,
}

/// When and where checkpoints go (`[security] audit_checkpoint_*`, `audit_syslog`).
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// Node name in every checkpoint and in the store key.
    pub node: String,
    /// A checkpoint after this many records (0: only by time).
    pub every_records: u64,
    /// And at this interval when records were added (also picks up CLI appends).
    pub interval: Duration,
    /// Syslog datagram socket (`/dev/log`); `None` turns the system-log copy off.
    pub syslog_socket: Option<PathBuf>,
}

impl CheckpointSettings {
    /// The settings of a `[security]` section (node name defaults to the host name).
    pub fn from_config(security: &crate::config::SecurityConfig) -> Self {
        Self {
            node: security.audit_node_name.clone().unwrap_or_else(host_name),
            every_records: security.audit_checkpoint_records,
            interval: security.audit_checkpoint_interval,
            syslog_socket: (!security.audit_syslog.as_os_str().is_empty())
                .then(|| security.audit_syslog.clone()),
        }
    }
}

/// The host name (`/proc/sys/kernel/hostname`), or `node` when unknown.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

/// Send `message` to the syslog socket at `socket` (facility authpriv, severity notice).
pub fn send_syslog(socket: &Path, message: &str) -> std::io::Result<()> {
    // <85> = authpriv (10) * 8 + notice (5); journald and rsyslog both accept this form.
    let datagram = format!("<85>swarmwall[{}]: {message}", std::process::id());
    let sender = std::os::unix::net::UnixDatagram::unbound()?;
    sender.send_to(datagram.as_bytes(), socket)?;
    Ok(())
}

/// Emit a checkpoint now: to the system log, to the store (when it is Redis) and as a log line.
pub async fn emit(checkpoint: &Checkpoint, settings: &CheckpointSettings, store: &Store) {
    tracing::info!(
        node = %checkpoint.node,
        seq = checkpoint.seq,
        hash = %checkpoint.hash,
        "security event log checkpoint"
    );
    if let Some(socket) = &settings.syslog_socket
        && let Err(error) = send_syslog(socket, &checkpoint.to_line())
    {
        tracing::debug!(%error, socket = %socket.display(), "checkpoint not sent to syslog");
    }
    if let Err(error) = store
        .put_audit_checkpoint(&checkpoint.node, &checkpoint.to_json())
        .await
    {
        tracing::warn!(%error, "checkpoint not written to the state store");
    }
}

/// Start the task that emits checkpoints of `log` (inside the tokio runtime): one at start,
/// then after every `every_records` records or each `interval` in which the head moved. At
/// start it also compares the log with the checkpoint the store holds for this node and
/// records an `audit_checkpoint_mismatch` event when the log no longer contains it.
pub fn spawn_checkpointer(
    log: AuditLog,
    settings: CheckpointSettings,
    store: Store,
) -> Option<tokio::task::JoinHandle<()>> {
    log.path()?;
    let mut receiver = log.subscribe_checkpoints()?;
    if let Some(socket) = &settings.syslog_socket
        && !socket.exists()
    {
        tracing::warn!(
            socket = %socket.display(),
            "no syslog socket: security event log checkpoints go to the state store (Redis) \
             and this log only; set [security] audit_syslog"
        );
    }
    Some(tokio::spawn(async move {
        check_against_store(&log, &settings, &store).await;
        let mut last_seq = None;
        let mut ticker = tokio::time::interval(settings.interval.max(Duration::from_secs(1)));
        loop {
            tokio::select! {
                changed = receiver.changed() => if changed.is_err() { return },
                _ = ticker.tick() => {}
            }
            let log = log.clone();
            let node = settings.node.clone();
            let Ok(Some(checkpoint)) =
                tokio::task::spawn_blocking(move || log.checkpoint(&node)).await
            else {
                continue;
            };
            if last_seq == Some(checkpoint.seq) {
                continue;
            }
            last_seq = Some(checkpoint.seq);
            emit(&checkpoint, &settings, &store).await;
        }
    }))
}

/// At start: does the log still hold the store's latest checkpoint for this node?
async fn check_against_store(log: &AuditLog, settings: &CheckpointSettings, store: &Store) {
    let Ok(Some(text)) = store.audit_checkpoint(&settings.node).await else {
        return;
    };
    let Some(path) = log.path() else { return };
    let problem = match Checkpoint::parse(&text) {
        Ok(checkpoint) if log.key().is_some_and(|key| checkpoint.verify(key)) => {
            let expected = super::Expected {
                seq: checkpoint.seq,
                hash: checkpoint.hash.clone(),
            };
            let Some(key) = log.key().cloned() else {
                return;
            };
            let result = tokio::task::spawn_blocking(move || {
                super::verify_files(
                    &with_rotated(&path),
                    super::ChainHash::Keyed(&key),
                    std::slice::from_ref(&expected),
                )
            })
            .await;
            match result {
                Ok(Ok(_))
                | Ok(Err(super::AuditError::Expectation {
                    before_start: true, ..
                }))
                | Err(_) => return,
                Ok(Err(error)) => serde_json::json!({
                    "reason": error.to_string(),
                    "checkpoint_seq": checkpoint.seq,
                    "checkpoint_hash": checkpoint.hash,
                }),
            }
        }
        Ok(_) => serde_json::json!({"reason": "the stored checkpoint's MAC does not verify"}),
        Err(reason) => serde_json::json!({ "reason": reason.to_string() }),
    };
    tracing::error!(
        %problem,
        "the security event log does not match the node's last checkpoint in the state store"
    );
    log.record("audit_checkpoint_mismatch", None, None, problem);
}

/// `FILE.N` … `FILE.1`, `FILE`: the rotated set of `path` that exists, oldest first.
pub fn with_rotated(path: &Path) -> Vec<PathBuf> {
    let rotated = (1..=100_000)
        .take_while(|&n| super::rotated_name(path, n).exists())
        .count();
    let mut files: Vec<PathBuf> = (1..=rotated)
        .rev()
        .map(|n| super::rotated_name(path, n))
        .collect();
    files.push(path.to_owned());
    files
}
