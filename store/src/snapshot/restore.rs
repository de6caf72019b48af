//! Restore: an etcd backend file (made by skiff or by etcd) into the state
//! machine of a fresh data dir.
//!
//! Every version of the `key` bucket goes to `Kv`; those at or above the
//! compacted revision also to `Rev` (compaction removed the others' entries
//! in the store that made the file). Leases get new deadlines (see the
//! module docs of [`snapshot`](super)). Keys are attached to their lease
//! from the newest version of each key, read back from `Kv` once written,
//! so memory stays bounded. No raft state is written: the member started on
//! the data dir bootstraps a new cluster around the restored state machine.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use skiff_proto::mvccpb::KeyValue;

use super::bbolt::Reader;
use super::{
    BUCKET_KEY, BUCKET_LEASE, BUCKET_META, LeasePb, META_CURRENT_REVISION, META_FINISHED_COMPACT,
    SnapshotError, parse_revision_key, verify_trailer,
};
use crate::engine::{Cf, Durability, Engine, RocksEngine, WriteBatch};
use crate::mvcc::keys::{self, Record};
use crate::mvcc::{INITIAL_REVISION, Mvcc, NO_COMPACTION};
use crate::raft::state_machine::lease_deadline_entry;
use crate::server::DB_DIR;

/// Engine operations per write batch while seeding.
const BATCH_OPS: usize = 10_000;

/// How to restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Accept a file without a SHA-256 trailer (a backend file copied from a
    /// data dir) and do not check the trailer of one that has it: etcdctl's
    /// `--skip-hash-check`.
    pub skip_hash_check: bool,
}

/// What a restore seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The current revision of the restored store.
    pub revision: i64,
    /// Its compacted revision ([`NO_COMPACTION`] if never compacted).
    pub compact_revision: i64,
    /// Versions and tombstones restored.
    pub versions: u64,
    /// Keys that exist at the current revision.
    pub live_keys: u64,
    pub leases: u64,
    /// Whether the SHA-256 trailer was checked.
    pub hash_checked: bool,
}

/// Seeds the state machine of `data_dir` (absent or empty) from snapshot
/// file `file`. A member then started on `data_dir` with
/// `--initial-cluster-state new` serves the restored data; every member of
/// the new cluster is restored from the same file.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    options: RestoreOptions,
) -> Result<RestoreSummary, SnapshotError> {
    let hash_checked = if options.skip_hash_check {
        false
    } else if verify_trailer(file)? {
        true
    } else {
        return Err(SnapshotError::MissingHash);
    };
    let reader = Reader::open(file)?;
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(SnapshotError::DataDirNotEmpty(data_dir.to_path_buf()));
    }
    std::fs::create_dir_all(data_dir)?;
    let db_path = data_dir.join(DB_DIR);
    let seeded = RocksEngine::open(&db_path)
        .map_err(SnapshotError::from)
        .and_then(|engine| {
            let engine: Arc<dyn Engine> = Arc::new(engine);
            let summary = seed(&reader, engine.as_ref(), hash_checked)?;
            // Check what was written the way a starting member reads it.
            Mvcc::open(engine)?;
            Ok(summary)
        });
    if seeded.is_err() {
        let _ = std::fs::remove_dir_all(&db_path);
    }
    seeded
}

/// Batches writes to the engine.
struct Seeder<'a> {
    engine: &'a dyn Engine,
    batch: WriteBatch,
}

impl Seeder<'_> {
    fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) -> Result<(), SnapshotError> {
        self.batch.put(cf, key, value);
        if self.batch.len() >= BATCH_OPS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        let batch = std::mem::take(&mut self.batch);
        if !batch.is_empty() {
            self.engine.write(batch, Durability::Buffered)?;
        }
        Ok(())
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn seed(
    reader: &Reader,
    engine: &dyn Engine,
    hash_checked: bool,
) -> Result<RestoreSummary, SnapshotError> {
    let mut seeder = Seeder {
        engine,
        batch: WriteBatch::new(),
    };

    let mut compact_revision = NO_COMPACTION;
    let mut recorded_revision = None;
    reader.for_each(BUCKET_META, |key, value| {
        if key == META_FINISHED_COMPACT {
            compact_revision = parse_revision_key(value)?.0;
        } else if key == META_CURRENT_REVISION {
            let raw: [u8; 8] = value.try_into().map_err(|_| {
                SnapshotError::Corrupt(format!("bad current revision {value:02x?}"))
            })?;
            recorded_revision = Some(i64::from_be_bytes(raw));
        }
        Ok::<_, SnapshotError>(())
    })?;

    let mut versions = 0;
    let mut highest = INITIAL_REVISION;
    let found = reader.for_each(BUCKET_KEY, |raw_key, raw_value| {
        let (main, sub, tombstone) = parse_revision_key(raw_key)?;
        let sub = u32::try_from(sub)
            .map_err(|_| SnapshotError::Corrupt(format!("sub revision {sub} out of range")))?;
        let kv = KeyValue::decode(raw_value)
            .map_err(|e| SnapshotError::Corrupt(format!("revision {main}: {e}")))?;
        if kv.key.is_empty() || main <= INITIAL_REVISION {
            return Err(SnapshotError::Corrupt(format!(
                "revision {main}: {kv:?} cannot be stored"
            )));
        }
        let record = if tombstone {
            Record::Tombstone
        } else if kv.mod_revision != main {
            return Err(SnapshotError::Corrupt(format!(
                "revision {main} holds a key-value modified at {}",
                kv.mod_revision
            )));
        } else {
            Record::Put {
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
                value: kv.value,
            }
        };
        if main >= compact_revision {
            seeder.put(Cf::Rev, keys::rev_key(main, sub), kv.key.clone())?;
        }
        seeder.put(
            Cf::Kv,
            keys::version_key(&kv.key, main, sub),
            record.encode(),
        )?;
        highest = highest.max(main);
        versions += 1;
        Ok(())
    })?;
    if !found {
        return Err(SnapshotError::Corrupt("no \"key\" bucket".to_string()));
    }

    let mut leases = 0;
    let now = now_ms();
    reader.for_each(BUCKET_LEASE, |key, value| {
        let raw: [u8; 8] = key
            .try_into()
            .map_err(|_| SnapshotError::Corrupt(format!("bad lease key {key:02x?}")))?;
        let id = i64::from_be_bytes(raw);
        let lease = LeasePb::decode(value)
            .map_err(|e| SnapshotError::Corrupt(format!("lease {id:x}: {e}")))?;
        if lease.id != id {
            return Err(SnapshotError::Corrupt(format!(
                "lease {id:x} holds lease {:x}",
                lease.id
            )));
        }
        let left_s = if lease.remaining_ttl > 0 {
            lease.remaining_ttl
        } else {
            lease.ttl
        };
        seeder.put(
            Cf::Lease,
            keys::lease_key(id),
            keys::encode_lease_record(lease.ttl),
        )?;
        let expires_at_ms = now.saturating_add(left_s.saturating_mul(1000));
        let (deadline_key, deadline) = lease_deadline_entry(id, expires_at_ms)?;
        seeder.put(Cf::SmMeta, deadline_key, deadline)?;
        leases += 1;
        Ok::<_, SnapshotError>(())
    })?;
    seeder.flush()?;

    let live_keys = attach_leases(&mut seeder)?;

    let revision = recorded_revision
        .unwrap_or(highest)
        .max(highest)
        .max(compact_revision);
    seeder.put(
        Cf::SmMeta,
        keys::META_CURRENT_REVISION.to_vec(),
        keys::encode_i64(revision),
    )?;
    if compact_revision != NO_COMPACTION {
        seeder.put(
            Cf::SmMeta,
            keys::META_COMPACT_REVISION.to_vec(),
            keys::encode_i64(compact_revision),
        )?;
    }
    let batch = std::mem::take(&mut seeder.batch);
    engine.write(batch, Durability::Sync)?;
    engine.sync_wal()?;
    Ok(RestoreSummary {
        revision,
        compact_revision,
        versions,
        live_keys,
        leases,
        hash_checked,
    })
}

/// Attaches every live key whose newest version has a lease to that lease
/// (as etcd's restore does, a lease that does not exist is skipped);
/// returns the number of live keys.
fn attach_leases(seeder: &mut Seeder<'_>) -> Result<u64, SnapshotError> {
    let engine = seeder.engine;
    let mut live = 0;
    let mut previous: Option<Vec<u8>> = None;
    for item in engine.scan(Cf::Kv, Bound::Unbounded, Bound::Unbounded, false) {
        let (kv_key, raw) = item?;
        let (encoded, _, _) = keys::split_version_key(&kv_key)?;
        if previous.as_deref() == Some(encoded) {
            continue;
        }
        previous = Some(encoded.to_vec());
        // The first version of each key is its newest.
        let Record::Put { lease, .. } = Record::decode(&raw)? else {
            continue;
        };
        live += 1;
        if lease == 0 {
            continue;
        }
        let key = keys::decode_user_key(encoded)?;
        if engine.get(Cf::Lease, &keys::lease_key(lease))?.is_some() {
            seeder.put(Cf::Lease, keys::lease_attach_key(lease, &key), Vec::new())?;
        } else {
            tracing::warn!(
                key = %String::from_utf8_lossy(&key),
                lease = %format_args!("{lease:x}"),
                "the snapshot has no such lease; the key stays, unattached"
            );
        }
    }
    Ok(live)
}
