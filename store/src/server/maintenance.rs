//! etcd's Maintenance service.
//!
//! Snapshot: the state machine is frozen (an engine checkpoint, so writes
//! go on), exported to a bbolt file in etcd's schema in a scratch dir of
//! its own (see [`crate::snapshot`]), and streamed as etcd does: 32 KiB
//! chunks with `remaining_bytes` the bytes still to come after each, then
//! one message with the SHA-256 of everything sent before. The scratch dir
//! goes once the stream ends, whether it finished or the client left.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::Stream;
use openraft::async_runtime::WatchReceiver;
use sha2::{Digest, Sha256};
use skiff_proto::etcdserverpb::maintenance_server::Maintenance;
use skiff_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, ResponseHeader, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::member::Member;
use crate::crc32c::Crc32c;
use crate::raft::Command;

/// The version reported by Status.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Snapshot chunks queued for one client stream.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 8;
/// Snapshots exported and sent at once by one service; more wait.
const CONCURRENT_SNAPSHOTS: usize = 2;
/// Names the scratch dirs of snapshots.
static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

pub struct MaintenanceService {
    member: Arc<Member>,
    /// Where snapshots are exported, one subdirectory each.
    export_dir: PathBuf,
    snapshots: Arc<Semaphore>,
}

impl MaintenanceService {
    /// The service of `member`; snapshots are exported under `export_dir`,
    /// which is emptied now (what a crash left there), so create the
    /// service before serving.
    pub fn new(member: Arc<Member>, export_dir: PathBuf) -> Self {
        if export_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&export_dir)
        {
            tracing::warn!(
                dir = %export_dir.display(),
                error = %e,
                "cannot clear the snapshot scratch dir"
            );
        }
        Self {
            member,
            export_dir,
            snapshots: Arc::new(Semaphore::new(CONCURRENT_SNAPSHOTS)),
        }
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "etcdserver: {what} is not supported by this skiff-store"
    ))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let req = request.into_inner();
        let member = &self.member;
        let raised = |member: &Member| -> Result<Vec<AlarmMember>, Status> {
            Ok(member
                .shared
                .alarms()
                .map_err(|e| Status::internal(e.to_string()))?
                .into_iter()
                .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
                .collect())
        };
        let this = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        // As etcd: GET lists every raised alarm; ACTIVATE answers with the
        // alarm raised; DEACTIVATE with the alarm cleared, if it was raised.
        let alarms = match req.action {
            0 => {
                member.read_barrier().await?;
                raised(member)?
            }
            1 => {
                member
                    .propose(Command::Alarm {
                        member: req.member_id,
                        alarm: req.alarm,
                        active: true,
                    })
                    .await?;
                vec![this]
            }
            2 => {
                member.read_barrier().await?;
                let was_raised = raised(member)?.contains(&this);
                member
                    .propose(Command::Alarm {
                        member: req.member_id,
                        alarm: req.alarm,
                        active: false,
                    })
                    .await?;
                if was_raised { vec![this] } else { Vec::new() }
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown alarm action {other}"
                )));
            }
        };
        let header = member.header(member.shared.mvcc.current_revision());
        Ok(Response::new(AlarmResponse {
            header: Some(header),
            alarms,
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let member = &self.member;
        let metrics = member.metrics();
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == member.id);
        let db_size = member.shared.mvcc.engine().size_bytes() as i64;
        let mut errors = Vec::new();
        if metrics.current_leader.is_none() {
            errors.push(super::status::msg::NO_LEADER.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(member.header(member.shared.mvcc.current_revision())),
            version: VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
            errors,
            db_size_in_use: db_size,
            is_learner,
            storage_version: String::new(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let member = self.member.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || member.shared.mvcc.engine().compact_all())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "defragmented"
        );
        let header = self
            .member
            .header(self.member.shared.mvcc.current_revision());
        Ok(Response::new(DefragmentResponse {
            header: Some(header),
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let member = self.member.clone();
        let hash = tokio::task::spawn_blocking(move || hash_state_machine(&member))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let header = self
            .member
            .header(self.member.shared.mvcc.current_revision());
        Ok(Response::new(HashResponse {
            header: Some(header),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let member = self.member.clone();
        let requested = request.into_inner().revision;
        let (hash, revision) = tokio::task::spawn_blocking(move || hash_kv_at(&member, requested))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let mvcc = &self.member.shared.mvcc;
        Ok(Response::new(HashKvResponse {
            header: Some(self.member.header(mvcc.current_revision())),
            hash,
            compact_revision: mvcc.compact_revision(),
            hash_revision: revision,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let permit = self
            .snapshots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .export_dir
            .join(format!("{}-{seq}", std::process::id()));
        let member = self.member.clone();
        let (tx, rx) = mpsc::channel(SNAPSHOT_CHUNKS_IN_FLIGHT);
        let span = tracing::info_span!(
            "snapshot",
            member = %format_args!("{:x}", member.id),
            seq
        );
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = span.enter();
            send_snapshot(&member, &dir, &tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let member = &self.member;
        if member.current_leader() != Some(member.id) {
            return Err(Status::failed_precondition(super::status::msg::NOT_LEADER));
        }
        let metrics = member.metrics();
        if !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == target)
        {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        if target != member.id {
            member
                .raft
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let deadline = member.timing.election_timeout * 5;
            let mut watch = member.raft.metrics();
            let moved = tokio::time::timeout(deadline, async {
                loop {
                    if watch.borrow_watched().current_leader == Some(target) {
                        return true;
                    }
                    if watch.changed().await.is_err() {
                        return false;
                    }
                }
            })
            .await;
            if moved != Ok(true) {
                return Err(Status::unavailable(
                    "etcdserver: request timed out, leader transfer took too long",
                ));
            }
            tracing::info!(to = %format_args!("{target:x}"), "leadership transferred");
        }
        let header = member.header(member.shared.mvcc.current_revision());
        Ok(Response::new(MoveLeaderResponse {
            header: Some(header),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("downgrade"))
    }
}

/// Exports a snapshot into `dir` and sends it on `tx` (on a blocking thread).
fn send_snapshot(member: &Member, dir: &Path, tx: &SnapshotSender) {
    let started = Instant::now();
    let engine = member.shared.mvcc.engine();
    let snapshot = match crate::snapshot::export_to_temp_dir(engine, dir) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::error!(error = %e, "cannot export a snapshot");
            let _ = tx.blocking_send(Err(snapshot_failed(&e)));
            return;
        }
    };
    let exported = snapshot.exported;
    tracing::info!(
        revision = exported.revision,
        compact_revision = exported.compact_revision,
        applied_index = exported.applied_index,
        versions = exported.versions,
        leases = exported.leases,
        size_bytes = exported.size_bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "snapshot exported, sending"
    );
    let header = member.header(exported.revision);
    match stream_file(&snapshot.path, exported.size_bytes, header, tx) {
        Ok(true) => tracing::info!(
            size_bytes = exported.size_bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot sent"
        ),
        Ok(false) => tracing::info!("snapshot receiver went away"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read an exported snapshot");
            let _ = tx.blocking_send(Err(snapshot_failed(&e)));
        }
    }
}

/// Where a snapshot's messages go.
type SnapshotSender = mpsc::Sender<Result<SnapshotResponse, Status>>;

fn snapshot_failed(e: &dyn std::fmt::Display) -> Status {
    Status::internal(format!("etcdserver: snapshot: {e}"))
}

/// Sends the `total` bytes of `path` in chunks, then their SHA-256; false
/// if the receiver went away.
fn stream_file(
    path: &Path,
    total: u64,
    header: ResponseHeader,
    tx: &SnapshotSender,
) -> std::io::Result<bool> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut header = Some(header);
    let mut sent = 0u64;
    let mut buf = vec![0u8; crate::snapshot::CHUNK_BYTES];
    while sent < total {
        let n = buf
            .len()
            .min(usize::try_from(total - sent).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        sent += n as u64;
        let chunk = SnapshotResponse {
            header: header.take(),
            remaining_bytes: total - sent,
            blob: buf[..n].to_vec(),
            version: String::new(),
        };
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(false);
        }
    }
    let digest = SnapshotResponse {
        header: header.take(),
        remaining_bytes: 0,
        blob: hasher.finalize().to_vec(),
        version: String::new(),
    };
    Ok(tx.blocking_send(Ok(digest)).is_ok())
}

/// Keys read per step while hashing the keyspace.
const HASH_PAGE_KEYS: i64 = 1_000;

/// The hash of every live key-value at `revision` (0: the current one),
/// with its revisions, version and lease: equal on every member that has
/// applied that revision. Returns the hash and the revision hashed.
fn hash_kv_at(member: &Member, revision: i64) -> Result<(u32, i64), Status> {
    use skiff_proto::etcdserverpb::RangeRequest;
    let mvcc = &member.shared.mvcc;
    let revision = if revision <= 0 {
        mvcc.current_revision()
    } else {
        revision
    };
    let mut crc = Crc32c::default();
    let mut key = vec![0u8];
    loop {
        let request = RangeRequest {
            key: key.clone(),
            range_end: vec![0],
            revision,
            limit: HASH_PAGE_KEYS,
            ..Default::default()
        };
        let page = mvcc
            .range(&request)
            .map_err(|e| super::status::kv_error_status(&e))?;
        for kv in &page.kvs {
            crc.update(&kv.key);
            crc.update(&kv.value);
            for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                crc.update(&n.to_be_bytes());
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                key = last.key.clone();
                key.push(0);
            }
            _ => return Ok((crc.value(), revision)),
        }
    }
}

/// The hash of the whole state machine as stored on this member.
fn hash_state_machine(member: &Member) -> Result<u32, Status> {
    let engine = member.shared.mvcc.engine();
    let mut crc = Crc32c::default();
    for cf in crate::engine::Cf::STATE_MACHINE {
        for item in engine.scan(
            cf,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
        ) {
            let (key, value) = item.map_err(|e| Status::internal(e.to_string()))?;
            crc.update(&key);
            crc.update(&value);
        }
    }
    Ok(crc.value())
}
