//! The request benchmarks: put, range, txn-put and lease-keepalive, each an
//! [`Op`] per client run by [`closed_loop`].

use std::sync::Arc;

use anyhow::anyhow;
use futures_util::stream;
use skiff_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, kv_client::KvClient,
    lease_client::LeaseClient, request_op,
};
use tokio::sync::mpsc;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use super::report::Report;
use super::run::{Op, closed_loop, status_text};
use super::{Consistency, PutArgs, RangeArgs, Setup, TxnPutArgs, key, mix};

/// TTL of the leases lease-keepalive renews, as etcd's benchmark grants.
const LEASE_TTL_S: i64 = 100;

/// How request numbers pick keys.
#[derive(Clone, Copy, Debug)]
struct Keys {
    space: u64,
    size: usize,
    /// Keys in order: request i's first key is key `i * per_request`, so
    /// that `space / per_request` requests write every key once.
    sequential: bool,
    /// Keys each request writes.
    per_request: u64,
}

impl Keys {
    /// The `j`th key after request `i`'s first: the keys of one request are
    /// consecutive (mod the key space), so they are distinct as long as the
    /// request writes no more keys than the space holds.
    fn nth_after(&self, i: u64, j: u64) -> Vec<u8> {
        let n = if self.sequential {
            i.wrapping_mul(self.per_request)
        } else {
            mix(i)
        };
        key((n % self.space + j) % self.space, self.size)
    }
}

/// How a put request is sent.
#[derive(Clone, Copy, Debug)]
enum PutShape {
    /// A Put.
    Put,
    /// A Txn with no comparison and this many puts.
    Txn { ops: u64 },
}

struct PutOp {
    kv: KvClient<Channel>,
    keys: Keys,
    value: Arc<[u8]>,
    shape: PutShape,
}

impl PutOp {
    fn put(&self, i: u64, j: u64) -> PutRequest {
        PutRequest {
            key: self.keys.nth_after(i, j),
            value: self.value.to_vec(),
            ..Default::default()
        }
    }
}

impl Op for PutOp {
    async fn call(&mut self, i: u64) -> Result<(), String> {
        let result = match self.shape {
            PutShape::Put => self.kv.put(self.put(i, 0)).await.map(drop),
            PutShape::Txn { ops } => {
                let txn = TxnRequest {
                    success: (0..ops)
                        .map(|j| RequestOp {
                            request: Some(request_op::Request::RequestPut(self.put(i, j))),
                        })
                        .collect(),
                    ..Default::default()
                };
                self.kv.txn(txn).await.map(drop)
            }
        };
        result.map_err(|s| status_text(&s))
    }
}

fn put_ops(setup: &Setup, keys: Keys, shape: PutShape) -> Vec<PutOp> {
    let value: Arc<[u8]> = setup.value.clone().into();
    (0..setup.clients)
        .map(|i| PutOp {
            kv: KvClient::new(setup.channel(i)),
            keys,
            value: Arc::clone(&value),
            shape,
        })
        .collect()
}

/// `bench put`: Put requests, keys in order or at random.
pub async fn put(setup: &Setup, args: &PutArgs) -> anyhow::Result<Report> {
    let keys = Keys {
        space: args.keys.key_space_size,
        size: setup.key_size,
        sequential: args.sequential_keys,
        per_request: 1,
    };
    let ops = put_ops(setup, keys, PutShape::Put);
    closed_loop(ops, setup.pace()).await
}

/// `bench txn-put`: Txns with no comparison and `--txn-ops` puts of
/// consecutive keys, the first at random or in order.
pub async fn txn_put(setup: &Setup, args: &TxnPutArgs) -> anyhow::Result<Report> {
    let keys = Keys {
        space: args.keys.key_space_size,
        size: setup.key_size,
        sequential: args.sequential_keys,
        per_request: args.txn_ops,
    };
    let ops = put_ops(setup, keys, PutShape::Txn { ops: args.txn_ops });
    closed_loop(ops, setup.pace()).await
}

struct RangeOp {
    kv: KvClient<Channel>,
    request: RangeRequest,
    /// Read one key of these at random per request, instead of the
    /// request's own key.
    keys: Option<Keys>,
}

impl Op for RangeOp {
    async fn call(&mut self, i: u64) -> Result<(), String> {
        let mut request = self.request.clone();
        if let Some(keys) = &self.keys {
            request.key = keys.nth_after(i, 0);
        }
        self.kv
            .range(request)
            .await
            .map(drop)
            .map_err(|s| status_text(&s))
    }
}

/// `bench range KEY [END]`: the same Range again and again; or, with
/// `--key-space-size`, gets of keys at random.
pub async fn range(setup: &Setup, args: &RangeArgs) -> anyhow::Result<Report> {
    let request = RangeRequest {
        key: args.key.clone().unwrap_or_default().into_bytes(),
        range_end: args.end.clone().map(String::into_bytes).unwrap_or_default(),
        serializable: args.consistency == Consistency::S,
        ..Default::default()
    };
    let keys = args.key_space_size.map(|space| Keys {
        space,
        size: setup.key_size,
        sequential: false,
        per_request: 1,
    });
    let ops = (0..setup.clients)
        .map(|i| RangeOp {
            kv: KvClient::new(setup.channel(i)),
            request: request.clone(),
            keys,
        })
        .collect();
    closed_loop(ops, setup.pace()).await
}

/// One client's lease and its keep-alive stream.
struct KeepAliveOp {
    lease: LeaseClient<Channel>,
    id: i64,
    stream: Option<KeepAliveStream>,
}

struct KeepAliveStream {
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    replies: Streaming<LeaseKeepAliveResponse>,
}

impl KeepAliveOp {
    /// One renewal. The stream is opened with its first request already
    /// queued (a server may send nothing, not even headers, before it has a
    /// request to answer), and kept only after a full round trip: one left
    /// mid-request (failed, or the call timed out) is dropped and a new one
    /// opened, so a late reply is never taken for the next request's.
    async fn round_trip(&mut self) -> Result<(), String> {
        let request = LeaseKeepAliveRequest { id: self.id };
        let closed = "lease keep-alive stream closed";
        let mut stream = match self.stream.take() {
            Some(stream) => {
                stream
                    .requests
                    .send(request)
                    .await
                    .map_err(|_| closed.to_string())?;
                stream
            }
            None => {
                // One request in flight at a time: a queue of one is enough.
                let (requests, rx) = mpsc::channel(1);
                requests.try_send(request).map_err(|_| closed.to_string())?;
                let outgoing =
                    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
                let replies = self
                    .lease
                    .lease_keep_alive(outgoing)
                    .await
                    .map_err(|s| status_text(&s))?
                    .into_inner();
                KeepAliveStream { requests, replies }
            }
        };
        match stream.replies.message().await {
            Ok(Some(reply)) if reply.ttl > 0 => {}
            Ok(Some(_)) => return Err(format!("lease {:x} expired or unknown", self.id)),
            Ok(None) => return Err("lease keep-alive stream ended".to_string()),
            Err(s) => return Err(status_text(&s)),
        }
        self.stream = Some(stream);
        Ok(())
    }
}

impl Op for KeepAliveOp {
    async fn call(&mut self, _i: u64) -> Result<(), String> {
        self.round_trip().await
    }
}

/// `bench lease-keepalive`: each client grants a lease, then renews it over
/// one LeaseKeepAlive stream, one round trip per request. The leases are
/// revoked afterwards.
pub async fn lease_keepalive(setup: &Setup) -> anyhow::Result<Report> {
    let mut ops = Vec::with_capacity(setup.clients);
    for i in 0..setup.clients {
        let mut lease = LeaseClient::new(setup.channel(i));
        let mut grant = tonic::Request::new(LeaseGrantRequest {
            ttl: LEASE_TTL_S,
            id: 0,
        });
        grant.set_timeout(setup.request_timeout);
        let granted = tokio::time::timeout(setup.request_timeout, lease.lease_grant(grant))
            .await
            .map_err(|_| {
                anyhow!(
                    "grant a lease: no answer within {:?}",
                    setup.request_timeout
                )
            })?
            .map_err(|s| anyhow!("grant a lease: {}", s.message()))?
            .into_inner();
        let mut op = KeepAliveOp {
            lease,
            id: granted.id,
            stream: None,
        };
        // Open the stream before the clock starts.
        tokio::time::timeout(setup.request_timeout, op.round_trip())
            .await
            .map_err(|_| {
                anyhow!(
                    "renew a lease: no answer within {:?}",
                    setup.request_timeout
                )
            })?
            .map_err(|e| anyhow!("renew a lease: {e}"))?;
        ops.push(op);
    }
    let leases: Vec<(LeaseClient<Channel>, i64)> =
        ops.iter().map(|op| (op.lease.clone(), op.id)).collect();
    let report = closed_loop(ops, setup.pace()).await;
    for (mut lease, id) in leases {
        let mut revoke = tonic::Request::new(LeaseRevokeRequest { id });
        revoke.set_timeout(setup.request_timeout);
        // A lease left behind expires by itself after its TTL: say so, go on.
        match tokio::time::timeout(setup.request_timeout, lease.lease_revoke(revoke)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => eprintln!("warning: revoke lease {id:x}: {}", status.message()),
            Err(_) => eprintln!(
                "warning: revoke lease {id:x}: no answer within {:?}",
                setup.request_timeout
            ),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_of_one_request_are_distinct_and_wrap() {
        let keys = Keys {
            space: 10,
            size: 2,
            sequential: true,
            per_request: 1,
        };
        assert_eq!(keys.nth_after(3, 0), b"03");
        let of_one: Vec<_> = (0..10).map(|j| keys.nth_after(7, j)).collect();
        let distinct: std::collections::BTreeSet<_> = of_one.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert_eq!(of_one[3], b"00");
    }

    #[test]
    fn sequential_txns_cover_the_key_space_once() {
        let keys = Keys {
            space: 12,
            size: 2,
            sequential: true,
            per_request: 4,
        };
        let written: Vec<_> = (0..3)
            .flat_map(|i| (0..4).map(move |j| (i, j)))
            .map(|(i, j)| keys.nth_after(i, j))
            .collect();
        let distinct: std::collections::BTreeSet<_> = written.iter().collect();
        assert_eq!(distinct.len(), 12);
    }
}
