//! The integration tests of the `swarmwall-server` library in one test binary (run with
//! `cargo test -p swarmwall-server --test integration`; one test by name with
//! `... --test integration -- store::redis::two_nodes`). Each module drives the library
//! in-process over real sockets, a real `redis-server` and real files; the shared pieces live in
//! [`harness`]. Tests that run the `swarmwall` binary live in `crates/swarmwall/tests/integration`.

mod admin;
mod harness;
mod store;
