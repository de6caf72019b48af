//! Fault runs on every change: kill, pause and partition runs of about 20 s
//! each must have linearizable histories and clean watch streams, and a store
//! weakened to answer linearizable reads from local state must be caught.
//!
//! `SKIFF_FAULT_SEED` replays a seed, `SKIFF_FAULT_SECONDS` changes the
//! length of each run; a failing run prints its seed and where its history
//! was saved. Longer, randomized runs: `tests/soak`.

use std::time::Duration;

use skiff_tests::faults::schedule::Nemesis;
use skiff_tests::faults::{self, RunConfig, RunReport};

/// Length of the fault schedule of one run, unless `SKIFF_FAULT_SECONDS` says.
const SECONDS: u64 = 20;

fn config(nemesis: Nemesis) -> RunConfig {
    let seed = std::env::var("SKIFF_FAULT_SEED")
        .ok()
        .map(|s| s.parse().expect("SKIFF_FAULT_SEED is a number"))
        .unwrap_or_else(faults::random_seed);
    let seconds = std::env::var("SKIFF_FAULT_SECONDS")
        .ok()
        .map_or(SECONDS, |s| {
            s.parse().expect("SKIFF_FAULT_SECONDS is a number")
        });
    RunConfig::new(nemesis, seed, Duration::from_secs(seconds))
}

/// A run passes: a linearizable history, clean watches, and enough of both
/// to mean something.
async fn assert_passes(config: RunConfig) -> RunReport {
    let report = faults::run(config).await;
    println!("{report}");
    assert!(
        report.passed(),
        "the fault run failed (report above); replay with SKIFF_FAULT_SEED={}",
        report.config.seed
    );
    let (ok, _, _) = report.outcomes();
    assert!(
        ok >= 500,
        "only {ok} completed operations: too few to check anything"
    );
    assert!(!report.injected.is_empty(), "no fault was injected");
    assert!(
        report.watch.reference_events >= 100,
        "only {} watch events",
        report.watch.reference_events
    );
    report
}

#[tokio::test]
async fn kill_run_is_linearizable() {
    assert_passes(config(Nemesis::Kill)).await;
}

#[tokio::test]
async fn pause_run_is_linearizable() {
    assert_passes(config(Nemesis::Pause)).await;
}

#[tokio::test]
async fn partition_run_is_linearizable() {
    assert_passes(config(Nemesis::Partition)).await;
}

/// Members that answer linearizable reads from local state serve stale
/// reads while isolated: the checker must prove a violation, not give up.
#[tokio::test]
async fn checker_catches_a_store_that_skips_the_read_index() {
    let mut config = config(Nemesis::Partition);
    config.weakened = true;
    let report = faults::run(config).await;
    println!("{report}");
    assert!(
        report.check.violations().next().is_some(),
        "the checker found no violation in a store that serves stale reads (seed {})",
        report.config.seed
    );
    // The failed run was saved, and `check-history` finds the violation again.
    let saved = report.saved.as_ref().expect("a failed run is saved");
    let output = std::process::Command::new(skiff_tests::bins::bin("check-history"))
        .arg(saved)
        .output()
        .expect("run check-history");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "check-history exits 1 on a violation: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("NOT LINEARIZABLE"), "{stdout}");
}

/// The partition the nemesis uses cuts a member off from its peers, not from
/// its clients: the others elect a leader without it, it cannot serve a
/// linearizable read, and once healed it follows the new leader.
#[tokio::test]
async fn an_isolated_member_loses_its_peers_but_not_its_clients() {
    use skiff_proto::etcdserverpb::RangeRequest;
    use skiff_tests::{LEADER_TIMEOUT, wait_for};

    let cluster = skiff_tests::Cluster::start_in_network(3, &[]).await;
    let old = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let old_term = cluster.status(old).await.expect("status").raft_term;
    cluster.isolate(old);
    assert!(cluster.is_isolated(old));
    let others = cluster.others(old);
    let new = wait_for(
        "the two connected members to agree on a new leader",
        LEADER_TIMEOUT,
        async || {
            let a = cluster.status(others[0]).await.ok()?;
            let b = cluster.status(others[1]).await.ok()?;
            let leader = a.leader;
            (leader != 0 && leader == b.leader && leader != cluster.member_id(old))
                .then_some(leader)
        },
    )
    .await;
    // Still reachable by clients: it answers Status, from its own view.
    let status = cluster
        .status(old)
        .await
        .expect("the isolated member answers");
    assert_eq!(
        status.header.expect("header").member_id,
        cluster.member_id(old)
    );
    let read = cluster
        .client(old)
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(
        read.is_err(),
        "an isolated member served a linearizable read: {read:?}"
    );
    cluster.heal(old);
    assert!(!cluster.is_isolated(old));
    wait_for(
        "the healed member to follow the new leader",
        LEADER_TIMEOUT,
        async || {
            let status = cluster.status(old).await.ok()?;
            (status.leader == new && status.raft_term > old_term).then_some(())
        },
    )
    .await;
}
