//! Copy every live value from one backend to another (`swarmwall store migrate`), in either
//! direction. Values keep their deadlines, so a suspension copied to Redis ends when it would
//! have ended in the file. Existing values for the same subjects in the target are replaced;
//! other subjects in the target are left alone.

use super::{Namespace, Store, StoreError};

/// How many values were copied, per namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// `(namespace label, values copied)`, in [`Namespace::ALL`] order.
    pub copied: Vec<(&'static str, usize)>,
}

impl MigrationReport {
    /// Values copied in total.
    pub fn total(&self) -> usize {
        self.copied.iter().map(|(_, count)| count).sum()
    }
}

/// Copy every value live at `now_ms` from `from` to `to`.
pub async fn migrate(from: &Store, to: &Store, now_ms: u64) -> Result<MigrationReport, StoreError> {
    let mut report = MigrationReport::default();
    for namespace in Namespace::ALL {
        let values = from.dump(namespace, now_ms).await?;
        for (subject, value) in &values {
            to.restore(namespace, subject, value).await?;
        }
        report.copied.push((namespace.as_str(), values.len()));
    }
    Ok(report)
}
