//! The raft log and vote on the storage engine, with group commit.
//!
//! Every write (append, vote, truncate, purge) goes to the engine at once,
//! buffered, so that it is readable when the call returns. Durability comes
//! from one dedicated thread that syncs the write-ahead log: it takes every
//! flush request queued since its last sync, fsyncs once, and then reports
//! all of them done. Writes reach the WAL in call order, so one sync covers
//! every earlier write: a vote is never reordered behind a log write.
//!
//! A vote is durable before `save_vote` returns; appended entries are
//! reported flushed (`IOFlushed`) only after the fsync that covers them.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode, encode};
use super::types::TypeConfig;
use crate::engine::{Cf, Durability, Engine, WriteBatch};

/// Flush requests waiting for the sync thread.
const FLUSH_QUEUE_LIMIT: usize = 4096;
/// At most this many flush requests are completed by one fsync.
const FLUSH_BATCH_LIMIT: usize = 1024;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Who waits for a sync.
enum Waiter {
    Raft(IOFlushed<TypeConfig>),
    Task(oneshot::Sender<io::Result<()>>),
}

/// The raft log store. Cheap to clone: clones share the engine and the sync
/// thread, and serve as log readers.
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn Engine>,
    sync: Arc<SyncThread>,
}

/// The sync thread and the queue to it. Dropped with the last clone of the
/// store: the queue closes, and the drop waits for the thread to finish, so
/// the engine is never used after its owner is gone.
struct SyncThread {
    flush_tx: Option<mpsc::Sender<Waiter>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.flush_tx.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn to_io(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl LogStore {
    /// Opens the log store on `engine` and starts its sync thread. The thread
    /// ends when the last clone of the store is dropped.
    pub fn new(engine: Arc<dyn Engine>) -> io::Result<Self> {
        let (flush_tx, mut flush_rx) = mpsc::channel::<Waiter>(FLUSH_QUEUE_LIMIT);
        let sync_engine = engine.clone();
        let handle = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                let mut waiters = Vec::with_capacity(FLUSH_BATCH_LIMIT);
                while let Some(first) = flush_rx.blocking_recv() {
                    waiters.push(first);
                    while waiters.len() < FLUSH_BATCH_LIMIT {
                        match flush_rx.try_recv() {
                            Ok(w) => waiters.push(w),
                            Err(_) => break,
                        }
                    }
                    let result = sync_engine.sync_wal();
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "raft log fsync failed");
                    }
                    for waiter in waiters.drain(..) {
                        let r = result.as_ref().map(|_| ()).map_err(to_io);
                        match waiter {
                            Waiter::Raft(cb) => cb.io_completed(r),
                            Waiter::Task(tx) => {
                                let _ = tx.send(r);
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            engine,
            sync: Arc::new(SyncThread {
                flush_tx: Some(flush_tx),
                handle: Some(handle),
            }),
        })
    }

    fn write(&self, batch: WriteBatch) -> io::Result<()> {
        self.engine
            .write(batch, Durability::Buffered)
            .map_err(to_io)
    }

    /// Waits until every write made so far is on stable storage.
    async fn sync(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue_flush(Waiter::Task(tx)).await?;
        rx.await.map_err(|_| to_io("log sync thread stopped"))?
    }

    /// Queues a wait for the next sync of the write-ahead log.
    async fn queue_flush(&self, waiter: Waiter) -> io::Result<()> {
        let stopped = || to_io("log sync thread stopped");
        let tx = self.sync.flush_tx.as_ref().ok_or_else(stopped)?;
        tx.send(waiter).await.map_err(|_| stopped())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.engine.get(Cf::RaftMeta, key).map_err(to_io)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogIdOf<TypeConfig>>> {
        let mut iter = self
            .engine
            .scan(Cf::RaftLog, Bound::Unbounded, Bound::Unbounded, true);
        match iter.next() {
            Some(item) => {
                let (_, value) = item.map_err(to_io)?;
                let entry: EntryOf<TypeConfig> = decode(&value)?;
                Ok(Some(entry.log_id()))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let start_ref = start.as_ref().map(|k| k.as_slice());
        let end_ref = end.as_ref().map(|k| k.as_slice());
        let mut entries = Vec::new();
        for item in self.engine.scan(Cf::RaftLog, start_ref, end_ref, false) {
            let (_, value) = item.map_err(to_io)?;
            entries.push(decode(&value)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> io::Result<Option<VoteOf<TypeConfig>>> {
        self.read_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogIdOf<TypeConfig>> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> io::Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(Cf::RaftMeta, KEY_VOTE, encode(vote)?);
        self.write(batch)?;
        self.sync().await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        let mut batch = WriteBatch::new();
        match committed {
            Some(id) => batch.put(Cf::RaftMeta, KEY_COMMITTED, encode(&id)?),
            None => batch.delete(Cf::RaftMeta, KEY_COMMITTED),
        }
        self.write(batch)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogIdOf<TypeConfig>>> {
        self.read_meta(KEY_COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::new();
        for entry in entries {
            batch.put(Cf::RaftLog, index_key(entry.index()), encode(&entry)?);
        }
        self.write(batch)?;
        self.queue_flush(Waiter::Raft(callback)).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        let mut batch = WriteBatch::new();
        batch.delete_range(Cf::RaftLog, index_key(from), index_key(u64::MAX));
        batch.delete(Cf::RaftLog, index_key(u64::MAX));
        self.write(batch)?;
        self.sync().await
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> io::Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(Cf::RaftMeta, KEY_LAST_PURGED, encode(&log_id)?);
        batch.delete_range(Cf::RaftLog, index_key(0), index_key(log_id.index() + 1));
        self.write(batch)?;
        tracing::info!(upto = log_id.index(), "purged raft log");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MemoryEngine, RocksEngine};
    use crate::raft::state_machine::StateMachine;
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    struct RocksBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let engine: Arc<dyn Engine> =
                Arc::new(RocksEngine::open(&dir.path().join("db")).expect("open rocksdb"));
            let log = LogStore::new(engine.clone()).expect("log store");
            let sm =
                StateMachine::open(engine, dir.path().join("snapshots")).expect("state machine");
            Ok((dir, log, sm))
        }
    }

    struct MemoryBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for MemoryBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
            let log = LogStore::new(engine.clone()).expect("log store");
            let sm =
                StateMachine::open(engine, dir.path().join("snapshots")).expect("state machine");
            Ok((dir, log, sm))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite_on_rocksdb() {
        Suite::test_all(RocksBuilder)
            .await
            .expect("openraft storage suite");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite_on_memory() {
        Suite::test_all(MemoryBuilder)
            .await
            .expect("openraft storage suite");
    }
}
