//! Debian's etcdctl 3.4 against a three-member skiff-store: what users type,
//! with the output etcd would give.

use std::collections::BTreeSet;

use skiff_tests::{Cluster, Table, strip_scheme};

#[tokio::test]
async fn etcdctl_put_get_del() {
    let cluster = Cluster::start(3).await;
    for (key, value) in [
        ("fruit/apple", "red"),
        ("fruit/banana", "yellow"),
        ("veg/kale", "green"),
    ] {
        let out = cluster.etcdctl(&["put", key, value]).await;
        assert_eq!(out.success().lines(), ["OK"], "{out}");
    }

    let out = cluster.etcdctl(&["get", "fruit/apple"]).await;
    assert_eq!(out.success().lines(), ["fruit/apple", "red"], "{out}");
    let out = cluster.etcdctl(&["get", "fruit/", "--prefix"]).await;
    assert_eq!(
        out.success().lines(),
        ["fruit/apple", "red", "fruit/banana", "yellow"],
        "{out}"
    );
    let out = cluster
        .etcdctl(&["get", "fruit/", "--prefix", "--keys-only"])
        .await;
    let keys: Vec<&str> = out
        .success()
        .lines()
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(keys, ["fruit/apple", "fruit/banana"], "{out}");
    let out = cluster
        .etcdctl(&["get", "fruit/", "--prefix", "--print-value-only"])
        .await;
    assert_eq!(out.success().lines(), ["red", "yellow"], "{out}");
    let out = cluster
        .etcdctl(&[
            "get",
            "",
            "--from-key",
            "--limit",
            "2",
            "--order",
            "DESCEND",
            "--sort-by",
            "KEY",
        ])
        .await;
    assert_eq!(
        out.success().lines(),
        ["veg/kale", "green", "fruit/banana", "yellow"],
        "{out}"
    );
    let out = cluster
        .etcdctl(&["get", "fruit/apple", "--consistency", "s"])
        .await;
    assert_eq!(
        out.success().lines(),
        ["fruit/apple", "red"],
        "serializable get: {out}"
    );
    let out = cluster.etcdctl(&["get", "nothing"]).await;
    assert_eq!(
        out.success().stdout,
        "",
        "get of a missing key prints nothing: {out}"
    );

    // Revisions as etcd numbers them: three puts on an empty store end at 4.
    let out = cluster.etcdctl(&["get", "fruit/apple", "-w", "json"]).await;
    let json: serde_json::Value =
        serde_json::from_str(&out.success().stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["header"]["revision"], 4, "{out}");
    assert_eq!(json["kvs"][0]["create_revision"], 2, "{out}");
    assert_eq!(json["kvs"][0]["version"], 1, "{out}");

    let out = cluster.etcdctl(&["del", "fruit/apple"]).await;
    assert_eq!(out.success().lines(), ["1"], "{out}");
    let out = cluster.etcdctl(&["del", "fruit/apple"]).await;
    assert_eq!(
        out.success().lines(),
        ["0"],
        "deleting a missing key: {out}"
    );
    let out = cluster.etcdctl(&["put", "fruit/cherry", "dark"]).await;
    out.success();
    let out = cluster.etcdctl(&["del", "fruit/", "--prefix"]).await;
    assert_eq!(out.success().lines(), ["2"], "{out}");
    let out = cluster.etcdctl(&["get", "", "--prefix"]).await;
    assert_eq!(out.success().lines(), ["veg/kale", "green"], "{out}");
}

#[tokio::test]
async fn etcdctl_txn_from_stdin() {
    let cluster = Cluster::start(3).await;
    cluster.etcdctl(&["put", "k1", "v1"]).await.success();

    // Compare holds: the success ops run; etcdctl prints SUCCESS, then a blank
    // line before each op's result.
    let txn = "value(\"k1\") = \"v1\"\n\nput k2 from-success\nget k1\n\nput k2 from-failure\n\n";
    let out = cluster.etcdctl_stdin(&["txn"], txn).await;
    assert_eq!(
        out.success().lines(),
        ["SUCCESS", "", "OK", "", "k1", "v1"],
        "{out}"
    );
    let out = cluster.etcdctl(&["get", "k2"]).await;
    assert_eq!(out.success().lines(), ["k2", "from-success"], "{out}");

    // Compare fails: the failure ops run.
    let txn = "mod(\"k1\") > \"100\"\nversion(\"k2\") = \"1\"\n\nput k3 from-success\n\ndel k2\nput k3 from-failure\n\n";
    let out = cluster.etcdctl_stdin(&["txn"], txn).await;
    assert_eq!(
        out.success().lines(),
        ["FAILURE", "", "1", "", "OK"],
        "{out}"
    );
    let out = cluster.etcdctl(&["get", "k", "--prefix"]).await;
    assert_eq!(
        out.success().lines(),
        ["k1", "v1", "k3", "from-failure"],
        "{out}"
    );

    // A create compare on a missing key is 0.
    let txn = "create(\"absent\") = \"0\"\n\nput absent now-present\n\n\n";
    let out = cluster.etcdctl_stdin(&["txn"], txn).await;
    assert_eq!(out.success().lines(), ["SUCCESS", "", "OK"], "{out}");
}

#[tokio::test]
async fn etcdctl_compaction() {
    let cluster = Cluster::start(3).await;
    for value in ["v1", "v2", "v3", "v4"] {
        cluster.etcdctl(&["put", "k", value]).await.success(); // revisions 2..=5
    }
    let out = cluster.etcdctl(&["compaction", "4"]).await;
    assert_eq!(out.success().lines(), ["compacted revision 4"], "{out}");

    let out = cluster.etcdctl(&["get", "k", "--rev", "3"]).await;
    out.code(1);
    assert!(
        out.stderr
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "a get below the compaction: {out}"
    );
    let out = cluster.etcdctl(&["get", "k", "--rev", "4"]).await;
    assert_eq!(
        out.success().lines(),
        ["k", "v3"],
        "a get at the compacted revision: {out}"
    );
    let out = cluster.etcdctl(&["get", "k"]).await;
    assert_eq!(out.success().lines(), ["k", "v4"], "{out}");
    let out = cluster.etcdctl(&["compaction", "4"]).await;
    out.code(1);
    assert!(
        out.stderr.contains("required revision has been compacted"),
        "compacting twice: {out}"
    );
}

#[tokio::test]
async fn etcdctl_member_list() {
    // Client URLs are compared without their scheme: see `Cluster::client_addr`.
    let cluster = Cluster::start(3).await;
    // Simple output: `ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER`.
    let out = cluster.etcdctl(&["member", "list"]).await;
    let lines = out.success().lines();
    assert_eq!(lines.len(), 3, "one line per member: {out}");
    let mut seen = BTreeSet::new();
    for line in lines {
        let mut fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(fields.len(), 6, "{line:?} in {out}");
        fields[4] = strip_scheme(fields[4]);
        let i = (0..cluster.len())
            .find(|&i| cluster.name(i) == fields[2])
            .unwrap_or_else(|| panic!("unknown member name in {line:?}"));
        let expected = [
            format!("{:x}", cluster.member_id(i)),
            "started".to_string(),
            cluster.name(i).to_string(),
            cluster.peer_url(i),
            cluster.client_addr(i),
            "false".to_string(),
        ];
        assert_eq!(fields, expected, "member list line of {}", cluster.name(i));
        seen.insert(fields[2].to_string());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["s1".to_string(), "s2".to_string(), "s3".to_string()])
    );

    let out = cluster.etcdctl(&["member", "list", "-w", "table"]).await;
    let table = Table::parse(&out.success().stdout);
    assert_eq!(
        table.header,
        [
            "ID",
            "STATUS",
            "NAME",
            "PEER ADDRS",
            "CLIENT ADDRS",
            "IS LEARNER"
        ],
        "{out}"
    );
    assert_eq!(table.rows.len(), 3, "{out}");
    for i in 0..cluster.len() {
        let row = table
            .rows
            .iter()
            .find(|row| row[2] == cluster.name(i))
            .unwrap_or_else(|| panic!("no row for {}: {out}", cluster.name(i)));
        assert_eq!(row[0], format!("{:x}", cluster.member_id(i)), "{out}");
        assert_eq!(
            (row[3].as_str(), strip_scheme(&row[4])),
            (
                cluster.peer_url(i).as_str(),
                cluster.client_addr(i).as_str()
            )
        );
    }
}

#[tokio::test]
async fn etcdctl_endpoint_status_and_health() {
    let cluster = Cluster::start(3).await;
    cluster.etcdctl(&["put", "k", "v"]).await.success();
    let leader = cluster.wait_for_leader(skiff_tests::LEADER_TIMEOUT).await;

    // `--cluster` expands the endpoints from MemberList's client URLs.
    let out = cluster
        .etcdctl(&["endpoint", "status", "--cluster", "-w", "table"])
        .await;
    let table = Table::parse(&out.success().stdout);
    for column in [
        "ENDPOINT",
        "ID",
        "VERSION",
        "DB SIZE",
        "IS LEADER",
        "IS LEARNER",
        "RAFT TERM",
        "RAFT INDEX",
    ] {
        table.index(column);
    }
    cluster.assert_status_table(&table, leader, &out);
    let leader_row = (0..table.rows.len())
        .find(|&r| table.cell(r, "IS LEADER") == "true")
        .expect("a leader row");
    assert_eq!(
        table.cell(leader_row, "ID"),
        format!("{:x}", cluster.member_id(leader)),
        "{out}"
    );
    assert!(
        table.column("IS LEARNER").iter().all(|&l| l == "false"),
        "{out}"
    );
    let terms: BTreeSet<&str> = table.column("RAFT TERM").into_iter().collect();
    assert_eq!(terms.len(), 1, "members agree on the term: {out}");

    let out = cluster.etcdctl(&["endpoint", "health", "--cluster"]).await;
    let report = out.success().combined();
    for i in 0..cluster.len() {
        let healthy = format!(
            "{} is healthy: successfully committed proposal",
            cluster.client_addr(i)
        );
        assert!(report.contains(&healthy), "no {healthy:?} in: {out}");
    }
    assert!(!report.contains("unhealthy"), "{out}");
}
