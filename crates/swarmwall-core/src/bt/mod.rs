//! Pure BitTorrent wire pieces shared by the classifier, the client tools and the fuzz targets:
//! no I/O, no clock, no allocation beyond the values returned.
//!
//! - [`bencode`]: the bounded, allocation-free bencode reader (BEP 3).
//! - [`krpc`]: DHT KRPC messages (BEP 5): the `get_peers` encoder and the response parser.
//! - [`tracker`]: tracker URLs, HTTP announce/scrape responses (BEP 3, 23, 7, 48) and UDP
//!   tracker messages (BEP 15), and the one `percent_encode` for announce queries.
//! - [`peer_wire`]: the 68-byte peer-wire handshake (BEP 3): builder and parser.
//! - [`compact`]: compact peer addresses (6-byte IPv4, 18-byte IPv6).
//!
//! Every parser takes a byte slice, bounds what it reads, and never panics on any input
//! (proptests beside each parser, fuzz targets in `fuzz/`).

pub mod bencode;
pub mod compact;
pub mod krpc;
pub mod peer_wire;
pub mod tracker;

/// Bencode bounds for tracker responses and KRPC datagrams: shallow, but room for a few hundred
/// peer dictionaries.
pub const RESPONSE_LIMITS: bencode::Limits = bencode::Limits {
    max_depth: 6,
    max_items: 16_384,
};
