//! Histories under faults: clients pinned to each member put and read a few
//! keys while the leader is killed and restarted, paused and resumed, and a
//! follower is killed; every operation is recorded with its invoke and return
//! time, and the history must be linearizable (each key a register).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::{PutRequest, RangeRequest};
use skiff_tests::history::{Action, Budget, History, Operation, Outcome, check_registers};
use skiff_tests::{Cluster, LEADER_TIMEOUT, wait_for};
use tonic::Code;
use tonic::transport::Channel;

const CLIENTS_PER_MEMBER: usize = 2;
const KEYS: usize = 3;
/// A client gives up on an operation after this long (outcome unknown for a put).
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Operations recorded between two steps of the fault schedule.
const OPS_PER_PHASE: usize = 200;

#[tokio::test]
async fn history_under_kills_and_pauses_is_linearizable() {
    let mut cluster = Cluster::start(3).await;
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("workload seed {seed}");
    let mut clients = Vec::new();
    for member in 0..cluster.len() {
        for c in 0..CLIENTS_PER_MEMBER {
            let id = member * CLIENTS_PER_MEMBER + c;
            let client = cluster.client(member);
            let (history, stop) = (Arc::clone(&history), Arc::clone(&stop));
            let rng = seed.wrapping_mul(id as u64 + 1) | 1;
            clients.push(tokio::spawn(run_client(id, client, history, stop, rng)));
        }
    }

    let wait_ops = async |phase: &str| {
        let target = history.len() + OPS_PER_PHASE;
        wait_for(
            format!("{OPS_PER_PHASE} more operations ({phase})"),
            Duration::from_secs(60),
            async || history.len() >= target,
        )
        .await;
    };
    wait_ops("healthy").await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.kill(leader).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    wait_ops("leader killed").await;
    cluster.restart(leader).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    wait_ops("old leader restarted").await;

    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.pause(leader);
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    wait_ops("leader paused").await;
    cluster.resume(leader);
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    wait_ops("old leader resumed").await;

    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster.others(leader)[0];
    cluster.kill(follower).await;
    wait_ops("follower killed").await;
    cluster.restart(follower).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    wait_ops("follower restarted").await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    let operations = history.operations();
    let (puts, gets, unknown) = summary(&operations);
    println!(
        "history: {} operations: {puts} acknowledged puts, {gets} reads, {unknown} puts of unknown outcome",
        operations.len()
    );
    assert!(
        puts >= 100 && gets >= 100,
        "too few completed operations to check anything"
    );
    let report = check_registers(&operations, Budget::DEFAULT);
    println!("{report}");
    assert!(
        report.is_linearizable(),
        "{} of {KEYS} keys have a non-linearizable history, {} undecided (printed above)",
        report.violations().count(),
        report.undecided().count()
    );
}

/// (acknowledged puts, completed reads, puts of unknown outcome).
fn summary(operations: &[Operation]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for op in operations {
        match (&op.action, op.outcome) {
            (_, Outcome::Failed) => {}
            (Action::Get { .. }, _) => counts.1 += 1,
            (_, Outcome::Ok) => counts.0 += 1,
            (_, Outcome::Unknown) => counts.2 += 1,
        }
    }
    counts
}

/// Puts unique values and reads them back (linearizable) on random keys
/// through one member until told to stop.
async fn run_client(
    id: usize,
    mut client: KvClient<Channel>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    mut rng: u64,
) {
    let mut seq = 0u64;
    let mut retry = skiff_tests::pace(Duration::from_millis(20));
    while !stop.load(Ordering::Relaxed) {
        let key = format!("hist/{}", next(&mut rng) % KEYS as u64);
        let completed = if next(&mut rng).is_multiple_of(2) {
            seq += 1;
            let value = format!("c{id}-{seq}");
            let request = PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                ..Default::default()
            };
            let invoked = history.now();
            match tokio::time::timeout(OP_TIMEOUT, client.put(request)).await {
                Ok(Ok(_)) => {
                    history.ok(id, &key, Action::Put { value }, invoked);
                    true
                }
                // Refused before it was proposed: it did not happen.
                Ok(Err(status)) if status.code() == Code::InvalidArgument => {
                    history.failed(id, &key, Action::Put { value }, invoked);
                    false
                }
                // Anything else may have taken effect, now or later.
                _ => {
                    history.unknown(id, &key, Action::Put { value }, invoked);
                    false
                }
            }
        } else {
            let request = RangeRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            };
            let invoked = history.now();
            match tokio::time::timeout(OP_TIMEOUT, client.range(request)).await {
                Ok(Ok(response)) => {
                    let kv = response.into_inner().kvs.pop();
                    let value = kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                    history.ok(id, &key, Action::Get { value }, invoked);
                    true
                }
                _ => false, // a failed read tells nothing
            }
        };
        if !completed {
            // Do not spin on a member that is down.
            retry.tick().await;
        }
    }
}

/// xorshift64*: enough randomness for a workload, reproducible from a seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
