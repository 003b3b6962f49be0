//! The floor of an in-kernel relay, for `scripts/bench-latency.sh` and `scripts/bench-relay.sh`:
//! a minimal SOCKS5 server (no authentication, CONNECT only, no inspection) that hands every
//! session to the kernel once it is connected. Both sockets of a session go into an eBPF
//! `SOCKHASH` whose stream-verdict program (`BPF_PROG_TYPE_SK_SKB`, twelve instructions written
//! out below) redirects every received segment to the egress of the other socket: after the
//! SOCKS5 reply no byte of the session passes through this process.
//!
//! It answers one question with a measurement: would an eBPF `sockmap` fast path for decided
//! sessions bring the relay near direct loopback? (It does not: see docs/benchmarks.md, "Small
//! messages and cores".) It is not a product path: no policy, no accounting, no limits, and it
//! needs `CAP_BPF` and `CAP_NET_ADMIN` (root). Without them it prints why and exits with 2, and
//! the benchmark scripts leave its row out.
//!
//! ```text
//! cargo run --release -p swarmwall-server --example sockmap_relay -- --listen 127.0.0.1:1090
//! ```
//!
//! Prints `listening on ADDR` on stderr once it accepts connections. One thread per session
//! waits for the ends of the two sockets (the peer's FIN is still seen by user space: the
//! verdict program takes only data) and forwards each half-close.
//!
//! Found while building it (kernel 6.18): bytes already queued on a socket when it enters the
//! map stay there until the next segment arrives; so the SOCKS5 reply, which lets the client
//! send, goes out only after both sockets are in the map. A server that speaks first (SMTP,
//! SSH) could still race it; a product path would have to drain that queue in order.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;

/// Sessions the map holds at once (two sockets each).
const MAX_SOCKETS: u32 = 65_536;

/// One eBPF instruction as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy)]
struct Instruction {
    code: u8,
    registers: u8,
    offset: i16,
    immediate: i32,
}

const fn instruction(code: u8, dst: u8, src: u8, offset: i16, immediate: i32) -> Instruction {
    Instruction {
        code,
        registers: dst | (src << 4),
        offset,
        immediate,
    }
}

// bpf(2) commands, map and program types, helpers (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_PROG_TYPE_SK_SKB: u32 = 14;
const BPF_SK_SKB_STREAM_VERDICT: u32 = 5;
const HELPER_GET_SOCKET_COOKIE: i32 = 46;
const HELPER_SK_REDIRECT_HASH: i32 = 72;
const SO_COOKIE: libc::c_int = 57;

/// The verdict program: key = this socket's cookie; redirect to the socket stored under it (the
/// other end of the session); when there is none, pass the data to this socket's own queue
/// instead of dropping it.
fn verdict_program(map_fd: RawFd) -> [Instruction; 13] {
    [
        instruction(0xbf, 6, 1, 0, 0),                        // r6 = ctx
        instruction(0x85, 0, 0, 0, HELPER_GET_SOCKET_COOKIE), // r0 = cookie(ctx)
        instruction(0x7b, 10, 0, -8, 0),                      // *(u64 *)(fp - 8) = r0
        instruction(0xbf, 1, 6, 0, 0),                        // r1 = ctx
        instruction(0x18, 2, 1, 0, map_fd),                   // r2 = map (64-bit load, 2 slots)
        instruction(0, 0, 0, 0, 0),
        instruction(0xbf, 3, 10, 0, 0), // r3 = fp
        instruction(0x07, 3, 0, 0, -8), // r3 -= 8 (the key)
        instruction(0xb7, 4, 0, 0, 0),  // r4 = 0: to the other socket's egress
        instruction(0x85, 0, 0, 0, HELPER_SK_REDIRECT_HASH),
        instruction(0x55, 0, 0, 1, 0), // if r0 != SK_DROP (found) return r0
        instruction(0xb7, 0, 0, 0, 1), // else r0 = SK_PASS (keep it here)
        instruction(0x95, 0, 0, 0, 0), // exit
    ]
}

/// The `union bpf_attr` argument of bpf(2), written field by field.
struct Attributes([u8; 128]);

impl Attributes {
    fn new() -> Self {
        Self([0; 128])
    }
    fn u32_at(mut self, offset: usize, value: u32) -> Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn u64_at(mut self, offset: usize, value: u64) -> Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn call(mut self, command: i64) -> io::Result<RawFd> {
        // SAFETY: the attribute buffer is as large as the kernel reads (its size is passed), and
        // every pointer written into it points to memory that outlives this call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command,
                self.0.as_mut_ptr(),
                self.0.len() as u32,
            )
        };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(result as RawFd)
        }
    }
}

/// The session map with the verdict program attached.
struct KernelRedirect {
    map_fd: RawFd,
}

impl KernelRedirect {
    fn new() -> io::Result<Self> {
        let map_fd = Attributes::new()
            .u32_at(0, BPF_MAP_TYPE_SOCKHASH)
            .u32_at(4, 8) // key: socket cookie
            .u32_at(8, 4) // value: socket descriptor
            .u32_at(12, MAX_SOCKETS)
            .call(BPF_MAP_CREATE)
            .map_err(|error| with_context("creating the SOCKHASH map", error))?;
        let program = verdict_program(map_fd);
        let license = b"GPL\0";
        let mut log = vec![0u8; 16 * 1024];
        let program_fd = Attributes::new()
            .u32_at(0, BPF_PROG_TYPE_SK_SKB)
            .u32_at(4, program.len() as u32)
            .u64_at(8, program.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64)
            .u32_at(24, 1)
            .u32_at(28, log.len() as u32)
            .u64_at(32, log.as_mut_ptr() as u64)
            .call(BPF_PROG_LOAD)
            .map_err(|error| {
                let verifier = String::from_utf8_lossy(&log);
                with_context("loading the verdict program", error).to_string()
                    + verifier.trim_end_matches('\0')
            })
            .map_err(io::Error::other)?;
        Attributes::new()
            .u32_at(0, map_fd as u32)
            .u32_at(4, program_fd as u32)
            .u32_at(8, BPF_SK_SKB_STREAM_VERDICT)
            .call(BPF_PROG_ATTACH)
            .map_err(|error| with_context("attaching the verdict program", error))?;
        Ok(Self { map_fd })
    }

    /// From now on, what `from` receives leaves through `to`.
    fn redirect(&self, from: &TcpStream, to: &TcpStream) -> io::Result<()> {
        let key = socket_cookie(from)?;
        let value = to.as_raw_fd() as u32;
        Attributes::new()
            .u32_at(0, self.map_fd as u32)
            .u64_at(8, &key as *const u64 as u64)
            .u64_at(16, &value as *const u32 as u64)
            .call(BPF_MAP_UPDATE_ELEM)
            .map(drop)
    }
}

fn with_context(what: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

fn socket_cookie(socket: &TcpStream) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut length = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `length` bytes into `cookie`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut length,
        )
    };
    if result == 0 {
        Ok(cookie)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the greeting and the CONNECT request; returns the destination.
fn socks5_request(client: &mut TcpStream) -> io::Result<SocketAddr> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head)?;
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods)?;
    if head[0] != 5 || !methods.contains(&0) {
        client.write_all(&[5, 0xff])?;
        return Err(io::Error::other(
            "not SOCKS5 or no \"no authentication\" method",
        ));
    }
    client.write_all(&[5, 0])?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request)?;
    if request[1] != 1 {
        client.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0])?;
        return Err(io::Error::other("only CONNECT"));
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip)?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip)?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        3 => {
            let mut length = [0u8; 1];
            client.read_exact(&mut length)?;
            let mut name = vec![0u8; length[0] as usize];
            client.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return Err(io::Error::other("unknown address type"));
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    (host.as_str(), u16::from_be_bytes(port))
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("name without address"))
}

fn session(mut client: TcpStream, kernel: &KernelRedirect) -> io::Result<()> {
    client.set_nodelay(true)?;
    let destination = socks5_request(&mut client)?;
    let upstream = match TcpStream::connect(destination) {
        Ok(upstream) => upstream,
        Err(error) => {
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return Err(error);
        }
    };
    upstream.set_nodelay(true)?;
    kernel.redirect(&client, &upstream)?;
    kernel.redirect(&upstream, &client)?;
    // Only now may the client send: both sockets are in the map.
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    wait_for_both_ends(&client, &upstream)
}

/// Forwards each end of stream as a half-close until both directions are finished. Waits for
/// `POLLRDHUP` only: the kernel moves the data, and a socket whose segments were redirected
/// away still polls readable while a read of it fails with `EAGAIN`.
///
/// Not for production: data the kernel has redirected but not yet sent (the other socket's send
/// buffer was full) is still in flight when the half-close goes out, and may be lost with it.
fn wait_for_both_ends(client: &TcpStream, upstream: &TcpStream) -> io::Result<()> {
    let sockets = [client, upstream];
    let mut open = [true, true];
    while open.iter().any(|&o| o) {
        let mut polls = sockets.map(|socket| libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        });
        for (poll, &is_open) in polls.iter_mut().zip(&open) {
            if !is_open {
                poll.fd = -1;
            }
        }
        // SAFETY: two valid pollfd entries.
        if unsafe { libc::poll(polls.as_mut_ptr(), 2, -1) } < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        for side in 0..2 {
            if open[side] && polls[side].revents != 0 {
                open[side] = false;
                let _ = sockets[1 - side].shutdown(Shutdown::Write);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut listen = "127.0.0.1:1090".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = value,
            _ => {
                eprintln!("usage: sockmap_relay [--listen ADDR]");
                return ExitCode::from(2);
            }
        }
    }
    let kernel = match KernelRedirect::new() {
        Ok(kernel) => Box::leak(Box::new(kernel)),
        Err(error) => {
            eprintln!("sockmap unavailable (needs CAP_BPF and CAP_NET_ADMIN): {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {listen}: {error}");
            return ExitCode::from(2);
        }
    };
    eprintln!("listening on {}", listener.local_addr().expect("bound"));
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let kernel: &KernelRedirect = kernel;
        std::thread::spawn(move || {
            if let Err(error) = session(client, kernel) {
                eprintln!("session: {error}");
            }
        });
    }
    ExitCode::SUCCESS
}
