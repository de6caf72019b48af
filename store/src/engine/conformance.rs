//! One conformance suite for every [`Engine`]: each check is a function of
//! `&dyn Engine`, run against [`MemoryEngine`] and [`RocksEngine`] (on a
//! temporary directory), plus a random-operations model test against a
//! `BTreeMap` and RocksDB-only checks (reopen, checkpoints).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use proptest::prelude::*;

use super::{Cf, Durability, Engine, MemoryEngine, RocksEngine, WriteBatch};

type Model = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;
/// A scan's bounds and the keys it must return.
type ScanCase<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>, Vec<Vec<u8>>);
/// A generated scan: column family, bounds, direction.
type ScanSpec = (Cf, Bound<Vec<u8>>, Bound<Vec<u8>>, bool);

fn put(engine: &dyn Engine, cf: Cf, key: &[u8], value: &[u8]) {
    let mut wb = WriteBatch::new();
    wb.put(cf, key, value);
    engine.write(wb, Durability::Buffered).unwrap();
}

fn scan(
    engine: &dyn Engine,
    cf: Cf,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    reverse: bool,
) -> Vec<Vec<u8>> {
    engine
        .scan(cf, start, end, reverse)
        .map(|r| r.unwrap().0)
        .collect()
}

fn keys(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.to_vec()).collect()
}

fn check_put_get_delete(engine: &dyn Engine) {
    assert_eq!(engine.get(Cf::Kv, b"a").unwrap(), None);
    put(engine, Cf::Kv, b"a", b"1");
    put(engine, Cf::Lease, b"a", b"other cf");
    assert_eq!(engine.get(Cf::Kv, b"a").unwrap(), Some(b"1".to_vec()));
    put(engine, Cf::Kv, b"a", b"2");
    assert_eq!(engine.get(Cf::Kv, b"a").unwrap(), Some(b"2".to_vec()));
    put(engine, Cf::Kv, b"", b"empty key");
    assert_eq!(
        engine.get(Cf::Kv, b"").unwrap(),
        Some(b"empty key".to_vec())
    );
    let mut wb = WriteBatch::new();
    wb.delete(Cf::Kv, b"a".to_vec());
    wb.delete(Cf::Kv, b"never".to_vec());
    engine.write(wb, Durability::Sync).unwrap();
    assert_eq!(engine.get(Cf::Kv, b"a").unwrap(), None);
    assert_eq!(
        engine.get(Cf::Lease, b"a").unwrap(),
        Some(b"other cf".to_vec())
    );
    engine.sync_wal().unwrap();
}

fn check_delete_range(engine: &dyn Engine) {
    for k in [&b"a"[..], b"b", b"b\0", b"c", b"d"] {
        put(engine, Cf::Rev, k, b"v");
    }
    put(engine, Cf::Kv, b"b", b"other cf");
    let mut wb = WriteBatch::new();
    wb.delete_range(Cf::Rev, b"b".to_vec(), b"d".to_vec());
    // Empty and inverted ranges are no-ops.
    wb.delete_range(Cf::Rev, b"a".to_vec(), b"a".to_vec());
    wb.delete_range(Cf::Rev, b"d".to_vec(), b"a".to_vec());
    engine.write(wb, Durability::Buffered).unwrap();
    assert_eq!(
        scan(engine, Cf::Rev, Bound::Unbounded, Bound::Unbounded, false),
        keys(&[b"a", b"d"])
    );
    assert_eq!(
        engine.get(Cf::Kv, b"b").unwrap(),
        Some(b"other cf".to_vec())
    );
}

fn check_scan_bounds(engine: &dyn Engine) {
    for k in [&b"a"[..], b"b", b"c", b"d", b"e"] {
        put(engine, Cf::RaftLog, k, k);
    }
    use Bound::{Excluded as Ex, Included as In, Unbounded as Un};
    let cases: Vec<ScanCase<'_>> = vec![
        (Un, Un, keys(&[b"a", b"b", b"c", b"d", b"e"])),
        (In(b"b"), Un, keys(&[b"b", b"c", b"d", b"e"])),
        (Ex(b"b"), Un, keys(&[b"c", b"d", b"e"])),
        (Un, In(b"d"), keys(&[b"a", b"b", b"c", b"d"])),
        (Un, Ex(b"d"), keys(&[b"a", b"b", b"c"])),
        (In(b"b"), In(b"d"), keys(&[b"b", b"c", b"d"])),
        (In(b"b"), Ex(b"d"), keys(&[b"b", b"c"])),
        (Ex(b"b"), In(b"d"), keys(&[b"c", b"d"])),
        (Ex(b"b"), Ex(b"d"), keys(&[b"c"])),
        (In(b"bb"), Ex(b"cc"), keys(&[b"c"])),
        (In(b"c"), In(b"c"), keys(&[b"c"])),
        (In(b"c"), Ex(b"c"), vec![]),
        (Ex(b"c"), Ex(b"c"), vec![]),
        (In(b"d"), In(b"b"), vec![]),
        (In(b"f"), Un, vec![]),
    ];
    for (start, end, expected) in cases {
        assert_eq!(
            scan(engine, Cf::RaftLog, start, end, false),
            expected,
            "{start:?}..{end:?}"
        );
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(
            scan(engine, Cf::RaftLog, start, end, true),
            reversed,
            "rev {start:?}..{end:?}"
        );
    }
    assert!(
        scan(
            engine,
            Cf::SmMeta,
            Bound::Unbounded,
            Bound::Unbounded,
            false
        )
        .is_empty()
    );
}

fn check_batch_atomic_and_ordered(engine: &dyn Engine) {
    let mut wb = WriteBatch::new();
    wb.put(Cf::SmMeta, b"x".to_vec(), b"1".to_vec());
    wb.put(Cf::RaftMeta, b"y".to_vec(), b"1".to_vec());
    wb.delete(Cf::SmMeta, b"x".to_vec());
    wb.put(Cf::SmMeta, b"z".to_vec(), b"1".to_vec());
    wb.delete_range(Cf::SmMeta, b"z".to_vec(), b"zz".to_vec());
    wb.put(Cf::SmMeta, b"z".to_vec(), b"2".to_vec());
    assert_eq!(wb.len(), 6);
    engine.write(wb, Durability::Sync).unwrap();
    // Later ops of a batch win over earlier ones.
    assert_eq!(engine.get(Cf::SmMeta, b"x").unwrap(), None);
    assert_eq!(engine.get(Cf::RaftMeta, b"y").unwrap(), Some(b"1".to_vec()));
    assert_eq!(engine.get(Cf::SmMeta, b"z").unwrap(), Some(b"2".to_vec()));
}

fn check_scan_is_a_snapshot(engine: &dyn Engine) {
    for k in [&b"s1"[..], b"s2", b"s3"] {
        put(engine, Cf::Lease, k, b"old");
    }
    let mut iter = engine.scan(
        Cf::Lease,
        Bound::Included(b"s"),
        Bound::Excluded(b"t"),
        false,
    );
    let first = iter.next().unwrap().unwrap();
    let mut wb = WriteBatch::new();
    wb.put(Cf::Lease, b"s2".to_vec(), b"new".to_vec());
    wb.delete(Cf::Lease, b"s3".to_vec());
    wb.put(Cf::Lease, b"s4".to_vec(), b"new".to_vec());
    engine.write(wb, Durability::Buffered).unwrap();
    let rest: Vec<_> = iter.map(|r| r.unwrap()).collect();
    assert_eq!(first, (b"s1".to_vec(), b"old".to_vec()));
    assert_eq!(
        rest,
        vec![
            (b"s2".to_vec(), b"old".to_vec()),
            (b"s3".to_vec(), b"old".to_vec())
        ]
    );
}

fn check_frozen(engine: &dyn Engine, scratch: &Path) {
    put(engine, Cf::Kv, b"f1", b"before");
    let frozen = engine.frozen(scratch).unwrap();
    put(engine, Cf::Kv, b"f1", b"after");
    put(engine, Cf::Kv, b"f2", b"after");
    assert_eq!(frozen.get(Cf::Kv, b"f1").unwrap(), Some(b"before".to_vec()));
    assert_eq!(frozen.get(Cf::Kv, b"f2").unwrap(), None);
    assert_eq!(engine.get(Cf::Kv, b"f1").unwrap(), Some(b"after".to_vec()));
    assert_eq!(
        scan(
            frozen.as_ref(),
            Cf::Kv,
            Bound::Included(b"f"),
            Bound::Excluded(b"g"),
            false
        ),
        keys(&[b"f1"])
    );
}

fn check_size(engine: &dyn Engine) {
    put(engine, Cf::Kv, b"size", &[7u8; 4096]);
    engine.sync_wal().unwrap();
    assert!(engine.size_bytes() > 0);
}

/// Every check, each on a fresh engine from `make`.
fn run_suite(make: &mut dyn FnMut() -> Box<dyn Engine>, scratch: &Path) {
    check_put_get_delete(make().as_ref());
    check_delete_range(make().as_ref());
    check_scan_bounds(make().as_ref());
    check_batch_atomic_and_ordered(make().as_ref());
    check_scan_is_a_snapshot(make().as_ref());
    check_frozen(make().as_ref(), scratch);
    check_size(make().as_ref());
}

#[test]
fn memory_engine_conformance() {
    let scratch = tempfile::tempdir().unwrap();
    run_suite(&mut || Box::new(MemoryEngine::new()), scratch.path());
}

#[test]
fn rocks_engine_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    let scratch = dir.path().join("scratch");
    let base = dir.path().to_path_buf();
    run_suite(
        &mut || {
            n += 1;
            Box::new(RocksEngine::open(&base.join(format!("db{n}"))).unwrap())
        },
        &scratch,
    );
}

#[test]
fn rocks_reopen_keeps_synced_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = RocksEngine::open(dir.path()).unwrap();
        let mut wb = WriteBatch::new();
        for cf in Cf::ALL {
            wb.put(cf, b"k".to_vec(), cf.name().as_bytes().to_vec());
        }
        engine.write(wb, Durability::Sync).unwrap();
        put(&engine, Cf::Kv, b"buffered", b"then synced");
        engine.sync_wal().unwrap();
    }
    let engine = RocksEngine::open(dir.path()).unwrap();
    for cf in Cf::ALL {
        assert_eq!(
            engine.get(cf, b"k").unwrap(),
            Some(cf.name().as_bytes().to_vec())
        );
    }
    assert_eq!(
        engine.get(Cf::Kv, b"buffered").unwrap(),
        Some(b"then synced".to_vec())
    );
}

#[test]
fn rocks_frozen_is_a_separate_directory() {
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(&dir.path().join("db")).unwrap();
    put(&engine, Cf::Kv, b"k", b"v");
    let scratch = dir.path().join("scratch");
    let a = engine.frozen(&scratch).unwrap();
    let b = engine.frozen(&scratch).unwrap();
    assert_eq!(a.get(Cf::Kv, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(b.get(Cf::Kv, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xFF)],
        0..3,
    )
}

fn cf_strategy() -> impl Strategy<Value = Cf> {
    prop_oneof![Just(Cf::Kv), Just(Cf::Rev)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (cf_strategy(), small_key(), small_key()).prop_map(|(cf, k, v)| Op::Put(cf, k, v)),
        2 => (cf_strategy(), small_key()).prop_map(|(cf, k)| Op::Delete(cf, k)),
        1 => (cf_strategy(), small_key(), small_key()).prop_map(|(cf, s, e)| Op::DeleteRange(cf, s, e)),
    ]
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        small_key().prop_map(Bound::Included),
        small_key().prop_map(Bound::Excluded),
    ]
}

fn apply_model(model: &mut Model, op: &Op) {
    match op {
        Op::Put(cf, k, v) => {
            model.insert((*cf, k.clone()), v.clone());
        }
        Op::Delete(cf, k) => {
            model.remove(&(*cf, k.clone()));
        }
        Op::DeleteRange(cf, s, e) => model.retain(|(c, k), _| !(c == cf && s <= k && k < e)),
    }
}

fn model_scan(
    model: &Model,
    cf: Cf,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = model
        .iter()
        .filter(|((c, k), _)| {
            *c == cf
                && match start {
                    Bound::Included(s) => k >= s,
                    Bound::Excluded(s) => k > s,
                    Bound::Unbounded => true,
                }
                && match end {
                    Bound::Included(e) => k <= e,
                    Bound::Excluded(e) => k < e,
                    Bound::Unbounded => true,
                }
        })
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        out.reverse();
    }
    out
}

/// Applies `batches` to `engine` and to a model, then compares scans.
fn check_against_model(
    engine: &dyn Engine,
    batches: &[Vec<Op>],
    scans: &[ScanSpec],
) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    for batch in batches {
        let mut wb = WriteBatch::new();
        for op in batch {
            match op.clone() {
                Op::Put(cf, k, v) => wb.put(cf, k, v),
                Op::Delete(cf, k) => wb.delete(cf, k),
                Op::DeleteRange(cf, s, e) => wb.delete_range(cf, s, e),
            }
            apply_model(&mut model, op);
        }
        engine.write(wb, Durability::Buffered).unwrap();
    }
    for (cf, start, end, reverse) in scans {
        let got: Vec<_> = engine
            .scan(
                *cf,
                start.as_ref().map(Vec::as_slice),
                end.as_ref().map(Vec::as_slice),
                *reverse,
            )
            .map(|r| r.unwrap())
            .collect();
        prop_assert_eq!(got, model_scan(&model, *cf, start, end, *reverse));
    }
    for ((cf, k), v) in &model {
        prop_assert_eq!(engine.get(*cf, k).unwrap(), Some(v.clone()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn engines_match_a_btreemap(
        batches in proptest::collection::vec(proptest::collection::vec(op_strategy(), 1..6), 1..12),
        scans in proptest::collection::vec((cf_strategy(), bound_strategy(), bound_strategy(), any::<bool>()), 1..8),
    ) {
        check_against_model(&MemoryEngine::new(), &batches, &scans)?;
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksEngine::open(dir.path()).unwrap();
        check_against_model(&rocks, &batches, &scans)?;
    }
}
