//! Lease and Watch calls, through the same endpoint order and failover as
//! the KV calls.
//!
//! - `LeaseGrant` and `LeaseRevoke` are writes: retried on another endpoint
//!   only if the request never left this client.
//! - `LeaseKeepAlive` (one round trip), `LeaseTimeToLive` and `LeaseLeases`
//!   may be repeated, so they fail over like reads.
//! - [`Client::watch`] opens one Watch stream on the next endpoint that
//!   accepts it; resuming after the stream breaks is the caller's job (it
//!   knows the last revision it saw).

use futures_util::StreamExt;
use futures_util::stream;
use skiff_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, WatchCreateRequest, WatchRequest,
    WatchResponse, lease_client::LeaseClient, watch_client::WatchClient, watch_request,
};
use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::{Client, ClientError, MAX_RESPONSE_BYTES, OpKind, with_timeout};

/// The gRPC metadata etcd's `WithRequireLeader` sets: a member that loses
/// its leader cancels the stream instead of going silent.
const REQUIRE_LEADER_KEY: &str = "hasleader";

fn lease(channel: Channel) -> LeaseClient<Channel> {
    LeaseClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

impl Client {
    /// Lease.LeaseGrant (`id` 0 lets the server choose). A write.
    pub async fn lease_grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse, ClientError> {
        self.call(OpKind::Write, "LeaseGrant", |ch, timeout| {
            let req = with_timeout(LeaseGrantRequest { ttl, id }, timeout);
            async move { lease(ch).lease_grant(req).await }
        })
        .await
    }

    /// Lease.LeaseRevoke. A write.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, ClientError> {
        self.call(OpKind::Write, "LeaseRevoke", |ch, timeout| {
            let req = with_timeout(LeaseRevokeRequest { id }, timeout);
            async move { lease(ch).lease_revoke(req).await }
        })
        .await
    }

    /// One Lease.LeaseKeepAlive round trip. Renewing twice is harmless, so
    /// it fails over like a read. A reply with `ttl <= 0` means the lease is
    /// unknown or expired; it is returned as is.
    pub async fn lease_keep_alive_once(
        &self,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, ClientError> {
        self.call(OpKind::Read, "LeaseKeepAlive", |ch, timeout| {
            // Keep the request side open: some servers end the call as soon
            // as the client half-closes, before answering.
            let requests = stream::iter([LeaseKeepAliveRequest { id }]).chain(stream::pending());
            let mut req = tonic::Request::new(requests);
            req.set_timeout(timeout);
            async move {
                let resp = lease(ch).lease_keep_alive(req).await?;
                let metadata = resp.metadata().clone();
                let mut replies = resp.into_inner();
                match replies.message().await? {
                    Some(reply) => Ok(tonic::Response::from_parts(
                        metadata,
                        reply,
                        Default::default(),
                    )),
                    None => Err(tonic::Status::unavailable(
                        "lease keep-alive stream ended without a reply",
                    )),
                }
            }
        })
        .await
    }

    /// Lease.LeaseTimeToLive, retried like a read.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, ClientError> {
        self.call(OpKind::Read, "LeaseTimeToLive", |ch, timeout| {
            let req = with_timeout(LeaseTimeToLiveRequest { id, keys }, timeout);
            async move { lease(ch).lease_time_to_live(req).await }
        })
        .await
    }

    /// Lease.LeaseLeases: every live lease, retried like a read.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse, ClientError> {
        self.call(OpKind::Read, "LeaseLeases", |ch, timeout| {
            let req = with_timeout(LeaseLeasesRequest {}, timeout);
            async move { lease(ch).lease_leases(req).await }
        })
        .await
    }

    /// Opens a Watch stream with one create request, on the next endpoint
    /// (round-robin, failing over like a read while the stream is opened).
    /// The stream itself has no deadline; the request side stays open until
    /// the returned stream is dropped. The first message is normally the
    /// `created` (or `canceled`) answer.
    pub async fn watch(
        &self,
        create: WatchCreateRequest,
    ) -> Result<Streaming<WatchResponse>, ClientError> {
        self.call(OpKind::Read, "Watch", |ch, _timeout| {
            let first = WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create.clone())),
            };
            let requests = stream::iter([first]).chain(stream::pending());
            let mut req = tonic::Request::new(requests);
            req.metadata_mut().insert(
                REQUIRE_LEADER_KEY,
                tonic::metadata::MetadataValue::from_static("true"),
            );
            async move {
                WatchClient::new(ch)
                    .max_decoding_message_size(MAX_RESPONSE_BYTES)
                    .watch(req)
                    .await
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{closed_port, fast};

    /// Every lease call and opening a watch fail over the endpoints and
    /// report them unreachable; a grant that was never sent is not "unknown".
    #[tokio::test]
    async fn lease_and_watch_calls_against_closed_ports() {
        let eps = vec![
            format!("127.0.0.1:{}", closed_port()),
            format!("127.0.0.1:{}", closed_port()),
        ];
        let client = Client::connect(&eps, fast()).await.unwrap();
        let unreachable = |e: ClientError| {
            assert!(matches!(e, ClientError::Unavailable { .. }), "{e:?}");
            assert!(e.to_string().contains("connection refused"), "{e}");
        };
        unreachable(client.lease_grant(60, 0).await.unwrap_err());
        unreachable(client.lease_revoke(1).await.unwrap_err());
        unreachable(client.lease_keep_alive_once(1).await.unwrap_err());
        unreachable(client.lease_time_to_live(1, true).await.unwrap_err());
        unreachable(client.leases().await.unwrap_err());
        unreachable(
            client
                .watch(WatchCreateRequest::default())
                .await
                .unwrap_err(),
        );
    }
}
