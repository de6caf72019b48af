//! etcd's Cluster service: the member list as raft and the members' own
//! announcements describe it, and membership changes (see [`super::membership`]).

use std::sync::Arc;
use std::time::Duration;

use skiff_proto::etcdserverpb::cluster_server::Cluster;
use skiff_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use super::member::{LeaderRequest, Member};
use super::membership::MemberChange;
use crate::raft::MemberId;
use crate::raft::codec::decode;

pub struct ClusterService {
    member: Arc<Member>,
}

impl ClusterService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// The current members: voters and learners of the effective membership,
    /// with the names and client URLs they published.
    pub fn members(&self) -> Result<Vec<PbMember>, Status> {
        let attrs = self
            .member
            .shared
            .member_attrs()
            .map_err(|e| Status::internal(e.to_string()))?;
        let metrics = self.member.metrics();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let mut members = Vec::new();
        for (id, node) in membership.nodes() {
            let published = attrs.get(id);
            let name = published
                .map(|a| a.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| node.name.clone());
            members.push(PbMember {
                id: *id,
                name,
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: published.map(|a| a.client_urls.clone()).unwrap_or_default(),
                is_learner: !voters.contains(id),
            });
        }
        Ok(members)
    }
}

/// How long a member waits, after a change it forwarded, for its own raft
/// to show the new membership before it answers with the member list.
const MEMBERSHIP_SETTLE: Duration = Duration::from_secs(2);

impl ClusterService {
    /// Carries out `change` on the leader and answers with the member it
    /// concerned and the members after it.
    async fn change(
        &self,
        change: MemberChange,
    ) -> Result<(ResponseHeader, MemberId, Vec<PbMember>), Status> {
        let request = LeaderRequest::Members(change);
        let removes_me = request.removes(self.member.id);
        let (revision, body) = self.member.on_leader(request).await?;
        let (id, index): (MemberId, u64) =
            decode(&body).map_err(|e| Status::internal(e.to_string()))?;
        if !removes_me {
            self.member.wait_membership(index, MEMBERSHIP_SETTLE).await;
        }
        let mut members = self.members()?;
        if removes_me {
            // This member never learns of the membership without it.
            members.retain(|m| m.id != self.member.id);
        }
        Ok((self.member.header(revision), id, members))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        let change = MemberChange::Add {
            peer_urls: req.peer_ur_ls.clone(),
            learner: req.is_learner,
        };
        let (header, id, members) = self.change(change).await?;
        let added = members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .unwrap_or(PbMember {
                id,
                peer_ur_ls: req.peer_ur_ls,
                is_learner: req.is_learner,
                ..Default::default()
            });
        Ok(Response::new(MemberAddResponse {
            header: Some(header),
            member: Some(added),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        let (header, _, members) = self.change(MemberChange::Remove { id }).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        let change = MemberChange::Update {
            id: req.id,
            peer_urls: req.peer_ur_ls,
        };
        let (header, _, members) = self.change(change).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.member.read_barrier().await?;
        }
        let members = self.members()?;
        let header = self
            .member
            .header(self.member.shared.mvcc.current_revision());
        Ok(Response::new(MemberListResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let (header, _, members) = self.change(MemberChange::Promote { id }).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(header),
            members,
        }))
    }
}
