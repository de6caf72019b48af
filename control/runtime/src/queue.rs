//! The work queue of a controller, after client-go's: keys of objects to
//! reconcile, each queued at most once, never handed to two workers at
//! once, with delayed adds and a per-key back-off for failures.
//!
//! - [`WorkQueue::add`] queues a key unless it is already queued. A key
//!   added while a worker holds it is queued again when the worker calls
//!   [`WorkQueue::done`], so a change seen during a reconcile is never lost
//!   and never reconciled concurrently.
//! - [`WorkQueue::add_after`] queues a key once its delay has passed; of two
//!   delayed adds of one key the earlier wins.
//! - [`WorkQueue::add_failed`] queues a key after its back-off (from
//!   [`Backoff::base`], doubling per failure up to [`Backoff::max`]);
//!   [`WorkQueue::forget`] resets it.
//!
//! The queue holds at most `limit` distinct keys; an add beyond that is
//! dropped with a warning (the periodic resync brings the key back).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Back-off of a key that failed: `base * 2^(failures - 1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after the `failures`-th failure in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }
}

#[derive(Debug)]
struct State<K> {
    ready: VecDeque<K>,
    /// Keys in `ready`.
    queued: HashSet<K>,
    /// Keys a worker holds.
    processing: HashSet<K>,
    /// Keys added while a worker held them.
    dirty: HashSet<K>,
    /// Delayed keys by due time (with a sequence number to keep equal
    /// times apart) and the due time of each.
    delayed: BTreeMap<(Instant, u64), K>,
    due: HashMap<K, (Instant, u64)>,
    seq: u64,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

/// A de-duplicating, delayed work queue of keys.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    limit: usize,
    backoff: Backoff,
}

impl<K: Clone + Eq + Hash + std::fmt::Debug> WorkQueue<K> {
    /// A queue of at most `limit` distinct keys.
    pub fn new(limit: usize, backoff: Backoff) -> Self {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                delayed: BTreeMap::new(),
                due: HashMap::new(),
                seq: 0,
                failures: HashMap::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
            limit,
            backoff,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` now.
    pub fn add(&self, key: K) {
        let mut st = self.lock();
        if self.add_locked(&mut st, key) {
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Whether a worker should be woken.
    fn add_locked(&self, st: &mut State<K>, key: K) -> bool {
        if st.shut_down || st.queued.contains(&key) {
            return false;
        }
        if st.processing.contains(&key) {
            st.dirty.insert(key);
            return false;
        }
        if st.queued.len() + st.due.len() >= self.limit {
            tracing::warn!(?key, limit = self.limit, "work queue full, key dropped");
            return false;
        }
        if let Some(at) = st.due.remove(&key) {
            st.delayed.remove(&at);
        }
        st.queued.insert(key.clone());
        st.ready.push_back(key);
        true
    }

    /// Queues `key` once `delay` has passed (now if it is zero).
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut st = self.lock();
        if st.shut_down || st.queued.contains(&key) {
            return;
        }
        if let Some(&(prev, _)) = st.due.get(&key) {
            if prev <= at {
                return;
            }
            let old = st.due.remove(&key).expect("just seen");
            st.delayed.remove(&old);
        } else if st.queued.len() + st.due.len() >= self.limit {
            tracing::warn!(
                ?key,
                limit = self.limit,
                "work queue full, delayed key dropped"
            );
            return;
        }
        st.seq += 1;
        let slot = (at, st.seq);
        st.delayed.insert(slot, key.clone());
        st.due.insert(key, slot);
        drop(st);
        // A waiting worker recomputes how long to sleep.
        self.notify.notify_one();
    }

    /// Queues `key` after its back-off, one failure more.
    pub fn add_failed(&self, key: K) -> Duration {
        let delay = {
            let mut st = self.lock();
            let n = st.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            self.backoff.delay(*n)
        };
        self.add_after(key, delay);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// How many failures in a row `key` has had.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to work on, held until [`WorkQueue::done`]; `None` once
    /// the queue is shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut st = self.lock();
                if st.shut_down {
                    return None;
                }
                let now = Instant::now();
                let mut woke = false;
                while let Some((&slot, _)) = st.delayed.first_key_value() {
                    if slot.0 > now {
                        break;
                    }
                    let key = st.delayed.remove(&slot).expect("first entry");
                    st.due.remove(&key);
                    woke |= self.add_locked(&mut st, key);
                }
                if let Some(key) = st.ready.pop_front() {
                    st.queued.remove(&key);
                    st.processing.insert(key.clone());
                    if woke && !st.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                st.delayed.first_key_value().map(|(slot, _)| slot.0)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Releases `key` after work on it; queues it again if it was added
    /// meanwhile.
    pub fn done(&self, key: &K) {
        let mut st = self.lock();
        st.processing.remove(key);
        if st.dirty.remove(key) && self.add_locked(&mut st, key.clone()) {
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Keys queued now or later (not those being worked on).
    pub fn len(&self) -> usize {
        let st = self.lock();
        st.queued.len() + st.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the queue: [`WorkQueue::get`] returns `None` from now on.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(100, Backoff::default())
    }

    async fn next(q: &WorkQueue<&'static str>) -> &'static str {
        tokio::time::timeout(Duration::from_secs(3600), q.get())
            .await
            .expect("a key in time")
            .expect("queue running")
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_queued_once_in_order() {
        let q = queue();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(next(&q).await, "a");
        assert_eq!(next(&q).await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_held_comes_back_after_done() {
        let q = queue();
        q.add("a");
        let k = next(&q).await;
        q.add("a");
        assert!(q.is_empty(), "not handed out twice while held");
        let second = tokio::time::timeout(Duration::from_millis(10), q.get()).await;
        assert!(second.is_err(), "no key while `a` is held");
        q.done(&k);
        assert_eq!(next(&q).await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_wait_and_the_earlier_delay_wins() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(5));
        q.add_after("a", Duration::from_secs(20));
        assert_eq!(q.len(), 1);
        assert_eq!(next(&q).await, "a");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_add_now_overrides_a_delay() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(10));
        q.add("a");
        assert_eq!(next(&q).await, "a");
        assert_eq!(start.elapsed(), Duration::ZERO);
        q.done(&"a");
        assert!(q.is_empty(), "the delayed add was consumed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_a_new_key() {
        let q = Arc::new(queue());
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.add_after("late", Duration::from_secs(30));
        q.add("now");
        assert_eq!(worker.await.unwrap(), Some("now"));
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(1000), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_until_forgotten() {
        let q = queue();
        assert_eq!(q.add_failed("a"), Duration::from_millis(100));
        assert_eq!(next(&q).await, "a");
        q.done(&"a");
        assert_eq!(q.add_failed("a"), Duration::from_millis(200));
        assert_eq!(q.failures(&"a"), 2);
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_drops_new_keys() {
        let q: WorkQueue<u32> = WorkQueue::new(2, Backoff::default());
        q.add(1);
        q.add_after(2, Duration::from_secs(1));
        q.add(3);
        assert_eq!(q.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_ends_waiting_workers() {
        let q = Arc::new(queue());
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), None);
        q.add("a");
        assert!(q.is_empty());
    }
}
