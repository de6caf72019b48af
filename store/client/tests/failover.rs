//! Failover against real gRPC servers on loopback: a fake KV service that
//! either answers or fails with a chosen status, next to closed ports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use skiff_client::{Client, ClientError, ClientOptions};
use skiff_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
    kv_server::{Kv, KvServer},
};
use skiff_proto::mvccpb::KeyValue;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// How a fake member answers every call.
#[derive(Clone)]
enum Answer {
    Ok,
    Fail(tonic::Code, &'static str),
}

struct FakeKv {
    answer: Answer,
    calls: Arc<AtomicUsize>,
}

impl FakeKv {
    fn answer<T>(&self, ok: T) -> Result<Response<T>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.answer {
            Answer::Ok => Ok(Response::new(ok)),
            Answer::Fail(code, msg) => Err(Status::new(*code, *msg)),
        }
    }
}

fn header() -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 7,
        raft_term: 3,
    })
}

#[tonic::async_trait]
impl Kv for FakeKv {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let key = req.into_inner().key;
        self.answer(RangeResponse {
            header: header(),
            kvs: vec![KeyValue {
                key,
                value: b"v".to_vec(),
                create_revision: 5,
                mod_revision: 6,
                version: 2,
                lease: 0,
            }],
            more: false,
            count: 1,
        })
    }
    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.answer(PutResponse {
            header: header(),
            prev_kv: None,
        })
    }
    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.answer(DeleteRangeResponse {
            header: header(),
            deleted: 1,
            prev_kvs: vec![],
        })
    }
    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.answer(TxnResponse {
            header: header(),
            succeeded: true,
            responses: vec![],
        })
    }
    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.answer(CompactionResponse { header: header() })
    }
}

/// Starts a fake member; returns its endpoint and its call counter.
async fn start(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = KvServer::new(FakeKv {
        answer,
        calls: calls.clone(),
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (addr.to_string(), calls)
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(3),
    }
}

fn put() -> PutRequest {
    PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn reads_and_writes_fail_over_from_a_dead_endpoint() {
    let dead = closed_port();
    let (live, calls) = start(Answer::Ok).await;
    let client = Client::connect(&[dead.clone(), live.clone()], options())
        .await
        .unwrap();
    // Whatever endpoint each call starts at, both succeed.
    for _ in 0..4 {
        let kv = client.get("k").await.unwrap().unwrap();
        assert_eq!(kv.value, b"v");
        client.put(put()).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn reads_move_past_a_member_without_leader() {
    let (no_leader, a_calls) = start(Answer::Fail(
        tonic::Code::Unavailable,
        "etcdserver: no leader",
    ))
    .await;
    let (live, b_calls) = start(Answer::Ok).await;
    let client = Client::connect(&[no_leader, live], options())
        .await
        .unwrap();
    for _ in 0..4 {
        client.get("k").await.unwrap();
    }
    assert_eq!(b_calls.load(Ordering::SeqCst), 4);
    // The member that failed is tried last afterwards, so at most once.
    assert!(a_calls.load(Ordering::SeqCst) <= 1);
}

#[tokio::test]
async fn no_leader_everywhere_keeps_the_server_text() {
    let (a, _) = start(Answer::Fail(
        tonic::Code::Unavailable,
        "etcdserver: no leader",
    ))
    .await;
    let (b, _) = start(Answer::Fail(
        tonic::Code::Unavailable,
        "etcdserver: no leader",
    ))
    .await;
    let client = Client::connect(&[a, b, closed_port()], options())
        .await
        .unwrap();
    let err = client.get("k").await.unwrap_err();
    assert!(matches!(err, ClientError::Status(_)), "{err:?}");
    assert_eq!(err.to_string(), "etcdserver: no leader");
    // A write that gets "no leader" was not applied and is not retried.
    let err = client.put(put()).await.unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: no leader");
}

#[tokio::test]
async fn a_write_that_may_have_applied_is_not_retried() {
    let (a, a_calls) = start(Answer::Fail(
        tonic::Code::Unavailable,
        "etcdserver: request timed out",
    ))
    .await;
    let (b, b_calls) = start(Answer::Fail(
        tonic::Code::Unavailable,
        "etcdserver: request timed out",
    ))
    .await;
    let client = Client::connect(&[a, b], options()).await.unwrap();
    let err = client.put(put()).await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert!(err.to_string().starts_with("etcdserver: request timed out"));
    // Exactly one member saw the write.
    assert_eq!(
        a_calls.load(Ordering::SeqCst) + b_calls.load(Ordering::SeqCst),
        1
    );
    // A read-only txn is a read, so it is retried on the other member.
    let err = client.txn(TxnRequest::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Status(_)), "{err:?}");
    assert_eq!(
        a_calls.load(Ordering::SeqCst) + b_calls.load(Ordering::SeqCst),
        3
    );
}

#[tokio::test]
async fn server_errors_are_returned_verbatim() {
    let (a, calls) = start(Answer::Fail(
        tonic::Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    ))
    .await;
    let (b, _) = start(Answer::Ok).await;
    let client = Client::connect(&[a.clone(), b], options()).await.unwrap();
    // Start at `a` whatever the round-robin cursor says: only `a` is asked
    // when its answer is final, so loop until it has been asked once.
    let mut compacted = None;
    for _ in 0..4 {
        if let Err(e) = client
            .range(RangeRequest {
                key: b"k".to_vec(),
                revision: 1,
                ..Default::default()
            })
            .await
        {
            compacted = Some(e);
        }
    }
    let err = compacted.expect("a's answer is returned when the call starts at a");
    assert_eq!(
        err.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(err.code(), Some(tonic::Code::OutOfRange));
    assert!(calls.load(Ordering::SeqCst) >= 1);
    let _ = a;
}

/// A member that accepts connections and never answers (paused, wedged).
async fn start_hung() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr.to_string()
}

#[tokio::test]
async fn reads_move_past_a_hung_member_within_the_deadline() {
    let hung = start_hung().await;
    let (live, _) = start(Answer::Ok).await;
    let client = Client::connect(&[hung.clone(), live], options())
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    for _ in 0..4 {
        client.get("k").await.unwrap().unwrap();
    }
    // At most one read waited for the hung member (half of the 3 s deadline);
    // afterwards it is tried last.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // A write sent to the hung member alone has an unknown outcome.
    let only_hung = Client::connect(
        &[hung],
        ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(300),
        },
    )
    .await
    .unwrap();
    let err = only_hung.put(put()).await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    let err = only_hung.get("k").await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
}
