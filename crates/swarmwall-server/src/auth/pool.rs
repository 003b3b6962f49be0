//! Bounded password hashing: at most `workers` argon2id verifications run at once (each holds
//! its argon2 memory, 19 MiB at the default cost), at most `queue` more wait for a worker, and
//! none waits longer than `queue_timeout`. A verification that cannot get a worker in time is
//! refused ([`Overloaded`]) instead of queueing without limit, so a flood of logins costs
//! bounded memory and CPU and the answer comes quickly.
//!
//! The workers are the runtime's blocking threads gated by a semaphore: a job holds its
//! permit until the verification ends, even when the login that asked for it was abandoned
//! (handshake timeout, client gone), so the bound holds for work actually running.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

/// No worker became free in time, or the wait queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is overloaded")]
pub(crate) struct Overloaded;

/// A fixed set of hashing workers with a bounded wait queue.
#[derive(Debug)]
pub(crate) struct HashPool {
    workers: Arc<Semaphore>,
    queue_limit: usize,
    waiting: AtomicUsize,
}

/// Decrements the wait count when a waiter leaves (got a worker, timed out or was dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    /// `workers` concurrent verifications (0: the number of cores), `queue` waiters at most.
    pub(crate) fn new(workers: usize, queue: usize) -> Self {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        limit_retained_heap();
        Self {
            workers: Arc::new(Semaphore::new(workers)),
            queue_limit: queue,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Run `job` on a worker, waiting at most `queue_timeout` for one.
    pub(crate) async fn run<T, F>(&self, queue_timeout: Duration, job: F) -> Result<T, Overloaded>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match Arc::clone(&self.workers).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Overloaded);
                }
                let _waiting = Waiting(&self.waiting);
                let acquire = Arc::clone(&self.workers).acquire_owned();
                match tokio::time::timeout(queue_timeout, acquire).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(Overloaded),
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            let result = job();
            drop(permit);
            result
        })
        .await
        .map_err(|_| Overloaded)
    }
}

/// Large allocations (argon2's memory) are returned to the system when freed instead of being
/// kept in the allocator's heaps, so memory falls back after a burst of verifications.
/// glibc otherwise raises its mmap threshold to the size of the first freed block (19 MiB
/// at the default cost) and keeps such blocks in per-thread arenas.
fn limit_retained_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator tuning; 1 MiB is a valid threshold.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_and_queue_are_bounded() {
        let pool = Arc::new(HashPool::new(2, 3));
        let running = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let pool = Arc::clone(&pool);
            let running = Arc::clone(&running);
            let peak = Arc::clone(&peak);
            tasks.push(tokio::spawn(async move {
                pool.run(Duration::from_secs(5), move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let mut done = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => done += 1,
                Err(Overloaded) => refused += 1,
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than 2 workers");
        // 2 running + 3 queued get through; the other 15 are refused at once.
        assert_eq!(done, 5, "refused {refused}");
        assert_eq!(refused, 15);
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_gives_up_after_the_queue_timeout() {
        let pool = Arc::new(HashPool::new(1, 10));
        let busy = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.run(Duration::from_secs(5), || {
                    std::thread::sleep(Duration::from_millis(500));
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let refused = pool.run(Duration::from_millis(50), || ()).await;
        assert_eq!(refused, Err(Overloaded));
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(pool.run(Duration::from_millis(50), || 7).await, Ok(7));
    }
}
