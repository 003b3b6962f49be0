//! PROXY protocol vectors (from the HAProxy specification's examples) and property tests.

use proptest::prelude::*;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn header(source: &str, destination: &str, consumed: usize) -> ParseOutcome {
    ParseOutcome::Header {
        source: Some(addr(source)),
        destination: Some(addr(destination)),
        consumed,
    }
}

fn is_malformed(outcome: &ParseOutcome) -> bool {
    matches!(
        outcome,
        ParseOutcome::Invalid(ProxyProtocolError::Malformed(_))
    )
}

#[test]
fn v1_tcp4_and_tcp6() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    let mut input = line.to_vec();
    input.extend_from_slice(b"\x05\x01\x00");
    assert_eq!(
        parse_header(&input),
        header("192.168.0.1:56324", "192.168.0.11:443", line.len())
    );
    let line = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    assert_eq!(
        parse_header(line),
        header("[2001:db8::1]:65535", "[::1]:0", line.len())
    );
}

#[test]
fn v1_unknown() {
    let none = |consumed| ParseOutcome::Header {
        source: None,
        destination: None,
        consumed,
    };
    assert_eq!(parse_header(b"PROXY UNKNOWN\r\n"), none(15));
    let long = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(parse_header(long), none(long.len()));
}

#[test]
fn v1_worst_case_length_is_accepted() {
    // The specification's worst case is an UNKNOWN line with two full IPv6 addresses: 107.
    let src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {src} {src} 65535 65535\r\n");
    assert_eq!(line.len(), V1_MAX_LEN);
    assert!(matches!(
        parse_header(line.as_bytes()),
        ParseOutcome::Header {
            consumed: 107,
            source: None,
            ..
        }
    ));
    let line = format!("PROXY TCP6 {src} {src} 65535 65535\r\n");
    assert!(matches!(
        parse_header(line.as_bytes()),
        ParseOutcome::Header {
            consumed: 104,
            source: Some(_),
            ..
        }
    ));
}

#[test]
fn v1_incomplete_then_complete() {
    let line = b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 1080\r\n";
    for cut in 0..line.len() {
        assert_eq!(
            parse_header(&line[..cut]),
            ParseOutcome::Incomplete,
            "cut {cut}"
        );
    }
    assert!(matches!(parse_header(line), ParseOutcome::Header { .. }));
}

#[test]
fn v1_malformed() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1234\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 1080 extra\r\n",
        b"PROXY TCP4 192.0.2.1  192.0.2.2 1234 1080\r\n",
        b"PROXY TCP4 ::1 ::1 1234 1080\r\n",
        b"PROXY TCP6 192.0.2.1 192.0.2.2 1234 1080\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 1080\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 01234 1080\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 +1234 1080\r\n",
        b"PROXY TCP4 192.0.2.01 192.0.2.2 1234 1080\r\n",
        b"PROXY UDP4 192.0.2.1 192.0.2.2 1234 1080\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 1080\n",
        b"PROXY \xff\xfe\r\n",
        b"PROXY \r\n",
        b"PROXY UNKNOWN \n\r\n",
    ];
    for input in bad {
        assert!(
            is_malformed(&parse_header(input)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // No CRLF within 107 bytes.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(200, b'a');
    assert!(is_malformed(&parse_header(&long)));
}

#[test]
fn not_proxy_protocol() {
    assert_eq!(
        parse_header(b"\x05\x01\x00"),
        ParseOutcome::Invalid(ProxyProtocolError::NotProxyProtocol)
    );
    assert_eq!(
        parse_header(b"GET / HTTP/1.1\r\n"),
        ParseOutcome::Invalid(ProxyProtocolError::NotProxyProtocol)
    );
    assert_eq!(
        parse_header(b"PROXX"),
        ParseOutcome::Invalid(ProxyProtocolError::NotProxyProtocol)
    );
    assert_eq!(parse_header(b""), ParseOutcome::Incomplete);
    assert_eq!(parse_header(b"PRO"), ParseOutcome::Incomplete);
    assert_eq!(parse_header(&V2_SIGNATURE[..5]), ParseOutcome::Incomplete);
}

#[test]
fn v2_ipv4_with_tlvs() {
    // Hand-written bytes: PROXY/STREAM over IPv4, then one PP2_TYPE_ALPN TLV ("h2").
    let mut input = V2_SIGNATURE.to_vec();
    input.extend_from_slice(&[0x21, 0x11, 0x00, 0x11]);
    input.extend_from_slice(&[203, 0, 113, 9, 10, 0, 0, 1, 0xdb, 0xf0, 0x04, 0x38]);
    input.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
    input.extend_from_slice(b"\x05\x01\x00");
    assert_eq!(
        parse_header(&input),
        header("203.0.113.9:56304", "10.0.0.1:1080", 16 + 17)
    );
    assert_eq!(
        encode_v2(
            Some(addr("203.0.113.9:56304")),
            Some(addr("10.0.0.1:1080")),
            &[1, 0, 2, b'h', b'2']
        ),
        input[..33]
    );
}

#[test]
fn v2_ipv6_local_unspec_unix() {
    let v6 = encode_v2(
        Some(addr("[2001:db8::7]:4000")),
        Some(addr("[::1]:1080")),
        &[],
    );
    assert_eq!(v6.len(), 16 + 36);
    assert_eq!(
        parse_header(&v6),
        header("[2001:db8::7]:4000", "[::1]:1080", 52)
    );
    let none = |consumed| ParseOutcome::Header {
        source: None,
        destination: None,
        consumed,
    };
    // LOCAL (health check) with no addresses.
    let local = encode_v2(None, None, &[]);
    assert_eq!(local[12], 0x20);
    assert_eq!(parse_header(&local), none(16));
    // PROXY with AF_UNSPEC, and AF_UNIX with its 216-byte block.
    let mut unspec = V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    assert_eq!(parse_header(&unspec), none(16));
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
    unix.resize(16 + 216, 0);
    assert_eq!(parse_header(&unix), none(232));
}

#[test]
fn v2_incomplete_and_malformed() {
    let full = encode_v2(Some(addr("192.0.2.1:1")), Some(addr("192.0.2.2:2")), &[]);
    for cut in 0..full.len() {
        assert_eq!(
            parse_header(&full[..cut]),
            ParseOutcome::Incomplete,
            "cut {cut}"
        );
    }
    let with = |ver_cmd: u8, family: u8, len: u16| {
        let mut input = V2_SIGNATURE.to_vec();
        input.extend_from_slice(&[ver_cmd, family]);
        input.extend_from_slice(&len.to_be_bytes());
        input.resize(16 + usize::from(len), 0);
        parse_header(&input)
    };
    assert!(is_malformed(&with(0x11, 0x11, 12)), "version 1 in v2 form");
    assert!(is_malformed(&with(0x22, 0x11, 12)), "command 2");
    assert!(is_malformed(&with(0x21, 0x11, 11)), "short IPv4 block");
    assert!(is_malformed(&with(0x21, 0x21, 35)), "short IPv6 block");
    assert!(is_malformed(&with(0x21, 0x41, 12)), "family 4");
    assert!(matches!(
        with(0x21, 0x11, 12),
        ParseOutcome::Header { consumed: 28, .. }
    ));
    // The maximum length is accepted once all bytes are there.
    assert!(
        matches!(with(0x20, 0x00, u16::MAX), ParseOutcome::Header { consumed, .. } if consumed == 16 + 65_535)
    );
}

fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(Ipv4Addr::from(s).into(), sp),
                SocketAddr::new(Ipv4Addr::from(d).into(), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                SocketAddr::new(Ipv6Addr::from(d).into(), dp)
            )),
    ]
}

proptest! {
    #[test]
    fn any_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&input);
    }

    #[test]
    fn any_bytes_after_a_signature_never_panic(
        v2 in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut input = if v2 { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        input.extend_from_slice(&tail);
        match parse_header(&input) {
            ParseOutcome::Header { consumed, .. } => prop_assert!(consumed <= input.len()),
            ParseOutcome::Incomplete | ParseOutcome::Invalid(_) => {}
        }
    }

    #[test]
    fn v1_round_trip((source, destination) in socket_pair(), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
        let line = encode_v1(Some(source), Some(destination));
        prop_assert!(line.len() <= V1_MAX_LEN);
        let mut input = line.clone().into_bytes();
        input.extend_from_slice(&tail);
        prop_assert_eq!(
            parse_header(&input),
            ParseOutcome::Header { source: Some(source), destination: Some(destination), consumed: line.len() }
        );
    }

    #[test]
    fn v2_round_trip(
        (source, destination) in socket_pair(),
        tlvs in proptest::collection::vec(any::<u8>(), 0..64),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let header = encode_v2(Some(source), Some(destination), &tlvs);
        let mut input = header.clone();
        input.extend_from_slice(&tail);
        prop_assert_eq!(
            parse_header(&input),
            ParseOutcome::Header { source: Some(source), destination: Some(destination), consumed: header.len() }
        );
        // Every strict prefix is incomplete.
        let cut = header.len() / 2;
        prop_assert_eq!(parse_header(&header[..cut]), ParseOutcome::Incomplete);
    }
}

proptest! {
    /// Feeding bytes one at a time reaches the answer the whole input gives.
    #[test]
    fn feeding_byte_by_byte_agrees(
        v2 in any::<bool>(),
        tail in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(b' ')], 0..160),
    ) {
        let mut input = if v2 { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        input.extend_from_slice(&tail);
        let whole = parse_header(&input);
        let first = (0..=input.len())
            .map(|end| parse_header(&input[..end]))
            .find(|outcome| *outcome != ParseOutcome::Incomplete)
            .unwrap_or(ParseOutcome::Incomplete);
        match (&first, &whole) {
            (ParseOutcome::Invalid(_), ParseOutcome::Invalid(_)) => {}
            _ => prop_assert_eq!(first, whole),
        }
    }
}
