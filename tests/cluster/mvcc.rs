//! MVCC over gRPC, as etcd numbers it: an empty store is at revision 1; each
//! put, each delete that deleted something and each txn with writes adds
//! exactly one revision; keys carry create/mod revision and version.

use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::request_op::Request;
use skiff_proto::etcdserverpb::response_op::Response;
use skiff_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, TxnResponse,
};
use skiff_proto::mvccpb::KeyValue;
use skiff_tests::ops::put_op;
use skiff_tests::{Cluster, assert_status};
use tonic::Code;

/// (create_revision, mod_revision, version) of a key.
fn revs(kv: &KeyValue) -> (i64, i64, i64) {
    (kv.create_revision, kv.mod_revision, kv.version)
}

fn get_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn delete_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn compare_version(key: &str, result: CompareResult, version: i64) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Version as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(TargetUnion::Version(version)),
        ..Default::default()
    }
}

async fn must_txn(cluster: &Cluster, i: usize, request: TxnRequest) -> TxnResponse {
    match cluster.client(i).txn(request).await {
        Ok(response) => response.into_inner(),
        Err(e) => panic!("txn through {}: {e:?}", cluster.name(i)),
    }
}

/// Asserts every member serves `key` with these revisions and version.
async fn assert_key_everywhere(
    cluster: &Cluster,
    key: &str,
    value: &str,
    expected: (i64, i64, i64),
) {
    for i in 0..cluster.len() {
        let kv = cluster
            .must_get(i, key)
            .await
            .unwrap_or_else(|| panic!("{key} missing on {}", cluster.name(i)));
        assert_eq!(
            kv.value,
            value.as_bytes(),
            "value of {key} on {}",
            cluster.name(i)
        );
        assert_eq!(
            revs(&kv),
            expected,
            "(create, mod, version) of {key} on {}",
            cluster.name(i)
        );
    }
}

/// Asserts every member is at `revision`.
async fn assert_revision_everywhere(cluster: &Cluster, revision: i64, after: &str) {
    for i in 0..cluster.len() {
        assert_eq!(
            cluster.must_revision(i).await,
            revision,
            "revision on {} after {after}",
            cluster.name(i)
        );
    }
}

#[tokio::test]
async fn put_and_delete_revisions_and_key_fields() {
    let cluster = Cluster::start(3).await;
    assert_revision_everywhere(&cluster, 1, "nothing (an empty store is at revision 1)").await;

    let put = cluster.must_put(1, "a", "1").await;
    assert_eq!(
        put.header.expect("header").revision,
        2,
        "the first put on an empty cluster gets revision 2"
    );
    assert_key_everywhere(&cluster, "a", "1", (2, 2, 1)).await;

    let put = cluster.must_put(2, "a", "2").await;
    assert_eq!(put.header.expect("header").revision, 3);
    assert_key_everywhere(&cluster, "a", "2", (2, 3, 2)).await;

    let put = cluster.must_put(0, "b", "1").await;
    assert_eq!(put.header.expect("header").revision, 4);
    assert_key_everywhere(&cluster, "b", "1", (4, 4, 1)).await;

    // prev_kv returns the version replaced.
    let put = cluster
        .client(1)
        .put(PutRequest {
            key: b"a".to_vec(),
            value: b"3".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .expect("put with prev_kv")
        .into_inner();
    assert_eq!(put.header.expect("header").revision, 5);
    let prev = put.prev_kv.expect("prev_kv of an existing key");
    assert_eq!(
        (prev.value.as_slice(), revs(&prev)),
        (b"2".as_slice(), (2, 3, 2))
    );

    // A delete that deletes something adds a revision ...
    let deleted = cluster
        .client(2)
        .delete_range(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .expect("delete a")
        .into_inner();
    assert_eq!(
        (deleted.deleted, deleted.header.expect("header").revision),
        (1, 6)
    );
    for i in 0..cluster.len() {
        assert!(
            cluster.must_get(i, "a").await.is_none(),
            "deleted key a still on {}",
            cluster.name(i)
        );
    }
    // ... one that deletes nothing does not.
    let deleted = cluster
        .client(0)
        .delete_range(DeleteRangeRequest {
            key: b"nothing-here".to_vec(),
            ..Default::default()
        })
        .await
        .expect("delete of a missing key")
        .into_inner();
    assert_eq!(
        (deleted.deleted, deleted.header.expect("header").revision),
        (0, 6)
    );
    assert_revision_everywhere(&cluster, 6, "a delete that deleted nothing").await;

    // Re-creating a deleted key starts a new generation.
    let put = cluster.must_put(1, "a", "again").await;
    assert_eq!(put.header.expect("header").revision, 7);
    assert_key_everywhere(&cluster, "a", "again", (7, 7, 1)).await;

    // History: a read at a past revision sees the store as it was.
    for (revision, value) in [
        (2, Some("1")),
        (5, Some("3")),
        (6, None),
        (7, Some("again")),
    ] {
        let request = RangeRequest {
            key: b"a".to_vec(),
            revision,
            ..Default::default()
        };
        let response = cluster.must_range(2, request).await;
        let got = response
            .kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        assert_eq!(got.as_deref(), value, "a at revision {revision}");
    }

    // A prefix delete of two keys is still one revision.
    cluster.must_put(0, "p/1", "x").await;
    cluster.must_put(0, "p/2", "y").await;
    let deleted = cluster
        .client(2)
        .delete_range(DeleteRangeRequest {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            prev_kv: true,
        })
        .await
        .expect("prefix delete")
        .into_inner();
    assert_eq!(
        (deleted.deleted, deleted.header.expect("header").revision),
        (2, 10)
    );
    assert_eq!(deleted.prev_kvs.len(), 2, "prev_kvs of a prefix delete");
}

#[tokio::test]
async fn txn_with_writes_is_one_revision() {
    let cluster = Cluster::start(3).await;
    cluster.must_put(0, "t/a", "0").await; // revision 2

    // Compare holds: three writes, one revision, shared by every key written.
    let txn = must_txn(
        &cluster,
        1,
        TxnRequest {
            compare: vec![compare_version("t/a", CompareResult::Equal, 1)],
            success: vec![
                put_op("t/a", "1"),
                put_op("t/b", "1"),
                put_op("t/c", "1"),
                get_op("t/a"),
            ],
            failure: vec![put_op("t/failed", "1")],
        },
    )
    .await;
    assert!(txn.succeeded, "version(t/a) = 1 holds");
    assert_eq!(
        txn.header.expect("header").revision,
        3,
        "a txn with writes adds exactly one revision"
    );
    assert_eq!(txn.responses.len(), 4, "one response per op");
    match &txn.responses[3].response {
        Some(Response::ResponseRange(range)) => {
            assert_eq!(
                range.kvs[0].value, b"1",
                "a get after a put in one txn sees the put"
            )
        }
        other => panic!("fourth response is not a range: {other:?}"),
    }
    assert_key_everywhere(&cluster, "t/a", "1", (2, 3, 2)).await;
    assert_key_everywhere(&cluster, "t/b", "1", (3, 3, 1)).await;
    assert_key_everywhere(&cluster, "t/c", "1", (3, 3, 1)).await;

    // Compare fails: the failure branch runs, still one revision.
    let txn = must_txn(
        &cluster,
        2,
        TxnRequest {
            compare: vec![compare_version("t/a", CompareResult::Equal, 1)],
            success: vec![put_op("t/succeeded", "1")],
            failure: vec![put_op("t/failed", "1"), delete_op("t/b")],
        },
    )
    .await;
    assert!(!txn.succeeded, "version(t/a) is 2 now");
    assert_eq!(txn.header.expect("header").revision, 4);
    for i in 0..cluster.len() {
        assert!(
            cluster.must_get(i, "t/succeeded").await.is_none(),
            "success branch ran on {}",
            cluster.name(i)
        );
        assert!(
            cluster.must_get(i, "t/b").await.is_none(),
            "failure branch delete missing on {}",
            cluster.name(i)
        );
    }
    assert_key_everywhere(&cluster, "t/failed", "1", (4, 4, 1)).await;

    // A compare on a missing key sees version 0; a read-only txn adds nothing.
    let txn = must_txn(
        &cluster,
        0,
        TxnRequest {
            compare: vec![compare_version("t/missing", CompareResult::Equal, 0)],
            success: vec![get_op("t/a")],
            failure: vec![],
        },
    )
    .await;
    assert!(txn.succeeded, "version of a missing key compares as 0");
    assert_eq!(
        txn.header.expect("header").revision,
        4,
        "a read-only txn adds no revision"
    );
    assert_revision_everywhere(&cluster, 4, "a read-only txn").await;

    // 128 ops, etcd's limit, is accepted as one revision.
    let ops: Vec<RequestOp> = (0..128)
        .map(|k| put_op(format!("t/many/{k:03}"), "v"))
        .collect();
    let txn = must_txn(
        &cluster,
        1,
        TxnRequest {
            success: ops,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        txn.header.expect("header").revision,
        5,
        "a txn of 128 puts is one revision"
    );
    let many = cluster.must_get_prefix(2, "t/many/", false).await;
    assert_eq!(many.len(), 128);
    assert!(
        many.iter().all(|kv| kv.mod_revision == 5),
        "every key of the txn has its revision"
    );
}

#[tokio::test]
async fn compaction_keeps_the_revision_and_refuses_old_and_future_revisions() {
    let cluster = Cluster::start(3).await;
    for v in 0..5 {
        cluster.must_put(v % 3, "c", format!("v{v}")).await; // revisions 2..=6
    }
    let response = cluster
        .client(1)
        .compact(CompactionRequest {
            revision: 4,
            physical: true,
        })
        .await
        .expect("compact at 4")
        .into_inner();
    assert_eq!(
        response.header.expect("header").revision,
        6,
        "compaction adds no revision"
    );
    assert_revision_everywhere(&cluster, 6, "a compaction").await;
    assert_key_everywhere(&cluster, "c", "v4", (2, 6, 5)).await;

    let again = cluster
        .client(2)
        .compact(CompactionRequest {
            revision: 4,
            physical: false,
        })
        .await;
    assert_status(
        "compact again at 4",
        again,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let older = cluster
        .client(0)
        .compact(CompactionRequest {
            revision: 3,
            physical: false,
        })
        .await;
    assert_status(
        "compact at 3 after 4",
        older,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let future = cluster
        .client(0)
        .compact(CompactionRequest {
            revision: 7,
            physical: false,
        })
        .await;
    assert_status(
        "compact at 7 (future)",
        future,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_revision_everywhere(&cluster, 6, "refused compactions").await;
}
