//! Linux `splice(2)` fast path (nix `zerocopy`): socket → pipe → socket without copying the
//! payload through user space. Used from the start with `server.fast_path = "splice"`, and by
//! the default `auto` once a direction has moved 256 KiB through the copy in `relay` (see
//! docs/benchmarks.md for the measured comparison).
//!
//! The pipe of a direction is created when the first byte arrives here, so an idle session
//! that never moved bulk holds no pipe. The pipe is always drained before the next fill, so `EAGAIN` on the fill means the
//! source socket is empty.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use socket2::SockRef;
use tokio::io::Interest;

use super::drain::{Pump, read_ready, write_ready};

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

/// Splice `source` → `sink` until `source` ends (then half-close `sink`) or an error, through
/// `pipe`, or a pipe made when the first byte arrives.
pub(super) async fn copy(pump: &Pump<'_>, mut pipe: Option<Pipe>) -> io::Result<()> {
    // Fields read through `pump`, not copied out: a copy would stay in the loop's state.
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        read_ready(pump.source).await?;
        let (pipe_read, pipe_write) = match &pipe {
            Some(pipe) => pipe,
            None => pipe.insert(new_pipe()?),
        };
        let filled = pump.source.try_io(Interest::READABLE, || {
            splice(pump.source, None, &*pipe_write, None, PIPE_BYTES, flags)
                .map_err(io::Error::from)
        });
        let moved = match filled {
            Ok(0) => {
                let _ = SockRef::from(pump.sink).shutdown(Shutdown::Write);
                return Ok(());
            }
            Ok(moved) => moved,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        let mut left = moved;
        while left > 0 {
            let drained = pump.sink.try_io(Interest::WRITABLE, || {
                splice(&*pipe_read, None, pump.sink, None, left, flags).map_err(io::Error::from)
            });
            match drained {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => left -= written.min(left),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    write_ready(pump.sink).await?;
                }
                Err(error) => return Err(error),
            }
        }
        pump.counter.inc_by(moved as u64);
        pump.activity.touch();
    }
}
