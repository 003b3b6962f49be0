//! DHT KRPC (BEP 5, with the BEP 42/43/44/51 additions): one bencoded dictionary per datagram.
//!
//! Decisive only on full-structure validation (docs §1.10): the whole datagram parses as one
//! bencoded dictionary with nothing after it; `t` is a short byte string; `y` is `q`, `r` or
//! `e`; a query has a method name `q` and an argument dictionary `a` whose `id` is 20 bytes
//! (plus the method's own required arguments for the BEP 5/44/51 methods); a response has a
//! dictionary `r` with a 20-byte `id` and well-formed `nodes`/`nodes6`/`values`/`token` when
//! present; an error has `e` = [integer code, byte-string message]. Keys may come in any order
//! (BEP 42 puts `ip` before `r`, and not every implementation sorts keys); `v` (client
//! version), `ip` (BEP 42, 6 or 18 bytes) and `ro` (BEP 43, integer) are checked when present.
//! No prefix is matched anywhere.

use super::super::bencode::{Limits, Value, parse_exact};

/// Bounds for a KRPC datagram: a 1.5 KiB datagram holds at most ~750 values; BEP 44 `put`
/// values may nest, so the depth bound stays at the reader's default.
const KRPC_LIMITS: Limits = Limits {
    max_depth: 8,
    max_items: 1024,
};

/// Longest transaction id accepted (libtorrent uses 2 bytes, others up to 8).
const MAX_TRANSACTION_ID: usize = 32;

/// Length of a DHT node id, info-hash or target (BEP 5).
const ID_LEN: usize = 20;

/// True when `datagram` is exactly one well-formed KRPC message.
pub(super) fn is_krpc(datagram: &[u8]) -> bool {
    if datagram.first() != Some(&b'd') {
        return false;
    }
    let Ok(message) = parse_exact(datagram, KRPC_LIMITS) else {
        return false;
    };
    // One pass over the top level (each `get` would re-walk the dictionary).
    let (mut kind, mut transaction, mut method, mut body) = (None, false, None, None);
    for (key, value) in message.dict_entries() {
        let ok = match key {
            b"t" => {
                transaction = true;
                value
                    .as_bytes()
                    .is_some_and(|t| t.len() <= MAX_TRANSACTION_ID)
            }
            b"y" => {
                kind = value.as_bytes();
                kind.is_some()
            }
            b"q" => {
                method = value.as_bytes();
                method.is_some()
            }
            b"a" | b"r" | b"e" => {
                body = Some((key, value));
                true
            }
            b"v" => value.as_bytes().is_some(),
            b"ip" => value
                .as_bytes()
                .is_some_and(|ip| matches!(ip.len(), 6 | 18)),
            b"ro" => value.as_int().is_some(),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    if !transaction {
        return false;
    }
    match (kind, body) {
        (Some(b"q"), Some((b"a", args))) => method.is_some_and(|m| is_query(m, &args)),
        (Some(b"r"), Some((b"r", response))) => is_response_body(&response),
        (Some(b"e"), Some((b"e", error))) => is_error_body(&error),
        _ => false,
    }
}

/// `method` names a KRPC method and `args` holds its arguments (BEP 5 "Queries").
fn is_query(method: &[u8], args: &Value<'_>) -> bool {
    let method_ok = !method.is_empty()
        && method.len() <= 32
        && method
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !method_ok || !matches!(args, Value::Dict(_)) {
        return false;
    }
    let (mut id, mut target, mut info_hash, mut token, mut port, mut value) =
        (false, false, false, false, false, false);
    for (key, v) in args.dict_entries() {
        let is_id = v.as_bytes().is_some_and(|b| b.len() == ID_LEN);
        match key {
            b"id" => id = is_id,
            b"target" => target = is_id,
            b"info_hash" => info_hash = is_id,
            b"token" => token = v.as_bytes().is_some(),
            b"port" | b"implied_port" => port |= v.as_int().is_some(),
            b"v" => value = true,
            _ => {}
        }
    }
    id && match method {
        b"find_node" => target,
        b"get_peers" => info_hash,
        b"announce_peer" => info_hash && token && port,
        // BEP 44 `get` and BEP 51 `sample_infohashes` name a 20-byte target.
        b"get" | b"sample_infohashes" => target,
        // BEP 44 `put` carries a value `v` and a write token.
        b"put" => value && token,
        // `ping` and any other method: a 20-byte id is what makes it KRPC.
        _ => true,
    }
}

/// A response dictionary: a 20-byte `id`, and well-formed compact node/peer lists.
fn is_response_body(body: &Value<'_>) -> bool {
    if !matches!(body, Value::Dict(_)) {
        return false;
    }
    let mut id = false;
    let entries_ok = body.dict_entries().all(|(key, value)| match key {
        b"id" => {
            id = value.as_bytes().is_some_and(|b| b.len() == ID_LEN);
            true
        }
        b"nodes" => value.as_bytes().is_some_and(|n| n.len().is_multiple_of(26)),
        b"nodes6" => value.as_bytes().is_some_and(|n| n.len().is_multiple_of(38)),
        b"token" => value.as_bytes().is_some(),
        b"values" => {
            matches!(value, Value::List(_))
                && value
                    .list_items()
                    .all(|peer| peer.as_bytes().is_some_and(|p| matches!(p.len(), 6 | 18)))
        }
        _ => true,
    });
    entries_ok && id
}

/// An error list: exactly an integer code then a byte-string message (BEP 5 "Errors").
fn is_error_body(body: &Value<'_>) -> bool {
    if !matches!(body, Value::List(_)) {
        return false;
    }
    let mut items = body.list_items();
    matches!(
        (items.next(), items.next(), items.next()),
        (Some(Value::Int(_)), Some(Value::Bytes(_)), None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bep5_examples_are_krpc() {
        // The examples of BEP 5 ("KRPC Protocol"), bencoded exactly as printed there.
        for message in [
            &b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"[..],
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
            b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
            b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re",
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
            b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
            b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
            b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
        ] {
            let expected = !message.windows(9).any(|w| w == b"def456...");
            assert_eq!(is_krpc(message), expected, "{}", String::from_utf8_lossy(message));
        }
    }

    #[test]
    fn bep44_and_bep51_messages() {
        // Built from the message layouts in BEP 44 (get/put, immutable item) and BEP 51.
        for message in [
            &b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q3:get1:t2:aa1:y1:qe"[..],
            b"d1:ad2:id20:abcdefghij01234567895:token8:aoeusnth1:v12:Hello World!e1:q3:put1:t2:aa1:y1:qe",
            b"d1:rd2:id20:0123456789abcdefghij5:token8:aoeusnth1:v12:Hello World!e1:t2:aa1:y1:re",
            b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q17:sample_infohashes1:t2:aa1:y1:qe",
            b"d1:rd2:id20:0123456789abcdefghij8:intervali21600e3:numi2e7:samples40:0123456789abcdefghijklmnopqrstuvwxyz0123e1:t2:aa1:y1:re",
            b"d1:rd2:id20:0123456789abcdefghij6:nodes638:abcdefghijklmnopqrstuvwxyz0123456789ABe1:t2:aa1:y1:r2:roi1ee",
        ] {
            assert!(is_krpc(message), "{}", String::from_utf8_lossy(message));
        }
        // put without a token, get without a target.
        assert!(!is_krpc(
            b"d1:ad2:id20:abcdefghij01234567891:v12:Hello World!e1:q3:put1:t2:aa1:y1:qe"
        ));
        assert!(!is_krpc(
            b"d1:ad2:id20:abcdefghij0123456789e1:q3:get1:t2:aa1:y1:qe"
        ));
    }

    #[test]
    fn keys_in_any_order_and_bep42_ip() {
        // BEP 42 puts `ip` first, which breaks `d1:r` prefix matchers.
        let reply =
            b"d2:ip6:\x7f\x00\x00\x01\x1a\xe11:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:re";
        assert!(is_krpc(reply));
        let unsorted = b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee";
        assert!(is_krpc(unsorted));
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            // id of 19 bytes
            &b"d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe"[..],
            // no transaction id
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe",
            // unknown message type
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:xe",
            // trailing byte after the dictionary
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qex",
            // truncated
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q",
            // get_peers without info_hash
            b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:aa1:y1:qe",
            // values entry of 5 bytes
            b"d1:rd2:id20:abcdefghij01234567896:valuesl5:axje.ee1:t2:aa1:y1:re",
            // error with the fields swapped
            b"d1:el3:abci201ee1:t2:aa1:y1:ee",
            // not a dictionary
            b"l1:ad2:id20:abcdefghij0123456789ee",
            // a bencoded dictionary that is not KRPC
            b"d8:announce30:http://tracker.example/announcee",
        ] {
            assert!(!is_krpc(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
