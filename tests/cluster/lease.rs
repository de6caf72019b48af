//! Leases: grant, keep-alive, time-to-live, list, revoke; expiry decided by
//! the leader and applied through raft, on time, also across a leader kill;
//! a lease kept alive by a client that follows the members across a leader
//! kill, then abandoned.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_proto::etcdserverpb::lease_client::LeaseClient;
use skiff_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest,
};
use skiff_tests::{Cluster, LEADER_TIMEOUT, assert_status, wait_for};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

/// The shortest TTL the store grants with a 1 s election timeout.
const TTL_S: i64 = 2;
/// Expired keys must be gone within this after the TTL.
const EXPIRY_SLACK: Duration = Duration::from_secs(1);
/// The fixture's election timeout.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

fn leases(cluster: &Cluster, i: usize) -> LeaseClient<Channel> {
    LeaseClient::new(cluster.channel(i))
}

async fn grant(cluster: &Cluster, i: usize, ttl: i64) -> i64 {
    let response = leases(cluster, i)
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .expect("lease grant")
        .into_inner();
    assert_eq!(response.ttl, ttl, "granted TTL");
    assert!(response.id > 0, "the server chose an id: {response:?}");
    response.id
}

async fn put_with_lease(cluster: &Cluster, i: usize, key: &str, lease: i64) {
    let request = PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    };
    cluster
        .client(i)
        .put(request)
        .await
        .expect("put with lease");
}

/// Waits until `key` is gone on member `i`; returns when that was seen.
async fn wait_gone(cluster: &Cluster, i: usize, key: &str, timeout: Duration) -> Instant {
    wait_for(format!("{key} to expire"), timeout, async || {
        cluster.must_get(i, key).await.is_none().then(Instant::now)
    })
    .await
}

#[tokio::test]
async fn expired_lease_keys_are_gone_on_time_and_not_before() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster.others(leader)[0];

    let before_grant = Instant::now();
    let id = grant(&cluster, follower, TTL_S).await;
    let after_grant = Instant::now();
    put_with_lease(&cluster, follower, "expiring", id).await;
    let ttl = Duration::from_secs(TTL_S as u64);
    let gone = wait_gone(
        &cluster,
        follower,
        "expiring",
        ttl + EXPIRY_SLACK + Duration::from_secs(5),
    )
    .await;
    assert!(
        gone >= before_grant + ttl,
        "expired {:?} after the grant, before its TTL",
        gone - before_grant
    );
    assert!(
        gone <= after_grant + ttl + EXPIRY_SLACK,
        "expired {:?} after the grant, more than {EXPIRY_SLACK:?} after its TTL",
        gone - after_grant
    );
    let ttl_left = leases(&cluster, leader)
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .expect("time to live")
        .into_inner();
    assert_eq!(
        ttl_left.ttl, -1,
        "an expired lease reports TTL -1: {ttl_left:?}"
    );
}

#[tokio::test]
async fn keep_alive_holds_a_lease_and_revoke_deletes_its_keys_in_one_revision() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let member = cluster.others(leader)[1];
    let id = grant(&cluster, member, TTL_S).await;
    put_with_lease(&cluster, member, "held/a", id).await;
    put_with_lease(&cluster, member, "held/b", id).await;

    // Keep it alive for three TTLs, renewing every TTL/3 as clients do.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = leases(&cluster, member)
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("keep-alive stream")
        .into_inner();
    let until = Instant::now() + Duration::from_secs(3 * TTL_S as u64);
    while Instant::now() < until {
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .expect("send keep-alive");
        let reply = replies
            .message()
            .await
            .expect("keep-alive reply")
            .expect("an answer");
        assert_eq!((reply.id, reply.ttl), (id, TTL_S), "keep-alive answer");
        assert!(
            cluster.must_get(member, "held/a").await.is_some(),
            "a kept-alive lease's key expired"
        );
        let next = Instant::now() + Duration::from_millis(TTL_S as u64 * 1000 / 3);
        wait_for("the next renewal", Duration::from_secs(2), async || {
            Instant::now() >= next
        })
        .await;
    }

    let ttl = leases(&cluster, leader)
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .expect("time to live")
        .into_inner();
    assert_eq!(ttl.granted_ttl, TTL_S);
    assert!(ttl.ttl > 0 && ttl.ttl <= TTL_S, "remaining TTL {ttl:?}");
    assert_eq!(ttl.keys, vec![b"held/a".to_vec(), b"held/b".to_vec()]);
    let listed = leases(&cluster, leader)
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner();
    assert_eq!(
        listed.leases.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![id]
    );

    let before = cluster.must_revision(leader).await;
    leases(&cluster, leader)
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .expect("revoke");
    assert!(
        cluster.must_get(leader, "held/a").await.is_none()
            && cluster.must_get(leader, "held/b").await.is_none()
    );
    assert_eq!(
        cluster.must_revision(leader).await,
        before + 1,
        "both keys deleted in one revision"
    );
    let reply_after = {
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .expect("send keep-alive");
        replies
            .message()
            .await
            .expect("keep-alive reply")
            .expect("an answer")
    };
    assert_eq!(
        reply_after.ttl, 0,
        "keep-alive of a revoked lease answers TTL 0"
    );
}

#[tokio::test]
async fn lease_expires_on_time_across_a_leader_kill() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let survivor = cluster.others(leader)[0];
    let ttl_s = 4;
    let before_grant = Instant::now();
    let id = grant(&cluster, survivor, ttl_s).await;
    let after_grant = Instant::now();
    put_with_lease(&cluster, survivor, "survives", id).await;
    cluster.kill(leader).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let ttl = Duration::from_secs(ttl_s as u64);
    let gone = wait_gone(
        &cluster,
        survivor,
        "survives",
        ttl + Duration::from_secs(10),
    )
    .await;
    assert!(
        gone >= before_grant + ttl,
        "cut short: gone {:?} after the grant",
        gone - before_grant
    );
    assert!(
        gone <= after_grant + ttl + ELECTION_TIMEOUT + EXPIRY_SLACK,
        "extended: gone {:?} after the grant",
        gone - after_grant
    );
}

#[tokio::test]
async fn lease_errors_are_etcds() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let mut client = leases(&cluster, leader);
    assert_status(
        "revoke an unknown lease",
        client.lease_revoke(LeaseRevokeRequest { id: 12345 }).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_status(
        "grant a too large TTL",
        client
            .lease_grant(LeaseGrantRequest {
                ttl: 9_000_000_001,
                id: 0,
            })
            .await,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    );
    client
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 77 })
        .await
        .expect("grant with a chosen id");
    assert_status(
        "grant an existing id",
        client
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 77 })
            .await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
    let short = client
        .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    assert_eq!(short.ttl, TTL_S, "a TTL below the minimum is raised to it");
    let unknown = client
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 999,
            keys: false,
        })
        .await
        .expect("time to live")
        .into_inner();
    assert_eq!(unknown.ttl, -1, "an unknown lease reports TTL -1");
}

/// One answered keep-alive.
#[derive(Debug, Clone, Copy)]
struct Renewal {
    member: usize,
    sent: Instant,
    answered: Instant,
}

/// Pause before the keeper tries the next member after a failure.
const KEEPER_RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// How long the keeper waits for the answers still due once told to stop.
const KEEPER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps lease `id` alive as etcd's client does: a keep-alive stream on one
/// member, a renewal every TTL/3 whether or not the last was answered, and
/// on a broken stream the next member. Once `stop` is set it sends nothing
/// more and returns after the renewals still due are answered.
async fn keep_lease_alive(
    channels: Vec<Channel>,
    mut member: usize,
    id: i64,
    renewals: Arc<Mutex<Vec<Renewal>>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let period = Duration::from_millis(TTL_S as u64 * 1000 / 3);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconnect = skiff_tests::pace(KEEPER_RECONNECT_PAUSE);
    loop {
        reconnect.tick().await;
        let (requests, rx) = mpsc::channel(4);
        let opened = LeaseClient::new(channels[member].clone())
            .lease_keep_alive(ReceiverStream::new(rx))
            .await;
        let Ok(replies) = opened else {
            member = (member + 1) % channels.len();
            continue;
        };
        let mut replies = replies.into_inner();
        // Send times of the renewals not answered yet, in order.
        let mut due: VecDeque<Instant> = VecDeque::new();
        let mut drain_until: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) && drain_until.is_none() {
                drain_until = Some(Instant::now() + KEEPER_DRAIN_TIMEOUT);
            }
            if drain_until.is_some() && due.is_empty() {
                return Ok(());
            }
            let reply = match drain_until {
                Some(until) => match tokio::time::timeout_at(until, replies.message()).await {
                    Ok(reply) => reply,
                    Err(_) => {
                        return Err(format!(
                            "{} renewals still unanswered after {KEEPER_DRAIN_TIMEOUT:?}",
                            due.len()
                        ));
                    }
                },
                None => tokio::select! {
                    _ = tick.tick() => {
                        if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
                            break;
                        }
                        due.push_back(Instant::now());
                        continue;
                    }
                    reply = replies.message() => reply,
                },
            };
            let Ok(Some(reply)) = reply else {
                break; // the member died: the next one
            };
            let sent = due
                .pop_front()
                .ok_or_else(|| format!("an answer to no renewal: {reply:?}"))?;
            let renewal = Renewal {
                member,
                sent,
                answered: Instant::now(),
            };
            renewals.lock().expect("renewals").push(renewal);
            if reply.ttl != TTL_S {
                return Err(format!("a renewal was answered {reply:?}"));
            }
        }
        if drain_until.is_some() {
            return Err(format!(
                "the keep-alive stream broke with {} renewals unanswered",
                due.len()
            ));
        }
        member = (member + 1) % channels.len();
    }
}

/// A lease kept alive as etcd's client does, on the leader at first, keeps
/// its key for more than two TTLs across a SIGKILL of that leader (the
/// client moves to another member); once the renewals stop, the key is gone
/// within TTL + 1 s of the last answered one (plus an election timeout if
/// the leader changed meanwhile), and not before TTL after it was sent.
#[tokio::test]
async fn kept_alive_lease_outlives_a_leader_kill_and_expires_once_abandoned() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let id = grant(&cluster, leader, TTL_S).await;
    put_with_lease(&cluster, leader, "kept", id).await;
    let channels: Vec<Channel> = (0..cluster.len())
        .map(|i| cluster.channel_with_timeout(i, Duration::from_secs(600)))
        .collect();
    let renewals: Arc<Mutex<Vec<Renewal>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = tokio::spawn(keep_lease_alive(
        channels,
        leader,
        id,
        Arc::clone(&renewals),
        Arc::clone(&stop),
    ));
    let answered = || renewals.lock().expect("renewals").len();
    wait_for(
        "two answered renewals",
        Duration::from_secs(5),
        async || answered() >= 2,
    )
    .await;

    // The worst moment for the client: just before its next renewal, when
    // the lease has the least time left to outlast the election.
    let period = Duration::from_millis(TTL_S as u64 * 1000 / 3);
    let last_sent = renewals
        .lock()
        .expect("renewals")
        .last()
        .expect("renewals")
        .sent;
    let kill_at = last_sent + period - Duration::from_millis(50);
    wait_for("the moment to kill the leader", period, async || {
        Instant::now() >= kill_at
    })
    .await;
    let ttl = Duration::from_secs(TTL_S as u64);
    let killed_at = Instant::now();
    cluster.kill(leader).await;
    let survivor = cluster.others(leader)[0];
    // The key stays through the election and well beyond two TTLs.
    let mut check = tokio::time::interval(Duration::from_millis(100));
    while killed_at.elapsed() < 3 * ttl {
        check.tick().await;
        assert!(
            !keeper.is_finished(),
            "the keeper stopped: {:?}",
            renewals.lock().expect("renewals").last()
        );
        assert!(
            cluster.must_get(survivor, "kept").await.is_some(),
            "the kept-alive lease expired {:?} after the leader's kill; renewals: {:?}",
            killed_at.elapsed(),
            renewals.lock().expect("renewals")
        );
    }
    let moved = renewals
        .lock()
        .expect("renewals")
        .iter()
        .filter(|r| r.member != leader && r.sent > killed_at)
        .count();
    assert!(
        moved >= 3,
        "{moved} renewals answered by another member after the kill"
    );

    for r in renewals.lock().expect("renewals").iter() {
        println!(
            "renewal through s{}: sent {:?}, answered {:?} after the kill (0: before it)",
            r.member + 1,
            r.sent.saturating_duration_since(killed_at),
            r.answered.saturating_duration_since(killed_at)
        );
    }
    let leader_before = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    stop.store(true, Ordering::Relaxed);
    keeper
        .await
        .expect("keeper task")
        .expect("the lease was kept alive");
    let last = *renewals.lock().expect("renewals").last().expect("renewals");
    let gone = wait_gone(&cluster, survivor, "kept", ttl + Duration::from_secs(10)).await;
    let leader_after = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let slack = if leader_after == leader_before {
        EXPIRY_SLACK
    } else {
        EXPIRY_SLACK + ELECTION_TIMEOUT
    };
    assert!(
        gone >= last.sent + ttl,
        "gone {:?} after the last renewal was sent, before its TTL",
        gone - last.sent
    );
    assert!(
        gone <= last.answered + ttl + slack,
        "gone {:?} after the last renewal was answered, more than TTL + {slack:?}",
        gone - last.answered
    );
}
