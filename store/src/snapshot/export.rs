//! The state machine as an etcd backend file (see the schema in the
//! [`snapshot`](super) module docs).
//!
//! The `key` bucket is in revision order. Versions at or above the
//! compacted revision are listed by the `Rev` column family; those below it
//! (the newest version of each key at the compaction) are only in `Kv`, in
//! key order, and are gathered by scans of `Kv` that each keep the
//! [`SURVIVORS_PER_PASS`] lowest revisions not yet written: memory stays
//! bounded whatever the number of keys.

use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use skiff_proto::mvccpb::KeyValue;

use super::bbolt::{PAGE_SIZE, Writer};
use super::{
    BUCKET_KEY, BUCKET_LEASE, BUCKET_META, LeasePb, META_CONSISTENT_INDEX, META_CURRENT_REVISION,
    META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, SnapshotError, revision_key,
};
use crate::engine::{Cf, Engine};
use crate::mvcc::keys::{self, Record};
use crate::mvcc::{self, NO_COMPACTION};
use crate::raft::state_machine::applied_index;

/// Versions below the compacted revision gathered per scan of `Kv`.
const SURVIVORS_PER_PASS: usize = 64 * 1024;
/// Bytes buffered on their way to the file.
const WRITE_BUFFER_BYTES: usize = 16 * PAGE_SIZE;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// The current revision of the exported state.
    pub revision: i64,
    /// Its compacted revision ([`NO_COMPACTION`] if never compacted).
    pub compact_revision: i64,
    /// The raft index it was applied up to.
    pub applied_index: u64,
    /// Entries of the `key` bucket (versions and tombstones).
    pub versions: u64,
    pub leases: u64,
    /// The file's size (no trailer).
    pub size_bytes: u64,
}

/// Writes the state machine in `engine` to `out` as an etcd backend file.
/// `engine` must not change meanwhile: pass a frozen copy
/// ([`Engine::frozen`]) of a live member's engine.
pub fn export<W: Write + Seek>(engine: &dyn Engine, out: W) -> Result<Exported, SnapshotError> {
    export_in_passes(engine, out, SURVIVORS_PER_PASS)
}

/// [`export`], gathering at most `survivors_per_pass` versions below the
/// compacted revision per scan.
pub(super) fn export_in_passes<W: Write + Seek>(
    engine: &dyn Engine,
    out: W,
    survivors_per_pass: usize,
) -> Result<Exported, SnapshotError> {
    let (revision, compact_revision) = mvcc::load_revisions(engine)?;
    let applied_index = applied_index(engine)?;
    let mut writer = Writer::new(out)?;

    writer.begin_bucket(BUCKET_KEY)?;
    let mut versions = 0;
    let mut put = |writer: &mut Writer<W>, user_key: Vec<u8>, rev: i64, sub: u32, raw: &[u8]| {
        let (key, value) = version_entry(user_key, rev, sub, raw)?;
        writer.put(&key, &value)?;
        versions += 1;
        Ok::<_, SnapshotError>(())
    };
    if compact_revision != NO_COMPACTION {
        let mut after = None;
        loop {
            let batch = survivors(engine, compact_revision, after, survivors_per_pass)?;
            for (rev, sub, kv_key) in &batch {
                let raw = engine.get(Cf::Kv, kv_key)?.ok_or_else(|| {
                    SnapshotError::Corrupt(format!("version {kv_key:02x?} vanished"))
                })?;
                let (encoded, _, _) = keys::split_version_key(kv_key)?;
                put(
                    &mut writer,
                    keys::decode_user_key(encoded)?,
                    *rev,
                    *sub,
                    &raw,
                )?;
            }
            if batch.len() < survivors_per_pass {
                break;
            }
            after = batch.last().map(|(rev, sub, _)| (*rev, *sub));
        }
    }
    let from = keys::rev_key_start(compact_revision.max(0));
    for item in engine.scan(Cf::Rev, Bound::Included(&from), Bound::Unbounded, false) {
        let (raw_key, user_key) = item?;
        let (rev, sub) = keys::split_rev_key(&raw_key)?;
        // A tombstone at exactly the compacted revision is gone from `Kv`.
        if let Some(raw) = engine.get(Cf::Kv, &keys::version_key(&user_key, rev, sub))? {
            put(&mut writer, user_key, rev, sub, &raw)?;
        }
    }

    writer.begin_bucket(BUCKET_LEASE)?;
    let mut leases = 0;
    let (start, end) = keys::lease_records_range();
    for item in engine.scan(
        Cf::Lease,
        Bound::Included(&start),
        Bound::Excluded(&end),
        false,
    ) {
        let (key, value) = item?;
        let id = keys::split_lease_key(&key)?;
        let lease = LeasePb {
            id,
            ttl: keys::decode_lease_record(&value)?,
            remaining_ttl: 0,
        };
        writer.put(&(id as u64).to_be_bytes(), &lease.encode_to_vec())?;
        leases += 1;
    }

    writer.begin_bucket(BUCKET_META)?;
    let mut meta = BTreeMap::new();
    meta.insert(META_CONSISTENT_INDEX, applied_index.to_be_bytes().to_vec());
    meta.insert(META_CURRENT_REVISION, revision.to_be_bytes().to_vec());
    if compact_revision != NO_COMPACTION {
        let compacted = revision_key(compact_revision, 0, false);
        meta.insert(META_SCHEDULED_COMPACT, compacted.clone());
        meta.insert(META_FINISHED_COMPACT, compacted);
    }
    for (key, value) in meta {
        writer.put(key, &value)?;
    }

    let (_, written) = writer.finish()?;
    Ok(Exported {
        revision,
        compact_revision,
        applied_index,
        versions,
        leases,
        size_bytes: written.size_bytes,
    })
}

/// The `key` bucket entry of one stored version.
fn version_entry(
    user_key: Vec<u8>,
    rev: i64,
    sub: u32,
    raw: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SnapshotError> {
    Ok(match Record::decode(raw)? {
        Record::Tombstone => {
            let kv = KeyValue {
                key: user_key,
                ..Default::default()
            };
            (revision_key(rev, sub, true), kv.encode_to_vec())
        }
        record => {
            let kv = record
                .into_key_value(user_key, rev)
                .expect("a put record has a key-value");
            (revision_key(rev, sub, false), kv.encode_to_vec())
        }
    })
}

/// The versions below `compact_revision` that come after `after` in
/// revision order, at most `limit` of them, in order: revision, sub index,
/// `Kv` key.
fn survivors(
    engine: &dyn Engine,
    compact_revision: i64,
    after: Option<(i64, u32)>,
    limit: usize,
) -> Result<Vec<(i64, u32, Vec<u8>)>, SnapshotError> {
    let mut lowest: BinaryHeap<(i64, u32, Vec<u8>)> = BinaryHeap::with_capacity(limit + 1);
    for item in engine.scan(Cf::Kv, Bound::Unbounded, Bound::Unbounded, false) {
        let (kv_key, _) = item?;
        let (_, rev, sub) = keys::split_version_key(&kv_key)?;
        if rev >= compact_revision || after.is_some_and(|a| (rev, sub) <= a) {
            continue;
        }
        if lowest.len() == limit
            && lowest
                .peek()
                .is_some_and(|(r, s, _)| (rev, sub) >= (*r, *s))
        {
            continue;
        }
        lowest.push((rev, sub, kv_key));
        if lowest.len() > limit {
            lowest.pop();
        }
    }
    Ok(lowest.into_sorted_vec())
}

/// A snapshot file in a directory of its own, removed when this is dropped.
#[derive(Debug)]
pub struct TempSnapshot {
    dir: PathBuf,
    /// The file: the bbolt database, no trailer.
    pub path: PathBuf,
    pub exported: Exported,
}

impl Drop for TempSnapshot {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                "cannot remove a snapshot's scratch dir"
            );
        }
    }
}

/// Freezes `engine` (a checkpoint under `dir`, so writes go on meanwhile),
/// exports it to a file in `dir` (which must not exist yet) and drops the
/// checkpoint. `dir` goes when the returned value is dropped.
pub fn export_to_temp_dir(
    engine: &Arc<dyn Engine>,
    dir: &Path,
) -> Result<TempSnapshot, SnapshotError> {
    std::fs::create_dir_all(dir)?;
    let mut snapshot = TempSnapshot {
        dir: dir.to_path_buf(),
        path: dir.join("snapshot.db"),
        exported: Exported {
            revision: 0,
            compact_revision: NO_COMPACTION,
            applied_index: 0,
            versions: 0,
            leases: 0,
            size_bytes: 0,
        },
    };
    let checkpoint = dir.join("checkpoint");
    let frozen = engine.frozen(&checkpoint)?;
    let out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, File::create(&snapshot.path)?);
    snapshot.exported = export(frozen.as_ref(), out)?;
    drop(frozen);
    std::fs::remove_dir_all(&checkpoint)?;
    Ok(snapshot)
}
