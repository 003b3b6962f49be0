//! The value model shared by the memory and embedded backends (and the unit of migration):
//! one [`StoredValue`] per `(namespace, subject)`, pure update functions for each primitive,
//! and a small binary encoding for the embedded file.
//!
//! Every value carries its own expiry (`expires_ms`), so reads can ignore expired values
//! lazily and the purge task can drop them.

use std::time::Duration;

use super::StoreError;

/// Most events kept per counter: counters only need to reach their thresholds.
pub(crate) const MAX_EVENTS: usize = 1_024;

/// One stored value, as copied by `swarmwall store migrate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredValue {
    /// Sliding-window event times (Unix ms, ascending).
    Events {
        /// Event times, oldest first.
        times: Vec<u64>,
        /// When the newest event leaves its window.
        expires_ms: u64,
    },
    /// An "active until" mark.
    Until {
        /// Deadline (Unix ms).
        until_ms: u64,
    },
    /// A bounded history, newest last.
    History {
        /// Entries, oldest first.
        entries: Vec<Vec<u8>>,
        /// When the whole history expires.
        expires_ms: u64,
    },
    /// A claim-once marker.
    Claim {
        /// When the claim lapses.
        expires_ms: u64,
    },
}

impl StoredValue {
    /// When this value stops mattering (Unix ms).
    pub fn expires_ms(&self) -> u64 {
        match self {
            Self::Events { expires_ms, .. }
            | Self::History { expires_ms, .. }
            | Self::Claim { expires_ms } => *expires_ms,
            Self::Until { until_ms } => *until_ms,
        }
    }

    /// True while the value still holds state at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_ms() > now_ms
    }

    /// Binary encoding (little-endian, tag byte first).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Self::Events { times, expires_ms } => {
                out.push(1);
                out.extend_from_slice(&expires_ms.to_le_bytes());
                out.extend_from_slice(&len_u32(times.len()).to_le_bytes());
                for time in times {
                    out.extend_from_slice(&time.to_le_bytes());
                }
            }
            Self::Until { until_ms } => {
                out.push(2);
                out.extend_from_slice(&until_ms.to_le_bytes());
            }
            Self::History {
                entries,
                expires_ms,
            } => {
                out.push(3);
                out.extend_from_slice(&expires_ms.to_le_bytes());
                out.extend_from_slice(&len_u32(entries.len()).to_le_bytes());
                for entry in entries {
                    out.extend_from_slice(&len_u32(entry.len()).to_le_bytes());
                    out.extend_from_slice(entry);
                }
            }
            Self::Claim { expires_ms } => {
                out.push(4);
                out.extend_from_slice(&expires_ms.to_le_bytes());
            }
        }
        out
    }

    /// Decode [`Self::encode`] output; anything else is [`StoreError::Corrupt`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut reader = Reader(bytes);
        let value = match reader.u8()? {
            1 => {
                let expires_ms = reader.u64()?;
                let count = reader.u32()?;
                let mut times = Vec::with_capacity(count.min(MAX_EVENTS as u32) as usize);
                for _ in 0..count {
                    times.push(reader.u64()?);
                }
                Self::Events { times, expires_ms }
            }
            2 => Self::Until {
                until_ms: reader.u64()?,
            },
            3 => {
                let expires_ms = reader.u64()?;
                let count = reader.u32()?;
                let mut entries = Vec::new();
                for _ in 0..count {
                    let len = reader.u32()? as usize;
                    entries.push(reader.take(len)?.to_vec());
                }
                Self::History {
                    entries,
                    expires_ms,
                }
            }
            4 => Self::Claim {
                expires_ms: reader.u64()?,
            },
            tag => return Err(StoreError::Corrupt(format!("unknown value tag {tag}"))),
        };
        if !reader.0.is_empty() {
            return Err(StoreError::Corrupt("trailing bytes after a value".into()));
        }
        Ok(value)
    }
}

/// Record one event: returns the new value and the count within `window`.
pub(crate) fn record_event(
    old: Option<StoredValue>,
    now_ms: u64,
    window: Duration,
) -> (StoredValue, u32) {
    let start = window_start(now_ms, window);
    let (mut times, old_expires) = match old {
        Some(StoredValue::Events { times, expires_ms }) => (times, expires_ms),
        _ => (Vec::new(), 0),
    };
    times.retain(|&t| t >= start);
    // Keep the times sorted even when an old event is replayed late.
    let at = times.partition_point(|&t| t <= now_ms);
    times.insert(at, now_ms);
    if times.len() > MAX_EVENTS {
        let excess = times.len() - MAX_EVENTS;
        times.drain(..excess);
    }
    let newest = times.last().copied().unwrap_or(now_ms);
    let expires_ms = newest.saturating_add(duration_ms(window)).max(old_expires);
    let count = count_from(&times, start);
    (StoredValue::Events { times, expires_ms }, count)
}

/// Event times within `window` of `now_ms`.
pub(crate) fn events(value: Option<&StoredValue>, now_ms: u64, window: Duration) -> Vec<u64> {
    let start = window_start(now_ms, window);
    match value {
        Some(StoredValue::Events { times, .. }) => {
            times.iter().copied().filter(|&t| t >= start).collect()
        }
        _ => Vec::new(),
    }
}

/// The later of the current mark and `until_ms`.
pub(crate) fn set_until(old: Option<&StoredValue>, until_ms: u64) -> StoredValue {
    let current = match old {
        Some(StoredValue::Until { until_ms }) => *until_ms,
        _ => 0,
    };
    StoredValue::Until {
        until_ms: current.max(until_ms),
    }
}

/// The deadline of a live mark.
pub(crate) fn active_until(value: Option<&StoredValue>, now_ms: u64) -> Option<u64> {
    match value {
        Some(StoredValue::Until { until_ms }) if *until_ms > now_ms => Some(*until_ms),
        _ => None,
    }
}

/// Append to a bounded history; an expired history starts over.
pub(crate) fn push_history(
    old: Option<StoredValue>,
    entry: &[u8],
    max_entries: usize,
    ttl: Duration,
    now_ms: u64,
) -> StoredValue {
    let mut entries = match old {
        Some(StoredValue::History {
            entries,
            expires_ms,
        }) if expires_ms > now_ms => entries,
        _ => Vec::new(),
    };
    entries.push(entry.to_vec());
    if entries.len() > max_entries {
        let excess = entries.len() - max_entries;
        entries.drain(..excess);
    }
    StoredValue::History {
        entries,
        expires_ms: now_ms.saturating_add(duration_ms(ttl)),
    }
}

/// A live history's entries.
pub(crate) fn history(value: Option<&StoredValue>, now_ms: u64) -> Vec<Vec<u8>> {
    match value {
        Some(StoredValue::History {
            entries,
            expires_ms,
        }) if *expires_ms > now_ms => entries.clone(),
        _ => Vec::new(),
    }
}

/// `Some(new claim)` when `old` does not hold a live claim.
pub(crate) fn claim_once(
    old: Option<&StoredValue>,
    ttl: Duration,
    now_ms: u64,
) -> Option<StoredValue> {
    if let Some(StoredValue::Claim { expires_ms }) = old
        && *expires_ms > now_ms
    {
        return None;
    }
    Some(StoredValue::Claim {
        expires_ms: now_ms.saturating_add(duration_ms(ttl)),
    })
}

/// Start of the window ending at `now_ms`.
pub(crate) fn window_start(now_ms: u64, window: Duration) -> u64 {
    now_ms.saturating_sub(duration_ms(window))
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn count_from(times: &[u64], start: u64) -> u32 {
    u32::try_from(times.iter().filter(|&&t| t >= start).count()).unwrap_or(u32::MAX)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A cursor over stored bytes that reports truncation as corruption.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < len {
            return Err(StoreError::Corrupt("truncated value".into()));
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = StoredValue::decode(&bytes);
        }

        #[test]
        fn encode_decode_round_trip(
            times in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..8),
            entries in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8), 0..4),
            at in proptest::prelude::any::<u64>(),
        ) {
            for value in [
                StoredValue::Events { times: times.clone(), expires_ms: at },
                StoredValue::Until { until_ms: at },
                StoredValue::History { entries: entries.clone(), expires_ms: at },
                StoredValue::Claim { expires_ms: at },
            ] {
                proptest::prop_assert_eq!(StoredValue::decode(&value.encode()).unwrap(), value);
            }
        }
    }
}
