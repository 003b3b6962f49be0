//! Codec and handshake tests: byte-exact scripts, round trips and "never panics" properties.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;

fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut out = vec![VERSION, methods.len() as u8];
    out.extend_from_slice(methods);
    out
}

fn connect_request(address: &Address) -> Vec<u8> {
    let mut out = Vec::new();
    Request {
        command: Command::Connect,
        destination: address.clone(),
    }
    .encode(&mut out);
    out
}

/// Drain every event and all transmit bytes.
fn drain(handshake: &mut ServerHandshake) -> (Vec<Event>, Vec<u8>) {
    let mut events = Vec::new();
    while let Some(event) = handshake.poll_event() {
        events.push(event);
    }
    (events, handshake.poll_transmit().unwrap_or_default())
}

#[test]
fn no_auth_connect_with_optimistic_data() {
    let mut handshake = ServerHandshake::new(false);
    let target = Address::Ip("192.0.2.1:80".parse().unwrap());
    let mut input = greeting(&[0x00]);
    input.extend(connect_request(&target));
    input.extend_from_slice(b"GET /");
    handshake.handle_input(&input);
    let (events, sent) = drain(&mut handshake);
    assert_eq!(sent, [0x05, 0x00]);
    assert_eq!(
        events,
        [Event::Request(Request {
            command: Command::Connect,
            destination: target
        })]
    );
    assert!(handshake.is_done());
    assert!(!handshake.wants_input());
    assert_eq!(handshake.poll_transmit(), None);
    assert_eq!(handshake.take_remaining(), b"GET /");
    // The caller answers the request itself.
    let mut reply = Vec::new();
    ReplyMessage {
        reply: Reply::Succeeded,
        bound: Address::Ip("127.0.0.1:4000".parse().unwrap()),
    }
    .encode(&mut reply);
    assert_eq!(reply, [0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x0f, 0xa0]);
}

#[test]
fn password_auth_success_then_request_byte_by_byte() {
    let mut handshake = ServerHandshake::new(true);
    let mut input = greeting(&[0x00, 0x02]);
    input.extend_from_slice(&[0x01, 5, b'a', b'l', b'i', b'c', b'e', 3, b'p', b'w', b'd']);
    for byte in &input {
        assert!(handshake.wants_input());
        handshake.handle_input(std::slice::from_ref(byte));
    }
    let (events, sent) = drain(&mut handshake);
    assert_eq!(sent, [0x05, 0x02]);
    let [Event::Authenticate(credentials)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(credentials.username, b"alice");
    assert_eq!(credentials.password, b"pwd");
    assert!(!format!("{credentials:?}").contains("pwd"));
    handshake.handle_auth_result(true);
    assert_eq!(handshake.poll_transmit().unwrap(), [0x01, 0x00]);
    handshake.handle_input(&connect_request(&Address::Domain(
        "example.com".into(),
        443,
    )));
    let (events, _) = drain(&mut handshake);
    assert!(matches!(events.as_slice(), [Event::Request(_)]));
}

#[test]
fn password_auth_failure() {
    let mut handshake = ServerHandshake::new(true);
    handshake.handle_input(&greeting(&[0x02]));
    handshake.handle_input(&[0x01, 1, b'a', 1, b'b']);
    let _ = drain(&mut handshake);
    handshake.handle_auth_result(false);
    let (events, sent) = drain(&mut handshake);
    assert_eq!(sent, [0x01, 0x01]);
    assert_eq!(events, [Event::Failed(Error::AuthFailed)]);
    assert!(handshake.is_failed());
}

#[test]
fn no_acceptable_method() {
    let mut handshake = ServerHandshake::new(true);
    handshake.handle_input(&greeting(&[0x00]));
    let (events, sent) = drain(&mut handshake);
    assert_eq!(sent, [0x05, 0xFF]);
    assert_eq!(events, [Event::Failed(Error::NoAcceptableMethod)]);
}

#[test]
fn wrong_version_greeting_closes_without_reply() {
    let mut handshake = ServerHandshake::new(false);
    handshake.handle_input(&[0x04, 0x01, 0x00, 0x50]);
    let (events, sent) = drain(&mut handshake);
    assert!(sent.is_empty());
    assert_eq!(events, [Event::Failed(Error::WrongVersion(4))]);
}

#[test]
fn request_errors_map_to_reply_codes() {
    let cases: [(&[u8], Reply); 3] = [
        (
            &[0x05, 0x09, 0x00, 0x01, 1, 2, 3, 4, 0, 80],
            Reply::CommandNotSupported,
        ),
        (
            &[0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4],
            Reply::AddressTypeNotSupported,
        ),
        (&[0x05, 0x01, 0x00, 0x03, 0, 0, 80], Reply::HostUnreachable),
    ];
    for (request, reply) in cases {
        let mut handshake = ServerHandshake::new(false);
        handshake.handle_input(&greeting(&[0x00]));
        handshake.handle_input(request);
        let (events, sent) = drain(&mut handshake);
        assert!(
            matches!(events.as_slice(), [Event::Failed(_)]),
            "{events:?}"
        );
        assert_eq!(
            sent.get(2..4),
            Some(&[0x05, reply as u8][..]),
            "{request:?}"
        );
    }
}

#[test]
fn oversized_input_fails() {
    let mut handshake = ServerHandshake::new(false);
    handshake.handle_input(&[0x05, 0xFF]);
    handshake.handle_input(&[0u8; 4096]);
    let (events, _) = drain(&mut handshake);
    assert_eq!(events, [Event::Failed(Error::Oversized)]);
}

#[test]
fn udp_header_round_trip_and_truncation() {
    let header = UdpHeader {
        frag: 0,
        address: Address::Ip("[::1]:53".parse().unwrap()),
    };
    let mut out = Vec::new();
    header.encode(&mut out);
    out.extend_from_slice(b"payload");
    let (decoded, offset) = UdpHeader::decode(&out).unwrap();
    assert_eq!(decoded, header);
    assert_eq!(out.get(offset..), Some(&b"payload"[..]));
    assert_eq!(UdpHeader::decode(&out[..5]), Err(Error::TruncatedDatagram));
    // RFC 1928 §7: RSV is X'0000'; anything else is refused, whichever byte is set.
    for rsv in [[0x00, 0x01], [0x80, 0x00], [0xff, 0xff]] {
        let mut bad = out.clone();
        bad[..2].copy_from_slice(&rsv);
        assert_eq!(UdpHeader::decode(&bad), Err(Error::ReservedNotZero));
    }
}

fn arb_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<(std::net::Ipv4Addr, u16)>()
            .prop_map(|(ip, port)| Address::Ip(SocketAddr::from((ip, port)))),
        any::<(std::net::Ipv6Addr, u16)>()
            .prop_map(|(ip, port)| Address::Ip(SocketAddr::from((ip, port)))),
        ("[a-z0-9.-]{1,255}", any::<u16>()).prop_map(|(name, port)| Address::Domain(name, port)),
    ]
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Connect),
        Just(Command::Bind),
        Just(Command::UdpAssociate)
    ]
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    (0u8..=8).prop_map(|code| Reply::from_byte(code).unwrap())
}

proptest! {
    #[test]
    fn request_round_trip(command in arb_command(), destination in arb_address(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let request = Request { command, destination };
        let mut bytes = Vec::new();
        request.encode(&mut bytes);
        let len = bytes.len();
        bytes.extend(tail);
        prop_assert_eq!(Request::decode(&bytes), Ok(Some((request, len))));
        // Every strict prefix is incomplete, never an error.
        for cut in 0..len {
            prop_assert_eq!(Request::decode(&bytes[..cut]), Ok(None));
        }
    }

    #[test]
    fn reply_round_trip(reply in arb_reply(), bound in arb_address()) {
        let message = ReplyMessage { reply, bound };
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        let len = bytes.len();
        prop_assert_eq!(ReplyMessage::decode(&bytes), Ok(Some((message, len))));
    }

    #[test]
    fn greeting_round_trip(methods in proptest::collection::vec(any::<u8>(), 1..=255)) {
        let greeting = Greeting { methods: methods.into_iter().map(Method).collect() };
        let mut bytes = Vec::new();
        greeting.encode(&mut bytes);
        let len = bytes.len();
        prop_assert_eq!(Greeting::decode(&bytes), Ok(Some((greeting, len))));
    }

    #[test]
    fn password_round_trip(username in proptest::collection::vec(any::<u8>(), 0..=255), password in proptest::collection::vec(any::<u8>(), 0..=255)) {
        let request = PasswordRequest { username, password };
        let mut bytes = Vec::new();
        request.encode(&mut bytes);
        let len = bytes.len();
        prop_assert_eq!(PasswordRequest::decode(&bytes), Ok(Some((request, len))));
    }

    #[test]
    fn udp_header_round_trip(frag in any::<u8>(), address in arb_address(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let header = UdpHeader { frag, address };
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        let len = bytes.len();
        bytes.extend(payload);
        prop_assert_eq!(UdpHeader::decode(&bytes), Ok((header.clone(), len)));
        // The borrowed decoder reads the same header without allocating.
        let (borrowed, offset) = UdpHeaderRef::decode(&bytes).unwrap();
        prop_assert_eq!((borrowed.frag, borrowed.address.to_owned(), offset), (header.frag, header.address, len));
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Greeting::decode(&bytes);
        let _ = PasswordRequest::decode(&bytes);
        let _ = Request::decode(&bytes);
        let _ = ReplyMessage::decode(&bytes);
        let _ = UdpHeader::decode(&bytes);
        let _ = UdpHeaderRef::decode(&bytes);
        let _ = Address::decode(&bytes);
    }

    #[test]
    fn handshake_never_panics_and_chunking_does_not_matter(
        require_auth in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        split in any::<prop::sample::Index>(),
    ) {
        let run = |chunks: &[&[u8]]| {
            let mut handshake = ServerHandshake::new(require_auth);
            let mut log = Vec::new();
            for chunk in chunks {
                if !handshake.wants_input() { break; }
                handshake.handle_input(chunk);
                while let Some(event) = handshake.poll_event() {
                    if matches!(event, Event::Authenticate(_)) {
                        handshake.handle_auth_result(true);
                    }
                    log.push(format!("{event:?}"));
                }
            }
            (log, handshake.poll_transmit().unwrap_or_default())
        };
        let at = split.index(bytes.len() + 1);
        let (first, second) = bytes.split_at(at);
        let whole = run(&[&bytes]);
        let halves = run(&[first, second]);
        prop_assert_eq!(whole, halves);
    }
}
