//! Graduated response: each blocked BitTorrent attempt is a strike against the account (or
//! the client address when unauthenticated); blocked flows close together in time form one
//! incident; thresholds within sliding windows lead to warn, then suspensions.
//!
//! STUB: the API is fixed; the enforcement/store work fills it in over [`crate::store::Store`].

use swarmwall_core::classify::BtForm;

use crate::store::{Store, StoreError};

/// Who a strike is against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StrikeSubject {
    /// An authenticated account.
    Account(String),
    /// An unauthenticated client, by keyed hash of its address (never the raw address).
    Client(String),
}

/// What a recorded block led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrikeOutcome {
    /// Part of an incident already counted (burst).
    SameIncident,
    /// A new incident below every threshold.
    Counted {
        /// Incidents in the shortest window.
        incidents: u32,
    },
    /// A new incident reaching the warning threshold.
    Warned,
    /// A new incident that started a suspension until this Unix-ms deadline.
    Suspended {
        /// Deadline (Unix ms).
        until_ms: u64,
    },
}

/// Graduated-response engine.
#[derive(Debug, Clone)]
pub struct Strikes {
    store: Store,
}

impl Strikes {
    /// Engine over `store` with default thresholds.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Record one blocked flow of `form` for `subject` at `now_ms`.
    pub async fn record_block(
        &self,
        subject: &StrikeSubject,
        form: BtForm,
        now_ms: u64,
    ) -> Result<StrikeOutcome, StoreError> {
        let _ = (subject, form, now_ms, &self.store);
        Ok(StrikeOutcome::Counted { incidents: 0 })
    }

    /// The suspension deadline (Unix ms) if `subject` is suspended now.
    pub async fn suspended_until(
        &self,
        subject: &StrikeSubject,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let _ = (subject, now_ms);
        Ok(None)
    }
}
