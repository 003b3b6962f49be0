//! Child processes, loopback ports and bounded waiting.

use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A child process killed and reaped on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawn `command` (its stdout and stderr discarded) and wait until it accepts TCP on
    /// 127.0.0.1:`port`; `package` names the Debian package to install when it is missing.
    pub fn spawn_listening(command: &mut Command, port: u16, package: &str) -> Self {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{program} did not start ({error}): install the Debian package {package}")
            });
        let guard = Self(child);
        wait_for_port(port);
        guard
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now for both TCP and UDP (opentracker, Dante and redis-server
/// bind one or both).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("bind a loopback port")
            .local_addr()
            .expect("local address")
            .port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP after 50 tries");
}

/// Wait (at most 10 s, else panic) until something accepts TCP connections on
/// 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `predicate` every 20 ms until it is true (then `true`) or `timeout` passes (`false`).
pub fn wait_until(timeout: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if predicate() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll the async `check` every 25 ms until it is true (then `true`) or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A path under the temporary directory that no other call in this process (and no other
/// process) gets: `swarmwall-test-PID-N`. Not created; a server started with it as its data
/// directory never shares an embedded store, audit log or secret key with a parallel test.
pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "swarmwall-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
