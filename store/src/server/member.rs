//! One member of the store: its raft node, its state, and the two paths every
//! client request takes: proposing a write (forwarded to the leader when this
//! member is a follower) and the read barrier of a linearizable read.

use std::sync::Arc;
use std::time::Duration;

use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::raft::ReadPolicy;
use skiff_proto::etcdserverpb::ResponseHeader;
use skiff_proto::skiffraftpb::{ForwardRequest, ReadIndexRequest};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use tonic::Status;

use super::membership::MemberChange;
use super::status::{msg, unavailable};
use crate::raft::codec::{decode, encode};
use crate::raft::network::Peers;
use crate::raft::state_machine::Shared;
use crate::raft::{Command, CommandReply, MemberId, MemberNode, Raft};

/// Attempts at finding a leader that accepts a request before giving up.
const LEADER_RETRY_LIMIT: u32 = 20;
/// The pause between such attempts grows from this, up to four times it.
const LEADER_RETRY_BACKOFF: Duration = Duration::from_millis(25);

/// Timing settings of a member.
#[derive(Debug, Clone)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// How long a client request may take before it fails with
    /// "request timed out".
    pub request_timeout: Duration,
    /// How long a watcher that asked for progress notifications stays idle
    /// before it gets one.
    pub watch_progress_notify_interval: Duration,
}

impl Timing {
    /// How long a request waits for a leader to appear before it fails with
    /// "no leader": two election timeouts, or the request's own deadline.
    fn leader_wait(&self) -> Duration {
        (self.election_timeout * 2).min(self.request_timeout)
    }
}

/// A forwarded write's outcome, as the leader reports it to the follower.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum ForwardOutcome {
    /// Applied on the leader at raft log `index`.
    Applied { reply: CommandReply, index: u64 },
    /// The receiver is not the leader; nothing was proposed.
    NotLeader { leader: Option<MemberId> },
    /// The outcome is unknown or the request failed: a gRPC status.
    Failed { code: i32, message: String },
}

/// What only the leader can do, and followers forward to it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum LeaderRequest {
    /// A write through the state machine.
    Write(Command),
    /// A membership change (etcd's Cluster service).
    Members(MemberChange),
}

impl LeaderRequest {
    /// Whether this request removes member `id` from the cluster.
    pub fn removes(&self, id: MemberId) -> bool {
        matches!(self, LeaderRequest::Members(MemberChange::Remove { id: removed }) if *removed == id)
    }
}

/// The leader's answer to a read-index request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ReadIndexOutcome {
    Index(u64),
    NotLeader { leader: Option<MemberId> },
    Failed { code: i32, message: String },
}

/// Reads waiting for a read-index round beyond this many are refused with
/// "too many requests".
const READ_QUEUE_LIMIT: usize = 65_536;

/// The two kinds of read-index round.
#[derive(Debug, Clone, Copy)]
pub enum ReadRound {
    /// For a read served here: from the leader, this member or another.
    Cluster,
    /// For a follower that asked this member, which believes it leads.
    Local,
}

/// Reads waiting for the next read-index round, and whether a task runs
/// rounds. As etcd's linearizable read loop: one leadership confirmation
/// serves every read that arrived before it started, so a hundred
/// concurrent reads cost one round, not a hundred.
#[derive(Debug, Default)]
pub struct ReadQueue {
    state: std::sync::Mutex<ReadQueueState>,
}

#[derive(Debug, Default)]
struct ReadQueueState {
    waiting: Vec<oneshot::Sender<ReadIndexOutcome>>,
    running: bool,
}

impl ReadQueue {
    /// Queues the caller for the next round. Also says whether the caller
    /// must start the task that runs rounds (none runs).
    fn join(&self) -> Result<(oneshot::Receiver<ReadIndexOutcome>, bool), ReadIndexOutcome> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.waiting.len() >= READ_QUEUE_LIMIT {
            return Err(ReadIndexOutcome::Failed {
                code: tonic::Code::ResourceExhausted as i32,
                message: msg::TOO_MANY_REQUESTS.into(),
            });
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.push(tx);
        let start = !std::mem::replace(&mut state.running, true);
        Ok((rx, start))
    }

    /// Everyone queued, for the round about to start; `None`, and the task
    /// marked stopped, when nobody is.
    fn next_round(&self) -> Option<Vec<oneshot::Sender<ReadIndexOutcome>>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.waiting.is_empty() {
            state.running = false;
            return None;
        }
        Some(std::mem::take(&mut state.waiting))
    }
}

/// How old a sample of the database size may be when a write is checked
/// against the quota. Measuring lists the data directory and asks every
/// column family; doing that for each write cost more than the write.
const DB_SIZE_MAX_AGE: Duration = Duration::from_millis(100);

/// The database size, measured at most every [`DB_SIZE_MAX_AGE`].
#[derive(Debug, Default)]
pub struct SizeSample {
    last: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl SizeSample {
    /// The last sample if it is fresh enough, otherwise `measure()`.
    fn get(&self, measure: impl FnOnce() -> u64) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *last {
            Some((at, size)) if now.duration_since(at) < DB_SIZE_MAX_AGE => size,
            _ => {
                let size = measure();
                *last = Some((now, size));
                size
            }
        }
    }
}

/// Everything the services need to serve requests.
pub struct Member {
    pub id: MemberId,
    pub cluster_id: u64,
    pub name: String,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub peers: Arc<Peers>,
    pub timing: Timing,
    /// The size of the store beyond which writes raise NOSPACE.
    pub quota_bytes: u64,
    /// Held by the leader while it checks and proposes a membership change,
    /// so that changes are decided one at a time.
    pub membership_lock: tokio::sync::Mutex<()>,
    /// `--unsafe-skip-read-index`: answer linearizable reads from local
    /// state, as if they were serializable. Breaks linearizability; it exists
    /// so that the fault checker can show it catches stale reads.
    pub skip_read_index: bool,
    /// Linearizable reads served here, waiting for a read index.
    pub cluster_reads: ReadQueue,
    /// Followers' read-index requests, waiting for this leader's round.
    pub local_reads: ReadQueue,
    /// The database size the quota check uses.
    pub db_size: SizeSample,
}

/// etcd's AlarmType NOSPACE.
pub const ALARM_NOSPACE: i32 = 1;

impl Member {
    /// Refuses a write of `request_bytes` while the NOSPACE alarm is raised,
    /// and raises it (through raft, for the whole cluster) when the write
    /// would take the store over its quota. Reads and deletes never ask.
    pub async fn check_space(&self, request_bytes: usize) -> Result<(), Status> {
        let no_space = || Status::resource_exhausted(msg::NO_SPACE);
        let alarms = self
            .shared
            .alarms()
            .map_err(|e| Status::internal(e.to_string()))?;
        if alarms.iter().any(|(_, alarm)| *alarm == ALARM_NOSPACE) {
            return Err(no_space());
        }
        let size = self.db_size.get(|| self.shared.mvcc.engine().size_bytes());
        if size + request_bytes as u64 > self.quota_bytes {
            tracing::warn!(
                size,
                quota = self.quota_bytes,
                "database space exceeded; raising NOSPACE"
            );
            let raise = Command::Alarm {
                member: self.id,
                alarm: ALARM_NOSPACE,
                active: true,
            };
            if let Err(status) = self.propose(raise).await {
                tracing::warn!(%status, "raising NOSPACE failed");
            }
            return Err(no_space());
        }
        Ok(())
    }

    /// A response header as etcd fills it.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.raft_term(),
        }
    }

    /// A copy of raft's current metrics.
    pub fn metrics(&self) -> RaftMetrics<crate::raft::TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn raft_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The leader this member knows of, if any.
    pub fn current_leader(&self) -> Option<MemberId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    fn leader_node(&self, leader: MemberId) -> Option<MemberNode> {
        let metrics = self.metrics();
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
    }

    /// Waits until a leader is known, for at most the leader wait or until
    /// `deadline`; then fails with "no leader".
    async fn wait_for_leader(&self, deadline: Instant) -> Result<MemberId, Status> {
        let deadline = deadline.min(Instant::now() + self.timing.leader_wait());
        let mut metrics = self.raft.metrics();
        let waited = timeout_at(deadline, async {
            loop {
                if let Some(leader) = metrics.borrow_and_update().current_leader {
                    return Some(leader);
                }
                if metrics.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(Some(leader)) => Ok(leader),
            Ok(None) => Err(unavailable(msg::STOPPED)),
            Err(_) => Err(unavailable(msg::NO_LEADER)),
        }
    }

    /// The leader to send a request to: the known one, or the next to appear.
    /// After `attempt` refusals it backs off a little first (bounded).
    async fn pick_leader(&self, attempt: u32, deadline: Instant) -> Result<MemberId, Status> {
        if attempt > 0 {
            if attempt > LEADER_RETRY_LIMIT {
                return Err(unavailable(msg::NO_LEADER));
            }
            let pause = LEADER_RETRY_BACKOFF * attempt.min(4);
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
        }
        if Instant::now() >= deadline {
            return Err(unavailable(msg::TIMEOUT));
        }
        match self.current_leader() {
            Some(leader) => Ok(leader),
            None => self.wait_for_leader(deadline).await,
        }
    }

    /// Proposes `command` through raft and returns the state machine's reply:
    /// the revision after it and the encoded response. Followers forward to
    /// the leader. Without a leader the call fails with "no leader" within
    /// the request timeout.
    pub async fn propose(&self, command: Command) -> Result<(i64, Vec<u8>), Status> {
        self.on_leader(LeaderRequest::Write(command)).await
    }

    /// Runs `request` on the leader (here, or forwarded) and answers once
    /// this member has applied its outcome.
    pub async fn on_leader(&self, request: LeaderRequest) -> Result<(i64, Vec<u8>), Status> {
        let deadline = Instant::now() + self.timing.request_timeout;
        // A member that is removed never applies its removal.
        let removes_me = request.removes(self.id);
        let mut attempt = 0;
        loop {
            let leader = self.pick_leader(attempt, deadline).await?;
            attempt += 1;
            let outcome = if leader == self.id {
                self.run_local(request.clone(), deadline).await
            } else {
                self.forward(leader, &request, deadline).await
            };
            if let ForwardOutcome::Applied { index, .. } = outcome
                && !removes_me
            {
                // As etcd, answer once this member has applied the write
                // too, so that its own serializable reads see it.
                if timeout_at(deadline, self.shared.wait_applied(index))
                    .await
                    .is_err()
                {
                    return Err(unavailable(msg::TIMEOUT_APPLY));
                }
            }
            match outcome {
                ForwardOutcome::Applied {
                    reply: CommandReply::Ok { revision, body },
                    ..
                } => {
                    return Ok((revision, body));
                }
                ForwardOutcome::Applied {
                    reply: CommandReply::Refused(status),
                    ..
                } => return Err(status.into()),
                ForwardOutcome::Failed { code, message } => {
                    return Err(Status::new(tonic::Code::from_i32(code), message));
                }
                // Nothing was proposed: safe to try the leader we learn of next.
                ForwardOutcome::NotLeader { leader: next } => {
                    tracing::debug!(tried = %format_args!("{leader:x}"), ?next, "not the leader, retrying");
                }
            }
        }
    }

    /// Runs a leader request on this member, which believes it leads.
    pub async fn run_local(&self, request: LeaderRequest, deadline: Instant) -> ForwardOutcome {
        match request {
            LeaderRequest::Write(command) => self.propose_local(command, deadline).await,
            LeaderRequest::Members(change) => self.change_members_local(change, deadline).await,
        }
    }

    /// Proposes on this member, which believes it leads.
    pub async fn propose_local(&self, command: Command, deadline: Instant) -> ForwardOutcome {
        match timeout_at(deadline, self.raft.client_write(command)).await {
            Err(_) => ForwardOutcome::Failed {
                code: tonic::Code::Unavailable as i32,
                message: msg::TIMEOUT.into(),
            },
            Ok(Ok(response)) => ForwardOutcome::Applied {
                index: response.log_id.index(),
                reply: response.data,
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                ForwardOutcome::NotLeader {
                    leader: f.leader_id,
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)))) => {
                ForwardOutcome::Failed {
                    code: tonic::Code::Unavailable as i32,
                    message: msg::LEADER_CHANGED.into(),
                }
            }
            Ok(Err(RaftError::APIError(e))) => ForwardOutcome::Failed {
                code: tonic::Code::Internal as i32,
                message: e.to_string(),
            },
            Ok(Err(RaftError::Fatal(e))) => {
                tracing::error!(error = %e, "raft stopped");
                ForwardOutcome::Failed {
                    code: tonic::Code::Unavailable as i32,
                    message: msg::STOPPED.into(),
                }
            }
        }
    }

    async fn forward(
        &self,
        leader: MemberId,
        request: &LeaderRequest,
        deadline: Instant,
    ) -> ForwardOutcome {
        let failed = |message: &str| ForwardOutcome::Failed {
            code: tonic::Code::Unavailable as i32,
            message: message.to_string(),
        };
        let Some(node) = self.leader_node(leader) else {
            return ForwardOutcome::NotLeader { leader: None };
        };
        let mut client = match self.peers.client(leader, &node) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(leader = %format_args!("{leader:x}"), error = %e, "cannot reach the leader");
                return ForwardOutcome::NotLeader { leader: None };
            }
        };
        let bytes = match encode(request) {
            Ok(bytes) => bytes,
            Err(e) => {
                return ForwardOutcome::Failed {
                    code: tonic::Code::Internal as i32,
                    message: e.to_string(),
                };
            }
        };
        let mut request = tonic::Request::new(ForwardRequest { command: bytes });
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match timeout_at(deadline, client.forward(request)).await {
            Err(_) => failed(msg::TIMEOUT),
            // The leader never received it: as good as not proposed.
            Ok(Err(status)) if is_connect_failure(&status) => {
                ForwardOutcome::NotLeader { leader: None }
            }
            Ok(Err(status)) => {
                tracing::debug!(%status, "forwarding to the leader failed");
                failed(msg::TIMEOUT_LEADER_FAIL)
            }
            Ok(Ok(response)) => match decode(&response.into_inner().response) {
                Ok(outcome) => outcome,
                Err(e) => ForwardOutcome::Failed {
                    code: tonic::Code::Internal as i32,
                    message: e.to_string(),
                },
            },
        }
    }

    /// Waits until this member's state machine reflects every write
    /// acknowledged before the call: etcd's ReadIndex. The leader confirms
    /// its leadership with a quorum and names its commit index; this member
    /// then waits to have applied that index. Reads that arrive while a
    /// read-index round runs share the next round ([`ReadQueue`]).
    pub async fn read_barrier(self: &Arc<Self>) -> Result<(), Status> {
        if self.skip_read_index {
            tracing::trace!("read index skipped (--unsafe-skip-read-index)");
            return Ok(());
        }
        let deadline = Instant::now() + self.timing.request_timeout;
        match self.read_index(ReadRound::Cluster, deadline).await {
            ReadIndexOutcome::Index(index) => {
                match timeout_at(deadline, self.shared.wait_applied(index)).await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(unavailable(msg::TIMEOUT_APPLY)),
                }
            }
            ReadIndexOutcome::Failed { code, message } => {
                Err(Status::new(tonic::Code::from_i32(code), message))
            }
            // A cluster round retries until it finds a leader or gives up.
            ReadIndexOutcome::NotLeader { .. } => Err(unavailable(msg::NO_LEADER)),
        }
    }

    /// The read index of a round of `round`'s kind that starts after this
    /// call: the caller queues, and one task per kind runs rounds for
    /// everyone queued, one after another.
    pub async fn read_index(
        self: &Arc<Self>,
        round: ReadRound,
        deadline: Instant,
    ) -> ReadIndexOutcome {
        let queue = self.read_queue(round);
        let (answer, start) = match queue.join() {
            Ok(joined) => joined,
            Err(full) => return full,
        };
        if start {
            let member = Arc::clone(self);
            tokio::spawn(async move { member.run_read_rounds(round).await });
        }
        match timeout_at(deadline, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => ReadIndexOutcome::Failed {
                code: tonic::Code::Unavailable as i32,
                message: msg::STOPPED.into(),
            },
            Err(_) => ReadIndexOutcome::Failed {
                code: tonic::Code::Unavailable as i32,
                message: msg::TIMEOUT.into(),
            },
        }
    }

    fn read_queue(&self, round: ReadRound) -> &ReadQueue {
        match round {
            ReadRound::Cluster => &self.cluster_reads,
            ReadRound::Local => &self.local_reads,
        }
    }

    /// Runs rounds until nobody waits. Each round answers every read that
    /// queued before it began, never one that came later.
    async fn run_read_rounds(self: Arc<Self>, round: ReadRound) {
        let queue = self.read_queue(round);
        while let Some(waiters) = queue.next_round() {
            let deadline = Instant::now() + self.timing.request_timeout;
            let outcome = match round {
                ReadRound::Cluster => self.cluster_read_index(deadline).await,
                ReadRound::Local => self.read_index_local(deadline).await,
            };
            tracing::trace!(?round, reads = waiters.len(), ?outcome, "read index round");
            for waiter in waiters {
                let _ = waiter.send(outcome.clone());
            }
        }
    }

    /// The read index from the leader, this member or another, trying the
    /// next leader it learns of until `deadline`.
    async fn cluster_read_index(&self, deadline: Instant) -> ReadIndexOutcome {
        let mut attempt = 0;
        loop {
            let leader = match self.pick_leader(attempt, deadline).await {
                Ok(leader) => leader,
                Err(status) => {
                    return ReadIndexOutcome::Failed {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                    };
                }
            };
            attempt += 1;
            let outcome = if leader == self.id {
                self.read_index_local(deadline).await
            } else {
                self.read_index_remote(leader, deadline).await
            };
            if !matches!(outcome, ReadIndexOutcome::NotLeader { .. }) {
                return outcome;
            }
        }
    }

    /// The read index on this member, which believes it leads.
    pub async fn read_index_local(&self, deadline: Instant) -> ReadIndexOutcome {
        match timeout_at(deadline, self.raft.get_read_log_id(ReadPolicy::ReadIndex)).await {
            Err(_) => ReadIndexOutcome::Failed {
                code: tonic::Code::Unavailable as i32,
                message: msg::TIMEOUT.into(),
            },
            Ok(Ok((read_log_id, _applied))) => ReadIndexOutcome::Index(read_log_id.index()),
            Ok(Err(RaftError::APIError(
                openraft::errors::LinearizableReadError::ForwardToLeader(f),
            ))) => ReadIndexOutcome::NotLeader {
                leader: f.leader_id,
            },
            Ok(Err(RaftError::APIError(e))) => {
                tracing::debug!(error = %e, "read index refused");
                ReadIndexOutcome::NotLeader { leader: None }
            }
            Ok(Err(RaftError::Fatal(_))) => ReadIndexOutcome::Failed {
                code: tonic::Code::Unavailable as i32,
                message: msg::STOPPED.into(),
            },
        }
    }

    async fn read_index_remote(&self, leader: MemberId, deadline: Instant) -> ReadIndexOutcome {
        let Some(node) = self.leader_node(leader) else {
            return ReadIndexOutcome::NotLeader { leader: None };
        };
        let Ok(mut client) = self.peers.client(leader, &node) else {
            return ReadIndexOutcome::NotLeader { leader: None };
        };
        let mut request = tonic::Request::new(ReadIndexRequest {});
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match timeout_at(deadline, client.read_index(request)).await {
            Err(_) => ReadIndexOutcome::Failed {
                code: tonic::Code::Unavailable as i32,
                message: msg::TIMEOUT.into(),
            },
            // A read is always safe to retry elsewhere.
            Ok(Err(status)) => {
                tracing::debug!(%status, "read index from the leader failed");
                ReadIndexOutcome::NotLeader { leader: None }
            }
            Ok(Ok(response)) => decode(&response.into_inner().payload).unwrap_or_else(|e| {
                ReadIndexOutcome::Failed {
                    code: tonic::Code::Internal as i32,
                    message: e.to_string(),
                }
            }),
        }
    }
}

/// Whether a failed call provably never reached the peer.
fn is_connect_failure(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let text = format!("{status:?}").to_lowercase();
    text.contains("connection refused")
        || text.contains("tcp connect error")
        || text.contains("error trying to connect")
}
