//! Reading pcap and pcapng files record by record with `pcap-parser`'s streaming readers.
//!
//! [`read_capture`] calls a closure for every packet record with its link type, captured bytes
//! and wire length. Errors name the 1-based record number; a file that ends inside a record
//! (truncated) or has a malformed record after some good ones is not fatal: the reader stops
//! there and reports how far it got, so the caller can still print what was read.

use std::io::Read;
use std::time::Duration;

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};

/// First read-buffer size; grown (up to [`MAX_RECORD_BYTES`]) when a record does not fit.
const INITIAL_BUFFER_BYTES: usize = 256 * 1024;
/// Largest record accepted; larger claimed sizes are reported as malformed.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// One packet record, borrowed from the reader's buffer for the duration of the callback.
#[derive(Debug, Clone, Copy)]
pub struct PacketRecord<'a> {
    /// 1-based record number (counting packet records only, as Wireshark numbers frames).
    pub number: u64,
    /// Link-layer type (a LINKTYPE_* value, e.g. 1 for Ethernet).
    pub linktype: i32,
    /// Captured bytes (possibly shorter than `wire_len` when a snap length applied).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub wire_len: u32,
    /// Capture time since the Unix epoch (as recorded; zero when absent).
    pub timestamp: Duration,
}

/// How reading a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Packet records handed to the callback.
    pub packets: u64,
    /// Set when reading stopped early (truncated or malformed file) after the header was read.
    pub stopped: Option<CaptureError>,
}

/// Why a capture could not be read (or not read to its end).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file is empty or shorter than a capture header.
    #[error("empty or too short to be a capture")]
    Empty,
    /// Neither a pcap nor a pcapng header.
    #[error("not a pcap or pcapng file (unrecognised header)")]
    NotACapture,
    /// An I/O error while reading.
    #[error("read error: {0}")]
    Io(String),
    /// The file ends inside a record.
    #[error("truncated: the file ends inside packet record {packet}")]
    Truncated {
        /// 1-based number of the record that is cut off.
        packet: u64,
    },
    /// A record could not be parsed.
    #[error("malformed record at packet {packet}: {reason}")]
    Malformed {
        /// 1-based number of the packet record that failed (the next one expected).
        packet: u64,
        /// What was wrong.
        reason: String,
    },
    /// A packet names a pcapng interface that was never described.
    #[error("packet {packet} refers to undeclared interface {interface}")]
    UnknownInterface {
        /// 1-based packet number.
        packet: u64,
        /// The interface id in the packet block.
        interface: u32,
    },
}

/// Read every packet record of a pcap or pcapng stream, calling `on_packet` for each.
///
/// Returns `Err` only when nothing could be read (no valid header). A truncated or malformed
/// file after the header returns `Ok` with [`ReadOutcome::stopped`] set. `on_progress` is called
/// now and then with the number of bytes consumed so far.
pub fn read_capture<R, F, P>(
    input: R,
    size_hint: Option<u64>,
    mut on_packet: F,
    mut on_progress: P,
) -> Result<ReadOutcome, CaptureError>
where
    R: Read + Send,
    F: FnMut(&PacketRecord<'_>),
    P: FnMut(u64),
{
    let capacity = size_hint
        .map(|n| usize::try_from(n).unwrap_or(INITIAL_BUFFER_BYTES))
        .unwrap_or(INITIAL_BUFFER_BYTES)
        .clamp(4096, INITIAL_BUFFER_BYTES);
    let mut reader = match create_reader(capacity, input) {
        Ok(reader) => reader,
        Err(PcapError::Eof | PcapError::Incomplete(_) | PcapError::UnexpectedEof) => {
            return Err(CaptureError::Empty);
        }
        Err(PcapError::ReadError) => return Err(CaptureError::Io("read failed".to_owned())),
        Err(_) => return Err(CaptureError::NotACapture),
    };
    let mut capacity = capacity;
    let mut packets: u64 = 0;
    // pcapng: link type per interface, reset at every section header.
    // (link type, timestamp units per second) per interface.
    let mut interfaces: Vec<(i32, u64)> = Vec::new();
    let mut legacy_linktype: i32 = 1;
    let mut legacy_nanos = false;
    let mut last_progress: u64 = 0;
    let stopped = loop {
        let next_number = packets + 1;
        let result = reader.next();
        match result {
            Ok((offset, block)) => {
                let mut record_error = None;
                match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        legacy_linktype = header.network.0;
                        legacy_nanos = header.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(frame) => {
                        packets += 1;
                        let fraction = if legacy_nanos {
                            u64::from(frame.ts_usec)
                        } else {
                            u64::from(frame.ts_usec) * 1000
                        };
                        on_packet(&PacketRecord {
                            number: packets,
                            linktype: legacy_linktype,
                            data: frame.data,
                            wire_len: frame.origlen,
                            timestamp: Duration::from_secs(u64::from(frame.ts_sec))
                                + Duration::from_nanos(fraction),
                        });
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let resolution =
                            idb.ts_resolution().filter(|r| *r > 0).unwrap_or(1_000_000);
                        interfaces.push((idb.linktype.0, resolution));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        packets += 1;
                        let interface = usize::try_from(epb.if_id)
                            .ok()
                            .and_then(|i| interfaces.get(i).copied());
                        match interface {
                            Some((linktype, resolution)) => on_packet(&PacketRecord {
                                number: packets,
                                linktype,
                                data: epb.packet_data(),
                                wire_len: epb.orig_len(),
                                timestamp: pcapng_time(epb.ts_high, epb.ts_low, resolution),
                            }),
                            None => {
                                record_error = Some(CaptureError::UnknownInterface {
                                    packet: packets,
                                    interface: epb.if_id,
                                });
                            }
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        packets += 1;
                        match interfaces.first() {
                            Some(&(linktype, _)) => on_packet(&PacketRecord {
                                number: packets,
                                linktype,
                                data: spb.packet_data(),
                                wire_len: spb.orig_len(),
                                timestamp: Duration::ZERO,
                            }),
                            None => {
                                record_error = Some(CaptureError::UnknownInterface {
                                    packet: packets,
                                    interface: 0,
                                });
                            }
                        }
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
                if let Some(error) = record_error {
                    break Some(error);
                }
                let consumed = reader.consumed() as u64;
                if consumed - last_progress >= 1 << 20 {
                    last_progress = consumed;
                    on_progress(consumed);
                }
            }
            Err(PcapError::Eof) => break None,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    break Some(CaptureError::Io(format!(
                        "read failed at packet record {next_number}"
                    )));
                }
            }
            Err(PcapError::BufferTooSmall) => {
                if capacity >= MAX_RECORD_BYTES {
                    break Some(CaptureError::Malformed {
                        packet: next_number,
                        reason: format!("record larger than {MAX_RECORD_BYTES} bytes"),
                    });
                }
                capacity = (capacity * 4).min(MAX_RECORD_BYTES);
                reader.grow(capacity);
                if reader.refill().is_err() {
                    break Some(CaptureError::Io(format!(
                        "read failed at packet record {next_number}"
                    )));
                }
            }
            Err(PcapError::UnexpectedEof) => {
                break Some(CaptureError::Truncated {
                    packet: next_number,
                });
            }
            Err(PcapError::ReadError) => {
                break Some(CaptureError::Io(format!(
                    "read failed at packet record {next_number}"
                )));
            }
            Err(PcapError::NomError(_, kind)) => {
                break Some(CaptureError::Malformed {
                    packet: next_number,
                    reason: format!("{kind:?}"),
                });
            }
            Err(PcapError::OwnedNomError(_, kind)) => {
                break Some(CaptureError::Malformed {
                    packet: next_number,
                    reason: format!("{kind:?}"),
                });
            }
            Err(PcapError::HeaderNotRecognized) => {
                break Some(CaptureError::Malformed {
                    packet: next_number,
                    reason: "unrecognised block".to_owned(),
                });
            }
        }
    };
    on_progress(reader.consumed() as u64);
    Ok(ReadOutcome { packets, stopped })
}

/// A pcapng timestamp (64-bit count of `resolution` units per second) as a duration.
fn pcapng_time(high: u32, low: u32, resolution: u64) -> Duration {
    let units = (u64::from(high) << 32) | u64::from(low);
    let seconds = units / resolution;
    let rest = units % resolution;
    let nanos = u128::from(rest) * 1_000_000_000 / u128::from(resolution);
    Duration::from_secs(seconds) + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}
