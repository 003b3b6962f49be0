//! BEP 5 KRPC messages for a DHT lookup: encode `get_peers`, parse responses. Pure, bounded
//! (the allocation-free bencode reader) and panic-free on any input (proptest here, a fuzz
//! target in `fuzz/fuzz_targets/krpc.rs`).

use std::net::SocketAddr;

use super::RESPONSE_LIMITS;
use super::bencode::{self, Value};
use super::compact;

/// Why a datagram is not a usable KRPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KrpcError {
    /// Not a bencoded dictionary.
    #[error("not a bencoded dictionary")]
    NotBencode,
    /// A required key is missing or has the wrong type.
    #[error("missing or mistyped key {0}")]
    Missing(&'static str),
}

/// What kind of message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind<'a> {
    /// A response (`y` = `r`).
    Response(Response<'a>),
    /// An error (`y` = `e`) with its code, if any.
    Error(Option<i64>),
    /// A query (`y` = `q`).
    Query,
}

/// A parsed KRPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Transaction id (`t`).
    pub transaction: &'a [u8],
    /// Kind and body.
    pub kind: MessageKind<'a>,
}

/// The fields of a response body (`r`) the lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// Responding node's id (20 bytes), if well-formed.
    pub id: Option<[u8; 20]>,
    /// Compact IPv4 node info (26 bytes each).
    pub nodes: &'a [u8],
    /// Compact IPv6 node info (38 bytes each).
    pub nodes6: &'a [u8],
    /// `values`: a list of compact peer strings (or absent).
    values: Option<Value<'a>>,
}

impl<'a> Response<'a> {
    /// Hand every peer in `values` to `visit`; returns how many.
    pub fn visit_values(&self, visit: &mut dyn FnMut(SocketAddr)) -> usize {
        let mut count = 0;
        if let Some(values) = self.values {
            for value in values.list_items() {
                if let Some(address) = value.as_bytes().and_then(compact::address) {
                    count += 1;
                    visit(address);
                }
            }
        }
        count
    }

    /// Hand every (node id, address) in `nodes` and `nodes6` to `visit`.
    pub fn visit_nodes(&self, visit: &mut dyn FnMut([u8; 20], SocketAddr)) {
        for (bytes, size) in [(self.nodes, 26), (self.nodes6, 38)] {
            for entry in bytes.chunks_exact(size) {
                let (Some(id), Some(address)) = (
                    entry.get(..20).and_then(|b| <[u8; 20]>::try_from(b).ok()),
                    entry.get(20..).and_then(compact::address),
                ) else {
                    continue;
                };
                visit(id, address);
            }
        }
    }
}

/// Parse one KRPC datagram.
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, KrpcError> {
    let root =
        bencode::parse_exact(datagram, RESPONSE_LIMITS).map_err(|_| KrpcError::NotBencode)?;
    if !matches!(root, Value::Dict(_)) {
        return Err(KrpcError::NotBencode);
    }
    let transaction = root
        .get(b"t")
        .and_then(|v| v.as_bytes())
        .ok_or(KrpcError::Missing("t"))?;
    let kind = match root.get(b"y").and_then(|v| v.as_bytes()) {
        Some(b"r") => {
            let body = root.get(b"r").ok_or(KrpcError::Missing("r"))?;
            if !matches!(body, Value::Dict(_)) {
                return Err(KrpcError::Missing("r"));
            }
            let bytes_of =
                |key: &[u8]| body.get(key).and_then(|v| v.as_bytes()).unwrap_or_default();
            MessageKind::Response(Response {
                id: body
                    .get(b"id")
                    .and_then(|v| v.as_bytes())
                    .and_then(|b| <[u8; 20]>::try_from(b).ok()),
                nodes: bytes_of(b"nodes"),
                nodes6: bytes_of(b"nodes6"),
                values: body.get(b"values").filter(|v| matches!(v, Value::List(_))),
            })
        }
        Some(b"e") => MessageKind::Error(
            root.get(b"e")
                .and_then(|e| e.list_items().next())
                .and_then(|code| code.as_int()),
        ),
        Some(b"q") => MessageKind::Query,
        _ => return Err(KrpcError::Missing("y")),
    };
    Ok(Message { transaction, kind })
}

/// Encode a `get_peers` query.
pub fn get_peers(transaction: &[u8], node_id: &[u8; 20], info_hash: &[u8; 20]) -> Vec<u8> {
    let mut out = Vec::with_capacity(100);
    out.extend_from_slice(b"d1:ad2:id20:");
    out.extend_from_slice(node_id);
    out.extend_from_slice(b"9:info_hash20:");
    out.extend_from_slice(info_hash);
    out.extend_from_slice(b"e1:q9:get_peers1:t");
    out.extend_from_slice(transaction.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(transaction);
    out.extend_from_slice(b"1:y1:qe");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn query_round_trips_through_the_parser() {
        let query = get_peers(b"ab", &[1; 20], &[2; 20]);
        let message = parse(&query).unwrap();
        assert_eq!(message.transaction, b"ab");
        assert_eq!(message.kind, MessageKind::Query);
    }

    #[test]
    fn response_with_values_and_nodes() {
        let mut datagram = b"d1:rd2:id20:".to_vec();
        datagram.extend_from_slice(&[7; 20]);
        datagram.extend_from_slice(b"5:nodes26:");
        datagram.extend_from_slice(&[9; 20]);
        datagram.extend_from_slice(&[127, 0, 0, 5, 0x1a, 0xe1]);
        datagram.extend_from_slice(b"5:token2:tk6:valuesl6:");
        datagram.extend_from_slice(&[127, 0, 0, 2, 0x1a, 0xe1]);
        datagram.extend_from_slice(b"3:bad");
        datagram.extend_from_slice(b"ee1:t2:xy1:y1:re");
        let message = parse(&datagram).unwrap();
        let MessageKind::Response(response) = message.kind else {
            panic!("a response");
        };
        assert_eq!(response.id, Some([7; 20]));
        let mut peers = Vec::new();
        assert_eq!(response.visit_values(&mut |a| peers.push(a)), 1);
        assert_eq!(peers, vec!["127.0.0.2:6881".parse().unwrap()]);
        let mut nodes = Vec::new();
        response.visit_nodes(&mut |id, a| nodes.push((id, a)));
        assert_eq!(nodes, vec![([9; 20], "127.0.0.5:6881".parse().unwrap())]);
    }

    #[test]
    fn errors_and_junk() {
        let message = parse(b"d1:eli201e7:Generice1:t2:aa1:y1:ee").unwrap();
        assert_eq!(message.kind, MessageKind::Error(Some(201)));
        assert!(parse(b"").is_err());
        assert!(parse(b"le").is_err());
        assert!(parse(b"d1:t2:aae").is_err());
        assert!(parse(b"d1:r3:abc1:t2:aa1:y1:re").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(message) = parse(&bytes)
                && let MessageKind::Response(response) = message.kind
            {
                response.visit_values(&mut |_| {});
                response.visit_nodes(&mut |_, _| {});
            }
        }

        #[test]
        fn structured_garbage_never_panics(
            nodes in proptest::collection::vec(any::<u8>(), 0..100),
            value in proptest::collection::vec(any::<u8>(), 0..30),
        ) {
            let mut datagram = format!("d1:rd5:nodes{}:", nodes.len()).into_bytes();
            datagram.extend_from_slice(&nodes);
            datagram.extend_from_slice(format!("6:valuesl{}:", value.len()).as_bytes());
            datagram.extend_from_slice(&value);
            datagram.extend_from_slice(b"ee1:t1:x1:y1:re");
            let message = parse(&datagram).unwrap();
            let MessageKind::Response(response) = message.kind else {
                panic!("response");
            };
            let mut count = 0;
            response.visit_nodes(&mut |_, _| count += 1);
            prop_assert_eq!(count, nodes.len() / 26);
            let expected = usize::from(value.len() == 6 || value.len() == 18);
            prop_assert_eq!(response.visit_values(&mut |_| {}), expected);
        }
    }
}
