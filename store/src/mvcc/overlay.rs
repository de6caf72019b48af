//! The pending writes of an [`ApplyBatch`](super::ApplyBatch): an ordered
//! map of puts and deletes layered over the engine, with an undo journal so
//! that a failed request can be rolled back to a savepoint.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;

use crate::engine::{Cf, Engine, EngineIter, EngineResult, KvPair, WriteBatch};

/// `Some(value)`: put; `None`: delete.
type Pending = Option<Vec<u8>>;

/// Pending writes over an engine.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    writes: BTreeMap<Cf, BTreeMap<Vec<u8>, Pending>>,
    /// For each write, what the overlay held for that key before it
    /// (`None`: nothing), newest last.
    journal: Vec<(Cf, Vec<u8>, Option<Pending>)>,
}

/// A point the overlay can be rolled back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Savepoint(usize);

impl Overlay {
    pub(crate) fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.set(cf, key, Some(value));
    }

    pub(crate) fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.set(cf, key, None);
    }

    fn set(&mut self, cf: Cf, key: Vec<u8>, pending: Pending) {
        let previous = self
            .writes
            .entry(cf)
            .or_default()
            .insert(key.clone(), pending);
        self.journal.push((cf, key, previous));
    }

    pub(crate) fn savepoint(&self) -> Savepoint {
        Savepoint(self.journal.len())
    }

    /// Undoes every write made after `savepoint`.
    pub(crate) fn rollback(&mut self, savepoint: Savepoint) {
        while self.journal.len() > savepoint.0 {
            let Some((cf, key, previous)) = self.journal.pop() else {
                break;
            };
            let map = self.writes.entry(cf).or_default();
            match previous {
                Some(pending) => {
                    map.insert(key, pending);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
    }

    /// Reads one key: the overlay first, then the engine.
    pub(crate) fn get(
        &self,
        engine: &dyn Engine,
        cf: Cf,
        key: &[u8],
    ) -> EngineResult<Option<Vec<u8>>> {
        match self.writes.get(&cf).and_then(|m| m.get(key)) {
            Some(pending) => Ok(pending.clone()),
            None => engine.get(cf, key),
        }
    }

    /// Scans `(start, end)` ascending over the engine with the pending
    /// writes applied.
    pub(crate) fn scan<'a>(
        &'a self,
        engine: &'a dyn Engine,
        cf: Cf,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> EngineIter<'a> {
        let base = engine.scan(cf, start, end, false);
        let pending: Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Pending)> + 'a> =
            match self.writes.get(&cf) {
                Some(map) if bounds_non_empty(start, end) => {
                    Box::new(map.range::<[u8], _>((start, end)))
                }
                _ => Box::new(std::iter::empty()),
            };
        Box::new(Merge {
            base: base.peekable(),
            pending: pending.peekable(),
        })
    }

    /// Every pending write as an engine batch.
    pub(crate) fn into_write_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for (cf, map) in self.writes {
            for (key, pending) in map {
                match pending {
                    Some(value) => batch.put(cf, key, value),
                    None => batch.delete(cf, key),
                }
            }
        }
        batch
    }
}

/// Whether `BTreeMap::range` accepts these bounds (it panics on an inverted
/// or empty-exclusive range).
pub(crate) fn bounds_non_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s <= e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s < e,
        _ => true,
    }
}

/// Merges an engine scan with the overlay's pending writes (the overlay wins
/// on equal keys; pending deletes hide engine entries).
struct Merge<'a, P: Iterator<Item = (&'a Vec<u8>, &'a Pending)>> {
    base: Peekable<EngineIter<'a>>,
    pending: Peekable<P>,
}

impl<'a, P: Iterator<Item = (&'a Vec<u8>, &'a Pending)>> Iterator for Merge<'a, P> {
    type Item = EngineResult<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_pending = match (self.base.peek(), self.pending.peek()) {
                (_, None) => return self.base.next(),
                (Some(Err(_)), _) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(Ok((base_key, _))), Some((pending_key, _))) => {
                    match pending_key.as_slice().cmp(base_key.as_slice()) {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Equal => {
                            self.base.next();
                            true
                        }
                        std::cmp::Ordering::Greater => false,
                    }
                }
            };
            if !take_pending {
                return self.base.next();
            }
            let (key, pending) = self.pending.next()?;
            if let Some(value) = pending {
                return Some(Ok((key.clone(), value.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Durability, MemoryEngine};

    fn collect(it: EngineIter<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        it.map(|r| r.unwrap()).collect()
    }

    #[test]
    fn merge_and_rollback() {
        let engine = MemoryEngine::new();
        let mut wb = WriteBatch::new();
        for k in [b"a", b"c", b"e"] {
            wb.put(Cf::Kv, k.to_vec(), b"base".to_vec());
        }
        engine.write(wb, Durability::Buffered).unwrap();

        let mut ov = Overlay::default();
        ov.put(Cf::Kv, b"b".to_vec(), b"new".to_vec());
        let sp = ov.savepoint();
        ov.delete(Cf::Kv, b"c".to_vec());
        ov.put(Cf::Kv, b"e".to_vec(), b"new".to_vec());
        ov.put(Cf::Kv, b"f".to_vec(), b"new".to_vec());
        ov.put(Cf::Rev, b"a".to_vec(), b"other cf".to_vec());
        let all = collect(ov.scan(&engine, Cf::Kv, Bound::Unbounded, Bound::Unbounded));
        let keys: Vec<_> = all
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (&b"a"[..], &b"base"[..]),
                (b"b", b"new"),
                (b"e", b"new"),
                (b"f", b"new")
            ]
        );
        let part = collect(ov.scan(
            &engine,
            Cf::Kv,
            Bound::Excluded(b"a"),
            Bound::Excluded(b"f"),
        ));
        assert_eq!(part.len(), 2);
        assert_eq!(ov.get(&engine, Cf::Kv, b"c").unwrap(), None);

        ov.rollback(sp);
        let all = collect(ov.scan(&engine, Cf::Kv, Bound::Unbounded, Bound::Unbounded));
        assert_eq!(all.len(), 4);
        assert_eq!(
            ov.get(&engine, Cf::Kv, b"e").unwrap(),
            Some(b"base".to_vec())
        );
        assert_eq!(ov.get(&engine, Cf::Rev, b"a").unwrap(), None);
        let wb = ov.into_write_batch();
        assert_eq!(wb.len(), 1);
    }
}
