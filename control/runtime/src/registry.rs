//! The registry: objects as JSON in the store, with compare-and-swap writes.
//!
//! One small generic layer over [`skiff_client::Client`] that the API
//! server, and later the controllers and the scheduler, share. It uses only
//! the part of etcd's v3 API that etcd 3.4 serves (Range, Txn, Watch):
//!
//! - an object is the JSON value at its key, stored without
//!   `metadata.resourceVersion`; every read sets `metadata.resourceVersion`
//!   to the key's `mod_revision`;
//! - [`Registry::create`] is a txn on `create_revision == 0`,
//!   [`Registry::update`] and [`Registry::delete`] are txns on
//!   `mod_revision == expected`; a lost race is [`RegistryError::Conflict`];
//! - [`Registry::list_page`] reads one page of a prefix at one revision, so
//!   that the pages of a list are consistent;
//! - [`Registry::watch`] streams the changes under a prefix from a revision,
//!   with the previous value of each, and reports a compacted start as
//!   [`RegistryError::Compacted`].
//!
//! Errors are typed ([`RegistryError`]) so callers branch on them.

use serde_json::Value;
use skiff_client::{Client, ClientError, keys::prefix_range_end};
use skiff_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchResponse, compare, request_op, response_op,
};
use skiff_proto::mvccpb::{KeyValue, event::EventType};
use tonic::Streaming;

use crate::claims::{self, claim_changes, claim_value};

/// Keys read per Range when a list is read in pages.
pub const LIST_PAGE_SIZE: i64 = 500;
/// Read-modify-write attempts of [`Registry::update_with`] before a lost
/// race is reported as a conflict.
pub const MAX_UPDATE_ATTEMPTS: u32 = 8;

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// The object changed since the revision the write was based on.
    #[error("the object has been modified")]
    Conflict,
    /// The revision asked for was compacted away; `revision` is the store's
    /// compaction revision when known (0 otherwise).
    #[error("required revision has been compacted (compacted at {revision})")]
    Compacted { revision: i64 },
    /// A read at a revision the store has not reached yet.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: i64, current: i64 },
    /// The store could not be reached or did not answer in time; for a
    /// write, the outcome may be unknown.
    #[error("{0}")]
    Unavailable(String),
    /// The store refused the request.
    #[error("{0}")]
    Store(String),
    /// A stored value is not a JSON object.
    #[error("{0}")]
    Corrupt(String),
    /// A write of a fenced registry found its fence key changed: whoever
    /// wrote it no longer holds the leadership the fence stood for, and
    /// nothing was written.
    #[error("fenced: {key} changed, leadership lost")]
    Fenced { key: String },
    /// What the caller asked to write cannot be stored (a name no key can
    /// hold, a value that does not encode).
    #[error("{0}")]
    Invalid(String),
    /// A claim the write needed (see [`crate::claims`]) is held by another
    /// object: nothing was written.
    #[error("{key} is already claimed")]
    Claimed { key: String },
}

impl From<ClientError> for RegistryError {
    fn from(e: ClientError) -> Self {
        let message = e.to_string();
        match &e {
            ClientError::Status(s)
                if s.message().contains("required revision has been compacted") =>
            {
                RegistryError::Compacted { revision: 0 }
            }
            ClientError::Status(s) if s.message().contains("future revision") => {
                RegistryError::FutureRevision {
                    requested: 0,
                    current: 0,
                }
            }
            ClientError::Status(s) if s.code() == tonic::Code::Unavailable => {
                RegistryError::Unavailable(message)
            }
            ClientError::Unavailable { .. }
            | ClientError::Timeout
            | ClientError::OutcomeUnknown { .. } => RegistryError::Unavailable(message),
            ClientError::Status(_) | ClientError::InvalidEndpoint(_) => {
                RegistryError::Store(message)
            }
        }
    }
}

/// An object read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub key: String,
    /// The object, with `metadata.resourceVersion` set to `mod_revision`.
    pub value: Value,
    pub mod_revision: i64,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub items: Vec<Stored>,
    /// The revision the page was read at.
    pub revision: i64,
    /// Whether keys remain after the last item.
    pub more: bool,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The object's key.
    pub key: String,
    pub revision: i64,
    /// The object after the change; `None` for a delete.
    pub object: Option<Value>,
    /// The object before the change; `None` for a create (or when the
    /// previous version was compacted).
    pub prev: Option<Value>,
}

/// A batch of changes, or a progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub changes: Vec<Change>,
    /// The store revision the batch was sent at: every change up to it has
    /// been delivered when the batch is empty (a progress report).
    pub revision: i64,
}

/// The objects of one kind in the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    client: Client,
    fence: Option<Fence>,
}

/// A condition every write of a fenced registry carries: the key still
/// exists with this create revision. A leader fences its writes with its
/// election key, so that once another instance has taken over, the old
/// leader's writes fail instead of racing the new leader's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub create_revision: i64,
}

/// Writes [`Registry::write_all`] takes at once: the store's limit of
/// operations per transaction (etcd's `--max-txn-ops`, 128) less one
/// compare for the fence.
pub const MAX_WRITES_AT_ONCE: usize = 127;

/// What a write of [`Registry::write_all`] expects to find at its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No object.
    Absent,
    /// The object at this mod revision (its resourceVersion).
    Revision(i64),
}

/// One write of [`Registry::write_all`].
#[derive(Clone, Debug)]
pub struct Write {
    pub key: String,
    pub value: Value,
    pub expect: Expect,
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(value: &mut Value, revision: i64) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_string(),
            Value::String(revision.to_string()),
        );
    }
}

/// The bytes stored for an object: JSON without `metadata.resourceVersion`.
fn encode(value: &Value) -> Vec<u8> {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&v).expect("JSON values serialize")
}

fn decode(kv: &KeyValue) -> Result<Stored, RegistryError> {
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let mut value: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| RegistryError::Corrupt(format!("value at {key} is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(RegistryError::Corrupt(format!(
            "value at {key} is not a JSON object"
        )));
    }
    set_resource_version(&mut value, kv.mod_revision);
    Ok(Stored {
        key,
        value,
        mod_revision: kv.mod_revision,
    })
}

fn cmp(key: &str, target: compare::CompareTarget, union: compare::TargetUnion) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(union),
        range_end: Vec::new(),
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

/// A compare that `key` does not exist.
fn absent(key: &str) -> Compare {
    cmp(
        key,
        compare::CompareTarget::Create,
        compare::TargetUnion::CreateRevision(0),
    )
}

fn delete_op(key: &str, prev_kv: bool) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                prev_kv,
                ..Default::default()
            },
        )),
    }
}

/// The key-value the failure branch read back (its first Range), if any.
fn failure_kv(resp: &skiff_proto::etcdserverpb::TxnResponse) -> Option<KeyValue> {
    match resp.responses.first().and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(range)) => range.kvs.first().cloned(),
        _ => None,
    }
}

fn put_op(key: &str, value: &Value) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: encode(value),
            ..Default::default()
        })),
    }
}

impl Registry {
    pub fn new(client: Client) -> Self {
        Registry {
            client,
            fence: None,
        }
    }

    /// This registry with every write conditional on `fence`.
    pub fn fenced(&self, fence: Fence) -> Self {
        Registry {
            client: self.client.clone(),
            fence: Some(fence),
        }
    }

    /// The store client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a write of `key`: `compares` guard `success`; on failure the
    /// key is read back (the first failure response), then each of
    /// `also_read`, then the fence key (with a fence). With a fence, the
    /// fence is one more compare and a failed fence is
    /// [`RegistryError::Fenced`].
    async fn write(
        &self,
        key: &str,
        compares: Vec<Compare>,
        success: Vec<RequestOp>,
        also_read: &[String],
    ) -> Result<skiff_proto::etcdserverpb::TxnResponse, RegistryError> {
        let mut failure = vec![range_op(key)];
        failure.extend(also_read.iter().map(|k| range_op(k)));
        self.fenced_txn(compares, success, failure).await
    }

    /// Runs a transaction, with the fence (if any) as one more compare
    /// and one more read on failure, after the caller's.
    async fn fenced_txn(
        &self,
        mut compares: Vec<Compare>,
        success: Vec<RequestOp>,
        mut failure: Vec<RequestOp>,
    ) -> Result<skiff_proto::etcdserverpb::TxnResponse, RegistryError> {
        let fence_response = failure.len();
        if let Some(fence) = &self.fence {
            compares.push(cmp(
                &fence.key,
                compare::CompareTarget::Create,
                compare::TargetUnion::CreateRevision(fence.create_revision),
            ));
            failure.push(range_op(&fence.key));
        }
        let resp = self
            .client
            .txn(TxnRequest {
                compare: compares,
                success,
                failure,
            })
            .await?;
        if !resp.succeeded
            && let Some(fence) = &self.fence
        {
            let holder = match resp
                .responses
                .get(fence_response)
                .and_then(|r| r.response.as_ref())
            {
                Some(response_op::Response::ResponseRange(range)) => range.kvs.first(),
                _ => None,
            };
            if holder.map(|kv| kv.create_revision) != Some(fence.create_revision) {
                return Err(RegistryError::Fenced {
                    key: fence.key.clone(),
                });
            }
        }
        Ok(resp)
    }

    /// Writes every object of `writes` or none, in one transaction whose
    /// compares are the writes' expectations: `Ok(Some(revision))` when all
    /// were written, `Ok(None)` when any expectation failed (nothing was
    /// written). At most [`MAX_WRITES_AT_ONCE`] writes.
    pub async fn write_all(&self, writes: &[Write]) -> Result<Option<i64>, RegistryError> {
        if writes.len() > MAX_WRITES_AT_ONCE {
            return Err(RegistryError::Invalid(format!(
                "{} writes in one transaction; at most {MAX_WRITES_AT_ONCE}",
                writes.len()
            )));
        }
        let compares = writes
            .iter()
            .map(|w| match w.expect {
                Expect::Absent => cmp(
                    &w.key,
                    compare::CompareTarget::Create,
                    compare::TargetUnion::CreateRevision(0),
                ),
                Expect::Revision(revision) => cmp(
                    &w.key,
                    compare::CompareTarget::Mod,
                    compare::TargetUnion::ModRevision(revision),
                ),
            })
            .collect();
        let puts = writes.iter().map(|w| put_op(&w.key, &w.value)).collect();
        let resp = self.fenced_txn(compares, puts, Vec::new()).await?;
        Ok(resp
            .succeeded
            .then(|| resp.header.map_or(0, |h| h.revision)))
    }

    /// The first of `claims` the failure branch of a [`Self::write`] found
    /// held.
    fn held_claim(
        &self,
        resp: &skiff_proto::etcdserverpb::TxnResponse,
        claims: &[String],
    ) -> Option<String> {
        // The key's read comes first, then the claims', then the fence's.
        let first = 1;
        claims.iter().enumerate().find_map(|(i, claim)| {
            match resp
                .responses
                .get(first + i)
                .and_then(|r| r.response.as_ref())
            {
                Some(response_op::Response::ResponseRange(range)) if !range.kvs.is_empty() => {
                    Some(claim.clone())
                }
                _ => None,
            }
        })
    }

    /// The object a write of a claim-holding key replaces, read so that the
    /// claims it holds are known; it must still be at `expected`.
    async fn current_for_claims(&self, key: &str, expected: i64) -> Result<Stored, RegistryError> {
        let current = self.get(key).await?;
        if current.mod_revision != expected {
            return Err(RegistryError::Conflict);
        }
        Ok(current)
    }

    /// The current store revision (a linearizable read).
    pub async fn revision(&self) -> Result<i64, RegistryError> {
        let resp = self
            .client
            .range(RangeRequest {
                key: b"/registry/".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await?;
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// The object at `key`.
    pub async fn get(&self, key: &str) -> Result<Stored, RegistryError> {
        let kv = self.client.get(key).await?;
        decode(&kv.ok_or(RegistryError::NotFound)?)
    }

    /// Creates the object at `key`; [`RegistryError::AlreadyExists`] if a
    /// key is there.
    pub async fn create(&self, key: &str, value: &Value) -> Result<Stored, RegistryError> {
        let (added, _) = claim_changes(key, None, Some(value));
        let added: Vec<String> = added.into_iter().collect();
        let mut compares = vec![cmp(
            key,
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(0),
        )];
        compares.extend(added.iter().map(|c| absent(c)));
        let mut success = vec![put_op(key, value)];
        success.extend(added.iter().map(|c| put_op(c, &claim_value(key))));
        let resp = self.write(key, compares, success, &added).await?;
        if !resp.succeeded {
            if failure_kv(&resp).is_some() {
                return Err(RegistryError::AlreadyExists);
            }
            return Err(match self.held_claim(&resp, &added) {
                Some(key) => RegistryError::Claimed { key },
                None => RegistryError::AlreadyExists,
            });
        }
        let revision = resp.header.map_or(0, |h| h.revision);
        let mut value = value.clone();
        set_resource_version(&mut value, revision);
        Ok(Stored {
            key: key.to_string(),
            value,
            mod_revision: revision,
        })
    }

    /// Replaces the object at `key` if its `mod_revision` is still
    /// `expected`: [`RegistryError::Conflict`] if it changed,
    /// [`RegistryError::NotFound`] if it is gone.
    pub async fn update(
        &self,
        key: &str,
        value: &Value,
        expected: i64,
    ) -> Result<Stored, RegistryError> {
        let (added, released) = if claims::may_hold_claims(key) {
            let current = self.current_for_claims(key, expected).await?;
            claim_changes(key, Some(&current.value), Some(value))
        } else {
            Default::default()
        };
        let added: Vec<String> = added.into_iter().collect();
        let mut compares = vec![cmp(
            key,
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(expected),
        )];
        compares.extend(added.iter().map(|c| absent(c)));
        let mut success = vec![put_op(key, value)];
        success.extend(added.iter().map(|c| put_op(c, &claim_value(key))));
        success.extend(released.iter().map(|c| delete_op(c, false)));
        let resp = self.write(key, compares, success, &added).await?;
        if !resp.succeeded {
            return Err(match failure_kv(&resp) {
                Some(kv) if kv.mod_revision != expected => RegistryError::Conflict,
                None => RegistryError::NotFound,
                Some(_) => match self.held_claim(&resp, &added) {
                    Some(key) => RegistryError::Claimed { key },
                    None => RegistryError::Conflict,
                },
            });
        }
        let revision = resp.header.map_or(0, |h| h.revision);
        let mut value = value.clone();
        set_resource_version(&mut value, revision);
        Ok(Stored {
            key: key.to_string(),
            value,
            mod_revision: revision,
        })
    }

    /// Reads the object, lets `change` compute its new value, and writes it
    /// with a compare-and-swap, again on a lost race, at most
    /// [`MAX_UPDATE_ATTEMPTS`] times. `change` returning `Ok(None)` writes
    /// nothing and returns the object as read.
    pub async fn update_with<E: From<RegistryError>>(
        &self,
        key: &str,
        change: impl FnMut(&Stored) -> Result<Option<Value>, E>,
    ) -> Result<Stored, E> {
        let current = self.get(key).await?;
        self.update_loop(key, current, change).await
    }

    /// As [`Registry::update_with`], but starting from `copy`, a copy of the
    /// object the caller holds (an informer's, with its resourceVersion):
    /// when the copy is current the update is one write and no read; the
    /// object is read only after a lost race.
    pub async fn update_from<E: From<RegistryError>>(
        &self,
        key: &str,
        copy: &Value,
        change: impl FnMut(&Stored) -> Result<Option<Value>, E>,
    ) -> Result<Stored, E> {
        let revision = copy["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse::<i64>().ok());
        let current = match revision {
            Some(mod_revision) => Stored {
                key: key.to_string(),
                value: copy.clone(),
                mod_revision,
            },
            None => self.get(key).await?,
        };
        self.update_loop(key, current, change).await
    }

    async fn update_loop<E: From<RegistryError>>(
        &self,
        key: &str,
        mut current: Stored,
        mut change: impl FnMut(&Stored) -> Result<Option<Value>, E>,
    ) -> Result<Stored, E> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(next) = change(&current)? else {
                return Ok(current);
            };
            match self.update(key, &next, current.mod_revision).await {
                Err(RegistryError::Conflict) if attempt < MAX_UPDATE_ATTEMPTS => {
                    current = self.get(key).await?;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Deletes the object at `key` if its `mod_revision` is still
    /// `expected`; returns the object as it was.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<Stored, RegistryError> {
        let released = if claims::may_hold_claims(key) {
            let current = self.current_for_claims(key, expected).await?;
            claims::claims_of(key, &current.value)
        } else {
            Default::default()
        };
        let compares = vec![cmp(
            key,
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(expected),
        )];
        let mut success = vec![delete_op(key, true)];
        success.extend(released.iter().map(|c| delete_op(c, false)));
        let resp = self.write(key, compares, success, &[]).await?;
        if !resp.succeeded {
            return Err(match failure_kv(&resp) {
                Some(_) => RegistryError::Conflict,
                None => RegistryError::NotFound,
            });
        }
        let prev = resp.responses.iter().find_map(|r| match &r.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => d.prev_kvs.first().cloned(),
            _ => None,
        });
        decode(&prev.ok_or(RegistryError::NotFound)?)
    }

    /// One page of the objects under `prefix`: keys after `start_after`
    /// (exclusive; from the start of the prefix when `None`), at `revision`
    /// (the current one when `None`), at most `limit` of them.
    pub async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        revision: Option<i64>,
        limit: i64,
    ) -> Result<ListPage, RegistryError> {
        let key = match start_after {
            // The smallest key after `k` is `k\0`.
            Some(k) => {
                let mut v = k.as_bytes().to_vec();
                v.push(0);
                v
            }
            None => prefix.as_bytes().to_vec(),
        };
        let resp = self
            .client
            .range(RangeRequest {
                key,
                range_end: prefix_range_end(prefix.as_bytes()),
                limit,
                revision: revision.unwrap_or(0),
                ..Default::default()
            })
            .await
            .map_err(|e| match RegistryError::from(e) {
                RegistryError::FutureRevision { current, .. } => RegistryError::FutureRevision {
                    requested: revision.unwrap_or(0),
                    current,
                },
                other => other,
            })?;
        let items = resp.kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage {
            items,
            revision: revision.unwrap_or_else(|| resp.header.map_or(0, |h| h.revision)),
            more: resp.more,
        })
    }

    /// Deletes every object under `prefix` (one DeleteRange); returns how
    /// many there were. Objects that may hold claims are deleted one by
    /// one instead, each with its claims.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, RegistryError> {
        if claims::may_hold_claims(prefix) {
            return self.delete_each(prefix).await;
        }
        let resp = self
            .client
            .delete_range(DeleteRangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_range_end(prefix.as_bytes()),
                ..Default::default()
            })
            .await?;
        Ok(resp.deleted)
    }

    /// Deletes the objects under `prefix` one at a time (a page at a time),
    /// each with a compare-and-swap; one changed meanwhile is left for the
    /// caller's next round.
    async fn delete_each(&self, prefix: &str) -> Result<i64, RegistryError> {
        let mut deleted = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_page(prefix, after.as_deref(), None, LIST_PAGE_SIZE)
                .await?;
            for item in &page.items {
                match self.delete(&item.key, item.mod_revision).await {
                    Ok(_) => deleted += 1,
                    Err(RegistryError::Conflict | RegistryError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.items.last() {
                Some(last) if page.more => after = Some(last.key.clone()),
                _ => return Ok(deleted),
            }
        }
    }

    /// The keys under `prefix` (no values), at most `limit`.
    pub async fn keys(&self, prefix: &str, limit: i64) -> Result<Vec<String>, RegistryError> {
        let resp = self
            .client
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_range_end(prefix.as_bytes()),
                keys_only: true,
                limit,
                ..Default::default()
            })
            .await?;
        Ok(resp
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect())
    }

    /// How many objects are under `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<i64, RegistryError> {
        let resp = self
            .client
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_range_end(prefix.as_bytes()),
                count_only: true,
                ..Default::default()
            })
            .await?;
        Ok(resp.count)
    }

    /// Watches every key under `prefix` from `start_revision` (inclusive),
    /// with previous values.
    pub async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchStream, RegistryError> {
        let stream = self
            .client
            .watch(WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_range_end(prefix.as_bytes()),
                start_revision,
                prev_kv: true,
                progress_notify: true,
                ..Default::default()
            })
            .await?;
        Ok(WatchStream { stream })
    }
}

/// The changes of a [`Registry::watch`].
#[derive(Debug)]
pub struct WatchStream {
    stream: Streaming<WatchResponse>,
}

impl WatchStream {
    /// The next batch of changes; `Ok(None)` when the store ended the
    /// stream, [`RegistryError::Compacted`] when the start revision was
    /// compacted.
    pub async fn next(&mut self) -> Result<Option<WatchBatch>, RegistryError> {
        loop {
            let msg = match self.stream.message().await {
                Ok(Some(msg)) => msg,
                Ok(None) => return Ok(None),
                Err(status) => return Err(ClientError::Status(status).into()),
            };
            if msg.canceled {
                if msg.compact_revision > 0 {
                    return Err(RegistryError::Compacted {
                        revision: msg.compact_revision,
                    });
                }
                return Err(RegistryError::Unavailable(format!(
                    "watch canceled by the store: {}",
                    msg.cancel_reason
                )));
            }
            if msg.compact_revision > 0 {
                return Err(RegistryError::Compacted {
                    revision: msg.compact_revision,
                });
            }
            let revision = msg.header.as_ref().map_or(0, |h| h.revision);
            if msg.created && msg.events.is_empty() {
                continue;
            }
            let mut changes = Vec::with_capacity(msg.events.len());
            for ev in &msg.events {
                let Some(kv) = ev.kv.as_ref() else { continue };
                let prev = match ev.prev_kv.as_ref() {
                    Some(p) if !p.value.is_empty() => Some(decode(p)?.value),
                    _ => None,
                };
                let object = if ev.r#type == EventType::Delete as i32 {
                    None
                } else {
                    Some(decode(kv)?.value)
                };
                changes.push(Change {
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    revision: kv.mod_revision,
                    object,
                    prev,
                });
            }
            return Ok(Some(WatchBatch { changes, revision }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_bytes_leave_out_the_resource_version() {
        let v = json!({"metadata": {"name": "a", "resourceVersion": "9"}, "spec": {}});
        let bytes = encode(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, json!({"metadata": {"name": "a"}, "spec": {}}));
        let kv = KeyValue {
            key: b"/registry/pods/default/a".to_vec(),
            value: bytes,
            mod_revision: 12,
            ..Default::default()
        };
        let s = decode(&kv).unwrap();
        assert_eq!(s.value["metadata"]["resourceVersion"], "12");
        assert_eq!(s.mod_revision, 12);
    }

    #[test]
    fn bad_values_are_corrupt() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"[1]".to_vec(),
            ..Default::default()
        };
        assert!(matches!(decode(&kv), Err(RegistryError::Corrupt(_))));
    }

    #[test]
    fn client_errors_map() {
        let e: RegistryError = ClientError::Status(tonic::Status::out_of_range(
            "etcdserver: mvcc: required revision has been compacted",
        ))
        .into();
        assert_eq!(e, RegistryError::Compacted { revision: 0 });
        let e: RegistryError = ClientError::Timeout.into();
        assert!(matches!(e, RegistryError::Unavailable(_)));
    }
}
