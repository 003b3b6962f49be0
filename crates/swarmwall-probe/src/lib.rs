//! swarmwall-probe: the client tools that prove enforcement from outside the proxy.
//!
//! - [`probe`]: an active self-test of a running SOCKS5 node (swarmwall or any other): every
//!   BitTorrent wire form and benign controls go through the proxy to the probe's own targets,
//!   and the report says which got through.
//! - [`monitor`]: watches known swarms (trackers and the DHT) for the operator's own egress
//!   addresses, the evidence that blocking failed somewhere.
//!
//! Both speak through `swarmwall-core`: SOCKS5 through its sans-IO client handshake, BitTorrent
//! through its pure [`swarmwall_core::bt`] module. Nothing here depends on the server.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod monitor;
pub mod probe;
