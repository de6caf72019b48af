//! Assertions on gRPC outcomes.

use std::fmt::Debug;

use tonic::{Code, Status};

/// Asserts that `result` failed with exactly `code` and `message` (etcd's
/// clients match on both) and returns the status.
#[track_caller]
pub fn assert_status<T: Debug>(
    what: &str,
    result: Result<T, Status>,
    code: Code,
    message: &str,
) -> Status {
    match result {
        Ok(value) => panic!("{what}: expected {code:?} {message:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(
                (status.code(), status.message()),
                (code, message),
                "{what}: expected {code:?} {message:?}, got {status:?}"
            );
            status
        }
    }
}
