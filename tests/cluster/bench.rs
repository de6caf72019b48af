//! `skiff bench` against a real three-member cluster: every benchmark makes
//! exactly the requests asked for, none fails, its percentiles are ordered,
//! and the puts are really in the store afterwards.

use serde_json::Value;
use skiff_proto::etcdserverpb::RangeRequest;
use skiff_tests::{Cluster, LEADER_TIMEOUT, RPC_TIMEOUT, wait_for};

/// Runs `skiff -w json bench ARGS`, checks its report and returns it.
async fn bench(cluster: &Cluster, args: &[&str], requests: u64) -> Value {
    let argv: Vec<&str> = ["-w", "json", "bench"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let out = cluster.skiff(&argv).await;
    out.success();
    let report: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{out}"));
    assert_eq!(report["requests"], requests, "{out}");
    assert_eq!(report["succeeded"], requests, "{out}");
    assert_eq!(report["failed"], 0, "{out}");
    assert_eq!(report["errors"], serde_json::json!([]), "{out}");
    let secs = |field: &str| {
        report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is not a number:\n{out}"))
    };
    let ordered = [
        secs("fastest_s"),
        secs("p50_s"),
        secs("p90_s"),
        secs("p99_s"),
        secs("p99_9_s"),
        secs("slowest_s"),
    ];
    assert!(ordered[0] >= 0.0, "{out}");
    assert!(
        ordered.is_sorted(),
        "percentiles out of order {ordered:?}:\n{out}"
    );
    assert!(
        secs("average_s") >= ordered[0] && secs("average_s") <= ordered[5],
        "{out}"
    );
    assert!(
        secs("total_s") > 0.0 && secs("requests_per_s") > 0.0,
        "{out}"
    );
    let counted: u64 = report["histogram"]
        .as_array()
        .unwrap_or_else(|| panic!("no histogram:\n{out}"))
        .iter()
        .map(|bucket| bucket["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, requests, "{out}");
    report
}

#[tokio::test]
async fn bench_every_benchmark_against_a_cluster() {
    let cluster = Cluster::start(3).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;

    let put = bench(
        &cluster,
        &[
            "put",
            "--total",
            "200",
            "--clients",
            "4",
            "--conns",
            "2",
            "--key-space-size",
            "200",
            "--sequential-keys",
        ],
        200,
    )
    .await;
    assert_eq!(put["benchmark"], "put");
    // Keys 00000000 to 00000199, on every member.
    for i in 0..cluster.len() {
        let count = RangeRequest {
            key: b"00000000".to_vec(),
            range_end: b"00000200".to_vec(),
            serializable: true,
            count_only: true,
            ..Default::default()
        };
        wait_for(
            format!("200 keys on {}", cluster.name(i)),
            RPC_TIMEOUT,
            async || {
                let got = cluster.must_range(i, count.clone()).await.count;
                (got == 200).then_some(()).ok_or(format!("{got} keys"))
            },
        )
        .await;
    }

    bench(
        &cluster,
        &[
            "range",
            "00000000",
            "00000200",
            "--total",
            "100",
            "--clients",
            "2",
            "--conns",
            "2",
            "--consistency",
            "s",
        ],
        100,
    )
    .await;
    bench(
        &cluster,
        &[
            "txn-put",
            "--total",
            "50",
            "--clients",
            "2",
            "--target-leader",
        ],
        50,
    )
    .await;
    let watch = bench(
        &cluster,
        &[
            "watch-latency",
            "--watchers",
            "4",
            "--clients",
            "2",
            "--put-total",
            "10",
            "--put-rate",
            "50",
        ],
        40,
    )
    .await;
    assert_eq!(watch["benchmark"], "watch-latency");
    bench(
        &cluster,
        &["lease-keepalive", "--total", "50", "--clients", "2"],
        50,
    )
    .await;
    // Each client's lease is revoked at the end.
    let leases = cluster.skiff(&["lease", "list"]).await;
    leases.success();
    assert_eq!(leases.stdout, "found 0 leases\n", "{leases}");

    // The simple report, as etcd's benchmark prints it.
    let simple = cluster
        .skiff(&["bench", "range", "00000000", "--total", "20"])
        .await;
    simple.success();
    for section in [
        "Summary:",
        "Response time histogram:",
        "Latency distribution:",
    ] {
        assert!(simple.lines().contains(&section), "no {section}:\n{simple}");
    }
    assert!(
        simple.lines().iter().any(|l| l.starts_with("  99.9% in ")),
        "{simple}"
    );
}

#[tokio::test]
async fn bench_bad_input_names_the_flag() {
    // Checked before anything is dialed: no cluster needed.
    let out =
        skiff_tests::cmd::skiff("127.0.0.1:1", &["bench", "put", "--clients", "0"], None).await;
    out.code(1);
    assert_eq!(out.stdout, "", "{out}");
    assert!(out.stderr.contains("--clients must be at least 1"), "{out}");
}
