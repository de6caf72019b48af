//! The retry policy, decided without IO: what a failed attempt proves, and
//! whether the call moves on to the next endpoint or fails.
//!
//! The rule (the lesson of Jepsen's jetcd 0.8.2 analysis): a read may be
//! retried on any endpoint; a write is retried only when the failure proves
//! the request never reached a server (the connection could not be made).
//! Any other failure of a write may have been applied, so it is reported as
//! [`ClientError::OutcomeUnknown`] and never retried blindly.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use tonic::{Code, Status};

use crate::ClientError;

/// The server's message for "this member has no leader". etcd returns it
/// before a request is processed, so even a write that gets it was not
/// applied.
pub(crate) const NO_LEADER: &str = "etcdserver: no leader";

/// Whether a call may be repeated on another endpoint after any failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Range, MemberList, Status, a Txn of ranges only: repeating is harmless.
    Read,
    /// Put, DeleteRange, Txn with a write, Compact: repeating may apply twice.
    Write,
}

/// What one failed attempt proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection could be made: the request never reached a server.
    NotSent { reason: String },
    /// The transport failed after the request may have been sent.
    Broken { reason: String },
    /// The call's own deadline passed (tonic enforces the `grpc-timeout` the
    /// client sends); the request may have been sent.
    TimedOut,
    /// A server answered with an error status.
    Server,
}

/// Classifies a failed attempt by the status tonic returned.
///
/// A status a server sent has no `source`; tonic attaches the transport error
/// as the source of statuses it makes itself. Connection failures carry
/// tonic's `ConnectError` in that chain.
pub(crate) fn classify(status: &Status) -> Failure {
    let Some(source) = status.source() else {
        return Failure::Server;
    };
    let mut chain: Vec<&(dyn StdError + 'static)> = Vec::new();
    let mut next = Some(source);
    while let Some(err) = next {
        chain.push(err);
        next = err.source();
    }
    if chain.iter().any(|e| e.is::<tonic::TimeoutExpired>()) {
        return Failure::TimedOut;
    }
    let connect_failed = chain.iter().any(|e| e.is::<tonic::ConnectError>());
    let reason = transport_reason(&chain, status, connect_failed);
    if connect_failed {
        Failure::NotSent { reason }
    } else {
        Failure::Broken { reason }
    }
}

/// A short reason for a transport failure, e.g. `connection refused`.
fn transport_reason(
    chain: &[&(dyn StdError + 'static)],
    status: &Status,
    connecting: bool,
) -> String {
    if let Some(io) = chain.iter().find_map(|e| e.downcast_ref::<io::Error>()) {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            io::ErrorKind::TimedOut if connecting => "connect timed out".to_string(),
            io::ErrorKind::TimedOut => "timed out".to_string(),
            io::ErrorKind::ConnectionReset => "connection reset".to_string(),
            io::ErrorKind::ConnectionAborted => "connection aborted".to_string(),
            io::ErrorKind::BrokenPipe => "broken pipe".to_string(),
            io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
            _ => io.to_string(),
        };
    }
    match chain.last() {
        Some(innermost) => innermost.to_string(),
        None => status.message().to_string(),
    }
}

/// What to do after a failed attempt.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Move on; this endpoint counts as unreachable.
    NextUnreachable { reason: String },
    /// Move on; a server answered this status, which is returned if no other
    /// endpoint does better.
    NextAnswered(Status),
    /// Stop and return this error.
    Fail(ClientError),
}

/// The retry policy for one failed attempt of a call of `kind` on `endpoint`.
pub(crate) fn decide(kind: OpKind, endpoint: &str, status: Status) -> Decision {
    match (classify(&status), kind) {
        (Failure::NotSent { reason }, _) => Decision::NextUnreachable { reason },
        (Failure::TimedOut, _) => no_answer(kind, endpoint, None),
        (Failure::Broken { reason }, OpKind::Read) => Decision::NextUnreachable { reason },
        (Failure::Broken { reason }, OpKind::Write) => {
            Decision::Fail(ClientError::OutcomeUnknown {
                endpoint: endpoint.to_string(),
                message: format!("{endpoint}: {reason}"),
            })
        }
        (Failure::Server, OpKind::Read) => {
            if status.code() == Code::Unavailable {
                // This member cannot serve (no leader, stopping, ...);
                // another one may.
                Decision::NextAnswered(status)
            } else {
                Decision::Fail(ClientError::Status(status))
            }
        }
        (Failure::Server, OpKind::Write) => {
            if write_outcome_unknown(&status) {
                Decision::Fail(ClientError::OutcomeUnknown {
                    endpoint: endpoint.to_string(),
                    message: status.message().to_string(),
                })
            } else {
                Decision::Fail(ClientError::Status(status))
            }
        }
    }
}

/// An attempt got no answer within its budget: a read moves on to the next
/// endpoint, a write may have been applied.
pub(crate) fn no_answer(kind: OpKind, endpoint: &str, budget: Option<Duration>) -> Decision {
    match kind {
        OpKind::Read => Decision::NextUnreachable {
            reason: match budget {
                Some(b) => format!("no answer within {} ms", b.as_millis()),
                None => "no answer in time".to_string(),
            },
        },
        OpKind::Write => Decision::Fail(timed_out(kind, endpoint)),
    }
}

/// The shortest time a read attempt gets before the next endpoint is tried
/// (unless less than that is left of the call).
pub(crate) const MIN_READ_ATTEMPT: Duration = Duration::from_secs(1);

/// How long one attempt may take, with `remaining` of the call's deadline
/// left and `endpoints_left` endpoints still to try (this one included).
///
/// A write gets all that remains: once sent it cannot be retried anyway. A
/// read gets an equal share of what remains (at least [`MIN_READ_ATTEMPT`]),
/// so a member that hangs (paused, partitioned) cannot use up the whole
/// deadline while another member could answer.
pub(crate) fn attempt_budget(kind: OpKind, remaining: Duration, endpoints_left: usize) -> Duration {
    match kind {
        OpKind::Write => remaining,
        OpKind::Read if endpoints_left <= 1 => remaining,
        OpKind::Read => {
            let share = remaining / u32::try_from(endpoints_left).unwrap_or(u32::MAX);
            share.max(MIN_READ_ATTEMPT.min(remaining))
        }
    }
}

/// The error of a call that made its pass over the endpoints without an
/// answer: a server's answer if one came, a timeout if a read ran out of
/// time, else "cannot reach any endpoint".
pub(crate) fn exhausted(
    kind: OpKind,
    answered: Option<Status>,
    unreachable: Vec<String>,
    last_endpoint: String,
    deadline_passed: bool,
) -> ClientError {
    if let Some(status) = answered {
        return ClientError::Status(status);
    }
    if unreachable.is_empty() || (kind == OpKind::Read && deadline_passed) {
        return ClientError::Timeout;
    }
    ClientError::Unavailable {
        endpoint: last_endpoint,
        message: unreachable.join("; "),
    }
}

/// The error for a call whose deadline passed during an attempt on
/// `endpoint`: a read simply timed out; a write may have been applied.
pub(crate) fn timed_out(kind: OpKind, endpoint: &str) -> ClientError {
    match kind {
        OpKind::Read => ClientError::Timeout,
        OpKind::Write => ClientError::OutcomeUnknown {
            endpoint: endpoint.to_string(),
            message: "context deadline exceeded".to_string(),
        },
    }
}

/// Whether a server's error answer to a write leaves its outcome open.
///
/// etcd reports timeouts and leader changes during a proposal as
/// `Unavailable` ("etcdserver: request timed out", "leader changed", ...):
/// the proposal may still commit. Validation, precondition, quota and
/// compaction errors are decided before anything is proposed.
fn write_outcome_unknown(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => status.message() != NO_LEADER,
        Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Internal => true,
        _ => false,
    }
}

/// The order in which one call tries the endpoints: round-robin from
/// `start`, with endpoints that were recently unreachable moved to the end.
/// Every endpoint appears exactly once (one bounded pass).
pub(crate) fn attempt_order(start: usize, recently_down: &[bool]) -> Vec<usize> {
    let n = recently_down.len();
    let rotation = (0..n).map(|i| (start + i) % n);
    let up = rotation.clone().filter(|&i| !recently_down[i]);
    let down = rotation.filter(|&i| recently_down[i]);
    up.chain(down).collect()
}

/// Whether a Txn only reads (its branches hold only ranges, recursively).
pub(crate) fn txn_is_read_only(txn: &skiff_proto::etcdserverpb::TxnRequest) -> bool {
    use skiff_proto::etcdserverpb::request_op::Request;
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(inner)) => txn_is_read_only(inner),
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::etcdserverpb::{
        PutRequest, RangeRequest, RequestOp, TxnRequest, request_op::Request,
    };

    /// A status as tonic builds it when connecting fails.
    fn connect_failure(kind: io::ErrorKind) -> Status {
        let io = io::Error::new(kind, "os says no");
        Status::from_error(Box::new(tonic::ConnectError(Box::new(io))))
    }

    /// A status as tonic builds it when an established connection breaks.
    fn broken(kind: io::ErrorKind) -> Status {
        Status::from_error(Box::new(io::Error::new(kind, "peer went away")))
    }

    #[test]
    fn classifies_connect_failures_as_not_sent() {
        assert_eq!(
            classify(&connect_failure(io::ErrorKind::ConnectionRefused)),
            Failure::NotSent {
                reason: "connection refused".into()
            }
        );
        assert_eq!(
            classify(&connect_failure(io::ErrorKind::TimedOut)),
            Failure::NotSent {
                reason: "connect timed out".into()
            }
        );
    }

    #[test]
    fn classifies_broken_connections() {
        assert_eq!(
            classify(&broken(io::ErrorKind::ConnectionReset)),
            Failure::Broken {
                reason: "connection reset".into()
            }
        );
        assert!(matches!(
            classify(&broken(io::ErrorKind::Other)),
            Failure::Broken { .. }
        ));
    }

    #[test]
    fn classifies_the_deadline() {
        let s = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(classify(&s), Failure::TimedOut);
        assert!(matches!(
            decide(
                OpKind::Read,
                "a:1",
                Status::from_error(Box::new(tonic::TimeoutExpired(())))
            ),
            Decision::NextUnreachable { .. }
        ));
        assert!(matches!(
            decide(OpKind::Write, "a:1", s),
            Decision::Fail(ClientError::OutcomeUnknown { .. })
        ));
    }

    #[test]
    fn classifies_server_answers() {
        assert_eq!(classify(&Status::unavailable(NO_LEADER)), Failure::Server);
        assert_eq!(
            classify(&Status::invalid_argument("etcdserver: key is not provided")),
            Failure::Server
        );
    }

    #[test]
    fn reads_move_on_after_transport_failures() {
        for s in [
            connect_failure(io::ErrorKind::ConnectionRefused),
            broken(io::ErrorKind::ConnectionReset),
        ] {
            assert!(matches!(
                decide(OpKind::Read, "a:1", s),
                Decision::NextUnreachable { .. }
            ));
        }
    }

    #[test]
    fn reads_move_on_after_unavailable_but_not_other_errors() {
        assert!(matches!(
            decide(OpKind::Read, "a:1", Status::unavailable(NO_LEADER)),
            Decision::NextAnswered(_)
        ));
        match decide(
            OpKind::Read,
            "a:1",
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
        ) {
            Decision::Fail(ClientError::Status(s)) => {
                assert_eq!(
                    s.message(),
                    "etcdserver: mvcc: required revision has been compacted"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_retry_only_when_never_sent() {
        assert!(matches!(
            decide(
                OpKind::Write,
                "a:1",
                connect_failure(io::ErrorKind::ConnectionRefused)
            ),
            Decision::NextUnreachable { .. }
        ));
        match decide(OpKind::Write, "a:1", broken(io::ErrorKind::ConnectionReset)) {
            Decision::Fail(ClientError::OutcomeUnknown { endpoint, message }) => {
                assert_eq!(endpoint, "a:1");
                assert_eq!(message, "a:1: connection reset");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn write_server_errors_outcome() {
        let unknown = [
            Status::unavailable("etcdserver: request timed out"),
            Status::unavailable("etcdserver: leader changed"),
            Status::deadline_exceeded("etcdserver: context deadline exceeded"),
            Status::cancelled("etcdserver: request canceled"),
            Status::unknown("?"),
            Status::internal("?"),
        ];
        for s in unknown {
            let text = s.message().to_string();
            match decide(OpKind::Write, "a:1", s) {
                Decision::Fail(ClientError::OutcomeUnknown { message, .. }) => {
                    assert_eq!(message, text)
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let definite = [
            Status::unavailable(NO_LEADER),
            Status::invalid_argument("etcdserver: duplicate key given in txn request"),
            Status::not_found("etcdserver: requested lease not found"),
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
            Status::resource_exhausted("etcdserver: mvcc: database space exceeded"),
            Status::failed_precondition("etcdserver: not leader"),
        ];
        for s in definite {
            let text = s.message().to_string();
            match decide(OpKind::Write, "a:1", s) {
                Decision::Fail(ClientError::Status(s)) => assert_eq!(s.message(), text),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn reads_share_the_deadline_writes_get_all_of_it() {
        let s = Duration::from_secs;
        assert_eq!(attempt_budget(OpKind::Write, s(5), 3), s(5));
        assert_eq!(attempt_budget(OpKind::Read, s(6), 3), s(2));
        assert_eq!(attempt_budget(OpKind::Read, s(4), 2), s(2));
        assert_eq!(attempt_budget(OpKind::Read, s(4), 1), s(4));
        // Never less than the floor, unless less than that is left.
        assert_eq!(attempt_budget(OpKind::Read, s(2), 5), MIN_READ_ATTEMPT);
        let little = Duration::from_millis(300);
        assert_eq!(attempt_budget(OpKind::Read, little, 3), little);
    }

    #[test]
    fn no_answer_moves_reads_on_and_marks_writes_unknown() {
        match no_answer(OpKind::Read, "a:1", Some(Duration::from_millis(1500))) {
            Decision::NextUnreachable { reason } => assert_eq!(reason, "no answer within 1500 ms"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            no_answer(OpKind::Write, "a:1", None),
            Decision::Fail(ClientError::OutcomeUnknown { .. })
        ));
    }

    #[test]
    fn exhausted_calls() {
        let unreachable = || vec!["a:1: connection refused".to_string()];
        match exhausted(
            OpKind::Read,
            Some(Status::unavailable(NO_LEADER)),
            unreachable(),
            "a:1".into(),
            true,
        ) {
            ClientError::Status(s) => assert_eq!(s.message(), NO_LEADER),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            exhausted(OpKind::Read, None, unreachable(), "a:1".into(), true),
            ClientError::Timeout
        ));
        assert!(matches!(
            exhausted(OpKind::Read, None, unreachable(), "a:1".into(), false),
            ClientError::Unavailable { .. }
        ));
        // A write that never left this client is not "unknown", even late.
        assert!(matches!(
            exhausted(OpKind::Write, None, unreachable(), "a:1".into(), true),
            ClientError::Unavailable { .. }
        ));
        assert!(matches!(
            exhausted(OpKind::Write, None, vec![], String::new(), true),
            ClientError::Timeout
        ));
    }

    #[test]
    fn attempt_order_is_one_rotated_pass_with_down_endpoints_last() {
        assert_eq!(attempt_order(0, &[false, false, false]), vec![0, 1, 2]);
        assert_eq!(attempt_order(1, &[false, false, false]), vec![1, 2, 0]);
        assert_eq!(attempt_order(4, &[false, false, false]), vec![1, 2, 0]);
        assert_eq!(attempt_order(0, &[true, false, false]), vec![1, 2, 0]);
        assert_eq!(attempt_order(2, &[false, true, false]), vec![2, 0, 1]);
        assert_eq!(attempt_order(0, &[true, true, true]), vec![0, 1, 2]);
        assert_eq!(attempt_order(7, &[false]), vec![0]);
    }

    #[test]
    fn txn_kind() {
        let range = RequestOp {
            request: Some(Request::RequestRange(RangeRequest::default())),
        };
        let put = RequestOp {
            request: Some(Request::RequestPut(PutRequest::default())),
        };
        let read = TxnRequest {
            compare: vec![],
            success: vec![range.clone()],
            failure: vec![range.clone()],
        };
        assert!(txn_is_read_only(&read));
        assert!(txn_is_read_only(&TxnRequest::default()));
        let write = TxnRequest {
            compare: vec![],
            success: vec![range.clone()],
            failure: vec![put.clone()],
        };
        assert!(!txn_is_read_only(&write));
        let nested = TxnRequest {
            compare: vec![],
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(write)),
            }],
            failure: vec![],
        };
        assert!(!txn_is_read_only(&nested));
    }
}
