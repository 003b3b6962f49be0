//! Per-account session counting (`max_sessions_per_account`). The global limit is a
//! semaphore in the listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open sessions per account. Entries are removed when their count drops to zero, so the
/// map holds at most one entry per account with an open session.
#[derive(Debug, Default, Clone)]
pub(crate) struct AccountSessions {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// Held for the life of a session; releases its slot on drop.
#[derive(Debug)]
pub(crate) struct AccountSlot {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    account: String,
}

impl AccountSessions {
    /// Take a slot for `account`, or `None` when it already has `limit` sessions (0 = none).
    pub(crate) fn acquire(&self, account: &str, limit: u32) -> Option<AccountSlot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = counts.entry(account.to_owned()).or_insert(0);
        if limit != 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(AccountSlot {
            counts: Arc::clone(&self.counts),
            account: account.to_owned(),
        })
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = counts.get_mut(&self.account) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_released() {
        let sessions = AccountSessions::default();
        let first = sessions.acquire("alice", 2).unwrap();
        let _second = sessions.acquire("alice", 2).unwrap();
        assert!(sessions.acquire("alice", 2).is_none());
        assert!(sessions.acquire("bob", 2).is_some());
        drop(first);
        assert!(sessions.acquire("alice", 2).is_some());
        assert!(sessions.acquire("carol", 0).is_some());
    }
}
