//! The errors the client returns, as variants callers branch on.

/// What went wrong with a call.
///
/// The `Display` text is what a user should see: for [`ClientError::Status`]
/// it is the server's message verbatim (e.g. `etcdserver: no leader`), since
/// etcd clients match on those strings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An endpoint string could not be parsed, or no endpoint was given.
    #[error("invalid endpoint {0}")]
    InvalidEndpoint(String),

    /// No endpoint could be reached: every attempt failed before a server
    /// answered. `endpoint` is the last endpoint tried; `message` lists every
    /// endpoint tried with its reason, e.g.
    /// `127.0.0.1:2379: connection refused; 127.0.0.1:22379: connection refused`.
    ///
    /// For a write this is only returned when no attempt can have reached a
    /// server, so the write was certainly not applied.
    #[error("cannot reach any endpoint ({message})")]
    Unavailable { endpoint: String, message: String },

    /// A server answered with this error; its message is kept intact
    /// (`etcdserver: mvcc: required revision has been compacted`, ...).
    /// For a write, a `Status` error means the write was not applied:
    /// errors that leave the outcome open are [`ClientError::OutcomeUnknown`].
    #[error("{}", status_text(.0))]
    Status(tonic::Status),

    /// A read got no answer within the request timeout (etcdctl's
    /// `--command-timeout`). Writes that time out are
    /// [`ClientError::OutcomeUnknown`] instead.
    #[error("context deadline exceeded")]
    Timeout,

    /// A write (Put, DeleteRange, Txn with writes, Compact) failed after it
    /// may have reached a server: it may or may not have been applied, and it
    /// was not retried. Resolve it by reading (e.g. compare the key's
    /// `mod_revision`) before trying again. `message` is the server's or the
    /// transport's text.
    #[error("{message} (outcome unknown: the write may or may not have been applied)")]
    OutcomeUnknown { endpoint: String, message: String },
}

impl ClientError {
    /// The gRPC code when a server answered, else `None`.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The server's message when a server answered with an error.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ClientError::Status(s) => Some(s.message()),
            _ => None,
        }
    }

    /// Whether the call may have taken effect although it failed.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, ClientError::OutcomeUnknown { .. })
    }
}

fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_server_text() {
        let e = ClientError::Status(tonic::Status::unavailable("etcdserver: no leader"));
        assert_eq!(e.to_string(), "etcdserver: no leader");
        assert_eq!(e.code(), Some(tonic::Code::Unavailable));
        let e = ClientError::Status(tonic::Status::out_of_range(
            "etcdserver: mvcc: required revision has been compacted",
        ));
        assert_eq!(
            e.to_string(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let e = ClientError::Status(tonic::Status::new(tonic::Code::Internal, ""));
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn display_unavailable() {
        let e = ClientError::Unavailable {
            endpoint: "127.0.0.1:2379".into(),
            message: "127.0.0.1:2379: connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach any endpoint (127.0.0.1:2379: connection refused)"
        );
        assert!(!e.is_outcome_unknown());
    }

    #[test]
    fn display_outcome_unknown_keeps_message_first() {
        let e = ClientError::OutcomeUnknown {
            endpoint: "a:1".into(),
            message: "etcdserver: request timed out".into(),
        };
        assert!(e.to_string().starts_with("etcdserver: request timed out"));
        assert!(e.is_outcome_unknown());
    }
}
