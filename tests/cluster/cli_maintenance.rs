//! The `skiff` CLI's maintenance commands against a three-member store:
//! `endpoint hashkv`, `defrag`, `alarm list|disarm` and `move-leader`, each
//! checked for etcdctl's output and for its effect through gRPC.

use std::collections::BTreeSet;
use std::net::TcpListener;

use skiff_proto::etcdserverpb::{AlarmRequest, AlarmResponse, PutRequest};
use skiff_tests::{Cluster, LEADER_TIMEOUT, Table, cmd, strip_scheme};

use crate::maintenance::hash_kv;

/// Puts `n` keys under `prefix` through the leader; the revision of the last.
async fn put_some(cluster: &Cluster, leader: usize, prefix: &str, n: usize) -> i64 {
    let mut last = 0;
    for i in 0..n {
        last = cluster
            .must_put(leader, format!("{prefix}{i}"), format!("v{i}"))
            .await
            .header
            .expect("header")
            .revision;
    }
    last
}

/// Every member's client address, as `--cluster` prints them.
fn client_addrs(cluster: &Cluster) -> BTreeSet<String> {
    (0..cluster.len()).map(|i| cluster.client_addr(i)).collect()
}

/// A loopback endpoint nobody listens on.
fn closed_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

#[tokio::test]
async fn cli_maintenance_hashkv_agrees_with_grpc_on_every_member() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let last = put_some(&cluster, leader, "hk/", 20).await;
    let mut grpc = BTreeSet::new();
    for i in 0..cluster.len() {
        grpc.insert(hash_kv(&cluster, i, last).await);
    }
    assert_eq!(grpc.len(), 1, "gRPC HashKV agrees: {grpc:?}");
    let expected = grpc.first().expect("a hash").to_string();
    let rev = last.to_string();

    let out = cluster
        .skiff(&["endpoint", "hashkv", "--cluster", "--rev", &rev])
        .await;
    let mut endpoints = BTreeSet::new();
    for line in out.success().lines() {
        let (endpoint, hash) = line
            .split_once(", ")
            .unwrap_or_else(|| panic!("not `endpoint, hash`: {line:?}\n{out}"));
        assert_eq!(hash, expected, "{out}");
        endpoints.insert(strip_scheme(endpoint).to_string());
    }
    assert_eq!(
        endpoints,
        client_addrs(&cluster),
        "one line per member: {out}"
    );

    let out = cluster
        .skiff(&["endpoint", "hashkv", "--rev", &rev, "-w", "table"])
        .await;
    let table = Table::parse(&out.success().stdout);
    assert_eq!(table.header, ["ENDPOINT", "HASH"], "{out}");
    assert_eq!(table.column("HASH"), [expected.as_str(); 3], "{out}");

    let out = cluster
        .skiff(&["endpoint", "hashkv", "--rev", &rev, "-w", "json"])
        .await;
    let json: serde_json::Value = serde_json::from_str(&out.success().stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let entries = json.as_array().expect("an array");
    assert_eq!(entries.len(), 3, "{out}");
    for entry in entries {
        let hashkv = &entry["HashKV"];
        assert_eq!(hashkv["hash"].to_string(), expected, "{out}");
        assert_eq!(hashkv["hash_revision"].as_i64(), Some(last), "{out}");
        assert!(entry["Endpoint"].is_string(), "{out}");
    }

    // An unreachable endpoint gets its own error line and exit status 1;
    // the others still print their hash.
    let dead = closed_endpoint();
    let endpoints = format!("{},{dead}", cluster.client_url(leader));
    let out = cmd::skiff(&endpoints, &["endpoint", "hashkv", "--rev", &rev], None).await;
    out.code(1);
    assert_eq!(
        out.lines(),
        [format!("{}, {expected}", cluster.client_url(leader))],
        "{out}"
    );
    assert_eq!(
        out.stderr.trim_end(),
        format!("Failed to get the hash of endpoint {dead} (connection refused)"),
        "{out}"
    );
}

#[tokio::test]
async fn cli_maintenance_defrag_cluster_succeeds_on_every_member() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    put_some(&cluster, leader, "d/", 30).await;
    cluster
        .skiff(&["kv", "del", "d/", "--prefix"])
        .await
        .success();

    let out = cluster.skiff(&["defrag", "--cluster"]).await;
    let defragmented: BTreeSet<String> = out
        .success()
        .lines()
        .iter()
        .map(|line| {
            line.strip_prefix("Finished defragmenting etcd member[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(|ep| strip_scheme(ep).to_string())
                .unwrap_or_else(|| panic!("unexpected line {line:?}: {out}"))
        })
        .collect();
    assert_eq!(defragmented, client_addrs(&cluster), "{out}");
    assert!(out.stderr.is_empty(), "{out}");

    // The store serves reads and writes as before.
    cluster.must_put(leader, "d/after", "v").await;
    for i in 0..cluster.len() {
        assert_eq!(
            cluster.must_get(i, "d/after").await.map(|kv| kv.value),
            Some(b"v".to_vec()),
            "{}",
            cluster.name(i)
        );
        assert!(cluster.must_get(i, "d/3").await.is_none());
    }

    // A failed endpoint: its own line on stderr, the others finish, exit 1.
    let dead = closed_endpoint();
    let endpoints = format!("{dead},{}", cluster.client_url(leader));
    let out = cmd::skiff(&endpoints, &["defrag"], None).await;
    out.code(1);
    assert_eq!(
        out.lines(),
        [format!(
            "Finished defragmenting etcd member[{}]",
            cluster.client_url(leader)
        )],
        "{out}"
    );
    assert_eq!(
        out.stderr.trim_end(),
        format!("Failed to defragment etcd member[{dead}] (connection refused)"),
        "{out}"
    );
}

/// Alarm GET through gRPC.
async fn alarms(cluster: &Cluster, i: usize) -> AlarmResponse {
    cluster
        .maintenance(i)
        .alarm(AlarmRequest::default())
        .await
        .expect("alarm list")
        .into_inner()
}

#[tokio::test]
async fn cli_maintenance_alarm_list_nospace_disarm() {
    let cluster = Cluster::start_with(3, &["--quota-backend-bytes", "300000"]).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let out = cluster.skiff(&["alarm", "list"]).await;
    assert_eq!(out.success().stdout, "", "no alarm yet: {out}");

    // Fill the store past its quota: NOSPACE is raised.
    let value = vec![b'x'; 10_000];
    let mut refused = false;
    for n in 0..200 {
        let request = PutRequest {
            key: format!("q/{n}").into_bytes(),
            value: value.clone(),
            ..Default::default()
        };
        if cluster.client(leader).put(request).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "writes past the quota are refused");
    let raised = alarms(&cluster, leader).await;
    assert!(!raised.alarms.is_empty(), "an alarm is raised: {raised:?}");
    let expected: Vec<String> = raised
        .alarms
        .iter()
        .map(|a| {
            assert_eq!(a.alarm, 1, "NOSPACE: {raised:?}");
            assert!(cluster.index_of(a.member_id).is_some(), "{raised:?}");
            format!("memberID:{} alarm:NOSPACE", a.member_id)
        })
        .collect();
    let out = cluster.skiff(&["alarm", "list"]).await;
    let listed: Vec<&str> = out.success().lines().iter().map(|l| l.trim_end()).collect();
    assert_eq!(listed, expected, "{out}");
    let out = cluster.skiff(&["alarm", "list", "-w", "table"]).await;
    let table = Table::parse(&out.success().stdout);
    assert_eq!(
        table.column("ALARM"),
        vec!["NOSPACE"; expected.len()],
        "{out}"
    );
    let out = cluster.skiff(&["kv", "put", "q/more", "v"]).await;
    out.code(1);
    assert!(
        out.stderr
            .contains("etcdserver: mvcc: database space exceeded"),
        "{out}"
    );

    // The operator's way out: delete, compact, defragment, disarm.
    cluster
        .skiff(&["kv", "del", "q/", "--prefix"])
        .await
        .success();
    let revision = cluster.must_revision(leader).await.to_string();
    cluster
        .skiff(&["kv", "compact", &revision, "--physical"])
        .await
        .success();
    cluster.skiff(&["defrag", "--cluster"]).await.success();
    let out = cluster.skiff(&["alarm", "disarm"]).await;
    let cleared: Vec<&str> = out.success().lines().iter().map(|l| l.trim_end()).collect();
    assert_eq!(cleared, expected, "disarm prints what it cleared: {out}");
    for i in 0..cluster.len() {
        let left = alarms(&cluster, i).await;
        assert!(left.alarms.is_empty(), "{}: {left:?}", cluster.name(i));
    }
    let out = cluster.skiff(&["alarm", "list"]).await;
    assert_eq!(out.success().stdout, "", "{out}");

    let out = cluster.skiff(&["kv", "put", "q/more", "v"]).await;
    assert_eq!(out.success().lines(), ["OK"], "writes work again: {out}");
    assert_eq!(
        cluster.must_get(leader, "q/more").await.map(|kv| kv.value),
        Some(b"v".to_vec())
    );
    let out = cluster.skiff(&["alarm", "disarm"]).await;
    assert_eq!(out.success().stdout, "", "nothing left to clear: {out}");
}

#[tokio::test]
async fn cli_maintenance_move_leader_to_the_named_member() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let target = cluster.others(leader)[0];
    let (from, to) = (cluster.member_id(leader), cluster.member_id(target));

    let out = cluster.skiff(&["move-leader", &format!("{to:x}")]).await;
    assert_eq!(
        out.success().lines(),
        [format!("Leadership transferred from {from:x} to {to:x}")],
        "{out}"
    );
    assert_eq!(cluster.wait_for_leader(LEADER_TIMEOUT).await, target);
    let out = cluster
        .skiff(&["endpoint", "status", "--cluster", "-w", "table"])
        .await;
    let table = Table::parse(&out.success().stdout);
    cluster.assert_status_table(&table, target, &out);

    // Not hex: a usage error that names the argument.
    let out = cluster.skiff(&["move-leader", "not-an-id"]).await;
    out.code(2);
    assert!(
        out.stderr.contains("TARGET_ID") && out.stderr.contains("invalid member ID \"not-an-id\""),
        "{out}"
    );
    // No such member: refused before anything is sent.
    let ids: BTreeSet<u64> = (0..cluster.len()).map(|i| cluster.member_id(i)).collect();
    let unknown = (1..).find(|id| !ids.contains(id)).expect("a free id");
    let out = cluster
        .skiff(&["move-leader", &format!("{unknown:x}")])
        .await;
    out.code(1);
    assert!(
        out.stderr.starts_with(&format!(
            "Error: no member has the ID {unknown:x} given as TARGET_ID"
        )),
        "{out}"
    );
    // Only followers as endpoints: no leader to ask.
    let followers: Vec<String> = cluster
        .others(target)
        .into_iter()
        .map(|i| cluster.client_url(i))
        .collect();
    let out = cmd::skiff(
        &followers.join(","),
        &["move-leader", &format!("{from:x}")],
        None,
    )
    .await;
    out.code(1);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "Error: no leader endpoint given at [{}]",
            followers.join(" ")
        ),
        "{out}"
    );
    assert_eq!(cluster.wait_for_leader(LEADER_TIMEOUT).await, target);
}
