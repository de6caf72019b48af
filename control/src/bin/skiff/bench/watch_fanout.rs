//! `bench watch-fanout`: many watchers of one prefix under a steady stream
//! of writes, the way an orchestrator's controllers and agents watch the
//! registry.
//!
//! `--watchers` watches of `--prefix` are spread over `--clients` Watch
//! streams. Writers then put keys under the prefix on a fixed schedule of
//! `--put-rate` per second (open loop: a slow put does not delay the next
//! one; up to `--writers` puts are in flight), `--put-total` in all, the
//! keys cycling through `--key-space-size` names. Each stream records when
//! each of its watchers received each event; a sample is the time from the
//! put's acknowledgement to one watcher receiving its event (zero when the
//! event came first), as in `watch-latency`. The report has one sample per
//! put and watcher; its requests/s is events delivered per second, and the
//! puts achieved per second go to stderr. An event that never arrives
//! within `--command-timeout` of the last put counts as failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use skiff_client::keys::prefix_range_end;
use skiff_proto::etcdserverpb::{PutRequest, WatchRequest, WatchResponse, kv_client::KvClient};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::codec::Streaming;

use super::report::Report;
use super::run::{Progress, Tally, Work, status_text};
use super::watch_latency::open_watches;
use super::{Setup, WatchFanoutArgs, key};

/// What one stream saw: per event received, its revision and arrival.
struct Seen {
    /// `(mod revision, arrival)`, one per watcher and event.
    events: Vec<(i64, Instant)>,
    /// Why the stream stopped early, if it did.
    broken: Option<String>,
}

pub async fn run(setup: &Setup, args: &WatchFanoutArgs) -> anyhow::Result<Report> {
    let prefix = args.prefix.clone().into_bytes();
    let range_end = prefix_range_end(&prefix);
    let watchers = args.watchers;
    let streams = setup.clients.min(watchers as usize);
    // The revision of the last put, once every put is done: readers stop
    // when each of their watchers has seen it.
    let (last_tx, last_rx) = watch::channel(None::<i64>);
    let mut readers = JoinSet::new();
    for s in 0..streams {
        let on_stream = (watchers - s as u64).div_ceil(streams as u64);
        let (requests, replies) = open_watches(
            setup.channel(s),
            &prefix,
            &range_end,
            on_stream,
            setup.request_timeout,
        )
        .await?;
        let expected = usize::try_from(on_stream * args.put_total).unwrap_or(0);
        readers.spawn(read_events(
            requests,
            replies,
            on_stream as usize,
            expected,
            last_rx.clone(),
        ));
    }

    let work = Arc::new(Work::new(args.put_total));
    let bar = Progress::start(setup.progress, Arc::clone(&work));
    let in_flight = Arc::new(Semaphore::new(args.writers));
    let interval = Duration::from_secs_f64(1.0 / args.put_rate);
    let mut puts = JoinSet::new();
    let started = Instant::now();
    for i in 0..args.put_total {
        tokio::time::sleep_until(started + interval.mul_f64(i as f64)).await;
        let permit = Arc::clone(&in_flight).acquire_owned().await?;
        let mut kv = KvClient::new(setup.channel(i as usize));
        let mut name = prefix.clone();
        name.extend(key(i % args.key_space_size, setup.key_size));
        let put = PutRequest {
            key: name,
            value: setup.value.clone(),
            ..Default::default()
        };
        let timeout = setup.request_timeout;
        let work = Arc::clone(&work);
        puts.spawn(async move {
            let outcome = match tokio::time::timeout(timeout, kv.put(put)).await {
                Ok(Ok(resp)) => Ok((
                    resp.into_inner().header.map_or(0, |h| h.revision),
                    Instant::now(),
                )),
                Ok(Err(status)) => Err(format!("put: {}", status_text(&status))),
                Err(_) => Err(format!("put: no answer within {timeout:?}")),
            };
            work.finish(1);
            drop(permit);
            outcome
        });
    }
    let mut acked = HashMap::with_capacity(args.put_total as usize);
    let mut tally = Tally::with_capacity(usize::try_from(args.put_total * watchers).unwrap_or(0));
    while let Some(put) = puts.join_next().await {
        match put? {
            Ok((revision, at)) => {
                acked.insert(revision, at);
            }
            Err(text) => tally.failed(text, watchers),
        }
    }
    let put_elapsed = started.elapsed();
    bar.stop();
    eprintln!(
        "puts: {} acknowledged in {:.2} s, {:.1} per second (asked for {})",
        acked.len(),
        put_elapsed.as_secs_f64(),
        acked.len() as f64 / put_elapsed.as_secs_f64(),
        args.put_rate
    );
    let last = acked.keys().max().copied().unwrap_or(0);
    let _ = last_tx.send(Some(last));

    let deadline = Instant::now() + setup.request_timeout;
    let mut delivered = 0u64;
    while let Some(joined) = tokio::time::timeout_at(deadline, readers.join_next())
        .await
        .ok()
        .flatten()
    {
        let seen = joined?;
        if let Some(broken) = seen.broken {
            bail!("watch stream failed: {broken}");
        }
        for (revision, at) in seen.events {
            if let Some(acked_at) = acked.get(&revision) {
                tally.ok(at.saturating_duration_since(*acked_at));
                delivered += 1;
            }
        }
    }
    readers.abort_all();
    let elapsed = started.elapsed();
    let expected = acked.len() as u64 * watchers;
    if delivered < expected {
        tally.failed(
            format!(
                "event not delivered within {:?} of the last put",
                setup.request_timeout
            ),
            expected - delivered,
        );
    }
    Ok(tally.into_report(elapsed))
}

/// Records every event the stream's `watchers` receive until each has seen
/// the revision `last` announces, or the stream fails.
async fn read_events(
    requests: tokio::sync::mpsc::Sender<WatchRequest>,
    mut replies: Streaming<WatchResponse>,
    watchers: usize,
    expected: usize,
    mut last: watch::Receiver<Option<i64>>,
) -> Seen {
    // Dropping the request side would half-close the stream.
    let _requests = requests;
    let mut seen = Seen {
        events: Vec::with_capacity(expected),
        broken: None,
    };
    // The newest revision each watcher has seen.
    let mut newest: HashMap<i64, i64> = HashMap::with_capacity(watchers);
    let caught_up = |newest: &HashMap<i64, i64>, last: Option<i64>| {
        last.is_some_and(|last| newest.len() == watchers && newest.values().all(|r| *r >= last))
    };
    loop {
        tokio::select! {
            reply = replies.message() => match reply {
                Ok(Some(reply)) => {
                    let at = Instant::now();
                    if reply.canceled {
                        seen.broken = Some(format!("watch canceled ({})", reply.cancel_reason));
                        return seen;
                    }
                    for event in &reply.events {
                        if let Some(kv) = &event.kv {
                            seen.events.push((kv.mod_revision, at));
                            let r = newest.entry(reply.watch_id).or_default();
                            *r = (*r).max(kv.mod_revision);
                        }
                    }
                    if caught_up(&newest, *last.borrow()) {
                        return seen;
                    }
                }
                Ok(None) => {
                    seen.broken = Some("the stream ended".to_string());
                    return seen;
                }
                Err(status) => {
                    seen.broken = Some(status_text(&status));
                    return seen;
                }
            },
            changed = last.changed() => {
                if changed.is_err() || caught_up(&newest, *last.borrow()) {
                    return seen;
                }
            }
        }
    }
}
