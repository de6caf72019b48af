//! The raft state machine: applies committed commands to the MVCC store and
//! builds and installs snapshots.
//!
//! Each `apply` call writes everything it applied, together with the applied
//! log id and any membership change, in ONE engine write batch: the applied
//! index can never disagree with the data (etcd's 3.5 inconsistency lesson).
//! The write is buffered, not synced: the raft log is the durable record, and
//! on restart openraft re-applies committed entries after the persisted
//! applied index.
//!
//! A snapshot is a point-in-time copy of the state-machine column families
//! (taken from an engine checkpoint on the state machine's own task, so it is
//! consistent with the applied index), streamed to a file.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{Stream, TryStreamExt};
use openraft::EntryPayload;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use prost::Message;
use serde::{Deserialize, Serialize};
use skiff_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest};
use tokio::sync::{broadcast, watch};

use super::codec::{decode, encode};
use super::types::{Command, CommandReply, MemberId, TypeConfig, WireStatus};
use crate::engine::{Cf, Durability, Engine, WriteBatch};
use crate::mvcc::{ApplyBatch, Committed, KvError, Mvcc};
use crate::server::status::kv_error_status;

const KEY_APPLIED: &[u8] = b"raft/applied";
const KEY_MEMBERSHIP: &[u8] = b"raft/membership";
const MEMBER_PREFIX: &[u8] = b"member/";
/// `alarm/<member><type>` marks a raised alarm.
const ALARM_PREFIX: &[u8] = b"alarm/";
/// `lease/<id>` holds when lease `id` expires, in ms since the Unix epoch.
const LEASE_DEADLINE_PREFIX: &[u8] = b"lease/";

const SNAPSHOT_MAGIC: &[u8; 8] = b"SKFSNAP1";
/// Snapshots kept on disk: the current one and the one before.
const SNAPSHOTS_KEPT: usize = 2;

/// What a member published about itself through raft.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttrs {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// State shared between the state machine (owned by raft) and the services
/// that read it.
pub struct Shared {
    pub mvcc: Mvcc,
    applied_tx: watch::Sender<u64>,
    /// What each commit wrote, for the watchers.
    events_tx: broadcast::Sender<Arc<Committed>>,
    /// Bumped after every engine write that may change the alarms.
    alarm_generation: AtomicU64,
    /// The alarms as read at a generation: every write asks, so they are
    /// read from the engine only after they may have changed.
    alarm_cache: std::sync::Mutex<Option<AlarmsAt>>,
}

/// The alarms (member, alarm type) as read at an alarm generation.
type AlarmsAt = (u64, Vec<(MemberId, i32)>);

impl Shared {
    /// Follows what every later commit writes.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.events_tx.subscribe()
    }

    /// The index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }

    /// Waits until the applied index reaches `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied_tx.subscribe();
        // The sender lives as long as `self`, so this only ends when reached.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    /// Every member's published name and client URLs.
    pub fn member_attrs(&self) -> io::Result<BTreeMap<MemberId, MemberAttrs>> {
        let end = prefix_end(MEMBER_PREFIX);
        let mut out = BTreeMap::new();
        for item in self.mvcc.engine().scan(
            Cf::SmMeta,
            Bound::Included(MEMBER_PREFIX),
            Bound::Excluded(&end),
            false,
        ) {
            let (key, value) = item.map_err(to_io)?;
            let id_bytes: [u8; 8] = key[MEMBER_PREFIX.len()..]
                .try_into()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad member key"))?;
            out.insert(u64::from_be_bytes(id_bytes), decode(&value)?);
        }
        Ok(out)
    }

    /// When lease `id` expires (ms since the Unix epoch), if it exists.
    /// The raised alarms: (member, etcd AlarmType number).
    pub fn alarms(&self) -> io::Result<Vec<(MemberId, i32)>> {
        // Read the generation before the engine: a value stored under it is
        // at least as new as that generation.
        let generation = self.alarm_generation.load(Ordering::Acquire);
        let mut cache = self.alarm_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_at, alarms)) = cache.as_ref()
            && *cached_at == generation
        {
            return Ok(alarms.clone());
        }
        let alarms = self.read_alarms()?;
        *cache = Some((generation, alarms.clone()));
        Ok(alarms)
    }

    /// Marks the cached alarms stale; called after the engine write.
    fn alarms_changed(&self) {
        self.alarm_generation.fetch_add(1, Ordering::Release);
    }

    fn read_alarms(&self) -> io::Result<Vec<(MemberId, i32)>> {
        let end = prefix_end(ALARM_PREFIX);
        let mut out = Vec::new();
        for item in self.mvcc.engine().scan(
            Cf::SmMeta,
            Bound::Included(ALARM_PREFIX),
            Bound::Excluded(&end),
            false,
        ) {
            let (key, _) = item.map_err(to_io)?;
            let rest = &key[ALARM_PREFIX.len()..];
            if rest.len() != 12 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad alarm key"));
            }
            let member = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            let alarm = i32::from_be_bytes(rest[8..].try_into().expect("4 bytes"));
            out.push((member, alarm));
        }
        Ok(out)
    }

    /// When lease `id` expires (ms since the Unix epoch), if it exists.
    pub fn lease_deadline(&self, id: i64) -> io::Result<Option<i64>> {
        read_meta(self.mvcc.engine().as_ref(), &lease_deadline_key(id))
    }

    /// Every lease's deadline (ms since the Unix epoch), by lease id.
    pub fn lease_deadlines(&self) -> io::Result<Vec<(i64, i64)>> {
        let end = prefix_end(LEASE_DEADLINE_PREFIX);
        let mut out = Vec::new();
        let engine = self.mvcc.engine();
        for item in engine.scan(
            Cf::SmMeta,
            Bound::Included(LEASE_DEADLINE_PREFIX),
            Bound::Excluded(&end),
            false,
        ) {
            let (key, value) = item.map_err(to_io)?;
            let id_bytes: [u8; 8] =
                key[LEASE_DEADLINE_PREFIX.len()..].try_into().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad lease deadline key")
                })?;
            out.push((i64::from_be_bytes(id_bytes), decode(&value)?));
        }
        Ok(out)
    }

    /// The last membership the state machine applied.
    pub fn membership(&self) -> io::Result<StoredMembershipOf<TypeConfig>> {
        Ok(read_meta(self.mvcc.engine().as_ref(), KEY_MEMBERSHIP)?.unwrap_or_default())
    }
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

fn member_key(id: MemberId) -> Vec<u8> {
    let mut key = MEMBER_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn to_io(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn read_meta<T: serde::de::DeserializeOwned>(
    engine: &dyn Engine,
    key: &[u8],
) -> io::Result<Option<T>> {
    match engine.get(Cf::SmMeta, key).map_err(to_io)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The file name (without extension) of the snapshot described by `meta`:
/// its last log id, which identifies its content.
pub fn snapshot_name(meta: &SnapshotMetaOf<TypeConfig>) -> String {
    match &meta.last_log_id {
        Some(id) => format!("{:020}-{}", id.index(), id.committed_leader_id()),
        None => "00000000000000000000-none".to_string(),
    }
}

fn lease_deadline_key(id: i64) -> Vec<u8> {
    let mut key = LEASE_DEADLINE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The `Cf::SmMeta` entry saying that lease `id` expires at `expires_at_ms`
/// (ms since the Unix epoch), for seeding a state machine.
pub(crate) fn lease_deadline_entry(id: i64, expires_at_ms: i64) -> io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((lease_deadline_key(id), encode(&expires_at_ms)?))
}

/// The index of the last log entry applied to the state machine in
/// `engine` (0 if none).
pub(crate) fn applied_index(engine: &dyn Engine) -> io::Result<u64> {
    let applied: Option<LogIdOf<TypeConfig>> = read_meta(engine, KEY_APPLIED)?.flatten();
    Ok(applied.map_or(0, |id| id.index()))
}

/// A snapshot on disk: the data file written by [`SnapshotBuilder`] or
/// received from the leader.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// The state machine handed to openraft.
pub struct StateMachine {
    shared: Arc<Shared>,
    snapshot_dir: PathBuf,
}

impl StateMachine {
    /// Opens the state machine on `engine`; snapshots live in `snapshot_dir`.
    pub fn open(engine: Arc<dyn Engine>, snapshot_dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&snapshot_dir)?;
        let applied: Option<LogIdOf<TypeConfig>> =
            read_meta(engine.as_ref(), KEY_APPLIED)?.flatten();
        let mvcc = Mvcc::open(engine).map_err(to_io)?;
        let (applied_tx, _) = watch::channel(applied.map_or(0, |id| id.index()));
        let (events_tx, _) = broadcast::channel(crate::server::watch::BROADCAST_CAPACITY);
        Ok(Self {
            shared: Arc::new(Shared {
                mvcc,
                applied_tx,
                events_tx,
                alarm_generation: AtomicU64::new(0),
                alarm_cache: std::sync::Mutex::new(None),
            }),
            snapshot_dir,
        })
    }

    /// The state shared with the services.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn engine(&self) -> &Arc<dyn Engine> {
        self.shared.mvcc.engine()
    }

    fn apply_command(
        batch: &mut ApplyBatch<'_>,
        extra: &mut WriteBatch,
        deadlines: &mut HashMap<i64, Option<i64>>,
        command: &Command,
    ) -> CommandReply {
        fn run<Req: Message + Default, Resp: Message>(
            batch: &mut ApplyBatch<'_>,
            bytes: &[u8],
            op: impl FnOnce(&mut ApplyBatch<'_>, &Req) -> Result<Resp, KvError>,
        ) -> CommandReply {
            let req = match Req::decode(bytes) {
                Ok(req) => req,
                Err(e) => {
                    return CommandReply::Refused(WireStatus {
                        code: tonic::Code::InvalidArgument as i32,
                        message: format!("etcdserver: undecodable request: {e}"),
                    });
                }
            };
            match op(batch, &req) {
                Ok(resp) => CommandReply::Ok {
                    revision: batch.revision(),
                    body: resp.encode_to_vec(),
                },
                Err(e) => {
                    let status = kv_error_status(&e);
                    CommandReply::Refused(WireStatus {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                    })
                }
            }
        }
        match command {
            Command::Put(b) => run(batch, b, |b, r: &PutRequest| b.put(r)),
            Command::DeleteRange(b) => run(batch, b, |b, r: &DeleteRangeRequest| b.delete_range(r)),
            Command::Txn(b) => run(batch, b, |b, r: &TxnRequest| b.txn(r)),
            Command::Compact(b) => run(batch, b, |b, r: &CompactionRequest| b.compact(r)),
            Command::LeaseGrant {
                id,
                ttl,
                expires_at_ms,
            } => {
                let granted = batch.lease_grant(*id, *ttl);
                let outcome = granted.map(|()| Some(*expires_at_ms));
                Self::lease_reply(batch, extra, deadlines, *id, outcome)
            }
            Command::LeaseKeepAlive { id, expires_at_ms } => {
                let renewed = match batch.lease_exists(*id) {
                    Ok(true) => Ok(Some(*expires_at_ms)),
                    Ok(false) => Err(KvError::LeaseNotFound),
                    Err(e) => Err(e),
                };
                Self::lease_reply(batch, extra, deadlines, *id, renewed)
            }
            Command::Alarm {
                member,
                alarm,
                active,
            } => {
                let key = |member: MemberId| {
                    let mut key = ALARM_PREFIX.to_vec();
                    key.extend_from_slice(&member.to_be_bytes());
                    key.extend_from_slice(&alarm.to_be_bytes());
                    key
                };
                if *active {
                    extra.put(Cf::SmMeta, key(*member), Vec::new());
                } else if *member != 0 {
                    extra.delete(Cf::SmMeta, key(*member));
                } else {
                    let end = prefix_end(ALARM_PREFIX);
                    extra.delete_range(Cf::SmMeta, ALARM_PREFIX.to_vec(), end);
                }
                CommandReply::Ok {
                    revision: batch.revision(),
                    body: Vec::new(),
                }
            }
            Command::LeaseRevoke { id } => {
                let revoked = batch.lease_revoke(*id);
                Self::lease_reply(batch, extra, deadlines, *id, revoked.map(|()| None))
            }
            Command::LeaseExpire { id, deadline_ms } => {
                let current = match deadlines.get(id) {
                    Some(pending) => Ok(*pending),
                    None => read_meta(batch.engine().as_ref(), &lease_deadline_key(*id)),
                };
                match current {
                    Ok(Some(current)) if current == *deadline_ms => {
                        let revoked = batch.lease_revoke(*id);
                        Self::lease_reply(batch, extra, deadlines, *id, revoked.map(|()| None))
                    }
                    // Renewed (or revoked) since the leader looked.
                    Ok(_) => CommandReply::Refused(WireStatus {
                        code: tonic::Code::FailedPrecondition as i32,
                        message: "lease renewed or gone since it expired".to_string(),
                    }),
                    Err(e) => CommandReply::Refused(WireStatus {
                        code: tonic::Code::Internal as i32,
                        message: e.to_string(),
                    }),
                }
            }
            Command::PublishMember {
                id,
                name,
                client_urls,
            } => {
                let attrs = MemberAttrs {
                    name: name.clone(),
                    client_urls: client_urls.clone(),
                };
                match encode(&attrs) {
                    Ok(value) => {
                        extra.put(Cf::SmMeta, member_key(*id), value);
                        CommandReply::Ok {
                            revision: batch.revision(),
                            body: Vec::new(),
                        }
                    }
                    Err(e) => CommandReply::Refused(WireStatus {
                        code: tonic::Code::Internal as i32,
                        message: e.to_string(),
                    }),
                }
            }
        }
    }

    /// Records a lease operation's outcome: the new deadline (or none: the
    /// lease is gone), or the error that refused it.
    fn lease_reply(
        batch: &ApplyBatch<'_>,
        extra: &mut WriteBatch,
        deadlines: &mut HashMap<i64, Option<i64>>,
        id: i64,
        outcome: Result<Option<i64>, KvError>,
    ) -> CommandReply {
        let refused = |status: tonic::Status| {
            CommandReply::Refused(WireStatus {
                code: status.code() as i32,
                message: status.message().to_string(),
            })
        };
        match outcome {
            Err(e) => return refused(kv_error_status(&e)),
            Ok(Some(ms)) => match encode(&ms) {
                Ok(value) => extra.put(Cf::SmMeta, lease_deadline_key(id), value),
                Err(e) => return refused(tonic::Status::internal(e.to_string())),
            },
            Ok(None) => extra.delete(Cf::SmMeta, lease_deadline_key(id)),
        }
        if let Ok(deadline) = outcome {
            deadlines.insert(id, deadline);
        }
        CommandReply::Ok {
            revision: batch.revision(),
            body: Vec::new(),
        }
    }

    fn snapshot_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.snapshot_dir.join(format!("{id}.snap")),
            self.snapshot_dir.join(format!("{id}.meta")),
        )
    }

    /// Removes all but the newest snapshots.
    fn prune_snapshots(dir: &Path) -> io::Result<()> {
        let mut metas: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "meta") {
                metas.push((entry.metadata()?.modified()?, path));
            }
        }
        metas.sort();
        let excess = metas.len().saturating_sub(SNAPSHOTS_KEPT);
        for (_, meta) in metas.into_iter().take(excess) {
            let _ = std::fs::remove_file(meta.with_extension("snap"));
            std::fs::remove_file(meta)?;
        }
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>)> {
        let engine = self.engine().as_ref();
        let applied = read_meta(engine, KEY_APPLIED)?.flatten();
        let membership = read_meta(engine, KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        let entries: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let Some(last) = entries.last().map(|(entry, _)| entry.log_id()) else {
            return Ok(());
        };
        let mvcc = &self.shared.mvcc;
        let mut batch = mvcc.begin();
        let mut extra = WriteBatch::new();
        // Lease deadlines written by this batch, not yet in the engine.
        let mut deadlines = HashMap::new();
        let mut replies = Vec::with_capacity(entries.len());
        let mut alarms_written = false;
        for (entry, responder) in entries {
            let reply = match &entry.payload {
                EntryPayload::Blank => CommandReply::default(),
                EntryPayload::Normal(command) => {
                    alarms_written |= matches!(command, Command::Alarm { .. });
                    Self::apply_command(&mut batch, &mut extra, &mut deadlines, command)
                }
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembershipOf::<TypeConfig>::new(
                        Some(entry.log_id()),
                        membership.clone(),
                    );
                    extra.put(Cf::SmMeta, KEY_MEMBERSHIP, encode(&stored)?);
                    CommandReply::default()
                }
            };
            replies.push((responder, reply));
        }
        extra.put(Cf::SmMeta, KEY_APPLIED, encode(&Some(last))?);
        let committed = mvcc
            .commit(batch, extra, Durability::Buffered)
            .map_err(to_io)?;
        if alarms_written {
            self.shared.alarms_changed();
        }
        if !committed.events.is_empty() {
            // No receiver is fine: nobody watches.
            let _ = self.shared.events_tx.send(Arc::new(committed));
        }
        for (responder, reply) in replies {
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        self.shared.applied_tx.send_replace(last.index());
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            engine: self.engine().clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            frozen: None,
        }
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        // Freeze the state now, on the state machine's task, so the snapshot
        // matches the applied index exactly; the builder then works off it.
        let scratch = self.snapshot_dir.join("scratch");
        match self.engine().frozen(&scratch) {
            Ok(frozen) => Some(SnapshotBuilder {
                engine: self.engine().clone(),
                snapshot_dir: self.snapshot_dir.clone(),
                frozen: Some(frozen),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot freeze the state machine for a snapshot");
                None
            }
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let (data_path, meta_path) = self.snapshot_paths(&snapshot_name(meta));
        if snapshot.path != data_path {
            std::fs::rename(&snapshot.path, &data_path)?;
        }
        let engine = self.engine().clone();
        let mut batch = WriteBatch::new();
        for cf in Cf::STATE_MACHINE {
            for item in engine.scan(cf, Bound::Unbounded, Bound::Unbounded, false) {
                let (key, _) = item.map_err(to_io)?;
                batch.delete(cf, key);
            }
        }
        read_snapshot_file(&data_path, |cf, key, value| {
            batch.put(cf, key, value);
            Ok(())
        })?;
        batch.put(Cf::SmMeta, KEY_APPLIED, encode(&meta.last_log_id)?);
        batch.put(Cf::SmMeta, KEY_MEMBERSHIP, encode(&meta.last_membership)?);
        engine.write(batch, Durability::Sync).map_err(to_io)?;
        self.shared.mvcc.reload().map_err(to_io)?;
        self.shared.alarms_changed();
        std::fs::write(&meta_path, encode(meta)?)?;
        Self::prune_snapshots(&self.snapshot_dir)?;
        self.shared
            .applied_tx
            .send_replace(meta.last_log_id.as_ref().map_or(0, |id| id.index()));
        tracing::info!(snapshot = %snapshot_name(meta), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>> {
        let mut newest: Option<(SnapshotMetaOf<TypeConfig>, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.snapshot_dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "meta") {
                continue;
            }
            let meta: SnapshotMetaOf<TypeConfig> = decode(&std::fs::read(&path)?)?;
            let data = path.with_extension("snap");
            if !data.exists() {
                continue;
            }
            if newest
                .as_ref()
                .is_none_or(|(m, _)| m.last_log_id < meta.last_log_id)
            {
                newest = Some((meta, data));
            }
        }
        Ok(
            newest.map(|(meta, path)| SnapshotOf::<TypeConfig, SnapshotFile> {
                meta,
                snapshot: SnapshotFile { path },
            }),
        )
    }
}

/// Builds a snapshot file from a frozen copy of the state machine.
pub struct SnapshotBuilder {
    engine: Arc<dyn Engine>,
    snapshot_dir: PathBuf,
    frozen: Option<Arc<dyn Engine>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        // Freezing and writing the whole state is blocking IO of seconds on
        // a large store: it runs on a blocking thread, so that it never
        // holds up the async workers serving clients and raft.
        let engine = self.engine.clone();
        let snapshot_dir = self.snapshot_dir.clone();
        let frozen = self.frozen.take();
        tokio::task::spawn_blocking(move || build_snapshot_blocking(&engine, &snapshot_dir, frozen))
            .await
            .map_err(|e| io::Error::other(format!("snapshot builder stopped: {e}")))?
    }
}

fn build_snapshot_blocking(
    engine: &Arc<dyn Engine>,
    snapshot_dir: &Path,
    frozen: Option<Arc<dyn Engine>>,
) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
    let source = match frozen {
        Some(frozen) => frozen,
        None => engine
            .frozen(&snapshot_dir.join("scratch"))
            .map_err(to_io)?,
    };
    let applied: Option<LogIdOf<TypeConfig>> = read_meta(source.as_ref(), KEY_APPLIED)?.flatten();
    let membership: StoredMembershipOf<TypeConfig> =
        read_meta(source.as_ref(), KEY_MEMBERSHIP)?.unwrap_or_default();
    let meta = SnapshotMetaOf::<TypeConfig> {
        last_log_id: applied,
        last_membership: membership,
    };
    let name = snapshot_name(&meta);
    let data_path = snapshot_dir.join(format!("{name}.snap"));
    let meta_path = snapshot_dir.join(format!("{name}.meta"));
    write_snapshot_file(source.as_ref(), &data_path)?;
    drop(source);
    let _ = std::fs::remove_dir_all(snapshot_dir.join("scratch"));
    std::fs::write(&meta_path, encode(&meta)?)?;
    StateMachine::prune_snapshots(snapshot_dir)?;
    tracing::info!(snapshot = %name, "built snapshot");
    Ok(SnapshotOf::<TypeConfig, SnapshotFile> {
        meta,
        snapshot: SnapshotFile { path: data_path },
    })
}

fn cf_tag(cf: Cf) -> u8 {
    Cf::STATE_MACHINE
        .iter()
        .position(|c| *c == cf)
        .expect("state machine column family") as u8
}

/// Writes every pair of the state-machine column families of `engine`.
fn write_snapshot_file(engine: &dyn Engine, path: &Path) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
    out.write_all(SNAPSHOT_MAGIC)?;
    for cf in Cf::STATE_MACHINE {
        for item in engine.scan(cf, Bound::Unbounded, Bound::Unbounded, false) {
            let (key, value) = item.map_err(to_io)?;
            out.write_all(&[cf_tag(cf)])?;
            out.write_all(&(key.len() as u32).to_be_bytes())?;
            out.write_all(&key)?;
            out.write_all(&(value.len() as u32).to_be_bytes())?;
            out.write_all(&value)?;
        }
    }
    out.write_all(&[u8::MAX])?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a snapshot file, calling `each` for every pair in it.
fn read_snapshot_file(
    path: &Path,
    mut each: impl FnMut(Cf, Vec<u8>, Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot {}: {what}", path.display()),
        )
    };
    let mut input = BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(bad("not a skiff snapshot"));
    }
    let read_bytes = |input: &mut BufReader<std::fs::File>| -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        input.read_exact(&mut buf)?;
        Ok(buf)
    };
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] == u8::MAX {
            return Ok(());
        }
        let cf = *Cf::STATE_MACHINE
            .get(tag[0] as usize)
            .ok_or_else(|| bad("unknown column family"))?;
        let key = read_bytes(&mut input)?;
        let value = read_bytes(&mut input)?;
        each(cf, key, value)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemoryEngine;

    fn refused(reply: &CommandReply) -> bool {
        matches!(reply, CommandReply::Refused(_))
    }

    #[test]
    fn an_expiry_loses_to_a_keep_alive_that_committed_first() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mvcc = Mvcc::open(engine).expect("mvcc");
        let (id, first, renewed) = (7, 1_000, 5_000);
        let expire = |deadline_ms| Command::LeaseExpire { id, deadline_ms };

        // In one apply batch: grant, renew, then an expiry decided before
        // the renewal (refused) and one decided after it (applied).
        let mut batch = mvcc.begin();
        let mut extra = WriteBatch::new();
        let mut deadlines = HashMap::new();
        let mut apply = |batch: &mut ApplyBatch<'_>, extra: &mut WriteBatch, c: &Command| {
            StateMachine::apply_command(batch, extra, &mut deadlines, c)
        };
        let grant = Command::LeaseGrant {
            id,
            ttl: 1,
            expires_at_ms: first,
        };
        assert!(!refused(&apply(&mut batch, &mut extra, &grant)));
        let keep_alive = Command::LeaseKeepAlive {
            id,
            expires_at_ms: renewed,
        };
        assert!(!refused(&apply(&mut batch, &mut extra, &keep_alive)));
        assert!(refused(&apply(&mut batch, &mut extra, &expire(first))));
        assert!(batch.lease_exists(id).expect("lookup"));
        mvcc.commit(batch, extra, Durability::Buffered)
            .expect("commit");

        // In a later batch the deadline is read back from the engine.
        let mut batch = mvcc.begin();
        let mut extra = WriteBatch::new();
        assert!(refused(&apply(&mut batch, &mut extra, &expire(first))));
        assert!(!refused(&apply(&mut batch, &mut extra, &expire(renewed))));
        assert!(!batch.lease_exists(id).expect("lookup"), "expired");
        assert!(
            refused(&apply(&mut batch, &mut extra, &expire(renewed))),
            "once"
        );
    }
}
