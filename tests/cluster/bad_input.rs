//! Bad requests get etcd's gRPC code and exact message (clients match on the
//! text), through a follower as through the leader, and change nothing: the
//! revision and every key are the same afterwards.

use std::fmt::Debug;

use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use skiff_proto::mvccpb::KeyValue;
use skiff_tests::ops::put_op;
use skiff_tests::{Cluster, LEADER_TIMEOUT, assert_status};
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

const KEY_NOT_PROVIDED: &str = "etcdserver: key is not provided";
const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
const INVALID_SORT_OPTION: &str = "etcdserver: invalid sort option";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REVISION: &str = "etcdserver: mvcc: required revision is a future revision";

/// etcd's request size limit, 1.5 MiB.
const MAX_REQUEST_BYTES: usize = 3 << 19;

/// A three-member cluster holding a few keys, for bad requests to leave alone.
async fn cluster_with_data() -> Cluster {
    let cluster = Cluster::start(3).await;
    for (key, value) in [("existing/a", "1"), ("existing/b", "2"), ("dup", "0")] {
        cluster.must_put(0, key, value).await;
    }
    cluster
}

/// Every key of the store as member `i` sees it (linearizable).
async fn all_keys(cluster: &Cluster, i: usize) -> Vec<KeyValue> {
    let request = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    cluster.must_range(i, request).await.kvs
}

/// Sends the request `send` builds through a follower and then through the
/// leader; asserts etcd's code and message each time and that neither the
/// revision nor any key changed.
async fn assert_refused<T: Debug>(
    cluster: &Cluster,
    what: &str,
    code: Code,
    message: &str,
    mut send: impl AsyncFnMut(KvClient<Channel>) -> Result<Response<T>, Status>,
) {
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster.others(leader)[0];
    let revision_before = cluster.must_revision(leader).await;
    let keys_before = all_keys(cluster, leader).await;
    for i in [follower, leader] {
        let result = send(cluster.client(i)).await;
        assert_status(
            &format!("{what} through {}", cluster.name(i)),
            result,
            code,
            message,
        );
    }
    for i in 0..cluster.len() {
        assert_eq!(
            cluster.must_revision(i).await,
            revision_before,
            "{what}: the refused request changed the revision seen on {}",
            cluster.name(i)
        );
        assert_eq!(
            all_keys(cluster, i).await,
            keys_before,
            "{what}: keys changed on {}",
            cluster.name(i)
        );
    }
}

#[tokio::test]
async fn empty_key_is_refused() {
    let cluster = cluster_with_data().await;
    assert_refused(
        &cluster,
        "put with an empty key",
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
        async |mut c| {
            c.put(PutRequest {
                key: vec![],
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
        },
    )
    .await;
    assert_refused(
        &cluster,
        "range with an empty key",
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
        async |mut c| c.range(RangeRequest::default()).await,
    )
    .await;
    assert_refused(
        &cluster,
        "delete with an empty key",
        Code::InvalidArgument,
        KEY_NOT_PROVIDED,
        async |mut c| c.delete_range(DeleteRangeRequest::default()).await,
    )
    .await;
}

#[tokio::test]
async fn request_over_1_5_mib_is_refused() {
    let cluster = cluster_with_data().await;
    let too_large = vec![b'x'; MAX_REQUEST_BYTES + 1024];
    assert_refused(
        &cluster,
        "put of 1.5 MiB + 1 KiB",
        Code::InvalidArgument,
        REQUEST_TOO_LARGE,
        async |mut c| {
            c.put(PutRequest {
                key: b"big".to_vec(),
                value: too_large.clone(),
                ..Default::default()
            })
            .await
        },
    )
    .await;
    // Below the limit is fine: 1 MiB is accepted and read back whole.
    let fine = vec![b'y'; 1 << 20];
    cluster.must_put(1, "big", &fine).await;
    let kv = cluster.must_get(2, "big").await.expect("the 1 MiB value");
    assert_eq!(
        kv.value.len(),
        fine.len(),
        "length of the 1 MiB value read back"
    );
}

#[tokio::test]
async fn txn_with_129_ops_is_refused() {
    let cluster = cluster_with_data().await;
    let ops: Vec<RequestOp> = (0..129)
        .map(|k| put_op(format!("many/{k:03}"), "v"))
        .collect();
    assert_refused(
        &cluster,
        "txn with 129 ops",
        Code::InvalidArgument,
        TOO_MANY_OPS,
        async |mut c| {
            c.txn(TxnRequest {
                success: ops.clone(),
                ..Default::default()
            })
            .await
        },
    )
    .await;
}

#[tokio::test]
async fn txn_writing_a_key_twice_is_refused() {
    let cluster = cluster_with_data().await;
    let ops = vec![put_op("dup", "first"), put_op("dup", "second")];
    assert_refused(
        &cluster,
        "txn putting one key twice",
        Code::InvalidArgument,
        DUPLICATE_KEY,
        async |mut c| {
            c.txn(TxnRequest {
                success: ops.clone(),
                ..Default::default()
            })
            .await
        },
    )
    .await;
}

#[tokio::test]
async fn bad_sort_option_is_refused() {
    let cluster = cluster_with_data().await;
    assert_refused(
        &cluster,
        "range with sort order 7",
        Code::InvalidArgument,
        INVALID_SORT_OPTION,
        async |mut c| {
            c.range(RangeRequest {
                key: b"existing/a".to_vec(),
                sort_order: 7,
                ..Default::default()
            })
            .await
        },
    )
    .await;
    assert_refused(
        &cluster,
        "range with sort target 9",
        Code::InvalidArgument,
        INVALID_SORT_OPTION,
        async |mut c| {
            c.range(RangeRequest {
                key: b"existing/a".to_vec(),
                sort_target: 9,
                ..Default::default()
            })
            .await
        },
    )
    .await;
}

#[tokio::test]
async fn put_with_unknown_lease_is_refused() {
    let cluster = cluster_with_data().await;
    assert_refused(
        &cluster,
        "put with lease 0x1234",
        Code::NotFound,
        LEASE_NOT_FOUND,
        async |mut c| {
            c.put(PutRequest {
                key: b"leased".to_vec(),
                value: b"v".to_vec(),
                lease: 0x1234,
                ..Default::default()
            })
            .await
        },
    )
    .await;
}

#[tokio::test]
async fn range_at_compacted_revision_is_refused() {
    let cluster = cluster_with_data().await;
    for v in 0..4 {
        cluster.must_put(0, "history", format!("v{v}")).await;
    }
    let current = cluster.must_revision(0).await;
    let compact_at = current - 1;
    cluster
        .client(1)
        .compact(CompactionRequest {
            revision: compact_at,
            physical: true,
        })
        .await
        .expect("compaction");
    let below = compact_at - 1;
    assert_refused(
        &cluster,
        "range below the compacted revision",
        Code::OutOfRange,
        COMPACTED,
        async |mut c| {
            c.range(RangeRequest {
                key: b"history".to_vec(),
                revision: below,
                ..Default::default()
            })
            .await
        },
    )
    .await;
    // Exactly at the compacted revision is still readable: v2 was written there.
    for i in 0..cluster.len() {
        let request = RangeRequest {
            key: b"history".to_vec(),
            revision: compact_at,
            ..Default::default()
        };
        let kv = cluster
            .must_range(i, request)
            .await
            .kvs
            .pop()
            .expect("history at the compacted revision");
        assert_eq!(
            kv.value,
            b"v2",
            "value at the compacted revision on {}",
            cluster.name(i)
        );
    }
}

#[tokio::test]
async fn range_at_future_revision_is_refused() {
    let cluster = cluster_with_data().await;
    let future = cluster.must_revision(0).await + 1;
    assert_refused(
        &cluster,
        "range at the next revision",
        Code::OutOfRange,
        FUTURE_REVISION,
        async |mut c| {
            c.range(RangeRequest {
                key: b"existing/a".to_vec(),
                revision: future,
                ..Default::default()
            })
            .await
        },
    )
    .await;
}
