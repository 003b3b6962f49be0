//! What the binary's integration tests share: the crate-independent helpers of
//! `swarmwall-test-support`, the `swarmwall` binary cargo built for this test, and the SOCKS5
//! pieces in [`socks5`] (a running `swarmwall serve`, real echo/HTTP servers, a raw client).

pub(crate) mod socks5;

use std::process::{Command, Output, Stdio};

pub(crate) use swarmwall_test_support::{
    ChildGuard, RedisServer, free_port, metric_value, scratch_dir, wait_until,
};

/// The `swarmwall` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_swarmwall");

/// A `swarmwall` command with stdin closed (override it where a test types into it).
pub(crate) fn swarmwall() -> Command {
    let mut command = Command::new(BIN);
    command.stdin(Stdio::null());
    command
}

/// Run `swarmwall ARGS...` to completion and capture its output.
pub(crate) fn run(args: &[&str]) -> Output {
    swarmwall().args(args).output().expect("run swarmwall")
}

/// Bytes from a child's stdout or stderr as text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
