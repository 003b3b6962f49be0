//! One read that also tells tokio when the socket is drained, saving a system call per message.
//!
//! tokio's readiness is edge-triggered and cleared only when a read returns `WouldBlock`, so a
//! relay that reads a 64-byte message would normally read once more just to hear `EAGAIN`
//! before it waits again. On a stream socket a read shorter than the space offered means the
//! receive queue was empty at that instant; [`read_chunk`] then clears the readiness itself,
//! inside the same `try_io` call (tokio clears only if no new readiness event arrived since the
//! read began, and bytes that arrive later raise a new edge), so nothing can be missed. This is
//! what tokio's own `AsyncRead` for `TcpStream` does on a short read; `try_read_buf`, which the
//! relay needs to lend a buffer only while data flows, does not. (Not for `splice`: a fill into
//! a pipe also stops short when the pipe runs out of slots, with bytes left in the socket.)

use std::future::{Future, poll_fn};
use std::io;

use socket2::SockRef;
use tokio::io::Interest;

use super::idle::Activity;
use crate::sharded_counter::ShardedCounter;
use tokio::net::TcpStream;

/// One direction of a relay's fast path: its sockets, counter and the session's idle clock.
#[derive(Clone, Copy)]
pub(super) struct Pump<'a> {
    pub(super) source: &'a TcpStream,
    pub(super) sink: &'a TcpStream,
    /// Bytes forwarded in this direction.
    pub(super) counter: &'a ShardedCounter,
    /// The session's idle clock.
    pub(super) activity: &'a Activity,
}

/// What one [`read_chunk`] call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// The peer ended its side (read returned 0).
    Ended,
    /// `n` bytes appended; the buffer was filled, so more may be waiting.
    More(usize),
    /// `n` bytes appended and the socket is drained: wait for readiness before the next read.
    Drained(usize),
    /// Nothing to read now (readiness cleared).
    Empty,
}

/// Read once from `source` into the spare capacity of `buffer` (which must have some).
pub(super) fn read_chunk(source: &TcpStream, buffer: &mut Vec<u8>) -> io::Result<Chunk> {
    let mut drained = 0;
    let read = source.try_io(Interest::READABLE, || {
        let spare = buffer.spare_capacity_mut();
        let offered = spare.len();
        let read = SockRef::from(source).recv(spare)?;
        // SAFETY: `recv` initialised the first `read` bytes of the spare capacity.
        unsafe { buffer.set_len(buffer.len() + read) };
        if read > 0 && read < offered {
            // Drained: report `WouldBlock` so that tokio clears the readiness it saw before
            // this read (the bytes are reported through `drained`).
            drained = read;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(read)
    });
    match read {
        Ok(0) => Ok(Chunk::Ended),
        Ok(read) => Ok(Chunk::More(read)),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(if drained > 0 {
            Chunk::Drained(drained)
        } else {
            Chunk::Empty
        }),
        Err(error) => Err(error),
    }
}

/// Wait until `stream` is readable. Unlike [`TcpStream::readable`], whose future carries an
/// intrusive waiter node (about 100 bytes in every waiting state of the relay), this parks the
/// task's waker in the socket's own read slot, so the wait costs one pointer of state. One
/// waiting task per socket and direction (a session's relay runs in one task).
pub(super) fn read_ready(stream: &TcpStream) -> impl Future<Output = io::Result<()>> + '_ {
    poll_fn(move |cx| stream.poll_read_ready(cx))
}

/// Wait until `stream` is writable (the write slot; see [`read_ready`]).
pub(super) fn write_ready(stream: &TcpStream) -> impl Future<Output = io::Result<()>> + '_ {
    poll_fn(move |cx| stream.poll_write_ready(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A short read clears readiness, and bytes sent afterwards wake the reader again.
    #[tokio::test]
    async fn short_read_is_drained_and_later_bytes_still_wake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        let mut buffer = Vec::with_capacity(1024);
        for round in 0..50u8 {
            writer.write_all(&[round; 64]).await.unwrap();
            read_ready(&reader).await.unwrap();
            buffer.clear();
            let mut got = 0;
            while got < 64 {
                match read_chunk(&reader, &mut buffer).unwrap() {
                    Chunk::Drained(read) | Chunk::More(read) => got += read,
                    Chunk::Empty => read_ready(&reader).await.unwrap(),
                    Chunk::Ended => panic!("ended early"),
                }
            }
            assert_eq!(buffer, [round; 64]);
        }
        drop(writer);
        buffer.clear();
        loop {
            reader.readable().await.unwrap();
            if read_chunk(&reader, &mut buffer).unwrap() == Chunk::Ended {
                break;
            }
        }
    }

    #[tokio::test]
    async fn a_full_buffer_says_more() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        writer.write_all(&[7; 300]).await.unwrap();
        reader.readable().await.unwrap();
        let mut buffer = Vec::with_capacity(100);
        // Loopback delivers the 300 bytes at once: the first read fills the 100 offered.
        assert_eq!(read_chunk(&reader, &mut buffer).unwrap(), Chunk::More(100));
    }
}
