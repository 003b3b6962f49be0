//! Authentication of SOCKS5 users (RFC 1929 username/password).
//!
//! MINIMAL VERSION: accounts come from a TOML file with argon2id PHC hashes and are verified
//! off the async threads. The account-security work extends this module (TOTP, lockout,
//! GeoIP, impossible travel, audit events) behind the same [`Authenticator::authenticate`].

mod accounts;

use std::net::IpAddr;
use std::sync::Arc;

pub use accounts::{Account, AccountsError, AccountsFile};

/// Why a login was refused. Clients always see the same RFC 1929 failure; this is for metrics
/// and security events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Unknown user or wrong password (indistinguishable on purpose).
    BadCredentials,
    /// The account is disabled.
    Disabled,
}

impl RejectReason {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadCredentials => "bad_credentials",
            Self::Disabled => "disabled",
        }
    }
}

/// Result of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Logged in as this account.
    Accepted {
        /// Account name.
        account: String,
    },
    /// Refused.
    Rejected(RejectReason),
}

/// Checks credentials against the loaded accounts.
#[derive(Debug, Clone)]
pub struct Authenticator {
    accounts: Arc<AccountsFile>,
}

impl Authenticator {
    /// Authenticator over a loaded accounts file.
    pub fn new(accounts: AccountsFile) -> Self {
        Self {
            accounts: Arc::new(accounts),
        }
    }

    /// True when at least one account exists (the server then requires RFC 1929).
    pub fn has_accounts(&self) -> bool {
        !self.accounts.accounts.is_empty()
    }

    /// Verify `username`/`password` for a client at `client`. An unknown user costs the same
    /// argon2 verification as a known one.
    pub async fn authenticate(
        &self,
        username: &[u8],
        password: &[u8],
        client: IpAddr,
    ) -> AuthOutcome {
        let _ = client;
        let accounts = Arc::clone(&self.accounts);
        let username = String::from_utf8_lossy(username).into_owned();
        let password = zeroize::Zeroizing::new(password.to_vec());
        let verdict = tokio::task::spawn_blocking(move || {
            let account = accounts.find(&username);
            let hash = account.map_or(accounts::DUMMY_HASH, |a| a.password.as_str());
            let matches = accounts::verify_password(hash, &password);
            match account {
                Some(account) if matches && !account.disabled => AuthOutcome::Accepted {
                    account: account.name.clone(),
                },
                Some(account) if matches && account.disabled => {
                    AuthOutcome::Rejected(RejectReason::Disabled)
                }
                _ => AuthOutcome::Rejected(RejectReason::BadCredentials),
            }
        })
        .await;
        verdict.unwrap_or(AuthOutcome::Rejected(RejectReason::BadCredentials))
    }
}
