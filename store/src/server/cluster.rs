//! etcd's Cluster service: the member list as raft and the members' own
//! announcements describe it.

use std::sync::Arc;

use skiff_proto::etcdserverpb::cluster_server::Cluster;
use skiff_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::member::Member;

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

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "etcdserver: {what} is not supported by this skiff-store"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("member add"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("member remove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("member update"))
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
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("member promote"))
    }
}
