//! TOTP (RFC 6238) helpers over totp-rs: SHA-1, 6 digits, 30-second steps, one step of skew
//! either way (RFC 6238 section 5.2). Time is passed in; replay protection and trusted windows
//! are the authenticator's job (store namespaces `TotpReplay` and `TrustedWindow`).

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds per step.
pub const STEP_SECS: u64 = 30;

/// A freshly enrolled TOTP secret with its provisioning URI.
pub struct Enrolment {
    /// Base32 secret to store in the accounts file.
    pub secret_base32: String,
    /// `otpauth://totp/...` URI for authenticator apps.
    pub uri: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(<redacted>)")
    }
}

impl Drop for Enrolment {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret_base32.zeroize();
        self.uri.zeroize();
    }
}

/// Why a TOTP secret is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    /// Not base32, too short, or a name with a colon.
    #[error("invalid TOTP setup: {0}")]
    Invalid(String),
}

/// Generate a new 160-bit secret for `account` and its `otpauth://` URI.
pub fn enrol(account: &str, issuer: &str) -> Result<Enrolment, TotpError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 20]);
    rand::fill(&mut bytes[..]);
    let totp = builder(Secret::from(*bytes))
        .with_account_name(account)
        .with_issuer(Some(issuer))
        .build()
        .map_err(|error| TotpError::Invalid(error.to_string()))?;
    let uri = totp
        .to_url()
        .map_err(|error| TotpError::Invalid(error.to_string()))?;
    Ok(Enrolment {
        secret_base32: totp.secret().to_base32(),
        uri,
    })
}

/// The step (`unix_secs / 30`) whose code equals `code`, within one step either way of
/// `unix_secs`; `None` for a wrong code or a bad secret. Compared in constant time by totp-rs.
pub fn check(secret_base32: &str, code: &str, unix_secs: u64) -> Option<u64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    let totp = builder(secret).build().ok()?;
    totp.check(code, unix_secs)
}

/// The code for `unix_secs` (tests and tools).
pub fn code_at(secret_base32: &str, unix_secs: u64) -> Option<String> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    let totp: Totp = builder(secret).build().ok()?;
    Some(totp.generate(unix_secs).to_string())
}

fn builder(secret: Secret) -> Builder {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECS)
        .with_secret(secret)
}

/// Split `input` into `(password, code)` when it ends with six ASCII digits.
pub(crate) fn split_code(input: &[u8]) -> Option<(&[u8], &str)> {
    let split = input.len().checked_sub(DIGITS)?;
    let (password, code) = input.split_at(split);
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((password, std::str::from_utf8(code).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B secret ("12345678901234567890"), base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_vectors() {
        // Appendix B, SHA-1, truncated to 6 digits.
        assert_eq!(code_at(RFC_SECRET, 59).unwrap(), "287082");
        assert_eq!(code_at(RFC_SECRET, 1_111_111_109).unwrap(), "081804");
        assert_eq!(code_at(RFC_SECRET, 2_000_000_000).unwrap(), "279037");
    }

    #[test]
    fn one_step_of_skew_either_way() {
        let now = 1_700_000_000;
        let code = code_at(RFC_SECRET, now).unwrap();
        assert_eq!(check(RFC_SECRET, &code, now), Some(now / 30));
        assert_eq!(check(RFC_SECRET, &code, now + 30), Some(now / 30));
        assert_eq!(check(RFC_SECRET, &code, now - 30), Some(now / 30));
        assert_eq!(check(RFC_SECRET, &code, now + 90), None);
        assert_eq!(check(RFC_SECRET, &code, now - 90), None);
        assert_eq!(check(RFC_SECRET, "12345", now), None);
        assert_eq!(check(RFC_SECRET, "12345a", now), None);
        assert_eq!(check("not base32!", &code, now), None);
    }

    #[test]
    fn enrolment_uri_and_secret() {
        let enrolment = enrol("alice", "swarmwall").unwrap();
        assert!(enrolment.uri.starts_with("otpauth://totp/swarmwall:alice?"));
        assert!(enrolment.uri.contains(&enrolment.secret_base32));
        let code = code_at(&enrolment.secret_base32, 1_000_000).unwrap();
        assert!(check(&enrolment.secret_base32, &code, 1_000_000).is_some());
        assert_eq!(format!("{enrolment:?}"), "Enrolment(<redacted>)");
        assert!(enrol("a:b", "swarmwall").is_err());
    }

    #[test]
    fn split_password_and_code() {
        assert_eq!(
            split_code(b"hunter2123456"),
            Some((&b"hunter2"[..], "123456"))
        );
        assert_eq!(split_code(b"123456"), Some((&b""[..], "123456")));
        assert_eq!(split_code(b"12345"), None);
        assert_eq!(split_code(b"hunter12345x"), None);
    }
}
