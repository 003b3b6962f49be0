//! Linux `splice(2)` (nix): socket → pipe → socket without copying the payload through user
//! space. The fast path (`fast_path.rs`) uses it from the start with `server.fast_path =
//! "splice"`, and with the default `auto` once a direction has moved 256 KiB through the copy
//! (see docs/benchmarks.md for the measured comparison).
//!
//! The pipe of a direction is created when the first byte arrives, so an idle session that
//! never moved bulk holds no pipe. The pipe is always drained before the next fill, so
//! `EAGAIN` on the fill means the source socket is empty.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for, and bytes moved per splice call. Four times the default 64 KiB:
/// measured with `scripts/bench-relay.sh`, CPU per GB fell from 0.29-0.33 to 0.25 s and one
/// stream rose by a fifth. The pages are used only while data is in flight.
const PIPE_BYTES: usize = 256 * 1024;

/// The two ends (read, write) of a splice pipe.
pub(super) type Pipe = (OwnedFd, OwnedFd);

/// A non-blocking pipe of [`PIPE_BYTES`] (or the default size past the per-user quota).
pub(super) fn new_pipe() -> io::Result<Pipe> {
    let created =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // The higher end decides: both are given back when it lies in the admin reserve.
    super::fd_reserve::check(&created.0)?;
    super::fd_reserve::check(&created.1)?;
    // Best effort: past the per-user pipe quota the kernel refuses, and the default-sized
    // pipe still works (only with more calls per byte).
    let _ = fcntl(&created.1, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32));
    Ok(created)
}

/// Flags of every splice call: move pages where possible, never block.
fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// Move what `source` holds (up to [`PIPE_BYTES`]) into the empty `pipe`: `Ok(0)` when the
/// source ended, `WouldBlock` when it is empty (its readiness is then cleared).
pub(super) fn fill(source: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    source.try_io(Interest::READABLE, || {
        splice(source, None, &pipe.1, None, PIPE_BYTES, flags()).map_err(io::Error::from)
    })
}

/// Move up to `len` bytes from `pipe` to `sink`; `WouldBlock` when the sink is full (its
/// write readiness is then cleared).
pub(super) fn drain(pipe: &Pipe, sink: &TcpStream, len: usize) -> io::Result<usize> {
    sink.try_io(Interest::WRITABLE, || {
        splice(&pipe.0, None, sink, None, len, flags()).map_err(io::Error::from)
    })
}
