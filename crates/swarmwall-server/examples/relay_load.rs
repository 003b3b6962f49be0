//! Load generator for `scripts/bench-relay.sh`: new SOCKS5 connections per second, measured
//! without the client being the bottleneck (the Python driver saturates its own core at about
//! 3,000 connections per second, which hid the proxies' differences).
//!
//! Runs, in one single-threaded process (pin it to the client core), an echo server and
//! `--concurrency` client loops. Each loop opens a connection (through the SOCKS5 proxy when
//! `--proxy` is given: greeting, RFC 1929 login when `--user`/`--password` are given, CONNECT
//! to the echo server), sends one byte, reads it back and closes, over and over until
//! `--seconds` have passed. Prints one JSON object:
//! `{"connections": N, "seconds": S, "per_second": R, "errors": E}`.
//!
//! With `--pingpong SIZE` it measures latency instead: one session (through the proxy when
//! given) to a blocking echo thread in this process; `--rounds` request/response exchanges of
//! SIZE bytes, each timed; prints `{"size": S, "rounds": N, "p50_us": A, "p99_us": B}`. Pin the
//! process and the proxy to the same core to measure the wake-ups and thread hops of the small
//! message path (each hop is a context switch there, as on a loaded server).
//!
//! With `--streams N` it measures bulk throughput instead: N sessions (through the proxy when
//! given) to a sink in this process, each sending 256 KiB writes from its own thread for
//! `--seconds`; prints `{"streams": N, "seconds": S, "bytes_per_second": B}` (bytes the sink
//! received).
//!
//! `--peer-core N` pins the echo thread (latency and UDP modes) or the sink threads (throughput
//! mode) to core N: without `--proxy`, direct loopback between two cores (the host's own cost of
//! crossing cores, the baseline for a proxy on another core than its clients).
//!
//! With `--udp SIZE` it measures UDP round trips: one UDP ASSOCIATE (or plain UDP without
//! `--proxy`) to an echo thread in this process, `--window` datagrams of SIZE bytes in flight
//! (each reply sends the next) for `--seconds`; prints
//! `{"size": S, "window": W, "seconds": T, "round_trips_per_second": R, "lost": L}`.
//!
//! ```text
//! cargo run --release -p swarmwall-server --example relay_load -- --seconds 3 --proxy 127.0.0.1:1080
//! cargo run --release -p swarmwall-server --example relay_load -- --streams 16 --seconds 3 \
//!     --proxy 127.0.0.1:1080
//! cargo run --release -p swarmwall-server --example relay_load -- --pingpong 64 --rounds 20000 \
//!     --proxy 127.0.0.1:1080
//! cargo run --release -p swarmwall-server --example relay_load -- --proxy 127.0.0.1:1080 \
//!     --user alice --password secret
//! ```
//!
//! `--user`/`--password` apply to every mode: each session (and the UDP association's control
//! connection) logs in as a customer's client does.

use std::cell::Cell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Command-line options.
struct Options {
    proxy: Option<SocketAddr>,
    seconds: f64,
    concurrency: usize,
    /// RFC 1929 user name and password.
    login: Option<Rc<(Vec<u8>, Vec<u8>)>>,
    /// Message size of the latency mode (`--pingpong`).
    pingpong: Option<usize>,
    /// Exchanges timed in the latency mode.
    rounds: usize,
    /// Core the echo thread (latency, UDP) or the sink threads (throughput) are pinned to
    /// (`--peer-core`; default: where this process runs).
    peer_core: Option<usize>,
    /// Sessions of the throughput mode (`--streams`).
    streams: Option<usize>,
    /// Datagram size of the UDP mode (`--udp`).
    udp: Option<usize>,
    /// Datagrams in flight in the UDP mode.
    window: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        proxy: None,
        seconds: 3.0,
        concurrency: 16,
        login: None,
        pingpong: None,
        rounds: 20_000,
        peer_core: None,
        streams: None,
        udp: None,
        window: 1,
    };
    let (mut user, mut password) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--proxy" => {
                options.proxy = Some(
                    value
                        .parse()
                        .map_err(|error| format!("--proxy {value}: {error}"))?,
                );
            }
            "--seconds" => {
                options.seconds = value
                    .parse()
                    .map_err(|error| format!("--seconds {value}: {error}"))?;
            }
            "--concurrency" => {
                options.concurrency = value
                    .parse()
                    .map_err(|error| format!("--concurrency {value}: {error}"))?;
            }
            "--pingpong" => {
                let size: usize = value
                    .parse()
                    .map_err(|error| format!("--pingpong {value}: {error}"))?;
                if !(1..=65_536).contains(&size) {
                    return Err("--pingpong must be in 1..=65536".into());
                }
                options.pingpong = Some(size);
            }
            "--streams" => {
                let streams: usize = value
                    .parse()
                    .map_err(|error| format!("--streams {value}: {error}"))?;
                if !(1..=256).contains(&streams) {
                    return Err("--streams must be in 1..=256".into());
                }
                options.streams = Some(streams);
            }
            "--udp" => {
                let size: usize = value
                    .parse()
                    .map_err(|error| format!("--udp {value}: {error}"))?;
                if !(1..=8_192).contains(&size) {
                    return Err("--udp must be in 1..=8192".into());
                }
                options.udp = Some(size);
            }
            "--window" => {
                options.window = value
                    .parse()
                    .map_err(|error| format!("--window {value}: {error}"))?;
                if !(1..=256).contains(&options.window) {
                    return Err("--window must be in 1..=256".into());
                }
            }
            "--rounds" => {
                options.rounds = value
                    .parse()
                    .map_err(|error| format!("--rounds {value}: {error}"))?;
                if !(100..=10_000_000).contains(&options.rounds) {
                    return Err("--rounds must be in 100..=10000000".into());
                }
            }
            "--peer-core" => {
                let core = value
                    .parse()
                    .map_err(|error| format!("--peer-core {value}: {error}"))?;
                check_core(core)?;
                options.peer_core = Some(core);
            }
            "--user" => user = Some(value.into_bytes()),
            "--password" => password = Some(value.into_bytes()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    match (user, password) {
        (Some(user), Some(password)) if user.len() <= 255 && password.len() <= 255 => {
            options.login = Some(Rc::new((user, password)));
        }
        (None, None) => {}
        _ => return Err("--user and --password go together (at most 255 bytes each)".into()),
    }
    if !(options.seconds > 0.0 && options.seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    if options.concurrency == 0 || options.concurrency > 1024 {
        return Err("--concurrency must be in 1..=1024".into());
    }
    Ok(options)
}

/// The exit status of a measurement mode (its error on stderr).
fn finish(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay_load: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("relay_load: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(size) = options.pingpong {
        return finish(pingpong(
            options.proxy,
            options.login.as_deref(),
            size,
            options.rounds,
            options.peer_core,
        ));
    }
    if let Some(size) = options.udp {
        return finish(udp_round_trips(
            options.proxy,
            options.login.as_deref(),
            size,
            options.window,
            options.seconds,
            options.peer_core,
        ));
    }
    if let Some(streams) = options.streams {
        return finish(throughput(
            options.proxy,
            options.login.as_deref(),
            streams,
            options.seconds,
            options.peer_core,
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("relay_load: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay_load: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> std::io::Result<()> {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_address = echo.local_addr()?;
    tokio::task::spawn_local(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::task::spawn_local(async move {
                let _ = stream.set_nodelay(true);
                let mut buffer = [0u8; 512];
                while let Ok(read) = stream.read(&mut buffer).await {
                    let Some(bytes) = buffer.get(..read).filter(|bytes| !bytes.is_empty()) else {
                        break;
                    };
                    if stream.write_all(bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let connections = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let stop = started + Duration::from_secs_f64(options.seconds);
    let mut loops = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        let (connections, errors) = (Rc::clone(&connections), Rc::clone(&errors));
        let proxy = options.proxy;
        let login = options.login.clone();
        loops.push(tokio::task::spawn_local(async move {
            while Instant::now() < stop {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    one_connection(proxy, login.as_deref(), echo_address),
                )
                .await
                {
                    Ok(Ok(())) => connections.set(connections.get() + 1),
                    _ => {
                        errors.set(errors.get() + 1);
                        // A refusing proxy must not turn this into a busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for handle in loops {
        let _ = handle.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"connections\": {}, \"seconds\": {seconds:.3}, \"per_second\": {:.1}, \"errors\": {}}}",
        connections.get(),
        connections.get() as f64 / seconds,
        errors.get()
    );
    Ok(())
}

/// The RFC 1929 login message for `(user, password)` (lengths were checked when the options
/// were parsed).
fn login_message((user, password): &(Vec<u8>, Vec<u8>)) -> Vec<u8> {
    let mut message = vec![1, user.len() as u8];
    message.extend_from_slice(user);
    message.push(password.len() as u8);
    message.extend_from_slice(password);
    message
}

/// The SOCKS5 request `command` for the IPv4 `address`.
fn request_message(command: u8, address: SocketAddr) -> std::io::Result<Vec<u8>> {
    let SocketAddr::V4(address) = address else {
        return Err(std::io::Error::other("the request's address is not IPv4"));
    };
    let mut request = vec![5, command, 0, 1];
    request.extend_from_slice(&address.ip().octets());
    request.extend_from_slice(&address.port().to_be_bytes());
    Ok(request)
}

/// Open (through `proxy` when given, logging in with `login`), echo one byte, close.
async fn one_connection(
    proxy: Option<SocketAddr>,
    login: Option<&(Vec<u8>, Vec<u8>)>,
    echo: SocketAddr,
) -> std::io::Result<()> {
    let mut stream = match proxy {
        None => TcpStream::connect(echo).await?,
        Some(proxy) => {
            let mut stream = TcpStream::connect(proxy).await?;
            stream.set_nodelay(true)?;
            let method = if login.is_some() { 2 } else { 0 };
            stream.write_all(&[5, 1, method]).await?;
            let mut choice = [0u8; 2];
            stream.read_exact(&mut choice).await?;
            if choice != [5, method] {
                return Err(std::io::Error::other("method refused"));
            }
            if let Some(login) = login {
                stream.write_all(&login_message(login)).await?;
                let mut status = [0u8; 2];
                stream.read_exact(&mut status).await?;
                if status[1] != 0 {
                    return Err(std::io::Error::other("login refused"));
                }
            }
            stream.write_all(&request_message(1, echo)?).await?;
            let mut reply = [0u8; 10];
            stream.read_exact(&mut reply).await?;
            if let [_, code, ..] = reply
                && code != 0
            {
                return Err(std::io::Error::other(format!("CONNECT reply {code}")));
            }
            stream
        }
    };
    stream.set_nodelay(true)?;
    stream.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    Ok(())
}

/// Refuses a core the host does not have.
fn check_core(core: usize) -> Result<(), String> {
    if core >= libc::CPU_SETSIZE as usize || core >= core_count() {
        return Err(format!("--peer-core {core}: no such core"));
    }
    Ok(())
}

/// Cores the host has online (`available_parallelism` counts only those of this process's
/// affinity, which `taskset` narrows).
fn core_count() -> usize {
    // SAFETY: sysconf reads a constant of the running system.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1)
}

/// Pins the calling thread to `core` (best effort: a refused affinity leaves it where it is).
fn pin_this_thread(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it (core was checked
    // against CPU_SETSIZE); sched_setaffinity(0, ...) applies to the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The latency mode: `rounds` timed exchanges of `size` bytes on one session (blocking I/O, an
/// echo thread in this process), after 1,000 untimed ones (the proxy's inspect phase ends
/// within its byte budget, so the timed rounds measure the fast path).
fn pingpong(
    proxy: Option<SocketAddr>,
    login: Option<&(Vec<u8>, Vec<u8>)>,
    size: usize,
    rounds: usize,
    peer_core: Option<usize>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let echo = listener.local_addr()?;
    std::thread::spawn(move || {
        if let Some(core) = peer_core {
            pin_this_thread(core);
        }
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let mut buffer = vec![0u8; 65_536];
        while let Ok(read) = stream.read(&mut buffer) {
            let Some(bytes) = buffer.get(..read).filter(|bytes| !bytes.is_empty()) else {
                break;
            };
            if stream.write_all(bytes).is_err() {
                break;
            }
        }
    });
    let mut stream = blocking_session(proxy, login, echo)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let message = vec![0x5au8; size];
    let mut answer = vec![0u8; size];
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds + 1_000 {
        let started = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut answer)?;
        if round >= 1_000 {
            samples.push(started.elapsed().as_nanos() as f64 / 1_000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |fraction: f64| {
        let index = ((samples.len() as f64 * fraction) as usize).min(samples.len() - 1);
        samples.get(index).copied().unwrap_or_default()
    };
    println!(
        "{{\"size\": {size}, \"rounds\": {rounds}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
        at(0.5),
        at(0.99)
    );
    Ok(())
}

/// A blocking control connection to the SOCKS5 `proxy`, greeted (logged in with `login` when
/// given), after the request `command` for `address` was answered with success: the connection
/// and the address of the reply.
fn blocking_request(
    proxy: SocketAddr,
    login: Option<&(Vec<u8>, Vec<u8>)>,
    command: u8,
    address: SocketAddr,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(proxy)?;
    let method = if login.is_some() { 2 } else { 0 };
    stream.write_all(&[5, 1, method])?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice)?;
    if choice != [5, method] {
        return Err(std::io::Error::other("method refused"));
    }
    if let Some(login) = login {
        stream.write_all(&login_message(login))?;
        let mut status = [0u8; 2];
        stream.read_exact(&mut status)?;
        if status[1] != 0 {
            return Err(std::io::Error::other("login refused"));
        }
    }
    stream.write_all(&request_message(command, address)?)?;
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply)?;
    if reply[1] != 0 || reply[3] != 1 {
        return Err(std::io::Error::other(format!(
            "reply {} to command {command}",
            reply[1]
        )));
    }
    let bound = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    Ok((stream, bound))
}

/// A blocking session to `target`, through the SOCKS5 `proxy` when given (logging in with
/// `login`).
fn blocking_session(
    proxy: Option<SocketAddr>,
    login: Option<&(Vec<u8>, Vec<u8>)>,
    target: SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    Ok(match proxy {
        None => std::net::TcpStream::connect(target)?,
        Some(proxy) => blocking_request(proxy, login, 1, target)?.0,
    })
}

/// The throughput mode: `streams` sessions each writing 256 KiB chunks for `seconds` to a sink
/// thread per session; prints the bytes per second the sinks received.
fn throughput(
    proxy: Option<SocketAddr>,
    login: Option<&(Vec<u8>, Vec<u8>)>,
    streams: usize,
    seconds: f64,
    peer_core: Option<usize>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let sink = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let counting = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(streams) {
            let Ok(mut stream) = stream else { continue };
            let counting = Arc::clone(&counting);
            std::thread::spawn(move || {
                if let Some(core) = peer_core {
                    pin_this_thread(core);
                }
                let mut buffer = vec![0u8; 256 * 1024];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    counting.fetch_add(read as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let mut sessions = Vec::with_capacity(streams);
    for _ in 0..streams {
        sessions.push(blocking_session(proxy, login, sink)?);
    }
    let started = Instant::now();
    let stop = started + Duration::from_secs_f64(seconds);
    let senders: Vec<_> = sessions
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                let chunk = vec![0u8; 256 * 1024];
                while Instant::now() < stop {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        let _ = sender.join();
    }
    // Bytes still in flight when the senders stop are not counted: the measurement window is
    // the senders' (the same for every target).
    let seconds = started.elapsed().as_secs_f64();
    let bytes = received.load(Ordering::Relaxed);
    println!(
        "{{\"streams\": {streams}, \"seconds\": {seconds:.3}, \"bytes_per_second\": {:.0}}}",
        bytes as f64 / seconds
    );
    Ok(())
}

/// The UDP mode: `window` datagrams of `size` bytes in flight through one association (or
/// straight to the echo without a proxy) for `seconds`; a lost datagram (no reply within
/// 200 ms) is counted and replaced.
fn udp_round_trips(
    proxy: Option<SocketAddr>,
    login: Option<&(Vec<u8>, Vec<u8>)>,
    size: usize,
    window: usize,
    seconds: f64,
    peer_core: Option<usize>,
) -> std::io::Result<()> {
    let echo = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let echo_address = echo.local_addr()?;
    std::thread::spawn(move || {
        if let Some(core) = peer_core {
            pin_this_thread(core);
        }
        let mut buffer = [0u8; 65_536];
        while let Ok((read, source)) = echo.recv_from(&mut buffer) {
            let _ = echo.send_to(buffer.get(..read).unwrap_or_default(), source);
        }
    });
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    // The control connection lives as long as the association.
    let mut _control = None;
    let mut header = Vec::new();
    let destination = match proxy {
        None => echo_address,
        Some(proxy) => {
            let (control, relay) = blocking_request(proxy, login, 3, socket.local_addr()?)?;
            let SocketAddr::V4(echo_v4) = echo_address else {
                return Err(std::io::Error::other("the echo is not IPv4"));
            };
            header.extend_from_slice(&[0, 0, 0, 1]);
            header.extend_from_slice(&echo_v4.ip().octets());
            header.extend_from_slice(&echo_v4.port().to_be_bytes());
            _control = Some(control);
            relay
        }
    };
    let mut datagram = header.clone();
    datagram.resize(header.len() + size, 0x5a);
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buffer = vec![0u8; 65_536];
    let (mut round_trips, mut lost) = (0u64, 0u64);
    let started = Instant::now();
    let stop = started + Duration::from_secs_f64(seconds);
    for _ in 0..window {
        socket.send_to(&datagram, destination)?;
    }
    while Instant::now() < stop {
        match socket.recv_from(&mut buffer) {
            Ok((read, _)) if read == datagram.len() => round_trips += 1,
            Ok(_) => return Err(std::io::Error::other("a reply of the wrong size")),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                lost += 1;
            }
            Err(error) => return Err(error),
        }
        socket.send_to(&datagram, destination)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"size\": {size}, \"window\": {window}, \"seconds\": {seconds:.3}, \
         \"round_trips_per_second\": {:.0}, \"lost\": {lost}}}",
        round_trips as f64 / seconds
    );
    Ok(())
}
