//! Keyed hash-chained, append-only JSON-lines security event log, its checkpoints and its
//! verifier.
//!
//! Each line is one JSON object:
//!
//! ```json
//! {"account":"alice","client":"3f9a1c0e5d2b7a44","details":{"reason":"bad_credentials"},
//!  "kind":"auth_failure","prev":"<hash of the previous record>","seq":7,
//!  "ts_ms":1790000000000,"hash":"<HMAC-SHA256 hex of this record without its hash field>"}
//! ```
//!
//! `hash` is HMAC-SHA256, keyed with a subkey of the node's secret key file ([`AuditKey`]),
//! over the exact bytes of the line with the `,"hash":"…"` member removed; `prev` is the
//! previous record's `hash` (64 zeros for the first record) and `seq` counts from one. Without
//! the key nobody can recompute the chain, so an edited, forged, removed or reordered record
//! is found by [`verify_files`]. Cutting the newest records is found against an expected
//! record: `swarmwall audit head` output kept off the host, or a signed [`Checkpoint`] that
//! the server sends to the system log and the fleet store every N records / T seconds.
//!
//! Every writer (the server and `swarmwall strikes`/`user` commands) appends under an
//! exclusive `flock` of the file and re-reads the newest record first, so they share one
//! chain. Past `audit_max_bytes` the file is rotated (`FILE.1`, `FILE.2`, ...) and the new file
//! starts with a `log_rotated` record linked to the old file's last one. Client addresses are
//! written as keyed hashes ([`crate::pseudonym::PseudonymKey`]) unless pseudonymisation is off.

mod chain;
mod checkpoint;
mod file;
mod verify;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use chain::{AuditKey, ChainHash, GENESIS_HASH, ROTATION_KIND};
pub use checkpoint::{
    Checkpoint, CheckpointParseError, CheckpointSettings, emit as emit_checkpoint, host_name,
    send_syslog, spawn_checkpointer, with_rotated,
};
pub use file::rotated_name;
pub use verify::{Expected, ExpectedParseError, VerifyReport, head, verify_files};

use crate::pseudonym::PseudonymKey;
use file::LogFile;

/// Default size of the in-memory ring of recent events.
pub const DEFAULT_RECENT: usize = 1_000;

/// Why the log could not be opened, or where its chain is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The chain is broken at this line (1-based).
    #[error("{path}:{line}: {reason}")]
    Broken {
        /// File.
        path: PathBuf,
        /// First bad line, 1-based.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The chain is intact but does not hold an expected record (cut, emptied, replaced).
    #[error("{path}: {reason}")]
    Expectation {
        /// Newest file checked.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
        /// The record lies before the first file given (rotated away): not a sign of
        /// tampering by itself.
        before_start: bool,
    },
}

/// How a file-backed log is written.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Write client addresses as keyed hashes.
    pub pseudonymise: bool,
    /// Size of the in-memory ring of recent events (admin API).
    pub recent: usize,
    /// Rotate when the file would grow past this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files kept (`FILE.1` … `FILE.N`; at least 1).
    pub keep_files: usize,
    /// Signal a checkpoint after this many records written by this process (0: only by time).
    pub checkpoint_every: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            pseudonymise: true,
            recent: DEFAULT_RECENT,
            max_bytes: 0,
            keep_files: 10,
            checkpoint_every: 0,
        }
    }
}

impl AuditOptions {
    /// The options `[security]` asks for.
    pub fn from_config(config: &crate::config::SecurityConfig) -> Self {
        Self {
            pseudonymise: config.pseudonymise_addresses,
            recent: config.audit_recent,
            max_bytes: config.audit_max_bytes,
            keep_files: config.audit_keep_files,
            checkpoint_every: config.audit_checkpoint_records,
        }
    }
}

/// Handle to the security event log. Cheap to clone; recording never fails the caller
/// (failures are counted and logged).
#[derive(Clone, Default)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("AuditLog(disabled)"),
            Some(inner) => {
                let state = inner.lock();
                f.debug_struct("AuditLog")
                    .field("path", &state.path)
                    .field("seq", &state.seq)
                    .field("pseudonymised", &inner.pseudonym.is_some())
                    .finish_non_exhaustive()
            }
        }
    }
}

struct Inner {
    pseudonym: Option<PseudonymKey>,
    key: AuditKey,
    checkpoint_every: u64,
    /// Newest `(seq, hash)` worth a checkpoint (watched by the checkpointer).
    checkpoints: tokio::sync::watch::Sender<(u64, String)>,
    state: Mutex<State>,
}

struct State {
    file: Option<LogFile>,
    path: Option<PathBuf>,
    seq: u64,
    prev: String,
    last_signalled: u64,
    ring: VecDeque<serde_json::Value>,
    capacity: usize,
    write_failures: u64,
}

impl AuditLog {
    /// A log that records nothing (tests, or `audit_log = ""` without an admin API).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A log kept in memory only (the ring for the admin API), hashing client addresses with
    /// `pseudonymise_key` when given.
    pub fn memory(pseudonymise_key: Option<PseudonymKey>, recent: usize) -> Self {
        Self::with_state(
            pseudonymise_key,
            AuditKey::random(),
            None,
            None,
            AuditOptions {
                recent,
                ..AuditOptions::default()
            },
        )
    }

    /// Open (or create, mode 0600) the log at `path` for appending, continuing the chain of
    /// the records already in it, keyed with the chain key of `secret` (the node's secret key
    /// file). A file with no record verifying under that key is moved aside.
    pub fn open(
        path: &Path,
        secret: &PseudonymKey,
        options: &AuditOptions,
    ) -> Result<Self, AuditError> {
        let key = AuditKey::from_secret(secret);
        let file =
            LogFile::open(path, &key, options.max_bytes, options.keep_files).map_err(|source| {
                AuditError::Io {
                    path: path.to_owned(),
                    source,
                }
            })?;
        let pseudonym = options.pseudonymise.then(|| secret.clone());
        Ok(Self::with_state(
            pseudonym,
            key,
            Some(file),
            Some(path.to_owned()),
            options.clone(),
        ))
    }

    fn with_state(
        pseudonym: Option<PseudonymKey>,
        key: AuditKey,
        file: Option<LogFile>,
        path: Option<PathBuf>,
        options: AuditOptions,
    ) -> Self {
        let (seq, prev) = file.as_ref().map_or_else(
            || (0, GENESIS_HASH.to_owned()),
            |file| (file.seq, file.prev.clone()),
        );
        let (checkpoints, _) = tokio::sync::watch::channel((seq, prev.clone()));
        Self {
            inner: Some(Arc::new(Inner {
                pseudonym,
                key,
                checkpoint_every: options.checkpoint_every,
                checkpoints,
                state: Mutex::new(State {
                    file,
                    path,
                    seq,
                    prev,
                    last_signalled: seq,
                    ring: VecDeque::with_capacity(options.recent.min(DEFAULT_RECENT)),
                    capacity: options.recent,
                    write_failures: 0,
                }),
            })),
        }
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
        self.record_at(kind, account, client, details, crate::store::unix_now_ms());
    }

    /// [`AuditLog::record`] with an explicit timestamp (Unix ms).
    pub fn record_at(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
        now_ms: u64,
    ) {
        if let Err(error) = self.try_record_at(kind, account, client, details, now_ms) {
            tracing::warn!(%error, kind, "cannot append to the security event log");
        }
    }

    /// [`AuditLog::record`] that reports a failed append (for CLI commands, which must not
    /// claim an action was audited when it was not).
    pub fn try_record(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
    ) -> std::io::Result<()> {
        self.try_record_at(kind, account, client, details, crate::store::unix_now_ms())
    }

    fn try_record_at(
        &self,
        kind: &'static str,
        account: Option<&str>,
        client: Option<IpAddr>,
        details: serde_json::Value,
        now_ms: u64,
    ) -> std::io::Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let client = client.map(|address| match &inner.pseudonym {
            Some(key) => key.hash_address(address),
            None => address.to_string(),
        });
        let mut state = inner.lock();
        let mut written = None;
        let build = |seq: u64, prev: &str| {
            let body = chain::body(
                seq,
                now_ms,
                kind,
                account,
                client.as_deref(),
                &details,
                prev,
            );
            let sealed = chain::seal(&inner.key, &body);
            if let Some((_, hash)) = &sealed {
                written = Some((body, hash.clone()));
            }
            sealed
        };
        let (seq, hash) = match state.file.as_mut() {
            Some(file) => match file.append(&inner.key, now_ms, build) {
                Ok(head) => head,
                Err(error) => {
                    state.write_failures += 1;
                    return Err(error);
                }
            },
            None => {
                let mut build = build;
                let seq = state.seq + 1;
                let (_, hash) = build(seq, &state.prev)
                    .ok_or_else(|| std::io::Error::other("record is not a JSON object"))?;
                (seq, hash)
            }
        };
        state.seq = seq;
        state.prev.clone_from(&hash);
        if state.capacity > 0
            && let Some((mut record, hash)) = written
        {
            if state.ring.len() >= state.capacity {
                state.ring.pop_front();
            }
            if let Some(object) = record.as_object_mut() {
                object.insert("hash".to_owned(), serde_json::Value::String(hash));
            }
            state.ring.push_back(record);
        }
        if inner.checkpoint_every > 0 && seq >= state.last_signalled + inner.checkpoint_every {
            state.last_signalled = seq;
            inner.checkpoints.send_replace((seq, hash));
        }
        Ok(())
    }

    /// The most recent `limit` events, newest last, as written (for the admin API).
    pub fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        let Some(inner) = &self.inner else {
            return Vec::new();
        };
        let state = inner.lock();
        let skip = state.ring.len().saturating_sub(limit);
        state.ring.iter().skip(skip).cloned().collect()
    }

    /// The log file, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner
            .as_ref()
            .and_then(|inner| inner.lock().path.clone())
    }

    /// The chain key (to verify checkpoints against this log).
    pub fn key(&self) -> Option<&AuditKey> {
        self.inner.as_ref().map(|inner| &inner.key)
    }

    /// Appends that failed since start (also logged).
    pub fn write_failures(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.lock().write_failures)
    }

    /// `(seq, hash)` of the newest record, re-read from the file under its lock (so records
    /// appended by other writers count).
    pub fn head(&self) -> Option<(u64, String)> {
        let inner = self.inner.as_ref()?;
        let mut state = inner.lock();
        let state = &mut *state;
        if let Some(file) = state.file.as_mut() {
            match file.head(&inner.key) {
                Ok((seq, hash)) => {
                    state.seq = seq;
                    state.prev = hash;
                }
                Err(error) => tracing::warn!(%error, "cannot read the security event log"),
            }
        }
        Some((state.seq, state.prev.clone()))
    }

    /// A signed checkpoint of the current head for `node` (`None` when disabled).
    pub fn checkpoint(&self, node: &str) -> Option<Checkpoint> {
        let (seq, hash) = self.head()?;
        let key = self.key()?;
        Some(Checkpoint::sign(
            key,
            node,
            seq,
            &hash,
            crate::store::unix_now_ms(),
        ))
    }

    /// Notified after every `checkpoint_every` records (see [`spawn_checkpointer`]).
    pub fn subscribe_checkpoints(&self) -> Option<tokio::sync::watch::Receiver<(u64, String)>> {
        self.inner
            .as_ref()
            .map(|inner| inner.checkpoints.subscribe())
    }

    /// Flush the file to disk (shutdown).
    pub fn sync(&self) {
        if let Some(inner) = &self.inner
            && let Some(file) = inner.lock().file.as_ref()
        {
            let _ = file.sync_data();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state happens after the line is written; a panic in between
        // cannot leave it half-updated in a way that matters, so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Check the whole chain of the single log at `path` with `key`: `Ok` with the record count
/// when intact, [`AuditError::Broken`] naming the first bad line otherwise.
pub fn verify(path: &Path, key: &AuditKey) -> Result<VerifyReport, AuditError> {
    verify_files(&[path.to_owned()], ChainHash::Keyed(key), &[])
}

/// Where the log of a node lives: `override_path` (`--audit-log`), else `[security]
/// audit_log` when set to something other than the default name, else `audit.jsonl` in the
/// data directory. `None` when turned off (an empty path).
pub fn resolve_path(
    configured: &Path,
    override_path: Option<&Path>,
    data_dir: &Path,
) -> Option<PathBuf> {
    let path = match override_path {
        Some(path) => path.to_owned(),
        None if configured == crate::config::SecurityConfig::default().audit_log => {
            data_dir.join("audit.jsonl")
        }
        None => configured.to_owned(),
    };
    (!path.as_os_str().is_empty()).then_some(path)
}

#[cfg(test)]
mod tests;
