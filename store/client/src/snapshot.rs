//! Maintenance.Snapshot: opening the stream of one member's snapshot.

use skiff_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use skiff_proto::etcdserverpb::{SnapshotRequest, SnapshotResponse};
use tonic::codec::Streaming;

use crate::{Client, ClientError, MAX_RESPONSE_BYTES, OpKind};

impl Client {
    /// Opens a Maintenance.Snapshot stream on the next endpoint (failing
    /// over like a read while it is opened). The stream has no deadline:
    /// the caller bounds the wait for each message. Every message but the
    /// last carries a chunk of the database file and the bytes still to
    /// come; the last carries the SHA-256 of the chunks.
    pub async fn snapshot(&self) -> Result<Streaming<SnapshotResponse>, ClientError> {
        self.call(OpKind::Read, "Snapshot", |ch, _timeout| async move {
            MaintenanceClient::new(ch)
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .snapshot(SnapshotRequest {})
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{closed_port, fast};
    use crate::{Client, ClientError};

    #[tokio::test]
    async fn snapshot_against_closed_ports_is_unavailable() {
        let eps = vec![format!("127.0.0.1:{}", closed_port())];
        let client = Client::connect(&eps, fast()).await.unwrap();
        let err = client.snapshot().await.unwrap_err();
        assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
    }
}
