//! swarmwall-core: the sans-IO heart of swarmwall.
//!
//! - [`socks5`]: SOCKS5 (RFC 1928) and username/password (RFC 1929) wire types, codec and the
//!   server-side handshake state machine. Bytes in, typed messages and bytes out.
//! - [`bt`]: pure BitTorrent wire pieces (bencode, KRPC, tracker responses, the peer-wire
//!   handshake) shared by the classifier, the client tools and the fuzz targets.
//! - [`classify`]: the BitTorrent classifier (per TCP flow, per UDP datagram, per client).
//! - [`proxy_protocol`]: HAProxy PROXY protocol v1/v2 header parser.
//!
//! No async runtime, no sockets, no clock (time is a parameter), no logging of payloads. The
//! proxy (`swarmwall-server`) and the offline inspector (`swarmwall-capture`) drive this code.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bt;
pub mod classify;
pub mod proxy_protocol;
pub mod socks5;
