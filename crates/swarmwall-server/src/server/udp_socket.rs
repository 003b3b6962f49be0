//! A UDP socket of an association, registered with the runtime for reading only.
//!
//! Linux raises a write-space wake-up on a UDP socket each time one of its sent datagrams is
//! freed, i.e. after nearly every send. A socket registered for both directions (as tokio's
//! `UdpSocket` always is) turns each of those into an `EPOLLOUT` event: one more
//! `epoll_wait` and one idle turn of the runtime per datagram relayed, measured as 8 instead
//! of 6 system calls per round trip. A [`DatagramSocket`] waits only for datagrams; a send
//! never waits unless the socket's buffer is full (`EAGAIN`), and only then is a duplicate of
//! the descriptor registered for writing, until there is room.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A non-blocking UDP socket whose reads are driven by the runtime and whose writes are
/// attempted directly.
pub(super) struct DatagramSocket {
    socket: AsyncFd<std::net::UdpSocket>,
}

impl DatagramSocket {
    /// Register `socket` (made non-blocking) with the current runtime for reading.
    pub(super) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket: register(socket, Interest::READABLE)?,
        })
    }

    /// Bind a new socket to `address` and register it.
    pub(super) fn bind(address: SocketAddr) -> io::Result<Self> {
        Self::new(std::net::UdpSocket::bind(address)?)
    }

    /// The address the socket is bound to.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// Wait until the runtime saw a datagram arrive (the readiness stays set until a read in
    /// [`try_read`](Self::try_read) clears it).
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await.map(drop)
    }

    /// Run the read `read` if the socket is readable; a `WouldBlock` from it clears the
    /// readiness, so the next [`readable`](Self::readable) waits for a new datagram.
    pub(super) fn try_read<R>(&self, read: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.socket.try_io(Interest::READABLE, |_| read())
    }

    /// Send one datagram to `destination`, waiting while the socket's buffer is full.
    pub(super) async fn send_to(&self, bytes: &[u8], destination: SocketAddr) -> io::Result<usize> {
        loop {
            match self.socket.get_ref().send_to(bytes, destination) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    /// Wait until the socket's send buffer has room (after a send returned `EAGAIN`), through
    /// a duplicate of the descriptor registered for writing for as long as the wait lasts.
    pub(super) async fn writable(&self) -> io::Result<()> {
        let duplicate = self.socket.get_ref().try_clone()?;
        let waiter = register(duplicate, Interest::WRITABLE)?;
        waiter.writable().await.map(drop)
    }
}

/// Register `socket` with the current runtime for `interest`.
fn register(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: a `std::net::UdpSocket` owns its descriptor, which stays open and the same for
    // as long as the socket lives; the `AsyncFd` owns the socket and this module never hands
    // out `get_mut` or `into_inner`, so the descriptor outlives the registration.
    Ok(unsafe { AsyncFd::register_with_interest(socket, interest) }?)
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Any free port on the IPv4 loopback (for tests binding a [`DatagramSocket`]).
#[cfg(test)]
pub(super) const LOOPBACK: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    0,
));

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The write wait registers a duplicate descriptor for as long as it lasts: it resolves
    /// while the buffer has room, again and again, and reading still works afterwards.
    #[tokio::test]
    async fn waiting_for_room_resolves_and_leaves_reading_intact() {
        let socket = DatagramSocket::bind(LOOPBACK).unwrap();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), socket.writable())
                .await
                .expect("a socket with an empty send buffer has room")
                .unwrap();
        }
        let sender = std::net::UdpSocket::bind(LOOPBACK).unwrap();
        sender
            .send_to(b"datagram", socket.local_addr().unwrap())
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), socket.readable())
            .await
            .expect("the datagram was not seen")
            .unwrap();
        let mut buffer = [0u8; 64];
        let (n, from) = socket
            .try_read(|| socket.socket.get_ref().recv_from(&mut buffer))
            .unwrap();
        assert_eq!(
            (&buffer[..n], from),
            (&b"datagram"[..], sender.local_addr().unwrap())
        );
        // Drained: the next read reports WouldBlock and clears the readiness.
        let again = socket.try_read(|| socket.socket.get_ref().recv_from(&mut buffer));
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
