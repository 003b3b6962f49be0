//! Batched datagram I/O for a UDP association: up to [`BATCH`] datagrams per `recvmmsg(2)`
//! and per `sendmmsg(2)`, in buffers reused across batches (no allocation per datagram).
//!
//! A [`DatagramBatch`] holds [`BATCH`] receive slots of [`MAX_DATAGRAM`] bytes each (every
//! datagram fits whole: nothing is truncated) and a send queue that refers to those slots, so
//! a relayed payload is never copied: a client datagram goes out as the tail of its slot, a
//! target's reply as two pieces (the SOCKS UDP header kept in the queue entry, then the slot).
//! Batches come from a small per-thread pool ([`DatagramBatch::take`] / [`give_back`]): one
//! batch per runtime thread in the steady state, whatever the number of associations, and only
//! the pages a datagram touched count in the resident set.
//!
//! A run of queued datagrams to one destination, all of one size (the last may be shorter),
//! leaves as one message with UDP segmentation offload (`UDP_SEGMENT`, Linux 4.18): the kernel
//! passes the run through the IP layer once and cuts it into the same datagrams, byte for
//! byte, at the device or at the receiving socket. A run the kernel refuses with offload (a
//! route whose MTU is smaller than the datagrams, a device without checksum offload) is sent
//! again as single datagrams.
//!
//! [`give_back`]: DatagramBatch::give_back

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use super::udp_socket::DatagramSocket;

/// Most datagrams received or sent per system call.
pub(super) const BATCH: usize = 32;
/// Largest datagram handled (the IPv4/IPv6 UDP payload limit).
pub(super) const MAX_DATAGRAM: usize = 65_535;
/// Largest SOCKS UDP header in front of a reply (RSV, FRAG, ATYP, IPv6 address, port).
const MAX_HEADER: usize = 3 + 1 + 16 + 2;
/// Most datagrams in one segmentation-offload run (the kernel's `UDP_MAX_SEGMENTS` is 64 or
/// more; a batch never holds more than [`BATCH`]).
const MAX_RUN: usize = BATCH;
/// Most bytes in one run: the payload of one IPv6 or IPv4 UDP datagram of largest size.
const MAX_RUN_BYTES: usize = 65_000;
/// Space for one `UDP_SEGMENT` control message (a `u16`), in `u64`s for alignment.
const CMSG_WORDS: usize = 4;

/// Batches kept per thread for reuse (one is in use at a time unless an association awaits
/// in the middle of a batch, e.g. on a strike).
const POOL_PER_THREAD: usize = 2;

thread_local! {
    static POOL: RefCell<Vec<Box<DatagramBatch>>> = const { RefCell::new(Vec::new()) };
}

/// One datagram waiting in the send queue.
#[derive(Clone)]
struct Outgoing {
    /// Receive slot holding the payload.
    slot: usize,
    /// Payload start within the slot.
    offset: usize,
    /// Payload end within the slot.
    end: usize,
    destination: socket2::SockAddr,
    /// SOCKS UDP header sent in front of the payload (`header_len` bytes; 0 for none).
    header: [u8; MAX_HEADER],
    header_len: usize,
}

/// What a flushed send queue delivered to the kernel.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(super) struct Sent {
    pub(super) datagrams: u64,
    /// Payload bytes (SOCKS headers not counted).
    pub(super) payload_bytes: u64,
}

/// Receive slots and a send queue for one batch of datagrams.
pub(super) struct DatagramBatch {
    /// `BATCH` slots of `MAX_DATAGRAM` bytes.
    slots: Box<[u8]>,
    received: usize,
    lens: [usize; BATCH],
    /// Source of each received datagram (`None`: not an IP address, the datagram is skipped).
    sources: [Option<SocketAddr>; BATCH],
    queue: [Outgoing; BATCH],
    queued: usize,
}

impl DatagramBatch {
    fn new() -> Box<Self> {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let outgoing = Outgoing {
            slot: 0,
            offset: 0,
            end: 0,
            destination: unspecified.into(),
            header: [0; MAX_HEADER],
            header_len: 0,
        };
        Box::new(Self {
            // Zeroed pages are mapped lazily: only the pages datagrams touch become resident.
            slots: vec![0u8; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            received: 0,
            lens: [0; BATCH],
            sources: [None; BATCH],
            queue: std::array::from_fn(|_| outgoing.clone()),
            queued: 0,
        })
    }

    /// A batch from this thread's pool (a new one when the pool is empty).
    pub(super) fn take() -> Box<Self> {
        let mut batch = POOL
            .with(|pool| pool.borrow_mut().pop())
            .unwrap_or_else(Self::new);
        batch.received = 0;
        batch.queued = 0;
        batch
    }

    /// Return the batch to this thread's pool (dropped when the pool is full).
    pub(super) fn give_back(self: Box<Self>) {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_PER_THREAD {
                pool.push(self);
            }
        });
    }

    /// Receive up to [`BATCH`] datagrams without waiting; the count received. `WouldBlock`
    /// when none is queued (the socket's readiness is then cleared). A short batch also
    /// clears the readiness: the queue was empty when the kernel returned, and a datagram that
    /// arrives later raises a new edge-triggered event, so the next wait sees it.
    pub(super) fn try_recv(&mut self, socket: &DatagramSocket) -> io::Result<usize> {
        self.received = 0;
        self.queued = 0;
        let mut received = 0;
        let result = socket.try_read(|| {
            received = self.recv_raw(socket)?;
            if received < BATCH {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock && received > 0 => {}
            Err(error) => return Err(error),
        }
        self.received = received;
        Ok(received)
    }

    /// Datagrams received by the last [`try_recv`](Self::try_recv).
    pub(super) fn received(&self) -> usize {
        self.received
    }

    /// Datagram `index` of the last receive and its source (`None` past the count, or when
    /// the kernel gave no IP source address).
    pub(super) fn datagram(&self, index: usize) -> Option<(&[u8], SocketAddr)> {
        if index >= self.received {
            return None;
        }
        let source = self.sources.get(index).copied().flatten()?;
        let len = self.lens.get(index).copied()?;
        let start = index * MAX_DATAGRAM;
        Some((self.slots.get(start..start + len)?, source))
    }

    /// Queue bytes `offset..` of datagram `index` for `destination`, after `header` (the SOCKS
    /// UDP header of a reply; empty for none, at most 22 bytes).
    pub(super) fn queue(
        &mut self,
        index: usize,
        offset: usize,
        header: &[u8],
        destination: SocketAddr,
    ) {
        let (Some(&len), Some(entry)) = (self.lens.get(index), self.queue.get_mut(self.queued))
        else {
            return;
        };
        let Some(slot_header) = entry.header.get_mut(..header.len()) else {
            return;
        };
        slot_header.copy_from_slice(header);
        entry.header_len = header.len();
        entry.slot = index;
        entry.offset = offset.min(len);
        entry.end = len;
        entry.destination = destination.into();
        self.queued += 1;
    }

    /// Send every queued datagram on `socket` (`sendmmsg`, waiting while the socket's buffer
    /// is full). A datagram the kernel refuses (e.g. no route) is skipped, as a lone `send_to`
    /// error would be; the rest still go out, in order.
    pub(super) async fn flush(&mut self, socket: &DatagramSocket) -> Sent {
        let mut sent = Sent::default();
        let mut next = 0;
        // Cleared for the rest of this flush once the kernel refuses a run with offload.
        let mut segment = true;
        while next < self.queued {
            match self.send_raw(socket, next, segment) {
                Ok(count) => {
                    for entry in self.queue.get(next..next + count).unwrap_or_default() {
                        sent.datagrams += 1;
                        sent.payload_bytes += (entry.end - entry.offset) as u64;
                    }
                    next += count.max(1);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // A run with offload was refused: send the same datagrams one by one.
                Err(_) if segment && self.run_len(next) > 1 => segment = false,
                // The first queued datagram was refused: skip it.
                Err(_) => next += 1,
            }
        }
        self.queued = 0;
        sent
    }

    /// One `recvmmsg` into the slots: the count received.
    fn recv_raw(&mut self, socket: &DatagramSocket) -> io::Result<usize> {
        let mut names = [MaybeUninit::<libc::sockaddr_storage>::uninit(); BATCH];
        // SAFETY: an all-zero `iovec`/`mmsghdr` is valid (null pointers, zero lengths).
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for ((slot, iovec), (header, name)) in self
            .slots
            .chunks_exact_mut(MAX_DATAGRAM)
            .zip(iovecs.iter_mut())
            .zip(headers.iter_mut().zip(names.iter_mut()))
        {
            iovec.iov_base = slot.as_mut_ptr().cast();
            iovec.iov_len = slot.len();
            header.msg_hdr.msg_name = name.as_mut_ptr().cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live iovec over its own slot and at its own
        // sockaddr_storage, all outliving the call; the kernel writes at most the given lengths.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let count = usize::try_from(count).map_err(|_| io::Error::last_os_error())?;
        for ((header, name), (len, source)) in headers
            .iter()
            .zip(names.iter())
            .zip(self.lens.iter_mut().zip(self.sources.iter_mut()))
            .take(count)
        {
            *len = header.msg_len as usize;
            // SAFETY: the kernel filled `msg_namelen` bytes of this sockaddr_storage.
            *source = unsafe { socket_address(name.as_ptr(), header.msg_hdr.msg_namelen) };
        }
        Ok(count)
    }

    /// Bytes of queue entry `index` on the wire (its SOCKS header and payload).
    fn wire_len(&self, index: usize) -> usize {
        self.queue
            .get(index)
            .map_or(0, |entry| entry.header_len + entry.end - entry.offset)
    }

    /// How many queue entries from `first` on can leave as one segmentation-offload run: the
    /// same destination, the same size as the first (the last may be shorter, then the run
    /// ends), at most [`MAX_RUN`] datagrams and [`MAX_RUN_BYTES`] bytes. At least 1 when
    /// `first` is queued.
    fn run_len(&self, first: usize) -> usize {
        let Some(head) = self.queue.get(first).filter(|_| first < self.queued) else {
            return 0;
        };
        let size = self.wire_len(first);
        if size == 0 {
            return 1;
        }
        let mut len = 1;
        let mut bytes = size;
        while first + len < self.queued && len < MAX_RUN {
            let Some(next) = self.queue.get(first + len) else {
                break;
            };
            let next_size = self.wire_len(first + len);
            if next.destination != head.destination
                || next_size == 0
                || next_size > size
                || bytes + next_size > MAX_RUN_BYTES
            {
                break;
            }
            len += 1;
            bytes += next_size;
            if next_size < size {
                break;
            }
        }
        len
    }

    /// One `sendmmsg` of queue entries `first..` (runs of one destination and size as one
    /// message each when `segment`): the count of entries the kernel took.
    fn send_raw(&self, socket: &DatagramSocket, first: usize, segment: bool) -> io::Result<usize> {
        let pending = self.queue.get(first..self.queued).unwrap_or_default();
        // SAFETY: as in `recv_raw` (all-zero iovecs, headers and control buffers are valid).
        let mut iovecs: [[libc::iovec; 2]; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut controls = [[0u64; CMSG_WORDS]; BATCH];
        for (entry, pieces) in pending.iter().zip(iovecs.iter_mut()) {
            let start = entry.slot * MAX_DATAGRAM;
            let payload = self
                .slots
                .get(start + entry.offset..start + entry.end)
                .unwrap_or_default();
            let header_bytes = entry.header.get(..entry.header_len).unwrap_or_default();
            pieces[0].iov_base = header_bytes.as_ptr().cast_mut().cast();
            pieces[0].iov_len = header_bytes.len();
            pieces[1].iov_base = payload.as_ptr().cast_mut().cast();
            pieces[1].iov_len = payload.len();
        }
        // One pointer each into the iovecs and the control buffers, taken once: every
        // message points into them (a run's pieces are consecutive, two per datagram).
        let pieces = iovecs.as_mut_ptr().cast::<libc::iovec>();
        let control_buffers = controls.as_mut_ptr();
        // Entries per message, in order.
        let mut runs = [0usize; BATCH];
        let mut messages = 0;
        let mut at = 0;
        while at < pending.len() {
            let (Some(entry), Some(header), Some(run)) = (
                pending.get(at),
                headers.get_mut(messages),
                runs.get_mut(messages),
            ) else {
                break;
            };
            let len = if segment { self.run_len(first + at) } else { 1 };
            let len = len.clamp(1, pending.len() - at);
            header.msg_hdr.msg_name = entry.destination.as_ptr().cast_mut().cast();
            header.msg_hdr.msg_namelen = entry.destination.len();
            // In bounds: at + len <= pending.len() <= BATCH entries of two iovecs each.
            header.msg_hdr.msg_iov = pieces.wrapping_add(2 * at);
            header.msg_hdr.msg_iovlen = 2 * len;
            if len > 1 {
                // SAFETY: control buffer `messages` (< BATCH) is 8-byte aligned and
                // CMSG_WORDS * 8 bytes, at least CMSG_SPACE(2), so CMSG_FIRSTHDR over it is
                // non-null and the header and its u16 lie in bounds.
                unsafe {
                    header.msg_hdr.msg_control = control_buffers.add(messages).cast();
                    header.msg_hdr.msg_controllen =
                        libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                    let cmsg = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    let size = u16::try_from(self.wire_len(first + at)).unwrap_or(u16::MAX);
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
                }
            }
            *run = len;
            messages += 1;
            at += len;
        }
        // SAFETY: every header points at live iovecs over bytes of `self`, at a live socket
        // address and (for runs) at a live control buffer; the kernel only reads them.
        let count = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                messages as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        let count = usize::try_from(count).map_err(|_| io::Error::last_os_error())?;
        Ok(runs.iter().take(count).sum())
    }
}

/// The IPv4 or IPv6 address in a `sockaddr_storage` of `len` bytes.
///
/// # Safety
/// `name` must point at a `sockaddr_storage` whose first `len` bytes are initialised.
unsafe fn socket_address(
    name: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    // SAFETY: the family field lies in the initialised prefix when `len` covers it.
    let family = if len >= size_of::<libc::sa_family_t>() {
        unsafe { (*name).ss_family }
    } else {
        return None;
    };
    match libc::c_int::from(family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: an AF_INET address of full length is a sockaddr_in.
            let v4 = unsafe { &*name.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: an AF_INET6 address of full length is a sockaddr_in6.
            let v6 = unsafe { &*name.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                u32::from_be(v6.sin6_flowinfo),
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::udp_socket::LOOPBACK;
    use super::*;

    #[tokio::test]
    async fn batches_receive_whole_datagrams_and_send_them_on_in_order() {
        let receiver = DatagramSocket::bind(LOOPBACK).unwrap();
        let outbound = DatagramSocket::bind(LOOPBACK).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // More datagrams than one batch holds; one far larger than a typical MTU.
        let datagrams: Vec<Vec<u8>> = (0..40usize)
            .map(|index| {
                let len = if index == 5 {
                    60_000
                } else {
                    1 + index * 37 % 1_500
                };
                (0..len).map(|at| (index * 7 + at) as u8).collect()
            })
            .collect();
        for datagram in &datagrams {
            sender
                .send_to(datagram, receiver.local_addr().unwrap())
                .unwrap();
        }
        let header = [0u8, 0, 0, 1, 127, 0, 0, 1, 0x12, 0x34];
        let mut batch = DatagramBatch::take();
        let mut counts = Vec::new();
        let mut received = 0;
        while received < datagrams.len() {
            tokio::time::timeout(Duration::from_secs(5), receiver.readable())
                .await
                .expect("the datagrams were not received")
                .unwrap();
            let Ok(count) = batch.try_recv(&receiver) else {
                continue;
            };
            assert!((1..=BATCH).contains(&count));
            for index in 0..count {
                let (datagram, source) = batch.datagram(index).unwrap();
                assert_eq!(source, sender.local_addr().unwrap());
                assert_eq!(datagram, datagrams[received + index].as_slice());
                // Odd datagrams go out with a header, even ones from byte 3 on, without.
                if index % 2 == 1 {
                    batch.queue(index, 0, &header, sink.local_addr().unwrap());
                } else {
                    batch.queue(index, 3, &[], sink.local_addr().unwrap());
                }
            }
            assert!(batch.datagram(count).is_none());
            let sent = batch.flush(&outbound).await;
            assert_eq!(sent.datagrams, count as u64);
            counts.push(count);
            received += count;
        }
        batch.give_back();
        assert!(counts.iter().any(|&count| count > 1), "{counts:?}");
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let mut index_in_batch = counts.iter().flat_map(|&count| 0..count);
        for datagram in &datagrams {
            let n = sink
                .recv(&mut buffer)
                .expect("a relayed datagram is missing");
            let expected: Vec<u8> = if index_in_batch.next().unwrap() % 2 == 1 {
                [&header[..], datagram].concat()
            } else {
                datagram.get(3..).unwrap_or_default().to_vec()
            };
            assert_eq!(buffer[..n], expected[..]);
        }
    }

    /// Receive `datagrams` (sent to `receiver` in order) into `batch`, then queue each for the
    /// destination `route` picks by its index, with `header` in front of every odd one.
    async fn receive_and_queue(
        batch: &mut DatagramBatch,
        receiver: &DatagramSocket,
        datagrams: &[Vec<u8>],
        header: &[u8],
        route: impl Fn(usize) -> SocketAddr,
    ) {
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for datagram in datagrams {
            sender
                .send_to(datagram, receiver.local_addr().unwrap())
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), receiver.readable())
            .await
            .expect("the datagrams were not received")
            .unwrap();
        assert_eq!(batch.try_recv(receiver).unwrap(), datagrams.len());
        for index in 0..datagrams.len() {
            let with_header = if index % 2 == 1 { header } else { &[][..] };
            batch.queue(index, 0, with_header, route(index));
        }
    }

    /// Runs are one destination and one size (a shorter datagram ends a run), and the
    /// datagrams of a run arrive whole, separate and in order, as sent one by one.
    #[tokio::test]
    async fn runs_of_one_destination_and_size_leave_as_the_same_datagrams() {
        let receiver = DatagramSocket::bind(LOOPBACK).unwrap();
        let outbound = DatagramSocket::bind(LOOPBACK).unwrap();
        let sinks: Vec<_> = (0..2)
            .map(|_| {
                let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                sink
            })
            .collect();
        // Sizes chosen so that with the 10-byte header on odd datagrams every wire size in
        // 0..12 is 522 bytes; then a shorter one, a longer one, and a second destination.
        let sizes = [
            512, 502, 512, 502, 512, 502, 512, 502, 512, 502, 512, 502, 100, 600, 512, 512, 512,
        ];
        let datagrams: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(index, &len)| (0..len).map(|at| (index * 13 + at) as u8).collect())
            .collect();
        let header = [0u8, 0, 0, 1, 127, 0, 0, 1, 0x12, 0x34];
        let destinations: Vec<SocketAddr> = sinks
            .iter()
            .map(|sink| sink.local_addr().unwrap())
            .collect();
        let route = |index: usize| destinations[usize::from(index >= 15)];
        let mut batch = DatagramBatch::take();
        receive_and_queue(&mut batch, &receiver, &datagrams, &header, route).await;
        // Wire sizes: 0..=11 are 522, 12 is 100 (a shorter last ends the run), 13 is 610
        // with 14 (512) as its shorter last, 15 and 16 (522, 512) go to the second sink.
        assert_eq!(batch.run_len(0), 13);
        assert_eq!(
            batch.run_len(12),
            1,
            "a longer datagram starts a run of its own"
        );
        assert_eq!(batch.run_len(13), 2);
        assert_eq!(batch.run_len(14), 1, "the destination changes after it");
        assert_eq!(batch.run_len(15), 2);
        // The kernel takes the runs with offload (a refusal would fall back in `flush`):
        // five messages, all 17 datagrams.
        let taken = batch
            .send_raw(&outbound, 0, true)
            .expect("runs sent with offload");
        assert_eq!(taken, datagrams.len());
        batch.give_back();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        for (index, datagram) in datagrams.iter().enumerate() {
            let n = sinks[usize::from(index >= 15)]
                .recv(&mut buffer)
                .expect("a relayed datagram is missing");
            let expected = if index % 2 == 1 {
                [&header[..], datagram].concat()
            } else {
                datagram.clone()
            };
            assert_eq!(buffer[..n], expected[..], "datagram {index}");
        }
    }

    /// When the kernel refuses a run with offload (here: a socket sending without UDP
    /// checksums, which offload requires), the same datagrams go out one by one.
    #[tokio::test]
    async fn a_run_refused_with_offload_is_sent_datagram_by_datagram() {
        let receiver = DatagramSocket::bind(LOOPBACK).unwrap();
        let outbound = DatagramSocket::bind(LOOPBACK).unwrap();
        let no_checksum: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the given length.
        let set = unsafe {
            libc::setsockopt(
                outbound.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const no_checksum).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "{}", io::Error::last_os_error());
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let datagrams: Vec<Vec<u8>> = (0..8u8).map(|index| vec![index; 300]).collect();
        let destination = sink.local_addr().unwrap();
        let mut batch = DatagramBatch::take();
        receive_and_queue(&mut batch, &receiver, &datagrams, &[], |_| destination).await;
        assert_eq!(batch.run_len(0), 8);
        // The offload is refused as the test expects (else this test shows nothing).
        assert!(batch.send_raw(&outbound, 0, true).is_err());
        let sent = batch.flush(&outbound).await;
        batch.give_back();
        assert_eq!(sent.datagrams, 8);
        let mut buffer = [0u8; 1024];
        for datagram in &datagrams {
            let n = sink.recv(&mut buffer).expect("a datagram is missing");
            assert_eq!(&buffer[..n], datagram.as_slice());
        }
    }
}
