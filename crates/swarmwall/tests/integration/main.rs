//! The integration tests of the `swarmwall` command in one test binary: every module runs the
//! real binary (`CARGO_BIN_EXE_swarmwall`) against real peers on loopback: curl, python-free
//! SOCKS5 clients, redis-server, opentracker, microsocks, Dante. Run them with
//! `cargo test -p swarmwall --test integration`; one module or test by name with
//! `cargo test -p swarmwall --test integration -- socks5::half_close`. The shared pieces live in
//! [`harness`]; tests of the server library alone live in
//! `crates/swarmwall-server/tests/integration`.

mod audit;
mod harness;
mod inspect;
mod man;
mod monitor;
mod policy;
mod probe;
mod relay_clock;
mod security;
mod socks5;
mod socks5_udp_batch;
mod socks5_udp_bind;
mod store;
