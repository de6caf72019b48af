//! Leader election through the store, as etcd's election recipe does it: a
//! lease, and a compare-and-swap that creates the election key with that
//! lease only if the key does not exist.
//!
//! - The winner keeps its lease alive every third of the TTL. When it
//!   cannot renew for long enough that the store may already have expired
//!   the lease (the TTL less a fifth, counted from the last renewal that was
//!   answered), or when the key is gone or belongs to another, it gives up:
//!   [`Leadership::lost`] is cancelled.
//! - The others watch the key and try again when it is deleted, whether by
//!   a resign (the lease revoked) or by the lease expiring.
//! - Writes made while leading carry the key's create revision as a
//!   [`Fence`]: once another instance has won, an old leader's writes fail
//!   in the store instead of racing the new leader's.

use std::time::Duration;

use skiff_client::{Client, ClientError};
use skiff_proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, compare,
    request_op, response_op,
};
use skiff_proto::mvccpb::event::EventType;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::Fence;

/// One campaign for one key.
#[derive(Debug, Clone)]
pub struct Election {
    client: Client,
    key: String,
    identity: String,
    ttl: Duration,
}

/// The leadership won by a campaign, kept until lost or resigned.
#[derive(Debug)]
pub struct Leadership {
    /// The condition that holds while this leadership does.
    pub fence: Fence,
    pub lease: i64,
    lost: CancellationToken,
    keeper: JoinHandle<()>,
    client: Client,
}

impl Leadership {
    /// Cancelled when the leadership is lost (or resigned).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Gives the leadership up at once: revokes the lease, which deletes
    /// the key, so that a waiting instance takes over without waiting out
    /// the TTL.
    pub async fn resign(self) {
        self.lost.cancel();
        self.keeper.abort();
        if let Err(e) = self.client.lease_revoke(self.lease).await {
            tracing::warn!(lease = self.lease, error = %e, "revoking the leader lease failed; it will expire");
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.lost.cancel();
        self.keeper.abort();
    }
}

fn ttl_seconds(ttl: Duration) -> i64 {
    (ttl.as_secs_f64().ceil() as i64).max(1)
}

impl Election {
    /// `identity` is what the key holds while this instance leads (a
    /// host name and process id, say).
    pub fn new(
        client: Client,
        key: impl Into<String>,
        identity: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Election {
            client,
            key: key.into(),
            identity: identity.into(),
            ttl,
        }
    }

    /// Who leads now: the key's value, if any.
    pub async fn leader(&self) -> Result<Option<String>, ClientError> {
        Ok(self
            .client
            .get(self.key.as_bytes())
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// Campaigns until this instance leads (`Some`) or `cancel` (`None`).
    /// Store errors are retried with a bounded back-off.
    pub async fn campaign(&self, cancel: &CancellationToken) -> Option<Leadership> {
        let mut failures = 0u32;
        while !cancel.is_cancelled() {
            match self.try_once(cancel).await {
                Ok(Some(leadership)) => return Some(leadership),
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let delay = Duration::from_millis(100 * (1 << failures.min(5)));
                    tracing::warn!(key = %self.key, error = %e, ?delay, "campaign failed, trying again");
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        None
    }

    /// One attempt: wins, or waits until the holder's key is deleted (or a
    /// TTL has passed) and returns `None` to try again.
    async fn try_once(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Leadership>, ClientError> {
        let ttl = ttl_seconds(self.ttl);
        let lease = self.client.lease_grant(ttl, 0).await?.id;
        let key = self.key.as_bytes().to_vec();
        let granted_at = Instant::now();
        let resp = self
            .client
            .txn(TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: key.clone(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value: self.identity.as_bytes().to_vec(),
                        lease,
                        ..Default::default()
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: key.clone(),
                        ..Default::default()
                    })),
                }],
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let _ = self.client.lease_revoke(lease).await;
                return Err(e);
            }
        };
        if resp.succeeded {
            let create_revision = resp.header.map_or(0, |h| h.revision);
            let fence = Fence {
                key: self.key.clone(),
                create_revision,
            };
            tracing::info!(key = %self.key, identity = %self.identity, lease, create_revision, "elected leader");
            let lost = CancellationToken::new();
            let keeper = tokio::spawn(keep(
                self.client.clone(),
                fence.clone(),
                lease,
                self.ttl,
                granted_at,
                lost.clone(),
            ));
            return Ok(Some(Leadership {
                fence,
                lease,
                lost,
                keeper,
                client: self.client.clone(),
            }));
        }
        let _ = self.client.lease_revoke(lease).await;
        let holder = resp.responses.first().and_then(|r| match &r.response {
            Some(response_op::Response::ResponseRange(range)) => range.kvs.first().cloned(),
            _ => None,
        });
        let Some(holder) = holder else {
            // Deleted between the compare and the read: try again now.
            return Ok(None);
        };
        tracing::debug!(key = %self.key, leader = %String::from_utf8_lossy(&holder.value), "waiting for the leader to go");
        let mut stream = self
            .client
            .watch(WatchCreateRequest {
                key,
                start_revision: holder.mod_revision + 1,
                ..Default::default()
            })
            .await?;
        // The watch is the fast path; the TTL bounds the wait in case it
        // misses the delete (a broken stream, a compaction).
        let recheck = tokio::time::sleep(self.ttl);
        tokio::pin!(recheck);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = &mut recheck => return Ok(None),
                msg = stream.message() => match msg {
                    Ok(Some(msg)) => {
                        if msg.canceled || msg.compact_revision > 0 {
                            return Ok(None);
                        }
                        if msg.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                            return Ok(None);
                        }
                    }
                    Ok(None) => return Ok(None),
                    Err(status) => return Err(ClientError::Status(status)),
                },
            }
        }
    }
}

/// Keeps the lease alive and checks the key, until either fails for good;
/// then cancels `lost`.
async fn keep(
    client: Client,
    fence: Fence,
    lease: i64,
    ttl: Duration,
    granted_at: Instant,
    lost: CancellationToken,
) {
    let interval = (ttl / 3).max(Duration::from_millis(100));
    // Give up before the store can have expired the lease: a renewal sent
    // at `t` keeps it at least until `t + ttl`.
    let margin = ttl / 5;
    let mut renewed_at = granted_at;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let give_up_at = renewed_at + ttl.saturating_sub(margin);
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep_until(give_up_at) => {
                tracing::warn!(key = %fence.key, lease, "leader lease not renewed in time, stepping down");
                lost.cancel();
                return;
            }
            _ = tick.tick() => {}
        }
        let sent_at = Instant::now();
        let renewal =
            tokio::time::timeout_at(give_up_at, client.lease_keep_alive_once(lease)).await;
        match renewal {
            Ok(Ok(r)) if r.ttl > 0 => {}
            Ok(Ok(_)) => {
                tracing::warn!(key = %fence.key, lease, "leader lease expired, stepping down");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(key = %fence.key, lease, error = %e, "leader lease renewal failed");
                continue;
            }
            Err(_) => continue,
        }
        match tokio::time::timeout_at(give_up_at, client.get(fence.key.as_bytes())).await {
            Ok(Ok(Some(kv))) if kv.create_revision == fence.create_revision => {
                renewed_at = sent_at;
            }
            Ok(Ok(_)) => {
                tracing::warn!(key = %fence.key, lease, "leader key gone or taken, stepping down");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(key = %fence.key, error = %e, "reading the leader key failed");
            }
            Err(_) => {}
        }
    }
}
