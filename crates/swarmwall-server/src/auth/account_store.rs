//! Accounts kept in the state store (`accounts_backend = "store"`): hashes only, JSON per
//! account, shared by every node of a fleet on Redis.
//!
//! Redis layout (one hash tag, so the three keys live in one Cluster slot):
//! - `PREFIX:{accounts}:map`: hash, account name → account JSON (PHC string, flags, TOTP
//!   secret, country lists);
//! - `PREFIX:{accounts}:seq`: change counter, raised by every write;
//! - `PREFIX:{accounts}:log`: stream of changes (`seq`, `name`), capped near 100,000 entries.
//!
//! Every write is one Lua script (condition check, `HSET`/`HDEL`, `INCR`, `XADD`), so writes
//! from several nodes never interleave. Each node keeps the whole set in memory (logins never
//! wait for Redis to find an account) and follows the change stream: every 250 ms one pipeline
//! reads `seq` and the stream entries after the last one seen, then re-reads the named
//! accounts. A gap (the stream was trimmed past the node, or Redis lost its data and `seq`
//! went back) triggers a full reload (`HSCAN`). Polling a stream rather than pub/sub: a node
//! that was disconnected for a while catches up on what it missed instead of losing messages.
//!
//! Embedded (redb) and memory stores keep the same JSON in an `accounts` table / map; they are
//! single-node, so the node's own API is the only writer and no follower is needed (the redb
//! file is locked by the running server: use the admin API rather than the CLI while it runs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::accounts::Account;
use crate::store::{RedisStore, Store, StoreError};

/// How often a node polls the Redis change stream.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);
/// Stream entries read per poll.
const STREAM_BATCH: usize = 1_000;
/// `HSCAN` batch of a full reload.
const SCAN_BATCH: usize = 1_000;
/// redb table of the embedded store: name → account JSON.
const ACCOUNTS_TABLE: redb::TableDefinition<'_, &str, &[u8]> =
    redb::TableDefinition::new("accounts");

/// What a write requires of the current value.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Whatever is there (import).
    Any,
    /// No account of that name (create).
    Absent,
    /// Exactly this stored JSON (read-modify-write without lost updates).
    Equals(String),
}

/// Why a conditional write did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// The account exists (create) or is gone (update).
    Exists,
    /// Missing.
    Missing,
    /// Changed since it was read.
    Changed,
}

/// The accounts part of a [`Store`]. Cheap to clone.
#[derive(Clone)]
pub enum AccountStore {
    /// Tests: a map in memory.
    Memory(Arc<Mutex<HashMap<String, String>>>),
    /// The embedded redb file (its own table).
    Embedded(Arc<redb::Database>),
    /// Redis (fleet).
    Redis(RedisStore),
}

impl std::fmt::Debug for AccountStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "AccountStore::Memory",
            Self::Embedded(_) => "AccountStore::Embedded",
            Self::Redis(_) => "AccountStore::Redis",
        })
    }
}

/// A consistent view to follow from: the accounts and the change position they reflect.
pub struct Snapshot {
    /// Every account.
    pub accounts: Vec<Account>,
    /// Redis: the change counter and stream id read before the scan.
    pub position: Position,
}

/// Where a follower stands in the Redis change stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    seq: u64,
    stream_id: String,
}

/// What changed since a [`Position`].
pub enum Changes {
    /// These accounts changed (`None`: deleted), up to the new position.
    Some(Vec<(String, Option<Account>)>, Position),
    /// The follower fell behind or the store lost data: reload everything.
    Resync,
}

impl AccountStore {
    /// The accounts part of `store`.
    pub fn for_store(store: &Store) -> Result<Self, StoreError> {
        Ok(match store {
            Store::Memory(_) => Self::Memory(Arc::default()),
            Store::Embedded(embedded) => {
                let db = embedded.database();
                let txn = db.begin_write().map_err(backend)?;
                txn.open_table(ACCOUNTS_TABLE).map_err(backend)?;
                txn.commit().map_err(backend)?;
                Self::Embedded(db)
            }
            Store::Redis(redis) => Self::Redis(redis.clone()),
        })
    }

    /// True when other nodes may write (the node must follow changes).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// The stored JSON of `name`.
    pub async fn get_raw(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self {
            Self::Memory(map) => Ok(lock(map).get(name).cloned()),
            Self::Embedded(db) => {
                let db = Arc::clone(db);
                let name = name.to_owned();
                blocking(move || {
                    use redb::ReadableDatabase;
                    let txn = db.begin_read().map_err(backend)?;
                    let table = txn.open_table(ACCOUNTS_TABLE).map_err(backend)?;
                    let value = table.get(name.as_str()).map_err(backend)?;
                    Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
                })
                .await
            }
            Self::Redis(redis) => {
                let key = keys(redis).map;
                let name = name.to_owned();
                redis
                    .run("accounts_get", async |mut con: ConnectionManager| {
                        con.hget::<_, _, Option<String>>(&key, &name).await
                    })
                    .await
            }
        }
    }

    /// Write `account` (`None`: delete `name`) if the current value meets `expect`.
    pub async fn put(
        &self,
        name: &str,
        account: Option<&Account>,
        expect: Expect,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let json = match account {
            Some(account) => Some(
                serde_json::to_string(account)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            ),
            None => None,
        };
        match self {
            Self::Memory(map) => {
                let mut map = lock(map);
                if let Err(conflict) = check(map.get(name).map(String::as_str), &expect) {
                    return Ok(Err(conflict));
                }
                match json {
                    Some(json) => map.insert(name.to_owned(), json),
                    None => map.remove(name),
                };
                Ok(Ok(()))
            }
            Self::Embedded(db) => {
                let db = Arc::clone(db);
                let name = name.to_owned();
                blocking(move || {
                    use redb::ReadableTable;
                    let txn = db.begin_write().map_err(backend)?;
                    let outcome = {
                        let mut table = txn.open_table(ACCOUNTS_TABLE).map_err(backend)?;
                        let current = table
                            .get(name.as_str())
                            .map_err(backend)?
                            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
                        let outcome = check(current.as_deref(), &expect);
                        if outcome.is_ok() {
                            match &json {
                                Some(json) => {
                                    table
                                        .insert(name.as_str(), json.as_bytes())
                                        .map_err(backend)?;
                                }
                                None => {
                                    table.remove(name.as_str()).map_err(backend)?;
                                }
                            }
                        }
                        outcome
                    };
                    txn.commit().map_err(backend)?;
                    Ok(outcome)
                })
                .await
            }
            Self::Redis(redis) => {
                let keys = keys(redis);
                let (mode, expected) = match &expect {
                    Expect::Any => ("any", String::new()),
                    Expect::Absent => ("absent", String::new()),
                    Expect::Equals(old) => ("equals", old.clone()),
                };
                let json = json.unwrap_or_default();
                let name = name.to_owned();
                let code = redis
                    .run("accounts_put", async |mut con: ConnectionManager| {
                        put_script()
                            .key(&keys.map)
                            .key(&keys.seq)
                            .key(&keys.log)
                            .arg(&name)
                            .arg(&json)
                            .arg(mode)
                            .arg(&expected)
                            .invoke_async::<i64>(&mut con)
                            .await
                    })
                    .await?;
                Ok(match code {
                    -1 => Err(Conflict::Exists),
                    -2 => Err(Conflict::Missing),
                    -3 => Err(Conflict::Changed),
                    _ => Ok(()),
                })
            }
        }
    }

    /// Every account with the position to follow from.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let raw: Vec<(String, String)> = match self {
            Self::Memory(map) => lock(map)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Self::Embedded(db) => {
                let db = Arc::clone(db);
                blocking(move || {
                    use redb::{ReadableDatabase, ReadableTable};
                    let txn = db.begin_read().map_err(backend)?;
                    let table = txn.open_table(ACCOUNTS_TABLE).map_err(backend)?;
                    let mut out = Vec::new();
                    for item in table.iter().map_err(backend)? {
                        let (name, value) = item.map_err(backend)?;
                        out.push((
                            name.value().to_owned(),
                            String::from_utf8_lossy(value.value()).into_owned(),
                        ));
                    }
                    Ok(out)
                })
                .await?
            }
            Self::Redis(redis) => return redis_snapshot(redis).await,
        };
        Ok(Snapshot {
            accounts: decode_all(raw),
            position: Position::default(),
        })
    }

    /// The changes after `position` (Redis; other stores never change behind the node).
    pub async fn changes(&self, position: &Position) -> Result<Changes, StoreError> {
        let Self::Redis(redis) = self else {
            return Ok(Changes::Some(Vec::new(), position.clone()));
        };
        let keys = keys(redis);
        let after = if position.stream_id.is_empty() {
            "-".to_owned()
        } else {
            format!("({}", position.stream_id)
        };
        let (seq, entries): (Option<u64>, redis::streams::StreamRangeReply) = redis
            .run("accounts_follow", async |mut con: ConnectionManager| {
                redis::pipe()
                    .get(&keys.seq)
                    .cmd("XRANGE")
                    .arg(&keys.log)
                    .arg(&after)
                    .arg("+")
                    .arg("COUNT")
                    .arg(STREAM_BATCH)
                    .query_async(&mut con)
                    .await
            })
            .await?;
        let seq = seq.unwrap_or(0);
        if seq < position.seq {
            return Ok(Changes::Resync);
        }
        let mut next = position.clone();
        let mut names = Vec::new();
        for entry in &entries.ids {
            let entry_seq: u64 = entry.get("seq").unwrap_or(0);
            let Some(name) = entry.get::<String>("name") else {
                continue;
            };
            if entry_seq <= next.seq {
                continue;
            }
            if entry_seq != next.seq + 1 {
                return Ok(Changes::Resync);
            }
            next.seq = entry_seq;
            next.stream_id.clone_from(&entry.id);
            names.push(name);
        }
        if entries.ids.is_empty() && seq > next.seq {
            // Counter ahead and nothing to read: the stream was trimmed or lost.
            return Ok(Changes::Resync);
        }
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return Ok(Changes::Some(Vec::new(), next));
        }
        // One HMGET for the whole batch (the current value: later changes come again).
        let values: Vec<Option<String>> = redis
            .run("accounts_follow", async |mut con: ConnectionManager| {
                redis::cmd("HMGET")
                    .arg(&keys.map)
                    .arg(&names)
                    .query_async(&mut con)
                    .await
            })
            .await?;
        let changed = names
            .into_iter()
            .zip(values)
            .map(|(name, json)| {
                let account = json.and_then(|json| decode(&name, &json));
                (name, account)
            })
            .collect();
        Ok(Changes::Some(changed, next))
    }
}

/// Redis: the counter and last stream id, then every account (`HSCAN`); changes made during
/// the scan come back through the stream after the position.
async fn redis_snapshot(redis: &RedisStore) -> Result<Snapshot, StoreError> {
    let keys = keys(redis);
    let (seq, last): (Option<u64>, redis::streams::StreamRangeReply) = redis
        .run("accounts_snapshot", async |mut con: ConnectionManager| {
            redis::pipe()
                .atomic()
                .get(&keys.seq)
                .cmd("XREVRANGE")
                .arg(&keys.log)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut con)
                .await
        })
        .await?;
    let position = Position {
        seq: seq.unwrap_or(0),
        stream_id: last.ids.first().map(|e| e.id.clone()).unwrap_or_default(),
    };
    let mut raw = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<(String, String)>) = redis
            .run("accounts_scan", async |mut con: ConnectionManager| {
                redis::cmd("HSCAN")
                    .arg(&keys.map)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_BATCH)
                    .query_async(&mut con)
                    .await
            })
            .await?;
        raw.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(Snapshot {
        accounts: decode_all(raw),
        position,
    })
}

fn decode_all(raw: Vec<(String, String)>) -> Vec<Account> {
    raw.into_iter()
        .filter_map(|(name, json)| decode(&name, &json))
        .collect()
}

/// Decode one stored account; a bad entry is skipped with a warning naming it (never its
/// content).
fn decode(name: &str, json: &str) -> Option<Account> {
    match serde_json::from_str::<Account>(json) {
        Ok(account) if account.name == name && account.check().is_ok() => Some(account),
        _ => {
            tracing::warn!(
                account = name,
                "stored account is not valid; ignored (fix it through the API)"
            );
            None
        }
    }
}

fn check(current: Option<&str>, expect: &Expect) -> Result<(), Conflict> {
    match (expect, current) {
        (Expect::Any, _) => Ok(()),
        (Expect::Absent, Some(_)) => Err(Conflict::Exists),
        (Expect::Absent, None) => Ok(()),
        (Expect::Equals(_), None) => Err(Conflict::Missing),
        (Expect::Equals(old), Some(current)) if old == current => Ok(()),
        (Expect::Equals(_), Some(_)) => Err(Conflict::Changed),
    }
}

struct Keys {
    map: String,
    seq: String,
    log: String,
}

fn keys(redis: &RedisStore) -> Keys {
    let prefix = redis.key_prefix();
    Keys {
        map: format!("{prefix}:{{accounts}}:map"),
        seq: format!("{prefix}:{{accounts}}:seq"),
        log: format!("{prefix}:{{accounts}}:log"),
    }
}

fn put_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(
            r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == 'absent' and current then return -1 end
if ARGV[3] == 'equals' and not current then return -2 end
if ARGV[3] == 'equals' and current ~= ARGV[4] then return -3 end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'seq', seq, 'name', ARGV[1])
return seq
",
        )
    })
}

fn lock(
    map: &Mutex<HashMap<String, String>>,
) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|error| StoreError::Unavailable(error.to_string()))?
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded accounts: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::accounts::DUMMY_HASH;

    async fn conditional_writes(store: &AccountStore) {
        let alice = Account::new("alice", DUMMY_HASH.to_owned());
        assert_eq!(
            store
                .put("alice", Some(&alice), Expect::Absent)
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            store
                .put("alice", Some(&alice), Expect::Absent)
                .await
                .unwrap(),
            Err(Conflict::Exists)
        );
        let stored = store.get_raw("alice").await.unwrap().unwrap();
        let mut disabled = alice.clone();
        disabled.disabled = true;
        assert_eq!(
            store
                .put("alice", Some(&disabled), Expect::Equals("{}".to_owned()))
                .await
                .unwrap(),
            Err(Conflict::Changed)
        );
        assert_eq!(
            store
                .put("alice", Some(&disabled), Expect::Equals(stored))
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            store
                .put("bob", None, Expect::Equals("{}".to_owned()))
                .await
                .unwrap(),
            Err(Conflict::Missing)
        );
        let snapshot = store.snapshot().await.unwrap();
        assert_eq!(snapshot.accounts.len(), 1);
        assert!(snapshot.accounts[0].disabled);
        let raw = store.get_raw("alice").await.unwrap().unwrap();
        assert_eq!(
            store.put("alice", None, Expect::Equals(raw)).await.unwrap(),
            Ok(())
        );
        assert!(store.snapshot().await.unwrap().accounts.is_empty());
    }

    #[tokio::test]
    async fn memory_and_embedded_stores_apply_conditional_writes() {
        conditional_writes(&AccountStore::for_store(&Store::memory()).unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let embedded = crate::store::EmbeddedStore::open(dir.path()).unwrap();
        let store = AccountStore::for_store(&Store::Embedded(embedded)).unwrap();
        conditional_writes(&store).await;
        // Survives a reopen (durable table in state.redb).
        let alice = Account::new("alice", DUMMY_HASH.to_owned());
        store
            .put("alice", Some(&alice), Expect::Any)
            .await
            .unwrap()
            .unwrap();
        drop(store);
        let reopened = crate::store::EmbeddedStore::open(dir.path()).unwrap();
        let store = AccountStore::for_store(&Store::Embedded(reopened)).unwrap();
        assert_eq!(store.snapshot().await.unwrap().accounts.len(), 1);
    }
}
