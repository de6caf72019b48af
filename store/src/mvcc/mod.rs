//! etcd's multi-version key-value store over the [`Engine`]: revisions,
//! versions, ranges at past revisions, txns, compaction and leases.
//!
//! # Semantics (etcd v3, see `docs/etcd-v3-api.md` §1.2 and §2)
//!
//! - One global revision; an empty store is at revision 1. Every Put, every
//!   DeleteRange that deleted something, every Txn with at least one write
//!   and every lease revoke that deleted keys adds exactly one revision.
//!   Compaction and lease grants do not.
//! - Per key: `create_revision`, `mod_revision`, `version` (1 on create, +1
//!   per put, a delete ends the generation) and `lease`.
//! - The compacted revision starts at -1 (etcd's `compactMainRev`); reads at
//!   or above it work, reads below fail with [`KvError::Compacted`].
//!
//! - Range (etcd 3.4+ `executeRange`): `count` is the number of keys in the
//!   range at the revision, before the min/max revision filters and the
//!   limit; `more` says the filtered, sorted result was cut by the limit.
//!   Sorting by a target other than the key reads everything, sorts
//!   (stable: ties stay in key order), then applies the limit.
//! - Txn: every compare on the chosen path, nested txns included, is
//!   evaluated against the view before the txn's first write (etcd's
//!   `compareToPath`); ops then run in order and reads see earlier writes of
//!   the same txn. A range inside a txn at a revision above the one before
//!   the txn fails with [`KvError::FutureRevision`].
//! - Response headers carry only `revision` (what etcd's apply sets); the
//!   server fills in cluster id, member id and raft term. Nested txn
//!   responses keep an empty header, as in etcd.
//!
//! # Storage layout
//!
//! | column family | key | value |
//! |---|---|---|
//! | `Kv` | memcomparable(user key) ++ BE(!revision) ++ BE(!sub index u32) | version record |
//! | `Rev` | BE(revision) ++ BE(sub index u32) | user key |
//! | `Lease` | `l` ++ BE(lease id) | `1` ++ BE(ttl seconds) |
//! | `Lease` | `k` ++ BE(lease id) ++ user key | empty: the key is attached |
//! | `SmMeta` | `mvcc/current_revision`, `mvcc/compact_revision` | BE(i64) |
//!
//! - memcomparable: every 0x00 byte becomes 0x00 0xFF and the key ends with
//!   0x00 0x00, so encoded keys sort like user keys and none is a prefix of
//!   another. The inverted revision makes the newest version of a key sort
//!   first: "newest version <= R" is one seek to `enc(key) ++ BE(!R) ++
//!   0x00000000`. The sub index (the n-th key written by the revision's
//!   request) keeps both versions when one request writes a key twice, which
//!   etcd's validation allows in one case (a put and a delete whose
//!   `range_end` is `"\0"` in the same txn).
//! - Version record: `1` ++ BE(create_revision) ++ BE(version) ++ BE(lease)
//!   ++ value for a put, `2` alone for a tombstone (a delete).
//! - `Rev` lists what each revision wrote (compaction finds the keys to
//!   clean up there; [`Mvcc::events`] replays history from it for watches).
//!
//! # Concurrency
//!
//! Applies are serial: one [`ApplyBatch`] at a time ([`Mvcc::begin`] panics
//! otherwise). Reads ([`Mvcc::range`]) run concurrently with applies: a
//! range at revision R reads one engine iterator (a consistent view) and
//! ignores versions above R. [`Mvcc::commit`] publishes a new compacted
//! revision *before* its engine write and the new current revision *after*
//! it, and a range re-checks the compacted revision after reading, so a
//! reader never sees a revision whose data is missing or half compacted.
//!
//! # Deviations from etcd, on purpose
//!
//! - Compaction keeps the `Rev` entries of exactly the compacted revision
//!   (deletes those below), so that a watch starting at the compacted
//!   revision can still learn which keys it changed.
//! - Compaction is done in full inside the apply (etcd does it in the
//!   background in batches of 1000 keys); the apply batch then holds every
//!   removed version key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use skiff_proto::etcdserverpb::{RangeRequest, RangeResponse};
use skiff_proto::mvccpb::{Event, KeyValue, event::EventType};

use crate::engine::{Cf, Durability, Engine, WriteBatch};

mod apply;
mod error;
pub(crate) mod keys;
mod overlay;
mod read;
pub mod validate;

#[cfg(test)]
mod tests;

pub use apply::ApplyBatch;
pub use error::KvError;

use keys::{META_COMPACT_REVISION, META_CURRENT_REVISION};
use read::{EngineSource, ReadRevisions, Source};

/// The revision of an empty store.
pub const INITIAL_REVISION: i64 = 1;
/// The compacted revision of a store that was never compacted.
pub const NO_COMPACTION: i64 = -1;

/// How often [`Mvcc::range`] retries a read of the latest revision that a
/// concurrent compaction overtook.
const MAX_LATEST_READ_ATTEMPTS: u32 = 8;

/// The MVCC store. Cheap to share behind an `Arc`; reads take `&self`.
pub struct Mvcc {
    engine: Arc<dyn Engine>,
    current_revision: AtomicI64,
    compact_revision: AtomicI64,
    /// Set while an [`ApplyBatch`] is open.
    batch_open: AtomicBool,
}

impl std::fmt::Debug for Mvcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mvcc")
            .field("current_revision", &self.current_revision())
            .field("compact_revision", &self.compact_revision())
            .finish_non_exhaustive()
    }
}

/// What a [`Mvcc::commit`] made visible.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The current revision after the commit.
    pub revision: i64,
    /// One event per written key, in revision order; `prev_kv` is the
    /// previous live version when there is one.
    pub events: Vec<Event>,
}

/// A lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// The granted TTL in seconds.
    pub ttl: i64,
}

/// A slice of history read by [`Mvcc::events`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// Events in revision order; a revision is never split across pages.
    pub events: Vec<Event>,
    /// The revision to ask for next.
    pub next_revision: i64,
}

impl Mvcc {
    /// Opens the store over `engine`, loading the revisions from `SmMeta`.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, KvError> {
        let (current, compact) = load_revisions(engine.as_ref())?;
        Ok(Mvcc {
            engine,
            current_revision: AtomicI64::new(current),
            compact_revision: AtomicI64::new(compact),
            batch_open: AtomicBool::new(false),
        })
    }

    /// Reloads the revisions, after a snapshot was installed into the engine.
    /// Must not be called while an [`ApplyBatch`] is open.
    pub fn reload(&self) -> Result<(), KvError> {
        assert!(
            !self.batch_open.load(Ordering::SeqCst),
            "Mvcc::reload while an ApplyBatch is open"
        );
        let (current, compact) = load_revisions(self.engine.as_ref())?;
        self.compact_revision.store(compact, Ordering::SeqCst);
        self.current_revision.store(current, Ordering::SeqCst);
        Ok(())
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The newest revision whose data is readable.
    pub fn current_revision(&self) -> i64 {
        self.current_revision.load(Ordering::SeqCst)
    }

    /// The compacted revision ([`NO_COMPACTION`] if never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision.load(Ordering::SeqCst)
    }

    /// Serves a Range at `req.revision` (`<= 0`: current). The response
    /// header carries only `revision` (the current revision when the read
    /// started); the caller fills in the cluster fields. Consistent while
    /// applies run concurrently.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        // A read of the latest revision can lose a race with a compaction
        // committed between loading the revision and reading; it then reads
        // the new latest revision instead.
        let mut attempts = 1;
        loop {
            match self.range_once(req) {
                Err(KvError::Compacted)
                    if req.revision <= 0 && attempts < MAX_LATEST_READ_ATTEMPTS =>
                {
                    attempts += 1;
                }
                result => return result,
            }
        }
    }

    fn range_once(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        let current = self.current_revision();
        let revs = ReadRevisions {
            current,
            max_allowed: current,
            compacted: self.compact_revision(),
        };
        let rev = revs.resolve(req.revision)?;
        let resp = read::execute_range(&EngineSource(self.engine.as_ref()), req, revs)?;
        // A compaction committed while we read may have removed versions we
        // needed; it published its revision before writing.
        let compacted = self.compact_revision();
        if rev < compacted {
            return Err(KvError::Compacted);
        }
        Ok(resp)
    }

    /// Starts applying requests. Reads inside the batch see its own pending
    /// writes. Panics if another batch is open (applies are serial).
    pub fn begin(&self) -> ApplyBatch<'_> {
        let was_open = self.batch_open.swap(true, Ordering::SeqCst);
        assert!(!was_open, "Mvcc::begin: another ApplyBatch is still open");
        ApplyBatch::new(self, self.current_revision(), self.compact_revision())
    }

    /// Writes the batch plus `extra` (the caller's metadata, e.g. the applied
    /// raft index) in one engine write, then publishes the new revision.
    pub fn commit(
        &self,
        mut batch: ApplyBatch<'_>,
        extra: WriteBatch,
        durability: Durability,
    ) -> Result<Committed, KvError> {
        assert!(
            std::ptr::eq(batch.mvcc(), self),
            "Mvcc::commit: the batch belongs to another store"
        );
        let parts = batch.take_parts();
        let current = self.current_revision();
        assert!(
            parts.base_revision == current && parts.revision >= current,
            "Mvcc::commit: revision would go from {current} to {} (batch began at {})",
            parts.revision,
            parts.base_revision
        );
        let mut write = parts.writes;
        if parts.revision != parts.base_revision {
            write.put(
                Cf::SmMeta,
                META_CURRENT_REVISION,
                keys::encode_i64(parts.revision),
            );
        }
        let compacted = parts.compact_revision != parts.base_compact_revision;
        if compacted {
            write.put(
                Cf::SmMeta,
                META_COMPACT_REVISION,
                keys::encode_i64(parts.compact_revision),
            );
            // Before the write: see `range`.
            self.compact_revision
                .store(parts.compact_revision, Ordering::SeqCst);
        }
        write.extend(extra);
        if !write.is_empty()
            && let Err(err) = self.engine.write(write, durability)
        {
            if compacted {
                self.compact_revision
                    .store(parts.base_compact_revision, Ordering::SeqCst);
            }
            return Err(err.into());
        }
        self.current_revision
            .store(parts.revision, Ordering::SeqCst);
        drop(batch);
        Ok(Committed {
            revision: parts.revision,
            events: parts.events,
        })
    }

    /// Whether lease `id` exists (committed state).
    pub fn lease_exists(&self, id: i64) -> Result<bool, KvError> {
        Ok(self.engine.get(Cf::Lease, &keys::lease_key(id))?.is_some())
    }

    /// Lease `id`, if it exists.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseInfo>, KvError> {
        match self.engine.get(Cf::Lease, &keys::lease_key(id))? {
            Some(raw) => Ok(Some(LeaseInfo {
                id,
                ttl: keys::decode_lease_record(&raw)?,
            })),
            None => Ok(None),
        }
    }

    /// Every lease, by id (as u64, i.e. non-negative ids first).
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, KvError> {
        let (start, end) = keys::lease_records_range();
        let mut out = Vec::new();
        let src = EngineSource(self.engine.as_ref());
        for item in src.scan(
            Cf::Lease,
            std::ops::Bound::Included(&start),
            std::ops::Bound::Excluded(&end),
        ) {
            let (key, value) = item?;
            out.push(LeaseInfo {
                id: keys::split_lease_key(&key)?,
                ttl: keys::decode_lease_record(&value)?,
            });
        }
        Ok(out)
    }

    /// The keys attached to lease `id`, in key order.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, KvError> {
        apply::attached_keys(&EngineSource(self.engine.as_ref()), id)
    }

    /// History for watches: the events of revisions `start_revision..`,
    /// stopping after the revision at which `max_events` is reached (a
    /// revision is never split). `prev_kv` is set when the previous version
    /// still exists. Fails with [`KvError::Compacted`] when `start_revision`
    /// is below the compacted revision.
    pub fn events(&self, start_revision: i64, max_events: usize) -> Result<EventPage, KvError> {
        let current = self.current_revision();
        let compacted = self.compact_revision();
        if start_revision < compacted {
            return Err(KvError::Compacted);
        }
        let start = start_revision.max(INITIAL_REVISION + 1);
        let mut page = EventPage {
            events: Vec::new(),
            next_revision: current.max(start - 1) + 1,
        };
        if start > current {
            return Ok(page);
        }
        let src = EngineSource(self.engine.as_ref());
        let from = keys::rev_key_start(start);
        let to = keys::rev_key_start(current + 1);
        let mut last_revision = 0;
        for item in src.scan(
            Cf::Rev,
            std::ops::Bound::Included(&from),
            std::ops::Bound::Excluded(&to),
        ) {
            let (raw_key, user_key) = item?;
            let (revision, sub) = keys::split_rev_key(&raw_key)?;
            if page.events.len() >= max_events && revision != last_revision {
                page.next_revision = revision;
                break;
            }
            last_revision = revision;
            page.events.push(event_at(&src, user_key, revision, sub)?);
        }
        let compacted = self.compact_revision();
        if start_revision < compacted {
            return Err(KvError::Compacted);
        }
        Ok(page)
    }
}

/// The event of the `sub`-th write of `revision` (to `key`), rebuilt from
/// the stored versions.
fn event_at(src: &dyn Source, key: Vec<u8>, revision: i64, sub: u32) -> Result<Event, KvError> {
    let prev_kv = read::get_before(src, &key, revision, sub)?;
    let version = src.get(Cf::Kv, &keys::version_key(&key, revision, sub))?;
    let record = version.map(|raw| keys::Record::decode(&raw)).transpose()?;
    Ok(
        match record.and_then(|r| r.into_key_value(key.clone(), revision)) {
            Some(kv) => Event {
                r#type: EventType::Put as i32,
                kv: Some(kv),
                prev_kv,
            },
            // A tombstone, or a tombstone removed by a compaction at exactly
            // this revision.
            None => Event {
                r#type: EventType::Delete as i32,
                kv: Some(deleted_kv(key, revision)),
                prev_kv,
            },
        },
    )
}

/// The `kv` of a DELETE event: the key and the deletion revision only.
fn deleted_kv(key: Vec<u8>, revision: i64) -> KeyValue {
    KeyValue {
        key,
        mod_revision: revision,
        ..Default::default()
    }
}

/// The current and compacted revisions stored in `engine`.
pub(crate) fn load_revisions(engine: &dyn Engine) -> Result<(i64, i64), KvError> {
    let current = match engine.get(Cf::SmMeta, META_CURRENT_REVISION)? {
        Some(raw) => keys::decode_i64(&raw)?,
        None => INITIAL_REVISION,
    };
    let compact = match engine.get(Cf::SmMeta, META_COMPACT_REVISION)? {
        Some(raw) => keys::decode_i64(&raw)?,
        None => NO_COMPACTION,
    };
    if current < INITIAL_REVISION || compact > current {
        return Err(KvError::Corrupt(format!(
            "revisions out of order: current {current}, compacted {compact}"
        )));
    }
    Ok((current, compact))
}
