//! The pseudonymisation key and the one HMAC-SHA256 helper ([`hmac_sha256`]) every keyed hash
//! of the server goes through (pseudonyms, the audit chain, the verification memory, signed
//! store values). Client addresses reach the state store and the security event log
//! only as keyed hashes (HMAC-SHA256, hex, truncated), so a leaked store or log does not reveal
//! who connected, and the hashes cannot be reversed by hashing the whole IPv4 space without the
//! key. The key lives in its own file (never in the configuration), created with mode 0600.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// HMAC-SHA256 of the concatenation of `parts` under `key` (any key length). The one place the
/// server computes an HMAC-SHA256; callers domain-separate with their own prefixes.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Hex characters kept from a keyed hash (64 bits: enough to tell clients apart).
const HASH_HEX_LEN: usize = 16;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Unreadable or unwritable.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not 64 hex characters.
    #[error("{path}: not a 32-byte hex key")]
    Malformed {
        /// File.
        path: String,
    },
    /// Readable or writable by group or others: anyone who can read it can reverse the
    /// keyed hashes (and, with a keyed audit chain, forge it).
    #[error(
        "{path}: mode {mode:04o} gives group or others access to the secret key; \
         run `chmod 600 {path}` (and consider the key burned if others could read it)"
    )]
    Shared {
        /// File.
        path: String,
        /// Permission bits found.
        mode: u32,
    },
    /// Inside a git work tree, where one `git add -A` publishes it.
    #[error(
        "{path}: refusing a secret key inside the git work tree {work_tree}; keep it in the \
         data directory (the default) or set `[security] secret_key_file` outside any \
         repository (a key that was ever committed is burned: delete it and let a new one \
         be created)"
    )]
    InGitWorkTree {
        /// File.
        path: String,
        /// The directory holding `.git`.
        work_tree: String,
    },
}

/// A 32-byte key for keyed hashes of client addresses. Its Debug output is redacted and it is
/// wiped from memory when dropped.
#[derive(Clone)]
pub struct PseudonymKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

impl PseudonymKey {
    /// A fresh random key (tests, or when nothing must survive a restart).
    pub fn random() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self { key }
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(bytes),
        }
    }

    /// Read the key from `path` (64 hex characters), creating the file with a new random key
    /// and mode 0600 when it does not exist. Refuses a file that group or others may access
    /// ([`KeyError::Shared`]) and any path inside a git work tree ([`KeyError::InGitWorkTree`]).
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(work_tree) = enclosing_git_work_tree(path) {
            return Err(KeyError::InGitWorkTree {
                path: path.display().to_string(),
                work_tree: work_tree.display().to_string(),
            });
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Some(mode) = shared_mode(path) {
                    return Err(KeyError::Shared {
                        path: path.display().to_string(),
                        mode,
                    });
                }
                let text = Zeroizing::new(text);
                let mut key = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| {
                    KeyError::Malformed {
                        path: path.display().to_string(),
                    }
                })?;
                Ok(Self { key })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random();
                let text = Zeroizing::new(format!("{}\n", hex::encode(&key.key[..])));
                let mut file = private_file_options().open(path).map_err(io)?;
                file.write_all(text.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(error) => Err(io(error)),
        }
    }

    /// Keyed hash of a client address: HMAC-SHA256, first 16 hex characters.
    pub fn hash_address(&self, address: IpAddr) -> String {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        let digest = match address {
            IpAddr::V4(v4) => hmac_sha256(&self.key[..], &[&v4.octets()]),
            IpAddr::V6(v6) => hmac_sha256(&self.key[..], &[&v6.octets()]),
        };
        let mut text = hex::encode(digest);
        text.truncate(HASH_HEX_LEN);
        text
    }

    /// Keyed hash of the network a client address belongs to for brute-force counting: the
    /// address itself for IPv4, its /64 for IPv6 (one host usually holds a whole /64, so
    /// rotating addresses inside it must not reset the count).
    pub fn hash_network(&self, address: IpAddr) -> String {
        let address = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(bits.into())
                }
            },
            IpAddr::V4(_) => address,
        };
        self.hash_address(address)
    }

    /// A 32-byte subkey for `purpose` (HMAC of the label): lets other modules key their own
    /// hashes from the same secret file without ever seeing the key itself.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.key[..], &[b"derive:", purpose.as_bytes()])
    }

    /// Keyed hash of arbitrary bytes (e.g. a login name that is not an account), 16 hex.
    pub fn hash_bytes(&self, data: &[u8]) -> String {
        let mut text = hex::encode(hmac_sha256(&self.key[..], &[b"bytes:", data]));
        text.truncate(HASH_HEX_LEN);
        text
    }
}

/// Options that create a new file readable and writable by its owner only.
pub(crate) fn private_file_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    options
}

/// Log a warning when `path` is readable or writable by group or others.
pub fn warn_if_shared(path: &Path) {
    if let Some(mode) = shared_mode(path) {
        tracing::warn!(
            file = %path.display(),
            mode = format_args!("{mode:04o}"),
            "secret file is accessible by group or others; run chmod 600"
        );
    }
}

/// The nearest directory at or above `path`'s directory that holds a `.git` entry (a
/// repository or a linked work tree), if any.
pub(crate) fn enclosing_git_work_tree(path: &Path) -> Option<std::path::PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let directory = absolute.parent()?;
    // Resolve symbolic links where the directory exists, so a link into a repository counts.
    let directory = std::fs::canonicalize(directory).unwrap_or_else(|_| directory.to_owned());
    directory
        .ancestors()
        .find(|ancestor| ancestor.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The file's permission bits when group or others have any access to it.
pub fn shared_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let first = PseudonymKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(shared_mode(&path), None);
        let second = PseudonymKey::load_or_create(&path).unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(first.hash_address(client), second.hash_address(client));
        assert_eq!(first.hash_address(client).len(), 16);
        assert_ne!(
            first.hash_address(client),
            PseudonymKey::random().hash_address(client)
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(shared_mode(&path), Some(0o644));
    }

    #[test]
    fn mapped_addresses_hash_like_ipv4() {
        let key = PseudonymKey::random();
        assert_eq!(
            key.hash_address("::ffff:192.0.2.7".parse().unwrap()),
            key.hash_address("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_networks_hash_by_slash_64() {
        let key = PseudonymKey::random();
        let a = "2001:db8:1:2::1".parse().unwrap();
        let b = "2001:db8:1:2:ffff::7".parse().unwrap();
        let c = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key.hash_network(a), key.hash_network(b));
        assert_ne!(key.hash_network(a), key.hash_network(c));
        assert_ne!(key.hash_address(a), key.hash_address(b));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(key.hash_network(v4), key.hash_address(v4));
        assert_ne!(key.hash_bytes(b"x"), key.hash_bytes(b"y"));
    }

    #[test]
    fn shared_or_versioned_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        PseudonymKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = PseudonymKey::load_or_create(&path).unwrap_err();
        assert!(
            matches!(error, KeyError::Shared { mode: 0o640, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"));

        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        let inside = repo.join("sub/key");
        let error = PseudonymKey::load_or_create(&inside).unwrap_err();
        assert!(matches!(error, KeyError::InGitWorkTree { .. }), "{error}");
        assert!(!inside.exists(), "no key may be written inside a work tree");
        // A linked work tree has a `.git` file, not a directory.
        let linked = dir.path().join("linked");
        std::fs::create_dir_all(&linked).unwrap();
        std::fs::write(linked.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert!(enclosing_git_work_tree(&linked.join("key")).is_some());
        assert!(enclosing_git_work_tree(&dir.path().join("key")).is_none());
    }

    #[test]
    fn debug_is_redacted_and_bad_files_fail() {
        let key = PseudonymKey::from_bytes([7; 32]);
        assert_eq!(format!("{key:?}"), "PseudonymKey(<redacted>)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "nothex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            PseudonymKey::load_or_create(&path),
            Err(KeyError::Malformed { .. })
        ));
    }
}
