//! Embedded backend: one redb file (`state.redb`) in the data directory.
//!
//! Crash safety: every write is part of a redb write transaction committed with
//! `Durability::Immediate` (fsync) before the call returns, so state acknowledged to a caller
//! survives `kill -9` and power loss. Writes go to one writer thread that applies every write
//! waiting at that moment in a single transaction (group commit): one fsync serves a whole
//! burst of concurrent writers instead of queueing them behind one fsync each. Reads are short
//! and run inline on committed data.
//!
//! Expiry (the `mini-redis` `db.rs` shape): every value carries its own deadline, reads ignore
//! expired values (lazy), and one background task deletes them every `purge_interval` using a
//! second table ordered by deadline. The store never reads the clock: the purge uses the latest
//! `now_ms` a caller passed in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::value::StoredValue;
use super::{Namespace, StoreError};

/// `"namespace:subject"` → encoded [`StoredValue`].
const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state");
/// `(expires_ms, "namespace:subject")` → nothing: the purge index.
const EXPIRY: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("expiry");

/// Most writes applied in one group-commit transaction.
const MAX_BATCH: usize = 512;

type StateTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;
type ExpiryTable<'t> = redb::Table<'t, (u64, &'static str), ()>;
/// Delivers a write's result once its transaction committed (or failed).
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write for the writer thread: applies itself to the open tables and returns whether it
/// hit a storage error (which aborts the batch) and how to deliver its result.
type Job =
    Box<dyn for<'t> FnOnce(&mut StateTable<'t>, &mut ExpiryTable<'t>) -> (bool, Completion) + Send>;

/// File name inside the data directory.
pub const FILE_NAME: &str = "state.redb";

/// Crash-safe embedded state store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Database>,
    /// Queue of the writer thread (it ends when this sender is dropped with the store).
    writer: mpsc::Sender<Job>,
    path: PathBuf,
    /// The latest `now_ms` any caller passed (the purge clock).
    latest_now_ms: AtomicU64,
    /// Where failures are counted (`store_errors`, `store_up`), when attached.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl EmbeddedStore {
    /// Open (or create) `DIR/state.redb`, creating `DIR` (mode 0700) when missing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        super::create_private_dir(dir)?;
        let path = dir.join(FILE_NAME);
        create_private_file(&path)?;
        let db = Database::create(&path).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "{} is in use by another swarmwall process (stop it, or use the admin API)",
                path.display()
            )),
            other => StoreError::Unavailable(format!("{}: {other}", path.display())),
        })?;
        // Create both tables so read transactions never meet a missing table.
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(STATE).map_err(backend)?;
        txn.open_table(EXPIRY).map_err(backend)?;
        txn.commit().map_err(backend)?;
        let db = Arc::new(db);
        let (writer, jobs) = mpsc::channel::<Job>();
        let thread_db = Arc::clone(&db);
        std::thread::Builder::new()
            .name("swarmwall-store-writer".into())
            .spawn(move || writer_loop(&thread_db, &jobs))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start the writer: {error}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer,
                path,
                latest_now_ms: AtomicU64::new(0),
                metrics: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Count failures in `metrics` (`store_errors{operation}`, `store_up`).
    pub fn attach_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        metrics.store_up.set(1);
        let _ = self.inner.metrics.set(metrics);
    }

    /// Pass a result through, counting and logging a failure.
    pub(super) fn observe_result<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(metrics) = self.inner.metrics.get() {
            match &result {
                Ok(_) => {
                    metrics.store_up.set(1);
                }
                Err(error) => {
                    metrics
                        .store_errors
                        .get_or_create(&crate::metrics::OperationLabels { operation })
                        .inc();
                    metrics.store_up.set(0);
                    tracing::warn!(operation, %error, "embedded state store call failed");
                }
            }
        }
        result
    }

    /// The open database (the accounts store keeps its own table in it).
    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.inner.db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Start the background purge task (needs a tokio runtime); it ends when the last clone of
    /// the store is dropped.
    pub fn spawn_purge(&self, interval: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let store = Self { inner };
                let now_ms = store.inner.latest_now_ms.load(Ordering::Relaxed);
                match tokio::task::spawn_blocking(move || store.purge(now_ms)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(purged)) => {
                        tracing::debug!(purged, "embedded store: expired entries purged")
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "embedded store: purge failed"),
                    Err(_) => return,
                }
            }
        });
    }

    /// Delete every value that expired at or before `now_ms`; returns how many.
    pub fn purge(&self, now_ms: u64) -> Result<usize, StoreError> {
        let txn = self.inner.db.begin_write().map_err(backend)?;
        let mut purged = 0;
        {
            let mut state = txn.open_table(STATE).map_err(backend)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
            let mut due = Vec::new();
            for item in expiry
                .range::<(u64, &str)>(..=(now_ms, "\u{10ffff}"))
                .map_err(backend)?
            {
                let (index_key, _) = item.map_err(backend)?;
                let (expires_ms, key) = index_key.value();
                due.push((expires_ms, key.to_owned()));
            }
            for (expires_ms, key) in due {
                expiry.remove((expires_ms, key.as_str())).map_err(backend)?;
                let live = match state.get(key.as_str()).map_err(backend)? {
                    Some(bytes) => StoredValue::decode(bytes.value())
                        .map(|v| v.is_live(now_ms))
                        .unwrap_or(false),
                    None => true,
                };
                if !live {
                    state.remove(key.as_str()).map_err(backend)?;
                    purged += 1;
                }
            }
        }
        txn.commit().map_err(backend)?;
        Ok(purged)
    }

    /// Read one value (inline: a read transaction is a few microseconds).
    pub(super) fn get(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<StoredValue>, StoreError> {
        self.observe(now_ms);
        let key = key(namespace, subject);
        let txn = self.inner.db.begin_read().map_err(backend)?;
        let table = txn.open_table(STATE).map_err(backend)?;
        let value = match table.get(key.as_str()).map_err(backend)? {
            Some(bytes) => Some(StoredValue::decode(bytes.value())?),
            None => None,
        };
        Ok(value)
    }

    /// Read several values in one read transaction (one snapshot, one table open).
    pub(super) fn get_many<const N: usize>(
        &self,
        keys: [(Namespace, &str); N],
        now_ms: u64,
    ) -> Result<[Option<StoredValue>; N], StoreError> {
        self.observe(now_ms);
        let txn = self.inner.db.begin_read().map_err(backend)?;
        let table = txn.open_table(STATE).map_err(backend)?;
        let mut values = [const { None }; N];
        for (slot, (namespace, subject)) in values.iter_mut().zip(keys) {
            let key = key(namespace, subject);
            if let Some(bytes) = table.get(key.as_str()).map_err(backend)? {
                *slot = Some(StoredValue::decode(bytes.value())?);
            }
        }
        Ok(values)
    }

    /// Read-modify-write one value; returns once the transaction holding it is durable.
    /// `update` returns the new value (or `None` to delete) and a result for the caller.
    pub(super) async fn update<T, F>(
        &self,
        namespace: Namespace,
        subject: &str,
        now_ms: u64,
        update: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Option<StoredValue>) -> (Option<StoredValue>, T) + Send + 'static,
    {
        self.observe(now_ms);
        let key = key(namespace, subject);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |state, expiry| {
            let result = apply(state, expiry, &key, update);
            let fatal = result.is_err();
            let completion: Completion = Box::new(move |commit| {
                let _ = sender.send(commit.and(result));
            });
            (fatal, completion)
        });
        self.inner
            .writer
            .send(job)
            .map_err(|_| StoreError::Unavailable("embedded store writer stopped".into()))?;
        receiver
            .await
            .map_err(|_| StoreError::Unavailable("embedded store write abandoned".into()))?
    }

    /// Live values in `namespace`.
    pub(super) fn dump(
        &self,
        namespace: Namespace,
        now_ms: u64,
    ) -> Result<Vec<(String, StoredValue)>, StoreError> {
        self.observe(now_ms);
        let prefix = format!("{}:", namespace.as_str());
        let txn = self.inner.db.begin_read().map_err(backend)?;
        let table = txn.open_table(STATE).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range::<&str>(prefix.as_str()..).map_err(backend)? {
            let (key, bytes) = item.map_err(backend)?;
            let Some(subject) = key.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            let value = StoredValue::decode(bytes.value())?;
            if value.is_live(now_ms) {
                out.push((subject.to_owned(), value));
            }
        }
        Ok(out)
    }

    fn observe(&self, now_ms: u64) {
        self.inner
            .latest_now_ms
            .fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// The writer thread: take every queued write, apply them in one transaction, commit once,
/// then tell each caller. Ends when the store (the sender) is dropped.
fn writer_loop(db: &Database, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut completions = Vec::with_capacity(batch.len());
        let outcome = run_batch(db, batch, &mut completions);
        for completion in completions {
            completion(match &outcome {
                Ok(()) => Ok(()),
                Err(error) => Err(StoreError::Unavailable(error.to_string())),
            });
        }
    }
}

/// One group-commit transaction. Writes that never ran (the transaction could not start) are
/// dropped, which their callers see as an abandoned write.
fn run_batch(
    db: &Database,
    batch: Vec<Job>,
    completions: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let mut failed = false;
    {
        let mut state = txn.open_table(STATE).map_err(backend)?;
        let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
        for job in batch {
            let (fatal, completion) = job(&mut state, &mut expiry);
            failed |= fatal;
            completions.push(completion);
        }
    }
    if failed {
        // Dropping the transaction aborts it: no write of this batch becomes visible.
        return Err(StoreError::Unavailable(
            "embedded store: a write failed; batch rolled back".into(),
        ));
    }
    // Durability::Immediate is redb's default: commit returns after fsync.
    txn.commit().map_err(backend)
}

/// Apply one read-modify-write to the open tables (inside a batch transaction).
fn apply<T>(
    state: &mut StateTable<'_>,
    expiry: &mut ExpiryTable<'_>,
    key: &str,
    update: impl FnOnce(Option<StoredValue>) -> (Option<StoredValue>, T),
) -> Result<T, StoreError> {
    // A value that does not decode is replaced rather than failing every later write.
    let old = match state.get(key).map_err(backend)? {
        Some(bytes) => StoredValue::decode(bytes.value()).ok(),
        None => None,
    };
    let old_deadline = old.as_ref().map(StoredValue::expires_ms);
    let (new, result) = update(old);
    if let Some(deadline) = old_deadline {
        expiry.remove((deadline, key)).map_err(backend)?;
    }
    match new {
        Some(value) => {
            state
                .insert(key, value.encode().as_slice())
                .map_err(backend)?;
            expiry
                .insert((value.expires_ms(), key), ())
                .map_err(backend)?;
        }
        None => {
            state.remove(key).map_err(backend)?;
        }
    }
    Ok(result)
}

/// `namespace:subject`.
fn key(namespace: Namespace, subject: &str) -> String {
    format!("{}:{subject}", namespace.as_str())
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {error}"))
}

/// Create `path` with mode 0600 when missing (redb would create it with the umask's mode,
/// 0644 by default), and take group/other access away from an existing one: the state names
/// accounts and holds lockouts, suspensions and TOTP windows.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let unavailable =
        |error: std::io::Error| StoreError::Unavailable(format!("{}: {error}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(unavailable)?;
    let mode = file.metadata().map_err(unavailable)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format_args!("{mode:04o}"),
            "state store file was accessible by group or others; setting mode 0600"
        );
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(unavailable)?;
    }
    Ok(())
}
