//! The synthetic traffic: one script per form. A TCP script is a list of flights alternating
//! between client and target; a UDP script is a list of (request, reply) datagram pairs. The
//! probe's client plays one side through the proxy and the probe's own target plays the other,
//! so both ends know exactly which bytes must arrive.
//!
//! Every BitTorrent form is built the way real clients build it (BEP 3, BEP 5, BEP 15, BEP 29,
//! MSE); the controls are what a browser, curl or a DNS resolver would send.

use rand::{Rng, RngCore};
use swarmwall_core::bt::krpc;
use swarmwall_core::bt::peer_wire::{self, Handshake};
use swarmwall_core::bt::tracker::{self, AnnounceEvent, UdpAnnounce, percent_encode};

/// Whether a form is BitTorrent (must be blocked) or a benign control (must pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormKind {
    /// A BitTorrent wire form.
    #[serde(rename = "bittorrent")]
    BitTorrent,
    /// Benign traffic that must pass.
    Control,
}

impl FormKind {
    /// `bittorrent` or `control`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BitTorrent => "bittorrent",
            Self::Control => "control",
        }
    }
}

/// One flight of a TCP script.
#[derive(Debug, Clone)]
pub enum Flight {
    /// The client sends these bytes; the target must receive exactly them.
    Client(Vec<u8>),
    /// The target sends these bytes; the client must receive exactly them.
    Target(Vec<u8>),
}

/// How a form travels.
#[derive(Debug, Clone)]
pub enum Script {
    /// Over a CONNECT stream.
    Tcp(Vec<Flight>),
    /// Over UDP ASSOCIATE: each request datagram must arrive and its reply come back.
    Udp(Vec<(Vec<u8>, Vec<u8>)>),
}

/// One form of synthetic traffic.
#[derive(Debug, Clone)]
pub struct Form {
    /// Stable name (`peer_wire_handshake`, `http_get`, ...).
    pub name: &'static str,
    /// BitTorrent or control.
    pub kind: FormKind,
    /// The bytes both sides exchange.
    pub script: Script,
}

/// Every form, in the order the probe runs them: controls first (so that a graduated response
/// triggered by the BitTorrent forms cannot break them), then the plain BitTorrent forms, and
/// MSE last (an MSE-shaped flow is only a candidate; the classifier blocks it with
/// corroboration from the account's earlier BitTorrent, which is how real clients behave).
pub fn all_forms(rng: &mut impl RngCore, target_host: &str) -> Vec<Form> {
    let info_hash = random_array::<20>(rng);
    let client_peer_id = peer_id(rng, b"-qB4650-");
    let target_peer_id = peer_id(rng, b"-lt20A0-");
    let node_id = random_array::<20>(rng);
    let target_node_id = random_array::<20>(rng);
    vec![
        Form {
            name: "http_get",
            kind: FormKind::Control,
            script: Script::Tcp(http_get(target_host)),
        },
        Form {
            name: "tls_client_hello",
            kind: FormKind::Control,
            script: Script::Tcp(tls_client_hello(rng, "www.example.com")),
        },
        Form {
            name: "encrypted_stream",
            kind: FormKind::Control,
            script: Script::Tcp(encrypted_stream(rng)),
        },
        Form {
            name: "dns_query",
            kind: FormKind::Control,
            script: Script::Udp(vec![dns_query(rng, "www.example.com")]),
        },
        Form {
            name: "peer_wire_handshake",
            kind: FormKind::BitTorrent,
            script: Script::Tcp(vec![
                Flight::Client(peer_wire_handshake(&info_hash, &client_peer_id)),
                Flight::Target(peer_wire_handshake(&info_hash, &target_peer_id)),
            ]),
        },
        Form {
            name: "http_tracker_announce",
            kind: FormKind::BitTorrent,
            script: Script::Tcp(http_tracker_announce(
                target_host,
                &info_hash,
                &client_peer_id,
            )),
        },
        Form {
            name: "utp_syn_data",
            kind: FormKind::BitTorrent,
            script: Script::Udp(utp_exchange(
                rng,
                &info_hash,
                &client_peer_id,
                &target_peer_id,
            )),
        },
        Form {
            name: "dht_ping",
            kind: FormKind::BitTorrent,
            script: Script::Udp(vec![dht_ping(&node_id, &target_node_id)]),
        },
        Form {
            name: "dht_get_peers",
            kind: FormKind::BitTorrent,
            script: Script::Udp(vec![dht_get_peers(
                rng,
                &node_id,
                &target_node_id,
                &info_hash,
            )]),
        },
        Form {
            name: "udp_tracker",
            kind: FormKind::BitTorrent,
            script: Script::Udp(udp_tracker(rng, &info_hash, &client_peer_id)),
        },
        Form {
            name: "mse_handshake",
            kind: FormKind::BitTorrent,
            script: Script::Tcp(mse_handshake(rng)),
        },
    ]
}

fn random_array<const N: usize>(rng: &mut impl RngCore) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

fn random_vec(rng: &mut impl RngCore, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// Azureus-style peer id: 8-byte client prefix, 12 random printable bytes.
fn peer_id(rng: &mut impl RngCore, prefix: &[u8; 8]) -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(prefix);
    for byte in &mut id[8..] {
        let index = usize::from(random_array::<1>(rng)[0]) % ALPHABET.len();
        *byte = ALPHABET.get(index).copied().unwrap_or(b'0');
    }
    id
}

/// BEP 3 handshake with the extension (BEP 10), DHT and Fast bits set, as libtorrent sends.
fn peer_wire_handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    Handshake {
        reserved: peer_wire::RESERVED_LIBTORRENT,
        info_hash: *info_hash,
        peer_id: *peer_id,
    }
    .encode()
    .to_vec()
}

fn http_tracker_announce(host: &str, info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<Flight> {
    let request = format!(
        "GET /announce?info_hash={}&peer_id={}&port=6881&uploaded=0&downloaded=0&left=1048576\
         &corrupt=0&key=5E1C3B2A&event=started&numwant=200&compact=1&no_peer_id=1 HTTP/1.1\r\n\
         Host: {host}\r\nUser-Agent: qBittorrent/4.6.5\r\nAccept-Encoding: gzip\r\n\
         Connection: close\r\n\r\n",
        percent_encode(info_hash),
        percent_encode(peer_id),
    );
    // One compact peer (192.0.2.1:6881, a documentation address).
    let body: &[u8] =
        b"d8:completei1e10:incompletei0e8:intervali1800e5:peers6:\xc0\x00\x02\x01\x1a\xe1e";
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    vec![Flight::Client(request.into_bytes()), Flight::Target(reply)]
}

fn http_get(host: &str) -> Vec<Flight> {
    let request =
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n");
    let body = "<!doctype html><html><head><title>probe</title></head>\
                <body><p>swarmwall probe control page</p></body></html>\n";
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    vec![
        Flight::Client(request.into_bytes()),
        Flight::Target(reply.into_bytes()),
    ]
}

/// A TLS 1.3 ClientHello shaped like curl/OpenSSL 3 sends it (SNI, ALPN h2/http1.1, X25519 key
/// share, supported_versions, signature_algorithms), answered by the target with a TLS alert
/// (`handshake_failure`): a real server's answer to a hello it will not serve.
fn tls_client_hello(rng: &mut impl RngCore, server_name: &str) -> Vec<Flight> {
    let mut extensions = Vec::new();
    let name = server_name.as_bytes();
    // server_name (0x0000)
    let mut sni = Vec::new();
    push_u16(&mut sni, (name.len() + 3) as u16);
    sni.push(0x00);
    push_u16(&mut sni, name.len() as u16);
    sni.extend_from_slice(name);
    push_extension(&mut extensions, 0x0000, &sni);
    // ec_point_formats, supported_groups
    push_extension(&mut extensions, 0x000b, &[0x03, 0x00, 0x01, 0x02]);
    push_extension(
        &mut extensions,
        0x000a,
        &[0x00, 0x08, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, 0x00, 0x19],
    );
    // session_ticket, ALPN (h2, http/1.1), encrypt_then_mac, extended_master_secret
    push_extension(&mut extensions, 0x0023, &[]);
    push_extension(&mut extensions, 0x0010, b"\x00\x0c\x02h2\x08http/1.1");
    push_extension(&mut extensions, 0x0016, &[]);
    push_extension(&mut extensions, 0x0017, &[]);
    // signature_algorithms
    push_extension(
        &mut extensions,
        0x000d,
        &[
            0x00, 0x10, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x04, 0x08, 0x05,
            0x08, 0x06, 0x04, 0x01,
        ],
    );
    // supported_versions (TLS 1.3, 1.2), psk_key_exchange_modes
    push_extension(&mut extensions, 0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]);
    push_extension(&mut extensions, 0x002d, &[0x01, 0x01]);
    // key_share: X25519, 32 random bytes
    let mut key_share = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
    key_share.extend_from_slice(&random_array::<32>(rng));
    push_extension(&mut extensions, 0x0033, &key_share);

    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&random_array::<32>(rng));
    hello.push(0x20);
    hello.extend_from_slice(&random_array::<32>(rng));
    let suites: [u16; 9] = [
        0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0xc02b, 0xc02f, 0xcca9, 0xcca8,
    ];
    push_u16(&mut hello, (suites.len() * 2) as u16);
    for suite in suites {
        push_u16(&mut hello, suite);
    }
    hello.extend_from_slice(&[0x01, 0x00]);
    push_u16(&mut hello, extensions.len() as u16);
    hello.extend_from_slice(&extensions);

    let mut handshake = vec![0x01];
    let len = hello.len() as u32;
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    push_u16(&mut record, handshake.len() as u16);
    record.extend_from_slice(&handshake);
    vec![
        Flight::Client(record),
        Flight::Target(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
    ]
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn push_extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    push_u16(out, kind);
    push_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// The honest "random bytes" control: a server-first encrypted session. The target greets
/// with 32 random bytes (a server nonce), then both sides exchange 4 KiB of ciphertext-like
/// random bytes. A *client-first* random stream is deliberately not used: its first flight is
/// indistinguishable from MSE's Ya + PadA, which is exactly what the MSE heuristic
/// (docs/detection.md, "Rules") flags as a candidate, and what Shadowsocks or obfs4 look like
/// too. Encrypted protocols where the server speaks first (or that start with a TLS/SSH
/// handshake) carry random bytes the classifier must always leave alone.
fn encrypted_stream(rng: &mut impl RngCore) -> Vec<Flight> {
    vec![
        Flight::Target(random_vec(rng, 32)),
        Flight::Client(random_vec(rng, 4096)),
        Flight::Target(random_vec(rng, 4096)),
    ]
}

/// MSE/PE (Message Stream Encryption) flights as libtorrent sends them: Ya (96 bytes, a
/// 768-bit DH public value, uniformly random on the wire) + PadA (0..512), Yb + PadB, then the
/// initiator's third flight (two 20-byte hashes, RC4(VC, crypto_provide, len(PadC), PadC,
/// len(IA)), RC4(IA = 68-byte handshake)) and the responder's RC4(VC, crypto_select,
/// len(PadD), PadD). RC4 output and DH values are random bytes to an observer, so random bytes
/// of the right sizes are byte-for-byte what a classifier sees.
fn mse_handshake(rng: &mut impl RngCore) -> Vec<Flight> {
    let pad_a = rng.random_range(0..=512);
    let pad_b = rng.random_range(0..=512);
    let pad_c = rng.random_range(0..=512);
    let pad_d = rng.random_range(0..=512);
    vec![
        Flight::Client(random_vec(rng, 96 + pad_a)),
        Flight::Target(random_vec(rng, 96 + pad_b)),
        Flight::Client(random_vec(rng, 20 + 20 + 8 + 4 + 2 + pad_c + 2 + 68)),
        Flight::Target(random_vec(rng, 8 + 4 + 2 + pad_d + 68)),
    ]
}

/// BEP 29: ST_SYN answered by ST_STATE, then ST_DATA carrying the peer-wire handshake answered
/// by ST_DATA carrying the target's handshake.
fn utp_exchange(
    rng: &mut impl RngCore,
    info_hash: &[u8; 20],
    client_peer_id: &[u8; 20],
    target_peer_id: &[u8; 20],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let recv_id: u16 = rng.random();
    let send_id = recv_id.wrapping_add(1);
    let seq: u16 = rng.random();
    let target_seq: u16 = rng.random();
    let syn = utp_header(0x4, recv_id, 0x0010_0000, seq, 0, &[]);
    let state = utp_header(0x2, recv_id, 0x0010_0000, target_seq, seq, &[]);
    let data = utp_header(
        0x0,
        send_id,
        0x0010_0000,
        seq.wrapping_add(1),
        target_seq,
        &peer_wire_handshake(info_hash, client_peer_id),
    );
    let data_reply = utp_header(
        0x0,
        recv_id,
        0x0010_0000,
        target_seq.wrapping_add(1),
        seq.wrapping_add(1),
        &peer_wire_handshake(info_hash, target_peer_id),
    );
    vec![(syn, state), (data, data_reply)]
}

fn utp_header(
    kind: u8,
    connection_id: u16,
    window: u32,
    seq: u16,
    ack: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + payload.len());
    out.push((kind << 4) | 0x01);
    out.push(0x00);
    push_u16(&mut out, connection_id);
    out.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&window.to_be_bytes());
    push_u16(&mut out, seq);
    push_u16(&mut out, ack);
    out.extend_from_slice(payload);
    out
}

fn bencode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// BEP 5 ping query and response.
fn dht_ping(node_id: &[u8; 20], target_node_id: &[u8; 20]) -> (Vec<u8>, Vec<u8>) {
    let mut query = b"d1:ad2:id".to_vec();
    bencode_bytes(&mut query, node_id);
    query.extend_from_slice(b"e1:q4:ping1:t2:pn1:v4:LT\x02\x001:y1:qe");
    let mut reply = b"d1:rd2:id".to_vec();
    bencode_bytes(&mut reply, target_node_id);
    reply.extend_from_slice(b"e1:t2:pn1:y1:re");
    (query, reply)
}

/// BEP 5 get_peers query and a response with a token and one compact peer.
fn dht_get_peers(
    rng: &mut impl RngCore,
    node_id: &[u8; 20],
    target_node_id: &[u8; 20],
    info_hash: &[u8; 20],
) -> (Vec<u8>, Vec<u8>) {
    let query = krpc::get_peers(b"gp", node_id, info_hash);
    let mut reply = b"d1:rd2:id".to_vec();
    bencode_bytes(&mut reply, target_node_id);
    reply.extend_from_slice(b"5:token");
    bencode_bytes(&mut reply, &random_array::<8>(rng));
    reply.extend_from_slice(b"6:valuesl6:\xc0\x00\x02\x01\x1a\xe1ee1:t2:gp1:y1:re");
    (query, reply)
}

/// BEP 15: connect, then announce.
fn udp_tracker(
    rng: &mut impl RngCore,
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let transaction: u32 = rng.random();
    let connection: u64 = rng.random();
    let connect = tracker::udp_connect_request(transaction);
    let mut connect_reply = 0u32.to_be_bytes().to_vec();
    connect_reply.extend_from_slice(&transaction.to_be_bytes());
    connect_reply.extend_from_slice(&connection.to_be_bytes());

    let announce_tx = transaction.wrapping_add(1);
    let announce = UdpAnnounce {
        connection,
        transaction: announce_tx,
        info_hash,
        peer_id,
        downloaded: 0,
        left: 1_048_576,
        uploaded: 0,
        event: AnnounceEvent::Started,
        key: rng.random(),
        num_want: 200,
        port: 6881,
    }
    .encode();
    let mut announce_reply = 1u32.to_be_bytes().to_vec();
    announce_reply.extend_from_slice(&announce_tx.to_be_bytes());
    announce_reply.extend_from_slice(&1800u32.to_be_bytes());
    announce_reply.extend_from_slice(&0u32.to_be_bytes());
    announce_reply.extend_from_slice(&1u32.to_be_bytes());
    announce_reply.extend_from_slice(&[0xc0, 0x00, 0x02, 0x01, 0x1a, 0xe1]);
    vec![(connect, connect_reply), (announce, announce_reply)]
}

/// An A query as a stub resolver sends it (RD set, EDNS0 OPT record), and an answer.
fn dns_query(rng: &mut impl RngCore, name: &str) -> (Vec<u8>, Vec<u8>) {
    let id: u16 = rng.random();
    let mut question = Vec::new();
    for label in name.split('.') {
        question.push(label.len() as u8);
        question.extend_from_slice(label.as_bytes());
    }
    question.push(0);
    question.extend_from_slice(&[0x00, 0x01, 0x00, 0x01]);
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]);
    query.extend_from_slice(&question);
    // OPT: root name, type 41, UDP size 1232, no flags.
    query.extend_from_slice(&[
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]);
    let mut reply = id.to_be_bytes().to_vec();
    reply.extend_from_slice(&[0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
    reply.extend_from_slice(&question);
    // Answer: pointer to the question name, A, IN, TTL 300, 192.0.2.10.
    reply.extend_from_slice(&[
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x04, 0xc0, 0x00, 0x02,
        0x0a,
    ]);
    (query, reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmwall_core::bt::bencode::{Limits, parse_exact};

    #[test]
    fn bencoded_forms_parse() {
        let mut rng = rand::rng();
        let (query, reply) = dht_get_peers(&mut rng, &[1; 20], &[2; 20], &[3; 20]);
        assert!(parse_exact(&query, Limits::default()).is_ok());
        assert!(parse_exact(&reply, Limits::default()).is_ok());
        let (query, reply) = dht_ping(&[1; 20], &[2; 20]);
        assert!(parse_exact(&query, Limits::default()).is_ok());
        assert!(parse_exact(&reply, Limits::default()).is_ok());
    }

    #[test]
    fn tls_record_lengths_are_consistent() {
        let flights = tls_client_hello(&mut rand::rng(), "www.example.com");
        let Some(Flight::Client(record)) = flights.first() else {
            panic!("first flight is the client's");
        };
        let record_len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        assert_eq!(record_len + 5, record.len());
        let hello_len = u32::from_be_bytes([0, record[6], record[7], record[8]]) as usize;
        assert_eq!(hello_len + 4, record_len);
    }

    #[test]
    fn mse_flights_have_realistic_sizes() {
        for _ in 0..32 {
            let flights = mse_handshake(&mut rand::rng());
            let sizes: Vec<usize> = flights
                .iter()
                .map(|flight| match flight {
                    Flight::Client(bytes) | Flight::Target(bytes) => bytes.len(),
                })
                .collect();
            assert!((96..=608).contains(&sizes[0]));
            assert!((96..=608).contains(&sizes[1]));
            assert!(sizes[2] >= 124);
        }
    }
}
