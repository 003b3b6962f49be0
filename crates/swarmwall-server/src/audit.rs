//! Hash-chained, append-only JSON-lines security event log and its verifier.
//!
//! Each line is one JSON object:
//!
//! ```json
//! {"account":"alice","client":"3f9a1c0e5d2b7a44","details":{"reason":"bad_credentials"},
//!  "kind":"auth_failure","prev":"<sha256 hex of the previous record>","seq":7,
//!  "ts_ms":1790000000000,"hash":"<sha256 hex of this record without its hash field>"}
//! ```
//!
//! `hash` is SHA-256 over the exact bytes of the line with the `,"hash":"…"` member removed;
//! `prev` is the previous record's `hash` (64 zeros for the first record) and `seq` counts
//! from one. [`verify`] recomputes the chain: an edited record fails its own hash, a removed or
//! reordered one breaks `prev`/`seq` at the next line. Records appended after a restart
//! continue the chain of the existing file. Client addresses are written as keyed hashes
//! ([`crate::auth::PseudonymKey`]) unless pseudonymisation is turned off.
//!
//! Limits: the chain proves the order and integrity of what is in the file, not that nothing
//! was cut off its end; ship the log (or its last hash) off the host to cover that.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::auth::PseudonymKey;

/// `prev` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Default size of the in-memory ring of recent events.
pub const DEFAULT_RECENT: usize = 1_000;

/// The member every line ends with: `,"hash":"` + 64 hex + `"}`.
const HASH_PREFIX: &str = ",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + 2;

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
}

/// Result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record (the value to keep off the host).
    pub last_hash: String,
}

/// Handle to the security event log. Cheap to clone; recording never blocks the caller on
/// disk I/O for long and never fails the caller (failures are counted and logged).
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
                    .field("pseudonymised", &inner.key.is_some())
                    .finish_non_exhaustive()
            }
        }
    }
}

struct Inner {
    key: Option<PseudonymKey>,
    state: Mutex<State>,
}

struct State {
    file: Option<std::fs::File>,
    path: Option<PathBuf>,
    seq: u64,
    prev: String,
    ring: VecDeque<serde_json::Value>,
    capacity: usize,
    write_failures: u64,
}

impl AuditLog {
    /// A log that records nothing (tests, or `audit_log = ""`).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A log kept in memory only (the ring for the admin API), hashing client addresses with
    /// `pseudonymise_key` when given.
    pub fn memory(pseudonymise_key: Option<PseudonymKey>, recent: usize) -> Self {
        Self::with_state(
            pseudonymise_key,
            None,
            None,
            0,
            GENESIS_HASH.to_owned(),
            recent,
        )
    }

    /// Open (or create, mode 0600) the log at `path` for appending, continuing the chain of
    /// the records already in it. With `pseudonymise_key`, client addresses are written as
    /// keyed hashes; with `None`, as plain addresses.
    pub fn open(path: &Path, pseudonymise_key: Option<PseudonymKey>) -> Result<Self, AuditError> {
        Self::open_with(path, pseudonymise_key, DEFAULT_RECENT)
    }

    /// [`AuditLog::open`] with the size of the in-memory ring of recent events.
    pub fn open_with(
        path: &Path,
        pseudonymise_key: Option<PseudonymKey>,
        recent: usize,
    ) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let (seq, prev) = match std::fs::File::open(path) {
            Ok(file) => chain_tail(std::io::BufReader::new(file)).map_err(io)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                (0, GENESIS_HASH.to_owned())
            }
            Err(error) => return Err(io(error)),
        };
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?
        };
        Ok(Self::with_state(
            pseudonymise_key,
            Some(file),
            Some(path.to_owned()),
            seq,
            prev,
            recent,
        ))
    }

    fn with_state(
        key: Option<PseudonymKey>,
        file: Option<std::fs::File>,
        path: Option<PathBuf>,
        seq: u64,
        prev: String,
        capacity: usize,
    ) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                key,
                state: Mutex::new(State {
                    file,
                    path,
                    seq,
                    prev,
                    ring: VecDeque::with_capacity(capacity.min(DEFAULT_RECENT)),
                    capacity,
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
        let Some(inner) = &self.inner else { return };
        let client = client.map(|address| match &inner.key {
            Some(key) => key.hash_address(address),
            None => address.to_string(),
        });
        let mut state = inner.lock();
        let seq = state.seq + 1;
        let body = serde_json::json!({
            "seq": seq,
            "ts_ms": now_ms,
            "kind": kind,
            "account": account,
            "client": client,
            "details": details,
            "prev": state.prev,
        });
        let body_text = body.to_string();
        let hash = hex::encode(Sha256::digest(body_text.as_bytes()));
        let Some(without_brace) = body_text.strip_suffix('}') else {
            return;
        };
        let line = format!("{without_brace}{HASH_PREFIX}{hash}\"}}\n");
        if let Some(file) = state.file.as_mut()
            && let Err(error) = file.write_all(line.as_bytes())
        {
            state.write_failures += 1;
            tracing::warn!(%error, kind, "cannot append to the security event log");
            return;
        }
        state.seq = seq;
        state.prev.clone_from(&hash);
        if state.capacity > 0 {
            if state.ring.len() >= state.capacity {
                state.ring.pop_front();
            }
            let mut record = body;
            if let Some(object) = record.as_object_mut() {
                object.insert("hash".to_owned(), serde_json::Value::String(hash));
            }
            state.ring.push_back(record);
        }
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

    /// Appends that failed since start (also logged).
    pub fn write_failures(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.lock().write_failures)
    }

    /// Flush the file to disk (shutdown).
    pub fn sync(&self) {
        if let Some(inner) = &self.inner
            && let Some(file) = inner.lock().file.as_mut()
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

/// Check the whole chain of the log at `path`. `Ok` with the record count when intact;
/// [`AuditError::Broken`] naming the first bad line otherwise.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    verify_reader(std::io::BufReader::new(file)).map_err(|error| match error {
        ChainError::Io(source) => AuditError::Io {
            path: path.to_owned(),
            source,
        },
        ChainError::Broken { line, reason } => AuditError::Broken {
            path: path.to_owned(),
            line,
            reason,
        },
    })
}

enum ChainError {
    Io(std::io::Error),
    Broken { line: usize, reason: String },
}

fn verify_reader(reader: impl BufRead) -> Result<VerifyReport, ChainError> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut seq = 0u64;
    for (index, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(ChainError::Io)?;
        let number = index + 1;
        let broken = |reason: String| ChainError::Broken {
            line: number,
            reason,
        };
        let record = parse_record(&line).map_err(|reason| broken(reason.to_owned()))?;
        if record.seq != seq + 1 {
            return Err(broken(format!(
                "sequence number {} where {} was expected (a record was removed or moved)",
                record.seq,
                seq + 1
            )));
        }
        if record.prev != prev {
            return Err(broken(
                "`prev` does not match the previous record's hash (a record before it was \
                 removed, edited or moved)"
                    .to_owned(),
            ));
        }
        seq = record.seq;
        prev = record.hash;
    }
    Ok(VerifyReport {
        records: seq,
        last_hash: prev,
    })
}

struct Record {
    seq: u64,
    prev: String,
    hash: String,
}

/// Split one line into its body and hash, check the hash, read `seq` and `prev`.
fn parse_record(line: &[u8]) -> Result<Record, &'static str> {
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
    if hex::encode(Sha256::digest(body.as_bytes())) != hash {
        return Err("the record's hash does not match its content (the record was edited)");
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
    Ok(Record {
        seq,
        prev,
        hash: hash.to_owned(),
    })
}

/// `seq` and `hash` of the last readable record, to continue the chain after a restart.
fn chain_tail(reader: impl BufRead) -> std::io::Result<(u64, String)> {
    let mut tail = (0, GENESIS_HASH.to_owned());
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match parse_record(&line) {
            Ok(record) => tail = (record.seq, record.hash),
            Err(_) => {
                // Keep the chain going from the last good record; `audit verify` will point
                // at the bad line.
                tracing::warn!("the security event log holds an unreadable record");
            }
        }
    }
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn client() -> IpAddr {
        "198.51.100.23".parse().unwrap()
    }

    fn write_log(path: &Path, records: u64) {
        let log = AuditLog::open(path, Some(PseudonymKey::from_bytes([1; 32]))).unwrap();
        for n in 0..records {
            log.record_at(
                "auth_failure",
                Some("alice"),
                Some(client()),
                json!({"reason": "bad_credentials", "n": n}),
                1_000 + n,
            );
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    fn broken_line(path: &Path) -> usize {
        match verify(path) {
            Err(AuditError::Broken { line, .. }) => line,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn intact_log_verifies_and_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 3);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_log(&path, 2);
        let report = verify(&path).unwrap();
        assert_eq!(report.records, 5);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("198.51.100.23"), "{text}");
        let key = PseudonymKey::from_bytes([1; 32]);
        assert!(text.contains(&key.hash_address(client())));
        assert!(verify(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn empty_log_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        assert_eq!(verify(&path).unwrap().records, 0);
    }

    #[test]
    fn an_edited_record_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 5);
        let mut all = lines(&path);
        all[2] = all[2].replace("alice", "alicf");
        rewrite(&path, &all);
        assert_eq!(broken_line(&path), 3);
    }

    #[test]
    fn an_edited_record_with_a_recomputed_hash_breaks_the_next_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 5);
        let mut all = lines(&path);
        let edited = all[1].replace("alice", "mallory");
        let body = format!("{}}}", &edited[..edited.len() - HASH_SUFFIX_LEN]);
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        all[1] = format!("{}{HASH_PREFIX}{hash}\"}}", &body[..body.len() - 1]);
        rewrite(&path, &all);
        assert_eq!(broken_line(&path), 3);
    }

    #[test]
    fn a_removed_record_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 5);
        let mut all = lines(&path);
        all.remove(1);
        rewrite(&path, &all);
        assert_eq!(broken_line(&path), 2);
        // Removing the first record is found at line 1.
        let mut all = lines(&path);
        all.remove(0);
        rewrite(&path, &all);
        assert_eq!(broken_line(&path), 1);
    }

    #[test]
    fn reordered_records_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 5);
        let mut all = lines(&path);
        all.swap(2, 3);
        rewrite(&path, &all);
        assert_eq!(broken_line(&path), 3);
    }

    #[test]
    fn garbage_is_found_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 2);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"not\": \"a record\"}\n");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(broken_line(&path), 3);
        std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        assert_eq!(broken_line(&path), 1);
    }

    #[test]
    fn concurrent_writers_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, Some(PseudonymKey::random())).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        log.record("lockout", None, Some(client()), json!({ "t": t, "n": n }));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(verify(&path).unwrap().records, 400);
        assert_eq!(log.write_failures(), 0);
    }

    #[test]
    fn recent_ring_is_bounded_and_ordered() {
        let log = AuditLog::memory(None, 3);
        for n in 0..5u64 {
            log.record_at("lockout", None, Some(client()), json!({ "n": n }), n);
        }
        let recent = log.recent(10);
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[2]["details"]["n"], 4);
        assert_eq!(recent[0]["seq"], 3);
        // Without a key the address is written as is.
        assert_eq!(recent[0]["client"], "198.51.100.23");
        assert_eq!(log.recent(1).len(), 1);
        assert!(AuditLog::disabled().recent(10).is_empty());
    }
}
