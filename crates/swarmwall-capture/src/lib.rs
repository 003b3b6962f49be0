//! Offline capture inspection for `swarmwall inspect`: pcap/pcapng reading, link/IP/TCP/UDP
//! decoding, bounded TCP reassembly and a bounded flow table that feeds the same
//! `swarmwall_core::classify` code the proxy runs ([`swarmwall_core::classify::TcpFlow`] and
//! [`swarmwall_core::classify::UdpFlow`] with [`swarmwall_core::classify::FlowContext::offline`]).
//!
//! Layout: [`reader`] walks the records of a file, [`decode`] turns a frame into a TCP/UDP
//! segment, [`reassembly`] orders one TCP direction, [`socks5`] skips a SOCKS5 negotiation on a
//! proxy's client side, and [`flow`] ties them together in an [`Inspector`].
//!
//! Everything is synchronous and allocation-light; no input makes it panic.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decode;
pub mod flow;
pub mod reader;
pub mod reassembly;
pub mod socks5;

use std::io::Read;

pub use flow::{FlowRecord, InspectOptions, Inspector, L4, PacketStats};
pub use reader::{CaptureError, PacketRecord, ReadOutcome, read_capture};

/// The result of inspecting one capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureReport {
    /// One record per flow, in order of each flow's first packet.
    pub flows: Vec<FlowRecord>,
    /// Packet counters.
    pub stats: PacketStats,
    /// Set when the capture was truncated or malformed part-way: `flows` holds what was read
    /// before that point.
    pub stopped: Option<CaptureError>,
}

/// Read a whole capture from `input` and classify its flows. `size_hint` (the file size) sizes
/// the read buffer; `on_progress` receives the bytes consumed so far now and then.
///
/// Returns `Err` only when the input is not a capture at all (or is empty).
pub fn inspect<R: Read + Send>(
    input: R,
    size_hint: Option<u64>,
    options: InspectOptions,
    on_progress: impl FnMut(u64),
) -> Result<CaptureReport, CaptureError> {
    let mut inspector = Inspector::new(options);
    let outcome = read_capture(
        input,
        size_hint,
        |record| inspector.handle_packet(record),
        on_progress,
    )?;
    let (flows, stats) = inspector.finish();
    Ok(CaptureReport {
        flows,
        stats,
        stopped: outcome.stopped,
    })
}
