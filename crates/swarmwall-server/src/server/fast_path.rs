//! The fast path of a relayed session: both directions after the inspect phase, as one
//! hand-written future polled in place in the session's task.
//!
//! Each direction is a small [`Stage`]: waiting for its source to be readable (no buffer), a
//! chunk its sink has not taken yet (the buffer, held only then), or `splice` through a pipe.
//! Nothing else is kept between polls, so an idle session's fast path is a few words per
//! direction; the nested `async` loops this replaces kept every local of every level across
//! each wait (672 bytes, measured with `session::relay_state_bytes`).
//!
//! Behaviour is that of those loops: a direction borrows a relay buffer only while its socket
//! has data and reads until the socket is drained ([`read_chunk`]), half-closes its sink when
//! its source ends, and with `fast_path = "auto"` moves to `splice` after [`SPLICE_AFTER`]
//! bytes, on a read that filled the buffer (bulk). The fast path ends when both directions
//! ended or on the first error; the session's clock (`relay::run`) ends it when idle.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockRef;
use tokio::net::TcpStream;

use super::drain::{Chunk, Pump, read_chunk};
use super::splice::{self, Pipe};
use crate::config::FastPath;

/// Bytes a direction copies through user space before `fast_path = "auto"` switches it to
/// `splice` (a pipe costs two descriptors and a few syscalls: worth it only for bulk).
pub(crate) const SPLICE_AFTER: u64 = 256 * 1024;

/// Both directions of a session's fast path; resolves when both ended, or on the first error.
pub(super) struct Forwarding<'a> {
    /// Client → target and target → client.
    pumps: [Pump<'a>; 2],
    /// Bytes of the buffer a copy burst borrows.
    buffer_size: usize,
    to_target: Forward,
    to_client: Forward,
}

impl<'a> Forwarding<'a> {
    /// The fast path of `pumps` (client → target, target → client) in `mode`, with buffers of
    /// `buffer_size` bytes; `open` tells which sides (client, target) may still send.
    pub(super) fn new(
        pumps: [Pump<'a>; 2],
        mode: FastPath,
        buffer_size: usize,
        open: (bool, bool),
    ) -> Self {
        Self {
            pumps,
            buffer_size,
            to_target: Forward::new(open.0, mode),
            to_client: Forward::new(open.1, mode),
        }
    }
}

impl Future for Forwarding<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let [to_target, to_client] = &this.pumps;
        let sent = this.to_target.poll(cx, to_target, this.buffer_size)?;
        let received = this.to_client.poll(cx, to_client, this.buffer_size)?;
        if sent.is_ready() && received.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// One direction of the fast path.
struct Forward {
    stage: Stage,
    /// Bytes still to copy before this direction moves to `splice` (`u64::MAX`: never).
    until_splice: u64,
}

/// Where one direction stands between polls.
enum Stage {
    /// The source ended (the sink was half-closed), or had ended before the fast path.
    Ended,
    /// The copy, waiting for the source to be readable; no buffer held.
    Waiting,
    /// The copy: `buffer[written..]` is still to be written (the sink was full). `drained`:
    /// the read that filled `buffer` emptied the source.
    Writing {
        buffer: Vec<u8>,
        written: usize,
        drained: bool,
    },
    /// `splice` through `pipe` (made when the first byte arrives); `in_pipe` bytes in it are
    /// still to be written to the sink.
    Splice { pipe: Option<Pipe>, in_pipe: usize },
}

impl Forward {
    fn new(open: bool, mode: FastPath) -> Self {
        let stage = match (open, mode) {
            (false, _) => Stage::Ended,
            (true, FastPath::Splice) => Stage::Splice {
                pipe: None,
                in_pipe: 0,
            },
            (true, FastPath::Copy | FastPath::Auto) => Stage::Waiting,
        };
        let until_splice = if mode == FastPath::Auto {
            SPLICE_AFTER
        } else {
            u64::MAX
        };
        Self {
            stage,
            until_splice,
        }
    }

    /// Forward what can be forwarded now; `Ready(Ok)` once the source ended.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        pump: &Pump<'_>,
        buffer_size: usize,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.stage {
                Stage::Ended => return Poll::Ready(Ok(())),
                Stage::Waiting => {
                    ready!(pump.source.poll_read_ready(cx))?;
                    self.copy_burst(pump, buffer_size)?;
                }
                Stage::Writing {
                    buffer,
                    written,
                    drained,
                } => {
                    ready!(pump.sink.poll_write_ready(cx))?;
                    *written += write_some(pump.sink, buffer.get(*written..).unwrap_or_default())?;
                    if *written < buffer.len() {
                        continue;
                    }
                    let (read, drained) = (buffer.len(), *drained);
                    // Gives the buffer back: the next burst borrows a new one.
                    self.stage = Stage::Waiting;
                    self.chunk_done(pump, read, drained);
                }
                Stage::Splice { pipe, in_pipe } if *in_pipe > 0 => {
                    let Some(pipe) = pipe else {
                        return Poll::Ready(Err(io::Error::other("splice: bytes without a pipe")));
                    };
                    match splice::drain(pipe, pump.sink, *in_pipe) {
                        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Ok(written) => {
                            *in_pipe -= written.min(*in_pipe);
                            pump.counter.inc_by(written as u64);
                            if *in_pipe == 0 {
                                pump.activity.touch();
                            }
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            ready!(pump.sink.poll_write_ready(cx))?;
                        }
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
                Stage::Splice { pipe, in_pipe } => {
                    ready!(pump.source.poll_read_ready(cx))?;
                    let pipe = match pipe {
                        Some(pipe) => &*pipe,
                        None => &*pipe.insert(splice::new_pipe()?),
                    };
                    match splice::fill(pump.source, pipe) {
                        Ok(0) => self.end(pump),
                        Ok(moved) => *in_pipe = moved,
                        // The source is empty (readiness cleared): wait for it again.
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
            }
        }
    }

    /// The source is readable: read and write until it is drained or the sink is full, with
    /// a buffer borrowed for this burst only.
    fn copy_burst(&mut self, pump: &Pump<'_>, buffer_size: usize) -> io::Result<()> {
        let mut buffer = Vec::with_capacity(buffer_size);
        loop {
            let (read, drained) = match read_chunk(pump.source, &mut buffer)? {
                Chunk::Ended => {
                    self.end(pump);
                    return Ok(());
                }
                // Nothing there (readiness cleared): wait again.
                Chunk::Empty => return Ok(()),
                Chunk::More(read) => (read, false),
                Chunk::Drained(read) => (read, true),
            };
            let written = write_some(pump.sink, &buffer)?;
            if written < buffer.len() {
                self.stage = Stage::Writing {
                    buffer,
                    written,
                    drained,
                };
                return Ok(());
            }
            buffer.clear();
            self.chunk_done(pump, read, drained);
            if drained || !matches!(self.stage, Stage::Waiting) {
                return Ok(());
            }
        }
    }

    /// A chunk of `read` bytes was written: count it, and move to `splice` once enough bulk
    /// went by (only on a read that filled the buffer: a long interactive session of small
    /// messages stays on the copy, which costs the same calls).
    fn chunk_done(&mut self, pump: &Pump<'_>, read: usize, drained: bool) {
        pump.counter.inc_by(read as u64);
        pump.activity.touch();
        self.until_splice = self.until_splice.saturating_sub(read as u64);
        if self.until_splice == 0 && !drained {
            match splice::new_pipe() {
                Ok(pipe) => {
                    self.stage = Stage::Splice {
                        pipe: Some(pipe),
                        in_pipe: 0,
                    }
                }
                // Without a pipe (descriptors exhausted) the copy simply goes on.
                Err(_) => self.until_splice = u64::MAX,
            }
        }
    }

    /// The source ended: half-close the sink; this direction is done.
    fn end(&mut self, pump: &Pump<'_>) {
        let _ = SockRef::from(pump.sink).shutdown(Shutdown::Write);
        self.stage = Stage::Ended;
    }
}

/// Write as much of `bytes` as `sink` takes now (stops at `WouldBlock`, which clears the
/// sink's write readiness).
fn write_some(sink: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while let Some(rest) = bytes.get(written..).filter(|rest| !rest.is_empty()) {
        match sink.try_write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// Bytes of a session's fast-path state (see `session::relay_state_bytes`).
pub(super) const fn state_bytes() -> usize {
    size_of::<Forwarding<'static>>()
}
