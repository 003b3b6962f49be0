//! Integrity of the Redis values that grant or withhold access: lockouts, suspensions, TOTP
//! trusted windows and used-TOTP claims ([`Namespace::is_signed`]).
//!
//! Each such value is `PAYLOAD.MAC`: the payload is the deadline (`1765000000000`), a claim
//! (`c1765000000000`) or an admin clear (`x1765000000000`, a tombstone), and the MAC is
//! HMAC-SHA256 (first 16 bytes, hex) over the full key and the payload, keyed by a subkey of
//! the node secret (`[security] secret_key_file`, shared by every node of a fleet). Binding
//! the key name means a valid value cannot be copied to another account either.
//!
//! What is detected, and what the node does (fail closed; counted in
//! `store_forged_values_total{namespace,kind}` and logged):
//! - an edited or hand-written value (`SET swarmwall:trusted_window:...`): a trusted window is
//!   ignored (TOTP is asked for), a used-TOTP claim refuses the code, a lockout or suspension
//!   counts as active (for [`FORGED_HOLD`] from each read) until an admin clears it;
//! - a deleted lockout or suspension (`DEL`): a deletion leaves no value to check, so each node
//!   keeps a shadow of the active lockouts and suspensions it knows: those it set or read, and
//!   those announced (signed) on the `PREFIX:integrity` pub/sub channel by the node that wrote
//!   them. A missing key whose shadow is still active is counted as `deleted`, honoured from
//!   the shadow and written back. Admin clears write a signed tombstone instead of deleting
//!   (and announce it), so a legitimate clear through any node or the CLI lifts the shadows
//!   everywhere; an old clear replayed on the channel does not lift a newer lockout.
//!
//! Not covered: failure counters (sorted sets; forged events only lock out, a deleted counter
//! gives more guesses before the next lockout), a `DEL` of a lockout on a node that was not
//! subscribed when it was announced and has not read it since, and login histories. Without a
//! key attached (tools that did not load the secret) values are written and read unsigned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use zeroize::Zeroizing;

use super::{MAX_TTL_MS, RedisStore};
use crate::metrics::ForgedLabels;
use crate::store::value::{StoredValue, duration_ms};
use crate::store::{Namespace, StoreError};

/// How long a forged lockout or suspension counts as active from each read.
pub(crate) const FORGED_HOLD: Duration = Duration::from_secs(3_600);

/// A missing key whose shadow ends sooner than this is not called deleted (Redis expires keys
/// by its own clock, which may run a little ahead of this node's).
const CLOCK_GRACE_MS: u64 = 2_000;

/// How long a tombstone outlives the value it clears, at least: long enough for every node
/// to read it before its shadow could call the missing key deleted.
const TOMBSTONE_MIN_MS: u64 = 7 * 86_400_000;

/// Most shadow entries kept (expired ones are pruned first).
const MAX_SHADOW: usize = 100_000;

/// The MAC key, the shadow of active lockouts and the log limiter.
#[derive(Default)]
pub(super) struct Integrity {
    key: OnceLock<Zeroizing<[u8; 32]>>,
    /// Key → (deadline, when this node learned it), both Unix ms.
    shadow: Mutex<HashMap<String, (u64, u64)>>,
    last_log_ms: AtomicU64,
    scripts: OnceLock<SignedScripts>,
}

struct SignedScripts {
    raise: Script,
    tombstone: Script,
    replace_if: Script,
}

/// A signed value, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Until(u64),
    Claim(u64),
    Cleared(u64),
}

/// The outcome of reading one signed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    Missing,
    Valid(Payload),
    Forged,
}

impl Namespace {
    /// True for the namespaces whose Redis values carry a MAC.
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Self::LockoutAccount
                | Self::LockoutClient
                | Self::Suspension
                | Self::TrustedWindow
                | Self::TotpReplay
        )
    }

    /// True for the namespaces a node shadows locally (a deletion is detected).
    fn is_shadowed(self) -> bool {
        matches!(
            self,
            Self::LockoutAccount | Self::LockoutClient | Self::Suspension
        )
    }
}

impl Payload {
    fn encode(self) -> String {
        match self {
            Self::Until(at) => at.to_string(),
            Self::Claim(at) => format!("c{at}"),
            Self::Cleared(at) => format!("x{at}"),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix('c') {
            rest.parse().ok().map(Self::Claim)
        } else if let Some(rest) = text.strip_prefix('x') {
            rest.parse().ok().map(Self::Cleared)
        } else {
            text.parse().ok().map(Self::Until)
        }
    }
}

impl Integrity {
    fn scripts(&self) -> &SignedScripts {
        self.scripts.get_or_init(SignedScripts::new)
    }
}

impl RedisStore {
    /// Sign the access-granting values with `key` from now on (a subkey of the node secret;
    /// every node of a fleet must use the same). Set once; later calls are ignored.
    pub fn attach_integrity_key(&self, key: [u8; 32]) {
        if self.inner.integrity.key.set(Zeroizing::new(key)).is_ok() {
            self.spawn_broadcast_follower();
        }
    }

    /// The channel on which lockouts, suspensions and their clears are announced, so every
    /// node shadows them (not only the one that wrote them); empty for other namespaces.
    fn broadcast_channel(&self, namespace: Namespace) -> String {
        if namespace.is_shadowed() {
            format!("{}:integrity", self.inner.prefix)
        } else {
            String::new()
        }
    }

    /// Take in one announcement `KEY\nVALUE`: only a value with a valid MAC for that key counts.
    fn take_broadcast(&self, message: &str) {
        let Some((key, value)) = message.split_once('\n') else {
            return;
        };
        let now_ms = crate::store::unix_now_ms();
        match self.check(key, Some(value)) {
            Checked::Valid(Payload::Until(until)) if until > now_ms => {
                let mut shadow = self.shadow();
                if shadow.len() < MAX_SHADOW || shadow.contains_key(key) {
                    let entry = shadow.entry(key.to_owned()).or_insert((0, now_ms));
                    if until > entry.0 {
                        *entry = (until, now_ms);
                    }
                }
            }
            Checked::Valid(Payload::Cleared(at)) => self.forget_cleared(key, at),
            // Forged announcements (anyone with Redis access can PUBLISH) are ignored.
            _ => {}
        }
    }

    /// Follow the announcements while the store lives (reconnecting every second, to the
    /// primary Sentinel names).
    fn spawn_broadcast_follower(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = std::sync::Arc::downgrade(&self.inner);
        let channel = format!("{}:integrity", self.inner.prefix);
        handle.spawn(async move {
            use futures_util::StreamExt;
            loop {
                let client = {
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    let timeout = inner.timeout.saturating_mul(5);
                    inner.target.resolve(timeout).await
                };
                let subscribed = match client {
                    Ok(client) => match client.get_async_pubsub().await {
                        Ok(mut pubsub) => pubsub.subscribe(&channel).await.map(|()| pubsub),
                        Err(error) => Err(error),
                    },
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no primary",
                    ))),
                };
                if let Ok(pubsub) = subscribed {
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let next = tokio::time::timeout(Duration::from_secs(1), messages.next());
                        match next.await {
                            Ok(Some(message)) => {
                                let Some(inner) = weak.upgrade() else {
                                    return;
                                };
                                if let Ok(text) = message.get_payload::<String>() {
                                    Self { inner }.take_broadcast(&text);
                                }
                            }
                            Ok(None) => break, // connection lost: subscribe again
                            Err(_) if weak.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// True when values of `namespace` are signed and checked.
    pub(super) fn signs(&self, namespace: Namespace) -> bool {
        namespace.is_signed() && self.inner.integrity.key.get().is_some()
    }

    fn mac_hex(&self, key: &str, payload: &str) -> Option<String> {
        let secret = self.inner.integrity.key.get()?;
        let bytes = crate::pseudonym::hmac_sha256(
            &secret[..],
            &[
                b"swarmwall-store-v1\0",
                key.as_bytes(),
                b"\0",
                payload.as_bytes(),
            ],
        );
        Some(hex::encode(&bytes[..16]))
    }

    /// `PAYLOAD.MAC` for `key` (unsigned without a key).
    fn seal(&self, key: &str, payload: Payload) -> String {
        let text = payload.encode();
        match self.mac_hex(key, &text) {
            Some(mac) => format!("{text}.{mac}"),
            None => text,
        }
    }

    /// Decode and verify a raw value read from `key`.
    fn check(&self, key: &str, raw: Option<&str>) -> Checked {
        let Some(raw) = raw else {
            return Checked::Missing;
        };
        let (text, mac) = match raw.split_once('.') {
            Some((text, mac)) => (text, Some(mac)),
            None => (raw, None),
        };
        let Some(payload) = Payload::decode(text) else {
            return Checked::Forged;
        };
        match self.mac_hex(key, text) {
            // Constant-time comparison of the hex strings.
            Some(expected) => match mac {
                Some(mac)
                    if mac.len() == expected.len()
                        && subtle::ConstantTimeEq::ct_eq(mac.as_bytes(), expected.as_bytes())
                            .into() =>
                {
                    Checked::Valid(payload)
                }
                _ => Checked::Forged,
            },
            None => Checked::Valid(payload),
        }
    }

    /// Count and log (at most one line a second) a value that failed its check.
    fn report_forged(&self, namespace: Namespace, subject: &str, kind: &'static str) {
        self.inner
            .metrics
            .store_forged_values
            .get_or_create(&ForgedLabels {
                namespace: namespace.as_str(),
                kind,
            })
            .inc();
        let now = crate::store::unix_now_ms();
        let last = self.inner.integrity.last_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000
            && self
                .inner
                .integrity
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let what = match kind {
                "deleted" => {
                    "missing while this node knew it active (deleted by hand, or lost with Redis data); kept"
                }
                _ => "fails its integrity check (forged or edited); rejected",
            };
            tracing::warn!(
                namespace = namespace.as_str(),
                subject,
                kind,
                "state store value {what}"
            );
        }
    }

    fn shadow(&self) -> MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.inner
            .integrity
            .shadow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, namespace: Namespace, key: &str, until_ms: u64, now_ms: u64) {
        if !namespace.is_shadowed() || until_ms <= now_ms {
            return;
        }
        let mut shadow = self.shadow();
        if shadow.len() >= MAX_SHADOW {
            shadow.retain(|_, (until, _)| *until > now_ms);
            if shadow.len() >= MAX_SHADOW {
                return;
            }
        }
        let entry = shadow.entry(key.to_owned()).or_insert((0, now_ms));
        if until_ms > entry.0 {
            *entry = (until_ms, now_ms);
        }
    }

    /// Forget the shadow of `key` when it was learned no later than `cleared_ms` (a replayed
    /// old clear must not lift a newer lockout).
    fn forget_cleared(&self, key: &str, cleared_ms: u64) {
        let mut shadow = self.shadow();
        if shadow
            .get(key)
            .is_some_and(|&(_, learned)| learned <= cleared_ms)
        {
            shadow.remove(key);
        }
    }

    /// The shadowed deadline of `key`, if still active at `now_ms`.
    pub(super) fn shadowed_until(&self, key: &str, now_ms: u64) -> Option<u64> {
        let mut shadow = self.shadow();
        match shadow.get(key).copied() {
            Some((until, _)) if until > now_ms => Some(until),
            Some(_) => {
                shadow.remove(key);
                None
            }
            None => None,
        }
    }

    /// Raise the deadline of a signed mark (lockout, suspension, trusted window).
    pub(super) async fn signed_set_until(
        &self,
        namespace: Namespace,
        subject: &str,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.key(namespace, subject);
        let value = self.seal(&key, Payload::Until(until_ms));
        let kept = self
            .run("set_until", async |mut con: ConnectionManager| {
                self.inner
                    .integrity
                    .scripts()
                    .raise
                    .key(&key)
                    .arg(until_ms)
                    .arg(&value)
                    .arg(self.broadcast_channel(namespace))
                    .invoke_async::<Option<String>>(&mut con)
                    .await
            })
            .await?;
        if let Some(current) = kept
            && !matches!(self.check(&key, Some(&current)), Checked::Valid(_))
        {
            // A forged value with a far deadline must not block the real one.
            self.report_forged(namespace, subject, "edited");
            let channel = self.broadcast_channel(namespace);
            self.run("set_until", async |mut con: ConnectionManager| {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("PXAT")
                    .arg(until_ms)
                    .ignore();
                if !channel.is_empty() {
                    pipe.cmd("PUBLISH")
                        .arg(&channel)
                        .arg(format!("{key}\n{value}"))
                        .ignore();
                }
                pipe.query_async::<()>(&mut con).await
            })
            .await?;
        }
        self.remember(namespace, &key, until_ms, crate::store::unix_now_ms());
        Ok(())
    }

    /// The deadline of a signed mark, checked (see the module documentation).
    pub(super) async fn signed_active_until(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let key = self.key(namespace, subject);
        let raw = self
            .run("active_until", async |mut con: ConnectionManager| {
                redis::AsyncCommands::get::<_, Option<String>>(&mut con, &key).await
            })
            .await?;
        match self.check(&key, raw.as_deref()) {
            Checked::Valid(Payload::Until(until)) => {
                self.remember(namespace, &key, until, now_ms);
                Ok((until > now_ms).then_some(until))
            }
            Checked::Valid(Payload::Cleared(_)) => {
                self.shadow().remove(&key);
                Ok(None)
            }
            Checked::Missing => {
                let Some(until) = self
                    .shadowed_until(&key, now_ms)
                    .filter(|&until| until > now_ms.saturating_add(CLOCK_GRACE_MS))
                else {
                    return Ok(None);
                };
                self.report_forged(namespace, subject, "deleted");
                // Put it back so the other nodes see it again (best effort).
                let _ = self.signed_set_until(namespace, subject, until).await;
                Ok(Some(until))
            }
            Checked::Valid(Payload::Claim(_)) | Checked::Forged => {
                self.report_forged(namespace, subject, "edited");
                Ok(self.forged_until(namespace, &key, now_ms))
            }
        }
    }

    /// What a forged mark means: no trusted window; an active lockout or suspension.
    fn forged_until(&self, namespace: Namespace, key: &str, now_ms: u64) -> Option<u64> {
        if namespace == Namespace::TrustedWindow {
            return None;
        }
        let hold = now_ms.saturating_add(duration_ms(FORGED_HOLD));
        Some(self.shadowed_until(key, now_ms).unwrap_or(0).max(hold))
    }

    /// Claim once, signed: a forged or edited claim refuses (the TOTP code is not accepted).
    pub(super) async fn signed_claim_once(
        &self,
        namespace: Namespace,
        subject: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = self.key(namespace, subject);
        let ttl_ms = duration_ms(ttl).clamp(1, MAX_TTL_MS);
        let value = self.seal(&key, Payload::Claim(now_ms.saturating_add(ttl_ms)));
        // Twice at most: a claim that expires between SET NX and GET is claimed again.
        for _ in 0..2 {
            let set = self
                .run("claim_once", async |mut con: ConnectionManager| {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("PX")
                        .arg(ttl_ms)
                        .arg("NX")
                        .query_async::<Option<String>>(&mut con)
                        .await
                })
                .await?;
            if set.is_some() {
                return Ok(true);
            }
            let current = self
                .run("claim_once", async |mut con: ConnectionManager| {
                    redis::AsyncCommands::get::<_, Option<String>>(&mut con, &key).await
                })
                .await?;
            match self.check(&key, current.as_deref()) {
                Checked::Missing => continue,
                Checked::Valid(Payload::Claim(deadline)) if deadline > now_ms => {
                    return Ok(false);
                }
                Checked::Valid(_) => {
                    // An expired claim (clock skew) or an admin clear: replace exactly it.
                    let current = current.unwrap_or_default();
                    return self
                        .run("claim_once", async |mut con: ConnectionManager| {
                            self.inner
                                .integrity
                                .scripts()
                                .replace_if
                                .key(&key)
                                .arg(&current)
                                .arg(&value)
                                .arg(ttl_ms)
                                .invoke_async::<bool>(&mut con)
                                .await
                        })
                        .await;
                }
                Checked::Forged => {
                    self.report_forged(namespace, subject, "edited");
                    return Ok(false);
                }
            }
        }
        Ok(false)
    }

    /// Clear a signed mark with a signed tombstone (not `DEL`), so every node's shadow lets
    /// it go.
    pub(super) async fn signed_clear(
        &self,
        namespace: Namespace,
        subject: &str,
    ) -> Result<(), StoreError> {
        let key = self.key(namespace, subject);
        let now_ms = crate::store::unix_now_ms();
        let value = self.seal(&key, Payload::Cleared(now_ms));
        self.run("clear", async |mut con: ConnectionManager| {
            self.inner
                .integrity
                .scripts()
                .tombstone
                .key(&key)
                .arg(&value)
                .arg(now_ms.saturating_add(TOMBSTONE_MIN_MS))
                .arg(self.broadcast_channel(namespace))
                .invoke_async::<()>(&mut con)
                .await
        })
        .await?;
        self.shadow().remove(&key);
        Ok(())
    }

    /// A raw string value of a signed namespace as a [`StoredValue`] (listing, migration):
    /// tombstones are not values; a forged lockout lists as active.
    pub(super) fn signed_stored_value(
        &self,
        namespace: Namespace,
        subject: &str,
        raw: &str,
        now_ms: u64,
    ) -> Option<StoredValue> {
        let key = self.key(namespace, subject);
        match self.check(&key, Some(raw)) {
            Checked::Valid(Payload::Until(until_ms)) => Some(StoredValue::Until { until_ms }),
            Checked::Valid(Payload::Claim(expires_ms)) => Some(StoredValue::Claim { expires_ms }),
            Checked::Valid(Payload::Cleared(_)) | Checked::Missing => None,
            Checked::Forged => {
                self.report_forged(namespace, subject, "edited");
                self.forged_until(namespace, &key, now_ms)
                    .map(|until_ms| StoredValue::Until { until_ms })
            }
        }
    }

    /// The raw string to write for `value` in a signed namespace (migration).
    pub(super) fn signed_raw(
        &self,
        namespace: Namespace,
        subject: &str,
        value: &StoredValue,
    ) -> Option<String> {
        let key = self.key(namespace, subject);
        match value {
            StoredValue::Until { until_ms } => Some(self.seal(&key, Payload::Until(*until_ms))),
            StoredValue::Claim { expires_ms } => Some(self.seal(&key, Payload::Claim(*expires_ms))),
            _ => None,
        }
    }
}

impl SignedScripts {
    fn new() -> Self {
        Self {
            // KEYS[1]; ARGV: until, sealed value, broadcast channel (or ''). Raise only (the
            // leading digits are the deadline; a claim or tombstone counts as 0). Returns the
            // value kept, if any.
            raise: Script::new(
                r"
local current = redis.call('GET', KEYS[1])
local deadline = 0
if current then deadline = tonumber(string.match(current, '^(%d+)')) or 0 end
if tonumber(ARGV[1]) > deadline then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[1])
  if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], KEYS[1] .. '\n' .. ARGV[2]) end
  return false
end
return current
",
            ),
            // KEYS[1]; ARGV: sealed tombstone, earliest expiry, broadcast channel (or '').
            // Lives at least until the cleared deadline.
            tombstone: Script::new(
                r"
local current = redis.call('GET', KEYS[1])
local deadline = 0
if current then deadline = tonumber(string.match(current, '^c?(%d+)')) or 0 end
local expiry = math.max(deadline, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', string.format('%d', expiry))
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], KEYS[1] .. '\n' .. ARGV[1]) end
return 0
",
            ),
            // KEYS[1]; ARGV: expected value, new value, ttl ms. Compare and set.
            replace_if: Script::new(
                r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Payload;

    #[test]
    fn payloads_round_trip() {
        for payload in [
            Payload::Until(1_765_000_000_000),
            Payload::Claim(7),
            Payload::Cleared(0),
        ] {
            assert_eq!(Payload::decode(&payload.encode()), Some(payload));
        }
        assert_eq!(Payload::decode("c"), None);
        assert_eq!(Payload::decode("12a"), None);
    }
}
