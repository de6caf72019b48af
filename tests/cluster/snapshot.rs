//! Snapshots: `etcdctl snapshot save` against the store and
//! `etcdctl snapshot status` reading the file (a real bbolt parse with its
//! integrity check); `skiff snapshot save`, `restore` into three new data
//! dirs and a new cluster on them that serves every revision, the
//! compaction and the leases of the old one.

use std::path::Path;
use std::time::Duration;

use crate::maintenance::hash_kv;
use skiff_proto::etcdserverpb::lease_client::LeaseClient;
use skiff_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use skiff_proto::mvccpb::KeyValue;
use skiff_tests::{Cluster, CmdOutput, assert_status, cmd, wait_for};
use tonic::Code;

/// A TTL that outlives the test.
const LEASE_TTL_S: i64 = 600;
/// How long a member may take to apply what the leader acknowledged.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`write_history`] left behind.
#[derive(Debug, Clone, Copy)]
struct History {
    lease: i64,
    compacted: i64,
    revision: i64,
}

async fn delete(cluster: &Cluster, key: &str) -> i64 {
    let request = DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    };
    let response = cluster
        .client(0)
        .delete_range(request)
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(response.deleted, 1, "{key}");
    response.header.expect("header").revision
}

async fn put(cluster: &Cluster, key: &str, value: &str, lease: i64) -> i64 {
    let request = PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    };
    let response = cluster.client(0).put(request).await.expect("put");
    response.into_inner().header.expect("header").revision
}

/// Ten keys, five overwritten, three deleted, a compaction at the last
/// delete, a lease with two keys, an overwrite, a delete and a last put.
/// The `key` bucket then holds 12 entries: the newest version below the
/// compaction of k0..k4, k8, k9 (the tombstones at or below it went with
/// it), then lease/a, lease/b, k0, k1's tombstone and `last`.
async fn write_history(cluster: &Cluster) -> History {
    for i in 0..10 {
        put(cluster, &format!("k{i}"), "v1", 0).await;
    }
    for i in 0..5 {
        put(cluster, &format!("k{i}"), "v2", 0).await;
    }
    let mut compacted = 0;
    for i in 5..8 {
        compacted = delete(cluster, &format!("k{i}")).await;
    }
    cluster
        .client(0)
        .compact(CompactionRequest {
            revision: compacted,
            physical: true,
        })
        .await
        .expect("compact");
    let lease = LeaseClient::new(cluster.channel(0))
        .lease_grant(LeaseGrantRequest {
            ttl: LEASE_TTL_S,
            id: 0,
        })
        .await
        .expect("lease grant")
        .into_inner()
        .id;
    put(cluster, "lease/a", "1", lease).await;
    put(cluster, "lease/b", "2", lease).await;
    put(cluster, "k0", "v3", 0).await;
    delete(cluster, "k1").await;
    let revision = put(cluster, "last", "x", 0).await;
    History {
        lease,
        compacted,
        revision,
    }
}

/// Waits until member `i` has applied `revision`.
async fn wait_applied(cluster: &Cluster, i: usize, revision: i64) {
    wait_for(
        format!("{} to apply revision {revision}", cluster.name(i)),
        APPLY_TIMEOUT,
        async || {
            let request = RangeRequest {
                key: b"last".to_vec(),
                serializable: true,
                ..Default::default()
            };
            let response = cluster.client(i).range(request).await.ok()?;
            let applied = response.into_inner().header?.revision;
            (applied >= revision).then_some(())
        },
    )
    .await;
}

/// Every key-value at `revision`, read through member `i`.
async fn everything_at(cluster: &Cluster, i: usize, revision: i64) -> Vec<KeyValue> {
    let request = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..Default::default()
    };
    cluster.must_range(i, request).await.kvs
}

fn json(out: &CmdOutput) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a data dir");
    for entry in std::fs::read_dir(from).expect("read a restored data dir") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a restored file");
        }
    }
}

#[tokio::test]
async fn etcdctl_saves_a_snapshot_and_reads_its_status() {
    let cluster = Cluster::start(3).await;
    let history = write_history(&cluster).await;
    // etcdctl 3.4 asks exactly one member; a follower's copy is as good.
    let member = 1;
    wait_applied(&cluster, member, history.revision).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("etcdctl.db");
    let file_arg = file.display().to_string();
    let endpoint = cluster.client_addr(member);

    let out = cmd::etcdctl(&endpoint, &["snapshot", "save", &file_arg], None).await;
    assert!(
        out.success()
            .stdout
            .contains(&format!("Snapshot saved at {file_arg}")),
        "{out}"
    );
    let size = std::fs::metadata(&file).expect("the snapshot file").len();
    assert_eq!(size % 512, 32, "bbolt pages plus the sha256 trailer");

    let out = cmd::etcdctl(
        &endpoint,
        &["snapshot", "status", &file_arg, "-w", "json"],
        None,
    )
    .await;
    let status = json(out.success());
    assert_eq!(status["revision"], history.revision, "{out}");
    // 12 versions (see write_history), 1 lease, and in `meta` the
    // consistent index, two compaction marks and skiff's current revision.
    assert_eq!(status["totalKey"], 12 + 1 + 4, "{out}");
    assert_eq!(status["totalSize"], size - 32, "{out}");

    // skiff reads the file the same way.
    let ours = cmd::skiff(
        &endpoint,
        &["snapshot", "status", &file_arg, "-w", "json"],
        None,
    )
    .await;
    assert_eq!(json(ours.success()), status, "{ours}");

    // etcd's own restore accepts it: it rebuilds etcd's index and lessor
    // from the file.
    let restored = dir.path().join("etcd-data");
    let out = cmd::etcdctl(
        &endpoint,
        &[
            "snapshot",
            "restore",
            &file_arg,
            "--data-dir",
            &restored.display().to_string(),
            "--name",
            "r1",
            "--initial-cluster",
            "r1=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
        ],
        None,
    )
    .await;
    out.success();
    assert!(
        restored.join("member").join("snap").join("db").exists(),
        "{out}"
    );
}

#[tokio::test]
async fn restored_cluster_serves_every_revision_and_lease() {
    let source = Cluster::start(3).await;
    let history = write_history(&source).await;
    wait_applied(&source, 0, history.revision).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("skiff.db");
    let file_arg = file.display().to_string();
    let endpoint = source.client_addr(0);

    let out = cmd::skiff(&endpoint, &["snapshot", "save", &file_arg], None).await;
    assert_eq!(
        out.success().stdout,
        format!("Snapshot saved at {file_arg}\n"),
        "{out}"
    );
    assert!(!dir.path().join("skiff.db.part").exists());
    // Several endpoints are refused, as etcdctl refuses them.
    let out = source.skiff(&["snapshot", "save", &file_arg]).await;
    assert!(out.code(1).stderr.contains("one selected node"), "{out}");

    let mut expected = Vec::new();
    for revision in history.compacted..=history.revision {
        expected.push((revision, everything_at(&source, 0, revision).await));
    }
    let source_hash = hash_kv(&source, 0, history.revision).await;
    drop(source);

    for i in 0..3 {
        let data = dir.path().join(format!("restored-{i}"));
        let data_arg = data.display().to_string();
        let out = cmd::skiff(
            &endpoint,
            &["snapshot", "restore", &file_arg, "--data-dir", &data_arg],
            None,
        )
        .await;
        let line = format!(
            "revision {}, compacted at {}, 9 keys (12 versions), 1 leases",
            history.revision, history.compacted
        );
        assert!(out.success().stdout.contains(&line), "{out}");
    }
    let busy = dir.path().join("restored-0").display().to_string();
    let out = cmd::skiff(
        &endpoint,
        &["snapshot", "restore", &file_arg, "--data-dir", &busy],
        None,
    )
    .await;
    assert!(out.code(1).stderr.contains("is not empty"), "{out}");

    let cluster = Cluster::start_prepared(3, &[], |i, data| {
        copy_dir(&dir.path().join(format!("restored-{i}")), data);
    })
    .await;
    for i in 0..cluster.len() {
        for (revision, kvs) in &expected {
            assert_eq!(
                &everything_at(&cluster, i, *revision).await,
                kvs,
                "{} at revision {revision}",
                cluster.name(i)
            );
        }
        let request = RangeRequest {
            key: b"k0".to_vec(),
            revision: history.compacted - 1,
            ..Default::default()
        };
        assert_status(
            "a read below the compaction",
            cluster.client(i).range(request).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert_eq!(
            hash_kv(&cluster, i, history.revision).await,
            source_hash,
            "HashKV of {} agrees with the old cluster",
            cluster.name(i)
        );
    }

    let mut leases = LeaseClient::new(cluster.channel(0));
    let listed = leases
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("lease list")
        .into_inner();
    let ids: Vec<i64> = listed.leases.iter().map(|l| l.id).collect();
    assert_eq!(ids, [history.lease]);
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: history.lease,
            keys: true,
        })
        .await
        .expect("lease time to live")
        .into_inner();
    assert_eq!(ttl.granted_ttl, LEASE_TTL_S);
    assert!(ttl.ttl > LEASE_TTL_S - 120, "refreshed on restore: {ttl:?}");
    assert_eq!(ttl.keys, [b"lease/a".to_vec(), b"lease/b".to_vec()]);

    // The restored cluster goes on from the restored revision; revoking the
    // lease deletes its keys.
    assert_eq!(put(&cluster, "after", "1", 0).await, history.revision + 1);
    leases
        .lease_revoke(LeaseRevokeRequest { id: history.lease })
        .await
        .expect("lease revoke");
    for key in ["lease/a", "lease/b"] {
        assert_eq!(cluster.must_get(1, key).await, None, "{key}");
    }
    assert_eq!(cluster.must_revision(2).await, history.revision + 2);
}
