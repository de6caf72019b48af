//! Reads at a revision: ranges (etcd's `executeRange`), point lookups and
//! txn compares, over either the engine alone or an apply batch's pending
//! writes layered on the engine.

use std::cmp::Ordering;
use std::ops::Bound;

use skiff_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use skiff_proto::etcdserverpb::{Compare, RangeRequest, RangeResponse, ResponseHeader, compare};
use skiff_proto::mvccpb::KeyValue;

use super::KvError;
use super::keys::{
    Record, decode_user_key, kv_bounds, split_version_key, version_key, version_seek, versions_end,
};
use super::overlay::Overlay;
use crate::engine::{Cf, Engine, EngineIter, EngineResult};

/// Something to read stored MVCC data from.
pub(crate) trait Source {
    /// Ascending scan of `(start, end)`; one consistent view per call.
    fn scan<'s>(&'s self, cf: Cf, start: Bound<&[u8]>, end: Bound<&[u8]>) -> EngineIter<'s>;
    fn get(&self, cf: Cf, key: &[u8]) -> EngineResult<Option<Vec<u8>>>;
}

/// The engine alone (committed data).
pub(crate) struct EngineSource<'a>(pub(crate) &'a dyn Engine);

impl Source for EngineSource<'_> {
    fn scan<'s>(&'s self, cf: Cf, start: Bound<&[u8]>, end: Bound<&[u8]>) -> EngineIter<'s> {
        self.0.scan(cf, start, end, false)
    }

    fn get(&self, cf: Cf, key: &[u8]) -> EngineResult<Option<Vec<u8>>> {
        self.0.get(cf, key)
    }
}

/// The engine with a batch's pending writes applied.
pub(crate) struct BatchSource<'a> {
    pub(crate) engine: &'a dyn Engine,
    pub(crate) overlay: &'a Overlay,
}

impl Source for BatchSource<'_> {
    fn scan<'s>(&'s self, cf: Cf, start: Bound<&[u8]>, end: Bound<&[u8]>) -> EngineIter<'s> {
        self.overlay.scan(self.engine, cf, start, end)
    }

    fn get(&self, cf: Cf, key: &[u8]) -> EngineResult<Option<Vec<u8>>> {
        self.overlay.get(self.engine, cf, key)
    }
}

/// The live keys of a range at one revision.
#[derive(Debug, Default)]
pub(crate) struct RangeScan {
    /// Up to `limit` live pairs in key order.
    pub(crate) kvs: Vec<KeyValue>,
    /// Every live key in the range, regardless of the limit.
    pub(crate) count: i64,
}

/// The live pairs of the etcd range `[key, range_end)` at revision `rev`:
/// for each user key, the newest version `<= rev` unless it is a tombstone.
/// `limit` 0 is unlimited; `count_only` collects no pairs.
pub(crate) fn range_at(
    src: &dyn Source,
    key: &[u8],
    range_end: &[u8],
    rev: i64,
    limit: usize,
    count_only: bool,
) -> Result<RangeScan, KvError> {
    let mut out = RangeScan::default();
    let Some((lower, upper)) = kv_bounds(key, range_end) else {
        return Ok(out);
    };
    let mut current: Vec<u8> = Vec::new();
    let mut resolved = false;
    for item in src.scan(
        Cf::Kv,
        Bound::Included(&lower),
        upper.as_ref().map(Vec::as_slice),
    ) {
        let (raw_key, raw_value) = item?;
        let (prefix, mod_revision, _) = split_version_key(&raw_key)?;
        if prefix != current.as_slice() {
            current.clear();
            current.extend_from_slice(prefix);
            resolved = false;
        }
        if resolved || mod_revision > rev {
            continue;
        }
        resolved = true;
        if Record::is_tombstone(&raw_value)? {
            continue;
        }
        out.count += 1;
        if !count_only && (limit == 0 || out.kvs.len() < limit) {
            let user_key = decode_user_key(prefix)?;
            if let Some(kv) = Record::decode(&raw_value)?.into_key_value(user_key, mod_revision) {
                out.kvs.push(kv);
            }
        }
    }
    Ok(out)
}

/// The first version of `key` in `Cf::Kv` order from `start` on (tombstones
/// included), with its revision.
fn first_version(
    src: &dyn Source,
    key: &[u8],
    start: Bound<&[u8]>,
) -> Result<Option<(i64, Record)>, KvError> {
    let end = versions_end(key);
    match src.scan(Cf::Kv, start, Bound::Excluded(&end)).next() {
        None => Ok(None),
        Some(item) => {
            let (raw_key, raw_value) = item?;
            let (_, mod_revision, _) = split_version_key(&raw_key)?;
            Ok(Some((mod_revision, Record::decode(&raw_value)?)))
        }
    }
}

/// The live pair of `key` at `rev`, if any.
pub(crate) fn get_at(src: &dyn Source, key: &[u8], rev: i64) -> Result<Option<KeyValue>, KvError> {
    let seek = version_seek(key, rev);
    let newest = first_version(src, key, Bound::Included(&seek))?;
    Ok(newest.and_then(|(mod_rev, record)| record.into_key_value(key.to_vec(), mod_rev)))
}

/// The live pair of `key` just before its `sub`-th write of `rev` (the
/// previous version of that write), if any.
pub(crate) fn get_before(
    src: &dyn Source,
    key: &[u8],
    rev: i64,
    sub: u32,
) -> Result<Option<KeyValue>, KvError> {
    let after = version_key(key, rev, sub);
    let previous = first_version(src, key, Bound::Excluded(&after))?;
    Ok(previous.and_then(|(mod_rev, record)| record.into_key_value(key.to_vec(), mod_rev)))
}

/// The revisions a range runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadRevisions {
    /// What a request revision `<= 0` reads, and the response header's
    /// revision.
    pub(crate) current: i64,
    /// Request revisions above this fail with a future-revision error.
    pub(crate) max_allowed: i64,
    /// Request revisions below this fail with a compacted error.
    pub(crate) compacted: i64,
}

impl ReadRevisions {
    /// The revision a request reads at, or the error etcd gives for it.
    pub(crate) fn resolve(&self, requested: i64) -> Result<i64, KvError> {
        if requested > self.max_allowed {
            return Err(KvError::FutureRevision);
        }
        let rev = if requested <= 0 {
            self.current
        } else {
            requested
        };
        if rev < self.compacted {
            return Err(KvError::Compacted);
        }
        Ok(rev)
    }
}

/// etcd's `executeRange`: read, filter by min/max revisions, sort, apply the
/// limit. `count` is the number of keys in the range at the revision before
/// the min/max filters (as etcd); `more` is computed after them.
pub(crate) fn execute_range(
    src: &dyn Source,
    req: &RangeRequest,
    revs: ReadRevisions,
) -> Result<RangeResponse, KvError> {
    let rev = revs.resolve(req.revision)?;
    let sort_order = SortOrder::try_from(req.sort_order).map_err(|_| KvError::InvalidSortOption)?;
    let sort_target =
        SortTarget::try_from(req.sort_target).map_err(|_| KvError::InvalidSortOption)?;

    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let mut fetch_limit = req.limit.max(0);
    if sort_order != SortOrder::None || filtered {
        fetch_limit = 0;
    }
    if fetch_limit > 0 {
        // One extra to know whether there are more.
        fetch_limit += 1;
    }
    let fetch_limit = usize::try_from(fetch_limit).unwrap_or(usize::MAX);
    let scan = range_at(
        src,
        &req.key,
        &req.range_end,
        rev,
        fetch_limit,
        req.count_only,
    )?;
    let mut kvs = scan.kvs;

    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }

    let order = match (sort_target, sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    };
    if order != SortOrder::None {
        let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable: ties stay in ascending key order.
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| by(b, a));
        } else {
            kvs.sort_by(by);
        }
    }

    let mut more = false;
    if let Ok(limit) = usize::try_from(req.limit)
        && limit > 0
        && kvs.len() > limit
    {
        kvs.truncate(limit);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: revs.current,
            ..Default::default()
        }),
        kvs,
        more,
        count: scan.count,
    })
}

/// Whether one txn compare holds at `rev` (etcd's `applyCompare`): every key
/// of the range must satisfy it; a range without keys compares a zero pair,
/// except that a VALUE compare on missing keys is false.
pub(crate) fn compare_holds(src: &dyn Source, c: &Compare, rev: i64) -> Result<bool, KvError> {
    let scan = range_at(src, &c.key, &c.range_end, rev, 0, false)?;
    if scan.kvs.is_empty() {
        if c.target == compare::CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(scan.kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// etcd's `compareKV`: a target union of the wrong kind compares as 0 (or the
/// empty value); an unknown result holds.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let int_operand =
        |pick: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(pick).unwrap_or(0);
    let ordering = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let operand: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(operand)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&int_operand(|u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&int_operand(|u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Version) => kv.version.cmp(&int_operand(|u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&int_operand(|u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compare::{CompareResult, CompareTarget, TargetUnion};

    fn cmp(target: CompareTarget, result: CompareResult, union: Option<TargetUnion>) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: union,
        }
    }

    #[test]
    fn compare_kv_semantics() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            value: b"m".to_vec(),
            lease: 7,
        };
        assert!(compare_kv(
            &cmp(
                CompareTarget::Version,
                CompareResult::Equal,
                Some(TargetUnion::Version(3))
            ),
            &kv
        ));
        assert!(compare_kv(
            &cmp(
                CompareTarget::Create,
                CompareResult::Less,
                Some(TargetUnion::CreateRevision(3))
            ),
            &kv
        ));
        assert!(compare_kv(
            &cmp(
                CompareTarget::Mod,
                CompareResult::Greater,
                Some(TargetUnion::ModRevision(4))
            ),
            &kv
        ));
        assert!(compare_kv(
            &cmp(
                CompareTarget::Lease,
                CompareResult::NotEqual,
                Some(TargetUnion::Lease(8))
            ),
            &kv
        ));
        assert!(compare_kv(
            &cmp(
                CompareTarget::Value,
                CompareResult::Greater,
                Some(TargetUnion::Value(b"a".to_vec()))
            ),
            &kv
        ));
        assert!(!compare_kv(
            &cmp(
                CompareTarget::Value,
                CompareResult::Less,
                Some(TargetUnion::Value(b"a".to_vec()))
            ),
            &kv
        ));
        // A union of the wrong kind compares against 0.
        assert!(compare_kv(
            &cmp(
                CompareTarget::Version,
                CompareResult::Greater,
                Some(TargetUnion::Lease(100))
            ),
            &kv
        ));
        // Unknown result holds.
        let mut odd = cmp(CompareTarget::Version, CompareResult::Equal, None);
        odd.result = 42;
        assert!(compare_kv(&odd, &kv));
    }

    #[test]
    fn resolve_revisions() {
        let revs = ReadRevisions {
            current: 10,
            max_allowed: 10,
            compacted: 4,
        };
        assert_eq!(revs.resolve(0).unwrap(), 10);
        assert_eq!(revs.resolve(-3).unwrap(), 10);
        assert_eq!(revs.resolve(4).unwrap(), 4);
        assert!(matches!(revs.resolve(3), Err(KvError::Compacted)));
        assert!(matches!(revs.resolve(11), Err(KvError::FutureRevision)));
    }
}
