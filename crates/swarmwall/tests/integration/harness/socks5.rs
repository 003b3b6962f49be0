//! The real `swarmwall serve` on loopback ([`Proxy`]), small real servers (TCP echo, HTTP,
//! UDP echo), a raw SOCKS5 client, and curl.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{scratch_dir, swarmwall, wait_until};

/// Argon2id hash of the password "correct horse".
pub(crate) const HASH_CORRECT_HORSE: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3dhcm13YWxsdGVzdHNhbHQ$tNfK3mWI8lZqu5rLk0J+sqkVGd7RDwYzvJRn+/Lc85g";
/// Argon2id hash of the password "battery staple".
pub(crate) const HASH_BATTERY_STAPLE: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3dhcm13YWxsdGVzdHNhbHQ$rhCzs7n9THTCIx3u6NE/AH8XDVfpUnvq4qYZziKBJmw";

/// The arguments that let a proxy reach the loopback echo servers (private destinations are
/// refused by default).
pub(crate) const ALLOW_LOOPBACK: [&str; 2] = ["--allow-destination", "127.0.0.0/8"];

/// Generous bound for anything a test waits for.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// A running `swarmwall serve`, killed on drop.
pub(crate) struct Proxy {
    pub(crate) child: Child,
    pub(crate) address: SocketAddr,
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Start on 127.0.0.1:0 with extra arguments.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Start on 127.0.0.1:0 with the configuration file text `config` (written to a scratch
    /// directory of its own), loopback destinations allowed, and extra arguments.
    pub(crate) fn with_config(config: &str, args: &[&str]) -> Self {
        let directory = scratch_dir();
        std::fs::create_dir_all(&directory).expect("scratch directory");
        let path = directory.join("config.toml");
        std::fs::write(&path, config).expect("write config");
        let path = path.to_str().expect("UTF-8 temporary path");
        let mut all = vec!["--config", path, ALLOW_LOOPBACK[0], ALLOW_LOOPBACK[1]];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    /// Start on `listen` with extra arguments; waits for the `listening on` line.
    pub(crate) fn start_on(listen: &str, args: &[&str]) -> Self {
        let mut child = swarmwall()
            .args(["serve", "--listen", listen])
            .args(args)
            .arg("--data-dir")
            .arg(scratch_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn swarmwall");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = match rx.recv_timeout(DEADLINE) {
            Ok(address) => address.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("swarmwall did not start: {:?}", lines.lock().unwrap());
            }
        };
        Self {
            child,
            address,
            stderr: lines,
        }
    }

    /// `host:port` for curl.
    pub(crate) fn curl_proxy(&self) -> String {
        self.address.to_string()
    }

    /// Send a signal to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Wait for exit within `timeout`; the exit status if it exited.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr so far.
    pub(crate) fn output(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The proxy's `/metrics` text (from the admin interface it announced on stderr; start it
    /// with `--admin-listen 127.0.0.1:0`).
    pub(crate) fn metrics(&self) -> String {
        let mut admin = None;
        assert!(
            wait_until(DEADLINE, || {
                admin = self.stderr.lock().unwrap().iter().find_map(|line| {
                    let rest = line.split("admin interface on ").nth(1)?;
                    rest.split_whitespace().next().map(str::to_owned)
                });
                admin.is_some()
            }),
            "no admin interface line: {}",
            self.output()
        );
        let admin = admin.unwrap_or_default();
        let address = admin.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = TcpStream::connect(address).expect("connect to the admin interface");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP echo server on `bind` (each connection echoes until EOF, then closes).
pub(crate) fn echo_server(bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).expect("bind echo");
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    address
}

/// A minimal HTTP/1.1 server answering every request with `body`.
pub(crate) fn http_server(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    address
}

/// A UDP echo server on `bind`.
pub(crate) fn udp_echo_server(bind: &str) -> SocketAddr {
    let socket = UdpSocket::bind(bind).expect("bind udp echo");
    let address = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buffer = [0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(&buffer[..n], from);
        }
    });
    address
}

/// A free port nobody listens on (bound then released).
pub(crate) fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Connect to the proxy with read/write timeouts.
pub(crate) fn connect(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(proxy).expect("connect proxy");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Encode an address as ATYP + address + port.
pub(crate) fn encode_address(address: SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    match address {
        SocketAddr::V4(v4) => {
            out.push(0x01);
            out.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            out.push(0x04);
            out.extend_from_slice(&v6.ip().octets());
        }
    }
    out.extend_from_slice(&address.port().to_be_bytes());
    out
}

/// No-auth greeting; asserts method 0x00 is chosen.
pub(crate) fn greet(stream: &mut TcpStream) {
    stream.write_all(&[0x05, 0x01, 0x00]).unwrap();
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x05, 0x00]);
}

/// Password greeting and sub-negotiation; returns the RFC 1929 status byte.
pub(crate) fn greet_password(stream: &mut TcpStream, user: &str, password: &str) -> u8 {
    stream.write_all(&[0x05, 0x01, 0x02]).unwrap();
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x05, 0x02]);
    let mut auth = vec![0x01, user.len() as u8];
    auth.extend_from_slice(user.as_bytes());
    auth.push(password.len() as u8);
    auth.extend_from_slice(password.as_bytes());
    stream.write_all(&auth).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x01);
    reply[1]
}

/// Send a request with a raw address part; returns (reply code, bound address).
pub(crate) fn request_raw(
    stream: &mut TcpStream,
    command: u8,
    address: &[u8],
) -> (u8, Option<SocketAddr>) {
    let mut request = vec![0x05, command, 0x00];
    request.extend_from_slice(address);
    stream.write_all(&request).unwrap();
    read_reply(stream)
}

/// Read one SOCKS5 reply (IPv4 or IPv6 bound address).
pub(crate) fn read_reply(stream: &mut TcpStream) -> (u8, Option<SocketAddr>) {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).expect("reply header");
    assert_eq!(head[0], 0x05, "reply version");
    let bound = match head[3] {
        0x01 => {
            let mut rest = [0u8; 6];
            stream.read_exact(&mut rest).unwrap();
            let ip = std::net::Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            Some(SocketAddr::from((
                ip,
                u16::from_be_bytes([rest[4], rest[5]]),
            )))
        }
        0x04 => {
            let mut rest = [0u8; 18];
            stream.read_exact(&mut rest).unwrap();
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&rest[..16]);
            let ip = std::net::Ipv6Addr::from(octets);
            Some(SocketAddr::from((
                ip,
                u16::from_be_bytes([rest[16], rest[17]]),
            )))
        }
        other => panic!("unexpected bound address type {other}"),
    };
    (head[1], bound)
}

/// CONNECT to `target` through a fresh no-auth session; returns the reply code and stream.
/// `payload` for `target` in a SOCKS UDP header with fragment number `frag` (RFC 1928 §7).
pub(crate) fn udp_datagram(frag: u8, target: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0x00, 0x00, frag];
    datagram.extend(encode_address(target));
    datagram.extend_from_slice(payload);
    datagram
}

/// Start a UDP association for `client` (its own address in the request); the control
/// connection and the relay address.
/// A UDP client socket on loopback that gives up reading after `read_timeout`.
pub(crate) fn udp_client(read_timeout: Duration) -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(read_timeout)).unwrap();
    client
}

pub(crate) fn udp_associate(proxy: SocketAddr, client: &UdpSocket) -> (TcpStream, SocketAddr) {
    let mut control = connect(proxy);
    greet(&mut control);
    let (code, relay) = request_raw(
        &mut control,
        0x03,
        &encode_address(client.local_addr().unwrap()),
    );
    assert_eq!(code, 0x00);
    (control, relay.expect("relay address"))
}

pub(crate) fn socks_connect(proxy: SocketAddr, target: SocketAddr) -> (u8, TcpStream) {
    let mut stream = connect(proxy);
    greet(&mut stream);
    let (code, _) = request_raw(&mut stream, 0x01, &encode_address(target));
    (code, stream)
}

/// True once the peer closed (EOF or reset) within the stream's read timeout.
pub(crate) fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
        && !matches!(stream.read(&mut byte), Ok(n) if n > 0)
}

/// Write an accounts file with alice ("correct horse") and return its path.
pub(crate) fn accounts_file(dir: &Path, accounts: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (name, hash) in accounts {
        text.push_str(&format!(
            "[[account]]\nname = \"{name}\"\npassword = \"{hash}\"\n\n"
        ));
    }
    let path = dir.join("accounts.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Run curl with `args`; returns (success, stdout).
pub(crate) fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "15"])
        .args(args)
        .output()
        .expect("run curl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Like [`socks_connect`] but `None` instead of a panic when the proxy closes early.
pub(crate) fn try_socks_connect(proxy: SocketAddr, target: SocketAddr) -> Option<(u8, TcpStream)> {
    let mut stream = TcpStream::connect(proxy).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    stream.write_all(&[0x05, 0x01, 0x00]).ok()?;
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).ok()?;
    let mut request = vec![0x05, 0x01, 0x00];
    request.extend(encode_address(target));
    stream.write_all(&request).ok()?;
    let mut head = [0u8; 10];
    stream.read_exact(&mut head).ok()?;
    Some((head[1], stream))
}
