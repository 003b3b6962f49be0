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
//! ```text
//! cargo run --release -p swarmwall-server --example relay_load -- --seconds 3 --proxy 127.0.0.1:1080
//! cargo run --release -p swarmwall-server --example relay_load -- --proxy 127.0.0.1:1080 \
//!     --user alice --password secret
//! ```

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
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        proxy: None,
        seconds: 3.0,
        concurrency: 16,
        login: None,
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

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("relay_load: {message}");
            return ExitCode::from(2);
        }
    };
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
            if let Some((user, password)) = login {
                // Lengths were checked when the options were parsed.
                let mut message = vec![1, user.len() as u8];
                message.extend_from_slice(user);
                message.push(password.len() as u8);
                message.extend_from_slice(password);
                stream.write_all(&message).await?;
                let mut status = [0u8; 2];
                stream.read_exact(&mut status).await?;
                if status[1] != 0 {
                    return Err(std::io::Error::other("login refused"));
                }
            }
            let SocketAddr::V4(echo) = echo else {
                return Err(std::io::Error::other("echo server is not IPv4"));
            };
            let mut request = vec![5, 1, 0, 1];
            request.extend_from_slice(&echo.ip().octets());
            request.extend_from_slice(&echo.port().to_be_bytes());
            stream.write_all(&request).await?;
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
