//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`).

use std::time::Duration;

use skiff_proto::etcdserverpb::RangeRequest;
use skiff_tests::{Cluster, LEADER_TIMEOUT, wait_for};
use tonic::Code;

/// Whether a read of `key` at `revision` on member `i` is refused as compacted.
async fn compacted_at(cluster: &Cluster, i: usize, revision: i64) -> bool {
    let request = RangeRequest {
        key: b"c/0".to_vec(),
        revision,
        ..Default::default()
    };
    match cluster.client(i).range(request).await {
        Ok(_) => false,
        Err(status) => {
            assert_eq!(
                (status.code(), status.message()),
                (
                    Code::OutOfRange,
                    "etcdserver: mvcc: required revision has been compacted"
                ),
                "only compaction may refuse this read"
            );
            true
        }
    }
}

#[tokio::test]
async fn revision_mode_keeps_the_last_n_revisions() {
    let cluster = Cluster::start_with(
        3,
        &[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "10",
            "--auto-compaction-check-interval",
            "200",
        ],
    )
    .await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let mut last = 0;
    for n in 0..30 {
        last = cluster
            .must_put(leader, format!("c/{n}"), "v")
            .await
            .header
            .expect("header")
            .revision;
    }
    let kept_from = last - 10;
    wait_for(
        "compaction to the last 10 revisions",
        Duration::from_secs(10),
        async || compacted_at(&cluster, leader, kept_from - 1).await,
    )
    .await;
    assert!(
        !compacted_at(&cluster, leader, kept_from).await,
        "revision {kept_from} is within the retention"
    );
}

#[tokio::test]
async fn periodic_mode_keeps_a_window_of_history() {
    let cluster = Cluster::start_with(
        3,
        &[
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "1s",
        ],
    )
    .await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let old = cluster
        .must_put(leader, "c/0", "old")
        .await
        .header
        .expect("header")
        .revision;
    cluster.must_put(leader, "c/1", "newer").await;
    wait_for(
        "history older than a second to be compacted",
        Duration::from_secs(10),
        async || compacted_at(&cluster, leader, old - 1).await,
    )
    .await;
    let fresh = cluster
        .must_put(leader, "c/2", "fresh")
        .await
        .header
        .expect("header")
        .revision;
    assert!(
        !compacted_at(&cluster, leader, fresh).await,
        "a fresh revision is readable"
    );
}
