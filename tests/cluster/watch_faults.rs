//! Watches under faults. Writers put (fresh values), delete, range-delete and
//! write multi-key txns under one prefix through every member while the
//! leader is SIGKILLed and restarted three times. Watchers with `prev_kv`
//! run on every member (and on each restarted member, from the start); one
//! whose member dies resumes on another member from the revision after the
//! last event it saw. The prefix's history is then rebuilt independently of
//! the Watch service, from a range at every revision, and every watcher must
//! have received exactly that history: in revision order, without gap or
//! duplicate, each revision in one response, `prev_kv` the version before.
//! Every acknowledged write must be in that history at its revision, and
//! every value in it must have been written by a writer.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::watch_client::WatchClient;
use skiff_proto::etcdserverpb::watch_request::RequestUnion;
use skiff_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest, WatchCreateRequest, WatchRequest,
};
use skiff_proto::mvccpb::event::EventType;
use skiff_proto::mvccpb::{Event, KeyValue};
use skiff_tests::ops::{event_kind, put_op};
use skiff_tests::{Cluster, LEADER_TIMEOUT, prefix_end, wait_for};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const PREFIX: &str = "wf/";
const WRITERS: usize = 3;
/// Keys each writer cycles through, `wf/w{writer}/k{n}`.
const KEYS_PER_WRITER: usize = 6;
/// A writer gives up on an operation after this long (outcome unknown).
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before a writer's next operation after one failed, so that it does
/// not spin on a member that is down.
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Pause before a watcher tries the next member after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const LEADER_KILLS: usize = 3;
/// Acknowledged writes between two steps of the fault schedule.
const ACKS_PER_PHASE: usize = 40;
/// Bound on one phase of the schedule.
const PHASE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the watchers receiving everything once the writers stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What an acknowledged write must have done at its revision: key → the
/// value put, or `None` for a delete.
#[derive(Debug)]
struct Acked {
    revision: i64,
    effects: BTreeMap<String, Option<String>>,
    what: String,
}

#[derive(Debug, Default)]
struct WriteLog {
    acked: Vec<Acked>,
    /// Every value a writer sent, acknowledged or not.
    issued: HashSet<String>,
    /// Writes whose outcome is unknown (failed or timed out).
    unknown: usize,
}

/// One watch response as received.
#[derive(Debug)]
struct Received {
    member: usize,
    events: Vec<Event>,
}

#[derive(Debug, Default)]
struct WatcherLog {
    responses: Vec<Received>,
    /// Every (member, start revision) this watcher was created with.
    creations: Vec<(usize, i64)>,
    /// A response the watcher must never get (cancelled, a bad create).
    failure: Option<String>,
    done: bool,
}

impl WatcherLog {
    fn last_revision(&self) -> Option<i64> {
        self.responses
            .last()
            .and_then(|r| r.events.last())
            .and_then(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision)
    }

    fn event_count(&self) -> usize {
        self.responses.iter().map(|r| r.events.len()).sum()
    }
}

struct WatcherHandle {
    name: String,
    log: Arc<Mutex<WatcherLog>>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_watcher(
    name: String,
    channels: Vec<Channel>,
    member: usize,
    start_revision: i64,
    target: watch::Receiver<i64>,
) -> WatcherHandle {
    let log = Arc::new(Mutex::new(WatcherLog::default()));
    let task = tokio::spawn(run_watcher(
        channels,
        member,
        start_revision,
        target,
        Arc::clone(&log),
    ));
    WatcherHandle { name, log, task }
}

/// Watches `PREFIX` with prev_kv from `start_revision` on `member`, moving to
/// the next member from the revision after the last event seen whenever the
/// stream fails, until an event at or past `target` has arrived.
async fn run_watcher(
    channels: Vec<Channel>,
    mut member: usize,
    start_revision: i64,
    mut target: watch::Receiver<i64>,
    log: Arc<Mutex<WatcherLog>>,
) {
    let reached = |log: &Mutex<WatcherLog>, target: i64| {
        log.lock()
            .expect("watcher log")
            .last_revision()
            .is_some_and(|r| r >= target)
    };
    let mut reconnect = skiff_tests::pace(RECONNECT_PAUSE);
    loop {
        reconnect.tick().await;
        if reached(&log, *target.borrow()) {
            log.lock().expect("watcher log").done = true;
            return;
        }
        let next = log
            .lock()
            .expect("watcher log")
            .last_revision()
            .map_or(start_revision, |r| r + 1);
        let (requests, rx) = mpsc::channel(1);
        let create = WatchCreateRequest {
            key: PREFIX.into(),
            range_end: prefix_end(PREFIX.as_bytes()),
            start_revision: next,
            prev_kv: true,
            ..Default::default()
        };
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .expect("queue a create request");
        let opened = WatchClient::new(channels[member].clone())
            .watch(ReceiverStream::new(rx))
            .await;
        let mut responses = match opened {
            Ok(responses) => responses.into_inner(),
            Err(_) => {
                member = (member + 1) % channels.len();
                continue;
            }
        };
        let mut created = false;
        loop {
            let message = tokio::select! {
                message = responses.message() => message,
                changed = target.changed() => {
                    if changed.is_err() {
                        return; // the test is over
                    }
                    if reached(&log, *target.borrow()) {
                        log.lock().expect("watcher log").done = true;
                        return;
                    }
                    continue;
                }
            };
            let Ok(Some(response)) = message else {
                break; // the member died or closed the stream
            };
            let mut log_now = log.lock().expect("watcher log");
            if !created {
                if !response.created || response.canceled || !response.events.is_empty() {
                    log_now.failure = Some(format!(
                        "first response is no plain `created`: {response:?}"
                    ));
                    return;
                }
                created = true;
                log_now.creations.push((member, next));
                continue;
            }
            if response.canceled || response.created {
                log_now.failure = Some(format!("unexpected response: {response:?}"));
                return;
            }
            if response.events.is_empty() {
                continue;
            }
            log_now.responses.push(Received {
                member,
                events: response.events,
            });
            if log_now
                .last_revision()
                .is_some_and(|r| r >= *target.borrow())
            {
                log_now.done = true;
                return;
            }
        }
        drop(requests);
        member = (member + 1) % channels.len();
    }
}

fn key(writer: usize, n: usize) -> String {
    format!("{PREFIX}w{writer}/k{}", n % KEYS_PER_WRITER)
}

/// Writes under `wf/w{writer}/` through every member in turn until `stop`.
async fn run_writer(
    writer: usize,
    clients: Vec<KvClient<Channel>>,
    log: Arc<Mutex<WriteLog>>,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut retry = skiff_tests::pace(WRITE_RETRY_PAUSE);
    for n in 0usize.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut client = clients[(writer + n) % clients.len()].clone();
        let value = |k: &str| format!("w{writer}-op{n}-{k}");
        let outcome: Result<Option<Acked>, ()> = match n % 10 {
            // A put of a fresh value.
            0..=4 | 8 => {
                let k = key(writer, n * 5 + writer);
                let v = value(&k);
                log.lock().expect("write log").issued.insert(v.clone());
                let request = PutRequest {
                    key: k.clone().into_bytes(),
                    value: v.clone().into_bytes(),
                    ..Default::default()
                };
                match tokio::time::timeout(OP_TIMEOUT, client.put(request)).await {
                    Ok(Ok(response)) => Ok(Some(Acked {
                        revision: response.into_inner().header.expect("header").revision,
                        effects: [(k.clone(), Some(v))].into(),
                        what: format!("put {k}"),
                    })),
                    _ => Err(()),
                }
            }
            // A delete of one key, or of the writer's first three keys.
            5 | 6 | 9 => {
                let (k, range_end) = if n % 10 == 9 {
                    (key(writer, 0), key(writer, 3).into_bytes())
                } else {
                    (key(writer, n * 3), Vec::new())
                };
                let request = DeleteRangeRequest {
                    key: k.clone().into_bytes(),
                    range_end,
                    prev_kv: true,
                };
                match tokio::time::timeout(OP_TIMEOUT, client.delete_range(request)).await {
                    Ok(Ok(response)) => {
                        let response = response.into_inner();
                        let deleted: BTreeMap<String, Option<String>> = response
                            .prev_kvs
                            .iter()
                            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), None))
                            .collect();
                        assert_eq!(deleted.len() as i64, response.deleted, "{response:?}");
                        // Deleting nothing makes no revision.
                        Ok((!deleted.is_empty()).then(|| Acked {
                            revision: response.header.expect("header").revision,
                            effects: deleted,
                            what: format!("delete from {k}"),
                        }))
                    }
                    _ => Err(()),
                }
            }
            // A txn putting three keys, in key order, in one revision.
            _ => {
                let mut keys: Vec<String> = (0..3).map(|i| key(writer, n + i)).collect();
                keys.sort();
                let puts: Vec<(String, String)> = keys
                    .into_iter()
                    .map(|k| {
                        let v = value(&k);
                        (k, v)
                    })
                    .collect();
                {
                    let mut log = log.lock().expect("write log");
                    log.issued.extend(puts.iter().map(|(_, v)| v.clone()));
                }
                let request = TxnRequest {
                    success: puts.iter().map(|(k, v)| put_op(k, v)).collect(),
                    ..Default::default()
                };
                match tokio::time::timeout(OP_TIMEOUT, client.txn(request)).await {
                    Ok(Ok(response)) => Ok(Some(Acked {
                        revision: response.into_inner().header.expect("header").revision,
                        effects: puts.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                        what: "txn of three puts".to_string(),
                    })),
                    _ => Err(()),
                }
            }
        };
        match outcome {
            Ok(acked) => {
                if let Some(acked) = acked {
                    log.lock().expect("write log").acked.push(acked);
                }
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(()) => {
                log.lock().expect("write log").unknown += 1;
                retry.tick().await;
            }
        }
    }
}

/// The prefix's events from `from` through `to`, rebuilt from a serializable
/// range of the prefix at every revision on member `i` (which has applied
/// `to`): what changed between two consecutive revisions, in key order.
async fn history_from_ranges(cluster: &Cluster, i: usize, from: i64, to: i64) -> Vec<Event> {
    let mut client = cluster.client(i);
    let mut state_at = async |revision: i64| -> BTreeMap<Vec<u8>, KeyValue> {
        let request = RangeRequest {
            key: PREFIX.into(),
            range_end: prefix_end(PREFIX.as_bytes()),
            revision,
            serializable: true,
            ..Default::default()
        };
        let response = client
            .range(request)
            .await
            .unwrap_or_else(|e| panic!("range at revision {revision}: {e:?}"))
            .into_inner();
        assert!(!response.more, "a range at {revision} was truncated");
        response
            .kvs
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect()
    };
    let mut events = Vec::new();
    let mut before = state_at(from - 1).await;
    for revision in from..=to {
        let after = state_at(revision).await;
        let keys: std::collections::BTreeSet<&Vec<u8>> =
            before.keys().chain(after.keys()).collect();
        for key in keys {
            let prev = before.get(key).cloned();
            match after.get(key) {
                Some(kv) if kv.mod_revision == revision => events.push(Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv.clone()),
                    prev_kv: prev,
                }),
                Some(kv) => assert_eq!(
                    Some(kv),
                    prev.as_ref(),
                    "{} changed at {revision} without a new mod_revision",
                    String::from_utf8_lossy(key)
                ),
                None if prev.is_some() => events.push(Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key: key.clone(),
                        mod_revision: revision,
                        ..Default::default()
                    }),
                    prev_kv: prev,
                }),
                None => {}
            }
        }
        before = after;
    }
    events
}

fn describe(event: &Event) -> String {
    let kv = event.kv.as_ref().expect("an event has a kv");
    let kind = event_kind(event);
    let prev = event
        .prev_kv
        .as_ref()
        .map(|p| format!("{}@{}", String::from_utf8_lossy(&p.value), p.mod_revision));
    format!(
        "{} {kind} {} = {:?} (version {}, created {}) prev {prev:?}",
        kv.mod_revision,
        String::from_utf8_lossy(&kv.key),
        String::from_utf8_lossy(&kv.value),
        kv.version,
        kv.create_revision
    )
}

/// Checks what one watcher received against the history: order, each
/// revision in one response, and exactly the history's events.
fn check_watcher(name: &str, log: &WatcherLog, history: &[Event]) -> Result<(), String> {
    if let Some(failure) = &log.failure {
        return Err(format!("{name}: {failure}"));
    }
    let mut last = i64::MIN;
    for (n, response) in log.responses.iter().enumerate() {
        let revisions: Vec<i64> = response
            .events
            .iter()
            .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
            .collect();
        if revisions[0] <= last {
            return Err(format!(
                "{name}: response {n} (from s{}) starts at revision {} after revision {last} \
                 was delivered: out of order, duplicated or split",
                response.member + 1,
                revisions[0]
            ));
        }
        if revisions.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "{name}: response {n} is out of order: {revisions:?}"
            ));
        }
        last = *revisions.last().expect("responses with events only");
    }
    let received: Vec<&Event> = log.responses.iter().flat_map(|r| &r.events).collect();
    let mismatch = received
        .iter()
        .zip(history)
        .position(|(got, want)| *got != want);
    if let Some(at) =
        mismatch.or((received.len() != history.len()).then_some(received.len().min(history.len())))
    {
        let show = |events: &[&Event]| {
            events[at.saturating_sub(2)..(at + 3).min(events.len())]
                .iter()
                .map(|e| format!("    {}", describe(e)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let history: Vec<&Event> = history.iter().collect();
        return Err(format!(
            "{name}: event {at} differs from the history ({} received, {} in the history; \
             created at {:?})\n  received:\n{}\n  history:\n{}",
            received.len(),
            history.len(),
            log.creations,
            show(&received),
            show(&history)
        ));
    }
    Ok(())
}

#[tokio::test]
async fn watchers_see_the_exact_history_across_leader_kills() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let start_revision = cluster.must_revision(leader).await + 1;
    let channels: Vec<Channel> = (0..cluster.len())
        .map(|i| cluster.channel_with_timeout(i, Duration::from_secs(600)))
        .collect();
    let (target_tx, target) = watch::channel(i64::MAX);
    let mut watchers: Vec<WatcherHandle> = (0..cluster.len())
        .map(|i| {
            spawn_watcher(
                format!("watcher on {}", cluster.name(i)),
                channels.clone(),
                i,
                start_revision,
                target.clone(),
            )
        })
        .collect();

    let log = Arc::new(Mutex::new(WriteLog::default()));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let clients = (0..cluster.len()).map(|i| cluster.client(i)).collect();
            tokio::spawn(run_writer(
                w,
                clients,
                Arc::clone(&log),
                Arc::clone(&acks),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let wait_acks = async |phase: String| {
        let goal = acks.load(Ordering::Relaxed) + ACKS_PER_PHASE;
        wait_for(
            format!("{ACKS_PER_PHASE} more acknowledged writes ({phase})"),
            PHASE_TIMEOUT,
            async || acks.load(Ordering::Relaxed) >= goal,
        )
        .await;
    };

    let began = Instant::now();
    wait_acks("healthy".to_string()).await;
    for round in 1..=LEADER_KILLS {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
        cluster.kill(leader).await;
        cluster.wait_for_leader(LEADER_TIMEOUT).await;
        wait_acks(format!("kill {round}: {} down", cluster.name(leader))).await;
        cluster.restart(leader).await;
        watchers.push(spawn_watcher(
            format!("watcher on {} after restart {round}", cluster.name(leader)),
            channels.clone(),
            leader,
            start_revision,
            target.clone(),
        ));
        wait_acks(format!("kill {round}: {} restarted", cluster.name(leader))).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer task");
    }
    let faults_took = began.elapsed();

    // The history, independently of the Watch service.
    let reader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let end_revision = cluster.must_revision(reader).await;
    let history = history_from_ranges(&cluster, reader, start_revision, end_revision).await;
    let last_event_revision = history
        .last()
        .and_then(|e| e.kv.as_ref())
        .map(|kv| kv.mod_revision)
        .expect("the writers wrote");
    target_tx
        .send(last_event_revision)
        .expect("watchers are listening");

    wait_for(
        "every watcher to receive the whole history",
        DRAIN_TIMEOUT,
        async || {
            let pending: Vec<String> = watchers
                .iter()
                .filter(|w| !w.log.lock().expect("watcher log").done)
                .map(|w| {
                    let log = w.log.lock().expect("watcher log");
                    format!(
                        "{} at {:?} after {:?} ({:?})",
                        w.name,
                        log.last_revision(),
                        log.creations,
                        log.failure
                    )
                })
                .collect();
            let failed = watchers
                .iter()
                .any(|w| w.log.lock().expect("watcher log").failure.is_some());
            if pending.is_empty() || failed {
                Ok(())
            } else {
                Err(format!("waiting for {pending:?}"))
            }
        },
    )
    .await;
    for watcher in &watchers {
        watcher.task.abort();
    }

    let write_log = log.lock().expect("write log");
    let mut by_revision: BTreeMap<i64, BTreeMap<String, Option<String>>> = BTreeMap::new();
    for event in &history {
        let kv = event.kv.as_ref().expect("kv");
        let value = (event.r#type == EventType::Put as i32)
            .then(|| String::from_utf8_lossy(&kv.value).into_owned());
        if let Some(value) = &value {
            assert!(
                write_log.issued.contains(value),
                "the history holds a value no writer wrote: {}",
                describe(event)
            );
        }
        by_revision
            .entry(kv.mod_revision)
            .or_default()
            .insert(String::from_utf8_lossy(&kv.key).into_owned(), value);
    }
    for acked in &write_log.acked {
        assert_eq!(
            by_revision.get(&acked.revision),
            Some(&acked.effects),
            "the acknowledged {} at revision {} is not what the history holds there",
            acked.what,
            acked.revision
        );
    }

    let mut failures = Vec::new();
    let mut resumptions = 0;
    for watcher in &watchers {
        let log = watcher.log.lock().expect("watcher log");
        resumptions += log.creations.len().saturating_sub(1);
        if let Err(failure) = check_watcher(&watcher.name, &log, &history) {
            failures.push(failure);
        }
        println!(
            "{}: {} events in {} responses, created at {:?}",
            watcher.name,
            log.event_count(),
            log.responses.len(),
            log.creations
        );
    }
    println!(
        "{LEADER_KILLS} leader kills in {faults_took:?}; revisions {start_revision}..={end_revision}: \
         {} events, {} acknowledged writes, {} of unknown outcome; {resumptions} watcher resumptions",
        history.len(),
        write_log.acked.len(),
        write_log.unknown
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        resumptions >= 1,
        "no watcher had to resume on another member: the test did not test that"
    );
    assert!(
        write_log.acked.len() >= ACKS_PER_PHASE * (2 * LEADER_KILLS + 1) / 2,
        "too few acknowledged writes to check anything"
    );
}
