//! A counter sharded per thread, for counters bumped on the per-packet path.
//!
//! A plain Prometheus counter is one atomic shared by every core: with sessions on every core
//! (`server.runtime = "per_core"`), each relayed chunk would bounce its cache line between
//! cores. [`ShardedCounter`] gives each thread its own cache-padded slot (threads take slots in
//! turn; more threads than [`SHARDS`] share slots, still correct) and sums the slots only when
//! `/metrics` is scraped. It encodes exactly like `prometheus_client`'s `Counter`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Slots per counter: one per session thread up to this many (a 32-core node runs 32 per-core
/// runtimes plus the main runtime's workers).
pub const SHARDS: usize = 64;

/// Next slot handed to a thread that bumps a sharded counter for the first time.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot in every [`ShardedCounter`].
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// A monotonic counter with one cache line per thread; clones share the slots.
#[derive(Clone)]
pub struct ShardedCounter {
    shards: Arc<[CachePadded<AtomicU64>]>,
}

impl Default for ShardedCounter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedCounter")
            .field("value", &self.get())
            .finish()
    }
}

impl ShardedCounter {
    /// Add `value` on this thread's slot (no cross-core traffic unless slots are shared).
    pub fn inc_by(&self, value: u64) {
        let shard = SHARD.with(|shard| *shard);
        if let Some(slot) = self.shards.get(shard) {
            slot.fetch_add(value, Ordering::Relaxed);
        }
    }

    /// Add one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// The total over every slot (read at scrape time).
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    #[test]
    fn threads_add_up_exactly() {
        let counter = ShardedCounter::default();
        let threads: Vec<_> = (0..(SHARDS + 8))
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        counter.inc_by(3);
                    }
                    counter.inc();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.get(), (SHARDS as u64 + 8) * 3_001);
    }

    #[test]
    fn encodes_like_a_counter() {
        let (sharded, plain) = (ShardedCounter::default(), Counter::<u64>::default());
        sharded.inc_by(42);
        plain.inc_by(42);
        let text = |register: &dyn Fn(&mut Registry)| {
            let mut registry = Registry::default();
            register(&mut registry);
            let mut out = String::new();
            encode(&mut out, &registry).unwrap();
            out
        };
        assert_eq!(
            text(&|registry| registry.register("relay", "bytes", sharded.clone())),
            text(&|registry| registry.register("relay", "bytes", plain.clone())),
        );
    }
}
