//! Applying requests: [`ApplyBatch`] collects the writes of one or more
//! requests in an overlay over the engine, so reads inside the batch see
//! them, and [`Mvcc::commit`](super::Mvcc::commit) writes them at once.
//!
//! Each request is all or nothing: a request that fails (a txn whose nested
//! op fails, a put with `ignore_value` on a missing key, ...) is rolled back
//! to the savepoint taken before it and does not bump the revision.

use std::collections::BTreeSet;
use std::ops::Bound;

use skiff_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse, request_op, response_op,
};
use skiff_proto::mvccpb::{Event, KeyValue, event::EventType};

use super::keys::{self, Record};
use super::overlay::Overlay;
use super::read::{self, BatchSource, ReadRevisions, Source};
use super::{KvError, Mvcc, deleted_kv};
use crate::engine::{Cf, WriteBatch};

/// The pending effects of the requests applied so far. Created by
/// [`Mvcc::begin`](super::Mvcc::begin), consumed by
/// [`Mvcc::commit`](super::Mvcc::commit); dropping it discards them.
pub struct ApplyBatch<'a> {
    mvcc: &'a Mvcc,
    overlay: Overlay,
    base_revision: i64,
    base_compact_revision: i64,
    /// The revision after the requests applied so far.
    revision: i64,
    compact_revision: i64,
    events: Vec<Event>,
    /// Keys written by the request being applied (the next sub index).
    sub: u32,
}

impl std::fmt::Debug for ApplyBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyBatch")
            .field("base_revision", &self.base_revision)
            .field("revision", &self.revision)
            .field("compact_revision", &self.compact_revision)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// What [`Mvcc::commit`](super::Mvcc::commit) takes out of a batch.
pub(super) struct BatchParts {
    pub(super) writes: WriteBatch,
    pub(super) base_revision: i64,
    pub(super) base_compact_revision: i64,
    pub(super) revision: i64,
    pub(super) compact_revision: i64,
    pub(super) events: Vec<Event>,
}

impl Drop for ApplyBatch<'_> {
    fn drop(&mut self) {
        self.mvcc
            .batch_open
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<'a> ApplyBatch<'a> {
    pub(super) fn new(mvcc: &'a Mvcc, revision: i64, compact_revision: i64) -> Self {
        ApplyBatch {
            mvcc,
            overlay: Overlay::default(),
            base_revision: revision,
            base_compact_revision: compact_revision,
            revision,
            compact_revision,
            events: Vec::new(),
            sub: 0,
        }
    }

    pub(super) fn mvcc(&self) -> &'a Mvcc {
        self.mvcc
    }

    pub(super) fn take_parts(&mut self) -> BatchParts {
        BatchParts {
            writes: std::mem::take(&mut self.overlay).into_write_batch(),
            base_revision: self.base_revision,
            base_compact_revision: self.base_compact_revision,
            revision: self.revision,
            compact_revision: self.compact_revision,
            events: std::mem::take(&mut self.events),
        }
    }

    /// The engine under the batch: what is committed, without this batch's
    /// writes.
    pub fn engine(&self) -> &std::sync::Arc<dyn crate::engine::Engine> {
        self.mvcc.engine()
    }

    /// The revision after the writes so far.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The compacted revision after the requests so far.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Applies a Put: one new revision. The header carries the new revision.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, KvError> {
        self.request(|b| b.put_op(req))
    }

    /// Applies a DeleteRange: one new revision if something was deleted.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvError> {
        self.request(|b| b.delete_op(req))
    }

    /// Applies a Txn: one new revision if any op wrote.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        self.request(|b| b.txn_op(req))
    }

    /// Serves a Range that sees this batch's pending writes.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.range_op(req)
    }

    /// Compacts at `req.revision`: every version older than it is removed
    /// except the newest version at or below it of each key (a tombstone
    /// there is removed too). Does not bump the revision.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, KvError> {
        self.request(|b| {
            let rev = req.revision;
            if rev <= b.compact_revision {
                return Err(KvError::Compacted);
            }
            if rev > b.revision {
                return Err(KvError::FutureRevision);
            }
            b.compact_to(rev)?;
            b.compact_revision = rev;
            Ok(CompactionResponse {
                header: Some(header(b.revision)),
            })
        })
    }

    /// Creates lease `id` with `ttl` seconds. Does not bump the revision.
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<(), KvError> {
        self.request(|b| {
            if id == 0 {
                return Err(KvError::LeaseNotFound);
            }
            if b.lease_exists(id)? {
                return Err(KvError::LeaseAlreadyExists);
            }
            b.overlay.put(
                Cf::Lease,
                keys::lease_key(id),
                keys::encode_lease_record(ttl),
            );
            Ok(())
        })
    }

    /// Removes lease `id` and deletes its keys, all in one revision (none if
    /// it had no keys).
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), KvError> {
        self.request(|b| {
            if !b.lease_exists(id)? {
                return Err(KvError::LeaseNotFound);
            }
            let write_rev = b.revision + 1;
            for key in attached_keys(&b.source(), id)? {
                b.overlay
                    .delete(Cf::Lease, keys::lease_attach_key(id, &key));
                if let Some(kv) = read::get_at(&b.source(), &key, write_rev)? {
                    b.delete_key(kv, write_rev);
                }
            }
            b.overlay.delete(Cf::Lease, keys::lease_key(id));
            Ok(())
        })
    }

    /// Runs one request; on error undoes everything it did.
    fn request<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let savepoint = self.overlay.savepoint();
        let events = self.events.len();
        let compact_revision = self.compact_revision;
        self.sub = 0;
        let result = f(self);
        match &result {
            Ok(_) if self.sub > 0 => self.revision += 1,
            Ok(_) => {}
            Err(_) => {
                self.overlay.rollback(savepoint);
                self.events.truncate(events);
                self.compact_revision = compact_revision;
            }
        }
        self.sub = 0;
        result
    }

    fn source(&self) -> BatchSource<'_> {
        BatchSource {
            engine: self.mvcc.engine.as_ref(),
            overlay: &self.overlay,
        }
    }

    /// The revision reads of the current request see: its own writes, if any.
    fn read_revision(&self) -> i64 {
        if self.sub > 0 {
            self.revision + 1
        } else {
            self.revision
        }
    }

    /// Whether lease `id` exists, counting this batch's own writes.
    pub fn lease_exists(&self, id: i64) -> Result<bool, KvError> {
        Ok(self
            .source()
            .get(Cf::Lease, &keys::lease_key(id))?
            .is_some())
    }

    fn range_op(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        // As etcd's txn check: a revision above the one before this request
        // is in the future, even after writes of the same txn.
        let revs = ReadRevisions {
            current: self.read_revision(),
            max_allowed: self.revision,
            compacted: self.compact_revision,
        };
        read::execute_range(&self.source(), req, revs)
    }

    fn put_op(&mut self, req: &PutRequest) -> Result<PutResponse, KvError> {
        let write_rev = self.revision + 1;
        if req.lease != 0 && !self.lease_exists(req.lease)? {
            return Err(KvError::LeaseNotFound);
        }
        let prev = read::get_at(&self.source(), &req.key, write_rev)?;
        let (value, lease) = match (&prev, req.ignore_value, req.ignore_lease) {
            (None, true, _) | (None, _, true) => return Err(KvError::KeyNotFound),
            (_, false, false) => (req.value.clone(), req.lease),
            (Some(p), ignore_value, ignore_lease) => (
                if ignore_value {
                    p.value.clone()
                } else {
                    req.value.clone()
                },
                if ignore_lease { p.lease } else { req.lease },
            ),
        };
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (write_rev, 1),
        };
        let record = Record::Put {
            create_revision,
            version,
            lease,
            value: value.clone(),
        };
        self.write_version(&req.key, write_rev, &record);
        let prev_lease = prev.as_ref().map_or(0, |p| p.lease);
        if prev_lease != lease {
            if prev_lease != 0 {
                self.overlay
                    .delete(Cf::Lease, keys::lease_attach_key(prev_lease, &req.key));
            }
            if lease != 0 {
                self.overlay.put(
                    Cf::Lease,
                    keys::lease_attach_key(lease, &req.key),
                    Vec::new(),
                );
            }
        }
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: write_rev,
            version,
            value,
            lease,
        };
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(PutResponse {
            header: Some(header(write_rev)),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_op(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, KvError> {
        let write_rev = self.revision + 1;
        let live = read::range_at(
            &self.source(),
            &req.key,
            &req.range_end,
            write_rev,
            0,
            false,
        )?
        .kvs;
        let deleted = live.len() as i64;
        let prev_kvs = if req.prev_kv {
            live.clone()
        } else {
            Vec::new()
        };
        for kv in live {
            self.delete_key(kv, write_rev);
        }
        Ok(DeleteRangeResponse {
            header: Some(header(self.read_revision())),
            deleted,
            prev_kvs,
        })
    }

    /// Writes a tombstone for the live pair `prev`.
    fn delete_key(&mut self, prev: KeyValue, write_rev: i64) {
        self.write_version(&prev.key, write_rev, &Record::Tombstone);
        if prev.lease != 0 {
            self.overlay
                .delete(Cf::Lease, keys::lease_attach_key(prev.lease, &prev.key));
        }
        let kv = deleted_kv(prev.key.clone(), write_rev);
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(prev),
        });
    }

    fn write_version(&mut self, key: &[u8], write_rev: i64, record: &Record) {
        self.overlay.put(
            Cf::Kv,
            keys::version_key(key, write_rev, self.sub),
            record.encode(),
        );
        self.overlay
            .put(Cf::Rev, keys::rev_key(write_rev, self.sub), key.to_vec());
        self.sub += 1;
    }

    fn txn_op(&mut self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        // etcd evaluates every compare on the chosen path, nested ones
        // included, against the view before the txn's first write.
        let mut path = Vec::new();
        self.compare_path(req, self.revision, &mut path)?;
        let (mut resp, _) = self.execute_txn(req, &path)?;
        resp.header = Some(header(self.read_revision()));
        Ok(resp)
    }

    fn compare_path(
        &self,
        req: &TxnRequest,
        rev: i64,
        path: &mut Vec<bool>,
    ) -> Result<(), KvError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !read::compare_holds(&self.source(), c, rev)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        for op in branch(req, succeeded) {
            if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
                self.compare_path(nested, rev, path)?;
            }
        }
        Ok(())
    }

    /// Runs the branch `path[0]` chose; returns the response and how many
    /// entries of `path` this txn and its nested txns used.
    fn execute_txn(
        &mut self,
        req: &TxnRequest,
        path: &[bool],
    ) -> Result<(TxnResponse, usize), KvError> {
        let Some(&succeeded) = path.first() else {
            return Err(KvError::Corrupt("txn compare path too short".to_string()));
        };
        let mut used = 1;
        let ops = branch(req, succeeded);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            use request_op::Request;
            use response_op::Response;
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range_op(r)?)),
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put_op(p)?)),
                Some(Request::RequestDeleteRange(d)) => {
                    Some(Response::ResponseDeleteRange(self.delete_op(d)?))
                }
                Some(Request::RequestTxn(t)) => {
                    let (nested, n) = self.execute_txn(t, path.get(used..).unwrap_or_default())?;
                    used += n;
                    Some(Response::ResponseTxn(nested))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        // Nested txn responses keep an empty header, as in etcd.
        Ok((
            TxnResponse {
                header: Some(ResponseHeader::default()),
                succeeded,
                responses,
            },
            used,
        ))
    }

    fn compact_to(&mut self, rev: i64) -> Result<(), KvError> {
        // Keys with a version in [old compaction, rev]: only they can have
        // more than one version at or below rev, or a tombstone there.
        let from = keys::rev_key_start(self.compact_revision);
        let to = keys::rev_key_start(rev + 1);
        let mut touched = BTreeSet::new();
        let mut stale = Vec::new();
        for item in self
            .source()
            .scan(Cf::Rev, Bound::Included(&from), Bound::Excluded(&to))
        {
            let (raw_key, user_key) = item?;
            if keys::split_rev_key(&raw_key)?.0 < rev {
                stale.push(raw_key);
            }
            touched.insert(user_key);
        }
        for raw_key in stale {
            self.overlay.delete(Cf::Rev, raw_key);
        }
        for key in touched {
            let start = keys::version_seek(&key, rev);
            let end = keys::versions_end(&key);
            let mut doomed = Vec::new();
            for (i, item) in self
                .source()
                .scan(Cf::Kv, Bound::Included(&start), Bound::Excluded(&end))
                .enumerate()
            {
                let (raw_key, raw_value) = item?;
                if i > 0 || Record::is_tombstone(&raw_value)? {
                    doomed.push(raw_key);
                }
            }
            for raw_key in doomed {
                self.overlay.delete(Cf::Kv, raw_key);
            }
        }
        Ok(())
    }
}

/// The keys attached to lease `id`, in key order.
pub(super) fn attached_keys(src: &dyn Source, id: i64) -> Result<Vec<Vec<u8>>, KvError> {
    let start = keys::lease_attach_prefix(id);
    let end = keys::lease_attach_end(id);
    let mut out = Vec::new();
    for item in src.scan(Cf::Lease, Bound::Included(&start), Bound::Excluded(&end)) {
        let (raw_key, _) = item?;
        out.push(raw_key[start.len()..].to_vec());
    }
    Ok(out)
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// A response header with only the revision; the server fills the rest.
fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}
