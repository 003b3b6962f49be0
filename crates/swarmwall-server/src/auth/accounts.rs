//! The accounts file (TOML):
//!
//! ```toml
//! [[account]]
//! name = "alice"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # PHC string, never plain text
//! disabled = false
//! totp_secret = "JBSWY3DPEHPK3PXP..."               # base32; present once TOTP is enrolled
//! allow_countries = ["GB", "IE"]                     # optional, per account
//! deny_countries = []
//! [account.policy]                                   # optional BitTorrent policy override
//! bittorrent = "allow"                               # block | log | allow
//! forms = { mse = "block" }                          # per form, as [policy.accounts.NAME]
//! ```
//!
//! [`AccountsFile::save`] replaces the file atomically (temporary file in the same directory,
//! fsync, rename) with mode 0600, so the running proxy never reads a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use super::account_errors::{AccountError, NameError, check_name};
use crate::config::{AccountPolicy, SecurityConfig};

/// A valid argon2id hash of a random password with the default parameters, verified for
/// unknown users when no hash with the configured parameters is at hand.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3dhcm13YWxsZHVtbXk$0yR0aHEBhJW2jDdvBzNSJg0QRsETsR1LK0IJxBbLyvE";

/// One account.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// argon2id PHC string.
    pub password: String,
    /// Refuse logins while set.
    #[serde(default)]
    pub disabled: bool,
    /// TOTP shared secret (RFC 4648 base32, no padding); logins then need a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// Countries this account may log in from (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_countries: Vec<String>,
    /// Countries this account may not log in from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_countries: Vec<String>,
    /// BitTorrent policy override (the shape of `[policy.accounts.NAME]`); it takes precedence
    /// over the configuration file's `[policy.accounts.NAME]` and global actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<AccountPolicy>,
}

impl Account {
    /// A new enabled account with the PHC string `password` and no TOTP or country lists.
    pub fn new(name: &str, password: String) -> Self {
        Self {
            name: name.to_owned(),
            password,
            disabled: false,
            totp_secret: None,
            allow_countries: Vec::new(),
            deny_countries: Vec::new(),
            policy: None,
        }
    }

    /// Check the fields other than the name: a PHC password string, a base32 TOTP secret,
    /// two-letter country codes. The message names the field, never its value's secret.
    pub fn check(&self) -> Result<(), AccountError> {
        if PasswordHash::new(&self.password).is_err() {
            return Err(AccountError::Password {
                account: self.name.clone(),
            });
        }
        if let Some(secret) = &self.totp_secret
            && totp_rs::Secret::try_from_base32(secret).is_err()
        {
            return Err(AccountError::TotpSecret {
                account: self.name.clone(),
            });
        }
        for (key, codes) in [
            ("allow_countries", &self.allow_countries),
            ("deny_countries", &self.deny_countries),
        ] {
            if let Some(position) = codes
                .iter()
                .position(|code| !crate::geo::is_country_code(code))
            {
                // The position, not the value: a mistyped line may hold a secret.
                return Err(AccountError::Country {
                    account: self.name.clone(),
                    key,
                    position,
                });
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("disabled", &self.disabled)
            .field("totp", &self.totp_secret.as_ref().map(|_| "<redacted>"))
            .field("allow_countries", &self.allow_countries)
            .field("deny_countries", &self.deny_countries)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(secret) = self.totp_secret.as_mut() {
            secret.zeroize();
        }
    }
}

/// The whole accounts file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    /// Accounts, in file order.
    #[serde(default, rename = "account")]
    pub accounts: Vec<Account>,
}

/// Why the accounts file could not be loaded, saved or edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// Unreadable file.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad TOML or a bad field.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong, with line and key (never the offending text, which may be a secret).
        message: String,
    },
    /// The file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An edit that does not apply (unknown account, duplicate name, bad name).
    #[error("{0}")]
    Edit(String),
    /// Password hashing failed (bad argon2 parameters).
    #[error("cannot hash password: {0}")]
    Hash(String),
}

impl AccountsFile {
    /// Load and parse `path`. Warns when the file is readable by group or others, and when
    /// password hashes are below OWASP's argon2id minimum.
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.to_owned(),
            source,
        })?;
        crate::pseudonym::warn_if_shared(path);
        let text = Zeroizing::new(text);
        let file = Self::parse(&text, path)?;
        let weak = file.weak_hash_count();
        if weak > 0 {
            tracing::warn!(
                file = %path.display(),
                accounts = weak,
                "password hashes below OWASP's argon2id minimum; re-hash them with \
                 `swarmwall user passwd` (after raising [security] argon2_memory_kib)"
            );
        }
        Ok(file)
    }

    /// Load `path`, or an empty file when it does not exist yet (for `user add`).
    pub fn load_or_empty(path: &Path) -> Result<Self, AccountsError> {
        match std::fs::metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            _ => Self::load(path),
        }
    }

    /// Parse TOML text; `path` only names the file in errors. Errors give line, column and
    /// message but never quote the file (it holds secrets).
    pub fn parse(text: &str, path: &Path) -> Result<Self, AccountsError> {
        let file: Self = toml::from_str(text).map_err(|error| {
            let (line, column) = error.span().map_or((1, 1), |span| {
                let before = text.get(..span.start).unwrap_or("");
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rfind('\n')
                    .map_or(before.len(), |nl| before.len() - nl - 1);
                (line, column + 1)
            });
            AccountsError::Parse {
                path: path.to_owned(),
                message: format!("{line}:{column}: {}", redact_values(error.message().trim())),
            }
        })?;
        file.check().map_err(|error| AccountsError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        Ok(file)
    }

    /// How many accounts have a password hash whose argon2 cost is below OWASP's minimum
    /// (see [`crate::config::argon2_cost_is_weak`]); re-hash them with `user passwd`.
    pub fn weak_hash_count(&self) -> usize {
        self.accounts
            .iter()
            .filter(|account| {
                PasswordHash::new(&account.password).is_ok_and(|hash| {
                    let param = |name: &str| hash.params.get_decimal(name).unwrap_or_default();
                    crate::config::argon2_cost_is_weak(param("m"), param("t"))
                })
            })
            .count()
    }

    /// The account called `name`.
    pub fn find(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|account| account.name == name)
    }

    fn find_mut(&mut self, name: &str) -> Result<&mut Account, AccountsError> {
        self.accounts
            .iter_mut()
            .find(|account| account.name == name)
            .ok_or_else(|| AccountsError::Edit(format!("no account named `{name}`")))
    }

    /// Add an account with an argon2id hash of `password`.
    pub fn add(
        &mut self,
        name: &str,
        password: &[u8],
        params: &HashParams,
    ) -> Result<(), AccountsError> {
        check_name(name).map_err(|error| AccountsError::Edit(error.to_string()))?;
        if self.find(name).is_some() {
            return Err(AccountsError::Edit(format!(
                "an account named `{name}` already exists"
            )));
        }
        let password = hash_password(password, params)?;
        self.accounts.push(Account::new(name, password));
        Ok(())
    }

    /// Replace the password of `name`.
    pub fn set_password(
        &mut self,
        name: &str,
        password: &[u8],
        params: &HashParams,
    ) -> Result<(), AccountsError> {
        let hash = hash_password(password, params)?;
        self.find_mut(name)?.password = hash;
        Ok(())
    }

    /// Remove `name`.
    pub fn remove(&mut self, name: &str) -> Result<(), AccountsError> {
        let before = self.accounts.len();
        self.accounts.retain(|account| account.name != name);
        if self.accounts.len() == before {
            return Err(AccountsError::Edit(format!("no account named `{name}`")));
        }
        Ok(())
    }

    /// Disable (or enable again) `name`.
    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<(), AccountsError> {
        self.find_mut(name)?.disabled = disabled;
        Ok(())
    }

    /// Set (or with `None` remove) the TOTP secret of `name` (base32).
    pub fn set_totp_secret(
        &mut self,
        name: &str,
        secret: Option<String>,
    ) -> Result<(), AccountsError> {
        self.find_mut(name)?.totp_secret = secret;
        Ok(())
    }

    /// Set (or with `None` clear) the BitTorrent policy override of `name`; an override that
    /// overrides nothing is stored as none.
    pub fn set_policy(
        &mut self,
        name: &str,
        policy: Option<AccountPolicy>,
    ) -> Result<(), AccountsError> {
        self.find_mut(name)?.policy = policy.filter(|policy| !policy.is_empty());
        Ok(())
    }

    /// Load `path` (empty when missing and `create` is set), apply `change` and save, holding an
    /// exclusive advisory lock on a `.NAME.lock` file beside it so that two concurrent
    /// `swarmwall user` runs cannot lose each other's edits.
    pub fn edit_locked<T>(
        path: &Path,
        create: bool,
        change: impl FnOnce(&mut Self) -> Result<T, AccountsError>,
    ) -> Result<T, AccountsError> {
        let _lock = lock_beside(path)?;
        let mut file = if create {
            Self::load_or_empty(path)?
        } else {
            Self::load(path)?
        };
        let value = change(&mut file)?;
        file.save(path)?;
        Ok(value)
    }

    /// Write the file atomically with mode 0600: a temporary file in the same directory,
    /// fsynced, renamed over `path`, then the directory fsynced.
    pub fn save(&self, path: &Path) -> Result<(), AccountsError> {
        let write_error = |source| AccountsError::Write {
            path: path.to_owned(),
            source,
        };
        let text = Zeroizing::new(toml::to_string(self).map_err(|error| AccountsError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(error.to_string()),
        })?);
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| write_error(std::io::Error::other("not a file name")))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(file_name);
        temp_name.push(format!(
            ".{}.{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let temp = dir.join(temp_name);
        let result = (|| {
            let mut file = crate::pseudonym::private_file_options().open(&temp)?;
            file.write_all(b"# swarmwall accounts (edit with `swarmwall user`)\n")?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            if let Ok(dir) = std::fs::File::open(&dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(write_error)
    }

    /// Duplicate names, bad names and non-argon2 password fields are refused.
    fn check(&self) -> Result<(), AccountError> {
        let mut seen = std::collections::HashSet::with_capacity(self.accounts.len());
        for (index, account) in self.accounts.iter().enumerate() {
            check_name(&account.name).map_err(|error| AccountError::Name {
                number: index + 1,
                error,
            })?;
            if !seen.insert(account.name.as_str()) {
                return Err(AccountError::Duplicate {
                    account: account.name.clone(),
                });
            }
            account.check()?;
        }
        Ok(())
    }
}

/// Take an exclusive `flock` on `.NAME.lock` beside `path` (released on drop).
pub(crate) fn lock_beside(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, AccountsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write_error = |source| AccountsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(write_error)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| write_error(std::io::Error::from(errno)))
}

/// Keys of the accounts file: the only quoted words an error message may keep.
const FIELD_NAMES: &[&str] = &[
    "account",
    "name",
    "password",
    "disabled",
    "totp_secret",
    "allow_countries",
    "deny_countries",
    "policy",
    "bittorrent",
    "forms",
    "block",
    "log",
    "allow",
    "peer_wire",
    "peer_wire_messages",
    "mse",
    "http_tracker",
    "web_seed",
    "ssl_torrent",
    "webtorrent",
    "torrent_file",
    "utp",
    "dht",
    "udp_tracker",
    "lsd",
    "known_destination",
];

/// A TOML/serde error message without the values it quotes (`invalid type: string "..."`,
/// `integer `...``, an unknown key): any of them may be a password or TOTP secret typed into
/// the wrong place. Quoted field names stay, so the message still says what was expected.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let (before, from_quote) = rest.split_at(start);
        out.push_str(before);
        let quote = from_quote.chars().next().unwrap_or('"');
        let inner_and_rest = from_quote.get(1..).unwrap_or_default();
        let Some(end) = inner_and_rest.find(quote) else {
            // An unmatched quote: drop whatever follows it.
            out.push_str("<redacted>");
            return out;
        };
        let inner = inner_and_rest.get(..end).unwrap_or_default();
        out.push(quote);
        out.push_str(if FIELD_NAMES.contains(&inner) {
            inner
        } else {
            "<redacted>"
        });
        out.push(quote);
        rest = inner_and_rest.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// argon2id cost parameters for new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self::from_config(&SecurityConfig::default())
    }
}

impl HashParams {
    /// The parameters of a `[security]` section.
    pub fn from_config(config: &SecurityConfig) -> Self {
        Self {
            memory_kib: config.argon2_memory_kib,
            iterations: config.argon2_iterations,
            parallelism: config.argon2_parallelism,
        }
    }

    fn hasher(&self) -> Result<Argon2<'static>, AccountsError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|error| AccountsError::Hash(error.to_string()))?;
        Ok(Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// An argon2id PHC string for `password` with a fresh random salt.
pub fn hash_password(password: &[u8], params: &HashParams) -> Result<String, AccountsError> {
    let hash: PasswordHash = params
        .hasher()?
        .hash_password(password)
        .map_err(|error| AccountsError::Hash(error.to_string()))?;
    Ok(hash.to_string())
}

/// A hash of a random password with the same argon2 parameters as `phc` (the first account's
/// hash), so that verifying it for an unknown user costs what a known user costs. Falls back
/// to [`DUMMY_HASH`].
pub(crate) fn dummy_hash_like(phc: Option<&str>) -> String {
    let params = phc
        .and_then(|phc| PasswordHash::new(phc).ok())
        .and_then(|hash| argon2::Params::try_from(&hash).ok());
    let Some(params) = params else {
        return DUMMY_HASH.to_owned();
    };
    let params = HashParams {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    };
    let mut password = Zeroizing::new([0u8; 24]);
    rand::fill(&mut password[..]);
    hash_password(&password[..], &params).unwrap_or_else(|_| DUMMY_HASH.to_owned())
}

/// The PHC string with the highest argon2 cost (memory × iterations × lanes) among `phcs`;
/// malformed strings are skipped.
pub(crate) fn costliest<'a>(phcs: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    phcs.filter_map(|phc| {
        let hash = PasswordHash::new(phc).ok()?;
        let params = argon2::Params::try_from(&hash).ok()?;
        let cost =
            u64::from(params.m_cost()) * u64::from(params.t_cost()) * u64::from(params.p_cost());
        Some((cost, phc))
    })
    .max_by_key(|(cost, _)| *cost)
    .map(|(_, phc)| phc)
}

/// Verify `password` against a PHC string; false for malformed hashes. The parameters come
/// from the PHC string itself.
pub(crate) fn verify_password(phc: &str, password: &[u8]) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Cheap parameters so the tests stay fast.
    pub(crate) const FAST: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn the_costliest_hash_is_chosen() {
        let cheap = hash_password(b"a", &FAST).unwrap();
        let dear = hash_password(
            b"b",
            &HashParams {
                memory_kib: 256,
                iterations: 2,
                parallelism: 1,
            },
        )
        .unwrap();
        let phcs = [cheap.as_str(), "not a hash", dear.as_str(), cheap.as_str()];
        assert_eq!(costliest(phcs.into_iter()), Some(dear.as_str()));
        assert_eq!(costliest(["junk"].into_iter()), None);
        let dummy = dummy_hash_like(Some(&dear));
        assert!(dummy.contains("m=256,t=2,p=1"), "{dummy}");
    }

    #[test]
    fn dummy_hash_is_valid_argon2id() {
        let hash = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(hash.algorithm.as_str(), "argon2id");
        assert!(!verify_password(DUMMY_HASH, b"anything"));
    }

    #[test]
    fn edit_save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        let mut file = AccountsFile::load_or_empty(&path).unwrap();
        file.add("alice", b"correct horse", &FAST).unwrap();
        file.add("bob", b"battery", &FAST).unwrap();
        assert!(file.add("alice", b"x", &FAST).is_err());
        assert!(file.add("bad name", b"x", &FAST).is_err());
        file.set_disabled("bob", true).unwrap();
        file.set_totp_secret("alice", Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_owned()))
            .unwrap();
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("correct horse"));
        assert!(text.contains("$argon2id$v=19$m=64,t=1,p=1$"));

        let mut loaded = AccountsFile::load(&path).unwrap();
        let alice = loaded.find("alice").unwrap();
        assert!(verify_password(&alice.password, b"correct horse"));
        assert!(!verify_password(&alice.password, b"correct horsf"));
        assert!(alice.totp_secret.is_some());
        assert!(loaded.find("bob").unwrap().disabled);
        loaded.set_password("bob", b"new", &FAST).unwrap();
        loaded.remove("alice").unwrap();
        assert!(loaded.remove("alice").is_err());
        assert!(loaded.set_password("carol", b"x", &FAST).is_err());
        loaded.save(&path).unwrap();
        let again = AccountsFile::load(&path).unwrap();
        assert_eq!(again.accounts.len(), 1);
        assert!(verify_password(&again.accounts[0].password, b"new"));
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Locked edits.
        AccountsFile::edit_locked(&path, false, |file| file.add("zed", b"pw", &FAST)).unwrap();
        assert!(AccountsFile::load(&path).unwrap().find("zed").is_some());
        let missing = dir.path().join("missing.toml");
        assert!(AccountsFile::edit_locked(&missing, false, |_| Ok(())).is_err());
        AccountsFile::edit_locked(&missing, true, |file| file.add("a", b"pw", &FAST)).unwrap();
        assert!(missing.exists());
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut file = AccountsFile::default();
        file.add("alice", b"pw", &FAST).unwrap();
        file.set_totp_secret("alice", Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_owned()))
            .unwrap();
        let debug = format!("{file:?}");
        assert!(!debug.contains("argon2id"), "{debug}");
        assert!(!debug.contains("JBSWY3DP"), "{debug}");
        assert!(debug.contains("alice"));
    }

    #[test]
    fn bad_files_are_refused_without_quoting_them() {
        let path = Path::new("accounts.toml");
        let secret = "[[account]]\nname = \"a\"\npassword = \"hunter2-plain\"\n";
        let error = AccountsFile::parse(secret, path).unwrap_err().to_string();
        assert!(error.contains("not a PHC string"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let syntax = "[[account]]\nname = \"a\"\npassword = \"$argon2id$oops\nbroken";
        let error = AccountsFile::parse(syntax, path).unwrap_err().to_string();
        assert!(error.starts_with("accounts.toml: 4:"), "{error}");
        assert!(!error.contains("oops"), "{error}");
        // Values in serde's messages (a password typed into the wrong key) are not echoed.
        let typed = "[[account]]\nname = \"a\"\ndisabled = \"hunter2-typed\"\n";
        let error = AccountsFile::parse(typed, path).unwrap_err().to_string();
        assert!(error.contains("3:"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let number = "[[account]]\nname = \"a\"\npassword = 31415926535\n";
        let error = AccountsFile::parse(number, path).unwrap_err().to_string();
        assert!(!error.contains("31415926535"), "{error}");
        let key = "[[account]]\nname = \"a\"\nhunter2-as-key = 1\n";
        let error = AccountsFile::parse(key, path).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("`password`"), "{error}");
        let country = format!(
            "[[account]]\nname = \"a\"\npassword = \"{DUMMY_HASH}\"\n\
             allow_countries = [\"GB\", \"hunter2-country\"]\n"
        );
        let error = AccountsFile::parse(&country, path).unwrap_err().to_string();
        assert!(error.contains("allow_countries[1]"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        // Hashes below OWASP's argon2id minimum are counted (the proxy warns at start).
        let mut weak = AccountsFile::default();
        weak.add(
            "cheap",
            b"pw",
            &HashParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        )
        .unwrap();
        assert_eq!(weak.weak_hash_count(), 1);
        let strong = format!("[[account]]\nname = \"a\"\npassword = \"{DUMMY_HASH}\"\n");
        assert_eq!(
            AccountsFile::parse(&strong, path)
                .unwrap()
                .weak_hash_count(),
            0
        );
        // `client:<hash>` is an unauthenticated client's strike subject, never an account.
        let mut file = AccountsFile::default();
        let fast = HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let error = file.add("client:0123abcd", b"pw", &fast).unwrap_err();
        assert!(error.to_string().contains("client:"), "{error}");
        let reserved =
            format!("[[account]]\nname = \"client:0123abcd\"\npassword = \"{DUMMY_HASH}\"\n");
        assert!(AccountsFile::parse(&reserved, path).is_err());
        let twice = format!(
            "[[account]]\nname = \"a\"\npassword = \"{DUMMY_HASH}\"\n\
             [[account]]\nname = \"a\"\npassword = \"{DUMMY_HASH}\"\n"
        );
        assert!(
            AccountsFile::parse(&twice, path)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
