//! HAProxy PROXY protocol v1 (text) and v2 (binary) header parsing, sans-IO.
//!
//! STUB: the API is fixed; the account-security work implements it. The server calls
//! [`parse_header`] on the first bytes of a connection from a trusted load balancer, feeding
//! more bytes while it returns [`ParseOutcome::Incomplete`].

use std::net::SocketAddr;

/// Why a PROXY header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyProtocolError {
    /// Neither the v1 nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxyProtocol,
    /// The header is malformed (the message says where).
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Result of parsing the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseOutcome {
    /// More bytes are needed (v1 needs at most 107, v2 at most 16 + its length field).
    Incomplete,
    /// A complete header.
    Header {
        /// The original client (None for `UNKNOWN` / `LOCAL`).
        source: Option<SocketAddr>,
        /// The original destination (None for `UNKNOWN` / `LOCAL`).
        destination: Option<SocketAddr>,
        /// Header length: the SOCKS5 greeting starts after it.
        consumed: usize,
    },
    /// Not a valid header: close the connection.
    Invalid(ProxyProtocolError),
}

/// Parse a PROXY protocol v1 or v2 header at the start of `input`.
pub fn parse_header(input: &[u8]) -> ParseOutcome {
    let _ = input;
    ParseOutcome::Invalid(ProxyProtocolError::NotProxyProtocol)
}
