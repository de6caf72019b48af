//! Leases: grant, keep-alive, time-to-live, list, revoke; expiry decided by
//! the leader and applied through raft, on time, also across a leader kill.

use std::time::Duration;

use skiff_proto::etcdserverpb::lease_client::LeaseClient;
use skiff_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest,
};
use skiff_tests::{Cluster, LEADER_TIMEOUT, assert_status, wait_for};
use tokio::time::Instant;
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
