//! Fuzz the SOCKS5 codec and the server handshake state machine: any byte string must decode
//! or fail cleanly, never panic, and feeding it in two chunks must give the same result as
//! feeding it whole. Run: `cargo fuzz run --sanitizer none socks5_codec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::socks5::{
    Address, Event, Greeting, PasswordRequest, ReplyMessage, Request, ServerHandshake, UdpHeader,
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
});

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
