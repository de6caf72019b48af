//! Reads and writes across members: a write through any member is visible on
//! every member, linearizable reads never miss an acknowledged write.

use std::time::Duration;

use skiff_tests::{Cluster, wait_for};

/// A put through a follower is forwarded to the leader, and every member then
/// serves it: at once on a linearizable read, and on a serializable (local)
/// read once the member has applied the entry.
#[tokio::test]
async fn put_on_follower_is_read_from_every_member() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(skiff_tests::LEADER_TIMEOUT).await;
    let follower = cluster.others(leader)[0];

    let put = cluster.must_put(follower, "fruit", "apple").await;
    let revision = put.header.expect("put response has a header").revision;
    assert!(
        revision > 1,
        "a put must move the revision past 1, got {revision}"
    );

    for i in 0..cluster.len() {
        let kv = cluster.must_get(i, "fruit").await;
        let kv =
            kv.unwrap_or_else(|| panic!("linearizable read on {} misses the put", cluster.name(i)));
        assert_eq!(kv.value, b"apple", "value read on {}", cluster.name(i));
        assert_eq!(
            kv.mod_revision,
            revision,
            "mod_revision read on {}",
            cluster.name(i)
        );
    }

    // Wait until each member reports an applied index that covers the put
    // (the leader's commit index after the acknowledgement), then read locally.
    let committed = cluster
        .status(leader)
        .await
        .expect("Status of the leader")
        .raft_index;
    for i in 0..cluster.len() {
        wait_for(
            format!("{} to apply up to index {committed}", cluster.name(i)),
            Duration::from_secs(10),
            async || {
                cluster
                    .status(i)
                    .await
                    .is_ok_and(|s| s.raft_applied_index >= committed)
            },
        )
        .await;
        let kv = cluster.must_get_serializable(i, "fruit").await;
        let kv = kv.unwrap_or_else(|| {
            panic!(
                "serializable read on {} misses a put its applied index covers",
                cluster.name(i)
            )
        });
        assert_eq!(
            kv.value,
            b"apple",
            "serializable value on {}",
            cluster.name(i)
        );
        assert_eq!(
            kv.mod_revision,
            revision,
            "serializable mod_revision on {}",
            cluster.name(i)
        );
    }
}

/// After a write is acknowledged, a linearizable read on any member returns it
/// (never the value before). Keys are overwritten from alternating members so
/// that a stale read has an old value to return.
#[tokio::test]
async fn linearizable_read_after_acknowledged_write_on_every_member() {
    const KEYS: usize = 20;
    const ROUNDS: usize = 3;
    let cluster = Cluster::start(3).await;
    let n = cluster.len();
    let mut step = 0;
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            let key = format!("lin/{k:03}");
            let value = format!("round {round} key {k}");
            let writer = step % n;
            step += 1;
            let put = cluster.must_put(writer, &key, &value).await;
            let revision = put.header.expect("put response has a header").revision;
            // Start with the member after the writer: most often a follower
            // that has not applied the entry yet when it is asked.
            for offset in 1..=n {
                let reader = (writer + offset) % n;
                let kv = cluster.must_get(reader, &key).await.unwrap_or_else(|| {
                    panic!(
                        "{} misses {key} written through {}",
                        cluster.name(reader),
                        cluster.name(writer)
                    )
                });
                assert_eq!(
                    (String::from_utf8_lossy(&kv.value), kv.mod_revision),
                    (value.as_str().into(), revision),
                    "stale linearizable read of {key} on {} after an acknowledged write through {}",
                    cluster.name(reader),
                    cluster.name(writer)
                );
                assert_eq!(
                    kv.version,
                    round as i64 + 1,
                    "version of {key} on {}",
                    cluster.name(reader)
                );
            }
        }
    }
}
