//! The production [`Engine`]: one RocksDB with a column family per [`Cf`],
//! lz4-compressed.
//!
//! - `write` with [`Durability::Sync`] fsyncs the WAL before returning.
//! - `scan` uses a raw iterator with iterate bounds; a RocksDB iterator reads
//!   an implicit snapshot taken when it is created, so each scan is a
//!   consistent view.
//! - `frozen` makes a checkpoint (hard-linked SST files plus the WAL) in a
//!   fresh subdirectory `checkpoint-*` of the scratch dir and opens it as a
//!   separate, writable engine. Nothing removes it: the caller deletes the
//!   subdirectory (or the whole scratch dir) once the copy is dropped.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRawIteratorWithThreadMode,
    Options, ReadOptions, WriteOptions,
};

use super::memory::non_empty;
use super::{
    Cf, Durability, Engine, EngineError, EngineIter, EngineResult, KvPair, WriteBatch, WriteOp,
};

/// RocksDB behind the [`Engine`] trait.
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn rocks(err: rocksdb::Error) -> EngineError {
    EngineError::Rocks(err.into_string())
}

/// Above this much WAL, RocksDB flushes the column families that keep the
/// oldest WAL file alive (a rarely written family would otherwise pin every
/// WAL file written since its last flush).
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;
/// RocksDB's own info logs (`LOG.old.*`) kept in the database directory.
const KEEP_INFO_LOG_FILES: usize = 10;

/// Options of one column family.
fn cf_options() -> Options {
    let mut opts = Options::default();
    // Without snappy compiled in RocksDB defaults to no compression.
    opts.set_compression_type(DBCompressionType::Lz4);
    opts
}

/// Distinguishes checkpoints made by one process in the same instant.
static CHECKPOINT_SEQ: AtomicU64 = AtomicU64::new(0);

impl RocksEngine {
    /// Opens (or creates) the database at `path` with every column family of
    /// [`Cf::ALL`].
    pub fn open(path: &Path) -> EngineResult<Self> {
        let mut opts = cf_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        opts.set_keep_log_file_num(KEEP_INFO_LOG_FILES);
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(rocks)?;
        Ok(RocksEngine {
            db,
            path: path.to_path_buf(),
        })
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a checkpoint of the whole database (hard-linked SST files and
    /// the WAL) into `dir`, which must not exist yet.
    pub fn checkpoint_to(&self, dir: &Path) -> EngineResult<()> {
        Checkpoint::new(&self.db)
            .map_err(rocks)?
            .create_checkpoint(dir)
            .map_err(rocks)
    }

    fn cf(&self, cf: Cf) -> EngineResult<&ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| EngineError::Rocks(format!("column family {} is not open", cf.name())))
    }

    fn wal_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|ext| ext == "log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

impl Engine for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> EngineResult<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf)?, key).map_err(rocks)
    }

    fn scan<'a>(
        &'a self,
        cf: Cf,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
    ) -> EngineIter<'a> {
        if !non_empty(start, end) {
            return Box::new(std::iter::empty());
        }
        let handle = match self.cf(cf) {
            Ok(handle) => handle,
            Err(err) => return Box::new(std::iter::once(Err(err))),
        };
        let mut opts = ReadOptions::default();
        match start {
            Bound::Included(s) => opts.set_iterate_lower_bound(s.to_vec()),
            Bound::Excluded(s) => opts.set_iterate_lower_bound(successor(s)),
            Bound::Unbounded => {}
        }
        match end {
            Bound::Included(e) => opts.set_iterate_upper_bound(successor(e)),
            Bound::Excluded(e) => opts.set_iterate_upper_bound(e.to_vec()),
            Bound::Unbounded => {}
        }
        // The iterator (and its snapshot) is created here, not lazily.
        let mut inner = self.db.raw_iterator_cf_opt(handle, opts);
        if reverse {
            inner.seek_to_last();
        } else {
            inner.seek_to_first();
        }
        Box::new(RocksIter {
            inner,
            reverse,
            done: false,
        })
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> EngineResult<()> {
        let mut rb = rocksdb::WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put { cf, key, value } => rb.put_cf(self.cf(cf)?, key, value),
                WriteOp::Delete { cf, key } => rb.delete_cf(self.cf(cf)?, key),
                WriteOp::DeleteRange { cf, start, end } => {
                    if start < end {
                        rb.delete_range_cf(self.cf(cf)?, start, end);
                    }
                }
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Sync);
        self.db.write_opt(rb, &opts).map_err(rocks)
    }

    fn sync_wal(&self) -> EngineResult<()> {
        self.db.flush_wal(true).map_err(rocks)
    }

    /// A checkpoint in a new directory `scratch_dir/checkpoint-<pid>-<n>-<ns>`
    /// opened as its own engine. The caller removes that directory after
    /// dropping the engine.
    fn frozen(&self, scratch_dir: &Path) -> EngineResult<Arc<dyn Engine>> {
        std::fs::create_dir_all(scratch_dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "checkpoint-{}-{}-{nanos}",
            std::process::id(),
            CHECKPOINT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = scratch_dir.join(name);
        self.checkpoint_to(&dir)?;
        Ok(Arc::new(RocksEngine::open(&dir)?))
    }

    fn compact_all(&self) -> EngineResult<()> {
        for cf in Cf::ALL {
            let handle = self.cf(cf)?;
            self.db
                .compact_range_cf(handle, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let sst: u64 = Cf::ALL
            .iter()
            .filter_map(|&cf| self.cf(cf).ok())
            .filter_map(|handle| {
                self.db
                    .property_int_value_cf(handle, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum();
        sst + self.wal_bytes()
    }
}

/// The smallest key greater than `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.extend_from_slice(key);
    out.push(0);
    out
}

struct RocksIter<'a> {
    inner: DBRawIteratorWithThreadMode<'a, DB>,
    reverse: bool,
    done: bool,
}

impl Iterator for RocksIter<'_> {
    type Item = EngineResult<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.inner.valid() {
            self.done = true;
            return self.inner.status().err().map(|err| Err(rocks(err)));
        }
        let item = match (self.inner.key(), self.inner.value()) {
            (Some(k), Some(v)) => (k.to_vec(), v.to_vec()),
            _ => {
                self.done = true;
                return None;
            }
        };
        if self.reverse {
            self.inner.prev();
        } else {
            self.inner.next();
        }
        Some(Ok(item))
    }
}
