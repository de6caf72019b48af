//! The clients of a fault run: each is pinned to one member and does random
//! operations on a few keys, recording every one in the shared history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::schedule::Rng;
use crate::history::{Action, History};
use crate::ops::put_op;

/// A client gives up on an operation after this long: its outcome is then
/// unknown (shorter than the server's 5 s request timeout).
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after an operation that failed, so that a client of a member that is
/// down does not spin.
const RETRY_PERIOD: Duration = Duration::from_millis(20);

/// The key of register `k`.
pub fn key(prefix: &str, k: u64) -> String {
    format!("{prefix}{k}")
}

/// One workload client.
pub struct Client {
    pub id: usize,
    pub kv: KvClient<Channel>,
    pub history: Arc<History>,
    pub rng: Rng,
    pub prefix: String,
    pub keys: u64,
}

/// How a write ended.
enum Ended<T> {
    Ok(T),
    /// Refused before it was proposed: it did not happen.
    Failed,
    /// It may have happened, now or later.
    Unknown,
}

impl Client {
    /// Runs operations until `stop` is set: 40% linearizable gets, 25% puts,
    /// 25% compare-and-swaps, 10% deletes.
    pub async fn run(mut self, stop: Arc<AtomicBool>) {
        let mut seq = 0u64;
        // What this client last saw in each key: what its CASes expect.
        let mut seen: Vec<Option<String>> = vec![None; self.keys as usize];
        let mut retry = crate::pace(RETRY_PERIOD);
        while !stop.load(Ordering::Relaxed) {
            let k = self.rng.below(self.keys);
            let key = key(&self.prefix, k);
            let roll = self.rng.below(100);
            seq += 1;
            let value = format!("c{}-{seq}", self.id);
            let invoked = self.history.now();
            let completed = if roll < 40 {
                match self.get(&key).await {
                    Some(value) => {
                        seen[k as usize].clone_from(&value);
                        self.history
                            .ok(self.id, &key, Action::Get { value }, invoked);
                        true
                    }
                    None => false,
                }
            } else if roll < 65 {
                let action = Action::Put {
                    value: value.clone(),
                };
                let ended = self.put(&key, &value).await;
                if matches!(ended, Ended::Ok(())) {
                    seen[k as usize] = Some(value);
                }
                self.record(&key, action, invoked, ended)
            } else if roll < 90 {
                let expected = seen[k as usize].clone();
                let ended = self.cas(&key, expected.as_deref(), &value).await;
                let succeeded = matches!(ended, Ended::Ok(true));
                if succeeded {
                    seen[k as usize] = Some(value.clone());
                }
                let action = Action::Cas {
                    expected,
                    value,
                    succeeded,
                };
                self.record(&key, action, invoked, ended)
            } else {
                let ended = self.delete(&key).await;
                if matches!(ended, Ended::Ok(())) {
                    seen[k as usize] = None;
                }
                self.record(&key, Action::Delete, invoked, ended)
            };
            if !completed {
                retry.tick().await;
            }
        }
    }

    /// Records a write; whether it completed.
    fn record<T>(&self, key: &str, action: Action, invoked: Duration, ended: Ended<T>) -> bool {
        match ended {
            Ended::Ok(_) => {
                self.history.ok(self.id, key, action, invoked);
                true
            }
            Ended::Failed => {
                self.history.failed(self.id, key, action, invoked);
                false
            }
            Ended::Unknown => {
                self.history.unknown(self.id, key, action, invoked);
                false
            }
        }
    }

    /// A linearizable get: `Some(value)` when it answered (a failed read
    /// tells nothing and is not recorded).
    async fn get(&mut self, key: &str) -> Option<Option<String>> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        match tokio::time::timeout(OP_TIMEOUT, self.kv.range(request)).await {
            Ok(Ok(response)) => {
                let kv = response.into_inner().kvs.pop();
                Some(kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
            }
            _ => None,
        }
    }

    async fn put(&mut self, key: &str, value: &str) -> Ended<()> {
        let request = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        };
        ended(tokio::time::timeout(OP_TIMEOUT, self.kv.put(request)).await).map(|_| ())
    }

    async fn delete(&mut self, key: &str) -> Ended<()> {
        let request = DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        ended(tokio::time::timeout(OP_TIMEOUT, self.kv.delete_range(request)).await).map(|_| ())
    }

    /// Puts `value` if the key holds `expected` (`None`: the key is absent);
    /// `Ok(true)` when it did.
    async fn cas(&mut self, key: &str, expected: Option<&str>, value: &str) -> Ended<bool> {
        let compare = match expected {
            Some(expected) => Compare {
                key: key.as_bytes().to_vec(),
                target: CompareTarget::Value as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::Value(expected.as_bytes().to_vec())),
                ..Default::default()
            },
            None => Compare {
                key: key.as_bytes().to_vec(),
                target: CompareTarget::Create as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::CreateRevision(0)),
                ..Default::default()
            },
        };
        let request = TxnRequest {
            compare: vec![compare],
            success: vec![put_op(key, value)],
            failure: Vec::new(),
        };
        ended(tokio::time::timeout(OP_TIMEOUT, self.kv.txn(request)).await)
            .map(|response| response.into_inner().succeeded)
    }
}

impl<T> Ended<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Ended<U> {
        match self {
            Ended::Ok(t) => Ended::Ok(f(t)),
            Ended::Failed => Ended::Failed,
            Ended::Unknown => Ended::Unknown,
        }
    }
}

/// Classifies a write's result.
fn ended<T>(result: Result<Result<T, Status>, tokio::time::error::Elapsed>) -> Ended<T> {
    match result {
        Ok(Ok(t)) => Ended::Ok(t),
        Ok(Err(status)) if never_proposed(&status) => Ended::Failed,
        // A timeout, a lost connection, a leader change, "no leader" after a
        // forward: it may be in some member's log and commit later.
        Ok(Err(_)) | Err(_) => Ended::Unknown,
    }
}

/// Whether a failed call certainly never reached a member's raft log: the
/// request was refused as invalid, or no connection could be made (tonic's
/// Unavailable "tcp connect error"), so the request never left the client.
fn never_proposed(status: &Status) -> bool {
    status.code() == Code::InvalidArgument
        || (status.code() == Code::Unavailable && status.message() == "tcp connect error")
}
