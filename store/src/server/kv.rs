//! etcd's KV service.

use std::sync::Arc;

use prost::Message;
use skiff_proto::etcdserverpb::kv_server::Kv;
use skiff_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::member::Member;
use super::status::{kv_error_status, msg};
use crate::mvcc::validate;
use crate::raft::Command;

/// etcd's `--max-request-bytes` default: 1.5 MiB.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's `--max-txn-ops` default.
pub const MAX_TXN_OPS: usize = 128;

pub struct KvService {
    member: Arc<Member>,
}

impl KvService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// Proposes a write and decodes the state machine's response.
    async fn write<Resp: Message + Default>(
        &self,
        command: Command,
    ) -> Result<(i64, Resp), Status> {
        let (revision, body) = self.member.propose(command).await?;
        let resp = Resp::decode(body.as_slice())
            .map_err(|e| Status::internal(format!("bad reply: {e}")))?;
        Ok((revision, resp))
    }
}

fn check_size(req: &impl Message) -> Result<(), Status> {
    if req.encoded_len() > MAX_REQUEST_BYTES {
        return Err(Status::invalid_argument(msg::REQUEST_TOO_LARGE));
    }
    Ok(())
}

#[tonic::async_trait]
impl Kv for KvService {
    #[tracing::instrument(level = "debug", skip_all, fields(key = %String::from_utf8_lossy(&request.get_ref().key)))]
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let mut req = request.into_inner();
        check_size(&req)?;
        validate::validate_range(&req).map_err(|e| kv_error_status(&e))?;
        if !req.serializable {
            self.member.read_barrier().await?;
        }
        let mvcc = &self.member.shared.mvcc;
        let current = mvcc.current_revision();
        if req.revision <= 0 {
            req.revision = current;
        }
        let mut resp = mvcc.range(&req).map_err(|e| kv_error_status(&e))?;
        resp.header = Some(self.member.header(current));
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %String::from_utf8_lossy(&request.get_ref().key)))]
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        check_size(&req)?;
        validate::validate_put(&req).map_err(|e| kv_error_status(&e))?;
        self.member.check_space(req.encoded_len()).await?;
        let (revision, mut resp): (_, PutResponse) =
            self.write(Command::Put(req.encode_to_vec())).await?;
        resp.header = Some(self.member.header(revision));
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %String::from_utf8_lossy(&request.get_ref().key)))]
    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        check_size(&req)?;
        validate::validate_delete_range(&req).map_err(|e| kv_error_status(&e))?;
        let (revision, mut resp): (_, DeleteRangeResponse) = self
            .write(Command::DeleteRange(req.encode_to_vec()))
            .await?;
        resp.header = Some(self.member.header(revision));
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        check_size(&req)?;
        validate::validate_txn(&req, MAX_TXN_OPS).map_err(|e| kv_error_status(&e))?;
        if txn_puts(&req) {
            self.member.check_space(req.encoded_len()).await?;
        }
        let (revision, mut resp): (_, TxnResponse) =
            self.write(Command::Txn(req.encode_to_vec())).await?;
        let header = self.member.header(revision);
        fill_txn_headers(&mut resp, &header);
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(revision = request.get_ref().revision))]
    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        let (revision, mut resp): (_, CompactionResponse) =
            self.write(Command::Compact(req.encode_to_vec())).await?;
        resp.header = Some(self.member.header(revision));
        Ok(Response::new(resp))
    }
}

/// Whether a txn may put anything (etcd's quota applies to those only).
fn txn_puts(req: &TxnRequest) -> bool {
    use skiff_proto::etcdserverpb::request_op::Request as Op;
    req.success
        .iter()
        .chain(&req.failure)
        .any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(nested)) => txn_puts(nested),
            _ => false,
        })
}

/// etcd sets the txn's header on every nested response too.
fn fill_txn_headers(resp: &mut TxnResponse, header: &skiff_proto::etcdserverpb::ResponseHeader) {
    use skiff_proto::etcdserverpb::response_op::Response as Op;
    resp.header = Some(*header);
    for op in &mut resp.responses {
        match &mut op.response {
            Some(Op::ResponseRange(r)) => r.header = Some(*header),
            Some(Op::ResponsePut(r)) => r.header = Some(*header),
            Some(Op::ResponseDeleteRange(r)) => r.header = Some(*header),
            Some(Op::ResponseTxn(r)) => fill_txn_headers(r, header),
            None => {}
        }
    }
}
