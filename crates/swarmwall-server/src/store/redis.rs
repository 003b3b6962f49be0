//! Redis backend for a fleet of nodes sharing state.
//!
//! Keys are `PREFIX:namespace:subject` (prefix `swarmwall` by default). Every read-modify-write
//! is one Lua script, so nodes never race:
//! - events: a sorted set scored by event time (`ZREMRANGEBYSCORE`, `ZADD`, `ZCOUNT`,
//!   `PEXPIRE` of the window);
//! - "active until" marks: a string holding the deadline, raised (never lowered) by script,
//!   expiring at the deadline (`PXAT`);
//! - claims: a string `c<deadline>` written only when no live claim exists (`PX` ttl);
//! - histories: a list (`RPUSH`, `LTRIM`, `PEXPIRE`).
//!
//! Expiry is Redis's own; values also carry their deadline so a read compares it with the
//! caller's `now_ms` exactly as the other backends do.
//!
//! Failure handling: every call is bounded by the `[store] timeout` (default 200 ms). The
//! [`redis::aio::ConnectionManager`] reconnects on its own; a background task pings once a
//! second to keep `store_up` true to fact and to log (rate limited) when Redis goes away and
//! comes back. Which callers fail open or closed is documented in docs/operations.md ("Fleet: state
//! store").

mod checkpoint;
mod connect;
mod outage;
mod signed;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::value::{StoredValue, duration_ms, window_start};
use super::{Namespace, StoreError};
use crate::metrics::{Metrics, OperationLabels};

/// Longest expiry handed to Redis (ten years): larger values overflow its integer range.
const MAX_TTL_MS: u64 = 10 * 365 * 86_400_000;

/// Most events kept per counter (as the other backends).
const MAX_EVENTS: usize = super::value::MAX_EVENTS;

/// Redis-backed state store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection to the current primary (none while Sentinel names none).
    connection: ArcSwapOption<ConnectionManager>,
    /// Where the connection goes (one URL, or Sentinel).
    target: connect::Target,
    /// `HOST:PORT` of the current primary.
    address: std::sync::Mutex<String>,
    /// Wakes the health task to ask Sentinel again after a failed call.
    resolve_now: tokio::sync::Notify,
    /// Node-local state for `on_outage = "local"` (`outage.rs`).
    local: Option<outage::Local>,
    prefix: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
    display_url: String,
    up: AtomicBool,
    /// Unix ms of the last "store unavailable" log line (rate limit).
    last_error_log_ms: AtomicU64,
    /// Errors since the last log line.
    suppressed_errors: AtomicU64,
    scripts: Scripts,
    /// MAC key and shadow of the access-granting values (`signed.rs`).
    integrity: signed::Integrity,
}

struct Scripts {
    record_event: Script,
    set_until: Script,
    claim_once: Script,
    push_history: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.display_url)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepare a store for `url` with the TLS, Sentinel and outage settings of `config`.
    /// Connecting is lazy: a node starts even while Redis (or every sentinel) is down, and
    /// state calls fail (within `timeout`) until it answers.
    pub async fn connect(
        config: &crate::config::StoreConfig,
        url: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let display_url = crate::config::StoreBackend::Redis(url.to_owned()).to_string();
        let target = connect::Target::new(config, url, &display_url)?;
        let timeout = config.timeout;
        let store = Self {
            inner: Arc::new(Inner {
                connection: ArcSwapOption::empty(),
                target,
                address: std::sync::Mutex::new(String::new()),
                resolve_now: tokio::sync::Notify::new(),
                local: (config.on_outage == crate::config::OutageMode::Local)
                    .then(outage::Local::default),
                prefix: config.redis_prefix.clone(),
                timeout,
                metrics,
                display_url,
                up: AtomicBool::new(false),
                last_error_log_ms: AtomicU64::new(0),
                suppressed_errors: AtomicU64::new(0),
                scripts: Scripts::new(),
                integrity: signed::Integrity::default(),
            }),
        };
        // Sentinel gets a few timeouts' time at start; the health task keeps asking.
        if let Err(error) = store.resolve_primary(timeout.saturating_mul(5)).await {
            tracing::warn!(store = %store.inner.display_url, %error, "no Redis primary yet; will retry");
        }
        store.spawn_health_check();
        Ok(store)
    }

    /// Connect to the primary the target names now, when it changed (or at first).
    async fn resolve_primary(&self, timeout: Duration) -> Result<(), StoreError> {
        let client = self.inner.target.resolve(timeout).await?;
        let address = connect::server_address(&client);
        let changed = {
            let mut current = self
                .inner
                .address
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = *current != address || self.inner.connection.load().is_none();
            if changed {
                *current = address.clone();
            }
            changed
        };
        if changed {
            let manager = connect::manager(client, self.inner.timeout)?;
            self.inner.connection.store(Some(Arc::new(manager)));
            if self.inner.target.is_sentinel() {
                tracing::info!(primary = %address, "Redis primary (named by Sentinel)");
            }
        }
        Ok(())
    }

    /// `redis://host:port/db (prefix P)`, without any password.
    pub fn describe(&self) -> String {
        format!("{} (prefix {})", self.inner.display_url, self.inner.prefix)
    }

    /// The key prefix (`swarmwall` by default).
    pub(crate) fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// True when the last call or ping succeeded.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// One `PING`, bounded by the timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", async |mut con: ConnectionManager| {
            redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .map(drop)
        })
        .await
    }

    pub(super) async fn record_event(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<u32, StoreError> {
        let key = self.key(namespace, subject);
        let member = format!("{now_ms}-{:016x}", rand::random::<u64>());
        let start = window_start(now_ms, window);
        self.run("record_event", async |mut con: ConnectionManager| {
            self.inner
                .scripts
                .record_event
                .key(&key)
                .arg(now_ms)
                .arg(&member)
                .arg(start)
                .arg(duration_ms(window).clamp(1, MAX_TTL_MS))
                .arg(MAX_EVENTS)
                .invoke_async::<u32>(&mut con)
                .await
        })
        .await
    }

    pub(super) async fn events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<Vec<u64>, StoreError> {
        let key = self.key(namespace, subject);
        let start = window_start(now_ms, window);
        self.run("events", async |mut con: ConnectionManager| {
            let scored: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(start)
                .arg("+inf")
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await?;
            Ok(scored.into_iter().map(|(_, score)| score as u64).collect())
        })
        .await
    }

    pub(super) async fn count_events(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        window: Duration,
    ) -> Result<u32, StoreError> {
        let key = self.key(namespace, subject);
        let start = window_start(now_ms, window);
        self.run("count_events", async |mut con: ConnectionManager| {
            con.zcount::<_, _, _, u32>(&key, start, "+inf").await
        })
        .await
    }

    pub(super) async fn set_until(
        &self,
        namespace: Namespace,
        subject: &str,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        if self.signs(namespace) {
            return self.signed_set_until(namespace, subject, until_ms).await;
        }
        let key = self.key(namespace, subject);
        self.run("set_until", async |mut con: ConnectionManager| {
            self.inner
                .scripts
                .set_until
                .key(&key)
                .arg(until_ms)
                .invoke_async::<()>(&mut con)
                .await
        })
        .await
    }

    pub(super) async fn active_until(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        if self.signs(namespace) {
            return self.signed_active_until(namespace, subject, now_ms).await;
        }
        let key = self.key(namespace, subject);
        let raw = self
            .run("active_until", async |mut con: ConnectionManager| {
                con.get::<_, Option<String>>(&key).await
            })
            .await?;
        // Leading digits: a signed value read without the key (tools) still has a deadline.
        Ok(raw
            .and_then(|text| text.split('.').next().and_then(|t| t.parse::<u64>().ok()))
            .filter(|&until| until > now_ms))
    }

    pub(super) async fn push_history(
        &self,
        namespace: Namespace,
        subject: &str,
        entry: &[u8],
        max_entries: usize,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(namespace, subject);
        self.run("push_history", async |mut con: ConnectionManager| {
            self.inner
                .scripts
                .push_history
                .key(&key)
                .arg(entry)
                .arg(max_entries.max(1))
                .arg(duration_ms(ttl).clamp(1, MAX_TTL_MS))
                .invoke_async::<()>(&mut con)
                .await
        })
        .await
    }

    pub(super) async fn history(
        &self,
        namespace: Namespace,
        subject: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let key = self.key(namespace, subject);
        self.run("history", async |mut con: ConnectionManager| {
            con.lrange::<_, Vec<Vec<u8>>>(&key, 0, -1).await
        })
        .await
    }

    pub(super) async fn claim_once(
        &self,
        namespace: Namespace,
        subject: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        if self.signs(namespace) {
            return self
                .signed_claim_once(namespace, subject, ttl, now_ms)
                .await;
        }
        let key = self.key(namespace, subject);
        self.run("claim_once", async |mut con: ConnectionManager| {
            self.inner
                .scripts
                .claim_once
                .key(&key)
                .arg(now_ms)
                .arg(duration_ms(ttl).clamp(1, MAX_TTL_MS))
                .invoke_async::<bool>(&mut con)
                .await
        })
        .await
    }

    pub(super) async fn clear(
        &self,
        namespace: Namespace,
        subject: &str,
    ) -> Result<(), StoreError> {
        if self.signs(namespace) {
            return self.signed_clear(namespace, subject).await;
        }
        let key = self.key(namespace, subject);
        self.run("clear", async |mut con: ConnectionManager| {
            con.del::<_, ()>(&key).await
        })
        .await
    }

    /// Every key of `namespace` (SCAN, so Redis is never blocked), subject part only.
    async fn scan(&self, namespace: Namespace) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", glob_escape(&self.key(namespace, "")));
        let skip = self.key(namespace, "").len();
        let mut subjects = Vec::new();
        let mut cursor = 0_u64;
        // Bounded: SCAN terminates when the cursor returns to 0; the cap guards a broken server.
        for _ in 0..1_000_000 {
            let (next, keys) = self
                .run("scan", async |mut con: ConnectionManager| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1_000)
                        .query_async::<(u64, Vec<String>)>(&mut con)
                        .await
                })
                .await?;
            subjects.extend(
                keys.into_iter()
                    .filter_map(|key| key.get(skip..).map(str::to_owned)),
            );
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        subjects.sort();
        subjects.dedup();
        Ok(subjects)
    }

    /// Live values in `namespace` with their deadlines (subjects listing and migration).
    pub(super) async fn dump(
        &self,
        namespace: Namespace,
        now_ms: u64,
    ) -> Result<Vec<(String, StoredValue)>, StoreError> {
        let mut out = Vec::new();
        for subject in self.scan(namespace).await? {
            if let Some(value) = self.read_value(namespace, &subject, now_ms).await?
                && value.is_live(now_ms)
            {
                out.push((subject, value));
            }
        }
        Ok(out)
    }

    /// Read one key in whatever shape it has.
    async fn read_value(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<StoredValue>, StoreError> {
        let key = self.key(namespace, subject);
        self.run("dump", async |mut con: ConnectionManager| {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await?;
            let ttl_ms: i64 = con.pttl(&key).await?;
            let ttl_deadline = if ttl_ms > 0 {
                now_ms.saturating_add(ttl_ms.unsigned_abs())
            } else {
                u64::MAX
            };
            let value = match kind.as_str() {
                "zset" => {
                    let scored: Vec<(String, f64)> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query_async(&mut con)
                        .await?;
                    Some(StoredValue::Events {
                        times: scored.into_iter().map(|(_, s)| s as u64).collect(),
                        expires_ms: ttl_deadline,
                    })
                }
                "list" => Some(StoredValue::History {
                    entries: con.lrange(&key, 0, -1).await?,
                    expires_ms: ttl_deadline,
                }),
                "string" => {
                    let text: Option<String> = con.get(&key).await?;
                    if self.signs(namespace) {
                        return Ok(text.and_then(|raw| {
                            self.signed_stored_value(namespace, subject, &raw, now_ms)
                        }));
                    }
                    // Unsigned, or signed but read without the key: the payload before `.`.
                    let text = text.map(|t| t.split('.').next().unwrap_or_default().to_owned());
                    text.and_then(|text| match text.strip_prefix('x') {
                        Some(_) => None,
                        None => match text.strip_prefix('c') {
                            Some(claim) => claim
                                .parse()
                                .ok()
                                .map(|expires_ms| StoredValue::Claim { expires_ms }),
                            None => text
                                .parse()
                                .ok()
                                .map(|until_ms| StoredValue::Until { until_ms }),
                        },
                    })
                }
                _ => None,
            };
            Ok(value)
        })
        .await
    }

    /// Write `value` as-is (migration); Redis expires it at its deadline.
    pub(super) async fn restore(
        &self,
        namespace: Namespace,
        subject: &str,
        value: &StoredValue,
    ) -> Result<(), StoreError> {
        let key = self.key(namespace, subject);
        let deadline = value.expires_ms();
        self.run("restore", async |mut con: ConnectionManager| {
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key).ignore();
            match value {
                StoredValue::Events { times, .. } => {
                    for time in times {
                        pipe.zadd(
                            &key,
                            format!("{time}-{:016x}", rand::random::<u64>()),
                            *time,
                        )
                        .ignore();
                    }
                }
                StoredValue::Until { .. } | StoredValue::Claim { .. } if self.signs(namespace) => {
                    let raw = self
                        .signed_raw(namespace, subject, value)
                        .unwrap_or_default();
                    pipe.set(&key, raw).ignore();
                }
                StoredValue::Until { until_ms } => {
                    pipe.set(&key, until_ms.to_string()).ignore();
                }
                StoredValue::Claim { expires_ms } => {
                    pipe.set(&key, format!("c{expires_ms}")).ignore();
                }
                StoredValue::History { entries, .. } => {
                    for entry in entries {
                        pipe.rpush(&key, entry.as_slice()).ignore();
                    }
                }
            }
            if deadline < u64::MAX {
                pipe.cmd("PEXPIREAT").arg(&key).arg(deadline).ignore();
            }
            pipe.query_async::<()>(&mut con).await
        })
        .await?;
        Ok(())
    }

    /// `PREFIX:namespace:subject`.
    fn key(&self, namespace: Namespace, subject: &str) -> String {
        format!("{}:{}:{subject}", self.inner.prefix, namespace.as_str())
    }

    /// Run one Redis interaction with the timeout, metrics and logging every call gets.
    /// Run `body` on the shared connection within the timeout, counting failures (also used
    /// by the accounts store, `auth::account_store`).
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        body: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let result = match self.inner.connection.load_full() {
            None => Err(StoreError::Unavailable("no Redis primary known".into())),
            Some(connection) => {
                let connection = ConnectionManager::clone(&connection);
                match tokio::time::timeout(self.inner.timeout, body(connection)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) if error.is_timeout() => Err(StoreError::Timeout),
                    Ok(Err(error)) => Err(StoreError::Unavailable(error.to_string())),
                    Err(_) => Err(StoreError::Timeout),
                }
            }
        };
        match &result {
            Ok(_) => self.mark_up(),
            Err(error) => {
                self.mark_error(operation, error);
                if self.inner.target.is_sentinel() {
                    self.inner.resolve_now.notify_one();
                }
            }
        }
        result
    }

    fn mark_up(&self) {
        if !self.inner.up.swap(true, Ordering::Relaxed) {
            self.inner.metrics.store_up.set(1);
            self.spawn_merge_local();
            let suppressed = self.inner.suppressed_errors.swap(0, Ordering::Relaxed);
            tracing::info!(
                store = %self.inner.display_url,
                errors_while_down = suppressed,
                "state store reachable"
            );
        }
    }

    fn mark_error(&self, operation: &'static str, error: &StoreError) {
        self.inner
            .metrics
            .store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
        self.inner.up.store(false, Ordering::Relaxed);
        self.inner.metrics.store_up.set(0);
        // At most one line per 10 s; the count of the others goes into the next line.
        let now = super::unix_now_ms();
        let last = self.inner.last_error_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .inner
                .last_error_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.inner.suppressed_errors.swap(0, Ordering::Relaxed);
            tracing::warn!(
                store = %self.inner.display_url,
                operation,
                %error,
                suppressed,
                "state store call failed"
            );
        } else {
            self.inner.suppressed_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ping once a second while the store lives, so `store_up` and the logs follow Redis even
    /// when no session touches state. With Sentinel, ask for the primary each time too (and
    /// at once after a failed call, at most every 100 ms).
    fn spawn_health_check(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            loop {
                let notified = {
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    tokio::select! {
                        _ = ticker.tick() => false,
                        () = async { inner.resolve_now.notified().await } => true,
                    }
                };
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let store = Self { inner };
                if store.inner.target.is_sentinel()
                    && let Err(error) = store.resolve_primary(store.inner.timeout * 5).await
                {
                    tracing::debug!(%error, "asking Sentinel for the primary failed");
                }
                if notified {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    let _ = store.ping().await;
                }
            }
        });
    }
}

impl Scripts {
    fn new() -> Self {
        Self {
            // KEYS[1] zset; ARGV: now, member, window start, window ms, max events.
            record_event: Script::new(
                r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return redis.call('ZCOUNT', KEYS[1], ARGV[3], '+inf')
",
            ),
            // KEYS[1] string; ARGV: until. Raise only; expire at the deadline.
            set_until: Script::new(
                r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[1])
end
return 0
",
            ),
            // KEYS[1] string 'c<deadline>'; ARGV: now, ttl ms.
            claim_once: Script::new(
                r"
local current = redis.call('GET', KEYS[1])
if current then
  local deadline = tonumber(string.sub(current, 2))
  if deadline and deadline > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], 'c' .. (tonumber(ARGV[1]) + tonumber(ARGV[2])), 'PX', ARGV[2])
return 1
",
            ),
            // KEYS[1] list; ARGV: entry, max entries, ttl ms.
            push_history: Script::new(
                r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
",
            ),
        }
    }
}

/// Escape SCAN glob characters in a literal key prefix.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

mod reserve;
