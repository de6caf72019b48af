//! An in-memory [`Engine`]: one `BTreeMap` per column family behind a lock.
//! For tests; nothing is durable.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Cf, Durability, Engine, EngineIter, EngineResult, KvPair, WriteBatch, WriteOp};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// An [`Engine`] kept in memory.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    cfs: RwLock<BTreeMap<Cf, Tree>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Cf, Tree>> {
        // Nothing under the lock can panic short of a bug or an allocation
        // failure, so a poisoned lock is used as is.
        self.cfs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, BTreeMap<Cf, Tree>> {
        self.cfs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether `BTreeMap::range` accepts these bounds (it panics on an inverted
/// range or an empty range with both ends excluded).
pub(super) fn non_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s <= e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s < e,
        _ => true,
    }
}

impl Engine for MemoryEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> EngineResult<Option<Vec<u8>>> {
        Ok(self.read().get(&cf).and_then(|tree| tree.get(key)).cloned())
    }

    fn scan<'a>(
        &'a self,
        cf: Cf,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
    ) -> EngineIter<'a> {
        // Copy the range out under the lock: a consistent view.
        let mut items: Vec<KvPair> = match self.read().get(&cf) {
            Some(tree) if non_empty(start, end) => tree
                .range::<[u8], _>((start, end))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => Vec::new(),
        };
        if reverse {
            items.reverse();
        }
        Box::new(items.into_iter().map(Ok))
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> EngineResult<()> {
        let mut cfs = self.write_lock();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put { cf, key, value } => {
                    cfs.entry(cf).or_default().insert(key, value);
                }
                WriteOp::Delete { cf, key } => {
                    if let Some(tree) = cfs.get_mut(&cf) {
                        tree.remove(&key);
                    }
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    if start >= end {
                        continue;
                    }
                    if let Some(tree) = cfs.get_mut(&cf) {
                        let doomed: Vec<Vec<u8>> = tree
                            .range::<[u8], _>((
                                Bound::Included(start.as_slice()),
                                Bound::Excluded(end.as_slice()),
                            ))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for key in doomed {
                            tree.remove(&key);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_wal(&self) -> EngineResult<()> {
        Ok(())
    }

    fn frozen(&self, _scratch_dir: &Path) -> EngineResult<Arc<dyn Engine>> {
        let copy = self.read().clone();
        Ok(Arc::new(MemoryEngine {
            cfs: RwLock::new(copy),
        }))
    }

    fn compact_all(&self) -> EngineResult<()> {
        // Nothing to reclaim: deleted entries are gone from the maps.
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.read()
            .values()
            .flat_map(|tree| tree.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}
