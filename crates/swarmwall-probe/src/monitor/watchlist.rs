//! The watchlist: one work per line, as a 40-hex or 32-base32 info-hash, a magnet link (its
//! `tr=` trackers are used), or a path to a `.torrent` file (its `announce` and
//! `announce-list` are used). Empty lines and lines starting with `#` are skipped. A line that
//! cannot be parsed is reported with its number; the others still run.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use swarmwall_core::bt::bencode::{self, BencodeError, Limits, Value};

/// Largest `.torrent` file read.
const MAX_TORRENT_BYTES: u64 = 16 * 1024 * 1024;

/// One watched work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// The v1 info-hash (SHA-1 of the bencoded info dictionary).
    pub info_hash: [u8; 20],
    /// Tracker URLs (`http://…/announce`, `udp://host:port/…`) from the magnet or torrent.
    pub trackers: Vec<String>,
    /// Line number in the watchlist (1-based).
    pub line: usize,
}

impl Work {
    /// The info-hash as 40 lowercase hex digits.
    pub fn info_hash_hex(&self) -> String {
        hex::encode(self.info_hash)
    }
}

/// A watchlist line that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("watchlist line {line}: {problem}")]
pub struct EntryError {
    /// Line number (1-based).
    pub line: usize,
    /// Why.
    pub problem: WatchlistError,
}

/// Why a watchlist entry (or a `.torrent` file) is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchlistError {
    /// Neither an info-hash, a magnet link nor a `.torrent` file (the entry, truncated).
    #[error(
        "not an info-hash (40 hex or 32 base32 characters), a magnet link or a .torrent file: \
         {0:?}"
    )]
    Unrecognised(String),
    /// A magnet link with an invalid `%XX` escape or non-UTF-8 text.
    #[error("bad percent-encoding in the magnet link")]
    MagnetEncoding,
    /// A magnet `xt` whose info-hash does not parse (truncated).
    #[error("bad info-hash in magnet xt: {0:?}")]
    MagnetHash(String),
    /// A magnet link without `xt=urn:btih:`.
    #[error("magnet link without a v1 info-hash (xt=urn:btih:…)")]
    MagnetWithoutHash,
    /// The `.torrent` file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `.torrent` file is over the size bound.
    #[error("{} is larger than 16 MiB", .0.display())]
    TooLarge(PathBuf),
    /// The bytes are not a usable `.torrent` file.
    #[error("{}: {problem}", path.display())]
    Torrent {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: TorrentError,
    },
}

/// Why bytes are not a usable `.torrent` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TorrentError {
    /// Not bencoded within the bounds.
    #[error("not a valid .torrent file ({0})")]
    Bencode(BencodeError),
    /// No `info` dictionary.
    #[error("no info dictionary")]
    NoInfo,
}

/// Parse a watchlist. Relative `.torrent` paths are resolved against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> (Vec<Work>, Vec<EntryError>) {
    let mut works = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        match parse_entry(entry, base_dir) {
            Ok((info_hash, trackers)) => works.push(Work {
                info_hash,
                trackers,
                line,
            }),
            Err(problem) => errors.push(EntryError { line, problem }),
        }
    }
    (works, errors)
}

fn parse_entry(entry: &str, base_dir: &Path) -> Result<([u8; 20], Vec<String>), WatchlistError> {
    if let Some(query) = entry.strip_prefix("magnet:?") {
        return parse_magnet(query);
    }
    if let Some(hash) = parse_info_hash(entry) {
        return Ok((hash, Vec::new()));
    }
    let path = base_dir.join(entry);
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("torrent"))
        || path.is_file()
    {
        return read_torrent(&path);
    }
    Err(WatchlistError::Unrecognised(truncate(entry)))
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A v1 info-hash as 40 hex digits or 32 base32 characters (RFC 4648 alphabet).
pub fn parse_info_hash(text: &str) -> Option<[u8; 20]> {
    match text.len() {
        40 => {
            let mut out = [0u8; 20];
            hex::decode_to_slice(text, &mut out).ok()?;
            Some(out)
        }
        32 => base32_decode(text),
        _ => None,
    }
}

fn base32_decode(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    let mut written = 0usize;
    for c in text.bytes() {
        let value = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(written)? = (buffer >> bits) as u8;
            written += 1;
        }
    }
    (written == 20).then_some(out)
}

fn parse_magnet(query: &str) -> Result<([u8; 20], Vec<String>), WatchlistError> {
    let mut hash = None;
    let mut trackers = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or(WatchlistError::MagnetEncoding)?;
        match key {
            "xt" => {
                if let Some(text) = value.strip_prefix("urn:btih:") {
                    hash = Some(
                        parse_info_hash(text)
                            .ok_or_else(|| WatchlistError::MagnetHash(truncate(text)))?,
                    );
                }
            }
            "tr" => trackers.push(value),
            _ => {}
        }
    }
    let hash = hash.ok_or(WatchlistError::MagnetWithoutHash)?;
    Ok((hash, trackers))
}

/// Decode `%XX` escapes and `+` (as a space); `None` for invalid escapes or non-UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let hex_pair = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex_pair).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn read_torrent(path: &Path) -> Result<([u8; 20], Vec<String>), WatchlistError> {
    let read_error = |source| WatchlistError::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if metadata.len() > MAX_TORRENT_BYTES {
        return Err(WatchlistError::TooLarge(path.to_owned()));
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    parse_torrent(&bytes).map_err(|problem| WatchlistError::Torrent {
        path: path.to_owned(),
        problem,
    })
}

/// Info-hash and trackers of a `.torrent` file's bytes.
pub fn parse_torrent(bytes: &[u8]) -> Result<([u8; 20], Vec<String>), TorrentError> {
    let limits = Limits {
        max_depth: 16,
        max_items: 1_000_000,
    };
    let root = bencode::parse_exact(bytes, limits).map_err(TorrentError::Bencode)?;
    let Some(Value::Dict(info)) = root.get(b"info") else {
        return Err(TorrentError::NoInfo);
    };
    // `Value::Dict` keeps the raw bencoded bytes: hashing them gives the v1 info-hash.
    let info_hash: [u8; 20] = Sha1::digest(info).into();
    let mut trackers = Vec::new();
    let mut add = |value: Value<'_>| {
        if let Some(url) = value.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
            && !trackers.iter().any(|t| t == url)
        {
            trackers.push(url.to_owned());
        }
    };
    if let Some(announce) = root.get(b"announce") {
        add(announce);
    }
    if let Some(tiers) = root.get(b"announce-list") {
        for tier in tiers.list_items() {
            for url in tier.list_items() {
                add(url);
            }
        }
    }
    Ok((info_hash, trackers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_base32_magnet_and_comments() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let base32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        let text = format!(
            "# watched works\n\n{hex}\n{base32}\nmagnet:?xt=urn:btih:{hex}&dn=x&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp%3A%2F%2F127.0.0.1%3A6969\nnot a hash\n"
        );
        let (works, errors) = parse(&text, Path::new("."));
        assert_eq!(works.len(), 3);
        assert_eq!(works[0].info_hash, works[1].info_hash);
        assert_eq!(works[0].line, 3);
        assert_eq!(
            works[2].trackers,
            vec!["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 6);
    }

    #[test]
    fn torrent_info_hash_is_sha1_of_the_raw_info_dict() {
        let info = b"d6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let mut torrent = b"d8:announce27:http://127.0.0.1:1/announce13:announce-listll26:udp://127.0.0.1:2/announceee4:info".to_vec();
        torrent.extend_from_slice(info);
        torrent.push(b'e');
        let (hash, trackers) = parse_torrent(&torrent).expect("parses");
        let expected: [u8; 20] = Sha1::digest(info).into();
        assert_eq!(hash, expected);
        assert_eq!(trackers.len(), 2);
    }

    #[test]
    fn bad_magnets_are_errors() {
        let (works, errors) = parse(
            "magnet:?dn=nothing\nmagnet:?xt=urn:btih:zz\n",
            Path::new("."),
        );
        assert!(works.is_empty());
        assert_eq!(errors.len(), 2);
        assert!(matches!(
            errors[0].problem,
            WatchlistError::MagnetWithoutHash
        ));
        assert_eq!(
            errors[1].to_string(),
            "watchlist line 2: bad info-hash in magnet xt: \"zz\""
        );
        assert_eq!(parse_torrent(b"d4:name1:ae"), Err(TorrentError::NoInfo));
    }
}
