//! Membership changes: etcd's MemberAdd, MemberRemove, MemberUpdate and
//! MemberPromote, decided by the leader and carried out with openraft's
//! joint consensus.
//!
//! The leader checks a change against the cluster as it is (etcd's
//! `--strict-reconfig-check`, on by default): a change after which the
//! members that answer the leader would no longer make a quorum is refused
//! with "not enough started members", and a learner is promoted only once
//! its log is within 10% of the leader's. Changes are decided one at a time
//! ([`Member::membership_lock`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use skiff_proto::skiffraftpb::RaftMessage;
use tokio::time::{Instant, timeout_at};
use tonic::Code;

use super::member::{ForwardOutcome, Member};
use super::status::msg;
use crate::raft::codec::encode;
use crate::raft::{CommandReply, MemberId, MemberNode};

/// etcd's default limit on learners in a cluster.
pub const MAX_LEARNERS: usize = 1;
/// A learner may be promoted once its log reaches this share of the
/// leader's (etcd's readyPercentThreshold).
const LEARNER_READY_SHARE: f64 = 0.9;
/// How long a member may take to answer the leader's liveness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A membership change, as the Cluster service asks for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberChange {
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: MemberId,
    },
    Update {
        id: MemberId,
        peer_urls: Vec<String>,
    },
    Promote {
        id: MemberId,
    },
}

/// What a member tells one that joins the cluster: who is in it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: u64,
    pub members: Vec<(MemberId, MemberNode)>,
}

impl ClusterInfo {
    pub fn of(member: &Member) -> Self {
        let metrics = member.metrics();
        let members = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        Self {
            cluster_id: member.cluster_id,
            members,
        }
    }
}

/// The leader's view of the cluster that a change is checked against.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub voters: BTreeSet<MemberId>,
    pub nodes: BTreeMap<MemberId, MemberNode>,
    /// Members the leader heard from lately, itself included.
    pub active: BTreeSet<MemberId>,
    /// The leader's last log index.
    pub leader_index: u64,
    /// The last log index known to be replicated to each member.
    pub matched: BTreeMap<MemberId, u64>,
}

/// A change refused before anything was proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: &'static str,
}

fn refuse(code: Code, message: &'static str) -> Refusal {
    Refusal { code, message }
}

/// The majority of `n` voters.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Whether `urls` are peer URLs a member can be reached at.
fn valid_peer_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|url| {
            let Some(rest) = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
            else {
                return false;
            };
            let host_port = rest.trim_end_matches('/');
            match host_port.rsplit_once(':') {
                Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
                None => false,
            }
        })
}

/// Another member already uses one of `urls`.
fn urls_taken(view: &View, urls: &[String], except: Option<MemberId>) -> bool {
    view.nodes
        .iter()
        .filter(|(id, _)| Some(**id) != except)
        .any(|(_, node)| node.peer_urls.iter().any(|u| urls.contains(u)))
}

/// Checks `change` against `view` and says what openraft should do; `new_id`
/// is the id an added member gets. Pure, so that every rule is unit tested.
pub fn plan(
    view: &View,
    change: &MemberChange,
    new_id: MemberId,
) -> Result<(ChangeMembers<MemberId, MemberNode>, MemberId), Refusal> {
    let learners = view
        .nodes
        .keys()
        .filter(|id| !view.voters.contains(id))
        .count();
    let active_voters = view.voters.intersection(&view.active).count();
    let known = |id: &MemberId| {
        view.nodes
            .get(id)
            .ok_or_else(|| refuse(Code::NotFound, msg::MEMBER_NOT_FOUND))
    };
    match change {
        MemberChange::Add { peer_urls, learner } => {
            if !valid_peer_urls(peer_urls) {
                return Err(refuse(Code::InvalidArgument, msg::MEMBER_BAD_URLS));
            }
            if urls_taken(view, peer_urls, None) {
                return Err(refuse(Code::FailedPrecondition, msg::PEER_URL_EXISTS));
            }
            let node = MemberNode {
                name: String::new(),
                peer_urls: peer_urls.clone(),
            };
            if *learner {
                if learners >= MAX_LEARNERS {
                    return Err(refuse(Code::FailedPrecondition, msg::TOO_MANY_LEARNERS));
                }
                return Ok((ChangeMembers::AddNodes([(new_id, node)].into()), new_id));
            }
            // The new member has not started yet. As etcd, a one-member
            // cluster may still grow to two.
            let voters_after = view.voters.len() + 1;
            if active_voters < quorum(voters_after) && !(active_voters == 1 && voters_after == 2) {
                return Err(refuse(Code::FailedPrecondition, msg::NOT_ENOUGH_STARTED));
            }
            Ok((ChangeMembers::AddVoters([(new_id, node)].into()), new_id))
        }
        MemberChange::Remove { id } => {
            known(id)?;
            if !view.voters.contains(id) {
                return Ok((ChangeMembers::RemoveNodes([*id].into()), *id));
            }
            let remaining = view.voters.len() - 1;
            let active_remaining = active_voters - usize::from(view.active.contains(id));
            if remaining == 0 || active_remaining < quorum(remaining) {
                return Err(refuse(Code::FailedPrecondition, msg::NOT_ENOUGH_STARTED));
            }
            Ok((ChangeMembers::RemoveVoters([*id].into()), *id))
        }
        MemberChange::Update { id, peer_urls } => {
            let node = known(id)?;
            if !valid_peer_urls(peer_urls) {
                return Err(refuse(Code::InvalidArgument, msg::MEMBER_BAD_URLS));
            }
            if urls_taken(view, peer_urls, Some(*id)) {
                return Err(refuse(Code::FailedPrecondition, msg::PEER_URL_EXISTS));
            }
            let node = MemberNode {
                name: node.name.clone(),
                peer_urls: peer_urls.clone(),
            };
            Ok((ChangeMembers::SetNodes([(*id, node)].into()), *id))
        }
        MemberChange::Promote { id } => {
            known(id)?;
            if view.voters.contains(id) {
                return Err(refuse(Code::FailedPrecondition, msg::NOT_LEARNER));
            }
            let matched = view.matched.get(id).copied().unwrap_or(0);
            if (matched as f64) < view.leader_index as f64 * LEARNER_READY_SHARE {
                return Err(refuse(Code::FailedPrecondition, msg::LEARNER_NOT_READY));
            }
            let active_after = active_voters + usize::from(view.active.contains(id));
            if active_after < quorum(view.voters.len() + 1) {
                return Err(refuse(Code::FailedPrecondition, msg::NOT_ENOUGH_STARTED));
            }
            Ok((ChangeMembers::AddVoterIds([*id].into()), *id))
        }
    }
}

/// A fresh member id: from the peer URLs, the cluster and the time, so that
/// a member removed and added again with the same URLs gets a new id.
fn fresh_id(view: &View, cluster_id: u64, peer_urls: &[String]) -> MemberId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut salt = nanos;
    loop {
        let id = super::fnv1a(&[
            urls.join(",").as_bytes(),
            &cluster_id.to_be_bytes(),
            &salt.to_be_bytes(),
        ]);
        if !view.nodes.contains_key(&id) {
            return id;
        }
        salt = salt.wrapping_add(1);
    }
}

impl Member {
    /// The cluster as this member, the leader, sees it now. A member is
    /// active when it answers a peer request right now (etcd counts the
    /// members it is connected to).
    async fn membership_view(&self) -> View {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let nodes: BTreeMap<MemberId, MemberNode> = membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        let probes = nodes
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, node)| async move { self.answers(*id, node).await.then_some(*id) });
        let mut active: BTreeSet<MemberId> = futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        active.insert(self.id);
        View {
            voters: membership.voter_ids().collect(),
            nodes,
            active,
            leader_index: metrics.last_log_index.unwrap_or(0),
            matched: metrics
                .replication
                .iter()
                .flatten()
                .map(|(id, log_id)| (*id, log_id.as_ref().map_or(0, |l| l.index())))
                .collect(),
        }
    }

    /// Whether member `id` answers a peer request within [`PROBE_TIMEOUT`].
    async fn answers(&self, id: MemberId, node: &MemberNode) -> bool {
        let Ok(mut client) = self.peers.client(id, node) else {
            return false;
        };
        let mut request = tonic::Request::new(RaftMessage::default());
        request.set_timeout(PROBE_TIMEOUT);
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, client.cluster_info(request)).await,
            Ok(Ok(_))
        )
    }

    /// Decides and proposes a membership change on this member, which
    /// believes it leads. The reply's body is the encoded `(member id, log
    /// index of the new membership)`.
    pub async fn change_members_local(
        &self,
        change: MemberChange,
        deadline: Instant,
    ) -> ForwardOutcome {
        let failed = |code: Code, message: &str| ForwardOutcome::Failed {
            code: code as i32,
            message: message.to_string(),
        };
        let Ok(_decided_alone) = timeout_at(deadline, self.membership_lock.lock()).await else {
            return failed(Code::Unavailable, msg::TIMEOUT);
        };
        let leader = self.current_leader();
        if leader != Some(self.id) {
            return ForwardOutcome::NotLeader { leader };
        }
        let view = self.membership_view().await;
        let new_id = match &change {
            MemberChange::Add { peer_urls, .. } => fresh_id(&view, self.cluster_id, peer_urls),
            _ => 0,
        };
        let (changes, id) = match plan(&view, &change, new_id) {
            Ok(planned) => planned,
            Err(refusal) => {
                tracing::info!(
                    ?change,
                    reason = refusal.message,
                    "membership change refused"
                );
                return failed(refusal.code, refusal.message);
            }
        };
        tracing::info!(?change, member = %format_args!("{id:x}"), "changing membership");
        match timeout_at(deadline, self.raft.change_membership(changes, false)).await {
            Err(_) => failed(Code::Unavailable, msg::TIMEOUT),
            Ok(Ok(response)) => {
                let index = response.log_id.index();
                tracing::info!(member = %format_args!("{id:x}"), index, "membership changed");
                match encode(&(id, index)) {
                    Ok(body) => ForwardOutcome::Applied {
                        reply: CommandReply::Ok {
                            revision: self.shared.mvcc.current_revision(),
                            body,
                        },
                        index,
                    },
                    Err(e) => failed(Code::Internal, &e.to_string()),
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                ForwardOutcome::NotLeader {
                    leader: f.leader_id,
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)))) => {
                failed(Code::Unavailable, msg::LEADER_CHANGED)
            }
            Ok(Err(RaftError::APIError(e))) => {
                tracing::warn!(error = %e, "membership change failed");
                failed(Code::FailedPrecondition, &format!("etcdserver: {e}"))
            }
            Ok(Err(RaftError::Fatal(e))) => {
                tracing::error!(error = %e, "raft stopped");
                failed(Code::Unavailable, msg::STOPPED)
            }
        }
    }

    /// Waits until this member's raft has the membership written at log
    /// `index` (or a later one) in effect, for at most `timeout`.
    pub async fn wait_membership(&self, index: u64, timeout: Duration) {
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let effective = metrics
                    .borrow_watched()
                    .membership_config
                    .log_id()
                    .as_ref()
                    .map_or(0, |l| l.index());
                if effective >= index || metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> MemberNode {
        MemberNode {
            name: format!("m{port}"),
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
        }
    }

    /// Three voters 1, 2, 3 (all active) at log index 100.
    fn three() -> View {
        View {
            voters: [1, 2, 3].into(),
            nodes: [(1, node(1)), (2, node(2)), (3, node(3))].into(),
            active: [1, 2, 3].into(),
            leader_index: 100,
            matched: [(2, 100), (3, 100)].into(),
        }
    }

    fn add(port: u16, learner: bool) -> MemberChange {
        MemberChange::Add {
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
            learner,
        }
    }

    fn refusal(
        result: Result<(ChangeMembers<MemberId, MemberNode>, MemberId), Refusal>,
    ) -> &'static str {
        result.expect_err("refused").message
    }

    #[test]
    fn adds_voters_and_learners_with_the_new_id() {
        let (change, id) = plan(&three(), &add(4, false), 44).expect("voter");
        assert_eq!(id, 44);
        assert!(matches!(change, ChangeMembers::AddVoters(m) if m.contains_key(&44)));
        let (change, _) = plan(&three(), &add(4, true), 44).expect("learner");
        assert!(matches!(change, ChangeMembers::AddNodes(m) if m.contains_key(&44)));
    }

    #[test]
    fn refuses_bad_or_taken_urls() {
        for bad in [
            "",
            "127.0.0.1:4",
            "http://127.0.0.1",
            "http://:4",
            "ftp://h:4",
        ] {
            let change = MemberChange::Add {
                peer_urls: if bad.is_empty() {
                    vec![]
                } else {
                    vec![bad.into()]
                },
                learner: false,
            };
            assert_eq!(
                refusal(plan(&three(), &change, 9)),
                msg::MEMBER_BAD_URLS,
                "{bad}"
            );
        }
        assert_eq!(
            refusal(plan(&three(), &add(2, false), 9)),
            msg::PEER_URL_EXISTS
        );
        let update = MemberChange::Update {
            id: 1,
            peer_urls: vec!["http://127.0.0.1:3".into()],
        };
        assert_eq!(refusal(plan(&three(), &update, 0)), msg::PEER_URL_EXISTS);
        // A member may keep its own URLs.
        let same = MemberChange::Update {
            id: 1,
            peer_urls: vec!["http://127.0.0.1:1".into()],
        };
        assert!(plan(&three(), &same, 0).is_ok());
    }

    #[test]
    fn refuses_changes_that_would_lose_quorum() {
        let mut view = three();
        view.active = [1, 2].into();
        // 2 of 4 is no quorum.
        assert_eq!(
            refusal(plan(&view, &add(4, false), 9)),
            msg::NOT_ENOUGH_STARTED
        );
        // Removing an active voter leaves 1 active of 2.
        let remove_2 = MemberChange::Remove { id: 2 };
        assert_eq!(refusal(plan(&view, &remove_2, 0)), msg::NOT_ENOUGH_STARTED);
        // Removing the dead one leaves 2 of 2.
        assert!(plan(&view, &MemberChange::Remove { id: 3 }, 0).is_ok());
        // A learner is always welcome.
        assert!(plan(&view, &add(4, true), 9).is_ok());
        // A single member may grow to two.
        let one = View {
            voters: [1].into(),
            nodes: [(1, node(1))].into(),
            active: [1].into(),
            ..View::default()
        };
        assert!(plan(&one, &add(2, false), 9).is_ok());
        assert_eq!(
            refusal(plan(&one, &MemberChange::Remove { id: 1 }, 0)),
            msg::NOT_ENOUGH_STARTED
        );
    }

    #[test]
    fn promotes_only_learners_in_sync() {
        let mut view = three();
        view.nodes.insert(4, node(4));
        view.active.insert(4);
        view.matched.insert(4, 50);
        let promote = MemberChange::Promote { id: 4 };
        assert_eq!(refusal(plan(&view, &promote, 0)), msg::LEARNER_NOT_READY);
        view.matched.insert(4, 95);
        assert!(matches!(
            plan(&view, &promote, 0).expect("promote").0,
            ChangeMembers::AddVoterIds(ids) if ids.contains(&4)
        ));
        assert_eq!(
            refusal(plan(&view, &MemberChange::Promote { id: 2 }, 0)),
            msg::NOT_LEARNER
        );
        assert_eq!(
            refusal(plan(&view, &add(5, true), 9)),
            msg::TOO_MANY_LEARNERS
        );
    }

    #[test]
    fn unknown_members_are_not_found() {
        for change in [
            MemberChange::Remove { id: 7 },
            MemberChange::Promote { id: 7 },
            MemberChange::Update {
                id: 7,
                peer_urls: vec!["http://127.0.0.1:7".into()],
            },
        ] {
            let refused = plan(&three(), &change, 0).expect_err("refused");
            assert_eq!(
                (refused.code, refused.message),
                (Code::NotFound, msg::MEMBER_NOT_FOUND)
            );
        }
    }
}
