//! `bench watch-latency`: how long after a put its event reaches watchers.
//!
//! `--watchers` watches of one key are spread over `--clients` Watch
//! streams (as etcd's clients multiplex watches on one stream). One writer
//! then puts the key `--put-total` times at `--put-rate` per second, waiting
//! after each put until every watcher has seen it (or `--command-timeout`
//! passed). As in etcd's benchmark, a sample is the time from the put's
//! acknowledgement to the moment one watcher's stream delivers the event
//! (zero when the event came first), so the commit itself is not counted.
//! The report has one sample per put and watcher (`--put-total` ×
//! `--watchers` requests); `--total` is unused.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use futures_util::stream;
use skiff_proto::etcdserverpb::{
    PutRequest, WatchCreateRequest, WatchRequest, kv_client::KvClient, watch_client::WatchClient,
    watch_request,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::codec::Streaming;
use tonic::transport::Channel;

use super::report::Report;
use super::run::{Progress, Tally, Work, status_text};
use super::{Setup, WatchLatencyArgs, key};

/// What a watch stream reports to the writer.
#[derive(Debug)]
enum Seen {
    /// One watcher received the event of the put at `revision`.
    Event { revision: i64, at: Instant },
    /// The stream failed or was cancelled: the run cannot go on.
    Broken(String),
}

pub async fn run(setup: &Setup, args: &WatchLatencyArgs) -> anyhow::Result<Report> {
    let key = key(0, setup.key_size);
    let watchers = args.watchers;
    let streams = setup.clients.min(watchers as usize);
    // Each watcher sends one event per put before the writer moves on, and
    // each stream at most one failure: this never fills up in a sound run.
    let (seen_tx, mut seen) = mpsc::channel(watchers as usize + streams);
    let mut readers = JoinSet::new();
    for s in 0..streams {
        // Watchers s, s + streams, s + 2 * streams, ... share stream s.
        let on_stream = (watchers - s as u64).div_ceil(streams as u64);
        let (requests, replies) = open_watches(
            setup.channel(s),
            &key,
            &[],
            on_stream,
            setup.request_timeout,
        )
        .await?;
        readers.spawn(read_events(requests, replies, key.clone(), seen_tx.clone()));
    }
    drop(seen_tx);

    let mut kv = KvClient::new(setup.channel(0));
    let timeout = setup.request_timeout;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / args.put_rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let work = Arc::new(Work::new(args.put_total));
    let bar = Progress::start(setup.progress, Arc::clone(&work));
    let mut tally = Tally::with_capacity(usize::try_from(args.put_total * watchers).unwrap_or(0));
    let started = Instant::now();
    for _ in 0..args.put_total {
        tick.tick().await;
        let put_deadline = Instant::now() + timeout;
        let put = PutRequest {
            key: key.clone(),
            value: setup.value.clone(),
            ..Default::default()
        };
        let revision = match tokio::time::timeout_at(put_deadline, kv.put(put)).await {
            Ok(Ok(resp)) => resp.into_inner().header.map_or(0, |h| h.revision),
            Ok(Err(status)) => {
                tally.failed(format!("put: {}", status_text(&status)), watchers);
                work.finish(1);
                continue;
            }
            Err(_) => {
                tally.failed(format!("put: no answer within {timeout:?}"), watchers);
                work.finish(1);
                continue;
            }
        };
        let acked = Instant::now();
        let deadline = acked + timeout;
        let mut received = 0;
        while received < watchers {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some(Seen::Event {
                    revision: r,
                    at: when,
                })) => {
                    // Late events of an earlier put are skipped.
                    if r == revision {
                        tally.ok(when.saturating_duration_since(acked));
                        received += 1;
                    }
                }
                Ok(Some(Seen::Broken(e))) => {
                    bar.stop();
                    bail!("watch stream failed: {e}");
                }
                Ok(None) => {
                    bar.stop();
                    bail!("every watch stream ended");
                }
                Err(_) => {
                    tally.failed(
                        format!("no watch event within {timeout:?}"),
                        watchers - received,
                    );
                    break;
                }
            }
        }
        work.finish(1);
    }
    let elapsed = started.elapsed();
    bar.stop();
    readers.abort_all();
    Ok(tally.into_report(elapsed))
}

/// Opens one Watch stream with `count` watches of `[key, range_end)` (of
/// `key` alone when `range_end` is empty), each confirmed created. Returns
/// the request side (kept open) and the replies.
pub(super) async fn open_watches(
    channel: Channel,
    key: &[u8],
    range_end: &[u8],
    count: u64,
    timeout: std::time::Duration,
) -> anyhow::Result<(
    mpsc::Sender<WatchRequest>,
    Streaming<skiff_proto::etcdserverpb::WatchResponse>,
)> {
    let create = || WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                ..Default::default()
            },
        )),
    };
    // One create in flight at a time: a queue of one is enough.
    let (requests, rx) = mpsc::channel(1);
    // Queued before the stream opens: a server may send no headers until
    // it has something to answer.
    requests
        .try_send(create())
        .map_err(|_| anyhow!("watch request queue closed"))?;
    let outgoing = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let opened = tokio::time::timeout(timeout, WatchClient::new(channel).watch(outgoing))
        .await
        .map_err(|_| anyhow!("open a watch stream: no answer within {timeout:?}"))?
        .map_err(|s| anyhow!("open a watch stream: {}", s.message()))?;
    let mut replies = opened.into_inner();
    for n in 0..count {
        if n > 0 {
            requests
                .send(create())
                .await
                .map_err(|_| anyhow!("watch request queue closed"))?;
        }
        loop {
            let reply = tokio::time::timeout(timeout, replies.message())
                .await
                .map_err(|_| anyhow!("create a watch: no answer within {timeout:?}"))?
                .map_err(|s| anyhow!("create a watch: {}", s.message()))?
                .ok_or_else(|| anyhow!("create a watch: the stream ended"))?;
            if reply.canceled {
                bail!("create a watch: canceled ({})", reply.cancel_reason);
            }
            if reply.created {
                break;
            }
        }
    }
    Ok((requests, replies))
}

/// Passes each event of `key` on to the writer, stamped with the time it
/// arrived; reports a failed or cancelled stream once and ends.
async fn read_events(
    requests: mpsc::Sender<WatchRequest>,
    mut replies: Streaming<skiff_proto::etcdserverpb::WatchResponse>,
    key: Vec<u8>,
    seen: mpsc::Sender<Seen>,
) {
    // Dropping the request side would half-close the stream.
    let _requests = requests;
    let broken = loop {
        match replies.message().await {
            Ok(Some(reply)) => {
                let at = Instant::now();
                if reply.canceled {
                    break format!("watch canceled ({})", reply.cancel_reason);
                }
                for event in reply.events {
                    let Some(kv) = event.kv.filter(|kv| kv.key == key) else {
                        continue;
                    };
                    let revision = kv.mod_revision;
                    if seen.send(Seen::Event { revision, at }).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => break "the stream ended".to_string(),
            Err(status) => break status_text(&status),
        }
    };
    let _ = seen.send(Seen::Broken(broken)).await;
}
