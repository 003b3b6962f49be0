//! Attempt reservations on Redis ([`super::super::reserve`]): one Lua script adds the event and
//! counts the window atomically, so two nodes sharing one Redis never both see "below the
//! limit"; releasing removes the reservation's own sorted-set member.
//!
//! Kept apart from the other scripts on purpose: its own function and script.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::{MAX_EVENTS, MAX_TTL_MS, RedisStore};
use crate::store::value::{duration_ms, window_start};
use crate::store::{Namespace, StoreError};

/// KEYS[1] zset of event times; ARGV: now, member, window start, window ms, max events.
/// Drops events older than the window, adds this one, trims, keeps the key alive for the
/// window, and returns the count within the window including this event.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return redis.call('ZCOUNT', KEYS[1], ARGV[3], '+inf')
",
    )
});

impl RedisStore {
    /// Add `member` at `now_ms` and return the window's count, atomically.
    pub(in crate::store) async fn reserve_event(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        member: &str,
        window: Duration,
    ) -> Result<u32, StoreError> {
        let key = self.key(namespace, subject);
        let start = window_start(now_ms, window);
        self.run("reserve_event", async |mut con: ConnectionManager| {
            RESERVE
                .key(&key)
                .arg(now_ms)
                .arg(member)
                .arg(start)
                .arg(duration_ms(window).clamp(1, MAX_TTL_MS))
                .arg(MAX_EVENTS)
                .invoke_async::<u32>(&mut con)
                .await
        })
        .await
    }

    /// Remove one reservation's member.
    pub(in crate::store) async fn release_event(
        &self,
        namespace: Namespace,
        subject: &str,
        member: &str,
    ) -> Result<(), StoreError> {
        let key = self.key(namespace, subject);
        self.run("release_event", async |mut con: ConnectionManager| {
            redis::cmd("ZREM")
                .arg(&key)
                .arg(member)
                .query_async::<()>(&mut con)
                .await
        })
        .await
    }
}
