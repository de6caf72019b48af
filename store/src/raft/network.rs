//! The raft network: openraft's RPCs over skiff's peer gRPC service.
//!
//! One lazily connected tonic channel per peer, shared by raft replication,
//! write forwarding and read-index requests. openraft's messages travel as
//! opaque payloads ([`super::codec`]).

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_proto::skiffraftpb::raft_peer_client::RaftPeerClient;
use skiff_proto::skiffraftpb::{RaftMessage, SnapshotChunk};
use tonic::transport::{Channel, Endpoint};

use super::codec::{decode, encode};
use super::state_machine::SnapshotFile;
use super::types::{MemberId, MemberNode, TypeConfig};

/// Bytes of snapshot data per chunk sent to a lagging member.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest message a peer accepts: a full AppendEntries batch or a chunk.
pub const PEER_MESSAGE_LIMIT_BYTES: usize = 64 << 20;
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The least time a raft RPC may take. openraft gives AppendEntries about a
/// heartbeat interval, which a large batch plus the follower's fsync exceeds
/// on a busy machine; a timed-out append is resent whole, so it could never
/// get through.
const PEER_RPC_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// Channels to the other members, one per member, connected on first use.
#[derive(Default)]
pub struct Peers {
    channels: Mutex<HashMap<MemberId, (String, Channel)>>,
    /// Each member's peer URL in the latest membership: wins over the URL a
    /// caller (openraft's replication, set up before a MemberUpdate) knows.
    urls: Mutex<HashMap<MemberId, String>>,
}

impl Peers {
    /// Records the peer URLs of the latest membership.
    pub fn set_urls<'a>(&self, nodes: impl IntoIterator<Item = (&'a MemberId, &'a MemberNode)>) {
        let mut urls = self.urls.lock().expect("peer urls lock");
        urls.clear();
        for (id, node) in nodes {
            if let Some(url) = node.peer_urls.first() {
                urls.insert(*id, url.clone());
            }
        }
    }

    /// A client for `id` at its current peer URL (the first of `node`'s when
    /// the latest membership does not say).
    pub fn client(
        &self,
        id: MemberId,
        node: &MemberNode,
    ) -> Result<RaftPeerClient<Channel>, String> {
        let known = self.urls.lock().expect("peer urls lock").get(&id).cloned();
        let url = known
            .or_else(|| node.peer_urls.first().cloned())
            .ok_or_else(|| format!("member {id:x} has no peer URL"))?;
        let url = &url;
        let mut channels = self.channels.lock().expect("peer channels lock");
        let channel = match channels.get(&id) {
            Some((known, channel)) if known == url => channel.clone(),
            _ => {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| format!("bad peer URL {url}: {e}"))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                let channel = endpoint.connect_lazy();
                channels.insert(id, (url.clone(), channel.clone()));
                channel
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(PEER_MESSAGE_LIMIT_BYTES)
            .max_encoding_message_size(PEER_MESSAGE_LIMIT_BYTES))
    }
}

/// Builds per-peer raft clients for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    peers: Arc<Peers>,
}

impl NetworkFactory {
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: MemberId, node: &MemberNode) -> PeerNetwork {
        PeerNetwork {
            target,
            node: node.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// openraft's view of one peer. Each call looks up the peer's channel, so
/// that a MemberUpdate takes effect on running replication.
pub struct PeerNetwork {
    target: MemberId,
    node: MemberNode,
    peers: Arc<Peers>,
}

/// A transport failure: the peer may be down. openraft backs off on these.
fn unreachable<E: std::error::Error>(status: tonic::Status) -> RPCError<TypeConfig, E> {
    RPCError::Unreachable(Unreachable::from_string(status.to_string()))
}

fn network_error<E: std::error::Error>(e: impl std::fmt::Display) -> RPCError<TypeConfig, E> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

impl PeerNetwork {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftPeerClient<Channel>, RPCError<TypeConfig, E>> {
        self.peers
            .client(self.target, &self.node)
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        f: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftPeerClient<Channel>, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let payload = encode(req).map_err(network_error)?;
        let mut request = tonic::Request::new(RaftMessage { payload });
        request.set_timeout(option.soft_ttl().max(PEER_RPC_TIMEOUT_FLOOR));
        let response = f(self.client()?, request).await.map_err(|status| {
            tracing::debug!(target_member = %format_args!("{:x}", self.target), %status, "raft rpc failed");
            unreachable(status)
        })?;
        let result: Result<Resp, String> =
            decode(&response.into_inner().payload).map_err(network_error)?;
        result.map_err(network_error)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self
            .peers
            .client(self.target, &self.node)
            .map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))?;
        let to_net = |e: &dyn std::fmt::Display| {
            StreamingError::Network(NetworkError::from_string(e.to_string()))
        };
        let first = SnapshotChunk {
            vote: encode(&vote).map_err(|e| to_net(&e))?,
            meta: encode(&snapshot.meta).map_err(|e| to_net(&e))?,
            data: Vec::new(),
        };
        let path = snapshot.snapshot.path.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = std::fs::File::open(&path)?;
            if tx.blocking_send(first).is_err() {
                return Ok(());
            }
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx
                    .blocking_send(SnapshotChunk {
                        vote: Vec::new(),
                        meta: Vec::new(),
                        data: buf,
                    })
                    .is_err()
                {
                    return Ok(());
                }
            }
        });
        let send = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r.map_err(|s| StreamingError::Unreachable(Unreachable::from_string(s.to_string())))?,
        };
        reader
            .await
            .map_err(|e| to_net(&e))?
            .map_err(|e| to_net(&e))?;
        let result: Result<SnapshotResponse<TypeConfig>, String> =
            decode(&response.into_inner().payload).map_err(|e| to_net(&e))?;
        result.map_err(|e| to_net(&e))
    }
}
