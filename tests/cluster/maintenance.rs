//! Maintenance: HashKV agrees on every member at the same revision (the
//! corruption check), Defragment, and etcdctl's `endpoint hashkv`, `defrag`
//! and `alarm list` against the store.

use std::collections::BTreeSet;
use std::time::Duration;

use skiff_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, HashKvRequest};
use skiff_tests::{Cluster, LEADER_TIMEOUT, wait_for};

/// HashKV of member `i` at `revision`, once that member has applied it.
pub(crate) async fn hash_kv(cluster: &Cluster, i: usize, revision: i64) -> u32 {
    wait_for(
        format!("{} to hash revision {revision}", cluster.name(i)),
        Duration::from_secs(10),
        async || {
            let reply = cluster
                .maintenance(i)
                .hash_kv(HashKvRequest { revision })
                .await
                .ok()?;
            let reply = reply.into_inner();
            (reply.hash_revision == revision).then_some(reply.hash)
        },
    )
    .await
}

#[tokio::test]
async fn hash_kv_agrees_on_every_member_and_tracks_the_data() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    for n in 0..50 {
        cluster
            .must_put(n % 3, format!("h/{n}"), format!("v{n}"))
            .await;
    }
    cluster
        .client(leader)
        .delete_range(DeleteRangeRequest {
            key: "h/7".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let r1 = cluster
        .must_put(leader, "h/last", "1")
        .await
        .header
        .expect("header")
        .revision;
    cluster
        .client(leader)
        .compact(CompactionRequest {
            revision: r1 - 10,
            physical: true,
        })
        .await
        .expect("compact");

    let mut hashes = BTreeSet::new();
    for i in 0..cluster.len() {
        hashes.insert(hash_kv(&cluster, i, r1).await);
    }
    assert_eq!(
        hashes.len(),
        1,
        "every member hashes revision {r1} alike: {hashes:?}"
    );
    let h1 = *hashes.first().expect("a hash");

    let r2 = cluster
        .must_put(leader, "h/last", "2")
        .await
        .header
        .expect("header")
        .revision;
    let h2 = hash_kv(&cluster, cluster.others(leader)[0], r2).await;
    assert_ne!(h1, h2, "a write changes the hash");
    assert_eq!(
        hash_kv(&cluster, leader, r1).await,
        h1,
        "the hash of a past revision stays"
    );
}

#[tokio::test]
async fn etcdctl_hashkv_defrag_and_alarm_list() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let last = {
        let mut last = 0;
        for n in 0..20 {
            last = cluster
                .must_put(leader, format!("m/{n}"), "v")
                .await
                .header
                .expect("header")
                .revision;
        }
        last
    };
    // Every member has applied the last write before the cluster-wide hash.
    for i in 0..cluster.len() {
        hash_kv(&cluster, i, last).await;
    }
    let out = cluster.etcdctl(&["endpoint", "hashkv", "--cluster"]).await;
    let lines: Vec<String> = out.success().stdout.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "one line per member: {out}");
    let hashes: BTreeSet<&str> = lines.iter().filter_map(|l| l.split(", ").nth(1)).collect();
    assert_eq!(hashes.len(), 1, "the same hash everywhere: {out}");

    let out = cluster.etcdctl(&["defrag", "--cluster"]).await;
    let finished = out
        .success()
        .stdout
        .lines()
        .filter(|l| l.starts_with("Finished defragmenting etcd member["))
        .count();
    assert_eq!(finished, 3, "{out}");
    assert_eq!(
        cluster.must_get(leader, "m/3").await.map(|kv| kv.value),
        Some(b"v".to_vec()),
        "data intact"
    );

    let out = cluster.etcdctl(&["alarm", "list"]).await;
    assert_eq!(out.success().stdout.trim(), "", "no alarm raised: {out}");
}

#[tokio::test]
async fn move_leader_hands_leadership_to_the_named_member() {
    use skiff_proto::etcdserverpb::MoveLeaderRequest;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let target = cluster.others(leader)[0];
    let target_id = cluster.member_id(target);

    skiff_tests::assert_status(
        "move-leader sent to a follower",
        cluster
            .maintenance(target)
            .move_leader(MoveLeaderRequest { target_id })
            .await,
        tonic::Code::FailedPrecondition,
        "etcdserver: not leader",
    );
    cluster
        .maintenance(leader)
        .move_leader(MoveLeaderRequest { target_id })
        .await
        .expect("move leader");
    assert_eq!(
        cluster.leader().await,
        Some(target),
        "the named member leads"
    );
    cluster.must_put(leader, "after/move", "v").await;

    // etcdctl finds the leader itself; it dials that endpoint verbatim, so
    // it gets host:port endpoints (see the README on client URLs).
    let back = cluster.member_id(leader);
    let addrs: Vec<String> = (0..cluster.len()).map(|i| cluster.client_addr(i)).collect();
    let out = skiff_tests::cmd::etcdctl(
        &addrs.join(","),
        &["move-leader", &format!("{back:x}")],
        None,
    )
    .await;
    assert_eq!(
        out.success().stdout.trim(),
        format!("Leadership transferred from {target_id:x} to {back:x}"),
        "{out}"
    );
    assert_eq!(cluster.wait_for_leader(LEADER_TIMEOUT).await, leader);
}

#[tokio::test]
async fn quota_raises_nospace_which_refuses_writes_until_disarmed() {
    use skiff_proto::etcdserverpb::{AlarmRequest, PutRequest};
    let cluster = Cluster::start_with(3, &["--quota-backend-bytes", "300000"]).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let value = vec![b'x'; 10_000];
    let mut refused = None;
    for n in 0..200 {
        let request = PutRequest {
            key: format!("q/{n}").into_bytes(),
            value: value.clone(),
            ..Default::default()
        };
        if let Err(status) = cluster.client(leader).put(request).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("writes past the quota are refused");
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        )
    );
    let alarms = cluster
        .maintenance(leader)
        .alarm(AlarmRequest::default())
        .await
        .expect("alarm list")
        .into_inner();
    assert!(
        alarms.alarms.iter().any(|a| a.alarm == 1),
        "NOSPACE is raised: {alarms:?}"
    );
    let out = cluster.etcdctl(&["alarm", "list"]).await;
    assert!(out.success().stdout.contains("alarm:NOSPACE"), "{out}");

    // Reads and deletes still work; every member refuses writes.
    assert!(
        cluster
            .must_get(cluster.others(leader)[0], "q/0")
            .await
            .is_some()
    );
    assert_eq!(
        cluster
            .etcdctl(&["del", "q/0"])
            .await
            .success()
            .stdout
            .trim(),
        "1"
    );
    for i in 0..cluster.len() {
        let request = PutRequest {
            key: b"q/more".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let status = cluster
            .client(i)
            .put(request)
            .await
            .expect_err("a write under NOSPACE");
        assert_eq!(
            status.code(),
            tonic::Code::ResourceExhausted,
            "{}: {status:?}",
            cluster.name(i)
        );
    }

    let out = cluster.etcdctl(&["alarm", "disarm"]).await;
    assert!(
        out.success().stdout.contains("alarm:NOSPACE"),
        "disarm lists what it cleared: {out}"
    );
    let alarms = cluster
        .maintenance(leader)
        .alarm(AlarmRequest::default())
        .await
        .expect("alarm list")
        .into_inner();
    assert!(alarms.alarms.is_empty(), "disarmed: {alarms:?}");
}
