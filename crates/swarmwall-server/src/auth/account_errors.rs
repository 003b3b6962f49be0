//! Checks of account records and names, with typed errors: the messages name the account and
//! the field, never a value (a mistyped line may hold a secret).

/// Longest accepted account name (bytes); RFC 1929 allows 255.
const MAX_NAME_LEN: usize = 255;

/// Why an account record is refused. The message names the account and the field, never the
/// value (a mistyped line may hold a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// `password` is not a PHC string.
    #[error("account `{account}`: `password` is not a PHC string (use `swarmwall user passwd`)")]
    Password {
        /// Account name.
        account: String,
    },
    /// `totp_secret` is not base32.
    #[error("account `{account}`: `totp_secret` is not base32")]
    TotpSecret {
        /// Account name.
        account: String,
    },
    /// An entry of a country list is not a two-letter code.
    #[error("account `{account}`: {key}[{position}] is not a two-letter country code")]
    Country {
        /// Account name.
        account: String,
        /// `allow_countries` or `deny_countries`.
        key: &'static str,
        /// Index of the bad entry.
        position: usize,
    },
    /// The name of the `number`th account (from 1) is refused.
    #[error("account #{number}: {error}")]
    Name {
        /// Position in the file, from 1.
        number: usize,
        /// What is wrong with the name.
        error: NameError,
    },
    /// Two accounts share a name.
    #[error("account `{account}` appears twice")]
    Duplicate {
        /// Account name.
        account: String,
    },
}

/// Why an account name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty or longer than 255 bytes.
    #[error("account names are 1 to 255 bytes")]
    Length,
    /// Holds a space or a control character.
    #[error("account names have no spaces or control characters")]
    Characters,
    /// Starts with the prefix of unauthenticated clients' strike subjects.
    #[error(
        "account names may not start with `{prefix}` (reserved for unauthenticated clients)",
        prefix = crate::strikes::CLIENT_PREFIX
    )]
    Reserved,
}

/// Check an account name: 1 to 255 bytes, no spaces or control characters.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Length);
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NameError::Characters);
    }
    if name.starts_with(crate::strikes::CLIENT_PREFIX) {
        // `client:<hash>` is the strike subject of an unauthenticated client: an account of
        // that name would share (and could lift or inherit) that client's strikes.
        return Err(NameError::Reserved);
    }
    Ok(())
}
