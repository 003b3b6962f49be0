//! `swarmwall monitor` against a real opentracker on loopback, with a peer announced over BEP 15
//! from 127.0.0.2 (one of "our" egress addresses) and one from 127.0.0.3 (someone else's):
//! the leak is printed and counted on `/metrics`; the other address appears nowhere.
//! Usage errors exit with status 2. (Real libtorrent swarms: tests/e2e/test_monitor.py.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{ChildGuard, free_port, metric_value, swarmwall};

const INFO_HASH: &str = "0123456789abcdef0123456789abcdef01234567";

fn opentracker(dir: &std::path::Path) -> (ChildGuard, u16) {
    use std::os::unix::fs::PermissionsExt;
    // Debian's opentracker has an access whitelist; it chroots into -d and reads it as nobody.
    std::fs::write(dir.join("whitelist.txt"), format!("{INFO_HASH}\n")).expect("whitelist");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = free_port();
    let guard = ChildGuard::spawn_listening(
        Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string(), "-w", "whitelist.txt"])
            .arg("-d")
            .arg(dir),
        port,
        "opentracker",
    );
    (guard, port)
}

/// A BEP 15 announce (`started`) from `source_ip`, as a peer listening on `peer_port`.
fn announce_from(source_ip: &str, tracker_port: u16, peer_port: u16) {
    let recv = |socket: &UdpSocket, buf: &mut [u8]| {
        // Bounded: the socket has a read timeout; EINTR (a sibling test's child exiting) retries.
        for _ in 0..100 {
            match socket.recv(buf) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other.expect("tracker reply"),
            }
        }
        panic!("interrupted 100 times");
    };
    let socket = UdpSocket::bind((source_ip, 0)).expect("bind peer socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    socket
        .connect(("127.0.0.1", tracker_port))
        .expect("connect");
    let mut buf = [0u8; 1500];
    let mut request = 0x0417_2710_1980u64.to_be_bytes().to_vec();
    request.extend_from_slice(&0u32.to_be_bytes());
    request.extend_from_slice(&7u32.to_be_bytes());
    socket.send(&request).expect("send connect");
    let len = recv(&socket, &mut buf);
    assert!(len >= 16);
    let connection = &buf[8..16];
    let mut announce = connection.to_vec();
    announce.extend_from_slice(&1u32.to_be_bytes());
    announce.extend_from_slice(&8u32.to_be_bytes());
    let mut hash = [0u8; 20];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&INFO_HASH[2 * i..2 * i + 2], 16).expect("hex");
    }
    announce.extend_from_slice(&hash);
    announce.extend_from_slice(b"-qB4650-abcdefghijkl");
    announce.extend_from_slice(&[0; 8]);
    announce.extend_from_slice(&0u64.to_be_bytes()); // left 0: a seed
    announce.extend_from_slice(&[0; 8]);
    announce.extend_from_slice(&2u32.to_be_bytes());
    announce.extend_from_slice(&[0; 8]);
    announce.extend_from_slice(&(-1i32).to_be_bytes());
    announce.extend_from_slice(&peer_port.to_be_bytes());
    socket.send(&announce).expect("send announce");
    let len = recv(&socket, &mut buf);
    assert!(len >= 20, "announce accepted");
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[test]
fn leak_is_printed_and_counted_and_others_are_not_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_tracker, port) = opentracker(dir.path());
    announce_from("127.0.0.2", port, 51413);
    announce_from("127.0.0.3", port, 51414);
    let watchlist = dir.path().join("watchlist.txt");
    std::fs::write(&watchlist, format!("{INFO_HASH}\n")).expect("watchlist");

    let mut child = swarmwall()
        .arg("monitor")
        .arg("--watchlist")
        .arg(&watchlist)
        .args([
            "--egress",
            "127.0.0.2/32",
            "--no-confirm",
            "--timeout",
            "3s",
        ])
        .args(["--tracker", &format!("udp://127.0.0.1:{port}/announce")])
        .args(["--interval", "1h", "--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn monitor");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let _guard = ChildGuard(child);
    let (sender, receiver) = mpsc::channel::<(bool, String)>();
    let err_sender = sender.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send((true, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_sender.send((false, line));
        }
    });

    let mut metrics_address = None;
    let mut leak_line = None;
    let mut everything = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics_address.is_none() || leak_line.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (is_stdout, line) = receiver
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no leak or metrics line within 20 s:\n{everything}"));
        everything.push_str(&line);
        everything.push('\n');
        if !is_stdout && let Some(rest) = line.split("metrics on http://").nth(1) {
            metrics_address = rest.split('/').next().map(str::to_owned);
        }
        if is_stdout && line.starts_with("LEAK ") {
            leak_line = Some(line);
        }
    }
    let leak_line = leak_line.unwrap_or_default();
    assert!(
        leak_line.contains("address=127.0.0.2 port=51413 source=tracker"),
        "{leak_line}"
    );
    assert!(
        leak_line.contains(&format!("info_hash={INFO_HASH}")),
        "{leak_line}"
    );

    let response = http_get(&metrics_address.unwrap_or_default(), "/metrics");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(
        metric_value(body, "swarmwall_monitor_leaks_total"),
        Some(1.0),
        "{body}"
    );

    // The per-tracker status line follows the leak; then nothing may mention the outsider.
    while let Ok((_, line)) = receiver.recv_timeout(Duration::from_millis(500)) {
        everything.push_str(&line);
        everything.push('\n');
    }
    // Two announced peers plus the monitor's own announce (opentracker returns the requester).
    assert!(everything.contains("3 peers seen"), "{everything}");
    assert!(!everything.contains("127.0.0.3"), "{everything}");
    assert!(!everything.contains("51414"), "{everything}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.txt");
    let output = swarmwall()
        .arg("monitor")
        .arg("--watchlist")
        .arg(&missing)
        .args(["--egress", "127.0.0.2/32"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the watchlist"));

    let watchlist = dir.path().join("w.txt");
    std::fs::write(&watchlist, format!("{INFO_HASH}\n")).expect("write");
    let output = swarmwall()
        .arg("monitor")
        .arg("--watchlist")
        .arg(&watchlist)
        .args(["--egress", "not-a-range"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a CIDR range"));
}
