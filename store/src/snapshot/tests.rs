//! Tests of the etcd schema: export from an MVCC store, read back, restore
//! into a RocksDB data dir and compare with the source at every revision.

use std::io::Write as _;
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};
use skiff_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    request_op::Request,
};
use skiff_proto::mvccpb::KeyValue;

use super::bbolt::{BoltError, Reader};
use super::export::export_in_passes;
use super::*;
use crate::engine::{Cf, Durability, Engine, MemoryEngine, RocksEngine, WriteBatch};
use crate::mvcc::{ApplyBatch, Mvcc, NO_COMPACTION};
use crate::server::DB_DIR;

const LEASE: i64 = 0x7e57;
const LEASE_TTL_S: i64 = 600;

fn put(key: &str, value: &[u8], lease: i64) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
}

fn apply(m: &Mvcc, op: impl FnOnce(&mut ApplyBatch<'_>)) -> i64 {
    let mut batch = m.begin();
    op(&mut batch);
    m.commit(batch, WriteBatch::new(), Durability::Buffered)
        .unwrap()
        .revision
}

fn must_put(m: &Mvcc, key: &str, value: &[u8], lease: i64) -> i64 {
    apply(m, |b| {
        b.put(&put(key, value, lease)).unwrap();
    })
}

fn must_delete(m: &Mvcc, key: &str) -> i64 {
    apply(m, |b| {
        let req = DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        assert_eq!(b.delete_range(&req).unwrap().deleted, 1);
    })
}

fn must_compact(m: &Mvcc, revision: i64) {
    apply(m, |b| {
        b.compact(&CompactionRequest {
            revision,
            physical: false,
        })
        .unwrap();
    });
}

fn big_value() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 251) as u8).collect()
}

/// A store with overwrites, a two-key txn, deletes, a compaction, a lease
/// with keys and a value larger than a page:
///
/// 2 a=1, 3 b=1, 4 a=2, 5 c (lease), 6 txn d e, 7 del b, 8 a=3,
/// compact 7, 9 f (lease), 10 del d, 11 g (100 kB), 12 h=1, 13 del h.
fn history() -> Mvcc {
    let m = Mvcc::open(Arc::new(MemoryEngine::new())).unwrap();
    assert_eq!(must_put(&m, "a", b"1", 0), 2);
    must_put(&m, "b", b"1", 0);
    must_put(&m, "a", b"2", 0);
    apply(&m, |b| b.lease_grant(LEASE, LEASE_TTL_S).unwrap());
    must_put(&m, "c", b"leased", LEASE);
    apply(&m, |b| {
        let op = |key: &str| RequestOp {
            request: Some(Request::RequestPut(put(key, b"txn", 0))),
        };
        let txn = TxnRequest {
            success: vec![op("d"), op("e")],
            ..Default::default()
        };
        assert!(b.txn(&txn).unwrap().succeeded);
    });
    must_delete(&m, "b");
    must_put(&m, "a", b"3", 0);
    must_compact(&m, 7);
    must_put(&m, "f", b"leased too", LEASE);
    must_delete(&m, "d");
    must_put(&m, "g", &big_value(), 0);
    must_put(&m, "h", b"1", 0);
    assert_eq!(must_delete(&m, "h"), 13);
    m
}

/// Exports `m` to a file with the SHA-256 trailer, as Maintenance.Snapshot
/// sends it.
fn snapshot_file(m: &Mvcc) -> (tempfile::NamedTempFile, Exported) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let exported = export(m.engine().as_ref(), file.reopen().unwrap()).unwrap();
    let bytes = std::fs::read(file.path()).unwrap();
    assert_eq!(bytes.len() as u64, exported.size_bytes);
    let digest = Sha256::digest(&bytes);
    let mut append = std::fs::OpenOptions::new()
        .append(true)
        .open(file.path())
        .unwrap();
    append.write_all(&digest).unwrap();
    (file, exported)
}

fn bucket(reader: &Reader, name: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let found = reader
        .for_each(name, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok::<_, BoltError>(())
        })
        .unwrap();
    assert!(found, "bucket {:?}", String::from_utf8_lossy(name));
    out
}

#[test]
fn export_writes_etcds_schema() {
    let m = history();
    let (file, exported) = snapshot_file(&m);
    assert_eq!(exported.revision, 13);
    assert_eq!(exported.compact_revision, 7);
    assert_eq!(exported.leases, 1);
    let reader = Reader::open(file.path()).unwrap();
    assert_eq!(reader.buckets().unwrap(), [&b"key"[..], b"lease", b"meta"]);

    let keys = bucket(&reader, b"key");
    let revisions: Vec<(i64, i64, bool)> = keys
        .iter()
        .map(|(k, _)| parse_revision_key(k).unwrap())
        .collect();
    // Below the compaction only the newest version of each live key is
    // left (a@4, c, d, e); b's tombstone at 7 went with the compaction.
    assert_eq!(
        revisions,
        [
            (4, 0, false),
            (5, 0, false),
            (6, 0, false),
            (6, 1, false),
            (8, 0, false),
            (9, 0, false),
            (10, 0, true),
            (11, 0, false),
            (12, 0, false),
            (13, 0, true),
        ]
    );
    assert_eq!(exported.versions, 10);
    let kv = |i: usize| KeyValue::decode(keys[i].1.as_slice()).unwrap();
    assert_eq!(
        kv(1),
        KeyValue {
            key: b"c".to_vec(),
            create_revision: 5,
            mod_revision: 5,
            version: 1,
            value: b"leased".to_vec(),
            lease: LEASE,
        }
    );
    assert_eq!(kv(4).version, 3, "a's third put");
    assert_eq!(kv(4).create_revision, 2);
    assert_eq!((kv(2).key, kv(3).key), (b"d".to_vec(), b"e".to_vec()));
    // A tombstone holds the key alone, as etcd writes it.
    assert_eq!(
        keys[6].1,
        KeyValue {
            key: b"d".to_vec(),
            ..Default::default()
        }
        .encode_to_vec()
    );
    assert_eq!(kv(7).value, big_value());

    let leases = bucket(&reader, b"lease");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].0, LEASE.to_be_bytes());
    let lease = LeasePb::decode(leases[0].1.as_slice()).unwrap();
    assert_eq!(
        (lease.id, lease.ttl, lease.remaining_ttl),
        (LEASE, LEASE_TTL_S, 0)
    );

    let meta = bucket(&reader, b"meta");
    let compacted = revision_key(7, 0, false);
    assert_eq!(
        meta,
        [
            (b"consistent_index".to_vec(), 0u64.to_be_bytes().to_vec()),
            (b"finishedCompactRev".to_vec(), compacted.clone()),
            (b"scheduledCompactRev".to_vec(), compacted),
            (
                b"skiff_current_revision".to_vec(),
                13i64.to_be_bytes().to_vec()
            ),
        ]
    );

    let st = status(file.path()).unwrap();
    assert_eq!(st.revision, 13);
    assert_eq!(st.total_keys, 10 + 1 + 4);
    assert_eq!(st.total_size, exported.size_bytes);
}

#[test]
fn export_of_an_empty_store() {
    let m = Mvcc::open(Arc::new(MemoryEngine::new())).unwrap();
    let (file, exported) = snapshot_file(&m);
    assert_eq!((exported.revision, exported.versions), (1, 0));
    let st = status(file.path()).unwrap();
    assert_eq!((st.revision, st.total_keys), (0, 2));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = restore(file.path(), &data, RestoreOptions::default()).unwrap();
    assert_eq!(summary.revision, 1);
    assert_eq!(summary.compact_revision, NO_COMPACTION);
}

#[test]
fn compacted_versions_are_gathered_in_bounded_passes() {
    // Keys written in descending key order: revision order is the reverse
    // of the order of `Kv`.
    let m = Mvcc::open(Arc::new(MemoryEngine::new())).unwrap();
    for i in (0..200).rev() {
        must_put(&m, &format!("k{i:03}"), b"v", 0);
    }
    must_put(&m, "k000", b"again", 0);
    must_compact(&m, m.current_revision());
    must_put(&m, "k100", b"after", 0);
    let export_with = |per_pass: usize| {
        let file = tempfile::NamedTempFile::new().unwrap();
        let exported =
            export_in_passes(m.engine().as_ref(), file.reopen().unwrap(), per_pass).unwrap();
        (std::fs::read(file.path()).unwrap(), exported)
    };
    let (one_pass, exported) = export_with(1 << 20);
    assert_eq!(exported.versions, 200 + 1);
    for per_pass in [1, 7, 199, 200] {
        let (bytes, _) = export_with(per_pass);
        assert!(bytes == one_pass, "{per_pass} per pass");
    }
}

/// Every range at every readable revision, the leases and their keys, and
/// the history from above the compaction, on both stores.
fn assert_same_store(source: &Mvcc, restored: &Mvcc) {
    assert_eq!(restored.current_revision(), source.current_revision());
    assert_eq!(restored.compact_revision(), source.compact_revision());
    for revision in source.compact_revision()..=source.current_revision() {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        };
        assert_eq!(
            restored.range(&req).unwrap().kvs,
            source.range(&req).unwrap().kvs,
            "at revision {revision}"
        );
    }
    assert_eq!(restored.leases().unwrap(), source.leases().unwrap());
    for lease in source.leases().unwrap() {
        assert_eq!(
            restored.lease_keys(lease.id).unwrap(),
            source.lease_keys(lease.id).unwrap()
        );
    }
    let from = source.compact_revision() + 1;
    assert_eq!(
        restored.events(from, 1000).unwrap(),
        source.events(from, 1000).unwrap()
    );
}

fn open_restored(data: &Path) -> Mvcc {
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(&data.join(DB_DIR)).unwrap());
    Mvcc::open(engine).unwrap()
}

#[test]
fn restore_round_trips_every_revision_and_lease() {
    let source = history();
    assert_eq!(
        source.lease_keys(LEASE).unwrap(),
        [b"c".to_vec(), b"f".to_vec()]
    );
    let (file, _) = snapshot_file(&source);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("member");
    let before_ms = super::restore::now_ms();
    let summary = restore(file.path(), &data, RestoreOptions::default()).unwrap();
    assert_eq!(
        summary,
        RestoreSummary {
            revision: 13,
            compact_revision: 7,
            versions: 10,
            live_keys: 5,
            leases: 1,
            hash_checked: true,
        }
    );
    let restored = open_restored(&data);
    assert_same_store(&source, &restored);

    // The lease runs its whole TTL again from the restore.
    let (key, _) = crate::raft::state_machine::lease_deadline_entry(LEASE, 0).unwrap();
    let raw = restored.engine().get(Cf::SmMeta, &key).unwrap().unwrap();
    let deadline: i64 = crate::raft::codec::decode(&raw).unwrap();
    let after_ms = super::restore::now_ms();
    assert!(
        (before_ms + LEASE_TTL_S * 1000..=after_ms + LEASE_TTL_S * 1000).contains(&deadline),
        "{deadline}"
    );

    // Exporting the restored store makes the same content.
    drop(restored);
    let again = open_restored(&data);
    let (second, _) = snapshot_file(&again);
    assert_eq!(
        status(second.path()).unwrap().hash,
        status(file.path()).unwrap().hash
    );
}

#[test]
fn restore_without_compaction_and_without_the_skiff_revision() {
    let m = Mvcc::open(Arc::new(MemoryEngine::new())).unwrap();
    must_put(&m, "x", b"1", 0);
    must_put(&m, "y", b"1", 0);
    must_delete(&m, "x");
    let (file, _) = snapshot_file(&m);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    restore(file.path(), &data, RestoreOptions::default()).unwrap();
    assert_same_store(&m, &open_restored(&data));

    // A file made by etcd has no skiff_current_revision: the highest stored
    // revision is the current one.
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut writer = bbolt::Writer::new(file.reopen().unwrap()).unwrap();
    writer.begin_bucket(b"key").unwrap();
    let kv = KeyValue {
        key: b"k".to_vec(),
        create_revision: 2,
        mod_revision: 5,
        version: 2,
        value: b"v".to_vec(),
        lease: 0,
    };
    writer
        .put(&revision_key(5, 0, false), &kv.encode_to_vec())
        .unwrap();
    writer.begin_bucket(b"meta").unwrap();
    writer
        .put(b"consistent_index", &9u64.to_be_bytes())
        .unwrap();
    writer.finish().unwrap();
    let data = dir.path().join("from-etcd");
    let options = RestoreOptions {
        skip_hash_check: true,
    };
    let summary = restore(file.path(), &data, options).unwrap();
    assert_eq!((summary.revision, summary.hash_checked), (5, false));
    let restored = open_restored(&data);
    assert_eq!(restored.current_revision(), 5);
    let req = RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    };
    assert_eq!(restored.range(&req).unwrap().kvs, [kv]);
}

#[test]
fn restore_checks_the_trailer_and_the_data_dir() {
    let m = history();
    let (file, exported) = snapshot_file(&m);
    let dir = tempfile::tempdir().unwrap();

    // A data dir with anything in it is refused.
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(busy.join("x")).unwrap();
    let err = restore(file.path(), &busy, RestoreOptions::default()).unwrap_err();
    assert!(matches!(err, SnapshotError::DataDirNotEmpty(_)), "{err}");

    // One flipped byte: the hash no longer matches, nothing is written.
    let mut bytes = std::fs::read(file.path()).unwrap();
    bytes[5 * bbolt::PAGE_SIZE + 40] ^= 0x40;
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    let data = dir.path().join("data");
    let err = restore(&bad, &data, RestoreOptions::default()).unwrap_err();
    assert!(matches!(err, SnapshotError::HashMismatch { .. }), "{err}");
    assert!(!data.exists());

    // Without a trailer: refused unless the hash check is skipped.
    let bare = dir.path().join("bare.db");
    let good = std::fs::read(file.path()).unwrap();
    std::fs::write(&bare, &good[..exported.size_bytes as usize]).unwrap();
    let err = restore(&bare, &data, RestoreOptions::default()).unwrap_err();
    assert!(matches!(err, SnapshotError::MissingHash), "{err}");
    let options = RestoreOptions {
        skip_hash_check: true,
    };
    let summary = restore(&bare, &data, options).unwrap();
    assert!(!summary.hash_checked);
    assert_same_store(&m, &open_restored(&data));
}
