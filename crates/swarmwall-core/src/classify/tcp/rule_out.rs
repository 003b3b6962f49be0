//! Rule-out signatures for TCP (spec §2.5): protocols recognised on their first bytes so that
//! a flow leaves the classifier early with a benign label.

use super::Match;

/// Compare a prefix of `bytes` against a fixed `expected` opening.
fn fixed_prefix(bytes: &[u8], expected: &[u8]) -> Match {
    let n = bytes.len().min(expected.len());
    if bytes.get(..n) != expected.get(..n) {
        Match::No
    } else if n == expected.len() {
        Match::Yes
    } else {
        Match::Partial
    }
}

/// SSH identification string (RFC 4253 §4.2): `SSH-<digit>.<digit>`; either side may send it
/// first.
pub(super) fn ssh_banner(bytes: &[u8]) -> Match {
    match fixed_prefix(bytes, b"SSH-") {
        Match::Yes => {}
        other => return other,
    }
    let version = bytes
        .get(4..7)
        .unwrap_or(bytes.get(4..).unwrap_or_default());
    let pattern: [fn(u8) -> bool; 3] = [
        |b| b.is_ascii_digit(),
        |b| b == b'.',
        |b| b.is_ascii_digit(),
    ];
    for (byte, ok) in version.iter().zip(pattern) {
        if !ok(*byte) {
            return Match::No;
        }
    }
    if version.len() == 3 {
        Match::Yes
    } else {
        Match::Partial
    }
}

/// HTTP/2 with prior knowledge: the 24-byte connection preface (RFC 9113 §3.4).
pub(super) fn http2_preface(bytes: &[u8]) -> Match {
    fixed_prefix(bytes, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
}

/// RDP: a TPKT header (version 3, reserved 0, u16 length) carrying an X.224 Connection
/// Request (length indicator = TPKT length − 5, code 0xE0), as sing-box `sniff/rdp.go` checks.
pub(super) fn rdp_connection_request(bytes: &[u8]) -> Match {
    match fixed_prefix(bytes, &[0x03, 0x00]) {
        Match::Yes => {}
        other => return other,
    }
    let (Some(&hi), Some(&lo)) = (bytes.get(2), bytes.get(3)) else {
        return Match::Partial;
    };
    let length = u16::from_be_bytes([hi, lo]);
    if !(11..=1024).contains(&length) {
        return Match::No;
    }
    let Some(&indicator) = bytes.get(4) else {
        return Match::Partial;
    };
    if u16::from(indicator) + 5 != length {
        return Match::No;
    }
    match bytes.get(5) {
        None => Match::Partial,
        Some(&0xE0) => Match::Yes,
        Some(_) => Match::No,
    }
}

/// OpenVPN over TCP: a u16 packet length, then a hard-reset opcode from the client
/// (P_CONTROL_HARD_RESET_CLIENT_V2 = 7 or _V3 = 10, key id 0, in the top five bits).
pub(super) fn openvpn_reset(bytes: &[u8]) -> Match {
    let (Some(&hi), Some(&lo)) = (bytes.first(), bytes.get(1)) else {
        return if bytes.first().is_none_or(|&b| b <= 0x04) {
            Match::Partial
        } else {
            Match::No
        };
    };
    let length = u16::from_be_bytes([hi, lo]);
    if !(14..=1024).contains(&length) {
        return Match::No;
    }
    match bytes.get(2) {
        None => Match::Partial,
        Some(&opcode) if opcode == 7 << 3 || opcode == 10 << 3 => Match::Yes,
        Some(_) => Match::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh() {
        assert_eq!(ssh_banner(b"SSH-2.0-OpenSSH_9.6\r\n"), Match::Yes);
        assert_eq!(ssh_banner(b"SSH-1.99-x"), Match::Yes);
        assert_eq!(ssh_banner(b"SSH-2"), Match::Partial);
        assert_eq!(ssh_banner(b"SS"), Match::Partial);
        assert_eq!(ssh_banner(b"SSH-x"), Match::No);
        assert_eq!(ssh_banner(b"GET "), Match::No);
    }

    #[test]
    fn rdp() {
        // mstsc's first packet: TPKT len 0x13, X.224 CR with an RDP negotiation request.
        let cr = [
            0x03, 0x00, 0x00, 0x13, 0x0E, 0xE0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08,
            0x00, 0x0B, 0x00, 0x00, 0x00,
        ];
        assert_eq!(rdp_connection_request(&cr), Match::Yes);
        assert_eq!(rdp_connection_request(&cr[..5]), Match::Partial);
        assert_eq!(
            rdp_connection_request(&[0x03, 0x00, 0x00, 0x13, 0x0F]),
            Match::No
        );
        assert_eq!(rdp_connection_request(&[0x16, 0x03]), Match::No);
    }

    #[test]
    fn http2() {
        assert_eq!(
            http2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Match::Yes
        );
        assert_eq!(http2_preface(b"PRI * HT"), Match::Partial);
        assert_eq!(http2_preface(b"POST /"), Match::No);
    }

    #[test]
    fn openvpn() {
        // Length 14, P_CONTROL_HARD_RESET_CLIENT_V2 (0x38), session id, ...
        assert_eq!(openvpn_reset(&[0x00, 0x0E, 0x38, 1, 2, 3]), Match::Yes);
        assert_eq!(openvpn_reset(&[0x00, 0x0E]), Match::Partial);
        assert_eq!(openvpn_reset(&[0x00]), Match::Partial);
        assert_eq!(openvpn_reset(&[0x99]), Match::No);
        assert_eq!(openvpn_reset(&[0x00, 0x0E, 0x39]), Match::No);
        assert_eq!(openvpn_reset(&[0x00, 0x02, 0x38]), Match::No);
    }
}
