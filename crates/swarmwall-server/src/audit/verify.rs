//! Checking a log (or a rotated set of files, oldest first) against its key, and against an
//! expected record (`--expect SEQ:HASH`, a checkpoint).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::AuditError;
use super::chain::{self, ChainHash, GENESIS_HASH, ROTATION_KIND, same_hex};

/// Result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Sequence number of the first record (above 1 when older rotated files are not given).
    pub first_seq: u64,
    /// Sequence number of the last record (0 for an empty log).
    pub last_seq: u64,
    /// Hash of the last record (the value to keep off the host).
    pub last_hash: String,
}

/// A record the log must contain: `SEQ:HASH` (from `audit head` or a checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Sequence number.
    pub seq: u64,
    /// Hash of that record (64 hex).
    pub hash: String,
}

/// A `--expect` value that is not `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not SEQ:HASH (as printed by `swarmwall audit head`)")]
pub struct ExpectedParseError {
    /// The value given.
    pub text: String,
}

impl std::str::FromStr for Expected {
    type Err = ExpectedParseError;

    fn from_str(text: &str) -> Result<Self, ExpectedParseError> {
        let bad = || ExpectedParseError {
            text: text.to_owned(),
        };
        let (seq, hash) = text.trim().split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        let hash = hash.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self { seq, hash })
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// Check the chain of `files` (one log, or a rotated set oldest first: `FILE.2 FILE.1 FILE`)
/// with `chain`. The first record is seq 1, or a `log_rotated` record continuing files not
/// given. Every `expected` record must be present with its hash.
pub fn verify_files(
    files: &[PathBuf],
    chain: ChainHash<'_>,
    expected: &[Expected],
) -> Result<VerifyReport, AuditError> {
    let mut state = Walk {
        prev: None,
        seq: 0,
        first_seq: 0,
        records: 0,
        found: vec![None; expected.len()],
    };
    for path in files {
        let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
        state.walk(path, std::io::BufReader::new(file), chain, expected)?;
    }
    let last = files.last().cloned().unwrap_or_default();
    for (want, found) in expected.iter().zip(&state.found) {
        let before_start = found.is_none() && want.seq <= state.seq;
        let reason = match found {
            Some(true) => continue,
            Some(false) => format!(
                "record {} differs from the expected one (hash {}): the log was rewritten",
                want.seq, want.hash
            ),
            None if want.seq > state.seq => format!(
                "the log ends at record {} before the expected record {}: newest records were \
                 cut off (or the file was emptied or replaced)",
                state.seq, want.seq
            ),
            None => format!(
                "record {} is not in the files given (they start at record {})",
                want.seq, state.first_seq
            ),
        };
        return Err(AuditError::Expectation {
            path: last,
            reason,
            before_start,
        });
    }
    Ok(VerifyReport {
        records: state.records,
        first_seq: state.first_seq,
        last_seq: state.seq,
        last_hash: state.prev.unwrap_or_else(|| GENESIS_HASH.to_owned()),
    })
}

struct Walk {
    prev: Option<String>,
    seq: u64,
    first_seq: u64,
    records: u64,
    found: Vec<Option<bool>>,
}

impl Walk {
    fn walk(
        &mut self,
        path: &Path,
        reader: impl BufRead,
        chain: ChainHash<'_>,
        expected: &[Expected],
    ) -> Result<(), AuditError> {
        for (index, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(|source| AuditError::Io {
                path: path.to_owned(),
                source,
            })?;
            let broken = |reason: String| AuditError::Broken {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let record =
                chain::parse_record(&line, chain).map_err(|reason| broken(reason.to_owned()))?;
            match &self.prev {
                None if record.seq == 1 => {
                    if record.prev != GENESIS_HASH {
                        return Err(broken("the first record does not start the chain".into()));
                    }
                }
                None => {
                    // Older files may be gone; only a keyed rotation record may start there.
                    if record.kind != ROTATION_KIND {
                        return Err(broken(format!(
                            "the log starts at record {} without a `{ROTATION_KIND}` record \
                             (records before it were removed)",
                            record.seq
                        )));
                    }
                }
                Some(prev) => {
                    if record.seq != self.seq + 1 {
                        return Err(broken(format!(
                            "sequence number {} where {} was expected (a record was removed \
                             or moved)",
                            record.seq,
                            self.seq + 1
                        )));
                    }
                    if !same_hex(&record.prev, prev) {
                        return Err(broken(
                            "`prev` does not match the previous record's hash (a record before \
                             it was removed, edited or moved)"
                                .to_owned(),
                        ));
                    }
                }
            }
            if self.prev.is_none() {
                self.first_seq = record.seq;
            }
            for (want, found) in expected.iter().zip(self.found.iter_mut()) {
                if want.seq == record.seq {
                    *found = Some(same_hex(&want.hash, &record.hash));
                }
            }
            self.seq = record.seq;
            self.prev = Some(record.hash);
            self.records += 1;
        }
        Ok(())
    }
}

/// `(seq, hash)` of the newest record of `path` (`(0, GENESIS_HASH)` when empty), read from
/// its last line without the key (for `audit head`).
pub fn head(path: &Path) -> Result<(u64, String), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut last: Option<(usize, Vec<u8>)> = None;
    for (index, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io)?;
        if !line.is_empty() {
            last = Some((index + 1, line));
        }
    }
    match last {
        None => Ok((0, GENESIS_HASH.to_owned())),
        Some((line, text)) => chain::peek_record(&text).ok_or_else(|| AuditError::Broken {
            path: path.to_owned(),
            line,
            reason: "the last line is not a record".to_owned(),
        }),
    }
}
