//! Fault runs: a three-member store, clients on every member, watchers, and
//! a nemesis that kills, pauses or isolates members; then every operation is
//! checked for linearizability and every watch stream against a reference.
//!
//! [`run`] does one run: it starts a cluster in network namespaces of its own
//! ([`Cluster::start_in_network`]), plans the faults from the seed
//! ([`schedule::plan`]), lets the clients ([`workload`]) and watchers
//! ([`watcher`]) work while the faults are injected one at a time and healed,
//! then heals everything, reads every key from every member into the history
//! (so that a lost acknowledged write shows), waits for every watcher to catch
//! up and checks. A run that fails saves its seed, schedule, history and
//! watch streams as JSON; `check-history FILE` checks a saved history again.

pub mod schedule;
pub mod watcher;
pub mod workload;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use skiff_proto::etcdserverpb::RangeRequest;

use crate::history::{self, Action, History, Operation, Outcome};
use crate::watch_check::{self, WatchEvent, WatchReport, WatchStream};
use crate::{Cluster, LEADER_TIMEOUT, wait_for};
use schedule::{FaultKind, InjectedFault, Nemesis, PlannedFault, Rng, Target};

/// The prefix of the workload's keys.
const PREFIX: &str = "faults/";
/// How long the store may take to heal and answer every read after the
/// faults stop.
const HEAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long watchers may take to catch up with the final revision.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Operations done on a healthy cluster before the first fault.
const WARM_UP_OPS: usize = 50;

/// What a run does.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub seed: u64,
    pub nemesis: Nemesis,
    /// How long faults are injected.
    pub duration: Duration,
    pub clients_per_member: usize,
    pub keys: u64,
    /// Start the members with `--unsafe-skip-read-index`: a store the
    /// checker must catch.
    pub weakened: bool,
}

impl RunConfig {
    /// A run of `nemesis` for `duration` with the usual workload: 3 clients
    /// on each member, 6 keys.
    pub fn new(nemesis: Nemesis, seed: u64, duration: Duration) -> RunConfig {
        RunConfig {
            seed,
            nemesis,
            duration,
            clients_per_member: 3,
            keys: 6,
            weakened: false,
        }
    }
}

/// A seed from the clock, for runs that are not replaying one.
pub fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// What a run found.
#[derive(Debug)]
pub struct RunReport {
    pub config: RunConfig,
    pub planned: Vec<PlannedFault>,
    pub injected: Vec<InjectedFault>,
    pub operations: Vec<Operation>,
    pub check: history::Report,
    pub watch: WatchReport,
    /// Where the run was saved, when it failed.
    pub saved: Option<PathBuf>,
}

impl RunReport {
    /// Whether every key's history is linearizable (not undecided) and every
    /// watch stream is clean.
    pub fn passed(&self) -> bool {
        self.check.is_linearizable() && self.watch.is_clean()
    }

    /// (ok, failed, unknown) operation counts.
    pub fn outcomes(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for op in &self.operations {
            match op.outcome {
                Outcome::Ok => counts.0 += 1,
                Outcome::Failed => counts.1 += 1,
                Outcome::Unknown => counts.2 += 1,
            }
        }
        counts
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ok, failed, unknown) = self.outcomes();
        writeln!(
            f,
            "fault run: nemesis {}, seed {}, {} s{}: {} operations ({ok} ok, {failed} failed, {unknown} unknown), {} faults injected",
            self.config.nemesis,
            self.config.seed,
            self.config.duration.as_secs(),
            if self.config.weakened {
                ", WEAKENED store (--unsafe-skip-read-index)"
            } else {
                ""
            },
            self.operations.len(),
            self.injected.len(),
        )?;
        for fault in &self.injected {
            writeln!(f, "  {fault}")?;
        }
        write!(f, "{}", self.check)?;
        writeln!(f, "{}", self.watch)?;
        for problem in self.watch.problems.iter().take(10) {
            writeln!(f, "  {problem}")?;
        }
        if let Some(path) = &self.saved {
            writeln!(
                f,
                "saved to {}; check it again with: cargo run -p skiff-tests --bin check-history -- {}",
                path.display(),
                path.display()
            )?;
        }
        Ok(())
    }
}

/// What a failed run leaves behind.
#[derive(Serialize)]
struct SavedRun<'a> {
    config: &'a RunConfig,
    planned: &'a [PlannedFault],
    injected: &'a [InjectedFault],
    operations: &'a [Operation],
    watch_streams: &'a [WatchStream],
    watch_reference: &'a [WatchEvent],
    final_revision: i64,
}

/// Does one run; see the module docs.
pub async fn run(config: RunConfig) -> RunReport {
    let planned = schedule::plan(config.nemesis, config.seed, config.duration);
    println!(
        "fault run: nemesis {}, seed {}, plan:",
        config.nemesis, config.seed
    );
    for fault in &planned {
        println!("  {fault}");
    }
    let extra: &[&str] = if config.weakened {
        &["--unsafe-skip-read-index"]
    } else {
        &[]
    };
    let mut cluster = Cluster::start_in_network(3, extra).await;
    let members = cluster.len();
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));

    let (until_tx, until_rx) = tokio::sync::watch::channel(None);
    let channels: Vec<_> = (0..members).map(|i| cluster.channel(i)).collect();
    let mut watchers = Vec::new();
    for i in 0..members {
        let watcher = watcher::Watcher::new(i, channels.clone(), i, PREFIX);
        let stream = Arc::clone(&watcher.stream);
        watchers.push((stream, tokio::spawn(watcher.run(until_rx.clone()))));
    }

    let mut clients = Vec::new();
    let mut seeds = Rng::new(config.seed);
    for member in 0..members {
        for c in 0..config.clients_per_member {
            let client = workload::Client {
                id: member * config.clients_per_member + c,
                kv: cluster.client(member),
                history: Arc::clone(&history),
                rng: Rng::new(seeds.next_u64()),
                prefix: PREFIX.to_string(),
                keys: config.keys,
            };
            clients.push(tokio::spawn(client.run(Arc::clone(&stop))));
        }
    }

    wait_for(
        format!("{WARM_UP_OPS} operations before the first fault"),
        Duration::from_secs(30),
        async || history.len() >= WARM_UP_OPS,
    )
    .await;
    let mut injected = Vec::new();
    for fault in &planned {
        tokio::time::sleep(Duration::from_millis(fault.calm_ms)).await;
        injected.push(inject(&mut cluster, fault, &history).await);
    }
    for i in 0..members {
        cluster.heal(i);
    }
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("workload client");
    }

    // Every key from every member, after the faults: a lost write shows.
    let final_revision = final_reads(&cluster, &history, config.keys).await;
    until_tx.send_replace(Some(final_revision));
    let mut streams = Vec::new();
    for (stream, task) in watchers {
        let _ = tokio::time::timeout(CATCH_UP_TIMEOUT, task).await;
        streams.push(stream.lock().expect("watch stream lock").clone());
    }
    let reference = {
        let watcher = watcher::Watcher::new(members, channels, 0, PREFIX);
        let stream = Arc::clone(&watcher.stream);
        let _ = tokio::time::timeout(CATCH_UP_TIMEOUT, watcher.run(until_rx)).await;
        stream.lock().expect("watch stream lock").events.clone()
    };
    drop(until_tx);

    let operations = history.operations();
    let check = tokio::task::spawn_blocking({
        let operations = operations.clone();
        move || history::check_registers(&operations, history::Budget::default())
    })
    .await
    .expect("the checker");
    let acknowledged: Vec<(String, String)> = operations
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .filter_map(|op| match &op.action {
            Action::Put { value }
            | Action::Cas {
                value,
                succeeded: true,
                ..
            } => Some((op.key.clone(), value.clone())),
            _ => None,
        })
        .collect();
    let watch = watch_check::check_watches(&reference, &streams, final_revision, &acknowledged);
    let mut report = RunReport {
        config,
        planned,
        injected,
        operations,
        check,
        watch,
        saved: None,
    };
    if !report.passed() {
        let saved = SavedRun {
            config: &report.config,
            planned: &report.planned,
            injected: &report.injected,
            operations: &report.operations,
            watch_streams: &streams,
            watch_reference: &reference,
            final_revision,
        };
        report.saved = save(&saved, report.config.seed);
    }
    report
}

/// Injects one planned fault, holds it, heals it.
async fn inject(cluster: &mut Cluster, fault: &PlannedFault, history: &History) -> InjectedFault {
    let member = pick(cluster, fault).await;
    let started = history.now();
    tracing::info!(kind = %fault.kind, member = cluster.name(member), "fault");
    match fault.kind {
        FaultKind::Kill => cluster.kill(member).await,
        FaultKind::Pause => cluster.pause(member),
        FaultKind::Partition => cluster.isolate(member),
    }
    tokio::time::sleep(Duration::from_millis(fault.hold_ms)).await;
    match fault.kind {
        FaultKind::Kill => cluster.restart(member).await,
        FaultKind::Pause => cluster.resume(member),
        FaultKind::Partition => cluster.heal(member),
    }
    InjectedFault {
        kind: fault.kind,
        target: fault.target,
        member: cluster.name(member).to_string(),
        started_us: started.as_micros() as u64,
        healed_us: history.now().as_micros() as u64,
    }
}

/// The member a fault hits: the leader, a follower or any member; when there
/// is no leader, any member.
async fn pick(cluster: &Cluster, fault: &PlannedFault) -> usize {
    let n = cluster.len();
    let any = (fault.pick % n as u64) as usize;
    let leader = match fault.target {
        Target::Random => return any,
        Target::Leader | Target::Follower => cluster.leader().await,
    };
    match (fault.target, leader) {
        (Target::Leader, Some(leader)) => leader,
        (Target::Follower, Some(leader)) => {
            let others = cluster.others(leader);
            others[(fault.pick % others.len() as u64) as usize]
        }
        _ => any,
    }
}

/// Reads every key linearizably from every member into the history (client
/// ids from 1000 on); returns the store's revision after them.
async fn final_reads(cluster: &Cluster, history: &History, keys: u64) -> i64 {
    let mut revision = 0;
    for i in 0..cluster.len() {
        let mut kv = cluster.client(i);
        for k in 0..keys {
            let key = workload::key(PREFIX, k);
            let (_, header_revision) = wait_for(
                format!("a linearizable read of {key} from {}", cluster.name(i)),
                HEAL_TIMEOUT,
                async || {
                    let invoked = history.now();
                    let request = RangeRequest {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    };
                    let response = tokio::time::timeout(workload::OP_TIMEOUT, kv.range(request))
                        .await
                        .map_err(|_| "timed out".to_string())?
                        .map_err(|e| e.to_string())?
                        .into_inner();
                    let value = response
                        .kvs
                        .first()
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                    history.ok(
                        1000 + i,
                        &key,
                        Action::Get {
                            value: value.clone(),
                        },
                        invoked,
                    );
                    Ok::<_, String>((value, response.header.map_or(0, |h| h.revision)))
                },
            )
            .await;
            revision = revision.max(header_revision);
        }
    }
    revision
}

/// Saves a failed run as JSON; where it went.
fn save(run: &SavedRun<'_>, seed: u64) -> Option<PathBuf> {
    let dir = std::env::var_os("SKIFF_FAULTS_DIR")
        .map_or_else(|| std::env::temp_dir().join("skiff-faults"), PathBuf::from);
    let path = dir.join(format!("run-{seed}.json"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let json = serde_json::to_vec_pretty(run).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)
    });
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("could not save the run to {}: {e}", path.display());
            None
        }
    }
}
