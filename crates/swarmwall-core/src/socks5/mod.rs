//! SOCKS5 (RFC 1928) and username/password authentication (RFC 1929), sans-IO.
//!
//! - `wire`: the message types and their byte codecs. Every decoder takes a byte slice and
//!   returns `Ok(None)` when more bytes are needed, `Ok(Some((message, consumed)))` once a
//!   whole message is there, or an [`Error`] for input that can never become valid. Decoders
//!   never panic and never index without a length check.
//! - `server`: [`ServerHandshake`], the server side of the handshake as a state machine
//!   (greeting, method selection, RFC 1929 sub-negotiation, request). The caller feeds bytes
//!   with `handle_input`, drains `poll_transmit` and `poll_event`, answers credentials with
//!   `handle_auth_result` and the request with a [`ReplyMessage`] of its own. Nothing here
//!   awaits or reads a clock.
//! - `client`: [`ClientHandshake`], the client side (greeting, RFC 1929, one request), driven
//!   the same way; its `read_hint` never reads past the server's reply.
//!
//! Errors map to SOCKS5 reply codes with [`Error::as_reply`] (the idea of shadowsocks-rust's
//! `Error::as_reply`), so every refusal gets the precise code.

mod client;
mod server;
mod wire;

pub use client::{ClientError, ClientHandshake};
pub use server::{Event, ServerHandshake};
pub use wire::{
    Address, AddressRef, Command, Error, Greeting, MAX_UDP_HEADER_LEN, Method, MethodSelection,
    PasswordReply, PasswordRequest, Reply, ReplyMessage, Request, UdpHeader, UdpHeaderRef,
};

/// The SOCKS protocol version byte (RFC 1928 §3).
pub const VERSION: u8 = 0x05;

/// The username/password sub-negotiation version byte (RFC 1929 §2).
pub const AUTH_VERSION: u8 = 0x01;

#[cfg(test)]
mod tests;
