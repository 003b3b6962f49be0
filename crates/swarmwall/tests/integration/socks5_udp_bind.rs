//! UDP ASSOCIATE and BIND end to end against the real binary on loopback.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::harness::socks5::*;
use crate::harness::wait_until;

/// A DNS-shaped query (id 0x1234, one question for example.com A).
fn dns_query() -> Vec<u8> {
    let mut query = vec![
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    for label in ["example", "com"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0x00, 0x00, 0x01, 0x00, 0x01]);
    query
}

#[test]
fn udp_associate_relays_request_and_response() {
    let echo = udp_echo_server("127.0.0.1:0");
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let client = udp_client(Duration::from_secs(5));
    let (_control, relay) = udp_associate(proxy.address, &client);
    assert_eq!(relay.ip(), proxy.address.ip());
    let query = dns_query();
    client
        .send_to(&udp_datagram(0, echo, &query), relay)
        .unwrap();
    let mut buffer = [0u8; 2048];
    let (n, from) = client
        .recv_from(&mut buffer)
        .expect("reply through the relay");
    assert_eq!(from, relay);
    // The reply carries the SOCKS header naming the target as its source.
    assert_eq!(&buffer[..n], udp_datagram(0, echo, &query).as_slice());
}

#[test]
fn udp_associate_drops_fragments_and_foreign_sources() {
    let echo = udp_echo_server("127.0.0.1:0");
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let client = udp_client(Duration::from_millis(500));
    let (_control, relay) = udp_associate(proxy.address, &client);
    let mut buffer = [0u8; 2048];
    // A fragment (FRAG = 1) is dropped: no reply.
    client
        .send_to(&udp_datagram(1, echo, b"fragment"), relay)
        .unwrap();
    assert!(
        client.recv_from(&mut buffer).is_err(),
        "fragment was relayed"
    );
    // A datagram from another port than the one announced is dropped.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stranger
        .send_to(&udp_datagram(0, echo, b"stranger"), relay)
        .unwrap();
    assert!(
        stranger.recv_from(&mut buffer).is_err(),
        "foreign datagram was relayed"
    );
    assert!(client.recv_from(&mut buffer).is_err());
    // Malformed (truncated header) is dropped too; a proper datagram still works after.
    client
        .send_to(&[0x00, 0x00, 0x00, 0x01, 127], relay)
        .unwrap();
    client
        .send_to(&udp_datagram(0, echo, b"proper"), relay)
        .unwrap();
    let (n, _) = client
        .recv_from(&mut buffer)
        .expect("proper datagram relayed");
    assert!(buffer[..n].ends_with(b"proper"));
}

#[test]
fn udp_association_ends_with_its_control_connection() {
    let echo = udp_echo_server("127.0.0.1:0");
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let client = udp_client(Duration::from_millis(300));
    let (control, relay) = udp_associate(proxy.address, &client);
    let mut buffer = [0u8; 2048];
    client
        .send_to(&udp_datagram(0, echo, b"one"), relay)
        .unwrap();
    assert!(client.recv_from(&mut buffer).is_ok());
    drop(control);
    // Within a deadline the relay stops answering (the socket is closed).
    assert!(wait_until(DEADLINE, || {
        let _ = client.send_to(&udp_datagram(0, echo, b"again"), relay);
        client.recv_from(&mut buffer).is_err()
    }));
}

#[test]
fn udp_associate_with_unknown_client_port_learns_it() {
    let echo = udp_echo_server("127.0.0.1:0");
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let mut control = connect(proxy.address);
    greet(&mut control);
    let (code, relay) = request_raw(&mut control, 0x03, &[0x01, 0, 0, 0, 0, 0, 0]);
    assert_eq!(code, 0);
    let relay = relay.unwrap();
    let client = udp_client(Duration::from_secs(5));
    client
        .send_to(&udp_datagram(0, echo, b"learn"), relay)
        .unwrap();
    let mut buffer = [0u8; 512];
    let (n, _) = client.recv_from(&mut buffer).unwrap();
    assert!(buffer[..n].ends_with(b"learn"));
}

#[test]
fn bind_accepts_a_real_second_connection() {
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let mut control = connect(proxy.address);
    greet(&mut control);
    let (code, bound) = request_raw(
        &mut control,
        0x02,
        &encode_address("127.0.0.1:0".parse().unwrap()),
    );
    assert_eq!(code, 0x00);
    let bound = bound.unwrap();
    assert_ne!(bound.port(), 0);
    // The "server" side connects to the announced address.
    let mut incoming = TcpStream::connect(bound).unwrap();
    incoming.set_read_timeout(Some(DEADLINE)).unwrap();
    let (code, peer) = read_reply(&mut control);
    assert_eq!(code, 0x00);
    assert_eq!(peer.unwrap(), incoming.local_addr().unwrap());
    incoming.write_all(b"from the far side").unwrap();
    let mut buffer = [0u8; 17];
    control.read_exact(&mut buffer).unwrap();
    assert_eq!(&buffer, b"from the far side");
    control.write_all(b"and back").unwrap();
    let mut buffer = [0u8; 8];
    incoming.read_exact(&mut buffer).unwrap();
    assert_eq!(&buffer, b"and back");
}

#[test]
fn bind_refuses_a_connection_from_another_host() {
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let mut control = connect(proxy.address);
    greet(&mut control);
    // Expect a connection from 127.0.0.2; it comes from 127.0.0.1 instead.
    let (code, bound) = request_raw(
        &mut control,
        0x02,
        &encode_address("127.0.0.2:0".parse().unwrap()),
    );
    assert_eq!(code, 0x00);
    let _intruder = TcpStream::connect(bound.unwrap()).unwrap();
    let (code, _) = read_reply(&mut control);
    assert_eq!(code, 0x02);
}

/// A burst of datagrams to a name the association has not resolved yet: the first batch holds
/// them (no receive batch waits for a lookup), then every one is relayed, in order, once the
/// name is resolved; a datagram by address sent in the same burst is not held back by them.
#[test]
fn a_burst_to_an_unresolved_name_is_relayed_whole_and_in_order() {
    let echo = udp_echo_server("127.0.0.1:0");
    let proxy = Proxy::start(&[
        ALLOW_LOOPBACK[0],
        ALLOW_LOOPBACK[1],
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let client = udp_client(Duration::from_secs(5));
    let (_control, relay) = udp_associate(proxy.address, &client);
    let name = b"localhost";
    let burst = 24;
    for index in 0..burst {
        let mut datagram = vec![0x00, 0x00, 0x00, 0x03, name.len() as u8];
        datagram.extend_from_slice(name);
        datagram.extend_from_slice(&echo.port().to_be_bytes());
        datagram.extend_from_slice(format!("held {index:02}").as_bytes());
        client.send_to(&datagram, relay).unwrap();
    }
    let mut buffer = [0u8; 2048];
    for index in 0..burst {
        let (n, _) = client
            .recv_from(&mut buffer)
            .unwrap_or_else(|error| panic!("reply {index} of {burst} missing: {error}"));
        let expected = udp_datagram(0, echo, format!("held {index:02}").as_bytes());
        assert_eq!(
            &buffer[..n],
            expected.as_slice(),
            "reply {index} out of order"
        );
    }
    let metrics = proxy.metrics();
    assert!(
        !metrics.contains("dropped_resolving"),
        "a burst within the budget is not dropped:\n{metrics}"
    );
}

/// Datagrams addressed by name (ATYP 3), in either letter case, to two ports of one name:
/// each resolved and relayed (the association caches names per port), each reply naming the
/// address it came from.
#[test]
fn udp_datagrams_addressed_by_name_are_relayed() {
    let echoes = [
        udp_echo_server("127.0.0.1:0"),
        udp_echo_server("127.0.0.1:0"),
    ];
    let proxy = Proxy::start(&ALLOW_LOOPBACK);
    let client = udp_client(Duration::from_secs(5));
    let (_control, relay) = udp_associate(proxy.address, &client);
    let mut buffer = [0u8; 2048];
    for round in 0..3 {
        for echo in echoes {
            for name in ["localhost", "LocalHost"] {
                let payload = format!("round {round} to {name} port {}", echo.port());
                let mut datagram = vec![0x00, 0x00, 0x00, 0x03, name.len() as u8];
                datagram.extend_from_slice(name.as_bytes());
                datagram.extend_from_slice(&echo.port().to_be_bytes());
                datagram.extend_from_slice(payload.as_bytes());
                client.send_to(&datagram, relay).unwrap();
                let (n, from) = client
                    .recv_from(&mut buffer)
                    .unwrap_or_else(|error| panic!("{payload}: no reply: {error}"));
                assert_eq!(from, relay);
                assert_eq!(
                    &buffer[..n],
                    udp_datagram(0, echo, payload.as_bytes()).as_slice(),
                    "{payload}"
                );
            }
        }
    }
}
