//! A real `redis-server` on a free loopback port, with a password of its own.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{ChildGuard, free_port};

/// A `redis-server` child (no persistence, `requirepass` with a password generated per
/// server, given in a 0600 config file so it never shows in `ps`) killed on drop.
pub struct RedisServer {
    /// The loopback port it listens on (kept across [`RedisServer::restart`]).
    pub port: u16,
    /// Its `requirepass` password.
    pub password: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start one, or print a loud SKIP line and return `None` when redis-server is missing.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIP: redis-server is not installed; the Redis store tests did not run");
            return None;
        }
        let port = free_port();
        let mut server = Self {
            port,
            password: random_password(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        Some(server)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }

    /// Kill the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Wait until the port refuses connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Start (again) on the same port and wait until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        let conf = self.dir.path().join("redis.conf");
        write_private(&conf, &format!("requirepass {}\n", self.password));
        loop {
            let child = Command::new("redis-server")
                .arg(&conf)
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--enable-debug-command",
                    "yes",
                    "--dir",
                ])
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            self.child = Some(child);
            if wait_ping(self.port, &self.password, Duration::from_secs(5)) {
                return;
            }
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
        }
    }

    /// Run `redis-cli -p PORT ARGS...` (password through `REDISCLI_AUTH`, not argv) and
    /// return its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .env("REDISCLI_AUTH", &self.password)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Start `redis-cli -p PORT ARGS...` in the background (killed on drop of the guard).
    pub fn cli_spawn(&self, args: &[&str]) -> ChildGuard {
        ChildGuard(
            Command::new("redis-cli")
                .env("REDISCLI_AUTH", &self.password)
                .args(["-p", &self.port.to_string()])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-cli"),
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// 16 random bytes from the kernel, hex: a Redis password for one test server.
pub fn random_password() -> String {
    let mut bytes = [0_u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .expect("/dev/urandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("rp-{hex}")
}

/// Write `text` to a new file only the owner can read.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// True once `AUTH` + `PING` get `+OK` + `+PONG` (bounded by `timeout`).
pub fn wait_ping(port: u16, password: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let request = format!("AUTH {password}\r\nPING\r\n");
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reply = [0_u8; 12];
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_exact(&mut reply).is_ok()
                && &reply == b"+OK\r\n+PONG\r\n"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
