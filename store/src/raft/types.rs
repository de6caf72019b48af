//! The raft type configuration and what travels through the log.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's id: etcd's uint64 member ID, also the raft node id.
pub type MemberId = u64;

/// What raft's membership records for each member: its peer URLs, and the
/// name given in `--initial-cluster` (empty for a member added later, until it
/// starts and publishes its name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// A client request as it is proposed through raft. KV requests carry the
/// client's protobuf message as sent (etcd's own encoding), so that the log
/// records exactly what the client asked. The messages are (de)serialized as
/// byte strings, not as sequences of `u8`: postcard writes both the same
/// way, but byte strings are copied whole instead of byte by byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// An encoded `etcdserverpb.PutRequest`.
    Put(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An encoded `etcdserverpb.DeleteRangeRequest`.
    DeleteRange(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An encoded `etcdserverpb.TxnRequest`.
    Txn(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An encoded `etcdserverpb.CompactionRequest`.
    Compact(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A member announces its name and client URLs (etcd's "publish").
    PublishMember {
        id: MemberId,
        name: String,
        client_urls: Vec<String>,
    },
    /// Grants lease `id` for `ttl` seconds, expiring at `expires_at_ms`
    /// (milliseconds since the Unix epoch, on the proposing member's clock).
    LeaseGrant {
        id: i64,
        ttl: i64,
        expires_at_ms: i64,
    },
    /// Renews lease `id` until `expires_at_ms`.
    LeaseKeepAlive { id: i64, expires_at_ms: i64 },
    /// Revokes lease `id`: its keys are deleted in one revision.
    LeaseRevoke { id: i64 },
    /// Raises (or, with `active` false, clears) alarm `alarm` (etcd's
    /// AlarmType number) for `member`; member 0 clears it for every member.
    Alarm {
        member: MemberId,
        alarm: i32,
        active: bool,
    },
    /// Revokes lease `id` as expired, only if its deadline is still
    /// `deadline_ms`: a keep-alive that committed first wins, and its client
    /// keeps the lease it was told it has.
    LeaseExpire { id: i64, deadline_ms: i64 },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Put(b) => write!(f, "put({} bytes)", b.len()),
            Command::DeleteRange(b) => write!(f, "delete_range({} bytes)", b.len()),
            Command::Txn(b) => write!(f, "txn({} bytes)", b.len()),
            Command::Compact(b) => write!(f, "compact({} bytes)", b.len()),
            Command::PublishMember { id, name, .. } => write!(f, "publish({id:x}, {name})"),
            Command::LeaseGrant { id, ttl, .. } => write!(f, "lease_grant({id:x}, {ttl}s)"),
            Command::LeaseKeepAlive { id, .. } => write!(f, "lease_keepalive({id:x})"),
            Command::LeaseRevoke { id } => write!(f, "lease_revoke({id:x})"),
            Command::LeaseExpire { id, .. } => write!(f, "lease_expire({id:x})"),
            Command::Alarm {
                member,
                alarm,
                active,
            } => write!(f, "alarm({member:x}, {alarm}, {active})"),
        }
    }
}

/// A gRPC status that can travel through raft and between members: the
/// outcome of a request the state machine refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireStatus {
    pub code: i32,
    pub message: String,
}

impl From<WireStatus> for tonic::Status {
    fn from(s: WireStatus) -> Self {
        tonic::Status::new(tonic::Code::from_i32(s.code), s.message)
    }
}

/// The state machine's answer to one [`Command`]: the encoded protobuf
/// response (without header) and the store revision after it, or the error
/// that refused it. A refused request changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandReply {
    Ok {
        revision: i64,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    Refused(WireStatus),
}

impl Default for CommandReply {
    fn default() -> Self {
        CommandReply::Ok {
            revision: 0,
            body: Vec::new(),
        }
    }
}

openraft::declare_raft_types!(
    /// skiff-store's raft types.
    pub TypeConfig:
        D = Command,
        R = CommandReply,
        NodeId = MemberId,
        Node = MemberNode,
);

impl fmt::Display for CommandReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandReply::Ok { revision, .. } => write!(f, "ok(rev {revision})"),
            CommandReply::Refused(s) => write!(f, "refused({})", s.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding before the payloads were marked as byte strings.
    #[derive(Serialize)]
    enum SeqCommand {
        Put(Vec<u8>),
    }

    #[test]
    fn byte_string_payloads_encode_as_sequences_did() {
        let payload: Vec<u8> = (0..=255).collect();
        let now = postcard::to_allocvec(&Command::Put(payload.clone())).unwrap();
        let before = postcard::to_allocvec(&SeqCommand::Put(payload.clone())).unwrap();
        assert_eq!(now, before);
        let back: Command = postcard::from_bytes(&before).unwrap();
        assert_eq!(back, Command::Put(payload));
    }
}
