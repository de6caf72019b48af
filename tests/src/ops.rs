//! Small builders for the requests and events the tests share.

use skiff_proto::etcdserverpb::{PutRequest, RequestOp, request_op};
use skiff_proto::mvccpb::{Event, event::EventType};

/// A put of `key` = `value` inside a Txn.
pub fn put_op(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            ..Default::default()
        })),
    }
}

/// "PUT" or "DELETE", as etcdctl prints an event's type.
pub fn event_kind(event: &Event) -> &'static str {
    if event.r#type == EventType::Put as i32 {
        "PUT"
    } else {
        "DELETE"
    }
}
