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
/// (P_CONTROL_HARD_RESET_CLIENT_V2 = 7 or _V3 = 10, key id 0, in the top five bits), and the
/// client's first flight is that one packet (it waits for the server's reset): `flight1` is
/// the first flight's length once it is over. Without the length check, about 1 in 8,000
/// random first flights (an MSE Ya) would pass for a reset.
pub(super) fn openvpn_reset(bytes: &[u8], flight1: Option<u32>) -> Match {
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
        Some(&opcode) if opcode == 7 << 3 || opcode == 10 << 3 => {
            let packet = usize::from(length) + 2;
            match flight1 {
                Some(flight1) if flight1 as usize == packet => Match::Yes,
                Some(_) => Match::No,
                None if bytes.len() > packet => Match::No,
                None => Match::Partial,
            }
        }
        Some(_) => Match::No,
    }
}

/// A TLS record of any content type (change_cipher_spec, alert, handshake, application_data)
/// at the start of a stream that did not open with a ClientHello: TLS seen mid-stream in a
/// capture, or a resumed session (RFC 8446 §5.1: type, legacy version 03 0x, length ≤ 2^14 +
/// 256).
pub(super) fn tls_record(bytes: &[u8]) -> Match {
    let checks: [fn(u8) -> bool; 3] =
        [|b| (0x14..=0x17).contains(&b), |b| b == 0x03, |b| b <= 0x04];
    for (byte, ok) in bytes.iter().zip(checks) {
        if !ok(*byte) {
            return Match::No;
        }
    }
    match (bytes.get(3), bytes.get(4)) {
        (Some(&hi), Some(&lo)) if (1..=16_640).contains(&u16::from_be_bytes([hi, lo])) => {
            Match::Yes
        }
        (Some(_), Some(_)) => Match::No,
        _ => Match::Partial,
    }
}

/// Ethereum devp2p RLPx auth message, which has the MSE shape (an ECIES blob from the client,
/// another back): EIP-8 form = u16 size, then the ephemeral public key starting 0x04, and the
/// flight is exactly size + 2 bytes; the pre-EIP-8 form is exactly 307 bytes starting 0x04.
/// `flight1` is the client's first flight length once it is over.
pub(super) fn rlpx_auth(bytes: &[u8], flight1: Option<u32>) -> Match {
    const ECIES_OVERHEAD: u16 = 65 + 16 + 32;
    const LEGACY_AUTH: u32 = 307;
    let eip8_size = match (bytes.first(), bytes.get(1), bytes.get(2)) {
        (Some(&hi), Some(&lo), Some(&0x04)) => {
            Some(u16::from_be_bytes([hi, lo])).filter(|&size| size >= ECIES_OVERHEAD)
        }
        (Some(_), Some(_), Some(_)) => None,
        _ => return Match::Partial,
    };
    let legacy = bytes.first() == Some(&0x04);
    if eip8_size.is_none() && !legacy {
        return Match::No;
    }
    let Some(length) = flight1 else {
        let too_long = eip8_size.is_none_or(|size| bytes.len() > usize::from(size) + 2)
            && (!legacy || bytes.len() > LEGACY_AUTH as usize);
        return if too_long { Match::No } else { Match::Partial };
    };
    if eip8_size.is_some_and(|size| u32::from(size) + 2 == length)
        || (legacy && length == LEGACY_AUTH)
    {
        Match::Yes
    } else {
        Match::No
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
    fn tls_records() {
        assert_eq!(tls_record(&[0x17, 0x03, 0x03, 0x00, 0x69]), Match::Yes);
        assert_eq!(tls_record(&[0x17, 0x03, 0x03]), Match::Partial);
        assert_eq!(tls_record(&[0x17, 0x03, 0x03, 0xFF, 0xFF]), Match::No);
        assert_eq!(tls_record(&[0x18, 0x03]), Match::No);
    }

    #[test]
    fn rlpx() {
        // EIP-8 auth of 471 bytes: size 0x01d5 = 469, then 0x04.
        let mut auth = vec![0x01, 0xD5, 0x04];
        auth.resize(471, 0xAB);
        assert_eq!(rlpx_auth(&auth, None), Match::Partial);
        assert_eq!(rlpx_auth(&auth, Some(471)), Match::Yes);
        assert_eq!(rlpx_auth(&auth, Some(472)), Match::No);
        let mut longer = auth.clone();
        longer.push(0);
        assert_eq!(rlpx_auth(&longer, None), Match::No);
        assert_eq!(rlpx_auth(&[0x04; 307], Some(307)), Match::Yes);
        assert_eq!(rlpx_auth(&[0x33, 0x01, 0x02], None), Match::No);
    }

    #[test]
    fn openvpn() {
        // Length 14, P_CONTROL_HARD_RESET_CLIENT_V2 (0x38), session id, ...
        assert_eq!(
            openvpn_reset(&[0x00, 0x0E, 0x38, 1, 2, 3], Some(16)),
            Match::Yes
        );
        assert_eq!(
            openvpn_reset(&[0x00, 0x0E, 0x38, 1, 2, 3], None),
            Match::Partial
        );
        // The first flight is longer or shorter than the packet its header announces.
        assert_eq!(
            openvpn_reset(&[0x00, 0x0E, 0x38, 1, 2, 3], Some(17)),
            Match::No
        );
        assert_eq!(
            openvpn_reset(&[0x00, 0x0E, 0x38, 1, 2, 3], Some(6)),
            Match::No
        );
        assert_eq!(openvpn_reset(&[0x00, 0x03, 0x38, 1, 2, 3], None), Match::No);
        assert_eq!(openvpn_reset(&[0x00, 0x0E], None), Match::Partial);
        assert_eq!(openvpn_reset(&[0x00], None), Match::Partial);
        assert_eq!(openvpn_reset(&[0x99], None), Match::No);
        assert_eq!(openvpn_reset(&[0x00, 0x0E, 0x39], None), Match::No);
        assert_eq!(openvpn_reset(&[0x00, 0x02, 0x38], None), Match::No);
    }
}
