//! The Watch service: history replay then live events, in revision order,
//! no gap, no duplicate, one revision never split across responses;
//! resumption from the revision after the last one seen; a watch on a
//! follower across a leader change; filters; cancellation on compaction;
//! large responses split into fragments only for watchers that ask.

use std::collections::BTreeSet;
use std::time::Duration;

use skiff_proto::etcdserverpb::watch_client::WatchClient;
use skiff_proto::etcdserverpb::watch_create_request::FilterType;
use skiff_proto::etcdserverpb::watch_request::RequestUnion;
use skiff_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, TxnRequest, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use skiff_tests::ops::{event_kind, put_op};
use skiff_tests::{Cluster, LEADER_TIMEOUT, prefix_end};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long a test waits for the next watch response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest watch response the test clients accept.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// One received event, as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    revision: i64,
    key: String,
    kind: &'static str,
    value: String,
    prev_value: Option<String>,
}

struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
    /// Revisions seen so far, to check that none is split across responses.
    revisions_seen: BTreeSet<i64>,
}

impl Stream {
    async fn open(cluster: &Cluster, i: usize) -> Stream {
        let (requests, rx) = mpsc::channel(16);
        let mut client =
            WatchClient::new(cluster.channel_with_timeout(i, Duration::from_secs(300)))
                .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let responses = client
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap_or_else(|e| panic!("open a watch stream on {}: {e:?}", cluster.name(i)))
            .into_inner();
        Stream {
            requests,
            responses,
            revisions_seen: BTreeSet::new(),
        }
    }

    async fn next(&mut self) -> WatchResponse {
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.responses.message()).await {
            Ok(Ok(Some(response))) => response,
            Ok(Ok(None)) => panic!("the watch stream ended"),
            Ok(Err(status)) => panic!("the watch stream failed: {status:?}"),
            Err(_) => panic!("no watch response within {RESPONSE_TIMEOUT:?}"),
        }
    }

    async fn create(&mut self, create: WatchCreateRequest) -> WatchResponse {
        let request = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        self.requests
            .send(request)
            .await
            .expect("send a create request");
        let created = self.next().await;
        assert!(
            created.created,
            "the first response to a create is `created`: {created:?}"
        );
        created
    }

    /// Receives events until one at or past `last_revision` arrived, checking
    /// that responses never split a revision and events come in order.
    async fn events_through(&mut self, last_revision: i64) -> Vec<Seen> {
        let mut seen: Vec<Seen> = Vec::new();
        while seen.last().is_none_or(|s| s.revision < last_revision) {
            let response = self.next().await;
            assert!(!response.canceled, "the watch was cancelled: {response:?}");
            let mut in_response = BTreeSet::new();
            for event in &response.events {
                let kv = event.kv.as_ref().expect("an event has a kv");
                in_response.insert(kv.mod_revision);
                seen.push(Seen {
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    kind: event_kind(event),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    prev_value: event
                        .prev_kv
                        .as_ref()
                        .map(|p| String::from_utf8_lossy(&p.value).into_owned()),
                });
            }
            for revision in in_response {
                assert!(
                    self.revisions_seen.insert(revision),
                    "revision {revision} arrived in two responses (split or duplicated)"
                );
            }
        }
        assert!(
            seen.windows(2).all(|w| w[0].revision <= w[1].revision),
            "events out of revision order: {seen:#?}"
        );
        seen
    }
}

/// Deletes `key` through member `i`; the revision of the delete.
async fn must_delete(cluster: &Cluster, i: usize, key: &str) -> i64 {
    let request = DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    };
    let response = cluster
        .client(i)
        .delete_range(request)
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(response.deleted, 1, "deleted {key}");
    response.header.expect("header").revision
}

fn prefix_watch(prefix: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix.as_bytes()),
        start_revision,
        prev_kv: true,
        ..Default::default()
    }
}

/// What the writes in `watch_replays_history_then_follows_live` must produce.
fn seen(revision: i64, key: &str, kind: &'static str, value: &str, prev: Option<&str>) -> Seen {
    Seen {
        revision,
        key: key.into(),
        kind,
        value: value.into(),
        prev_value: prev.map(Into::into),
    }
}

#[tokio::test]
async fn watch_replays_history_then_follows_live() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster.others(leader)[0];

    let r1 = cluster
        .must_put(leader, "w/a", "1")
        .await
        .header
        .expect("header")
        .revision;
    cluster.must_put(leader, "other", "x").await;
    let txn = TxnRequest {
        success: vec![put_op("w/b", "2"), put_op("w/c", "3"), put_op("w/a", "4")],
        ..Default::default()
    };
    let r_txn = cluster
        .client(leader)
        .txn(txn)
        .await
        .expect("txn")
        .into_inner()
        .header
        .expect("header")
        .revision;
    let r_del = must_delete(&cluster, leader, "w/b").await;

    // History from the first write, on a follower.
    let mut stream = Stream::open(&cluster, follower).await;
    stream.create(prefix_watch("w/", r1)).await;
    let history = stream.events_through(r_del).await;
    assert_eq!(
        history,
        vec![
            seen(r1, "w/a", "PUT", "1", None),
            seen(r_txn, "w/b", "PUT", "2", None),
            seen(r_txn, "w/c", "PUT", "3", None),
            seen(r_txn, "w/a", "PUT", "4", Some("1")),
            seen(r_del, "w/b", "DELETE", "", Some("2")),
        ],
        "replayed history"
    );

    // Live events through another member reach the same watcher.
    let mut expected = Vec::new();
    let mut last = r_del;
    for n in 0..20 {
        let key = format!("w/live{n}");
        last = cluster
            .must_put(cluster.others(follower)[n % 2], &key, "v")
            .await
            .header
            .expect("header")
            .revision;
        expected.push(seen(last, &key, "PUT", "v", None));
    }
    assert_eq!(stream.events_through(last).await, expected, "live events");
}

#[tokio::test]
async fn watch_on_follower_survives_leader_kill_and_resumes_without_loss() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster.others(leader)[0];
    let writer = cluster.others(leader)[1];

    let mut stream = Stream::open(&cluster, follower).await;
    stream.create(prefix_watch("f/", 0)).await;

    let mut revisions = Vec::new();
    for n in 0..10 {
        revisions.push(
            cluster
                .must_put(writer, format!("f/{n}"), "before")
                .await
                .header
                .expect("header")
                .revision,
        );
    }
    cluster.kill(leader).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    for n in 10..20 {
        revisions.push(
            cluster
                .must_put(writer, format!("f/{n}"), "after")
                .await
                .header
                .expect("header")
                .revision,
        );
    }
    let events = stream
        .events_through(*revisions.last().expect("writes"))
        .await;
    let got: Vec<i64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(
        got, revisions,
        "every write, once, in order, across the leader change"
    );

    // A new watch resumed from the revision after the 15th event sees
    // exactly the last five.
    let resume_from = events[14].revision + 1;
    let mut resumed = Stream::open(&cluster, writer).await;
    resumed.create(prefix_watch("f/", resume_from)).await;
    let rest = resumed
        .events_through(*revisions.last().expect("writes"))
        .await;
    assert_eq!(rest, events[15..].to_vec(), "resumed watch");
}

#[tokio::test]
async fn watch_filters_and_cancellation_on_compaction() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;

    let mut stream = Stream::open(&cluster, leader).await;
    let mut only_deletes = prefix_watch("d/", 0);
    only_deletes.filters = vec![FilterType::Noput as i32];
    only_deletes.prev_kv = false;
    stream.create(only_deletes).await;
    cluster.must_put(leader, "d/1", "a").await;
    let deleted = must_delete(&cluster, leader, "d/1").await;
    let events = stream.events_through(deleted).await;
    assert_eq!(
        events,
        vec![seen(deleted, "d/1", "DELETE", "", None)],
        "NOPUT leaves only the delete, no prev_kv"
    );

    // A watch from below the compacted revision is cancelled with it.
    let compact_at = cluster
        .must_put(leader, "d/2", "b")
        .await
        .header
        .expect("header")
        .revision;
    cluster
        .client(leader)
        .compact(CompactionRequest {
            revision: compact_at,
            physical: true,
        })
        .await
        .expect("compact");
    let mut old = Stream::open(&cluster, leader).await;
    let request = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(prefix_watch("d/", 2))),
    };
    old.requests
        .send(request)
        .await
        .expect("send a create request");
    let mut cancelled = old.next().await;
    if cancelled.created && !cancelled.canceled {
        cancelled = old.next().await;
    }
    assert!(
        cancelled.canceled,
        "watch below the compaction is cancelled: {cancelled:?}"
    );
    assert_eq!(cancelled.compact_revision, compact_at, "{cancelled:?}");
    assert_eq!(
        cancelled.cancel_reason,
        "etcdserver: mvcc: required revision has been compacted"
    );
}

#[tokio::test]
async fn idle_watcher_with_progress_notify_gets_progress_at_the_current_revision() {
    let cluster = Cluster::start_with(3, &["--watch-progress-notify-interval", "300"]).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let revision = cluster
        .must_put(leader, "p/a", "1")
        .await
        .header
        .expect("header")
        .revision;
    let mut stream = Stream::open(&cluster, cluster.others(leader)[0]).await;
    let mut create = prefix_watch("p/", revision);
    create.progress_notify = true;
    stream.create(create).await;
    assert_eq!(
        stream.events_through(revision).await.len(),
        1,
        "the history first"
    );
    let progress = stream.next().await;
    assert!(
        progress.events.is_empty() && !progress.canceled,
        "a progress notification: {progress:?}"
    );
    assert_eq!(
        progress.header.expect("header").revision,
        revision,
        "progress at the last delivered revision"
    );

    let mut plain = Stream::open(&cluster, leader).await;
    plain.create(prefix_watch("p/", 0)).await;
    let next = cluster
        .must_put(leader, "p/b", "2")
        .await
        .header
        .expect("header")
        .revision;
    let first = plain.next().await;
    assert_eq!(
        first
            .events
            .first()
            .and_then(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision),
        Some(next),
        "without progress_notify the first response is the next event: {first:?}"
    );
}

/// etcd splits watch responses for `fragment` watchers at its max request
/// bytes (1.5 MiB) plus gRPC's overhead (512 KiB).
const FRAGMENT_LIMIT_BYTES: usize = 1536 * 1024 + 512 * 1024;
/// gRPC's default limit on a message, which a response sent whole exceeds.
const GRPC_DEFAULT_MESSAGE_BYTES: usize = 4 << 20;
/// Size of each value in the fragment test: two fit in one request.
const LARGE_VALUE_BYTES: usize = 600 * 1024;

/// A value of `LARGE_VALUE_BYTES` that no other write repeats.
fn large_value(label: &str) -> Vec<u8> {
    label
        .bytes()
        .chain(std::iter::once(b'|'))
        .cycle()
        .take(LARGE_VALUE_BYTES)
        .collect()
}

/// An event as the fragment test compares them: sizes and a hash instead of
/// megabytes of values, so that a failure prints readably.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digest {
    revision: i64,
    key: String,
    kind: &'static str,
    value: (usize, u64),
    prev_value: Option<(usize, u64)>,
}

fn value_digest(value: &[u8]) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    (value.len(), hasher.finish())
}

fn digest(event: &skiff_proto::mvccpb::Event) -> Digest {
    let kv = event.kv.as_ref().expect("an event has a kv");
    Digest {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        kind: event_kind(event),
        value: value_digest(&kv.value),
        prev_value: event.prev_kv.as_ref().map(|p| value_digest(&p.value)),
    }
}

fn put_digest(revision: i64, key: &str, value: &[u8], prev: Option<&[u8]>) -> Digest {
    Digest {
        revision,
        key: key.into(),
        kind: "PUT",
        value: value_digest(value),
        prev_value: prev.map(value_digest),
    }
}

/// Puts every `(key, value)` in one txn through member `i`; its revision.
async fn put_in_one_txn(cluster: &Cluster, i: usize, puts: &[(&str, Vec<u8>)]) -> i64 {
    let txn = TxnRequest {
        success: puts.iter().map(|(key, value)| put_op(key, value)).collect(),
        ..Default::default()
    };
    cluster
        .client(i)
        .txn(txn)
        .await
        .expect("txn of large puts")
        .into_inner()
        .header
        .expect("header")
        .revision
}

impl Stream {
    /// The responses of this stream's one watcher until `events` events
    /// arrived, merged as etcd's client merges them: a response marked
    /// `fragment` continues with the next. Each element is the list of
    /// responses that form one logical response.
    async fn fragmented_until(&mut self, events: usize) -> Vec<Vec<WatchResponse>> {
        let mut logical: Vec<Vec<WatchResponse>> = Vec::new();
        let mut received = 0;
        let mut open = false;
        while received < events || open {
            let response = self.next().await;
            assert!(!response.canceled, "the watch was cancelled: {response:?}");
            received += response.events.len();
            let fragment = response.fragment;
            if open {
                logical.last_mut().expect("an open response").push(response);
            } else {
                logical.push(vec![response]);
            }
            open = fragment;
        }
        assert_eq!(received, events, "more events than written arrived");
        logical
    }
}

/// Checks one logical response made of `parts` and returns its events.
fn check_parts(parts: &[WatchResponse], fragment_asked: bool) -> Vec<Digest> {
    let sizes: Vec<usize> = parts.iter().map(prost_len).collect();
    let flags: Vec<bool> = parts.iter().map(|p| p.fragment).collect();
    let (last, rest) = parts.split_last().expect("at least one part");
    assert!(
        rest.iter().all(|p| p.fragment) && !last.fragment,
        "all parts but the last are marked fragment: {flags:?}"
    );
    if !fragment_asked {
        assert_eq!(parts.len(), 1, "split without fragment asked: {sizes:?}");
    }
    for (part, size) in parts.iter().zip(&sizes) {
        assert!(!part.events.is_empty(), "an empty fragment: {sizes:?}");
        assert!(
            !fragment_asked || *size < FRAGMENT_LIMIT_BYTES || part.events.len() == 1,
            "a {size}-byte part of {} events with fragment asked: {sizes:?}",
            part.events.len()
        );
        assert_eq!(
            (part.watch_id, part.header.map(|h| h.revision)),
            (parts[0].watch_id, parts[0].header.map(|h| h.revision)),
            "fragments of one response share its id and header"
        );
    }
    parts
        .iter()
        .flat_map(|p| p.events.iter().map(digest))
        .collect()
}

fn prost_len(response: &WatchResponse) -> usize {
    prost::Message::encoded_len(response)
}

/// A watcher with `fragment` gets a response larger than etcd's limit as
/// several, all but the last marked `fragment`, each under the limit and
/// holding an event, which together are the whole response; a watcher
/// without it gets the same response whole, larger than gRPC's default
/// message limit. Both for history caught up at creation and for one large
/// live revision.
#[tokio::test]
async fn large_watch_responses_are_fragmented_only_when_asked() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let member = cluster.others(leader)[0];

    // History: six large puts, then a txn that rewrites two keys in one
    // revision; about 4.8 MiB of events.
    let mut expected = Vec::new();
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut first = 0;
    for n in 0..6 {
        let key = format!("big/{n}");
        let value = large_value(&format!("{key} first"));
        let revision = cluster
            .must_put(leader, &key, &value)
            .await
            .header
            .expect("header")
            .revision;
        if n == 0 {
            first = revision;
        }
        expected.push(put_digest(revision, &key, &value, None));
        values.push(value);
    }
    let rewrite = |n: usize, round: &str| large_value(&format!("big/{n} {round}"));
    let txn_revision = put_in_one_txn(
        &cluster,
        leader,
        &[
            ("big/0", rewrite(0, "second")),
            ("big/1", rewrite(1, "second")),
        ],
    )
    .await;
    for (n, old) in values.iter_mut().enumerate().take(2) {
        let value = rewrite(n, "second");
        expected.push(put_digest(
            txn_revision,
            &format!("big/{n}"),
            &value,
            Some(old),
        ));
        *old = value;
    }
    // The watching member has applied all of it before the watches start.
    cluster.must_revision(member).await;

    let mut fragmented = Stream::open(&cluster, member).await;
    let mut create = prefix_watch("big/", first);
    create.fragment = true;
    fragmented.create(create).await;
    let mut whole = Stream::open(&cluster, member).await;
    whole.create(prefix_watch("big/", first)).await;

    let history = fragmented.fragmented_until(expected.len()).await;
    assert_eq!(history.len(), 1, "one logical response of history");
    assert!(
        history[0].len() > 1,
        "{} bytes of events arrive in fragments",
        history[0].iter().map(prost_len).sum::<usize>()
    );
    assert_eq!(
        check_parts(&history[0], true),
        expected,
        "fragmented history"
    );

    let history = whole.fragmented_until(expected.len()).await;
    assert_eq!(history.len(), 1, "one response of history");
    assert!(
        prost_len(&history[0][0]) > GRPC_DEFAULT_MESSAGE_BYTES,
        "the whole response is larger than gRPC's default limit"
    );
    assert_eq!(check_parts(&history[0], false), expected, "whole history");

    // Live: one revision of two large rewrites, with their previous values.
    let live_revision = put_in_one_txn(
        &cluster,
        leader,
        &[("big/2", rewrite(2, "live")), ("big/3", rewrite(3, "live"))],
    )
    .await;
    let live_expected: Vec<Digest> = (2..4)
        .map(|n| {
            put_digest(
                live_revision,
                &format!("big/{n}"),
                &rewrite(n, "live"),
                Some(&values[n]),
            )
        })
        .collect();
    let live = fragmented.fragmented_until(2).await;
    assert_eq!(live.len(), 1, "one logical live response");
    assert_eq!(live[0].len(), 2, "one revision over two fragments");
    assert_eq!(
        check_parts(&live[0], true),
        live_expected,
        "fragmented live"
    );
    let live = whole.fragmented_until(2).await;
    assert_eq!(live.len(), 1, "one live response");
    assert_eq!(check_parts(&live[0], false), live_expected, "whole live");
}
