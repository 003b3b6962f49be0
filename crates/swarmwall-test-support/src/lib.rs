//! Helpers shared by the integration tests of every crate (a dev-dependency only): child
//! processes killed on drop, free loopback ports, bounded polling, a real `redis-server`, and
//! reading one sample out of the Prometheus text format.
//!
//! Each crate's `tests/integration/harness` re-exports this and adds what only it needs.

#![warn(missing_docs)]

mod process;
mod prometheus;
mod redis;

pub use process::{ChildGuard, free_port, scratch_dir, wait_for, wait_for_port, wait_until};
pub use prometheus::metric_value;
pub use redis::{RedisServer, random_password, wait_ping, write_private};
