//! Local Service Discovery (BEP 14): an HTTP-like announcement multicast to
//! 239.192.152.143:6771 or [ff15::efc0:988f]:6771.
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: <host>\r\n
//! Port: <port>\r\n
//! Infohash: <40 hex>\r\n      (one or more)
//! cookie: <opt>\r\n
//! \r\n
//! ```
//!
//! Decisive on the exact start line plus at least one well-formed `Infohash:` header (40 hex
//! digits; 64 accepted for v2 hashes) in a header block of well-formed lines (docs §1.12).
//! SSDP (`M-SEARCH * HTTP/1.1`, `NOTIFY * HTTP/1.1`) never matches the start line.

/// The BEP 14 start line.
const START_LINE: &[u8] = b"BT-SEARCH * HTTP/1.1\r\n";

/// At most this many header lines are read.
const MAX_HEADERS: usize = 32;

/// True when `datagram` is a BEP 14 announcement.
pub(super) fn is_bt_search(datagram: &[u8]) -> bool {
    let Some(mut rest) = datagram.strip_prefix(START_LINE) else {
        return false;
    };
    let mut infohash = false;
    for _ in 0..MAX_HEADERS {
        let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
            // libtorrent ends the block with a blank line; tolerate a datagram cut after the
            // last header only when an infohash was already seen.
            return infohash && rest.is_empty();
        };
        let (line, tail) = rest.split_at(end);
        rest = tail.get(2..).unwrap_or_default();
        if line.is_empty() {
            return infohash;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return false;
        };
        let (name, value) = line.split_at(colon);
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
            return false;
        }
        let value = trim(value.get(1..).unwrap_or_default());
        if name.eq_ignore_ascii_case(b"infohash") {
            if !matches!(value.len(), 40 | 64) || !value.iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            infohash = true;
        } else if name.eq_ignore_ascii_case(b"port")
            && (value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit))
        {
            return false;
        }
    }
    false
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let Some((b' ' | b'\t', rest)) = value.split_first() {
        value = rest;
    }
    while let Some((b' ' | b'\t', rest)) = value.split_last() {
        value = rest;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The announcement as libtorrent 2.0 formats it (`src/lsd.cpp`).
    const LIBTORRENT: &[u8] = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\ncookie: 5a3f\r\n\r\n\r\n";

    #[test]
    fn accepts_bep14() {
        assert!(is_bt_search(LIBTORRENT));
        let two = b"BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\nPort: 6881\r\nInfohash: 0123456789ABCDEF0123456789ABCDEF01234567\r\nInfohash: 89abcdef0123456789abcdef0123456789abcdef\r\n\r\n";
        assert!(is_bt_search(two));
    }

    #[test]
    fn rejects_ssdp_and_bad_hashes() {
        for bad in [
            &b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n"[..],
            b"BT-SEARCH * HTTP/1.1\r\nHost: x\r\nPort: 6881\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nInfohash: 0123456789abcdef0123456789abcdef0123456\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nInfohash: 0123456789abcdef0123456789abcdef0123456z\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nPort: 68a1\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\n\r\n",
            b"BT-SEARCH * HTTP/1.0\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\n\r\n",
        ] {
            assert!(!is_bt_search(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
