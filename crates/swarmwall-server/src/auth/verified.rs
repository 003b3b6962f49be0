//! Verification memory: after a successful argon2id verification, a keyed MAC of
//! (account name, stored PHC string, password) is kept in memory so that the next login with
//! the same password costs one HMAC and a constant-time comparison instead of an argon2 run.
//!
//! - The MAC key is random per process and never leaves it; the MAC covers the stored hash
//!   too, so a password change invalidates the entry by construction.
//! - One entry per account (the password that verified last), bounded by an LRU, each entry
//!   valid for a lifetime; [`VerifiedCache::clear`] forgets everything (accounts reload).
//! - Only successes are remembered; a miss says nothing (the caller then verifies in full).
//! - Nothing here is ever logged, printed by `Debug` or written to the store.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type Digest = [u8; 32];

/// Bounded, expiring memory of successful verifications.
pub(crate) struct VerifiedCache {
    key: Zeroizing<[u8; 32]>,
    /// `None` when the cache is off (`verified_cache_size = 0`).
    entries: Option<Mutex<LruCache<String, Entry>>>,
}

struct Entry {
    mac: Digest,
    verified_at: Instant,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// A cache of at most `capacity` accounts (0 turns it off) under a fresh random key.
    pub(crate) fn new(capacity: usize) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self {
            key,
            entries: NonZeroUsize::new(capacity).map(|cap| Mutex::new(LruCache::new(cap))),
        }
    }

    /// True when `password` verified for `account` (whose stored hash is `phc`) less than
    /// `lifetime` ago. Costs one HMAC-SHA256 and a constant-time comparison.
    pub(crate) fn matches(
        &self,
        account: &str,
        phc: &str,
        password: &[u8],
        lifetime: Duration,
    ) -> bool {
        let Some(entries) = &self.entries else {
            return false;
        };
        let mac = self.mac(account, phc, password);
        let mut entries = entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.get(account) else {
            return false;
        };
        if entry.verified_at.elapsed() >= lifetime {
            entries.pop(account);
            return false;
        }
        bool::from(entry.mac.ct_eq(&mac))
    }

    /// Remember that `password` verified for `account` with stored hash `phc`.
    pub(crate) fn remember(&self, account: &str, phc: &str, password: &[u8]) {
        let Some(entries) = &self.entries else {
            return;
        };
        let mac = self.mac(account, phc, password);
        let entry = Entry {
            mac,
            verified_at: Instant::now(),
        };
        entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(account.to_owned(), entry);
    }

    /// A keyed fingerprint of `password` for `account` (same key as the entries; memory only).
    pub(crate) fn fingerprint(&self, account: &str, password: &[u8]) -> [u8; 32] {
        self.mac(account, "", password)
    }

    /// Forget everything (accounts reload).
    pub(crate) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Accounts currently remembered.
    pub(crate) fn len(&self) -> usize {
        self.entries
            .as_ref()
            .map_or(0, |e| e.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// HMAC-SHA256 over length-prefixed fields, so no two inputs share an encoding.
    fn mac(&self, account: &str, phc: &str, password: &[u8]) -> Digest {
        let lengths = [account, phc].map(|field| (field.len() as u64).to_le_bytes());
        let password_length = (password.len() as u64).to_le_bytes();
        crate::pseudonym::hmac_sha256(
            &self.key[..],
            &[
                &lengths[0],
                account.as_bytes(),
                &lengths[1],
                phc.as_bytes(),
                &password_length,
                password,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3_600);

    #[test]
    fn only_the_remembered_password_and_hash_match() {
        let cache = VerifiedCache::new(8);
        assert!(!cache.matches("alice", "$phc1", b"secret", LONG));
        cache.remember("alice", "$phc1", b"secret");
        assert!(cache.matches("alice", "$phc1", b"secret", LONG));
        assert!(!cache.matches("alice", "$phc1", b"secreT", LONG));
        assert!(!cache.matches("alice", "$phc1", b"secret\0", LONG));
        // A changed stored hash (password change) never matches the old entry.
        assert!(!cache.matches("alice", "$phc2", b"secret", LONG));
        assert!(!cache.matches("bob", "$phc1", b"secret", LONG));
        // Field boundaries are part of the MAC.
        cache.remember("ab", "c", b"d");
        assert!(!cache.matches("a", "bc", b"d", LONG));
    }

    #[test]
    fn entries_expire_are_forgotten_and_bounded() {
        let cache = VerifiedCache::new(2);
        cache.remember("alice", "h", b"pw");
        assert!(!cache.matches("alice", "h", b"pw", Duration::ZERO));
        // The expired entry was dropped on the way.
        assert_eq!(cache.len(), 0);
        cache.remember("alice", "h", b"pw");
        cache.remember("bob", "h", b"pw");
        cache.remember("carol", "h", b"pw");
        assert_eq!(cache.len(), 2);
        assert!(!cache.matches("alice", "h", b"pw", LONG), "LRU evicts");
        assert!(cache.matches("carol", "h", b"pw", LONG));
        cache.clear();
        assert!(!cache.matches("carol", "h", b"pw", LONG));
    }

    #[test]
    fn a_zero_size_cache_is_off_and_keys_differ_per_process() {
        let off = VerifiedCache::new(0);
        off.remember("alice", "h", b"pw");
        assert!(!off.matches("alice", "h", b"pw", LONG));
        let one = VerifiedCache::new(1);
        let two = VerifiedCache::new(1);
        assert_ne!(one.mac("a", "h", b"p"), two.mac("a", "h", b"p"));
        let debug = format!("{one:?}");
        assert!(!debug.contains("key"), "{debug}");
    }
}
