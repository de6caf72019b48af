//! Tests of [`Mvcc`]: focused tests of etcd's semantics and a model-based
//! test (random operation sequences against the real store and a naive
//! model, with reboots) on both engines.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use skiff_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse, request_op::Request,
    response_op::Response,
};
use skiff_proto::mvccpb::{Event, KeyValue, event::EventType};

use super::*;
use crate::engine::{Durability, Engine, MemoryEngine, RocksEngine, WriteBatch};

// ---------------------------------------------------------------------------
// Helpers

fn mem() -> Mvcc {
    Mvcc::open(Arc::new(MemoryEngine::new())).unwrap()
}

fn put_req(key: &[u8], value: &[u8]) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

fn del_req(key: &[u8], range_end: &[u8]) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        ..Default::default()
    }
}

fn range_req(key: &[u8], range_end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        ..Default::default()
    }
}

fn commit(m: &Mvcc, batch: ApplyBatch<'_>) -> Committed {
    m.commit(batch, WriteBatch::new(), Durability::Buffered)
        .unwrap()
}

fn must_put(m: &Mvcc, key: &[u8], value: &[u8]) -> i64 {
    let mut b = m.begin();
    b.put(&put_req(key, value)).unwrap();
    commit(m, b).revision
}

fn must_delete(m: &Mvcc, key: &[u8], range_end: &[u8]) -> Committed {
    let mut b = m.begin();
    b.delete_range(&del_req(key, range_end)).unwrap();
    commit(m, b)
}

fn must_compact(m: &Mvcc, revision: i64) {
    let mut b = m.begin();
    b.compact(&CompactionRequest {
        revision,
        physical: false,
    })
    .unwrap();
    commit(m, b);
}

fn get(m: &Mvcc, key: &[u8]) -> Option<KeyValue> {
    m.range(&range_req(key, b""))
        .unwrap()
        .kvs
        .into_iter()
        .next()
}

fn keys_of(resp: &RangeResponse) -> Vec<Vec<u8>> {
    resp.kvs.iter().map(|kv| kv.key.clone()).collect()
}

fn ks(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.to_vec()).collect()
}

fn op_put(key: &[u8], value: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put_req(key, value))),
    }
}

fn op_del(key: &[u8], range_end: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del_req(key, range_end))),
    }
}

fn op_get(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(range_req(key, b""))),
    }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(t)),
    }
}

fn cmp(key: &[u8], target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.to_vec(),
        range_end: vec![],
        target_union: Some(union),
    }
}

fn range_resp(op: &ResponseOp) -> &RangeResponse {
    match &op.response {
        Some(Response::ResponseRange(r)) => r,
        other => panic!("not a range response: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Revisions, put, delete

#[test]
fn empty_store() {
    let m = mem();
    assert_eq!(m.current_revision(), 1);
    assert_eq!(m.compact_revision(), -1);
    let resp = m.range(&range_req(b"a", b"\0")).unwrap();
    assert_eq!(resp.count, 0);
    assert_eq!(resp.header.unwrap().revision, 1);
}

#[test]
fn put_tracks_versions_and_revisions() {
    let m = mem();
    assert_eq!(must_put(&m, b"a", b"1"), 2);
    assert_eq!(must_put(&m, b"b", b"1"), 3);
    assert_eq!(must_put(&m, b"a", b"2"), 4);
    let a = get(&m, b"a").unwrap();
    assert_eq!(
        (
            a.create_revision,
            a.mod_revision,
            a.version,
            a.value.as_slice()
        ),
        (2, 4, 2, &b"2"[..])
    );
    must_delete(&m, b"a", b"");
    assert_eq!(get(&m, b"a"), None);
    assert_eq!(must_put(&m, b"a", b"3"), 6);
    let a = get(&m, b"a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (6, 6, 1));

    let mut b = m.begin();
    let resp = b
        .put(&PutRequest {
            prev_kv: true,
            ..put_req(b"a", b"4")
        })
        .unwrap();
    assert_eq!(resp.header.unwrap().revision, 7);
    assert_eq!(resp.prev_kv.unwrap().value, b"3");
    let resp = b.put(&put_req(b"a", b"5")).unwrap();
    assert_eq!(resp.prev_kv, None);
    assert_eq!(b.revision(), 8);
    // Not visible before commit.
    assert_eq!(m.current_revision(), 6);
    assert_eq!(get(&m, b"a").unwrap().value, b"3");
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 8);
    assert_eq!(committed.events.len(), 2);
    assert_eq!(committed.events[1].kv.as_ref().unwrap().version, 3);
    assert_eq!(committed.events[1].prev_kv.as_ref().unwrap().value, b"4");
}

#[test]
fn put_ignore_value_and_lease() {
    let m = mem();
    let mut b = m.begin();
    b.lease_grant(7, 60).unwrap();
    let missing = PutRequest {
        ignore_value: true,
        ..put_req(b"k", b"")
    };
    assert!(matches!(b.put(&missing), Err(KvError::KeyNotFound)));
    let missing = PutRequest {
        ignore_lease: true,
        ..put_req(b"k", b"v")
    };
    assert!(matches!(b.put(&missing), Err(KvError::KeyNotFound)));
    assert!(matches!(
        b.put(&PutRequest {
            lease: 8,
            ..put_req(b"k", b"v")
        }),
        Err(KvError::LeaseNotFound)
    ));
    assert_eq!(b.revision(), 1, "failed puts do not bump the revision");
    b.put(&PutRequest {
        lease: 7,
        ..put_req(b"k", b"v1")
    })
    .unwrap();
    // ignore_value keeps the value; the lease comes from the request.
    b.put(&PutRequest {
        ignore_value: true,
        lease: 7,
        ..put_req(b"k", b"")
    })
    .unwrap();
    b.put(&PutRequest {
        ignore_lease: true,
        ..put_req(b"k", b"v2")
    })
    .unwrap();
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 4);
    assert_eq!(committed.events.len(), 3);
    let kv = get(&m, b"k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v2"[..], 7, 3)
    );
    let ev = committed.events[1].kv.as_ref().unwrap();
    assert_eq!((ev.value.as_slice(), ev.lease), (&b"v1"[..], 7));
    assert_eq!(m.lease_keys(7).unwrap(), ks(&[b"k"]));
}

#[test]
fn delete_range_semantics() {
    let m = mem();
    for k in [&b"a"[..], b"b", b"c"] {
        must_put(&m, k, b"v");
    }
    // Nothing deleted: no new revision, header at the current one.
    let mut b = m.begin();
    let resp = b.delete_range(&del_req(b"x", b"")).unwrap();
    assert_eq!((resp.deleted, resp.header.unwrap().revision), (0, 4));
    let committed = commit(&m, b);
    assert_eq!((committed.revision, committed.events.len()), (4, 0));

    let mut b = m.begin();
    let resp = b
        .delete_range(&DeleteRangeRequest {
            prev_kv: true,
            ..del_req(b"a", b"c")
        })
        .unwrap();
    assert_eq!(resp.deleted, 2);
    assert_eq!(resp.header.unwrap().revision, 5);
    assert_eq!(
        resp.prev_kvs
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>(),
        ks(&[b"a", b"b"])
    );
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 5);
    for ev in &committed.events {
        assert_eq!(ev.r#type, EventType::Delete as i32);
        let kv = ev.kv.as_ref().unwrap();
        assert_eq!((kv.mod_revision, kv.version, kv.create_revision), (5, 0, 0));
        assert_eq!(ev.prev_kv.as_ref().unwrap().key, kv.key);
    }
    assert_eq!(
        keys_of(&m.range(&range_req(b"a", b"\0")).unwrap()),
        ks(&[b"c"])
    );
    // Deleting again deletes nothing.
    assert_eq!(must_delete(&m, b"a", b"c").revision, 5);
}

// ---------------------------------------------------------------------------
// Range

fn abc_store() -> Mvcc {
    let m = mem();
    // rev 2..=7
    must_put(&m, b"a", b"3");
    must_put(&m, b"ab", b"1");
    must_put(&m, b"b", b"2");
    must_put(&m, b"b\0", b"0");
    must_put(&m, b"a", b"4");
    must_put(&m, b"c\xff", b"5");
    m
}

#[test]
fn range_key_forms() {
    let m = abc_store();
    let r = |key: &[u8], end: &[u8]| keys_of(&m.range(&range_req(key, end)).unwrap());
    assert_eq!(r(b"a", b""), ks(&[b"a"]));
    assert_eq!(r(b"a", b"b"), ks(&[b"a", b"ab"]), "prefix a");
    assert_eq!(r(b"b", b"\0"), ks(&[b"b", b"b\0", b"c\xff"]), "from key");
    assert_eq!(
        r(b"\0", b"\0"),
        ks(&[b"a", b"ab", b"b", b"b\0", b"c\xff"]),
        "all keys"
    );
    assert_eq!(r(b"c\xff", b"d"), ks(&[b"c\xff"]));
    assert_eq!(r(b"b", b"a"), Vec::<Vec<u8>>::new(), "inverted");
    assert_eq!(r(b"zz", b""), Vec::<Vec<u8>>::new());
}

#[test]
fn range_limit_count_keys_only_count_only() {
    let m = abc_store();
    let all = range_req(b"\0", b"\0");
    let resp = m
        .range(&RangeRequest {
            limit: 2,
            ..all.clone()
        })
        .unwrap();
    assert_eq!(
        (keys_of(&resp), resp.more, resp.count),
        (ks(&[b"a", b"ab"]), true, 5)
    );
    let resp = m
        .range(&RangeRequest {
            limit: 5,
            ..all.clone()
        })
        .unwrap();
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (5, false, 5));
    let resp = m
        .range(&RangeRequest {
            keys_only: true,
            ..all.clone()
        })
        .unwrap();
    assert!(
        resp.kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version > 0)
    );
    let resp = m
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..all.clone()
        })
        .unwrap();
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (0, false, 5));
    assert_eq!(resp.header.unwrap().revision, 7);
}

#[test]
fn range_sort() {
    let m = abc_store();
    let all = range_req(b"\0", b"\0");
    let sorted = |order: SortOrder, target: SortTarget, limit: i64| {
        let req = RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            limit,
            ..all.clone()
        };
        let resp = m.range(&req).unwrap();
        (keys_of(&resp), resp.more)
    };
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Key, 0).0,
        ks(&[b"a", b"ab", b"b", b"b\0", b"c\xff"])
    );
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Key, 0).0,
        ks(&[b"a", b"ab", b"b", b"b\0", b"c\xff"])
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Key, 2),
        (ks(&[b"c\xff", b"b\0"]), true)
    );
    // Another target with NONE sorts ascending.
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Value, 0).0,
        ks(&[b"b\0", b"ab", b"b", b"a", b"c\xff"])
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Value, 1),
        (ks(&[b"c\xff"]), true)
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Mod, 0).0,
        ks(&[b"c\xff", b"a", b"b\0", b"b", b"ab"])
    );
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Create, 0).0,
        ks(&[b"a", b"ab", b"b", b"b\0", b"c\xff"])
    );
    // Ties (versions all 1 except "a") keep key order.
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Version, 0).0,
        ks(&[b"a", b"ab", b"b", b"b\0", b"c\xff"])
    );
    let bad = RangeRequest {
        sort_order: 9,
        ..all
    };
    assert!(matches!(m.range(&bad), Err(KvError::InvalidSortOption)));
}

#[test]
fn range_revision_filters_keep_count() {
    let m = abc_store();
    let all = range_req(b"\0", b"\0");
    let resp = m
        .range(&RangeRequest {
            min_mod_revision: 4,
            max_mod_revision: 6,
            ..all.clone()
        })
        .unwrap();
    assert_eq!(keys_of(&resp), ks(&[b"a", b"b", b"b\0"]));
    assert_eq!(resp.count, 5, "count is over the range before the filters");
    let resp = m
        .range(&RangeRequest {
            min_create_revision: 3,
            max_create_revision: 4,
            limit: 1,
            ..all.clone()
        })
        .unwrap();
    assert_eq!((keys_of(&resp), resp.more), (ks(&[b"ab"]), true));
}

#[test]
fn range_at_past_revisions_and_errors() {
    let m = abc_store();
    let at = |rev: i64| {
        m.range(&RangeRequest {
            revision: rev,
            ..range_req(b"\0", b"\0")
        })
    };
    assert_eq!(at(2).unwrap().count, 1);
    assert_eq!(at(4).unwrap().count, 3);
    assert_eq!(at(6).unwrap().kvs[0].value, b"4");
    assert_eq!(at(5).unwrap().kvs[0].value, b"3");
    assert_eq!(
        at(5).unwrap().header.unwrap().revision,
        7,
        "header has the current revision"
    );
    assert_eq!(at(1).unwrap().count, 0);
    assert!(matches!(at(8), Err(KvError::FutureRevision)));
    must_compact(&m, 4);
    assert!(matches!(at(3), Err(KvError::Compacted)));
    assert_eq!(
        at(4).unwrap().count,
        3,
        "reading at exactly the compacted revision works"
    );
    assert_eq!(at(0).unwrap().count, 5);
}

// ---------------------------------------------------------------------------
// Txn

#[test]
fn txn_compare_on_missing_key() {
    let m = mem();
    let run = |c: Compare| {
        let mut b = m.begin();
        let resp = b
            .txn(&TxnRequest {
                compare: vec![c],
                success: vec![],
                failure: vec![],
            })
            .unwrap();
        drop(b);
        resp.succeeded
    };
    assert!(run(cmp(
        b"x",
        CompareTarget::Version,
        CompareResult::Equal,
        TargetUnion::Version(0)
    )));
    assert!(run(cmp(
        b"x",
        CompareTarget::Create,
        CompareResult::Equal,
        TargetUnion::CreateRevision(0)
    )));
    assert!(run(cmp(
        b"x",
        CompareTarget::Mod,
        CompareResult::Less,
        TargetUnion::ModRevision(1)
    )));
    assert!(run(cmp(
        b"x",
        CompareTarget::Lease,
        CompareResult::Equal,
        TargetUnion::Lease(0)
    )));
    assert!(!run(cmp(
        b"x",
        CompareTarget::Value,
        CompareResult::Equal,
        TargetUnion::Value(vec![])
    )));
    assert!(!run(cmp(
        b"x",
        CompareTarget::Value,
        CompareResult::NotEqual,
        TargetUnion::Value(b"v".to_vec())
    )));
}

#[test]
fn txn_compare_over_a_range() {
    let m = mem();
    must_put(&m, b"p/1", b"x");
    must_put(&m, b"p/2", b"x");
    must_put(&m, b"q", b"y");
    let holds = |value: &[u8], range_end: &[u8]| {
        let mut c = cmp(
            b"p/",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(value.to_vec()),
        );
        c.range_end = range_end.to_vec();
        let mut b = m.begin();
        b.txn(&TxnRequest {
            compare: vec![c],
            ..Default::default()
        })
        .unwrap()
        .succeeded
    };
    assert!(holds(b"x", b"p0"));
    assert!(!holds(b"x", b"\0"), "q's value differs");
    assert!(!holds(b"y", b"p0"));
}

#[test]
fn txn_ops_see_earlier_writes_and_use_one_revision() {
    let m = mem();
    must_put(&m, b"a", b"0");
    let req = TxnRequest {
        compare: vec![cmp(
            b"a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"0".to_vec()),
        )],
        success: vec![
            op_get(b"b"),
            op_put(b"b", b"1"),
            op_get(b"b"),
            op_del(b"a", b""),
            op_get(b"a"),
        ],
        failure: vec![op_put(b"f", b"f")],
    };
    let mut b = m.begin();
    let resp = b.txn(&req).unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.as_ref().unwrap().revision, 3);
    let r = &resp.responses;
    assert_eq!(range_resp(&r[0]).count, 0);
    assert_eq!(range_resp(&r[0]).header.as_ref().unwrap().revision, 2);
    assert_eq!(range_resp(&r[2]).kvs[0].mod_revision, 3);
    assert_eq!(range_resp(&r[2]).header.as_ref().unwrap().revision, 3);
    assert_eq!(range_resp(&r[4]).count, 0);
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 3);
    assert_eq!(committed.events.len(), 2);
    assert!(
        committed
            .events
            .iter()
            .all(|e| e.kv.as_ref().unwrap().mod_revision == 3)
    );
    // A txn at a revision in the future of the txn's start fails.
    let mut b = m.begin();
    let future = TxnRequest {
        success: vec![
            op_put(b"c", b""),
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    revision: 4,
                    ..range_req(b"c", b"")
                })),
            },
        ],
        ..Default::default()
    };
    assert!(matches!(b.txn(&future), Err(KvError::FutureRevision)));
    assert_eq!(b.revision(), 3);
}

#[test]
fn read_only_txn_does_not_bump() {
    let m = mem();
    must_put(&m, b"a", b"0");
    let mut b = m.begin();
    let resp = b
        .txn(&TxnRequest {
            success: vec![op_get(b"a"), op_del(b"zz", b"")],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(resp.header.unwrap().revision, 2);
    assert_eq!(commit(&m, b).revision, 2);
}

#[test]
fn failed_txn_rolls_back_everything() {
    let m = mem();
    let mut b = m.begin();
    b.put(&put_req(b"before", b"kept")).unwrap();
    let req = TxnRequest {
        success: vec![
            op_put(b"x", b"1"),
            op_txn(TxnRequest {
                success: vec![
                    op_del(b"before", b""),
                    RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            lease: 99,
                            ..put_req(b"y", b"")
                        })),
                    },
                ],
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(b.txn(&req), Err(KvError::LeaseNotFound)));
    assert_eq!(b.revision(), 2);
    b.put(&put_req(b"after", b"kept")).unwrap();
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 3);
    assert_eq!(committed.events.len(), 2);
    assert_eq!(
        keys_of(&m.range(&range_req(b"\0", b"\0")).unwrap()),
        ks(&[b"after", b"before"])
    );
}

#[test]
fn nested_txn() {
    let m = mem();
    must_put(&m, b"a", b"0");
    let version_is = |n: i64| {
        cmp(
            b"a",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(n),
        )
    };
    let req = TxnRequest {
        compare: vec![version_is(1)],
        success: vec![
            op_put(b"a", b"1"),
            // Compares of nested txns are evaluated before the txn's writes:
            // "a" is still at version 1 here.
            op_txn(TxnRequest {
                compare: vec![version_is(1)],
                success: vec![op_put(b"n", b"then"), op_get(b"a")],
                failure: vec![op_put(b"n", b"else")],
            }),
        ],
        failure: vec![],
    };
    let mut b = m.begin();
    let resp = b.txn(&req).unwrap();
    assert!(resp.succeeded);
    let Some(Response::ResponseTxn(nested)) = &resp.responses[1].response else {
        panic!("not a txn")
    };
    assert!(nested.succeeded);
    assert_eq!(nested.header, Some(ResponseHeader::default()));
    assert_eq!(range_resp(&nested.responses[1]).kvs[0].value, b"1");
    assert_eq!(commit(&m, b).revision, 3);
    assert_eq!(get(&m, b"n").unwrap().value, b"then");
    assert_eq!(get(&m, b"n").unwrap().mod_revision, 3);
}

// ---------------------------------------------------------------------------
// Compaction

fn kv_cf_len(m: &Mvcc) -> usize {
    m.engine()
        .scan(Cf::Kv, Bound::Unbounded, Bound::Unbounded, false)
        .count()
}

#[test]
fn compaction_rules() {
    let m = mem();
    let mut b = m.begin();
    assert!(matches!(
        b.compact(&CompactionRequest {
            revision: 2,
            physical: false
        }),
        Err(KvError::FutureRevision)
    ));
    drop(b);
    must_put(&m, b"a", b"1"); // 2
    must_put(&m, b"a", b"2"); // 3
    must_put(&m, b"d", b"1"); // 4
    must_delete(&m, b"d", b""); // 5
    must_put(&m, b"a", b"3"); // 6
    assert_eq!(kv_cf_len(&m), 5);
    must_compact(&m, 5);
    assert_eq!(m.compact_revision(), 5);
    // "a": versions 3 (newest <= 5) and 6 stay; "d": tombstone gone, and all below.
    assert_eq!(kv_cf_len(&m), 2);
    let at5 = m
        .range(&RangeRequest {
            revision: 5,
            ..range_req(b"\0", b"\0")
        })
        .unwrap();
    assert_eq!((at5.kvs.len(), at5.kvs[0].value.as_slice()), (1, &b"2"[..]));
    assert!(matches!(
        m.range(&RangeRequest {
            revision: 4,
            ..range_req(b"a", b"")
        }),
        Err(KvError::Compacted)
    ));
    let mut b = m.begin();
    assert!(matches!(
        b.compact(&CompactionRequest {
            revision: 5,
            physical: false
        }),
        Err(KvError::Compacted)
    ));
    assert!(matches!(
        b.compact(&CompactionRequest {
            revision: 4,
            physical: false
        }),
        Err(KvError::Compacted)
    ));
    let resp = b
        .compact(&CompactionRequest {
            revision: 6,
            physical: true,
        })
        .unwrap();
    assert_eq!(resp.header.unwrap().revision, 6);
    commit(&m, b);
    assert_eq!(kv_cf_len(&m), 1);
    assert_eq!(get(&m, b"a").unwrap().version, 3);
    // Rev entries below the compaction are gone, those at it stay.
    let revs: Vec<_> = m
        .engine()
        .scan(Cf::Rev, Bound::Unbounded, Bound::Unbounded, false)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(revs, vec![keys::rev_key(6, 0)]);
}

#[test]
fn compaction_in_a_batch_sees_its_writes() {
    let m = mem();
    let mut b = m.begin();
    b.put(&put_req(b"k", b"1")).unwrap(); // 2
    b.put(&put_req(b"k", b"2")).unwrap(); // 3
    b.delete_range(&del_req(b"k", b"")).unwrap(); // 4
    b.put(&put_req(b"j", b"1")).unwrap(); // 5
    b.compact(&CompactionRequest {
        revision: 4,
        physical: false,
    })
    .unwrap();
    let late = RangeRequest {
        revision: 3,
        ..range_req(b"k", b"")
    };
    assert!(matches!(b.range(&late), Err(KvError::Compacted)));
    commit(&m, b);
    assert_eq!(kv_cf_len(&m), 1);
    assert_eq!(m.compact_revision(), 4);
    assert_eq!(m.current_revision(), 5);
    let mut b = m.begin();
    assert!(matches!(
        b.compact(&CompactionRequest {
            revision: 0,
            physical: false
        }),
        Err(KvError::Compacted)
    ));
}

#[test]
fn first_compaction_at_zero_is_allowed_once() {
    let m = mem();
    must_compact(&m, 0);
    assert_eq!(m.compact_revision(), 0);
    let mut b = m.begin();
    assert!(matches!(
        b.compact(&CompactionRequest {
            revision: 0,
            physical: false
        }),
        Err(KvError::Compacted)
    ));
}

// ---------------------------------------------------------------------------
// Leases

#[test]
fn lease_lifecycle() {
    let m = mem();
    let mut b = m.begin();
    b.lease_grant(1, 10).unwrap();
    b.lease_grant(2, 20).unwrap();
    assert!(matches!(
        b.lease_grant(1, 10),
        Err(KvError::LeaseAlreadyExists)
    ));
    assert!(matches!(b.lease_grant(0, 10), Err(KvError::LeaseNotFound)));
    assert!(matches!(b.lease_revoke(3), Err(KvError::LeaseNotFound)));
    b.put(&PutRequest {
        lease: 1,
        ..put_req(b"x", b"")
    })
    .unwrap();
    b.put(&PutRequest {
        lease: 1,
        ..put_req(b"y", b"")
    })
    .unwrap();
    b.put(&PutRequest {
        lease: 1,
        ..put_req(b"z", b"")
    })
    .unwrap();
    // Moving "z" to lease 2, and "y" to no lease.
    b.put(&PutRequest {
        lease: 2,
        ..put_req(b"z", b"")
    })
    .unwrap();
    b.put(&put_req(b"y", b"")).unwrap();
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 6);
    assert!(m.lease_exists(1).unwrap());
    assert!(!m.lease_exists(3).unwrap());
    assert_eq!(m.lease(2).unwrap(), Some(LeaseInfo { id: 2, ttl: 20 }));
    assert_eq!(
        m.leases().unwrap(),
        vec![LeaseInfo { id: 1, ttl: 10 }, LeaseInfo { id: 2, ttl: 20 }]
    );
    assert_eq!(m.lease_keys(1).unwrap(), ks(&[b"x"]));
    assert_eq!(m.lease_keys(2).unwrap(), ks(&[b"z"]));

    must_put(&m, b"w", b""); // 7
    let mut b = m.begin();
    b.put(&PutRequest {
        lease: 2,
        ..put_req(b"w", b"")
    })
    .unwrap(); // 8
    b.lease_revoke(2).unwrap(); // 9: deletes w and z
    b.lease_revoke(1).unwrap(); // 10: deletes x
    let committed = commit(&m, b);
    assert_eq!(committed.revision, 10);
    let deletes: Vec<_> = committed.events[1..]
        .iter()
        .map(|e| {
            (
                e.kv.as_ref().unwrap().key.clone(),
                e.kv.as_ref().unwrap().mod_revision,
            )
        })
        .collect();
    assert_eq!(
        deletes,
        vec![(b"w".to_vec(), 9), (b"z".to_vec(), 9), (b"x".to_vec(), 10)]
    );
    assert_eq!(
        keys_of(&m.range(&range_req(b"\0", b"\0")).unwrap()),
        ks(&[b"y"])
    );
    assert!(m.leases().unwrap().is_empty());
    assert!(
        m.engine()
            .scan(Cf::Lease, Bound::Unbounded, Bound::Unbounded, false)
            .next()
            .is_none()
    );

    // Revoking a lease without keys adds no revision.
    let mut b = m.begin();
    b.lease_grant(5, 1).unwrap();
    b.lease_revoke(5).unwrap();
    assert_eq!(commit(&m, b).revision, 10);
}

#[test]
fn deleting_a_key_detaches_it() {
    let m = mem();
    let mut b = m.begin();
    b.lease_grant(1, 10).unwrap();
    b.put(&PutRequest {
        lease: 1,
        ..put_req(b"x", b"")
    })
    .unwrap();
    b.delete_range(&del_req(b"x", b"")).unwrap();
    commit(&m, b);
    assert!(m.lease_keys(1).unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Commit, reload, events, concurrency

#[test]
fn commit_writes_extra_metadata_atomically() {
    let m = mem();
    let mut b = m.begin();
    b.put(&put_req(b"a", b"")).unwrap();
    let mut extra = WriteBatch::new();
    extra.put(Cf::SmMeta, b"raft/applied".to_vec(), b"5".to_vec());
    m.commit(b, extra, Durability::Sync).unwrap();
    assert_eq!(
        m.engine().get(Cf::SmMeta, b"raft/applied").unwrap(),
        Some(b"5".to_vec())
    );
    // A read-only batch still writes the caller's metadata.
    let b = m.begin();
    let mut extra = WriteBatch::new();
    extra.put(Cf::SmMeta, b"raft/applied".to_vec(), b"6".to_vec());
    assert_eq!(
        m.commit(b, extra, Durability::Buffered).unwrap().revision,
        2
    );
    assert_eq!(
        m.engine().get(Cf::SmMeta, b"raft/applied").unwrap(),
        Some(b"6".to_vec())
    );
}

#[test]
#[should_panic(expected = "another ApplyBatch")]
fn one_batch_at_a_time() {
    let m = mem();
    let _a = m.begin();
    let _b = m.begin();
}

#[test]
fn dropped_batch_discards_and_frees() {
    let m = mem();
    let mut b = m.begin();
    b.put(&put_req(b"a", b"")).unwrap();
    drop(b);
    assert_eq!(m.current_revision(), 1);
    assert_eq!(must_put(&m, b"b", b""), 2);
}

#[test]
fn reload_after_snapshot_install() {
    let source = mem();
    must_put(&source, b"a", b"1");
    must_put(&source, b"b", b"1");
    must_compact(&source, 2);
    let target_engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let target = Mvcc::open(target_engine.clone()).unwrap();
    let mut wb = WriteBatch::new();
    for cf in Cf::STATE_MACHINE {
        for item in source
            .engine()
            .scan(cf, Bound::Unbounded, Bound::Unbounded, false)
        {
            let (k, v) = item.unwrap();
            wb.put(cf, k, v);
        }
    }
    target_engine.write(wb, Durability::Sync).unwrap();
    target.reload().unwrap();
    assert_eq!(
        (target.current_revision(), target.compact_revision()),
        (3, 2)
    );
    assert_eq!(get(&target, b"b").unwrap().mod_revision, 3);
}

#[test]
fn events_replay_history_without_splitting_revisions() {
    let m = mem();
    let mut all = Vec::new();
    let mut b = m.begin();
    b.put(&put_req(b"a", b"1")).unwrap(); // 2
    b.txn(&TxnRequest {
        success: vec![op_put(b"b", b"1"), op_put(b"c", b"1")],
        ..Default::default()
    })
    .unwrap(); // 3
    all.extend(commit(&m, b).events);
    all.extend(must_delete(&m, b"a", b"c").events); // 4: a, b
    let mut b = m.begin();
    b.put(&PutRequest {
        prev_kv: true,
        ..put_req(b"c", b"2")
    })
    .unwrap(); // 5
    all.extend(commit(&m, b).events);

    assert_eq!(
        m.events(0, 100).unwrap(),
        EventPage {
            events: all.clone(),
            next_revision: 6
        }
    );
    let page = m.events(2, 2).unwrap();
    assert_eq!(page.events, all[..3].to_vec(), "revision 3 is not split");
    assert_eq!(page.next_revision, 4);
    let page = m.events(4, 1).unwrap();
    assert_eq!(page.events, all[3..5].to_vec());
    assert_eq!(
        m.events(6, 10).unwrap(),
        EventPage {
            events: vec![],
            next_revision: 6
        }
    );
    must_compact(&m, 4);
    assert!(matches!(m.events(3, 10), Err(KvError::Compacted)));
    assert_eq!(m.events(5, 10).unwrap().events, all[5..].to_vec());
}

/// Readers range at the latest and at past revisions while a writer
/// commits puts and compactions: every read is consistent or compacted.
fn concurrent_reads_see_consistent_revisions(m: Arc<Mvcc>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let m = m.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                while reads == 0 || !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let resp = m.range(&range_req(b"\0", b"\0")).unwrap();
                    let rev = resp.header.unwrap().revision;
                    // Writer invariant: at revision r, keys k0..k(r-2) exist,
                    // each with its value equal to its mod revision.
                    assert_eq!(resp.count, rev - 1);
                    for kv in &resp.kvs {
                        assert!(kv.mod_revision <= rev);
                        assert_eq!(kv.value, kv.mod_revision.to_string().into_bytes());
                    }
                    // Past reads either work or are compacted, never wrong.
                    let past = (rev / 2).max(1);
                    match m.range(&RangeRequest {
                        revision: past,
                        ..range_req(b"\0", b"\0")
                    }) {
                        Ok(resp) => assert_eq!(resp.count, past - 1),
                        Err(KvError::Compacted) => {}
                        Err(err) => panic!("{err}"),
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..300i64 {
        let rev = i + 2;
        let mut b = m.begin();
        b.put(&put_req(
            format!("k{i:04}").as_bytes(),
            rev.to_string().as_bytes(),
        ))
        .unwrap();
        if i % 50 == 49 {
            b.compact(&CompactionRequest {
                revision: rev / 2,
                physical: false,
            })
            .unwrap();
        }
        commit(&m, b);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn concurrent_reads_on_memory() {
    concurrent_reads_see_consistent_revisions(Arc::new(mem()));
}

#[test]
fn concurrent_reads_on_rocks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(dir.path()).unwrap();
    concurrent_reads_see_consistent_revisions(Arc::new(Mvcc::open(Arc::new(engine)).unwrap()));
}

#[test]
fn rocks_reopen_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let m = Mvcc::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
        must_put(&m, b"a", b"1");
        must_put(&m, b"a", b"2");
        must_compact(&m, 2);
    }
    let m = Mvcc::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
    assert_eq!((m.current_revision(), m.compact_revision()), (3, 2));
    assert_eq!(get(&m, b"a").unwrap().version, 2);
}

// ---------------------------------------------------------------------------
// Model-based test

/// A naive model: every version of every key, in a map.
#[derive(Debug, Clone)]
struct Model {
    revision: i64,
    compacted: i64,
    versions: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
    leases: BTreeMap<i64, i64>,
    events: Vec<Event>,
}

fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        key <= k && k < end
    }
}

impl Model {
    fn new() -> Self {
        Model {
            revision: 1,
            compacted: -1,
            versions: BTreeMap::new(),
            leases: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    fn live(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        self.versions
            .get(key)?
            .iter()
            .rev()
            .find(|(r, _)| *r <= at)
            .and_then(|(_, kv)| kv.clone())
    }

    fn live_range(&self, key: &[u8], end: &[u8], at: i64) -> Vec<KeyValue> {
        self.versions
            .keys()
            .filter(|k| in_range(k, key, end))
            .filter_map(|k| self.live(k, at))
            .collect()
    }

    /// A range with the options the generator uses (no sort, no filters).
    fn range(
        &self,
        req: &RangeRequest,
        current: i64,
        max_allowed: i64,
    ) -> Result<RangeResponse, String> {
        if req.revision > max_allowed {
            return Err(format!("{:?}", KvError::FutureRevision));
        }
        let rev = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        if rev < self.compacted {
            return Err(format!("{:?}", KvError::Compacted));
        }
        let all = self.live_range(&req.key, &req.range_end, rev);
        let count = all.len() as i64;
        let mut kvs = if req.count_only { vec![] } else { all };
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        Ok(RangeResponse {
            header: Some(ResponseHeader {
                revision: current,
                ..Default::default()
            }),
            kvs,
            more,
            count,
        })
    }
}

/// Applies requests to the model, one at a time, like an `ApplyBatch`.
struct ModelApply<'a> {
    model: &'a mut Model,
    wrote: bool,
}

impl ModelApply<'_> {
    fn write_rev(&self) -> i64 {
        self.model.revision + 1
    }

    fn read_rev(&self) -> i64 {
        if self.wrote {
            self.write_rev()
        } else {
            self.model.revision
        }
    }

    fn request<T>(
        model: &mut Model,
        f: impl FnOnce(&mut ModelApply<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        let saved = model.clone();
        let mut apply = ModelApply {
            model,
            wrote: false,
        };
        let result = f(&mut apply);
        let wrote = apply.wrote;
        match &result {
            Ok(_) if wrote => model.revision += 1,
            Ok(_) => {}
            Err(_) => *model = saved,
        }
        result
    }

    fn put(&mut self, req: &PutRequest) -> Result<skiff_proto::etcdserverpb::PutResponse, String> {
        let rev = self.write_rev();
        if req.lease != 0 && !self.model.leases.contains_key(&req.lease) {
            return Err(format!("{:?}", KvError::LeaseNotFound));
        }
        let prev = self.model.live(&req.key, rev);
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(format!("{:?}", KvError::KeyNotFound));
        }
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: if req.ignore_value {
                prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
            } else {
                req.value.clone()
            },
            lease: if req.ignore_lease {
                prev.as_ref().map_or(0, |p| p.lease)
            } else {
                req.lease
            },
        };
        self.model
            .versions
            .entry(req.key.clone())
            .or_default()
            .push((rev, Some(kv.clone())));
        self.model.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        self.wrote = true;
        Ok(skiff_proto::etcdserverpb::PutResponse {
            header: Some(ResponseHeader {
                revision: rev,
                ..Default::default()
            }),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_key(&mut self, prev: KeyValue) {
        let rev = self.write_rev();
        self.model
            .versions
            .entry(prev.key.clone())
            .or_default()
            .push((rev, None));
        let kv = KeyValue {
            key: prev.key.clone(),
            mod_revision: rev,
            ..Default::default()
        };
        self.model.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(prev),
        });
        self.wrote = true;
    }

    fn delete(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> skiff_proto::etcdserverpb::DeleteRangeResponse {
        let live = self
            .model
            .live_range(&req.key, &req.range_end, self.write_rev());
        for kv in live.clone() {
            self.delete_key(kv);
        }
        skiff_proto::etcdserverpb::DeleteRangeResponse {
            header: Some(ResponseHeader {
                revision: self.read_rev(),
                ..Default::default()
            }),
            deleted: live.len() as i64,
            prev_kvs: if req.prev_kv { live } else { vec![] },
        }
    }

    fn compare(&self, c: &Compare, at: i64) -> bool {
        let kvs = self.model.live_range(&c.key, &c.range_end, at);
        let check = |kv: &KeyValue| {
            let ord = match &c.target_union {
                Some(TargetUnion::Version(v)) => kv.version.cmp(v),
                Some(TargetUnion::CreateRevision(v)) => kv.create_revision.cmp(v),
                Some(TargetUnion::ModRevision(v)) => kv.mod_revision.cmp(v),
                Some(TargetUnion::Lease(v)) => kv.lease.cmp(v),
                Some(TargetUnion::Value(v)) => kv.value.cmp(v),
                None => unreachable!(),
            };
            match CompareResult::try_from(c.result).unwrap() {
                CompareResult::Equal => ord.is_eq(),
                CompareResult::NotEqual => ord.is_ne(),
                CompareResult::Greater => ord.is_gt(),
                CompareResult::Less => ord.is_lt(),
            }
        };
        if kvs.is_empty() {
            return !matches!(c.target_union, Some(TargetUnion::Value(_)))
                && check(&KeyValue::default());
        }
        kvs.iter().all(check)
    }

    fn path(&self, req: &TxnRequest, at: i64, out: &mut Vec<bool>) {
        let ok = req.compare.iter().all(|c| self.compare(c, at));
        out.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let Some(Request::RequestTxn(t)) = &op.request {
                self.path(t, at, out);
            }
        }
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, String> {
        let mut path = Vec::new();
        self.path(req, self.model.revision, &mut path);
        let mut path = path.into_iter();
        let mut resp = self.exec(req, &mut path)?;
        resp.header = Some(ResponseHeader {
            revision: self.read_rev(),
            ..Default::default()
        });
        Ok(resp)
    }

    fn exec(
        &mut self,
        req: &TxnRequest,
        path: &mut std::vec::IntoIter<bool>,
    ) -> Result<TxnResponse, String> {
        let ok = path.next().unwrap();
        let mut responses = Vec::new();
        for op in if ok { &req.success } else { &req.failure } {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Response::ResponseRange(self.model.range(
                    r,
                    self.read_rev(),
                    self.model.revision,
                )?),
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.put(p)?),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.delete(d))
                }
                Some(Request::RequestTxn(t)) => Response::ResponseTxn(self.exec(t, path)?),
                None => unreachable!(),
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded: ok,
            responses,
        })
    }

    fn compact(&mut self, rev: i64) -> Result<(), String> {
        if rev <= self.model.compacted {
            return Err(format!("{:?}", KvError::Compacted));
        }
        if rev > self.model.revision {
            return Err(format!("{:?}", KvError::FutureRevision));
        }
        self.model.compacted = rev;
        Ok(())
    }

    fn grant(&mut self, id: i64) -> Result<(), String> {
        if self.model.leases.contains_key(&id) {
            return Err(format!("{:?}", KvError::LeaseAlreadyExists));
        }
        self.model.leases.insert(id, 30);
        Ok(())
    }

    fn revoke(&mut self, id: i64) -> Result<(), String> {
        if self.model.leases.remove(&id).is_none() {
            return Err(format!("{:?}", KvError::LeaseNotFound));
        }
        let attached: Vec<KeyValue> = self
            .model
            .live_range(b"\0", b"\0", self.model.revision)
            .into_iter()
            .filter(|kv| kv.lease == id)
            .collect();
        for kv in attached {
            self.delete_key(kv);
        }
        Ok(())
    }
}

/// One generated request.
#[derive(Debug, Clone)]
enum Op {
    Put {
        key: Vec<u8>,
        value: u8,
        lease: i64,
        prev_kv: bool,
        ignore_value: bool,
    },
    Delete {
        key: Vec<u8>,
        range_end: Vec<u8>,
        prev_kv: bool,
    },
    Txn(TxnRequest),
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        back: i64,
        limit: i64,
        keys_only: bool,
        count_only: bool,
    },
    Compact {
        back: i64,
    },
    Grant(i64),
    Revoke(i64),
}

#[derive(Debug, Clone)]
enum Step {
    /// Requests applied in one batch.
    Batch(Vec<Op>),
    /// Drop the store (and the engine, for RocksDB) and open it again.
    Reboot,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Few keys, so that they collide; "k\0" and "k\xff" exercise the escaping.
    prop_oneof![
        (0u8..5).prop_map(|i| vec![b'k', b'0' + i]),
        Just(b"k\0".to_vec()),
        Just(b"k\xff".to_vec()),
        Just(b"j".to_vec()),
    ]
}

fn range_end_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(vec![]),
        1 => Just(vec![0]),
        1 => Just(b"l".to_vec()),
        1 => (0u8..6).prop_map(|i| vec![b'k', b'0' + i]),
    ]
}

fn compare_strategy() -> impl Strategy<Value = Compare> {
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::NotEqual),
        Just(CompareResult::Greater),
        Just(CompareResult::Less)
    ];
    let union = prop_oneof![
        (0i64..3).prop_map(TargetUnion::Version),
        (0i64..8).prop_map(TargetUnion::CreateRevision),
        (0i64..8).prop_map(TargetUnion::ModRevision),
        (0i64..3).prop_map(TargetUnion::Lease),
        (b'a'..b'd').prop_map(|v| TargetUnion::Value(vec![v])),
    ];
    (
        key_strategy(),
        prop_oneof![3 => Just(vec![]), 1 => range_end_strategy()],
        result,
        union,
    )
        .prop_map(|(key, range_end, result, union)| {
            let target = match union {
                TargetUnion::Version(_) => CompareTarget::Version,
                TargetUnion::CreateRevision(_) => CompareTarget::Create,
                TargetUnion::ModRevision(_) => CompareTarget::Mod,
                TargetUnion::Lease(_) => CompareTarget::Lease,
                TargetUnion::Value(_) => CompareTarget::Value,
            };
            Compare {
                result: result as i32,
                target: target as i32,
                key,
                range_end,
                target_union: Some(union),
            }
        })
}

fn leaf_op_strategy() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        (key_strategy(), b'a'..b'd', 0i64..3).prop_map(|(key, v, lease)| RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key,
                value: vec![v],
                lease,
                prev_kv: true,
                ..Default::default()
            }))
        }),
        (key_strategy(), range_end_strategy()).prop_map(|(key, range_end)| RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key,
                range_end,
                prev_kv: true
            }))
        }),
        (key_strategy(), range_end_strategy()).prop_map(|(key, range_end)| RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key,
                range_end,
                ..Default::default()
            }))
        }),
    ]
}

fn txn_strategy() -> impl Strategy<Value = TxnRequest> {
    let leaf_txn = (
        proptest::collection::vec(compare_strategy(), 0..3),
        proptest::collection::vec(leaf_op_strategy(), 0..3),
        proptest::collection::vec(leaf_op_strategy(), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        });
    let op = prop_oneof![4 => leaf_op_strategy(), 1 => leaf_txn.prop_map(|t| RequestOp { request: Some(Request::RequestTxn(t)) })];
    (
        proptest::collection::vec(compare_strategy(), 0..3),
        proptest::collection::vec(op.clone(), 0..4),
        proptest::collection::vec(op, 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key_strategy(), b'a'..b'd', prop_oneof![3 => Just(0i64), 1 => 1i64..3], any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(key, value, lease, prev_kv, ignore_value)| Op::Put { key, value, lease, prev_kv, ignore_value }),
        2 => (key_strategy(), range_end_strategy(), any::<bool>())
            .prop_map(|(key, range_end, prev_kv)| Op::Delete { key, range_end, prev_kv }),
        3 => txn_strategy().prop_map(Op::Txn),
        2 => (key_strategy(), range_end_strategy(), -1i64..6, 0i64..3, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(key, range_end, back, limit, keys_only, count_only)| Op::Range { key, range_end, back, limit, keys_only, count_only }),
        1 => (0i64..6).prop_map(|back| Op::Compact { back }),
        1 => (1i64..3).prop_map(Op::Grant),
        1 => (1i64..3).prop_map(Op::Revoke),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => proptest::collection::vec(op_strategy(), 1..4).prop_map(Step::Batch),
        1 => Just(Step::Reboot),
    ]
}

fn revision_back(current: i64, back: i64) -> i64 {
    if back < 0 {
        current + 1
    } else {
        current - back
    }
}

/// Applies one op to the store's batch and to the model; both must agree.
fn apply_op(batch: &mut ApplyBatch<'_>, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let dbg = |e: KvError| format!("{e:?}");
    match op {
        Op::Put {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
        } => {
            let req = PutRequest {
                key: key.clone(),
                value: if *ignore_value { vec![] } else { vec![*value] },
                lease: *lease,
                prev_kv: *prev_kv,
                ignore_value: *ignore_value,
                ignore_lease: false,
            };
            let got = batch.put(&req).map_err(dbg);
            let want = ModelApply::request(model, |m| m.put(&req));
            prop_assert_eq!(got, want);
        }
        Op::Delete {
            key,
            range_end,
            prev_kv,
        } => {
            let req = DeleteRangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                prev_kv: *prev_kv,
            };
            let got = batch.delete_range(&req).map_err(dbg);
            let want = ModelApply::request(model, |m| Ok(m.delete(&req)));
            prop_assert_eq!(got, want);
        }
        Op::Txn(req) => {
            if validate::validate_txn(req, validate::DEFAULT_MAX_TXN_OPS).is_err() {
                return Ok(());
            }
            let got = batch.txn(req).map_err(dbg);
            let want = ModelApply::request(model, |m| m.txn(req));
            prop_assert_eq!(got, want);
        }
        Op::Range {
            key,
            range_end,
            back,
            limit,
            keys_only,
            count_only,
        } => {
            let req = RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                revision: revision_back(model.revision, *back),
                limit: *limit,
                keys_only: *keys_only,
                count_only: *count_only,
                ..Default::default()
            };
            let got = batch.range(&req).map_err(dbg);
            prop_assert_eq!(got, model.range(&req, model.revision, model.revision));
        }
        Op::Compact { back } => {
            let req = CompactionRequest {
                revision: revision_back(model.revision, *back),
                physical: false,
            };
            let got = batch.compact(&req).map(|_| ()).map_err(dbg);
            let want = ModelApply::request(model, |m| m.compact(req.revision));
            prop_assert_eq!(got, want);
        }
        Op::Grant(id) => {
            let got = batch.lease_grant(*id, 30).map_err(dbg);
            prop_assert_eq!(got, ModelApply::request(model, |m| m.grant(*id)));
        }
        Op::Revoke(id) => {
            let got = batch.lease_revoke(*id).map_err(dbg);
            prop_assert_eq!(got, ModelApply::request(model, |m| m.revoke(*id)));
        }
    }
    prop_assert_eq!(batch.revision(), model.revision);
    Ok(())
}

/// Checks the committed store against the model: revisions, every read
/// revision from the compaction on, errors below and above, history, leases.
fn check_store(m: &Mvcc, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(m.current_revision(), model.revision);
    prop_assert_eq!(m.compact_revision(), model.compacted);
    let all = |revision: i64| RangeRequest {
        revision,
        ..range_req(b"\0", b"\0")
    };
    for rev in model.compacted.max(1)..=model.revision {
        let got = m.range(&all(rev)).map_err(|e| format!("{e:?}"));
        prop_assert_eq!(
            got,
            model.range(&all(rev), model.revision, model.revision),
            "at revision {}",
            rev
        );
    }
    if model.compacted > 1 {
        let below = m.range(&all(model.compacted - 1));
        prop_assert!(matches!(below, Err(KvError::Compacted)), "{below:?}");
    }
    let above = m.range(&all(model.revision + 1));
    prop_assert!(matches!(above, Err(KvError::FutureRevision)), "{above:?}");
    let start = (model.compacted + 1).max(2);
    let want: Vec<Event> = model
        .events
        .iter()
        .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= start))
        .cloned()
        .collect();
    prop_assert_eq!(m.events(start, usize::MAX)?.events, want);
    let leases: Vec<LeaseInfo> = model
        .leases
        .iter()
        .map(|(&id, &ttl)| LeaseInfo { id, ttl })
        .collect();
    prop_assert_eq!(m.leases()?, leases);
    for &id in model.leases.keys() {
        let attached: Vec<Vec<u8>> = model
            .live_range(b"\0", b"\0", model.revision)
            .into_iter()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key)
            .collect();
        prop_assert_eq!(m.lease_keys(id)?, attached);
    }
    Ok(())
}

/// Runs `steps` against the store from `open` and the model.
fn run_model(steps: &[Step], open: &mut dyn FnMut(bool) -> Mvcc) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut m = Some(open(false));
    for step in steps {
        match step {
            Step::Reboot => {
                drop(m.take());
                m = Some(open(true));
            }
            Step::Batch(ops) => {
                let Some(store) = m.as_ref() else {
                    unreachable!()
                };
                let events_before = model.events.len();
                let mut batch = store.begin();
                for op in ops {
                    apply_op(&mut batch, &mut model, op)?;
                }
                let committed = store.commit(batch, WriteBatch::new(), Durability::Buffered)?;
                prop_assert_eq!(committed.revision, model.revision);
                prop_assert_eq!(&committed.events, &model.events[events_before..].to_vec());
            }
        }
        let Some(store) = m.as_ref() else {
            unreachable!()
        };
        check_store(store, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mvcc_matches_model_on_memory(steps in proptest::collection::vec(step_strategy(), 1..24)) {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        run_model(&steps, &mut |_| Mvcc::open(engine.clone()).unwrap())?;
    }

    #[test]
    fn mvcc_matches_model_on_rocks(steps in proptest::collection::vec(step_strategy(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_model(&steps, &mut |_| Mvcc::open(Arc::new(RocksEngine::open(&path).unwrap())).unwrap())?;
    }
}
