//! etcd's Lease service, and the leader's expiry of leases.
//!
//! A lease's deadline is absolute (milliseconds since the Unix epoch) and
//! recorded through raft on grant and on every keep-alive, so that whichever
//! member leads revokes it at the same moment. Only the leader revokes
//! expired leases, through raft, which deletes their keys in one revision.
//! No renewal can commit while there is no leader, so a new leader gives a
//! lease its whole TTL from when it took the lead before revoking it, but
//! never more than one election timeout past its recorded deadline: a
//! client that renews on time keeps its lease across an election, and no
//! election extends a lease by more than that (etcd's new leader refreshes
//! every lease to its whole TTL). An expiry is proposed with the deadline
//! the leader saw and applied only if no keep-alive changed it meanwhile.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use openraft::alias::VoteOf;
use openraft::async_runtime::WatchReceiver;
use skiff_proto::etcdserverpb::lease_server::Lease;
use skiff_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::member::Member;
use super::status::kv_error_status;
use crate::raft::{Command, TypeConfig};

/// etcd's largest lease TTL, in seconds.
const MAX_LEASE_TTL_S: i64 = 9_000_000_000;
/// How often the leader looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(200);
/// Leases revoked per tick at most (etcd revokes at most 1000 a second).
const REVOKES_PER_TICK: usize = 200;
/// Keep-alive answers queued for one client stream.
const KEEPALIVE_QUEUE_LIMIT: usize = 64;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct LeaseService {
    member: Arc<Member>,
}

impl LeaseService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

/// The shortest TTL granted: one and a half election timeouts, rounded up
/// to whole seconds (etcd's minimum), so that a lease survives an election.
fn min_ttl_s(member: &Member) -> i64 {
    let ms = member.timing.election_timeout.as_millis() as i64 * 3 / 2;
    (ms + 999) / 1000
}

fn io_status(e: std::io::Error) -> Status {
    Status::internal(e.to_string())
}

/// Renews lease `id` through raft; its granted TTL, or 0 when it is unknown.
async fn keep_alive(member: &Arc<Member>, id: i64) -> Result<i64, Status> {
    let lookup = || {
        member
            .shared
            .mvcc
            .lease(id)
            .map_err(|e| kv_error_status(&e))
    };
    let info = match lookup()? {
        Some(info) => info,
        // This member may not have applied the grant yet: look again once
        // it has caught up with the leader.
        None => {
            member.read_barrier().await?;
            let Some(info) = lookup()? else {
                return Ok(0);
            };
            info
        }
    };
    let command = Command::LeaseKeepAlive {
        id,
        expires_at_ms: now_ms() + info.ttl * 1000,
    };
    match member.propose(command).await {
        Ok(_) => Ok(info.ttl),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(0),
        Err(status) => Err(status),
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL_S {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let ttl = req.ttl.max(min_ttl_s(&self.member));
        let id = if req.id != 0 {
            req.id
        } else {
            rand::random::<i64>() & i64::MAX | 1
        };
        self.member.check_space(0).await?;
        let command = Command::LeaseGrant {
            id,
            ttl,
            expires_at_ms: now_ms() + ttl * 1000,
        };
        let (revision, _) = self.member.propose(command).await?;
        Ok(Response::new(LeaseGrantResponse {
            header: Some(self.member.header(revision)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let (revision, _) = self.member.propose(Command::LeaseRevoke { id }).await?;
        Ok(Response::new(LeaseRevokeResponse {
            header: Some(self.member.header(revision)),
        }))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (out, out_rx) = mpsc::channel(KEEPALIVE_QUEUE_LIMIT);
        let member = self.member.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = requests.message().await {
                let reply = keep_alive(&member, req.id)
                    .await
                    .map(|ttl| LeaseKeepAliveResponse {
                        header: Some(member.header(member.shared.mvcc.current_revision())),
                        id: req.id,
                        ttl,
                    });
                if out.send(reply).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        self.member.read_barrier().await?;
        let shared = &self.member.shared;
        let header = Some(self.member.header(shared.mvcc.current_revision()));
        let info = shared.mvcc.lease(req.id).map_err(|e| kv_error_status(&e))?;
        let deadline = shared.lease_deadline(req.id).map_err(io_status)?;
        let (Some(info), Some(deadline)) = (info, deadline) else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let remaining_ms = (deadline - now_ms()).max(0);
        let keys = if req.keys {
            shared
                .mvcc
                .lease_keys(req.id)
                .map_err(|e| kv_error_status(&e))?
        } else {
            Vec::new()
        };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: (remaining_ms + 999) / 1000,
            granted_ttl: info.ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.member.read_barrier().await?;
        let shared = &self.member.shared;
        let leases = shared.mvcc.leases().map_err(|e| kv_error_status(&e))?;
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.member.header(shared.mvcc.current_revision())),
            leases: leases
                .into_iter()
                .map(|l| LeaseStatus { id: l.id })
                .collect(),
        }))
    }
}

/// The leases to revoke now, at most `limit`, with the deadline each was
/// found with: those whose recorded deadline has passed, and that have had
/// their whole TTL since this member took the lead at `leading_since_ms` or
/// are more than `grace_ms` (one election timeout) past their deadline. The
/// first gives a client whose renewals could not commit during an election
/// the time to renew; the second keeps that from extending a lease by more
/// than one election timeout. `ttl_s` gives a lease's granted TTL (`None`
/// when it is gone meanwhile).
fn expired_leases(
    deadlines: &[(i64, i64)],
    mut ttl_s: impl FnMut(i64) -> Option<i64>,
    leading_since_ms: i64,
    grace_ms: i64,
    now_ms: i64,
    limit: usize,
) -> Vec<(i64, i64)> {
    deadlines
        .iter()
        .filter(|(_, deadline)| *deadline <= now_ms)
        .filter(|(id, deadline)| {
            ttl_s(*id).is_some_and(|ttl| {
                leading_since_ms + ttl * 1000 <= now_ms || deadline + grace_ms <= now_ms
            })
        })
        .take(limit)
        .copied()
        .collect()
}

/// While this member leads, revokes every lease that has expired (see
/// [`expired_leases`]). Raft's metrics tell the moment it takes the lead.
pub async fn expire_leases(member: Arc<Member>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Server metrics change with the vote, the leader or the membership,
    // not with every write.
    let mut server = member.raft.server_metrics();
    // (vote, when this member took the lead with it) while it leads.
    let mut leading: Option<(VoteOf<TypeConfig>, i64)> = None;
    loop {
        let check = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            changed = server.changed() => {
                if changed.is_err() {
                    return Ok(()); // raft has stopped
                }
                false
            }
            _ = tick.tick() => true,
        };
        let (leader, vote) = {
            let now = server.borrow_watched();
            (now.current_leader, now.vote)
        };
        if leader != Some(member.id) {
            leading = None;
            continue;
        }
        let leading_since_ms = match leading {
            Some((leading_vote, since)) if leading_vote == vote => since,
            _ => {
                let since = now_ms();
                leading = Some((vote, since));
                since
            }
        };
        if !check {
            continue;
        }
        let deadlines = match member.shared.lease_deadlines() {
            Ok(deadlines) => deadlines,
            Err(e) => {
                tracing::error!(error = %e, "cannot read lease deadlines");
                continue;
            }
        };
        let ttl_s = |id: i64| match member.shared.mvcc.lease(id) {
            Ok(info) => info.map(|info| info.ttl),
            Err(e) => {
                tracing::error!(error = %e, lease = %format_args!("{id:x}"), "cannot read a lease");
                None
            }
        };
        let expired = expired_leases(
            &deadlines,
            ttl_s,
            leading_since_ms,
            member.timing.election_timeout.as_millis() as i64,
            now_ms(),
            REVOKES_PER_TICK,
        );
        for (id, deadline_ms) in expired {
            // Revoked only if no keep-alive renewed it meanwhile.
            match member
                .propose(Command::LeaseExpire { id, deadline_ms })
                .await
            {
                Ok(_) => {
                    tracing::info!(lease = %format_args!("{id:x}"), "lease expired and revoked")
                }
                Err(status) => {
                    tracing::debug!(lease = %format_args!("{id:x}"), %status, "revoking an expired lease failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;
    /// One election timeout.
    const GRACE: i64 = 1_000;

    fn ids(expired: Vec<(i64, i64)>) -> Vec<i64> {
        expired.into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn a_lease_expires_at_its_deadline_under_a_settled_leader() {
        let deadlines = [(1, NOW - 1), (2, NOW), (3, NOW + 1)];
        let expired = expired_leases(&deadlines, |_| Some(2), NOW - 60_000, GRACE, NOW, 10);
        assert_eq!(
            expired,
            vec![(1, NOW - 1), (2, NOW)],
            "with the deadline seen"
        );
    }

    #[test]
    fn a_new_leader_gives_every_lease_its_whole_ttl_but_at_most_one_election_timeout_more() {
        // Both deadlines passed 500 ms ago, during the election; lease 1 has
        // a 2 s TTL, lease 2 a 5 s one.
        let deadlines = [(1, NOW - 500), (2, NOW - 500)];
        let ttl = |id: i64| Some(if id == 1 { 2 } else { 5 });
        // Leading for 3 s: lease 1 had its TTL, lease 2 not yet.
        assert_eq!(
            ids(expired_leases(&deadlines, ttl, NOW - 3_000, GRACE, NOW, 10)),
            vec![1]
        );
        // Leading for 1 s: neither, and neither is a grace past its deadline.
        assert_eq!(
            ids(expired_leases(&deadlines, ttl, NOW - 1_000, GRACE, NOW, 10)),
            Vec::<i64>::new(),
            "not before a whole TTL since the lead was taken"
        );
        // An election timeout past the deadline ends any lease.
        assert_eq!(
            ids(expired_leases(
                &deadlines,
                ttl,
                NOW - 1_000,
                GRACE,
                NOW + 500,
                10
            )),
            vec![1, 2],
            "never more than one election timeout past the deadline"
        );
    }

    #[test]
    fn gone_leases_are_skipped_and_revokes_are_bounded() {
        let deadlines: Vec<(i64, i64)> = (1..=10).map(|id| (id, NOW - 10)).collect();
        let ttl = |id: i64| (id % 2 == 0).then_some(1);
        assert_eq!(
            ids(expired_leases(&deadlines, ttl, NOW - 60_000, GRACE, NOW, 3)),
            vec![2, 4, 6]
        );
    }
}
