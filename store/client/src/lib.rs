//! skiff-client: a small typed client for etcd's v3 API as skiff-store (or
//! etcd itself) serves it. The CLI, the control plane and the agent use it;
//! it depends on the wire types only, never on the store.
//!
//! - [`Client::connect`] takes endpoints as `host:port` or `http://host:port`
//!   and opens one lazily connected gRPC channel per endpoint.
//! - Each call has a deadline ([`ClientOptions::request_timeout`], etcdctl's
//!   `--command-timeout`); connecting has its own ([`ClientOptions::connect_timeout`],
//!   etcdctl's `--dial-timeout`).
//! - Failover: a call starts at the next endpoint in round-robin order
//!   (endpoints that failed in the last 10 s go last) and makes at most one
//!   pass over the endpoints. Reads move on after any transport failure, an
//!   `Unavailable` answer, or no answer within their share of the deadline
//!   (a paused member cannot eat it all); writes move on only when the
//!   request provably never reached a server (the connection could not be
//!   made). See [`retry`] for the policy and [`ClientError`] for what callers
//!   get back.
//!
//! Modules: [`endpoint`] parses endpoint strings, [`retry`] decides (without
//! IO) what a failure means, [`keys`] has etcd's key-range conventions.
//! Lease and Watch calls live in `lease_watch`, Maintenance calls (per member
//! or cluster-wide) in `maintenance`, Maintenance.Snapshot in `snapshot`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use skiff_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, StatusRequest, StatusResponse, TxnRequest, TxnResponse,
    cluster_client::ClusterClient, kv_client::KvClient, maintenance_client::MaintenanceClient,
};
use skiff_proto::mvccpb::KeyValue;
use tokio::time::Instant;
use tonic::transport::Channel;
use tracing::debug;

pub mod endpoint;
mod error;
pub mod keys;
mod lease_watch;
mod maintenance;
pub mod retry;
mod snapshot;

pub use endpoint::Endpoint;
pub use error::ClientError;
pub use retry::OpKind;

use retry::Decision;

/// etcdctl's `--dial-timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// etcdctl's `--command-timeout` default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 keep-alive ping interval and the wait for its answer, so a dead
/// peer is noticed on an idle connection.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(6);
/// The largest response accepted: etcd's clients allow `math.MaxInt32`, since
/// a range over many keys can be far above gRPC's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;
/// How long an endpoint that failed is tried last.
const UNREACHABLE_MEMORY: Duration = Duration::from_secs(10);

/// Timeouts of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Time to establish a connection to one endpoint.
    pub connect_timeout: Duration,
    /// Time for a whole call, failover included.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A client for a store cluster. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conns: Vec<Conn>,
    /// Where the next call starts (round-robin).
    cursor: AtomicUsize,
    options: ClientOptions,
    /// The zero of `Conn::down_at_ms`.
    epoch: Instant,
}

#[derive(Debug)]
struct Conn {
    endpoint: Endpoint,
    channel: Channel,
    /// 1 + milliseconds since `epoch` when this endpoint last failed, 0 if
    /// it answered since.
    down_at_ms: AtomicU64,
}

impl Client {
    /// Parses `endpoints` and prepares a lazily connected channel to each;
    /// nothing is dialed until the first call. Must run inside a Tokio
    /// runtime.
    pub async fn connect(
        endpoints: &[String],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let endpoints = endpoint::parse_endpoints(endpoints)?;
        let conns = endpoints
            .into_iter()
            .map(|endpoint| {
                Ok(Conn {
                    channel: channel(&endpoint, &options)?,
                    endpoint,
                    down_at_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        // Start different clients at different endpoints.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0);
        Ok(Client {
            inner: Arc::new(Inner {
                conns,
                cursor: AtomicUsize::new(start),
                options,
                epoch: Instant::now(),
            }),
        })
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> Vec<&str> {
        self.inner.conns.iter().map(|c| c.endpoint.name()).collect()
    }

    /// KV.Range. Retried on another endpoint after any transport failure or
    /// an `Unavailable` answer.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, ClientError> {
        self.call(OpKind::Read, "Range", |ch, timeout| {
            let req = with_timeout(req.clone(), timeout);
            async move { kv(ch).range(req).await }
        })
        .await
    }

    /// The current value of one key (a linearizable Range), if it exists.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, ClientError> {
        let resp = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// KV.Put. Retried only if no server can have received it.
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, ClientError> {
        self.call(OpKind::Write, "Put", |ch, timeout| {
            let req = with_timeout(req.clone(), timeout);
            async move { kv(ch).put(req).await }
        })
        .await
    }

    /// KV.DeleteRange. Retried only if no server can have received it.
    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        self.call(OpKind::Write, "DeleteRange", |ch, timeout| {
            let req = with_timeout(req.clone(), timeout);
            async move { kv(ch).delete_range(req).await }
        })
        .await
    }

    /// KV.Txn. A txn whose branches only read is retried like a read; one
    /// that writes is retried only if no server can have received it.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ClientError> {
        let kind = if retry::txn_is_read_only(&req) {
            OpKind::Read
        } else {
            OpKind::Write
        };
        self.call(kind, "Txn", |ch, timeout| {
            let req = with_timeout(req.clone(), timeout);
            async move { kv(ch).txn(req).await }
        })
        .await
    }

    /// KV.Compact. Treated as a write.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, ClientError> {
        self.call(OpKind::Write, "Compact", |ch, timeout| {
            let req = with_timeout(req, timeout);
            async move { kv(ch).compact(req).await }
        })
        .await
    }

    /// Cluster.MemberList, from any endpoint.
    pub async fn member_list(&self) -> Result<MemberListResponse, ClientError> {
        self.call(OpKind::Read, "MemberList", |ch, timeout| {
            let req = with_timeout(MemberListRequest::default(), timeout);
            async move {
                ClusterClient::new(ch)
                    .max_decoding_message_size(MAX_RESPONSE_BYTES)
                    .member_list(req)
                    .await
            }
        })
        .await
    }

    /// Cluster.MemberAdd: a voter, or a learner with `learner`.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<MemberAddResponse, ClientError> {
        self.call(OpKind::Write, "MemberAdd", |ch, timeout| {
            let req = with_timeout(
                MemberAddRequest {
                    peer_ur_ls: peer_urls.clone(),
                    is_learner: learner,
                },
                timeout,
            );
            async move { ClusterClient::new(ch).member_add(req).await }
        })
        .await
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, ClientError> {
        self.call(OpKind::Write, "MemberRemove", |ch, timeout| {
            let req = with_timeout(MemberRemoveRequest { id }, timeout);
            async move { ClusterClient::new(ch).member_remove(req).await }
        })
        .await
    }

    /// Cluster.MemberUpdate: new peer URLs for member `id`.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<MemberUpdateResponse, ClientError> {
        self.call(OpKind::Write, "MemberUpdate", |ch, timeout| {
            let req = with_timeout(
                MemberUpdateRequest {
                    id,
                    peer_ur_ls: peer_urls.clone(),
                },
                timeout,
            );
            async move { ClusterClient::new(ch).member_update(req).await }
        })
        .await
    }

    /// Cluster.MemberPromote: learner `id` becomes a voter.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, ClientError> {
        self.call(OpKind::Write, "MemberPromote", |ch, timeout| {
            let req = with_timeout(MemberPromoteRequest { id }, timeout);
            async move { ClusterClient::new(ch).member_promote(req).await }
        })
        .await
    }

    /// Maintenance.Status of exactly one member, never failed over: status is
    /// per member. `endpoint` may be one of the client's endpoints or any
    /// other (e.g. a client URL from [`Client::member_list`]).
    pub async fn status(&self, endpoint: &str) -> Result<StatusResponse, ClientError> {
        self.call_endpoint(endpoint, |ch, timeout| {
            let req = with_timeout(StatusRequest {}, timeout);
            async move {
                MaintenanceClient::new(ch)
                    .max_decoding_message_size(MAX_RESPONSE_BYTES)
                    .status(req)
                    .await
            }
        })
        .await
    }

    /// Runs one call with failover: one pass over the endpoints at most,
    /// all within the request timeout.
    async fn call<T, F, Fut>(
        &self,
        kind: OpKind,
        rpc: &'static str,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.options.request_timeout;
        let now_ms = inner.now_ms();
        let recently_down: Vec<bool> = inner
            .conns
            .iter()
            .map(|c| c.down_recently(now_ms))
            .collect();
        let start = inner.cursor.fetch_add(1, Ordering::Relaxed);
        let mut unreachable: Vec<String> = Vec::new();
        let mut answered: Option<tonic::Status> = None;
        let mut last_endpoint = String::new();

        let order = retry::attempt_order(start, &recently_down);
        for (pos, &idx) in order.iter().enumerate() {
            let conn = &inner.conns[idx];
            let name = conn.endpoint.name();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            last_endpoint = name.to_string();
            let budget = retry::attempt_budget(kind, remaining, order.len() - pos);
            let outcome = tokio::time::timeout(budget, attempt(conn.channel.clone(), budget)).await;
            let decision = match outcome {
                Ok(Ok(resp)) => {
                    conn.down_at_ms.store(0, Ordering::Relaxed);
                    debug!(rpc, endpoint = name, "answered");
                    return Ok(resp.into_inner());
                }
                Ok(Err(status)) => retry::decide(kind, name, status),
                Err(_elapsed) => retry::no_answer(kind, name, Some(budget)),
            };
            match decision {
                Decision::NextUnreachable { reason } => {
                    debug!(rpc, endpoint = name, %reason, "endpoint unreachable, trying the next");
                    conn.mark_down(inner.now_ms());
                    unreachable.push(format!("{name}: {reason}"));
                }
                Decision::NextAnswered(status) => {
                    debug!(
                        rpc,
                        endpoint = name,
                        message = status.message(),
                        "endpoint cannot serve, trying the next"
                    );
                    conn.mark_down(inner.now_ms());
                    answered = Some(status);
                }
                Decision::Fail(err) => {
                    if err.is_outcome_unknown() {
                        conn.mark_down(inner.now_ms());
                    }
                    return Err(err);
                }
            }
        }

        Err(retry::exhausted(
            kind,
            answered,
            unreachable,
            last_endpoint,
            Instant::now() >= deadline,
        ))
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Conn {
    fn mark_down(&self, now_ms: u64) {
        self.down_at_ms
            .store(now_ms.saturating_add(1), Ordering::Relaxed);
    }

    fn down_recently(&self, now_ms: u64) -> bool {
        was_down_recently(self.down_at_ms.load(Ordering::Relaxed), now_ms)
    }
}

/// Whether an endpoint marked down at `down_at_ms` (1 + ms, 0 = not down)
/// failed less than [`UNREACHABLE_MEMORY`] before `now_ms`.
fn was_down_recently(down_at_ms: u64, now_ms: u64) -> bool {
    let memory_ms = u64::try_from(UNREACHABLE_MEMORY.as_millis()).unwrap_or(u64::MAX);
    down_at_ms != 0 && now_ms.saturating_add(1).saturating_sub(down_at_ms) < memory_ms
}

fn channel(endpoint: &Endpoint, options: &ClientOptions) -> Result<Channel, ClientError> {
    let builder = tonic::transport::Endpoint::from_shared(endpoint.uri().to_string())
        .map_err(|e| ClientError::InvalidEndpoint(format!("{:?}: {e}", endpoint.name())))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(false);
    Ok(builder.connect_lazy())
}

fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// Wraps a message, telling the server how long the client waits (the
/// `grpc-timeout` header).
fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}

/// Helpers shared by this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::ClientOptions;
    use std::time::Duration;

    /// A loopback port with nothing listening.
    pub(crate) fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// Options with short timeouts, for calls expected to fail.
    pub(crate) fn fast() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::{closed_port, fast};

    #[tokio::test]
    async fn invalid_endpoints_are_refused() {
        let err = Client::connect(&["nope".to_string()], fast())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::InvalidEndpoint(_)), "{err:?}");
        let err = Client::connect(&[], fast()).await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidEndpoint(_)), "{err:?}");
    }

    #[tokio::test]
    async fn read_against_closed_ports_is_unavailable_after_one_pass() {
        let (a, b) = (closed_port(), closed_port());
        let eps = vec![format!("127.0.0.1:{a}"), format!("http://127.0.0.1:{b}")];
        let client = Client::connect(&eps, fast()).await.unwrap();
        let err = client.get("health").await.unwrap_err();
        match &err {
            ClientError::Unavailable { endpoint, message } => {
                assert!(eps.contains(endpoint), "{endpoint}");
                assert!(
                    message.contains(&format!("127.0.0.1:{a}: connection refused")),
                    "{message}"
                );
                assert!(
                    message.contains(&format!("http://127.0.0.1:{b}: connection refused")),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with("cannot reach any endpoint ("));
    }

    #[tokio::test]
    async fn write_against_closed_port_is_unavailable_not_unknown() {
        let port = closed_port();
        let client = Client::connect(&[format!("127.0.0.1:{port}")], fast())
            .await
            .unwrap();
        let err = client
            .put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot reach any endpoint (127.0.0.1:{port}: connection refused)")
        );
    }

    #[tokio::test]
    async fn status_of_unreachable_endpoint() {
        let port = closed_port();
        let client = Client::connect(&["127.0.0.1:1".to_string()], fast())
            .await
            .unwrap();
        let ep = format!("http://127.0.0.1:{port}");
        match client.status(&ep).await.unwrap_err() {
            ClientError::Unavailable { endpoint, message } => {
                assert_eq!(endpoint, ep);
                assert_eq!(message, format!("{ep}: connection refused"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// A server that accepts connections and never answers: reads time out.
    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let options = ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(300),
        };
        let client = Client::connect(&[format!("127.0.0.1:{port}")], options)
            .await
            .unwrap();
        let err = client.get("k").await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout), "{err:?}");
        let err = client
            .put(PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.is_outcome_unknown(), "{err:?}");
        keep.abort();
    }

    #[test]
    fn down_memory() {
        let memory = UNREACHABLE_MEMORY.as_millis() as u64;
        assert!(!was_down_recently(0, 5));
        assert!(was_down_recently(1, 0));
        assert!(was_down_recently(1, memory - 1));
        assert!(!was_down_recently(1, memory));
        assert!(was_down_recently(1001, 1000 + memory - 1));
    }
}
