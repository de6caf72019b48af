//! Errors of the MVCC layer and of request validation.
//!
//! Every etcd-visible variant displays etcd's exact message (clients match on
//! the strings, see `api/v3rpc/rpctypes/error.go`). Mapping a variant to a
//! gRPC status code is the server's job, not this module's.

use crate::engine::EngineError;

/// An error of a KV request or of the storage below it.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The requested revision is below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseAlreadyExists,
    /// The engine failed; the member cannot continue applying.
    #[error("mvcc storage: {0}")]
    Storage(#[from] EngineError),
    /// Stored MVCC data could not be decoded.
    #[error("mvcc: corrupt data: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_etcds() {
        let cases: [(KvError, &str); 12] = [
            (
                KvError::Compacted,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                KvError::FutureRevision,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (KvError::KeyNotProvided, "etcdserver: key is not provided"),
            (
                KvError::TooManyOps,
                "etcdserver: too many operations in txn request",
            ),
            (
                KvError::DuplicateKey,
                "etcdserver: duplicate key given in txn request",
            ),
            (KvError::RequestTooLarge, "etcdserver: request is too large"),
            (
                KvError::InvalidSortOption,
                "etcdserver: invalid sort option",
            ),
            (KvError::KeyNotFound, "etcdserver: key not found"),
            (KvError::ValueProvided, "etcdserver: value is provided"),
            (KvError::LeaseProvided, "etcdserver: lease is provided"),
            (
                KvError::LeaseNotFound,
                "etcdserver: requested lease not found",
            ),
            (
                KvError::LeaseAlreadyExists,
                "etcdserver: lease already exists",
            ),
        ];
        for (err, msg) in cases {
            assert_eq!(err.to_string(), msg);
        }
    }
}
