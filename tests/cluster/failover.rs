//! Members dying and coming back: leader failover, catch-up after a restart,
//! durability of acknowledged writes across a whole-cluster crash, clean
//! shutdown, and a fast, clear error when there is no quorum.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_proto::etcdserverpb::{PutRequest, RangeRequest};
use skiff_tests::{Cluster, LEADER_TIMEOUT, wait_for};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;

/// Bound from the leader's SIGKILL to the first acknowledged write.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

/// SIGKILL of the leader: the survivors elect a new leader and acknowledge a
/// write within 3 s of the kill. A put is started through a survivor every
/// 100 ms; the failover time is when the first of them is acknowledged.
#[tokio::test]
async fn leader_sigkill_gives_new_leader_and_writes_within_3s() {
    let mut cluster = Cluster::start(3).await;
    let old = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.must_put(old, "before-failover", "1").await;
    let survivors = cluster.others(old);
    let clients: Vec<_> = survivors.iter().map(|&i| (i, cluster.client(i))).collect();

    let killed_at = Instant::now();
    cluster.kill(old).await;
    let mut attempts = JoinSet::new();
    // A new attempt every 100 ms (the first at once), whatever the earlier
    // ones are doing.
    let mut every_100ms = tokio::time::interval(Duration::from_millis(100));
    let mut attempt = 0usize;
    let mut failures = Vec::new();
    let (acknowledged_at, through) = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no write acknowledged within 15 s of killing the leader {}; failures: {failures:?}",
            cluster.name(old)
        );
        tokio::select! {
            _ = every_100ms.tick() => {
                let (i, mut client) = clients[attempt % clients.len()].clone();
                let request = PutRequest {
                    key: b"after-failover".to_vec(),
                    value: format!("attempt {attempt}").into_bytes(),
                    ..Default::default()
                };
                attempts.spawn(async move { (i, client.put(request).await.map(|_| Instant::now())) });
                attempt += 1;
            }
            Some(joined) = attempts.join_next() => match joined {
                Ok((i, Ok(at))) => break (at, i),
                Ok((i, Err(status))) => failures.push(format!(
                    "{}: {:?} {}",
                    cluster.name(i),
                    status.code(),
                    status.message()
                )),
                Err(join_error) => panic!("put attempt task failed: {join_error}"),
            },
        }
    };
    let failover = acknowledged_at - killed_at;
    println!(
        "failover time: {failover:?} from SIGKILL of leader {} to the first acknowledged write \
         (through {}, {attempt} attempts, {} failed)",
        cluster.name(old),
        cluster.name(through),
        failures.len()
    );
    attempts.abort_all();
    assert!(
        failover < FAILOVER_BOUND,
        "failover took {failover:?}, more than {FAILOVER_BOUND:?}; failed attempts: {failures:?}"
    );

    let new = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new, old, "the killed member cannot lead");
    for &i in &survivors {
        assert!(
            cluster.must_get(i, "before-failover").await.is_some(),
            "{} lost a write",
            cluster.name(i)
        );
        assert!(
            cluster.must_get(i, "after-failover").await.is_some(),
            "{} misses the write",
            cluster.name(i)
        );
    }
}

/// A member killed with SIGKILL (here the leader) and restarted on its data
/// dir catches up: its local reads see every key written while it was down.
#[tokio::test]
async fn killed_member_restarted_catches_up() {
    const KEYS: usize = 50;
    let mut cluster = Cluster::start(3).await;
    let victim = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster
        .must_put(victim, "down/0-before", "written before the kill")
        .await;
    cluster.kill(victim).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;

    let survivors = cluster.others(victim);
    let mut expected = BTreeMap::new();
    expected.insert(
        "down/0-before".to_string(),
        ("written before the kill".to_string(), 0),
    );
    for k in 0..KEYS {
        let (key, value) = (
            format!("down/{k:03}"),
            format!("written while the victim was down #{k}"),
        );
        let put = cluster
            .must_put(survivors[k % survivors.len()], &key, &value)
            .await;
        expected.insert(key, (value, put.header.expect("put header").revision));
    }

    cluster.restart(victim).await;
    let name = cluster.name(victim).to_string();
    let caught_up = wait_for(
        format!("{name} to serve, from local state, every key written while it was down"),
        Duration::from_secs(30),
        async || {
            let kvs = cluster.must_get_prefix(victim, "down/", true).await;
            (kvs.len() == expected.len()).then_some(kvs)
        },
    )
    .await;
    for kv in caught_up {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let (value, revision) = &expected[&key];
        assert_eq!(
            String::from_utf8_lossy(&kv.value),
            value.as_str(),
            "{key} on {name}"
        );
        if *revision != 0 {
            assert_eq!(
                kv.mod_revision, *revision,
                "mod_revision of {key} on {name}"
            );
        }
    }
    // And it takes part again: the cluster agrees on a leader with it, and a
    // linearizable read through it sees a new write.
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster
        .must_put(survivors[0], "down/after-restart", "x")
        .await;
    assert!(
        cluster
            .must_get(victim, "down/after-restart")
            .await
            .is_some(),
        "{name} misses a new write"
    );
}

/// Every member killed with SIGKILL, then all restarted: every acknowledged
/// write is still there, both writes made before the crash and writes that
/// were acknowledged while the members were being killed.
#[tokio::test]
async fn whole_cluster_killed_and_restarted_keeps_acknowledged_writes() {
    const KEYS: usize = 100;
    let mut cluster = Cluster::start(3).await;
    let mut acknowledged: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for k in 0..KEYS {
        let (key, value) = (format!("crash/a/{k:03}"), format!("value {k}"));
        let put = cluster.must_put(k % cluster.len(), &key, &value).await;
        acknowledged.insert(key, (value, put.header.expect("put header").revision));
    }

    // A writer keeps writing through every member while they are killed; what
    // it got acknowledged must survive too.
    let in_flight: Arc<Mutex<BTreeMap<String, (String, i64)>>> = Arc::default();
    let writer = {
        let clients: Vec<_> = (0..cluster.len()).map(|i| cluster.client(i)).collect();
        let in_flight = Arc::clone(&in_flight);
        tokio::spawn(async move {
            let mut pace = skiff_tests::pace(Duration::from_millis(10));
            for k in 0usize.. {
                pace.tick().await;
                let mut client = clients[k % clients.len()].clone();
                let (key, value) = (format!("crash/b/{k:05}"), format!("in flight {k}"));
                let request = PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                let attempt =
                    tokio::time::timeout(Duration::from_secs(2), client.put(request)).await;
                // Otherwise the outcome is unknown: the write may or may not
                // be there later.
                if let Ok(Ok(response)) = attempt {
                    let revision = response
                        .into_inner()
                        .header
                        .map(|h| h.revision)
                        .unwrap_or_default();
                    in_flight
                        .lock()
                        .expect("lock")
                        .insert(key, (value, revision));
                }
            }
        })
    };
    let n = cluster.len();
    wait_for(
        "the writer's first acknowledged writes",
        Duration::from_secs(10),
        async || in_flight.lock().expect("lock").len() >= 10,
    )
    .await;
    for i in 0..n {
        cluster.kill(i).await;
    }
    writer.abort();
    let _ = writer.await;
    acknowledged.extend(in_flight.lock().expect("lock").clone());
    let last_acknowledged_revision = acknowledged
        .values()
        .map(|(_, r)| *r)
        .max()
        .unwrap_or_default();

    cluster.restart_all().await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    for i in 0..n {
        let kvs = cluster.must_get_prefix(i, "crash/", false).await;
        let found: BTreeMap<String, (String, i64)> = kvs
            .into_iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                (
                    key,
                    (
                        String::from_utf8_lossy(&kv.value).into_owned(),
                        kv.mod_revision,
                    ),
                )
            })
            .collect();
        let lost: Vec<&String> = acknowledged
            .keys()
            .filter(|k| !found.contains_key(*k))
            .collect();
        assert!(
            lost.is_empty(),
            "{} lost {} of {} acknowledged writes after a whole-cluster crash: {lost:?}",
            cluster.name(i),
            lost.len(),
            acknowledged.len()
        );
        for (key, expected) in &acknowledged {
            assert_eq!(
                &found[key],
                expected,
                "{key} on {} after the crash",
                cluster.name(i)
            );
        }
        let revision = cluster.must_revision(i).await;
        assert!(
            revision >= last_acknowledged_revision,
            "{} is at revision {revision}, behind the acknowledged revision {last_acknowledged_revision}",
            cluster.name(i)
        );
    }
}

/// The stale-read trap: a leader paused (SIGSTOP) long enough for the others
/// to elect a new leader and acknowledge a write wakes up still believing it
/// leads. A linearizable read through it must return the new value or fail;
/// returning the old one is a stale read.
#[tokio::test]
async fn resumed_old_leader_serves_no_stale_linearizable_read() {
    let mut cluster = Cluster::start(3).await;
    let old = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.must_put(old, "stale", "old").await;

    cluster.pause(old);
    let new = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(
        new, old,
        "a paused member cannot stay the leader of the others"
    );
    let put = cluster.must_put(new, "stale", "new").await;
    let revision = put.header.expect("put header").revision;
    cluster.resume(old);

    // Read through the old leader at once and until a read succeeds: errors
    // are allowed while it learns of the new term, the old value never is.
    let name = cluster.name(old).to_string();
    let mut client = cluster.client(old);
    let read = wait_for(
        format!("a linearizable read through the resumed old leader {name}"),
        Duration::from_secs(15),
        async || {
            let request = RangeRequest {
                key: b"stale".to_vec(),
                ..Default::default()
            };
            let kv = client.range(request).await?.into_inner().kvs.pop();
            Ok::<_, tonic::Status>(kv)
        },
    )
    .await;
    let kv = read.unwrap_or_else(|| panic!("{name} lost the key"));
    assert_eq!(
        (
            String::from_utf8_lossy(&kv.value).into_owned(),
            kv.mod_revision
        ),
        ("new".to_string(), revision),
        "stale linearizable read through the resumed old leader {name}"
    );
}

/// SIGTERM (and SIGINT) shut a member down cleanly: exit status 0 within the
/// deadline, for the leader and for a follower; the remaining members go on,
/// and the stopped ones restart on their data with nothing lost.
#[tokio::test]
async fn sigterm_shuts_member_down_cleanly() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.must_put(leader, "clean/1", "before stop").await;

    cluster.stop(leader).await;
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster
        .must_put(new_leader, "clean/2", "after the leader stopped")
        .await;

    let follower = cluster
        .others(leader)
        .into_iter()
        .find(|&i| i != new_leader)
        .expect("a follower");
    cluster.restart(leader).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.interrupt(follower).await;
    cluster
        .must_put(leader, "clean/3", "after a follower stopped")
        .await;
    cluster.restart(follower).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;

    for i in 0..cluster.len() {
        let keys: Vec<String> = cluster
            .must_get_prefix(i, "clean/", false)
            .await
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect();
        assert_eq!(
            keys,
            ["clean/1", "clean/2", "clean/3"],
            "keys on {}",
            cluster.name(i)
        );
    }
    for i in 0..cluster.len() {
        cluster.stop(i).await;
    }
}

/// With two of three members killed there is no quorum: a write through the
/// survivor fails with Unavailable "etcdserver: no leader" (or one of etcd's
/// "request timed out" messages) within the request timeout; it never hangs.
#[tokio::test]
async fn write_without_leader_fails_unavailable_within_timeout() {
    const BOUND: Duration = Duration::from_secs(10);
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let others = cluster.others(leader);
    let (survivor, other) = (others[0], others[1]);
    cluster.kill(leader).await;
    cluster.kill(other).await;

    // Twice: right after the kills (the survivor may still think it has a
    // leader) and again once it has had time to notice.
    for attempt in ["right after the kills", "again"] {
        let started = Instant::now();
        let request = PutRequest {
            key: b"no-quorum".to_vec(),
            value: b"lost".to_vec(),
            ..Default::default()
        };
        let result = cluster.client(survivor).put(request).await;
        let took = started.elapsed();
        println!("put without a quorum ({attempt}) answered in {took:?}: {result:?}");
        let status = result.expect_err("a write without a quorum cannot be acknowledged");
        assert_eq!(status.code(), Code::Unavailable, "{attempt}: {status:?}");
        assert!(
            [
                "etcdserver: no leader",
                "etcdserver: request timed out",
                "etcdserver: request timed out, possibly due to previous leader failure",
            ]
            .contains(&status.message()),
            "{attempt}: unexpected message in {status:?}"
        );
        assert!(
            took < BOUND,
            "{attempt}: the write took {took:?} to fail, more than {BOUND:?}"
        );
    }
}
