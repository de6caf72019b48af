//! etcd's Watch service: one bidirectional stream carries many watchers.
//!
//! The apply path publishes what each commit wrote on a bounded broadcast
//! channel. Each watcher is a task that first replays history from storage
//! (from its start revision up to the current one), then follows the
//! broadcast. A watcher that falls behind (the broadcast dropped batches for
//! it, or its client reads slowly) catches up from storage again; one whose
//! next revision was compacted meanwhile is cancelled with
//! `compact_revision`. Events reach a watcher in revision order, without gap
//! or duplicate, and a revision is never split across responses.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::Stream;
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

/// What one watcher selects and how.
#[derive(Debug, Clone)]
struct Spec {
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
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

/// One watcher: replays, then follows the broadcast.
struct Watcher {
    member: Arc<Member>,
    id: i64,
    spec: Spec,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
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
        self.out.send(Ok(response)).await.is_ok()
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
        let _ = self.out.send(Ok(response)).await;
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
                        if self.out.send(Ok(progress)).await.is_err() {
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
async fn serve_stream(
    member: Arc<Member>,
    mut requests: Streaming<WatchRequest>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
) {
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
            && out.send(Ok(reply)).await.is_err()
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
    out: &mpsc::Sender<Result<WatchResponse, Status>>,
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
    if out.send(Ok(created)).await.is_err() {
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
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}
