//! The reconcile loop every controller and the scheduler run: workers take
//! keys from a [`WorkQueue`] and reconcile them, at most `workers` at once
//! and never two of one key at once (the queue holds a key until its
//! reconcile is done).
//!
//! A reconcile returns [`Action::Done`], or [`Action::RequeueAfter`] to be
//! looked at again later; an error is logged and the key comes back after
//! its back-off.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::queue::WorkQueue;

/// What to do with a key after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Done,
    RequeueAfter(Duration),
}

/// A controller's reconcile of one key.
pub trait Reconcile: Send + Sync + 'static {
    /// The controller's name, for logs.
    fn name(&self) -> &str;

    /// Makes the world match the desired state of `key` (a store key).
    fn reconcile(&self, key: &str) -> impl Future<Output = anyhow::Result<Action>> + Send;
}

/// Runs `workers` workers on `queue` until `cancel`; then shuts the queue
/// down and waits for reconciles in flight to finish.
pub async fn run_workers<R: Reconcile>(
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<String>>,
    workers: usize,
    cancel: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers.max(1) {
        let (reconciler, queue) = (reconciler.clone(), queue.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.get().await {
                let started = tokio::time::Instant::now();
                let result = reconciler.reconcile(&key).await;
                let elapsed_ms = started.elapsed().as_millis() as u64;
                queue.done(&key);
                match result {
                    Ok(Action::Done) => queue.forget(&key),
                    Ok(Action::RequeueAfter(delay)) => {
                        queue.forget(&key);
                        queue.add_after(key, delay);
                    }
                    Err(e) => {
                        let delay = queue.add_failed(key.clone());
                        tracing::warn!(
                            controller = reconciler.name(),
                            worker,
                            %key,
                            elapsed_ms,
                            retry_in_ms = delay.as_millis() as u64,
                            error = format!("{e:#}"),
                            "reconcile failed"
                        );
                    }
                }
            }
        });
    }
    cancel.cancelled().await;
    queue.shut_down();
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Backoff;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Probe {
        running: AtomicUsize,
        max_running: AtomicUsize,
        calls: Mutex<HashMap<String, u32>>,
        concurrent_same_key: AtomicUsize,
        holding: Mutex<std::collections::HashSet<String>>,
    }

    impl Reconcile for Probe {
        fn name(&self) -> &str {
            "probe"
        }

        async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
            if !self.holding.lock().unwrap().insert(key.to_string()) {
                self.concurrent_same_key.fetch_add(1, Ordering::SeqCst);
            }
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.holding.lock().unwrap().remove(key);
            let n = {
                let mut calls = self.calls.lock().unwrap();
                let n = calls.entry(key.to_string()).or_insert(0);
                *n += 1;
                *n
            };
            match key {
                "fails-twice" if n <= 2 => anyhow::bail!("not yet"),
                "requeue-once" if n == 1 => Ok(Action::RequeueAfter(Duration::from_secs(1))),
                _ => Ok(Action::Done),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn workers_are_bounded_and_keys_exclusive() {
        let probe = Arc::new(Probe::default());
        let queue = Arc::new(WorkQueue::new(1000, Backoff::default()));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(run_workers(probe.clone(), queue.clone(), 3, cancel.clone()));
        for i in 0..20 {
            queue.add(format!("k{i}"));
            queue.add("hot".to_string());
        }
        queue.add("fails-twice".to_string());
        queue.add("requeue-once".to_string());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let calls = probe.calls.lock().unwrap().clone();
            if calls.get("fails-twice") == Some(&3) && calls.get("requeue-once") == Some(&2) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{calls:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
        run.await.unwrap();
        assert_eq!(probe.max_running.load(Ordering::SeqCst), 3);
        assert_eq!(probe.concurrent_same_key.load(Ordering::SeqCst), 0);
        let calls = probe.calls.lock().unwrap();
        assert!(
            (1..=20).contains(&calls["hot"]),
            "hot was deduplicated: {}",
            calls["hot"]
        );
        assert_eq!(calls["k7"], 1);
        assert_eq!(
            queue.failures(&"fails-twice".to_string()),
            0,
            "forgotten after success"
        );
    }
}
