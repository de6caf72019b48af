//! etcd's Watch service: one bidirectional stream carries many watchers.
//!
//! The apply path publishes what each commit wrote on a bounded broadcast
//! channel. Each watcher is a task that first replays history from storage
//! (from its start revision up to the current one), then follows the
//! broadcast. A watcher that falls behind (the broadcast dropped batches for
//! it, or its client reads slowly) catches up from storage again; one whose
//! next revision was compacted meanwhile is cancelled with
//! `compact_revision`. Events reach a watcher in revision order, without gap
//! or duplicate, and a revision is never split across responses, except
//! when the watcher asked for `fragment`: then a response larger than etcd's
//! limit is sent as consecutive parts, all but the last marked `fragment`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::{Stream, StreamExt};
use prost::Message;
use skiff_proto::etcdserverpb::watch_create_request::FilterType;
use skiff_proto::etcdserverpb::watch_request::RequestUnion;
use skiff_proto::etcdserverpb::watch_server::Watch;
use skiff_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use skiff_proto::mvccpb::Event;
use skiff_proto::mvccpb::event::EventType;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::member::Member;
use crate::mvcc::{Committed, KvError};

/// Responses queued for one client stream (etcd's watcher buffer).
const STREAM_QUEUE_LIMIT: usize = 128;
/// Watchers one stream may hold at once.
const WATCHERS_PER_STREAM_LIMIT: usize = 10_000;
/// Events read from storage per step of a catch-up (a revision is never split).
const REPLAY_PAGE_EVENTS: usize = 1_000;
/// Commits the broadcast keeps for watchers that are behind.
pub const BROADCAST_CAPACITY: usize = 1_024;

/// A response at least this large is split for a watcher that asked for
/// fragments. etcd splits at its max request bytes plus gRPC's overhead (the
/// largest message a member accepts), not at the max request bytes alone.
/// Other watchers get responses of any size: tonic encodes messages without
/// limit by default (etcd raises grpc-go's send limit to 2 GiB for this).
const FRAGMENT_LIMIT_BYTES: usize = super::CLIENT_MESSAGE_LIMIT_BYTES;

/// etcd's message for a watch below the compacted revision.
const COMPACTED_REASON: &str = "etcdserver: mvcc: required revision has been compacted";

pub struct WatchService {
    member: Arc<Member>,
}

impl WatchService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

/// The queue of one client stream. Each item goes out as consecutive
/// messages, so the fragments of one response are never interleaved with
/// another watcher's responses (etcd's clients merge fragments on that
/// assumption).
type Outbox = mpsc::Sender<Result<Vec<WatchResponse>, Status>>;

/// What one watcher selects and how.
#[derive(Debug, Clone)]
struct Spec {
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
}

impl Spec {
    fn from_request(req: &WatchCreateRequest) -> Self {
        let key = if req.key.is_empty() {
            vec![0]
        } else {
            req.key.clone()
        };
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Self {
            key,
            range_end: req.range_end.clone(),
            prev_kv: req.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            progress_notify: req.progress_notify,
            fragment: req.fragment,
        }
    }

    fn matches_key(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else if self.range_end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }

    /// The events of `events` this watcher wants, as it wants them.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| self.matches_key(&kv.key)))
            .filter(|e| {
                let is_put = e.r#type == EventType::Put as i32;
                !(is_put && self.no_put || !is_put && self.no_delete)
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

fn event_revision(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// Bytes one event adds to an encoded `WatchResponse`: the key of field 11
/// (one byte), the length, the event.
fn event_field_len(event: &Event) -> usize {
    let len = event.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// `response` as etcd sends it to a watcher that asked for fragments (its
/// `sendFragments`): whole when it encodes to less than `limit_bytes` or has
/// fewer than two events; otherwise its events in order over several
/// responses, each filled while it stays under `limit_bytes` (one event at
/// least), all but the last marked `fragment`.
fn fragments(mut response: WatchResponse, limit_bytes: usize) -> Vec<WatchResponse> {
    if response.encoded_len() < limit_bytes || response.events.len() < 2 {
        return vec![response];
    }
    let events = std::mem::take(&mut response.events);
    let part = WatchResponse {
        fragment: true,
        ..response
    };
    let empty_len = part.encoded_len();
    let mut parts = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut current_len = empty_len;
    for event in events {
        let len = event_field_len(&event);
        if !current.is_empty() && current_len + len >= limit_bytes {
            parts.push(WatchResponse {
                events: std::mem::take(&mut current),
                ..part.clone()
            });
            current_len = empty_len;
        }
        current_len += len;
        current.push(event);
    }
    parts.push(WatchResponse {
        events: current,
        fragment: false,
        ..part
    });
    parts
}

/// One watcher: replays, then follows the broadcast.
struct Watcher {
    member: Arc<Member>,
    id: i64,
    spec: Spec,
    out: Outbox,
    /// The next revision this watcher has to deliver; shared for progress.
    next_revision: Arc<AtomicI64>,
}

impl Watcher {
    async fn send_events(&self, events: Vec<Event>, header_revision: i64) -> bool {
        if events.is_empty() {
            return true;
        }
        let response = WatchResponse {
            header: Some(self.member.header(header_revision)),
            watch_id: self.id,
            events,
            ..Default::default()
        };
        let responses = if self.spec.fragment {
            fragments(response, FRAGMENT_LIMIT_BYTES)
        } else {
            vec![response]
        };
        self.out.send(Ok(responses)).await.is_ok()
    }

    async fn cancel_compacted(&self) {
        let mvcc = &self.member.shared.mvcc;
        let response = WatchResponse {
            header: Some(self.member.header(mvcc.current_revision())),
            watch_id: self.id,
            canceled: true,
            compact_revision: mvcc.compact_revision(),
            cancel_reason: COMPACTED_REASON.to_string(),
            ..Default::default()
        };
        let _ = self.out.send(Ok(vec![response])).await;
    }

    /// Delivers stored history from the next revision up to the current one.
    /// False when the watcher has ended (compacted, or the client is gone).
    async fn catch_up(&self) -> bool {
        let mvcc = &self.member.shared.mvcc;
        loop {
            let next = self.next_revision.load(Ordering::Acquire);
            let current = mvcc.current_revision();
            if next > current {
                return true;
            }
            let page = match mvcc.events(next, REPLAY_PAGE_EVENTS) {
                Ok(page) => page,
                Err(KvError::Compacted) => {
                    self.cancel_compacted().await;
                    return false;
                }
                Err(e) => {
                    tracing::error!(error = %e, watch_id = self.id, "cannot read watch history");
                    let _ = self.out.send(Err(Status::internal(e.to_string()))).await;
                    return false;
                }
            };
            if !self
                .send_events(self.spec.select(&page.events), current)
                .await
            {
                return false;
            }
            self.next_revision.store(
                page.next_revision.max(next + 1).min(current + 1),
                Ordering::Release,
            );
        }
    }

    async fn run(self, mut live: broadcast::Receiver<Arc<Committed>>) {
        loop {
            if !self.catch_up().await {
                return;
            }
            let received = if self.spec.progress_notify {
                let interval = self.member.timing.watch_progress_notify_interval;
                match tokio::time::timeout(interval, live.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        // Idle and synced: every event up to here was sent.
                        let next = self.next_revision.load(Ordering::Acquire);
                        let progress = WatchResponse {
                            header: Some(self.member.header(next - 1)),
                            watch_id: self.id,
                            ..Default::default()
                        };
                        if self.out.send(Ok(vec![progress])).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            } else {
                live.recv().await
            };
            match received {
                Ok(batch) => {
                    let next = self.next_revision.load(Ordering::Acquire);
                    if batch.revision < next {
                        continue;
                    }
                    let first = batch.events.first().map_or(batch.revision, event_revision);
                    if first > next {
                        // A gap (a snapshot was installed): storage has it all.
                        continue;
                    }
                    let fresh: Vec<Event> = batch
                        .events
                        .iter()
                        .filter(|e| event_revision(e) >= next)
                        .cloned()
                        .collect();
                    if !self
                        .send_events(self.spec.select(&fresh), batch.revision)
                        .await
                    {
                        return;
                    }
                    self.next_revision
                        .store(batch.revision + 1, Ordering::Release);
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        watch_id = self.id,
                        skipped,
                        "watcher fell behind; catching up from storage"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

struct Running {
    task: JoinHandle<()>,
    next_revision: Arc<AtomicI64>,
}

/// Serves one client stream until it ends.
async fn serve_stream(member: Arc<Member>, mut requests: Streaming<WatchRequest>, out: Outbox) {
    let mut watchers: HashMap<i64, Running> = HashMap::new();
    let mut next_id: i64 = 0;
    loop {
        let request = match requests.message().await {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => break,
        };
        watchers.retain(|_, w| !w.task.is_finished());
        let reply = match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                create_watcher(&member, &create, &mut watchers, &mut next_id, &out).await
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                if let Some(w) = watchers.remove(&cancel.watch_id) {
                    w.task.abort();
                }
                Some(WatchResponse {
                    header: Some(member.header(member.shared.mvcc.current_revision())),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                })
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Every event at or below this revision has been queued
                // ahead of this response on the same stream.
                let current = member.shared.mvcc.current_revision();
                let delivered = watchers
                    .values()
                    .map(|w| w.next_revision.load(Ordering::Acquire) - 1)
                    .fold(current, i64::min);
                Some(WatchResponse {
                    header: Some(member.header(delivered)),
                    watch_id: -1,
                    ..Default::default()
                })
            }
            None => None,
        };
        if let Some(reply) = reply
            && out.send(Ok(vec![reply])).await.is_err()
        {
            break;
        }
    }
    for (_, w) in watchers {
        w.task.abort();
    }
}

/// Starts a watcher after sending its "created" reply; returns the reply
/// to send instead when the watcher is refused.
async fn create_watcher(
    member: &Arc<Member>,
    create: &WatchCreateRequest,
    watchers: &mut HashMap<i64, Running>,
    next_id: &mut i64,
    out: &Outbox,
) -> Option<WatchResponse> {
    let mvcc = &member.shared.mvcc;
    let refuse = |watch_id: i64, reason: &str| WatchResponse {
        header: Some(member.header(mvcc.current_revision())),
        watch_id,
        created: true,
        canceled: true,
        cancel_reason: reason.to_string(),
        ..Default::default()
    };
    if create.start_revision < 0 {
        return Some(WatchResponse {
            compact_revision: mvcc.compact_revision(),
            ..refuse(-1, COMPACTED_REASON)
        });
    }
    if watchers.len() >= WATCHERS_PER_STREAM_LIMIT {
        return Some(refuse(-1, "etcdserver: too many watchers on this stream"));
    }
    let id = if create.watch_id != 0 {
        if watchers.contains_key(&create.watch_id) {
            return Some(refuse(create.watch_id, "etcdserver: duplicate watch ID"));
        }
        create.watch_id
    } else {
        while watchers.contains_key(next_id) {
            *next_id += 1;
        }
        *next_id
    };
    // Subscribe before reading the current revision: nothing committed in
    // between can be missed.
    let live = member.shared.subscribe_events();
    let current = mvcc.current_revision();
    let start = if create.start_revision == 0 {
        current + 1
    } else {
        create.start_revision
    };
    let next_revision = Arc::new(AtomicI64::new(start));
    let watcher = Watcher {
        member: member.clone(),
        id,
        spec: Spec::from_request(create),
        out: out.clone(),
        next_revision: next_revision.clone(),
    };
    // The "created" reply goes out before the watcher can send anything.
    let created = WatchResponse {
        header: Some(member.header(current)),
        watch_id: id,
        created: true,
        ..Default::default()
    };
    if out.send(Ok(vec![created])).await.is_err() {
        return None;
    }
    let task = tokio::spawn(watcher.run(live));
    watchers.insert(
        id,
        Running {
            task,
            next_revision,
        },
    );
    None
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (out, out_rx) = mpsc::channel(STREAM_QUEUE_LIMIT);
        tokio::spawn(serve_stream(self.member.clone(), request.into_inner(), out));
        let responses = ReceiverStream::new(out_rx).flat_map(|item| {
            let messages: Vec<Result<WatchResponse, Status>> = match item {
                Ok(responses) => responses.into_iter().map(Ok).collect(),
                Err(status) => vec![Err(status)],
            };
            futures_util::stream::iter(messages)
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

#[cfg(test)]
mod tests {
    use skiff_proto::etcdserverpb::ResponseHeader;
    use skiff_proto::mvccpb::KeyValue;

    use super::*;

    fn put(key: &str, revision: i64, value_len: usize) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: revision,
                create_revision: revision,
                version: 1,
                value: vec![b'v'; value_len],
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    fn response(events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 40,
                raft_term: 3,
            }),
            watch_id: 7,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn event_field_len_is_what_the_event_adds_to_a_response() {
        let empty = response(Vec::new());
        for value_len in [0, 1, 100, 200, 20_000, 3_000_000] {
            let event = put("k", 5, value_len);
            let with = response(vec![event.clone()]);
            assert_eq!(
                with.encoded_len(),
                empty.encoded_len() + event_field_len(&event),
                "value of {value_len} bytes"
            );
        }
    }

    #[test]
    fn a_response_under_the_limit_or_with_one_event_is_sent_whole() {
        let small = response(vec![put("a", 5, 10), put("b", 6, 10)]);
        assert_eq!(fragments(small.clone(), 10_000), vec![small]);
        let huge_single = response(vec![put("a", 5, 50_000)]);
        assert_eq!(
            fragments(huge_single.clone(), 10_000),
            vec![huge_single],
            "one event is never split, however large"
        );
    }

    #[test]
    fn a_large_response_is_split_greedily_under_the_limit() {
        let limit = 10_000;
        let events: Vec<Event> = (0..12)
            .map(|n| put(&format!("k{n}"), 5 + n / 3, 1_000 + 700 * (n as usize % 4)))
            .collect();
        let whole = response(events.clone());
        assert!(whole.encoded_len() >= limit);
        let parts = fragments(whole.clone(), limit);
        assert!(parts.len() > 1, "split: {} parts", parts.len());
        let (last, rest) = parts.split_last().expect("parts");
        assert!(
            rest.iter().all(|p| p.fragment),
            "all but the last are fragments"
        );
        assert!(!last.fragment, "the last part is not a fragment");
        let mut rejoined = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            assert!(!part.events.is_empty(), "part {n} holds an event");
            assert_eq!(
                (part.header, part.watch_id),
                (whole.header, whole.watch_id),
                "part {n} keeps the header and id"
            );
            let len = WatchResponse {
                fragment: true,
                ..part.clone()
            }
            .encoded_len();
            assert!(
                len < limit || part.events.len() == 1,
                "part {n} is {len} bytes"
            );
            if let Some(next) = parts.get(n + 1) {
                assert!(
                    len + event_field_len(&next.events[0]) >= limit,
                    "part {n} had room for the next event"
                );
            }
            rejoined.extend(part.events.iter().cloned());
        }
        assert_eq!(rejoined, events, "the parts hold every event, in order");
    }

    #[test]
    fn an_event_larger_than_the_limit_gets_a_part_of_its_own() {
        let limit = 10_000;
        let events = vec![put("a", 5, 100), put("b", 5, 30_000), put("c", 6, 100)];
        let parts = fragments(response(events), limit);
        let shape: Vec<(Vec<i64>, bool)> = parts
            .iter()
            .map(|p| {
                let revisions = p
                    .events
                    .iter()
                    .map(|e| e.kv.as_ref().expect("kv").mod_revision)
                    .collect();
                (revisions, p.fragment)
            })
            .collect();
        assert_eq!(
            shape,
            vec![(vec![5], true), (vec![5], true), (vec![6], false)]
        );
    }
}
