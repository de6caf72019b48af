//! Maintenance calls.
//!
//! - Status, HashKV, Defragment and MoveLeader are about one member: they go
//!   to exactly the endpoint named and are never failed over, so an answer
//!   (or an effect) always belongs to the member asked.
//! - Alarms are cluster state, replicated through raft: `Alarm` GET fails
//!   over like a read; ACTIVATE and DEACTIVATE are writes.

use std::future::Future;
use std::time::Duration;

use skiff_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, MoveLeaderRequest, MoveLeaderResponse, alarm_request::AlarmAction,
    maintenance_client::MaintenanceClient,
};
use tonic::transport::Channel;

use crate::retry::{self, Failure};
use crate::{Client, ClientError, Endpoint, MAX_RESPONSE_BYTES, OpKind, channel, with_timeout};

fn maintenance(channel: Channel) -> MaintenanceClient<Channel> {
    MaintenanceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

impl Client {
    /// Maintenance.HashKV of exactly one member: the hash of its keyspace at
    /// `revision` (0: its current revision).
    pub async fn hash_kv(
        &self,
        endpoint: &str,
        revision: i64,
    ) -> Result<HashKvResponse, ClientError> {
        self.call_endpoint(endpoint, |ch, timeout| {
            let req = with_timeout(HashKvRequest { revision }, timeout);
            async move { maintenance(ch).hash_kv(req).await }
        })
        .await
    }

    /// Maintenance.Defragment of exactly one member's storage.
    pub async fn defragment(&self, endpoint: &str) -> Result<DefragmentResponse, ClientError> {
        self.call_endpoint(endpoint, |ch, timeout| {
            let req = with_timeout(DefragmentRequest {}, timeout);
            async move { maintenance(ch).defragment(req).await }
        })
        .await
    }

    /// Maintenance.MoveLeader sent to exactly one member, which must be the
    /// leader (others answer `etcdserver: not leader`); it returns once
    /// `target_id` leads.
    pub async fn move_leader(
        &self,
        endpoint: &str,
        target_id: u64,
    ) -> Result<MoveLeaderResponse, ClientError> {
        self.call_endpoint(endpoint, |ch, timeout| {
            let req = with_timeout(MoveLeaderRequest { target_id }, timeout);
            async move { maintenance(ch).move_leader(req).await }
        })
        .await
    }

    /// Maintenance.Alarm, from any endpoint. GET is retried like a read;
    /// ACTIVATE and DEACTIVATE only if no server can have received them.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse, ClientError> {
        let kind = if req.action == AlarmAction::Get as i32 {
            OpKind::Read
        } else {
            OpKind::Write
        };
        self.call(kind, "Alarm", |ch, timeout| {
            let req = with_timeout(req, timeout);
            async move { maintenance(ch).alarm(req).await }
        })
        .await
    }

    /// One call to exactly `endpoint`, never failed over. `endpoint` may be
    /// one of the client's endpoints (its connection is reused) or any other
    /// (e.g. a client URL from [`Client::member_list`]).
    pub(crate) async fn call_endpoint<T, F, Fut>(
        &self,
        endpoint: &str,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let target = Endpoint::parse(endpoint)?;
        let inner = &*self.inner;
        let channel = match inner
            .conns
            .iter()
            .find(|c| c.endpoint.uri() == target.uri())
        {
            Some(conn) => conn.channel.clone(),
            None => channel(&target, &inner.options)?,
        };
        let timeout = inner.options.request_timeout;
        match tokio::time::timeout(timeout, attempt(channel, timeout)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(match retry::classify(&status) {
                Failure::NotSent { reason } | Failure::Broken { reason } => {
                    ClientError::Unavailable {
                        endpoint: endpoint.to_string(),
                        message: format!("{endpoint}: {reason}"),
                    }
                }
                Failure::TimedOut => ClientError::Timeout,
                Failure::Server => ClientError::Status(status),
            }),
            Err(_elapsed) => Err(ClientError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{closed_port, fast};
    use crate::{Client, ClientError};

    #[tokio::test]
    async fn per_member_calls_name_the_unreachable_endpoint() {
        let client = Client::connect(&["127.0.0.1:1".to_string()], fast())
            .await
            .unwrap();
        let ep = format!("127.0.0.1:{}", closed_port());
        let errors = [
            client.hash_kv(&ep, 0).await.unwrap_err(),
            client.defragment(&ep).await.unwrap_err(),
            client.move_leader(&ep, 1).await.unwrap_err(),
        ];
        for err in errors {
            match err {
                ClientError::Unavailable { endpoint, message } => {
                    assert_eq!(endpoint, ep);
                    assert_eq!(message, format!("{ep}: connection refused"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bad_endpoint_is_refused() {
        let client = Client::connect(&["127.0.0.1:1".to_string()], fast())
            .await
            .unwrap();
        let err = client.defragment("nope").await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidEndpoint(_)), "{err:?}");
    }
}
