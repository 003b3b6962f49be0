//! The accounts file (TOML):
//!
//! ```toml
//! [[account]]
//! name = "alice"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # PHC string, never plain text
//! disabled = false
//! ```

use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use serde::{Deserialize, Serialize};

/// A valid argon2id hash of a random password, verified for unknown users so that a wrong
/// user and a wrong password cost the same.
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
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("disabled", &self.disabled)
            .finish()
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

/// Why the accounts file could not be loaded.
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
        /// What is wrong, with line and key.
        message: String,
    },
}

impl AccountsFile {
    /// Load and parse `path`.
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| AccountsError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }

    /// The account called `name`.
    pub fn find(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|account| account.name == name)
    }
}

/// Verify `password` against a PHC string; false for malformed hashes.
pub(crate) fn verify_password(phc: &str, password: &[u8]) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
}
