//! The admin bearer token: loaded from a file, kept only as its SHA-256 hash, compared in
//! constant time; and the middleware that guards `/api/` (and `/metrics` when asked to).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminContext;
use super::handlers::error_response;

/// Shortest token accepted (bytes, after trimming whitespace).
const MIN_TOKEN_BYTES: usize = 16;
/// Longest token accepted; a longer file is almost certainly the wrong file.
const MAX_TOKEN_BYTES: usize = 4096;

/// The admin API token. Only its SHA-256 hash is kept; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct AdminToken {
    hash: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminTokenError {
    /// The file could not be read.
    #[error("{path}: cannot read admin token: {source}")]
    Read {
        /// Token file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file does not hold a usable token.
    #[error("{path}: {message}")]
    Invalid {
        /// Token file.
        path: PathBuf,
        /// What is wrong (never the token itself).
        message: String,
    },
}

impl AdminToken {
    /// Load the token from `path` (plain text; surrounding whitespace is ignored). Logs a
    /// warning when the file is readable or writable by group or others (it should be 0600).
    pub fn from_file(path: &Path) -> Result<Self, AdminTokenError> {
        let read_error = |source| AdminTokenError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit to tell a long file from a full one.
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, (MAX_TOKEN_BYTES + 64) as u64),
            &mut bytes,
        )
        .map_err(read_error)?;
        let bytes = zeroize::Zeroizing::new(bytes);
        if let Some(mode) = loose_mode(path) {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:04o}"),
                "admin token file is accessible by group or others; chmod 600 it"
            );
        }
        Self::from_secret(&bytes).map_err(|message| AdminTokenError::Invalid {
            path: path.to_owned(),
            message: message.to_owned(),
        })
    }

    /// A token from its secret bytes (surrounding whitespace ignored). At least 16 bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, &'static str> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_TOKEN_BYTES {
            return Err("admin token is shorter than 16 characters");
        }
        if secret.len() > MAX_TOKEN_BYTES {
            return Err("admin token is longer than 4096 characters");
        }
        if secret.iter().any(|byte| !byte.is_ascii_graphic()) {
            return Err("admin token must be printable ASCII without spaces");
        }
        Ok(Self {
            hash: Sha256::digest(secret).into(),
        })
    }

    /// True when `presented` is the token (constant time in the stored value).
    pub fn verify(&self, presented: &[u8]) -> bool {
        let hash: [u8; 32] = Sha256::digest(presented).into();
        hash.ct_eq(&self.hash).into()
    }
}

/// The file's permission bits when group or others have any access.
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// True when the request carries `Authorization: Bearer <token>` with the right token.
pub(crate) fn authorized(context: &AdminContext, headers: &HeaderMap) -> bool {
    let Some(token) = context.token.as_ref() else {
        return false;
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(scheme) = value.get(..7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    value
        .get(7..)
        .is_some_and(|presented| token.verify(presented.trim_ascii()))
}

/// Middleware: every `/api/` path (known or not, any method) and, when configured,
/// `/metrics` need the token; 401 otherwise, before routing can answer 404 or 405.
pub(crate) async fn require_token(
    State(context): State<Arc<AdminContext>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let guarded = path == "/api"
        || path.starts_with("/api/")
        || (path == "/metrics" && context.metrics_require_token);
    if guarded && !authorized(&context, request.headers()) {
        context.metrics.admin_auth_failures.inc();
        let message = if context.token.is_some() {
            "missing or wrong bearer token"
        } else {
            "no admin token is configured (--admin-token-file); the API is disabled"
        };
        let mut response = error_response(StatusCode::UNAUTHORIZED, message).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"swarmwall-admin\""),
        );
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_verifies_only_itself() {
        let token = AdminToken::from_secret(b"correct-horse-battery-staple\n").unwrap();
        assert!(token.verify(b"correct-horse-battery-staple"));
        assert!(!token.verify(b"correct-horse-battery-stapl"));
        assert!(!token.verify(b""));
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn short_or_odd_tokens_are_refused() {
        assert!(AdminToken::from_secret(b"short").is_err());
        assert!(AdminToken::from_secret(b"has a space in the middle").is_err());
        assert!(AdminToken::from_secret(&[b'a'; 5000]).is_err());
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_mode(&path), None);
        let token = AdminToken::from_file(&path).unwrap();
        assert!(token.verify(b"0123456789abcdef0123"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(loose_mode(&path), Some(0o644));
        let missing = AdminToken::from_file(&dir.path().join("absent")).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let directory = AdminToken::from_file(dir.path()).unwrap_err();
        assert!(directory.to_string().contains("cannot read"), "{directory}");
        std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
        let long = AdminToken::from_file(&path).unwrap_err();
        assert!(long.to_string().contains("longer than"), "{long}");
    }
}
