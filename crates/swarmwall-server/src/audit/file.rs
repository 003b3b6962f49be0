//! Appending to the log file safely with several writers (the server and `swarmwall` CLI
//! commands): every append holds an exclusive `flock` on the file, re-reads the newest record
//! when someone else wrote since, and rotates by size with the chain carried across files.
//!
//! Rotation (under the lock): `FILE.(k)` → `FILE.(k+1)`, the current file gets a second name
//! `FILE.1` (hard link), a new file holding the `log_rotated` record (linked to the last
//! record of the old file) is created locked under a temporary name and renamed over `FILE`.
//! `FILE` therefore always exists; writers waiting on the old file's lock notice that `FILE`
//! is now another inode and reopen it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::chain::{self, AuditKey, ChainHash, GENESIS_HASH, ROTATION_KIND};

/// Attempts to lock the file that currently has the log's name before giving up.
const REOPEN_ATTEMPTS: usize = 16;

/// An open log file and the chain head it continues.
pub(super) struct LogFile {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    /// File length after our last read or write; another length means another writer.
    known_len: u64,
    pub(super) seq: u64,
    pub(super) prev: String,
    /// The file does not end with a newline (a cut-short write): the next record starts one.
    needs_newline: bool,
    max_bytes: u64,
    keep_files: usize,
}

/// The newest record of a file.
struct Tail {
    seq: u64,
    prev: String,
    /// The file does not end with a newline (a write was cut short).
    needs_newline: bool,
}

fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// `FILE.n`.
pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl LogFile {
    /// Open (or create, mode 0600) `path`, continuing its chain. A non-empty file in which no
    /// record verifies with `key` (the unkeyed format, or another node's key) is moved aside
    /// to `FILE.unverified-<unix ms>` and a new chain starts.
    pub(super) fn open(
        path: &Path,
        key: &AuditKey,
        max_bytes: u64,
        keep_files: usize,
    ) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let opened = identity(&file.metadata()?);
        let mut log = Self {
            path: path.to_owned(),
            file,
            identity: opened,
            known_len: u64::MAX,
            seq: 0,
            prev: GENESIS_HASH.to_owned(),
            needs_newline: false,
            max_bytes,
            keep_files: keep_files.max(1),
        };
        log.locked(|log| {
            let len = log.file.metadata()?.len();
            if len > 0 && read_tail(&log.file, len, key)?.is_none() {
                let aside = PathBuf::from(format!(
                    "{}.unverified-{}",
                    log.path.display(),
                    crate::store::unix_now_ms()
                ));
                std::fs::rename(&log.path, &aside)?;
                tracing::warn!(
                    file = %log.path.display(),
                    moved_to = %aside.display(),
                    "no record of the security event log verifies with this node's key (an \
                     older unkeyed log, or another key): moved aside, starting a new chain"
                );
                let file = open_append(&log.path)?;
                file.lock()?;
                log.identity = identity(&file.metadata()?);
                let _ = std::mem::replace(&mut log.file, file).unlock();
            }
            log.sync_tail(key)
        })?;
        Ok(log)
    }

    /// Run `body` holding the exclusive lock of the file that has the log's name.
    fn locked<T>(
        &mut self,
        body: impl FnOnce(&mut Self) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        self.lock_current()?;
        let result = body(self);
        let _ = self.file.unlock();
        result
    }

    /// Lock our file; when the name now points at another file (rotated or replaced by
    /// another writer), reopen and try again.
    fn lock_current(&mut self) -> std::io::Result<()> {
        for _ in 0..REOPEN_ATTEMPTS {
            self.file.lock()?;
            match std::fs::metadata(&self.path) {
                Ok(metadata) if identity(&metadata) == self.identity => return Ok(()),
                Ok(_) | Err(_) => {
                    let _ = self.file.unlock();
                    let file = open_append(&self.path)?;
                    self.identity = identity(&file.metadata()?);
                    self.file = file;
                    self.known_len = u64::MAX;
                }
            }
        }
        Err(std::io::Error::other(
            "the security event log keeps being replaced; cannot lock it",
        ))
    }

    /// Bring `seq`/`prev` up to the file's newest record (another writer may have appended).
    fn sync_tail(&mut self, key: &AuditKey) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len == self.known_len {
            return Ok(());
        }
        if self.known_len != u64::MAX && len < self.known_len {
            tracing::error!(
                file = %self.path.display(),
                was = self.known_len,
                now = len,
                "the security event log shrank while open: records were removed"
            );
        }
        match read_tail(&self.file, len, key)? {
            Some(tail) => {
                self.seq = tail.seq;
                self.prev = tail.prev;
                self.known_len = len;
                self.needs_newline = tail.needs_newline;
                Ok(())
            }
            // Nothing verifies (replaced with garbage while running): keep our own head; the
            // verifier will point at the bad lines.
            None => {
                self.known_len = len;
                self.needs_newline = len > 0;
                Ok(())
            }
        }
    }

    /// Append one record made by `build(seq, prev)` → `(line, hash)`, rotating first when the
    /// file would grow past `max_bytes`. Returns the record's `(seq, hash)`.
    pub(super) fn append(
        &mut self,
        key: &AuditKey,
        now_ms: u64,
        mut build: impl FnMut(u64, &str) -> Option<(String, String)>,
    ) -> std::io::Result<(u64, String)> {
        self.locked(|log| {
            log.sync_tail(key)?;
            let seq = log.seq + 1;
            let (mut line, mut hash) = build(seq, &log.prev)
                .ok_or_else(|| std::io::Error::other("record is not a JSON object"))?;
            let len = log.file.metadata()?.len();
            if log.max_bytes > 0 && len > 0 && len + line.len() as u64 > log.max_bytes {
                log.rotate(key, now_ms)?;
                (line, hash) = build(log.seq + 1, &log.prev)
                    .ok_or_else(|| std::io::Error::other("record is not a JSON object"))?;
            } else if log.needs_newline {
                line.insert(0, '\n');
            }
            log.file.write_all(line.as_bytes())?;
            log.needs_newline = false;
            log.seq += 1;
            log.prev.clone_from(&hash);
            log.known_len = log.file.metadata()?.len();
            Ok((log.seq, hash))
        })
    }

    /// The newest record's `(seq, hash)`, re-read under the lock.
    pub(super) fn head(&mut self, key: &AuditKey) -> std::io::Result<(u64, String)> {
        self.locked(|log| {
            log.sync_tail(key)?;
            Ok((log.seq, log.prev.clone()))
        })
    }

    /// Flush to disk.
    pub(super) fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Called holding the lock of the current file; returns holding the lock of the new one.
    fn rotate(&mut self, key: &AuditKey, now_ms: u64) -> std::io::Result<()> {
        let temporary = PathBuf::from(format!("{}.rotating", self.path.display()));
        let _ = std::fs::remove_file(&temporary);
        let new_file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .append(true)
                .read(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?
        };
        new_file.lock()?;
        // Keep the owner (a CLI command run as root rotating the service's log).
        if let Ok(old) = self.file.metadata() {
            let _ = std::os::unix::fs::fchown(&new_file, Some(old.uid()), Some(old.gid()));
        }
        let first_rotated = rotated_name(&self.path, 1);
        let details = serde_json::json!({
            "previous_file": first_rotated
                .file_name()
                .map(|name| name.to_string_lossy().into_owned()),
            "previous_last_seq": self.seq,
        });
        let body = chain::body(
            self.seq + 1,
            now_ms,
            ROTATION_KIND,
            None,
            None,
            &details,
            &self.prev,
        );
        let (line, hash) = chain::seal(key, &body)
            .ok_or_else(|| std::io::Error::other("record is not a JSON object"))?;
        (&new_file).write_all(line.as_bytes())?;
        new_file.sync_data()?;
        // Shift FILE.(k) → FILE.(k+1); the oldest beyond `keep_files` is overwritten.
        for n in (1..self.keep_files).rev() {
            match std::fs::rename(rotated_name(&self.path, n), rotated_name(&self.path, n + 1)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        let _ = std::fs::remove_file(&first_rotated);
        self.file.sync_data()?;
        if std::fs::hard_link(&self.path, &first_rotated).is_err() {
            std::fs::rename(&self.path, &first_rotated)?;
        }
        std::fs::rename(&temporary, &self.path)?;
        let _ = self.file.unlock();
        self.identity = identity(&new_file.metadata()?);
        self.file = new_file;
        self.needs_newline = false;
        self.seq += 1;
        self.prev = hash;
        tracing::info!(
            file = %self.path.display(),
            rotated_to = %first_rotated.display(),
            seq = self.seq,
            "security event log rotated"
        );
        Ok(())
    }
}

/// The newest record of `file` (length `len`) that verifies with `key`; `None` when the file
/// holds no such record at all. Reads backwards from the end, falling back to a full scan
/// when the last line is not a good record.
fn read_tail(file: &File, len: u64, key: &AuditKey) -> std::io::Result<Option<Tail>> {
    if len == 0 {
        return Ok(Some(Tail {
            seq: 0,
            prev: GENESIS_HASH.to_owned(),
            needs_newline: false,
        }));
    }
    let mut reader = file;
    let mut chunk: u64 = 8 * 1024;
    loop {
        let start = len.saturating_sub(chunk);
        reader.seek(SeekFrom::Start(start))?;
        let mut buffer = Vec::with_capacity((len - start) as usize);
        reader.take(len - start).read_to_end(&mut buffer)?;
        let needs_newline = buffer.last() != Some(&b'\n');
        let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let last_line = match text.iter().rposition(|&b| b == b'\n') {
            Some(at) => Some(&text[at + 1..]),
            None if start == 0 => Some(text),
            None => None,
        };
        if let Some(line) = last_line {
            if let Ok(record) = chain::parse_record(line, ChainHash::Keyed(key)) {
                return Ok(Some(Tail {
                    seq: record.seq,
                    prev: record.hash,
                    needs_newline,
                }));
            }
            return full_scan(file, key, needs_newline);
        }
        chunk = chunk.saturating_mul(2);
    }
}

/// The last good record of the whole file (its last line is damaged or foreign).
fn full_scan(file: &File, key: &AuditKey, needs_newline: bool) -> std::io::Result<Option<Tail>> {
    use std::io::BufRead;
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut tail = None;
    for line in std::io::BufReader::new(reader).split(b'\n') {
        if let Ok(record) = chain::parse_record(&line?, ChainHash::Keyed(key)) {
            tail = Some((record.seq, record.hash));
        }
    }
    if tail.is_some() {
        tracing::warn!("the security event log ends with a record that does not verify");
    }
    Ok(tail.map(|(seq, prev)| Tail {
        seq,
        prev,
        needs_newline,
    }))
}
