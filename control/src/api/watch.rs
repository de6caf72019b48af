//! Watch streams: `GET` on a collection with `?watch=true`.
//!
//! The response is chunked, one JSON event per line:
//! `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": ...}`.
//! From `resourceVersion=R` the stream starts right after R, without
//! synthetic events; without one (or with `"0"`) it first sends an `ADDED`
//! for every selected object at the current revision, then the changes
//! after it. A start revision the store has compacted ends the stream with
//! an `ERROR` event holding a 410 `Expired` Status, so the client lists
//! again. Selectors filter the stream: an object that stops matching is sent
//! as `DELETED`, one that starts matching as `ADDED`.
//!
//! [`decide`] (which event, if any, a change makes) is pure; the stream is a
//! task feeding a bounded channel, ended by `timeoutSeconds`, the client
//! going away, or shutdown. When the store member serving it fails, the
//! task watches again from the revision after the last change it saw, on
//! another member: the client sees every change once and in order.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_model::ResourceInfo;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::registry::{Change, Registry, RegistryError, WatchStream, set_resource_version};
use super::request::ListOptions;
use super::status::ApiError;
use super::{ApiServer, handlers, table};

/// Events buffered between the store and a slow client.
pub const WATCH_CHANNEL_CAPACITY: usize = 256;
/// Attempts to reopen a store watch that broke, and the pause between two.
pub const WATCH_RESUME_ATTEMPTS: u32 = 20;
pub const WATCH_RESUME_PAUSE: Duration = Duration::from_millis(250);
/// How often a watch that asked for bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// What a change means to a watcher whose selectors are `matches`: the
/// event type and the object to send, or nothing.
pub fn decide(change: &Change, matches: impl Fn(&Value) -> bool) -> Option<(&'static str, Value)> {
    let prev_matched = change.prev.as_ref().is_some_and(&matches);
    match &change.object {
        Some(cur) => match (prev_matched, matches(cur)) {
            (false, true) => Some(("ADDED", cur.clone())),
            (true, true) => Some(("MODIFIED", cur.clone())),
            (true, false) => Some(("DELETED", cur.clone())),
            (false, false) => None,
        },
        None if prev_matched => {
            let mut gone = change.prev.clone().expect("a matched previous value");
            set_resource_version(&mut gone, change.revision);
            Some(("DELETED", gone))
        }
        None => None,
    }
}

/// Reopens a store watch from `revision`, trying at most
/// [`WATCH_RESUME_ATTEMPTS`] times; `Ok(None)` on shutdown.
async fn resume(
    registry: &Registry,
    prefix: &str,
    revision: i64,
    shutdown: &CancellationToken,
) -> Result<Option<WatchStream>, RegistryError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match registry.watch(prefix, revision).await {
            Ok(stream) => {
                tracing::info!(revision, attempt, "watch resumed");
                return Ok(Some(stream));
            }
            Err(e) if attempt >= WATCH_RESUME_ATTEMPTS => return Err(e),
            Err(e) => tracing::debug!(error = %e, attempt, "watch not resumed yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(WATCH_RESUME_PAUSE) => {}
        }
    }
}

/// One line of the stream.
fn line(type_: &str, object: Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": type_, "object": object}))
        .expect("events serialize to JSON");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn error_line(e: &ApiError) -> Bytes {
    line(
        "ERROR",
        serde_json::to_value(e.to_status()).expect("Status serializes"),
    )
}

/// Starts a watch of `resource` under `prefix`.
pub async fn watch(
    server: &ApiServer,
    resource: &'static ResourceInfo,
    prefix: String,
    opts: ListOptions,
    as_table: bool,
) -> Result<Response, ApiError> {
    let registry = server.registry().clone();
    // The synthetic ADDED events, and the revision to watch from.
    let (initial, start) = match opts.resource_version {
        Some(rv) => (Vec::new(), rv + 1),
        None => {
            let (items, revision) = handlers::read_all(&registry, resource, &prefix, &opts).await?;
            (items, revision + 1)
        }
    };
    let mut stream = registry
        .watch(&prefix, start)
        .await
        .map_err(|e| ApiError::from_registry(e, resource, ""))?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(WATCH_CHANNEL_CAPACITY);
    let shutdown = server.shutdown.clone();
    let timeout = Duration::from_secs(opts.timeout_seconds);
    let encode = move |type_: &str, object: Value| {
        if as_table && type_ != "ERROR" && type_ != "BOOKMARK" {
            let rv = object["metadata"]["resourceVersion"].clone();
            let t = table::table(
                resource,
                &[object],
                json!({"resourceVersion": rv}),
                table::now(),
            );
            line(type_, t)
        } else {
            line(type_, object)
        }
    };
    let task = async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmarks = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmarks.reset();
        let mut last_revision = start - 1;
        for object in initial {
            if tx.send(Ok(encode("ADDED", object))).await.is_err() {
                return;
            }
        }
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmarks.tick(), if opts.bookmarks => {
                    let bookmark = json!({"kind": resource.kind, "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": last_revision.to_string()}});
                    if tx.send(Ok(line("BOOKMARK", bookmark))).await.is_err() {
                        return;
                    }
                    continue;
                }
                batch = stream.next() => batch,
            };
            match batch {
                Ok(Some(batch)) => {
                    if batch.changes.is_empty() {
                        last_revision = last_revision.max(batch.revision);
                    }
                    for change in &batch.changes {
                        last_revision = change.revision;
                        if let Some((type_, object)) = decide(change, |o| opts.matches(o))
                            && tx.send(Ok(encode(type_, object))).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Err(RegistryError::Compacted { revision }) => {
                    let e = ApiError::Expired(format!(
                        "too old resource version: {last_revision} ({revision})"
                    ));
                    let _ = tx.send(Ok(error_line(&e))).await;
                    return;
                }
                // The store member serving the stream went away (or ended
                // it): go on from the next revision on another member.
                Ok(None) | Err(RegistryError::Unavailable(_) | RegistryError::Store(_)) => {
                    match resume(&registry, &prefix, last_revision + 1, &shutdown).await {
                        Ok(Some(resumed)) => stream = resumed,
                        Ok(None) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, revision = last_revision + 1, "cannot resume the watch");
                            let _ = tx
                                .send(Ok(error_line(&ApiError::from_registry(e, resource, ""))))
                                .await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch ended by the store");
                    let _ = tx
                        .send(Ok(error_line(&ApiError::from_registry(e, resource, ""))))
                        .await;
                    return;
                }
            }
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(app: &str, rv: &str) -> Value {
        json!({"metadata": {"name": "a", "labels": {"app": app}, "resourceVersion": rv}})
    }

    fn web(o: &Value) -> bool {
        o["metadata"]["labels"]["app"] == "web"
    }

    fn change(prev: Option<Value>, object: Option<Value>, revision: i64) -> Change {
        Change {
            key: String::new(),
            revision,
            object,
            prev,
        }
    }

    #[test]
    fn selection_transitions() {
        let created = change(None, Some(obj("web", "5")), 5);
        assert_eq!(decide(&created, web).unwrap().0, "ADDED");
        let modified = change(Some(obj("web", "5")), Some(obj("web", "6")), 6);
        assert_eq!(decide(&modified, web).unwrap().0, "MODIFIED");
        let left = change(Some(obj("web", "6")), Some(obj("db", "7")), 7);
        let (t, o) = decide(&left, web).unwrap();
        assert_eq!(
            (t, o["metadata"]["resourceVersion"].as_str()),
            ("DELETED", Some("7"))
        );
        let entered = change(Some(obj("db", "7")), Some(obj("web", "8")), 8);
        assert_eq!(decide(&entered, web).unwrap().0, "ADDED");
        let elsewhere = change(Some(obj("db", "8")), Some(obj("db", "9")), 9);
        assert_eq!(decide(&elsewhere, web), None);
        let deleted = change(Some(obj("web", "9")), None, 10);
        let (t, o) = decide(&deleted, web).unwrap();
        assert_eq!(
            (t, o["metadata"]["resourceVersion"].as_str()),
            ("DELETED", Some("10"))
        );
        let deleted_other = change(Some(obj("db", "9")), None, 10);
        assert_eq!(decide(&deleted_other, web), None);
    }

    #[test]
    fn lines_are_json() {
        let l = line("ADDED", json!({"a": 1}));
        assert!(l.ends_with(b"}\n"));
        let v: Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v, json!({"type": "ADDED", "object": {"a": 1}}));
        let e = error_line(&ApiError::Expired("too old".into()));
        let v: Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["code"], 410);
        assert_eq!(v["object"]["reason"], "Expired");
    }
}
