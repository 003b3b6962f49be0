//! Account provisioning (the admin API's accounts endpoints and `swarmwall user import`):
//! create, change, disable, delete, TOTP enrolment, country lists, BitTorrent policy
//! overrides, listing, bulk import —
//! against whichever backend holds the accounts.
//!
//! - File backend: every change is applied to the in-memory set and written back atomically
//!   (temporary file, fsync, rename, mode 0600) under the same `.NAME.lock` as
//!   `swarmwall user`; a file changed behind the node's back (CLI, editor) is re-read first, so
//!   neither side loses the other's edit. Then the new set is swapped in.
//! - Store backend: each change is one conditional write (compare-and-set on the stored JSON,
//!   retried on a concurrent change) to the state store, then applied to the node's own copy at
//!   once; other nodes follow within a second ([`super::account_store`]).
//! - RADIUS: accounts live in the RADIUS server; provisioning answers `Unsupported`.
//!
//! Secrets: passwords are hashed (argon2id) before they are stored; generated passwords and
//! otpauth URIs are returned once to the caller and never logged or kept in clear.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use zeroize::Zeroizing;

use super::account_store::{AccountStore, Changes, Conflict, Expect, Position};
use super::accounts::{Account, AccountsFile, HashParams, check_name, hash_password};
use super::{AccountSet, Authenticator, totp};
use crate::config::{AccountPolicy, SecurityConfig};

/// Tries of one compare-and-set change against concurrent writers.
const MAX_TRIES: usize = 8;
/// Length of a generated password (URL-safe base64 characters, 120 bits).
const GENERATED_LEN: usize = 20;
/// Longest password accepted (RFC 1929 carries at most 255 bytes).
const MAX_PASSWORD_BYTES: usize = 255;

/// Why a provisioning call failed. The messages name the field, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No such account.
    #[error("no account named `{0}`")]
    NotFound(String),
    /// The name is taken.
    #[error("an account named `{0}` already exists")]
    Exists(String),
    /// A field is unacceptable.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The field (`name`, `password`, `allow_countries`, `policy.forms.mse`, ...).
        field: Cow<'static, str>,
        /// What is wrong.
        message: String,
    },
    /// The backend cannot do this (RADIUS accounts are provisioned in RADIUS).
    #[error("{0}")]
    Unsupported(String),
    /// Too many concurrent changes to one account; try again.
    #[error("the account changed concurrently too often; try again")]
    Contended,
    /// The accounts file or the state store failed.
    #[error("{0}")]
    Backend(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid {
        field: Cow::Borrowed(field),
        message: message.into(),
    }
}

impl From<crate::config::PolicyFieldError> for DirectoryError {
    fn from(error: crate::config::PolicyFieldError) -> Self {
        Self::Invalid {
            field: Cow::Owned(error.field),
            message: error.message,
        }
    }
}

/// Where the accounts are written.
#[derive(Debug, Clone)]
pub enum DirectoryBackend {
    /// The accounts file.
    File(PathBuf),
    /// The state store.
    Store(AccountStore),
    /// Not writable here (RADIUS, or no accounts file configured); the message says why.
    ReadOnly(&'static str),
}

/// A new account (API create, import).
#[derive(Default)]
pub struct NewAccount {
    /// Login name.
    pub name: String,
    /// Clear-text password to hash; `None` with no `password_hash`: one is generated.
    pub password: Option<Zeroizing<String>>,
    /// An argon2id PHC string taken as is (migrations).
    pub password_hash: Option<String>,
    /// Start disabled.
    pub disabled: bool,
    /// Countries the account may log in from.
    pub allow_countries: Vec<String>,
    /// Countries it may not log in from.
    pub deny_countries: Vec<String>,
    /// BitTorrent policy override (`[policy.accounts.NAME]` shape).
    pub policy: Option<AccountPolicy>,
}

/// A change to an account; absent fields stay.
#[derive(Default)]
pub struct AccountPatch {
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New password (hashed before it is stored).
    pub password: Option<Zeroizing<String>>,
    /// New allow list.
    pub allow_countries: Option<Vec<String>>,
    /// New deny list.
    pub deny_countries: Option<Vec<String>>,
    /// New BitTorrent policy override; `Some(None)` clears it.
    pub policy: Option<Option<AccountPolicy>>,
}

impl AccountPatch {
    /// The fields this patch changes, in a fixed order (audit details).
    fn fields(&self) -> Vec<&'static str> {
        [
            ("disabled", self.disabled.is_some()),
            ("password", self.password.is_some()),
            ("allow_countries", self.allow_countries.is_some()),
            ("deny_countries", self.deny_countries.is_some()),
            ("policy", self.policy.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}

/// Outcome of a bulk import.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// Accounts created.
    pub created: usize,
    /// Existing accounts replaced (with `replace`).
    pub replaced: usize,
    /// Existing accounts left alone (without `replace`).
    pub skipped: usize,
}

/// Provisioning over the configured backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccountDirectory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    authenticator: Authenticator,
    backend: DirectoryBackend,
    params: HashParams,
    issuer: String,
    /// One writer at a time on this node; file mode keeps the stamp of its last write.
    writer: tokio::sync::Mutex<Option<super::FileStamp>>,
}

impl AccountDirectory {
    /// Provisioning for `authenticator`'s accounts kept in `backend`; new hashes use the
    /// argon2 cost of `config`, TOTP URIs its issuer.
    pub fn new(
        authenticator: Authenticator,
        backend: DirectoryBackend,
        config: &SecurityConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                authenticator,
                backend,
                params: HashParams::from_config(config),
                issuer: config.totp_issuer.clone(),
                writer: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Where the accounts are written.
    pub fn backend(&self) -> &DirectoryBackend {
        &self.inner.backend
    }

    /// `file`, `store` or `read-only`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            DirectoryBackend::File(_) => "file",
            DirectoryBackend::Store(_) => "store",
            DirectoryBackend::ReadOnly(_) => "read-only",
        }
    }

    /// The account in force on this node.
    pub fn get(&self, name: &str) -> Option<Arc<Account>> {
        self.inner.authenticator.account(name)
    }

    /// Accounts whose name contains `filter`, in name order: the total and the page
    /// `offset..offset + limit`.
    pub fn list(&self, filter: &str, offset: usize, limit: usize) -> (usize, Vec<Arc<Account>>) {
        let set = self.inner.authenticator.accounts();
        let names: Vec<_> = set
            .sorted_names()
            .into_iter()
            .filter(|name| name.contains(filter))
            .collect();
        let page = names
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|name| set.get(name))
            .collect();
        (names.len(), page)
    }

    /// Create an account; returns the generated password when none was given.
    pub async fn create(
        &self,
        new: NewAccount,
    ) -> Result<Option<Zeroizing<String>>, DirectoryError> {
        let name = new.name.clone();
        let (account, generated) = self.prepare(new).await?;
        let policy = account.policy.clone();
        let taken = name.clone();
        self.change(&name, move |current| match current {
            Some(_) => Err(DirectoryError::Exists(taken.clone())),
            None => Ok(Some(account.clone())),
        })
        .await?;
        let details = match &policy {
            Some(policy) => json!({ "policy": policy }),
            None => json!({}),
        };
        self.audit_with(&name, "account_create", details);
        Ok(generated)
    }

    /// Apply `patch` to `name`.
    pub async fn update(
        &self,
        name: &str,
        patch: AccountPatch,
    ) -> Result<Arc<Account>, DirectoryError> {
        let fields = patch.fields();
        if fields.is_empty() {
            return Err(invalid(
                "body",
                "give at least one of `disabled`, `password`, `allow_countries`, \
                 `deny_countries`, `policy`",
            ));
        }
        let hash = match &patch.password {
            Some(password) => Some(self.hash(password).await?),
            None => None,
        };
        if let Some(list) = &patch.allow_countries {
            check_countries("allow_countries", list)?;
        }
        if let Some(list) = &patch.deny_countries {
            check_countries("deny_countries", list)?;
        }
        let countries = patch.allow_countries.is_some() || patch.deny_countries.is_some();
        let (disabled, password_given) = (patch.disabled, patch.password.is_some());
        let mut details = json!({ "fields": fields });
        if let Some(policy) = &patch.policy {
            details["policy"] = json!(policy.as_ref().filter(|policy| !policy.is_empty()));
        }
        let owned = name.to_owned();
        self.change(name, move |current| {
            let mut account = current.ok_or_else(|| DirectoryError::NotFound(owned.clone()))?;
            if let Some(disabled) = patch.disabled {
                account.disabled = disabled;
            }
            if let Some(hash) = hash.clone() {
                account.password = hash;
            }
            if let Some(list) = &patch.allow_countries {
                account.allow_countries = upper(list.clone());
            }
            if let Some(list) = &patch.deny_countries {
                account.deny_countries = upper(list.clone());
            }
            if let Some(policy) = &patch.policy {
                account.policy = policy.clone().filter(|policy| !policy.is_empty());
            }
            Ok(Some(account))
        })
        .await?;
        let action = match (password_given, disabled, countries) {
            (true, _, _) => "account_password",
            (false, Some(true), _) => "account_disable",
            (false, Some(false), _) => "account_enable",
            (false, None, true) => "account_countries",
            (false, None, false) => "account_policy",
        };
        self.audit_with(name, action, details);
        self.get(name)
            .ok_or_else(|| DirectoryError::NotFound(name.to_owned()))
    }

    /// Delete `name`.
    pub async fn delete(&self, name: &str) -> Result<(), DirectoryError> {
        let owned = name.to_owned();
        self.change(name, move |current| match current {
            Some(_) => Ok(None),
            None => Err(DirectoryError::NotFound(owned.clone())),
        })
        .await?;
        self.audit(name, "account_delete");
        Ok(())
    }

    /// Enrol TOTP for `name` (refused when enrolled unless `replace`); the otpauth URI is
    /// returned once.
    pub async fn enrol_totp(
        &self,
        name: &str,
        replace: bool,
    ) -> Result<Zeroizing<String>, DirectoryError> {
        let enrolment = totp::enrol(name, &self.inner.issuer)
            .map_err(|error| invalid("name", error.to_string()))?;
        let secret = Zeroizing::new(enrolment.secret_base32.clone());
        let owned = name.to_owned();
        self.change(name, move |current| {
            let mut account = current.ok_or_else(|| DirectoryError::NotFound(owned.clone()))?;
            if account.totp_secret.is_some() && !replace {
                return Err(invalid(
                    "replace",
                    "TOTP is already enrolled; pass {\"replace\": true} to replace it",
                ));
            }
            account.totp_secret = Some(secret.to_string());
            Ok(Some(account))
        })
        .await?;
        self.audit(name, "totp_enrol");
        Ok(Zeroizing::new(enrolment.uri.clone()))
    }

    /// Remove TOTP from `name`.
    pub async fn remove_totp(&self, name: &str) -> Result<(), DirectoryError> {
        let owned = name.to_owned();
        self.change(name, move |current| {
            let mut account = current.ok_or_else(|| DirectoryError::NotFound(owned.clone()))?;
            account.totp_secret = None;
            Ok(Some(account))
        })
        .await?;
        self.audit(name, "totp_remove");
        Ok(())
    }

    /// Import `accounts` (each already checked by [`AccountDirectory::prepare_import`]):
    /// existing names are replaced with `replace`, else skipped.
    pub async fn import(
        &self,
        accounts: Vec<Account>,
        replace: bool,
    ) -> Result<ImportReport, DirectoryError> {
        let mut report = ImportReport::default();
        match &self.inner.backend {
            DirectoryBackend::ReadOnly(why) => {
                return Err(DirectoryError::Unsupported((*why).to_owned()));
            }
            DirectoryBackend::File(path) => {
                let mut guard = self.inner.writer.lock().await;
                let mut set = self.current_file_set(path, &guard).await?;
                for account in accounts {
                    match (set.find(&account.name).is_some(), replace) {
                        (true, false) => report.skipped += 1,
                        (true, true) => {
                            report.replaced += 1;
                            set.upsert(account);
                        }
                        (false, _) => {
                            report.created += 1;
                            set.upsert(account);
                        }
                    }
                }
                *guard = self.write_file(path, set).await?;
            }
            DirectoryBackend::Store(store) => {
                let _guard = self.inner.writer.lock().await;
                let mut set = self.inner.authenticator.accounts();
                for account in accounts {
                    let expect = if replace { Expect::Any } else { Expect::Absent };
                    let existed = store
                        .get_raw(&account.name)
                        .await
                        .map_err(backend)?
                        .is_some();
                    match store
                        .put(&account.name, Some(&account), expect)
                        .await
                        .map_err(backend)?
                    {
                        Ok(()) if existed => report.replaced += 1,
                        Ok(()) => report.created += 1,
                        Err(_) => report.skipped += 1,
                    }
                    set.upsert(account);
                }
                if !store.is_shared() {
                    self.inner.authenticator.replace_accounts(set);
                }
            }
        }
        self.inner.authenticator.inner.audit.record(
            "admin_action",
            None,
            None,
            json!({"action": "accounts_import", "created": report.created,
                   "replaced": report.replaced, "skipped": report.skipped}),
        );
        Ok(report)
    }

    /// Check and hash one import record (blocking work: call from `spawn_blocking` or a CLI).
    pub fn prepare_import(&self, new: NewAccount) -> Result<Account, DirectoryError> {
        if new.password.is_none() && new.password_hash.is_none() {
            return Err(invalid(
                "password",
                "an imported account needs `password` or `password_hash`",
            ));
        }
        prepare_blocking(new, &self.inner.params).map(|(account, _)| account)
    }

    /// Check `new` and hash its password (generated when absent) off the async threads.
    async fn prepare(
        &self,
        new: NewAccount,
    ) -> Result<(Account, Option<Zeroizing<String>>), DirectoryError> {
        if let DirectoryBackend::ReadOnly(why) = &self.inner.backend {
            return Err(DirectoryError::Unsupported((*why).to_owned()));
        }
        let params = self.inner.params;
        tokio::task::spawn_blocking(move || prepare_blocking(new, &params))
            .await
            .map_err(|error| DirectoryError::Backend(error.to_string()))?
    }

    async fn hash(&self, password: &Zeroizing<String>) -> Result<String, DirectoryError> {
        check_password(password)?;
        let password = password.clone();
        let params = self.inner.params;
        tokio::task::spawn_blocking(move || hash_password(password.as_bytes(), &params))
            .await
            .map_err(|error| DirectoryError::Backend(error.to_string()))?
            .map_err(|error| DirectoryError::Backend(error.to_string()))
    }

    /// Read-modify-write of one account on the backend, then swap the node's set.
    async fn change(
        &self,
        name: &str,
        apply: impl Fn(Option<Account>) -> Result<Option<Account>, DirectoryError>,
    ) -> Result<(), DirectoryError> {
        match &self.inner.backend {
            DirectoryBackend::ReadOnly(why) => Err(DirectoryError::Unsupported((*why).to_owned())),
            DirectoryBackend::File(path) => {
                let mut guard = self.inner.writer.lock().await;
                let mut set = self.current_file_set(path, &guard).await?;
                match apply(set.find(name).cloned())? {
                    Some(account) => set.upsert(account),
                    None => {
                        set.remove(name);
                    }
                }
                *guard = self.write_file(path, set).await?;
                Ok(())
            }
            DirectoryBackend::Store(store) => {
                let _guard = self.inner.writer.lock().await;
                for _ in 0..MAX_TRIES {
                    let raw = store.get_raw(name).await.map_err(backend)?;
                    let current = raw
                        .as_deref()
                        .and_then(|json| serde_json::from_str::<Account>(json).ok());
                    let next = apply(current)?;
                    let expect = match raw {
                        Some(raw) => Expect::Equals(raw),
                        None => Expect::Absent,
                    };
                    match store
                        .put(name, next.as_ref(), expect)
                        .await
                        .map_err(backend)?
                    {
                        Ok(()) => {
                            let mut set = self.inner.authenticator.accounts();
                            match next {
                                Some(account) => set.upsert(account),
                                None => {
                                    set.remove(name);
                                }
                            }
                            self.inner.authenticator.replace_accounts(set);
                            return Ok(());
                        }
                        Err(Conflict::Exists | Conflict::Missing | Conflict::Changed) => {}
                    }
                }
                Err(DirectoryError::Contended)
            }
        }
    }

    /// The set to change in file mode: the one in force, or the file re-read when it changed
    /// since this node last wrote or loaded it.
    async fn current_file_set(
        &self,
        path: &std::path::Path,
        last_written: &Option<super::FileStamp>,
    ) -> Result<AccountSet, DirectoryError> {
        let stamp = super::file_stamp(path);
        if stamp.is_some() && stamp == *last_written {
            return Ok(self.inner.authenticator.accounts());
        }
        let path = path.to_owned();
        let loaded = tokio::task::spawn_blocking(move || AccountsFile::load_or_empty(&path))
            .await
            .map_err(|error| DirectoryError::Backend(error.to_string()))?
            .map_err(|error| DirectoryError::Backend(error.to_string()))?;
        Ok(AccountSet::from(loaded))
    }

    /// Write `set` to the file (atomically, 0600, under the CLI's lock) and swap it in.
    async fn write_file(
        &self,
        path: &std::path::Path,
        set: AccountSet,
    ) -> Result<Option<super::FileStamp>, DirectoryError> {
        let file = set.to_file();
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let _lock = super::accounts::lock_beside(&owned)?;
            file.save(&owned)
        })
        .await
        .map_err(|error| DirectoryError::Backend(error.to_string()))?
        .map_err(|error| DirectoryError::Backend(error.to_string()))?;
        self.inner.authenticator.replace_accounts(set);
        let stamp = super::file_stamp(path);
        *self
            .inner
            .authenticator
            .inner
            .own_write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
        Ok(stamp)
    }

    fn audit(&self, name: &str, action: &'static str) {
        self.audit_with(name, action, json!({}));
    }

    /// Record an `admin_action` for `name` with `extra` details (never a secret).
    fn audit_with(&self, name: &str, action: &'static str, mut extra: serde_json::Value) {
        if let Some(object) = extra.as_object_mut() {
            object.insert("action".to_owned(), json!(action));
            object.insert("backend".to_owned(), json!(self.backend_name()));
        }
        self.inner
            .authenticator
            .inner
            .audit
            .record("admin_action", Some(name), None, extra);
    }

    /// Follow the store's changes (Redis: every 250 ms) and keep the node's set current.
    /// Call once at start, after the first load; the task runs until aborted.
    pub fn spawn_follower(
        &self,
        position: Option<Position>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let DirectoryBackend::Store(store) = &self.inner.backend else {
            return None;
        };
        if !store.is_shared() && position.is_some() {
            return None;
        }
        let store = store.clone();
        let authenticator = self.inner.authenticator.clone();
        Some(tokio::spawn(follow(store, authenticator, position)))
    }
}

/// The follower loop of [`AccountDirectory::spawn_follower`]: `None` means "load everything
/// first" (start-up while Redis was down, or a gap in the change stream).
async fn follow(store: AccountStore, authenticator: Authenticator, mut position: Option<Position>) {
    let mut ticker = tokio::time::interval(super::account_store::FOLLOW_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(current) = &position else {
            if let Ok(snapshot) = store.snapshot().await {
                tracing::info!(
                    accounts = snapshot.accounts.len(),
                    "accounts loaded from the state store"
                );
                position = Some(snapshot.position);
                authenticator.replace_accounts(AccountSet::from_accounts(snapshot.accounts));
            }
            continue;
        };
        match store.changes(current).await {
            Ok(Changes::Some(changed, next)) => {
                position = Some(next);
                if changed.is_empty() {
                    continue;
                }
                let mut set = authenticator.accounts();
                for (name, account) in changed {
                    match account {
                        Some(account) => set.upsert(account),
                        None => {
                            set.remove(&name);
                        }
                    }
                }
                authenticator.replace_accounts(set);
            }
            Ok(Changes::Resync) => {
                tracing::info!("accounts change stream has a gap; reloading every account");
                position = None;
            }
            // The store logs its own outages (rate limited); the node keeps its copy.
            Err(_) => {}
        }
    }
}

fn prepare_blocking(
    new: NewAccount,
    params: &HashParams,
) -> Result<(Account, Option<Zeroizing<String>>), DirectoryError> {
    check_name(&new.name).map_err(|error| invalid("name", error.to_string()))?;
    check_countries("allow_countries", &new.allow_countries)?;
    check_countries("deny_countries", &new.deny_countries)?;
    let (hash, generated) = match (new.password, new.password_hash) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "password_hash",
                "give `password` or `password_hash`, not both",
            ));
        }
        (Some(password), None) => {
            check_password(&password)?;
            let hash = hash_password(password.as_bytes(), params)
                .map_err(|error| DirectoryError::Backend(error.to_string()))?;
            (hash, None)
        }
        (None, Some(phc)) => {
            if argon2::PasswordHash::new(&phc).is_err() {
                return Err(invalid("password_hash", "not an argon2 PHC string"));
            }
            (phc, None)
        }
        (None, None) => {
            let password = generate_password();
            let hash = hash_password(password.as_bytes(), params)
                .map_err(|error| DirectoryError::Backend(error.to_string()))?;
            (hash, Some(password))
        }
    };
    let mut account = Account::new(&new.name, hash);
    account.disabled = new.disabled;
    account.allow_countries = upper(new.allow_countries);
    account.deny_countries = upper(new.deny_countries);
    account.policy = new.policy.filter(|policy| !policy.is_empty());
    Ok((account, generated))
}

fn upper(codes: Vec<String>) -> Vec<String> {
    codes.into_iter().map(|c| c.to_ascii_uppercase()).collect()
}

fn check_password(password: &str) -> Result<(), DirectoryError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid("password", "1 to 255 bytes"));
    }
    Ok(())
}

fn check_countries(field: &'static str, codes: &[String]) -> Result<(), DirectoryError> {
    match codes.iter().find(|code| !crate::geo::is_country_code(code)) {
        Some(code) => Err(invalid(
            field,
            format!("`{code}` is not a two-letter ISO 3166-1 country code"),
        )),
        None => Ok(()),
    }
}

/// A random password of [`GENERATED_LEN`] URL-safe characters.
fn generate_password() -> Zeroizing<String> {
    use base64::Engine;
    let mut bytes = Zeroizing::new([0u8; GENERATED_LEN * 3 / 4]);
    rand::fill(&mut bytes[..]);
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]))
}

/// Why RADIUS accounts are not provisioned here.
pub(super) const RADIUS_READ_ONLY: &str =
    "accounts are kept in RADIUS (accounts_backend = \"radius\"): provision them there";
/// Why file mode without a file cannot provision.
pub(super) const NO_FILE: &str =
    "no accounts file is configured (--accounts FILE or [security] accounts)";

fn backend(error: crate::store::StoreError) -> DirectoryError {
    DirectoryError::Backend(error.to_string())
}
