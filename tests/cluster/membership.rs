//! Membership changes against real members: grow a cluster to four and
//! shrink it back while writes go on, a joining member catching up from a
//! snapshot after the log was purged, learners and promotion, the refusals
//! etcd gives (with its codes and texts, leaving the membership as it was),
//! and the same through etcdctl 3.4 and the skiff CLI.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::maintenance::hash_kv;
use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, PutRequest, RangeRequest, TxnRequest,
};
use skiff_tests::ops::put_op;
use skiff_tests::{Cluster, LEADER_TIMEOUT, assert_status, wait_for};
use tonic::Code;
use tonic::transport::Channel;

/// A snapshot every 200 entries, keeping 50 behind it: a short log, purged
/// early, so that a member that joins late needs a snapshot.
const SHORT_LOG: &[&str] = &[
    "--snapshot-count",
    "200",
    "--snapshot-catchup-entries",
    "50",
];
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

async fn members(cluster: &Cluster, i: usize) -> Vec<Member> {
    cluster
        .cluster_client(i)
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("member list")
        .into_inner()
        .members
}

async fn add(
    cluster: &Cluster,
    via: usize,
    peer_url: &str,
    learner: bool,
) -> Result<Member, tonic::Status> {
    let reply = cluster
        .cluster_client(via)
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![peer_url.to_string()],
            is_learner: learner,
        })
        .await?
        .into_inner();
    let added = reply.member.clone().expect("the added member");
    assert!(
        reply.members.iter().any(|m| m.id == added.id),
        "the reply's member list holds the new member: {reply:?}"
    );
    Ok(added)
}

async fn remove(cluster: &Cluster, via: usize, id: u64) -> Result<Vec<Member>, tonic::Status> {
    Ok(cluster
        .cluster_client(via)
        .member_remove(MemberRemoveRequest { id })
        .await?
        .into_inner()
        .members)
}

/// Waits until member `i` has applied everything member `leader` had when
/// called; returns how long that took.
async fn wait_caught_up(cluster: &Cluster, i: usize, leader: usize) -> Duration {
    let start = Instant::now();
    let target = cluster
        .status(leader)
        .await
        .expect("leader status")
        .raft_index;
    wait_for(
        format!("{} to apply raft index {target}", cluster.name(i)),
        CATCH_UP_TIMEOUT,
        async || {
            let status = cluster.status(i).await.map_err(|e| e.to_string())?;
            if status.raft_applied_index >= target {
                Ok(())
            } else {
                Err(format!("applied {}", status.raft_applied_index))
            }
        },
    )
    .await;
    start.elapsed()
}

/// Waits until every member's snapshot directory holds a snapshot: their
/// logs have then been purged up to it (less the kept catch-up entries).
async fn wait_for_snapshots(cluster: &Cluster, members: &[usize]) {
    for &i in members {
        let dir = cluster.data_dir(i).join("snapshots");
        wait_for(
            format!("a snapshot in {}", dir.display()),
            Duration::from_secs(30),
            async || {
                std::fs::read_dir(&dir)
                    .map(|entries| entries.flatten().count() > 0)
                    .unwrap_or(false)
            },
        )
        .await;
    }
}

/// HashKV of every member in `members` at `revision` agree.
async fn assert_hash_kv_agrees(cluster: &Cluster, members: &[usize], revision: i64) {
    let mut hashes = BTreeMap::new();
    for &i in members {
        let hash = hash_kv(cluster, i, revision).await;
        hashes.insert(cluster.name(i).to_string(), hash);
    }
    let distinct: std::collections::BTreeSet<_> = hashes.values().collect();
    assert_eq!(
        distinct.len(),
        1,
        "HashKV at {revision} differs: {hashes:?}"
    );
}

/// Runs `job(0)` to `job(tasks - 1)` concurrently and waits for them all.
async fn concurrently<F, Fut>(tasks: usize, job: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(job(t))).collect();
    for handle in handles {
        handle.await.expect("a concurrent task panicked");
    }
}

/// Puts keys `w/N` through every member in turn until told to stop, and
/// returns the acknowledged ones with their values.
fn start_writer(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<String, String>> {
    let clients: Vec<KvClient<Channel>> = (0..cluster.len()).map(|i| cluster.client(i)).collect();
    tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("w/{n:06}");
            let value = format!("v{n}");
            let mut client = clients[n as usize % clients.len()].clone();
            let put = client.put(PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                ..Default::default()
            });
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), put).await {
                acked.insert(key, value);
            }
            n += 1;
        }
        acked
    })
}

async fn assert_all_present(cluster: &Cluster, i: usize, acked: &BTreeMap<String, String>) {
    let reply = cluster
        .must_range(
            i,
            RangeRequest {
                key: b"w/".to_vec(),
                range_end: b"w0".to_vec(),
                ..Default::default()
            },
        )
        .await;
    let stored: BTreeMap<String, String> = reply
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    for (key, value) in acked {
        assert_eq!(
            stored.get(key),
            Some(value),
            "acknowledged {key} on {}",
            cluster.name(i)
        );
    }
}

#[tokio::test]
async fn grow_to_four_and_shrink_back_while_writing_joiner_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start_with(3, SHORT_LOG).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    // Enough entries for every member to snapshot and purge its log.
    for n in 0..300 {
        cluster.must_put(n % 3, format!("base/{n}"), "x").await;
    }
    wait_for_snapshots(&cluster, &[0, 1, 2]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&cluster, stop.clone());

    // Add through a follower: the change is forwarded to the leader.
    let s4 = cluster.prepare_joining("s4");
    let follower = cluster.others(leader)[0];
    let added = add(&cluster, follower, &cluster.peer_url(s4), false)
        .await
        .expect("member add");
    assert!(!added.is_learner);
    assert_eq!(added.peer_ur_ls, vec![cluster.peer_url(s4)]);
    cluster.start_joining(s4).await;
    assert_eq!(
        cluster.member_id(s4),
        added.id,
        "the joiner took the added id"
    );
    let took = wait_caught_up(&cluster, s4, leader).await;
    eprintln!("s4 caught up in {took:?}");
    let log = std::fs::read_to_string(cluster.log_path(s4)).expect("s4 log");
    assert!(
        log.contains("installed snapshot"),
        "s4 joined after the log was purged, so it must have installed a snapshot"
    );
    wait_for(
        "four members, all published, in every member list",
        LEADER_TIMEOUT,
        async || {
            for i in 0..4 {
                let list = members(&cluster, i).await;
                if list.len() != 4 || list.iter().any(|m| m.name.is_empty() || m.is_learner) {
                    return Err(format!("{}: {list:?}", cluster.name(i)));
                }
            }
            Ok(())
        },
    )
    .await;

    // Shrink back, asking the member that goes (it never applies its own
    // removal, yet answers), then stop it.
    let after = remove(&cluster, s4, added.id).await.expect("member remove");
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.iter().all(|m| m.id != added.id));
    for i in 0..3 {
        let list = members(&cluster, i).await;
        assert_eq!(list.len(), 3, "{}: {list:?}", cluster.name(i));
    }

    // Writes go on with three, while the removed member still runs for
    // several election timeouts (it campaigns in vain) and after it stops.
    let before = cluster.must_revision(leader).await;
    let removed_at = Instant::now();
    wait_for(
        "writes while the removed member runs",
        Duration::from_secs(15),
        async || {
            cluster.must_revision(leader).await > before + 20
                && removed_at.elapsed() > Duration::from_secs(4)
        },
    )
    .await;
    for i in 0..3 {
        let status = cluster.status(i).await.expect("status");
        assert_eq!(
            status.leader,
            cluster.member_id(leader),
            "{}: the removed member did not unseat the leader",
            cluster.name(i)
        );
    }
    cluster.kill(s4).await;
    let before = cluster.must_revision(leader).await;
    wait_for(
        "writes after the shrink",
        Duration::from_secs(10),
        async || cluster.must_revision(leader).await > before + 20,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    let revision = cluster.must_revision(leader).await;
    assert_hash_kv_agrees(&cluster, &[0, 1, 2], revision).await;
    for i in 0..3 {
        assert_all_present(&cluster, i, &acked).await;
    }
}

#[tokio::test]
async fn learners_are_promoted_in_sync_and_quorum_losing_changes_are_refused() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let ids: Vec<u64> = (0..3).map(|i| cluster.member_id(i)).collect();
    let before = members(&cluster, leader).await;

    // With one of three down, a fourth voter or removing a live voter would
    // leave no quorum of live members.
    let down = cluster.others(leader)[1];
    let up = cluster.others(leader)[0];
    cluster.kill(down).await;
    let s4 = cluster.prepare_joining("s4");
    let not_enough = "etcdserver: re-configuration failed due to not enough started members";
    assert_status(
        "add a voter with 2 of 3 up",
        add(&cluster, up, &cluster.peer_url(s4), false).await,
        Code::FailedPrecondition,
        not_enough,
    );
    assert_status(
        "remove a live voter with 2 of 3 up",
        remove(&cluster, leader, ids[up]).await,
        Code::FailedPrecondition,
        not_enough,
    );
    assert_eq!(members(&cluster, leader).await, before, "nothing changed");
    cluster.restart(down).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;

    // Bad input.
    for bad in ["127.0.0.1:1", "http://127.0.0.1", "unix:///x"] {
        assert_status(
            &format!("add with peer URL {bad}"),
            add(&cluster, leader, bad, false).await,
            Code::InvalidArgument,
            "etcdserver: given member URLs are invalid",
        );
    }
    assert_status(
        "add with a peer URL in use",
        add(&cluster, leader, &cluster.peer_url(0), true).await,
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    );
    for (what, result) in [
        ("remove", remove(&cluster, leader, 0xbad).await.map(|_| ())),
        (
            "promote",
            cluster
                .cluster_client(leader)
                .member_promote(MemberPromoteRequest { id: 0xbad })
                .await
                .map(|_| ()),
        ),
    ] {
        assert_status(
            &format!("{what} an unknown member"),
            result,
            Code::NotFound,
            "etcdserver: member not found",
        );
    }
    assert_status(
        "promote a voter",
        cluster
            .cluster_client(leader)
            .member_promote(MemberPromoteRequest { id: ids[up] })
            .await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    );
    assert_eq!(members(&cluster, leader).await, before, "nothing changed");

    // A learner, not started yet: not in sync, so not promoted; only one.
    let learner = add(&cluster, up, &cluster.peer_url(s4), true)
        .await
        .expect("add learner");
    assert!(learner.is_learner);
    let promote = async |cluster: &Cluster| {
        cluster
            .cluster_client(leader)
            .member_promote(MemberPromoteRequest { id: learner.id })
            .await
    };
    assert_status(
        "promote a learner that is behind",
        promote(&cluster).await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    let s5 = cluster.prepare_joining("s5");
    assert_status(
        "a second learner",
        add(&cluster, leader, &cluster.peer_url(s5), true).await,
        Code::FailedPrecondition,
        "etcdserver: too many learner members in cluster",
    );

    // MemberUpdate before it starts: it will listen on another port.
    let moved = cluster.move_peer_port(s4);
    let updated = cluster
        .cluster_client(up)
        .member_update(MemberUpdateRequest {
            id: learner.id,
            peer_ur_ls: vec![moved.clone()],
        })
        .await
        .expect("member update")
        .into_inner()
        .members;
    let entry = updated.iter().find(|m| m.id == learner.id).expect("listed");
    assert_eq!(entry.peer_ur_ls, vec![moved]);
    assert!(entry.is_learner);

    // Started, it catches up at its new address and can then be promoted.
    cluster.start_joining(s4).await;
    wait_caught_up(&cluster, s4, leader).await;
    wait_for(
        "the learner's promotion",
        Duration::from_secs(20),
        async || promote(&cluster).await.map(|_| ()),
    )
    .await;
    let list = members(&cluster, s4).await;
    let promoted = list.iter().find(|m| m.id == learner.id).expect("listed");
    assert!(!promoted.is_learner, "{list:?}");
    assert_eq!(list.len(), 4);
    // A write through the new voter.
    cluster.must_put(s4, "after/promotion", "1").await;
    for i in 0..3 {
        let value = cluster.must_get(i, "after/promotion").await.expect("key");
        assert_eq!(value.value, b"1");
    }
}

/// Asserts that `out` says "Member ID WHAT cluster ...", the id printed as
/// Go's `%16x` (padded with spaces to 16 characters) by etcdctl and skiff.
#[track_caller]
fn assert_member_line(out: &skiff_tests::CmdOutput, id_hex: &str, what: &str) {
    let line = format!("Member {id_hex:>16} {what} cluster");
    assert!(out.stdout.contains(&line), "{line:?} in {}", out.stdout);
}

#[tokio::test]
async fn etcdctl_and_skiff_member_add_update_promote_remove() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let endpoints = cluster.client_addr(leader);

    // etcdctl member add / list / remove.
    let s4 = cluster.prepare_joining("s4");
    let peer = cluster.peer_url(s4);
    let out = skiff_tests::cmd::etcdctl(
        &endpoints,
        &["member", "add", "s4", &format!("--peer-urls={peer}")],
        None,
    )
    .await;
    out.success();
    let first = out.lines()[0].to_string();
    assert!(
        first.starts_with("Member ") && first.contains(" added to cluster "),
        "{}",
        out.stdout
    );
    let id_hex = first.split_whitespace().nth(1).expect("id").to_string();
    let id = u64::from_str_radix(&id_hex, 16).expect("hex id");
    let initial = out
        .lines()
        .into_iter()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .unwrap_or_else(|| panic!("ETCD_INITIAL_CLUSTER in {}", out.stdout))
        .to_string();
    for i in 0..3 {
        let entry = format!("{}={}", cluster.name(i), cluster.peer_url(i));
        assert!(initial.contains(&entry), "{entry} in {initial}");
    }
    assert!(initial.contains(&format!("s4={peer}")), "{initial}");
    assert!(
        out.stdout
            .contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{}",
        out.stdout
    );
    let list = skiff_tests::cmd::etcdctl(&endpoints, &["member", "list"], None).await;
    list.success();
    let row = list
        .lines()
        .into_iter()
        .find(|l| l.starts_with(&id_hex))
        .unwrap_or_else(|| panic!("{id_hex} in {}", list.stdout))
        .to_string();
    assert!(row.contains("unstarted"), "{row}");
    cluster.start_joining(s4).await;
    assert_eq!(cluster.member_id(s4), id);
    wait_caught_up(&cluster, s4, leader).await;
    let out = skiff_tests::cmd::etcdctl(&endpoints, &["member", "remove", &id_hex], None).await;
    out.success();
    assert_member_line(&out, &id_hex, "removed from");
    cluster.kill(s4).await;
    let out = skiff_tests::cmd::etcdctl(&endpoints, &["member", "remove", &id_hex], None).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("member not found"), "{}", out.stderr);

    // The skiff CLI: add a learner, update it, start it, promote it, remove it.
    let s5 = cluster.prepare_joining("s5");
    let peer = cluster.peer_url(s5);
    let out = cluster
        .skiff(&["member", "add", "s5", "--peer-urls", &peer, "--learner"])
        .await;
    out.success();
    let first = out.lines()[0].to_string();
    let id_hex = first.split_whitespace().nth(1).expect("id").to_string();
    assert!(first.contains(" added to cluster "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("SKIFF_INITIAL_CLUSTER_STATE=\"existing\""),
        "{}",
        out.stdout
    );
    let out = cluster.skiff(&["member", "promote", &id_hex]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("can only promote a learner member which is in sync with leader"),
        "{}",
        out.stderr
    );
    let moved = cluster.move_peer_port(s5);
    let out = cluster
        .skiff(&["member", "update", &id_hex, "--peer-urls", &moved])
        .await;
    out.success();
    assert_member_line(&out, &id_hex, "updated in");
    cluster.start_joining(s5).await;
    wait_caught_up(&cluster, s5, leader).await;
    wait_for(
        "skiff member promote",
        Duration::from_secs(20),
        async || {
            let out = cluster.skiff(&["member", "promote", &id_hex]).await;
            out.status
                .success()
                .then(|| out.stdout.clone())
                .ok_or(out.stderr.clone())
        },
    )
    .await;
    let list = cluster.skiff(&["member", "list", "-w", "json"]).await;
    list.success();
    assert!(
        !list.stdout.contains("\"isLearner\":true"),
        "{}",
        list.stdout
    );
    let out = cluster.skiff(&["member", "remove", &id_hex]).await;
    out.success();
    assert_member_line(&out, &id_hex, "removed from");
    cluster.kill(s5).await;
    let out = cluster.skiff(&["member", "remove", "not-hex"]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("expecting an ID in hex"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn new_member_catches_up_on_100k_keys_from_a_snapshot() {
    const KEYS: usize = 100_000;
    const PER_TXN: usize = 100;
    let mut cluster = Cluster::start_with(3, SHORT_LOG).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let value = vec![b'v'; 100];
    let client = cluster.client(leader);
    concurrently(4, move |w| {
        let mut client = client.clone();
        let value = value.clone();
        async move {
            for batch in (w..KEYS / PER_TXN).step_by(4) {
                let success = (0..PER_TXN)
                    .map(|k| put_op(format!("k/{:06}", batch * PER_TXN + k), &value))
                    .collect();
                client
                    .txn(TxnRequest {
                        success,
                        ..Default::default()
                    })
                    .await
                    .expect("txn of 100 puts");
            }
        }
    })
    .await;
    wait_for_snapshots(&cluster, &[leader]).await;

    let s4 = cluster.prepare_joining("s4");
    let added = add(&cluster, leader, &cluster.peer_url(s4), true)
        .await
        .expect("add learner");
    let start = Instant::now();
    cluster.start_joining(s4).await;
    let spawned = start.elapsed();
    let caught_up = wait_caught_up(&cluster, s4, leader).await + spawned;
    let count = cluster
        .must_range(
            s4,
            RangeRequest {
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
                count_only: true,
                serializable: true,
                ..Default::default()
            },
        )
        .await
        .count;
    assert_eq!(count, KEYS as i64);
    let log = std::fs::read_to_string(cluster.log_path(s4)).expect("s4 log");
    assert!(
        log.contains("installed snapshot"),
        "caught up from a snapshot"
    );
    eprintln!(
        "catch-up: a new member (learner {:x}) applied {KEYS} keys in {caught_up:?} from its start",
        added.id
    );
}

/// The highest `upto=N` of the "purged raft log" lines in member `i`'s log.
fn purged_upto(cluster: &Cluster, i: usize) -> Option<u64> {
    let log = std::fs::read_to_string(cluster.log_path(i)).ok()?;
    log.lines()
        .filter(|l| l.contains("purged raft log"))
        .filter_map(|l| {
            let rest = &l[l.find("upto=")? + "upto=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
}

#[tokio::test]
async fn raft_log_is_purged_behind_snapshots_under_steady_writes() {
    let cluster = Cluster::start_with(3, SHORT_LOG).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let clients: Vec<_> = (0..3).map(|i| cluster.client(i)).collect();
    concurrently(4, move |w| {
        let mut client = clients[w % 3].clone();
        async move {
            for n in 0..250 {
                client
                    .put(PutRequest {
                        key: format!("steady/{w}/{n}").into_bytes(),
                        value: vec![b'x'; 256],
                        ..Default::default()
                    })
                    .await
                    .expect("put");
            }
        }
    })
    .await;
    let last = cluster.status(leader).await.expect("status").raft_index;
    assert!(last >= 1000, "raft index {last}");
    // Every member snapshots every 200 entries and keeps 50 behind: its log
    // holds at most about 250 entries whatever the number written.
    for i in 0..3 {
        wait_for(
            format!(
                "{} to purge its log up to {} or more",
                cluster.name(i),
                last - 450
            ),
            Duration::from_secs(30),
            async || {
                let upto = purged_upto(&cluster, i).unwrap_or(0);
                if upto + 450 >= last {
                    Ok(upto)
                } else {
                    Err(format!("purged up to {upto}"))
                }
            },
        )
        .await;
    }
}
