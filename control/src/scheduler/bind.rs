//! Writing the scheduler's decisions. Bindings go to the store in
//! batches: one transaction holds, for each pod of the batch, the
//! compare-and-swap of its binding (from the informer's copy) and the
//! creation of its `Scheduled` event, so a batch of [`BIND_BATCH`] pods is
//! one write instead of two per pod. Should any pod have changed since its
//! copy (or its event exist already), nothing of the transaction is
//! written and the batch's pods are bound one by one, each reading its pod
//! again on a lost race. Decisions go on while batches are written.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_model::Time;
use skiff_model::core::ObjectReference;
use skiff_runtime::registry::Expect;
use skiff_runtime::{EventRecorder, EventType, Registry, RegistryError, WorkQueue};
use tokio::sync::{Semaphore, mpsc};

use super::{Placement, bound_value, lock};

/// Pods per transaction: each is two writes, within the store's 128
/// operations per transaction.
pub const BIND_BATCH: usize = 32;
/// Transactions written at once.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Decisions waiting for a batch; the scheduler waits when it is full.
pub const MAX_BINDINGS_QUEUED: usize = 128;

/// One decision: the pod at `key` (as the informer had it) goes to `node`.
#[derive(Debug)]
pub struct Binding {
    pub key: String,
    pub copy: Arc<Value>,
    pub node: String,
    pub pod: ObjectReference,
}

impl Binding {
    fn message(&self) -> String {
        format!(
            "Successfully assigned {}/{} to {}",
            self.pod.namespace, self.pod.name, self.node
        )
    }
}

/// What writing bindings needs; shared by the batches in flight.
pub struct Binder {
    pub registry: Registry,
    pub events: EventRecorder,
    pub placement: Arc<Mutex<Placement>>,
    /// The scheduler's queue, to try a pod again whose binding failed.
    pub queue: Arc<WorkQueue<String>>,
}

impl Binder {
    /// Starts writing the bindings sent on the returned channel; stops once
    /// every sender is gone and the bindings queued are written.
    pub fn start(self) -> mpsc::Sender<Binding> {
        let (tx, rx) = mpsc::channel(MAX_BINDINGS_QUEUED);
        tokio::spawn(Arc::new(self).run(rx));
        tx
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Binding>) {
        let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
        let mut batch = Vec::with_capacity(BIND_BATCH);
        while rx.recv_many(&mut batch, BIND_BATCH).await > 0 {
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let batch = std::mem::replace(&mut batch, Vec::with_capacity(BIND_BATCH));
            let binder = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                binder.commit(batch).await;
            });
        }
    }

    /// Writes a batch in one transaction, or its pods one by one.
    async fn commit(&self, batch: Vec<Binding>) {
        let now = Time::now();
        let mut writes = Vec::with_capacity(2 * batch.len());
        for b in &batch {
            let revision = b.copy["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse::<i64>().ok());
            let event =
                self.events
                    .first_occurrence(&b.pod, EventType::Normal, "Scheduled", &b.message());
            match (revision, bound_value(&b.copy, &b.node, &now), event) {
                (Some(revision), Some(value), Ok(event)) => {
                    writes.push(skiff_runtime::Write {
                        key: b.key.clone(),
                        value,
                        expect: Expect::Revision(revision),
                    });
                    writes.push(event);
                }
                _ => {
                    writes.clear();
                    break;
                }
            }
        }
        let written = if writes.is_empty() {
            Ok(None)
        } else {
            self.registry.write_all(&writes).await
        };
        match written {
            Ok(Some(_)) => {
                for b in &batch {
                    tracing::info!(pod = %b.key, node = %b.node, "bound");
                }
            }
            Ok(None) => {
                tracing::debug!(
                    pods = batch.len(),
                    "a pod of the batch changed since it was decided; binding one by one"
                );
                for b in batch {
                    self.bind_one(b).await;
                }
            }
            Err(e) => {
                for b in batch {
                    self.failed(b, &e);
                }
            }
        }
    }

    /// Binds one pod, reading it again on a lost race, then records its
    /// event.
    async fn bind_one(&self, b: Binding) {
        match bind(&self.registry, &b.key, &b.copy, &b.node).await {
            Ok(true) => {
                tracing::info!(pod = %b.key, node = %b.node, "bound");
                if let Err(e) = self
                    .events
                    .record(&b.pod, EventType::Normal, "Scheduled", &b.message())
                    .await
                {
                    tracing::warn!(pod = %b.key, error = %e, "recording the Scheduled event failed");
                }
            }
            // Bound by someone else, or gone: nothing to do.
            Ok(false) => self.forget(&b.key),
            Err(e) => self.failed(b, &e),
        }
    }

    fn failed(&self, b: Binding, e: &RegistryError) {
        tracing::warn!(pod = %b.key, node = %b.node, error = %e, "binding failed; trying again");
        self.forget(&b.key);
        self.queue.add_failed(b.key);
    }

    /// Stops counting a pod this scheduler assumed bound.
    fn forget(&self, key: &str) {
        let mut placement = lock(&self.placement);
        if placement.is_assumed(key) {
            placement.uncount(key);
        }
    }
}

/// Binds the pod at `key` to `node` with a compare-and-swap, starting from
/// `copy`, the informer's: `true` when this write bound it, `false` when it
/// was bound already or is gone.
async fn bind(
    registry: &Registry,
    key: &str,
    copy: &Value,
    node: &str,
) -> Result<bool, RegistryError> {
    let now = Time::now();
    let stored = registry
        .update_from::<RegistryError>(key, copy, |current| {
            Ok(bound_value(&current.value, node, &now))
        })
        .await;
    match stored {
        Ok(stored) => Ok(stored.value["spec"]["nodeName"] == node),
        Err(RegistryError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}
