//! What the server's integration tests share: the crate-independent helpers of
//! `swarmwall-test-support`, a Redis store URL for a test `redis-server`, and a small HTTP/1.1
//! client for the admin listener ([`http`]).

pub(crate) mod http;

pub(crate) use swarmwall_test_support::{RedisServer, metric_value, wait_for};

use swarmwall_server::config::StoreBackend;

/// The store backend of a test `redis-server` (its URL with the password).
pub(crate) fn redis_backend(redis: &RedisServer) -> StoreBackend {
    StoreBackend::Redis(redis.url())
}
