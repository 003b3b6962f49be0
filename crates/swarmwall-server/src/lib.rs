//! swarmwall-server: the tokio side of swarmwall.
//!
//! Layout:
//! - [`server`]: listener, sessions (SOCKS5 handshake via `swarmwall-core`), relay (inspect
//!   phase then fast path), UDP ASSOCIATE, BIND, limits, graceful shutdown.
//! - [`config`]: TOML configuration, one module per section.
//! - [`auth`], [`geo`], [`audit`]: account security (argon2id, TOTP, lockout, GeoIP, impossible
//!   travel, hash-chained security events).
//! - [`policy`], [`strikes`]: destination rules, lateral-movement guard, traffic-class
//!   actions, graduated response.
//! - [`store`]: durable state behind one interface (memory, embedded file, Redis).
//! - [`metrics`], [`admin`]: Prometheus metrics, admin API, dashboard.

#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod config;
pub mod geo;
pub mod metrics;
pub mod policy;
pub mod pseudonym;
pub mod server;
pub mod sharded_counter;
pub mod store;
pub mod strikes;
