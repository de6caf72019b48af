//! The `skiff` CLI against a three-member store: `kv`, `member` and
//! `endpoint` commands, with etcdctl's output where etcdctl has one, and one
//! clear error line with exit status 1 when no endpoint answers.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use skiff_tests::{Cluster, Table, cmd};

#[tokio::test]
async fn skiff_kv_put_get_del_compact() {
    let cluster = Cluster::start(3).await;
    for (key, value) in [("app/a", "1"), ("app/b", "2"), ("other", "3")] {
        let out = cluster.skiff(&["kv", "put", key, value]).await;
        assert_eq!(out.success().lines(), ["OK"], "{out}");
    }
    // Written through the CLI, visible through gRPC on every member.
    for i in 0..cluster.len() {
        let kv = cluster
            .must_get(i, "app/b")
            .await
            .unwrap_or_else(|| panic!("app/b missing on {}", cluster.name(i)));
        assert_eq!(kv.value, b"2");
    }

    let out = cluster.skiff(&["kv", "get", "app/a"]).await;
    assert_eq!(out.success().lines(), ["app/a", "1"], "{out}");
    let out = cluster.skiff(&["kv", "get", "app/", "--prefix"]).await;
    assert_eq!(out.success().lines(), ["app/a", "1", "app/b", "2"], "{out}");
    let out = cluster
        .skiff(&["kv", "get", "app/a", "--consistency", "s"])
        .await;
    assert_eq!(out.success().lines(), ["app/a", "1"], "{out}");

    let out = cluster.skiff(&["kv", "put", "app/a", "changed"]).await;
    out.success(); // revision 5
    let out = cluster.skiff(&["kv", "get", "app/a", "--rev", "2"]).await;
    assert_eq!(
        out.success().lines(),
        ["app/a", "1"],
        "a read at a past revision: {out}"
    );

    let out = cluster.skiff(&["kv", "del", "app/a"]).await;
    assert_eq!(out.success().lines(), ["1"], "{out}");
    let out = cluster.skiff(&["kv", "del", "app/", "--prefix"]).await;
    assert_eq!(out.success().lines(), ["1"], "{out}");
    let out = cluster.skiff(&["kv", "get", "app/", "--prefix"]).await;
    assert_eq!(out.success().stdout, "", "{out}");

    let out = cluster.skiff(&["kv", "compact", "5"]).await;
    assert_eq!(out.success().lines(), ["compacted revision 5"], "{out}");
    let out = cluster.skiff(&["kv", "get", "other", "--rev", "3"]).await;
    out.code(1);
    let error_lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(error_lines.len(), 1, "one error line: {out}");
    assert!(error_lines[0].starts_with("Error:"), "{out}");
    assert!(
        error_lines[0].contains("required revision has been compacted"),
        "{out}"
    );
}

#[tokio::test]
async fn skiff_kv_txn_from_stdin() {
    let cluster = Cluster::start(3).await;
    cluster.skiff(&["kv", "put", "k1", "v1"]).await.success();

    let txn = "value(\"k1\") = \"v1\"\n\nput k2 from-success\nget k1\n\nput k2 from-failure\n\n";
    let out = cluster.skiff_stdin(&["kv", "txn"], txn).await;
    assert_eq!(
        out.success().lines(),
        ["SUCCESS", "", "OK", "", "k1", "v1"],
        "{out}"
    );

    let txn = "mod(\"k1\") > \"100\"\n\nput k3 from-success\n\ndel k2\nput k3 from-failure\n\n";
    let out = cluster.skiff_stdin(&["kv", "txn"], txn).await;
    assert_eq!(
        out.success().lines(),
        ["FAILURE", "", "1", "", "OK"],
        "{out}"
    );

    for i in 0..cluster.len() {
        assert!(
            cluster.must_get(i, "k2").await.is_none(),
            "the failure branch deleted k2"
        );
        let kv = cluster.must_get(i, "k3").await.expect("k3");
        assert_eq!(kv.value, b"from-failure");
    }
}

#[tokio::test]
async fn skiff_member_list() {
    let cluster = Cluster::start(3).await;
    let out = cluster.skiff(&["member", "list"]).await;
    let text = &out.success().stdout;
    for i in 0..cluster.len() {
        let line = text
            .lines()
            .find(|line| line.contains(&cluster.client_addr(i)))
            .unwrap_or_else(|| panic!("no line with {}'s client URL: {out}", cluster.name(i)));
        assert!(
            line.contains(cluster.name(i)),
            "{line:?} lacks the name {}",
            cluster.name(i)
        );
        assert!(
            line.contains(&cluster.peer_url(i)),
            "{line:?} lacks the peer URL of {}",
            cluster.name(i)
        );
        assert!(
            line.contains(&format!("{:x}", cluster.member_id(i))),
            "{line:?} lacks the hex id of {}",
            cluster.name(i)
        );
    }
}

#[tokio::test]
async fn skiff_endpoint_status_cluster_table() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(skiff_tests::LEADER_TIMEOUT).await;
    let out = cluster
        .skiff(&["endpoint", "status", "--cluster", "-w", "table"])
        .await;
    let table = Table::parse(&out.success().stdout);
    cluster.assert_status_table(&table, leader, &out);

    let out = cluster.skiff(&["endpoint", "health"]).await;
    let report = out.success().combined();
    for i in 0..cluster.len() {
        let url = cluster.client_addr(i);
        let line = report.lines().find(|l| l.contains(&url));
        let line = line.unwrap_or_else(|| panic!("no health line for {url}: {out}"));
        assert!(
            line.contains("is healthy"),
            "{url} is not reported healthy: {out}"
        );
    }
}

#[tokio::test]
async fn skiff_unreachable_endpoint_is_one_error_line() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    for args in [
        &["kv", "get", "k"][..],
        &["kv", "put", "k", "v"],
        &["member", "list"],
    ] {
        let started = Instant::now();
        let out = cmd::skiff(&endpoint, args, None).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(20),
            "`skiff {}` took {took:?} to give up",
            args.join(" ")
        );
        out.code(1);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "exactly one error line: {out}");
        assert!(
            lines[0].starts_with("Error:"),
            "the line starts with \"Error:\": {out}"
        );
        assert!(out.stdout.trim().is_empty(), "nothing on stdout: {out}");
    }
}
