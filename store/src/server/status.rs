//! The one place where store errors become gRPC statuses, with etcd's codes
//! and exact messages (clients match on the text).

use tonic::{Code, Status};

use crate::mvcc::KvError;

/// etcd's messages for errors of the member itself (not of a request).
pub mod msg {
    pub const NO_LEADER: &str = "etcdserver: no leader";
    pub const LEADER_CHANGED: &str = "etcdserver: leader changed";
    pub const TIMEOUT: &str = "etcdserver: request timed out";
    pub const TIMEOUT_LEADER_FAIL: &str =
        "etcdserver: request timed out, possibly due to previous leader failure";
    pub const TIMEOUT_APPLY: &str =
        "etcdserver: request timed out, waiting for the applied index took too long";
    pub const STOPPED: &str = "etcdserver: server stopped";
    pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
    pub const NOT_LEADER: &str = "etcdserver: not leader";
    pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
    pub const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

    // Membership (FailedPrecondition unless noted).
    /// NotFound.
    pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
    /// InvalidArgument.
    pub const MEMBER_BAD_URLS: &str = "etcdserver: given member URLs are invalid";
    pub const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
    pub const NOT_ENOUGH_STARTED: &str =
        "etcdserver: re-configuration failed due to not enough started members";
    pub const NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
    pub const LEARNER_NOT_READY: &str =
        "etcdserver: can only promote a learner member which is in sync with leader";
    pub const TOO_MANY_LEARNERS: &str = "etcdserver: too many learner members in cluster";
}

/// Maps an MVCC or validation error to etcd's gRPC status.
pub fn kv_error_status(e: &KvError) -> Status {
    let code = match e {
        KvError::Compacted | KvError::FutureRevision => Code::OutOfRange,
        KvError::LeaseNotFound => Code::NotFound,
        KvError::LeaseAlreadyExists => Code::FailedPrecondition,
        KvError::KeyNotProvided
        | KvError::TooManyOps
        | KvError::DuplicateKey
        | KvError::RequestTooLarge
        | KvError::InvalidSortOption
        | KvError::KeyNotFound
        | KvError::ValueProvided
        | KvError::LeaseProvided => Code::InvalidArgument,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

pub fn unavailable(message: &str) -> Status {
    Status::unavailable(message)
}
