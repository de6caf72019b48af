//! The storage engine: an ordered key-value store with column families,
//! atomic write batches and an explicit durability choice per write.
//!
//! Everything the store keeps (raft log, vote, MVCC data, leases, metadata)
//! goes through this trait. There are two implementations: [`RocksEngine`]
//! (production) and [`MemoryEngine`] (tests). One conformance suite runs
//! against both.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

mod memory;
mod rocks;

pub use memory::MemoryEngine;
pub use rocks::RocksEngine;

/// The column families of the store. Each is an independent ordered keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Raft's own metadata: vote, committed log id, last purged log id.
    RaftMeta,
    /// The raft log: big-endian u64 index to encoded entry.
    RaftLog,
    /// State machine metadata: applied log id, membership, revisions, members.
    SmMeta,
    /// MVCC versions: encoded user key followed by the revision.
    Kv,
    /// Revision index: revision (and sub-revision) to the user key written.
    Rev,
    /// Leases: lease id to lease record.
    Lease,
}

impl Cf {
    /// Every column family, in a fixed order.
    pub const ALL: [Cf; 6] = [
        Cf::RaftMeta,
        Cf::RaftLog,
        Cf::SmMeta,
        Cf::Kv,
        Cf::Rev,
        Cf::Lease,
    ];

    /// The column families that make up the state machine (what a raft
    /// snapshot carries).
    pub const STATE_MACHINE: [Cf; 4] = [Cf::SmMeta, Cf::Kv, Cf::Rev, Cf::Lease];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::RaftMeta => "raft_meta",
            Cf::RaftLog => "raft_log",
            Cf::SmMeta => "sm_meta",
            Cf::Kv => "kv",
            Cf::Rev => "rev",
            Cf::Lease => "lease",
        }
    }
}

/// Whether a write must be on stable storage before [`Engine::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the write-ahead log before returning.
    Sync,
    /// Return once the write is visible to readers; a crash may lose it
    /// unless a later `Sync` write or [`Engine::sync_wal`] covers it.
    Buffered,
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        cf: Cf,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Writes that become visible together, atomically, or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put {
            cf,
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete {
            cf,
            key: key.into(),
        });
    }

    pub fn delete_range(&mut self, cf: Cf, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::DeleteRange {
            cf,
            start: start.into(),
            end: end.into(),
        });
    }

    /// Appends every operation of `other`, after those already here.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }
}

/// Errors of the storage engine. They are not expected in normal operation:
/// an engine error on the write path stops the member.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("rocksdb: {0}")]
    Rocks(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt data in column family {cf}: {detail}")]
    Corrupt { cf: &'static str, detail: String },
}

pub type EngineResult<T> = Result<T, EngineError>;

/// A key-value pair read from the engine.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An iterator over key-value pairs in key order (or reverse key order).
pub type EngineIter<'a> = Box<dyn Iterator<Item = EngineResult<KvPair>> + 'a>;

/// An ordered key-value store with column families.
pub trait Engine: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, cf: Cf, key: &[u8]) -> EngineResult<Option<Vec<u8>>>;

    /// Iterates the keys in `(start, end)` in ascending order, or descending
    /// when `reverse` is set. The iterator sees a consistent view of the
    /// column family as of its creation.
    fn scan<'a>(
        &'a self,
        cf: Cf,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
    ) -> EngineIter<'a>;

    /// Applies every operation of `batch` atomically.
    fn write(&self, batch: WriteBatch, durability: Durability) -> EngineResult<()>;

    /// Makes every write returned so far durable (one fsync covers them all).
    fn sync_wal(&self) -> EngineResult<()>;

    /// A point-in-time, read-only copy of the whole engine, independent of
    /// later writes (RocksDB: a checkpoint under `scratch_dir`; memory: a
    /// clone).
    fn frozen(&self, scratch_dir: &Path) -> EngineResult<Arc<dyn Engine>>;

    /// Approximate bytes used on disk (or in memory).
    fn size_bytes(&self) -> u64;

    /// Reclaims the space of deleted and overwritten data (RocksDB: a full
    /// compaction of every column family). Reads and writes go on meanwhile.
    fn compact_all(&self) -> EngineResult<()>;
}

#[cfg(test)]
mod conformance;
