//! Where the authenticator's accounts come from, and how they are kept current: the set in
//! force (swapped whole), the accounts-file watcher, the store and RADIUS switches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Account, AccountSet, AccountsFile, Authenticator, account_set, radius};

impl Authenticator {
    /// Swap in new accounts (used by the watcher; also callable on SIGHUP) and forget every
    /// remembered verification. Records an `admin_action` event naming the accounts that changed (never their secrets).
    pub async fn reload_accounts(&self, accounts: AccountsFile) {
        let current = self.inner.accounts.load_full();
        let base = Arc::clone(&current);
        let loaded = tokio::task::spawn_blocking(move || {
            let set = AccountSet::from(accounts);
            let changes = account_set::changes(&base.file, &set);
            (base.replaced(set), changes)
        })
        .await;
        if let Ok((loaded, changes)) = loaded {
            // An API edit swapped in meanwhile already holds this file (it re-reads a file it
            // did not write): keep it.
            let previous = self
                .inner
                .accounts
                .compare_and_swap(&current, Arc::new(loaded));
            if !Arc::ptr_eq(&previous, &current) {
                return;
            }
            // An accounts reload forgets every remembered verification.
            self.inner.verified.clear();
            if let Some(changes) = changes {
                self.inner.audit.record("admin_action", None, None, changes);
            }
        }
    }

    /// Require authentication even while no account is loaded (accounts in the state store
    /// or in RADIUS: an empty local copy must never open the proxy).
    pub fn require_authentication(&self) {
        self.inner
            .always_required
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Verify passwords with `client` (RADIUS) instead of local accounts; lockouts, country
    /// lists, impossible travel and the audit log apply as for local accounts. Set once.
    pub fn use_radius(&self, client: radius::RadiusClient) {
        self.require_authentication();
        let _ = self.inner.radius.set(Arc::new(client));
    }

    /// The accounts in force now (a snapshot; O(1) to take).
    pub fn accounts(&self) -> AccountSet {
        self.inner.accounts.load().file.clone()
    }

    /// The account called `name` in force now (O(1)).
    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.inner.accounts.load().file.get(name)
    }

    /// Swap in `accounts` as they are (API edits and store followers, which audit their own
    /// changes). Logins in flight finish with the set they started with. Remembered
    /// verifications need no clearing here: their MAC covers the stored hash (a new password
    /// never matches an old one), and disabled or removed accounts are never recalled.
    pub fn replace_accounts(&self, accounts: AccountSet) {
        let current = self.inner.accounts.load_full();
        self.inner
            .accounts
            .store(Arc::new(current.replaced(accounts)));
    }

    /// Poll `path` every second and reload it when its modification time, size or inode
    /// changes. A file that fails to load keeps the old accounts (logged, without its text).
    /// The task runs until aborted (keep the handle, or let it die with the runtime).
    pub fn spawn_accounts_watcher(&self, path: PathBuf) -> tokio::task::JoinHandle<()> {
        self.spawn_accounts_watcher_every(path, Duration::from_secs(1))
    }

    /// [`Authenticator::spawn_accounts_watcher`] with a custom poll interval.
    pub fn spawn_accounts_watcher_every(
        &self,
        path: PathBuf,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut seen = file_stamp(&path);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let stamp = file_stamp(&path);
                if stamp == seen {
                    continue;
                }
                seen = stamp;
                let own = *this
                    .inner
                    .own_write
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if seen.is_some() && seen == own {
                    continue;
                }
                let loaded = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || AccountsFile::load(&path)).await
                };
                match loaded {
                    Ok(Ok(file)) => {
                        let count = file.accounts.len();
                        this.reload_accounts(file).await;
                        tracing::info!(accounts = count, "accounts file reloaded");
                    }
                    Ok(Err(error)) => {
                        this.inner
                            .reload_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(%error, "accounts file not reloaded; keeping the old one");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// How many times the watcher found an accounts file it could not load.
    pub fn accounts_reload_failures(&self) -> u64 {
        self.inner
            .reload_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// File identity: modification time, size, inode.
pub(super) type FileStamp = (std::time::SystemTime, u64, u64);

/// File identity for the watcher: modification time, size, inode.
pub(super) fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}
