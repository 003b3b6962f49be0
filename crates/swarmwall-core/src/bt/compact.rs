//! Compact peer addresses (BEP 23, BEP 7, BEP 5): 4-byte IPv4 or 16-byte IPv6 address followed
//! by a 2-byte big-endian port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One compact address (6 or 18 bytes); `None` for any other length.
pub fn address(entry: &[u8]) -> Option<SocketAddr> {
    match entry.len() {
        6 => {
            let octets: [u8; 4] = entry.get(..4)?.try_into().ok()?;
            let port = u16::from_be_bytes([*entry.get(4)?, *entry.get(5)?]);
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port))
        }
        18 => {
            let octets: [u8; 16] = entry.get(..16)?.try_into().ok()?;
            let port = u16::from_be_bytes([*entry.get(16)?, *entry.get(17)?]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
    }
}

/// Hand every 6-byte (IPv4) or 18-byte (IPv6) entry of `bytes` to `visit`; a trailing partial
/// entry is ignored. Returns the number visited.
pub fn visit_peers(bytes: &[u8], ipv6: bool, visit: &mut dyn FnMut(SocketAddr)) -> usize {
    let size = if ipv6 { 18 } else { 6 };
    let mut count = 0;
    for entry in bytes.chunks_exact(size) {
        if let Some(peer) = address(entry) {
            count += 1;
            visit(peer);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_and_partial_entries() {
        assert_eq!(
            address(&[127, 0, 0, 2, 0x1a, 0xe1]),
            Some("127.0.0.2:6881".parse().unwrap())
        );
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[17] = 80;
        assert_eq!(address(&v6), Some("[::1]:80".parse().unwrap()));
        assert_eq!(address(&[1, 2, 3]), None);
        let mut seen = Vec::new();
        let bytes = [127, 0, 0, 2, 0, 1, 127, 0, 0, 3, 0, 2, 9, 9];
        assert_eq!(visit_peers(&bytes, false, &mut |a| seen.push(a)), 2);
        assert_eq!(seen.len(), 2);
    }
}
