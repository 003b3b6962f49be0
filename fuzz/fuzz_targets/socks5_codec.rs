//! Fuzz the SOCKS5 codec and both handshake state machines: any byte string must decode or fail
//! cleanly, never panic, and feeding it in two chunks must give the same result as feeding it
//! whole (the server machine fed client bytes; the client machine fed server bytes, in
//! `read_hint`-sized reads, must agree with the same bytes fed at once).
//! Run: `cargo fuzz run --sanitizer none socks5_codec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::socks5::{
    Address, ClientHandshake, Command, Event, Greeting, PasswordRequest, ReplyMessage, Request,
    ServerHandshake, UdpHeader,
};

fuzz_target!(|data: &[u8]| {
    let _ = Greeting::decode(data);
    let _ = PasswordRequest::decode(data);
    let _ = ReplyMessage::decode(data);
    let _ = Address::decode(data);
    if let Ok((header, offset)) = UdpHeader::decode(data) {
        assert!(offset <= data.len());
        let mut again = Vec::new();
        header.encode(&mut again);
        assert_eq!(UdpHeader::decode(&again).map(|(h, _)| h), Ok(header));
    }
    if let Ok(Some((request, consumed))) = Request::decode(data) {
        assert!(consumed <= data.len());
        let mut again = Vec::new();
        request.encode(&mut again);
        assert_eq!(Request::decode(&again), Ok(Some((request, again.len()))));
    }
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let require_auth = first & 1 == 1;
    let split = usize::from(first >> 1).min(rest.len());
    let (a, b) = rest.split_at(split);
    assert_eq!(drive(require_auth, &[rest]), drive(require_auth, &[a, b]));
    assert_eq!(
        drive_client(require_auth, rest, false),
        drive_client(require_auth, rest, true)
    );
});

/// Feed server bytes to a client handshake (with credentials when `with_credentials`), either
/// all at once or `read_hint` bytes at a time; the outcome and the bytes the client sent.
fn drive_client(with_credentials: bool, server: &[u8], by_hint: bool) -> (String, Vec<u8>) {
    let credentials = with_credentials.then(|| PasswordRequest {
        username: b"u".to_vec(),
        password: b"p".to_vec(),
    });
    let Ok(mut client) = ClientHandshake::new(credentials) else {
        return ("bad credentials".into(), Vec::new());
    };
    client.request(Request {
        command: Command::Connect,
        destination: Address::Domain("example.com".into(), 80),
    });
    let mut sent = client.poll_transmit().unwrap_or_default();
    let mut rest = server;
    let mut outcome = String::new();
    while client.wants_input() && !rest.is_empty() {
        let take = if by_hint {
            client.read_hint().min(rest.len())
        } else {
            rest.len()
        };
        assert!(take > 0, "read_hint is 0 while input is wanted");
        let (chunk, after) = rest.split_at(take);
        rest = after;
        if let Err(error) = client.handle_input(chunk) {
            outcome = format!("{error:?}");
        }
        sent.extend(client.poll_transmit().unwrap_or_default());
    }
    if outcome.is_empty() {
        outcome = format!("{:?} ready={}", client.bound(), client.is_ready());
    }
    (outcome, sent)
}

/// Feed `chunks`, accepting every credential; the log of events and bytes sent.
fn drive(require_auth: bool, chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
    let mut machine = ServerHandshake::new(require_auth);
    let mut log = Vec::new();
    let mut sent = Vec::new();
    for chunk in chunks {
        if !machine.wants_input() {
            break;
        }
        machine.handle_input(chunk);
        while let Some(event) = machine.poll_event() {
            if matches!(event, Event::Authenticate(_)) {
                machine.handle_auth_result(true);
            }
            log.push(format!("{event:?}"));
        }
        while let Some(bytes) = machine.poll_transmit() {
            sent.extend(bytes);
        }
    }
    (log, sent)
}
