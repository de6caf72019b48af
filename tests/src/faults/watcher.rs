//! Watchers of a fault run: each watches the workload's prefix from revision
//! 1 with prev_kv, and when its stream breaks resumes on the next member from
//! the revision after its last event, as etcd's clients do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_proto::etcdserverpb::watch_client::WatchClient;
use skiff_proto::etcdserverpb::watch_request::RequestUnion;
use skiff_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use skiff_proto::mvccpb::event::EventType;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::prefix_end;
use crate::watch_check::{EventKind, WatchEvent, WatchStream};

/// Pause between two attempts to (re)open a stream.
const RETRY_PERIOD: Duration = Duration::from_millis(100);
/// Bound on opening a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// A watcher over `channels` (one per member), starting on member `first`.
pub struct Watcher {
    pub id: usize,
    pub channels: Vec<Channel>,
    pub first: usize,
    pub prefix: String,
    /// What it has seen so far, shared so that a watcher cut short still
    /// leaves its events behind.
    pub stream: Arc<Mutex<WatchStream>>,
}

impl Watcher {
    pub fn new(id: usize, channels: Vec<Channel>, first: usize, prefix: &str) -> Watcher {
        Watcher {
            id,
            channels,
            first,
            prefix: prefix.to_string(),
            stream: Arc::new(Mutex::new(WatchStream {
                watcher: id,
                start_revision: 1,
                events: Vec::new(),
                resumes: Vec::new(),
            })),
        }
    }

    /// Watches until it has seen an event at or past the revision `until`
    /// will hold.
    pub async fn run(self, mut until: watch::Receiver<Option<i64>>) {
        let mut retry = crate::pace(RETRY_PERIOD);
        let mut attempt = 0usize;
        loop {
            let next = {
                let stream = self.stream.lock().expect("watch stream lock");
                stream.events.last().map_or(1, |e| e.revision + 1)
            };
            if until.borrow().is_some_and(|until| next > until) {
                return;
            }
            if attempt > 0 {
                retry.tick().await;
                self.stream
                    .lock()
                    .expect("watch stream lock")
                    .resumes
                    .push(next);
            }
            let member = (self.first + attempt) % self.channels.len();
            attempt += 1;
            let (requests, receiver) = tokio::sync::mpsc::channel(1);
            let create = WatchCreateRequest {
                key: self.prefix.as_bytes().to_vec(),
                range_end: prefix_end(self.prefix.as_bytes()),
                start_revision: next,
                prev_kv: true,
                ..Default::default()
            };
            let request = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            };
            if requests.send(request).await.is_err() {
                continue;
            }
            let mut client = WatchClient::new(self.channels[member].clone());
            let receiver = tokio_stream::wrappers::ReceiverStream::new(receiver);
            let opened = tokio::time::timeout(OPEN_TIMEOUT, client.watch(receiver)).await;
            let Ok(Ok(response)) = opened else {
                continue;
            };
            let mut responses = response.into_inner();
            loop {
                let message = tokio::select! {
                    message = responses.message() => message,
                    _ = until.changed() => {
                        if self.caught_up(*until.borrow()) {
                            return;
                        }
                        continue;
                    }
                };
                let Ok(Some(message)) = message else {
                    break; // broken or ended: resume elsewhere
                };
                if message.canceled {
                    break;
                }
                self.stream
                    .lock()
                    .expect("watch stream lock")
                    .events
                    .extend(message.events.iter().map(event));
                if self.caught_up(*until.borrow()) {
                    return;
                }
            }
            // Keep `requests` alive until the stream ends: dropping it
            // closes the client's side of the stream.
            drop(requests);
        }
    }
}

impl Watcher {
    /// Whether the last event seen is at or past `until`.
    fn caught_up(&self, until: Option<i64>) -> bool {
        let stream = self.stream.lock().expect("watch stream lock");
        let last = stream.events.last().map(|e| e.revision);
        matches!((until, last), (Some(until), Some(last)) if last >= until)
    }
}

/// The checker's view of an event.
fn event(event: &skiff_proto::mvccpb::Event) -> WatchEvent {
    let kv = event.kv.clone().unwrap_or_default();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let put = event.r#type == EventType::Put as i32;
    WatchEvent {
        revision: kv.mod_revision,
        key: text(&kv.key),
        kind: if put {
            EventKind::Put
        } else {
            EventKind::Delete
        },
        value: put.then(|| text(&kv.value)),
        prev_value: event.prev_kv.as_ref().map(|p| text(&p.value)),
        create_revision: kv.create_revision,
        version: kv.version,
    }
}
