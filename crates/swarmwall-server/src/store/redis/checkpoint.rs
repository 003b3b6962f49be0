//! The latest security event log checkpoint of each node: `PREFIX:audit_checkpoint:NODE`, a
//! JSON string without expiry (see `crate::audit::Checkpoint`). Kept apart from the state
//! namespaces: it is not migrated and carries its own MAC.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::RedisStore;
use crate::store::StoreError;

impl RedisStore {
    fn audit_checkpoint_key(&self, node: &str) -> String {
        format!("{}:audit_checkpoint:{node}", self.inner.prefix)
    }

    /// Replace the latest checkpoint of `node`.
    pub(in crate::store) async fn put_audit_checkpoint(
        &self,
        node: &str,
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        let key = self.audit_checkpoint_key(node);
        let value = checkpoint.to_owned();
        self.run(
            "put_audit_checkpoint",
            async |mut con: ConnectionManager| con.set::<_, _, ()>(&key, &value).await,
        )
        .await
    }

    /// The latest checkpoint of `node`, if any.
    pub(in crate::store) async fn audit_checkpoint(
        &self,
        node: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = self.audit_checkpoint_key(node);
        self.run("audit_checkpoint", async |mut con: ConnectionManager| {
            con.get::<_, Option<String>>(&key).await
        })
        .await
    }
}
