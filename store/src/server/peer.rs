//! The raft peer service: what other members call on this one.

use std::io::Write;
use std::sync::Arc;

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use skiff_proto::skiffraftpb::raft_peer_server::RaftPeer;
use skiff_proto::skiffraftpb::{
    ForwardRequest, ForwardResponse, RaftMessage, ReadIndexRequest, ReadIndexResponse,
    SnapshotChunk,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::member::{ForwardOutcome, LeaderRequest, Member, ReadRound};
use super::membership::ClusterInfo;
use crate::raft::TypeConfig;
use crate::raft::codec::{decode, encode};
use crate::raft::state_machine::{SnapshotFile, snapshot_name};

/// Serves [`RaftPeer`] for one member.
pub struct PeerService {
    member: Arc<Member>,
    snapshot_dir: std::path::PathBuf,
}

impl PeerService {
    pub fn new(member: Arc<Member>, snapshot_dir: std::path::PathBuf) -> Self {
        Self {
            member,
            snapshot_dir,
        }
    }
}

fn bad_payload(e: std::io::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { payload }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: VoteRequest<TypeConfig> =
            decode(&request.into_inner().payload).map_err(bad_payload)?;
        let result = self.member.raft.vote(req).await.map_err(|e| e.to_string());
        reply(&result)
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> =
            decode(&request.into_inner().payload).map_err(bad_payload)?;
        let result = self
            .member
            .raft
            .append_entries(req)
            .await
            .map_err(|e| e.to_string());
        reply(&result)
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: TransferLeaderRequest<TypeConfig> =
            decode(&request.into_inner().payload).map_err(bad_payload)?;
        let result = self
            .member
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(|e| e.to_string());
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let vote: VoteOf<TypeConfig> = decode(&first.vote).map_err(bad_payload)?;
        let meta: SnapshotMetaOf<TypeConfig> = decode(&first.meta).map_err(bad_payload)?;
        let path = self
            .snapshot_dir
            .join(format!("{}.recv", snapshot_name(&meta)));
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|e| Status::internal(e.to_string()))?,
        );
        file.write_all(&first.data)
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = stream.message().await? {
            file.write_all(&chunk.data)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let file = file
            .into_inner()
            .map_err(|e| Status::internal(e.to_string()))?;
        file.sync_all()
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(snapshot = %snapshot_name(&meta), "received snapshot");
        let snapshot = SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path },
        };
        let result = self
            .member
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string());
        reply(&result)
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let deadline = Instant::now() + self.member.timing.request_timeout;
        let request: LeaderRequest = decode(&request.into_inner().command).map_err(bad_payload)?;
        let outcome: ForwardOutcome = self.member.run_local(request, deadline).await;
        let response = encode(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardResponse { response }))
    }

    async fn read_index(
        &self,
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let deadline = Instant::now() + self.member.timing.request_timeout;
        let outcome = self.member.read_index(ReadRound::Local, deadline).await;
        let payload = encode(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ReadIndexResponse { payload }))
    }

    async fn cluster_info(
        &self,
        _request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(&ClusterInfo::of(&self.member))
    }
}
