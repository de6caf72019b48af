//! Snapshots in etcd's format: the state machine as an etcd backend file
//! (bbolt), what Maintenance.Snapshot streams and `etcdctl snapshot status`
//! reads, and the restore of such a file into a fresh data dir.
//!
//! # Schema (etcd's `mvcc/kvstore.go`, `lease/lessor.go`, `cindex`)
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | BE(main revision) `_` BE(sub revision), plus `t` for a tombstone | `mvccpb.KeyValue` (a tombstone's has the key only) |
//! | `lease` | BE(lease id) | `leasepb.Lease {ID, TTL, RemainingTTL}` |
//! | `meta` | `consistent_index` | BE(u64) raft applied index |
//! | `meta` | `scheduledCompactRev`, `finishedCompactRev` | the compacted revision as a revision key (only after a compaction) |
//! | `meta` | `skiff_current_revision` | BE(i64) the current revision (skiff's; etcd ignores it) |
//!
//! - The current revision is kept because a revision whose writes were all
//!   compacted away leaves no key behind; without it a file made by etcd
//!   restores at its highest stored revision, as etcd itself does.
//! - `RemainingTTL` is written as 0 (etcd without lease checkpoints). On
//!   restore every lease gets a new deadline, now + its remaining TTL if the
//!   file has one, else its TTL: etcd refreshes leases the same way when a
//!   leader takes over.
//! - Nothing else is exported: members, alarms and raft state belong to the
//!   cluster that made the file, as with `etcdctl snapshot restore`.
//!
//! # Files
//!
//! A snapshot file is the bbolt file followed by the 32-byte SHA-256 of it
//! (what Maintenance.Snapshot sends last); its size is therefore a multiple
//! of 512 plus 32, which is how etcdctl tells that a trailer is present.
//!
//! Modules: [`bbolt`] (the file format), `export` (state machine to file),
//! `restore` (file to a new data dir).

pub mod bbolt;
mod export;
mod restore;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::crc32c::Crc32c;
use crate::engine::EngineError;
use crate::mvcc::KvError;
use bbolt::{BoltError, Reader};

pub use export::{Exported, TempSnapshot, export, export_to_temp_dir};
pub use restore::{RestoreOptions, RestoreSummary, restore};

/// Length of the SHA-256 trailer.
pub const HASH_LEN: usize = 32;
/// A file with a trailer has a size of [`HASH_LEN`] modulo this.
pub const TRAILER_ALIGN: u64 = 512;
/// Maintenance.Snapshot's chunk size (etcd's `snapshotSendBufferSize`).
pub const CHUNK_BYTES: usize = 32 * 1024;

const BUCKET_KEY: &[u8] = b"key";
const BUCKET_LEASE: &[u8] = b"lease";
const BUCKET_META: &[u8] = b"meta";

const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const META_CURRENT_REVISION: &[u8] = b"skiff_current_revision";

/// Length of a revision key without the tombstone mark.
const REVISION_KEY_LEN: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// What can go wrong making, checking or restoring a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Bolt(#[from] BoltError),
    #[error("storage: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Kv(#[from] KvError),
    /// The file's content does not follow etcd's schema.
    #[error("bad snapshot content: {0}")]
    Corrupt(String),
    #[error("snapshot hash mismatch: the trailer says sha256 {expected}, the content has {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error(
        "snapshot has no sha256 trailer (its size is not a multiple of 512 plus 32); \
         skip the hash check to restore a backend file copied from a data dir"
    )]
    MissingHash,
    #[error("data dir {} is not empty", .0.display())]
    DataDirNotEmpty(PathBuf),
}

/// A revision key of the `key` bucket.
fn revision_key(main: i64, sub: u32, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(REVISION_KEY_LEN + 1);
    out.extend_from_slice(&(main as u64).to_be_bytes());
    out.push(b'_');
    out.extend_from_slice(&u64::from(sub).to_be_bytes());
    if tombstone {
        out.push(TOMBSTONE_MARK);
    }
    out
}

/// A revision key: main revision, sub revision, tombstone.
fn parse_revision_key(raw: &[u8]) -> Result<(i64, i64, bool), SnapshotError> {
    let tombstone = match raw.len() {
        REVISION_KEY_LEN => false,
        len if len == REVISION_KEY_LEN + 1 && raw[REVISION_KEY_LEN] == TOMBSTONE_MARK => true,
        _ => {
            return Err(SnapshotError::Corrupt(format!(
                "bad revision key {raw:02x?}"
            )));
        }
    };
    if raw[8] != b'_' {
        return Err(SnapshotError::Corrupt(format!(
            "bad revision key {raw:02x?}"
        )));
    }
    let main = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let sub = i64::from_be_bytes(raw[9..17].try_into().expect("8 bytes"));
    Ok((main, sub, tombstone))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a file of `len` bytes ends with a SHA-256 trailer (etcdctl's test).
pub fn has_trailer(len: u64) -> bool {
    len >= HASH_LEN as u64 && len % TRAILER_ALIGN == HASH_LEN as u64
}

/// Checks the trailer of snapshot file `path`: `Ok(true)` when present and
/// right, `Ok(false)` when absent, an error when it does not match.
pub fn verify_trailer(path: &Path) -> Result<bool, SnapshotError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if !has_trailer(len) {
        return Ok(false);
    }
    let mut hasher = Sha256::new();
    let mut left = len - HASH_LEN as u64;
    let mut buf = vec![0u8; CHUNK_BYTES];
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let mut expected = [0u8; HASH_LEN];
    file.read_exact(&mut expected)?;
    let actual = hasher.finalize();
    if actual.as_slice() != expected {
        return Err(SnapshotError::HashMismatch {
            expected: hex(&expected),
            actual: hex(&actual),
        });
    }
    Ok(true)
}

/// What `etcdctl snapshot status` reports about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C of every bucket name, key and value, in order.
    pub hash: u32,
    /// The main revision of the last key of the `key` bucket.
    pub revision: i64,
    /// Keys in every bucket.
    pub total_keys: u64,
    /// The database size (pages times page size), trailer excluded.
    pub total_size: u64,
}

/// Reads `path` as `etcdctl snapshot status` does.
pub fn status(path: &Path) -> Result<SnapshotStatus, SnapshotError> {
    let reader = Reader::open(path)?;
    let mut crc = Crc32c::default();
    let mut revision = 0;
    let mut total_keys = 0;
    for name in reader.buckets()? {
        crc.update(&name);
        let is_key = name == BUCKET_KEY;
        reader.for_each(&name, |key, value| {
            crc.update(key);
            crc.update(value);
            if is_key {
                revision = parse_revision_key(key)?.0;
            }
            total_keys += 1;
            Ok::<_, SnapshotError>(())
        })?;
    }
    Ok(SnapshotStatus {
        hash: crc.value(),
        revision,
        total_keys,
        total_size: reader.meta().size_bytes(),
    })
}

#[cfg(test)]
mod tests;
