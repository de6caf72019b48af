//! Pod sync: the pods bound to this node, run on the container runtime.
//!
//! The supervisor ([`run`]) lists the pods under `/registry/pods/` at one
//! revision and watches from the next, keeping those whose `spec.nodeName`
//! is this node; it relists when the watch ends or is compacted. Each such
//! pod gets a worker ([`worker`]) that receives the latest version of its
//! pod. A pod that disappears, is bound elsewhere, or carries a
//! `deletionTimestamp` has its containers stopped (SIGTERM, grace period,
//! SIGKILL) and removed with its emptyDir volumes; in the last case the
//! worker then deletes the pod object with a compare-and-swap.
//!
//! Docker's event stream (containers labelled with this node) pokes the
//! worker of the pod concerned; every `--resync-interval` every worker is
//! poked anyway and containers of this node whose pod has no worker are
//! removed. A restarted agent lists the pods again and its workers find the
//! running containers by their labels: nothing is restarted or duplicated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use skiff_client::Client;
use skiff_model::Pod;
use skiff_runtime::registry::{Change, LIST_PAGE_SIZE};
use skiff_runtime::{Registry, RegistryError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub mod spec;
pub mod status;
pub mod worker;

use crate::ContainerRuntimeClone;
use spec::{LABEL_NODE, LABEL_UID};
use worker::{StoredPod, Worker};

/// The prefix of every pod key.
pub const PODS_PREFIX: &str = "/registry/pods/";
/// Pokes from Docker's event stream waiting for the supervisor; beyond it
/// they are dropped (the resync catches up).
const EVENT_QUEUE: usize = 1024;
/// Workers that finished, waiting to be forgotten.
const DONE_QUEUE: usize = 1024;
/// Pause between two attempts at a failing store or Docker call of the
/// supervisor.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Pause of a worker after a failed reconcile.
const WORKER_RETRY: Duration = Duration::from_secs(2);

/// What pod sync is told at start.
#[derive(Debug, Clone)]
pub struct PodConfig {
    pub node_name: String,
    /// The node address pod ports are published on.
    pub address: String,
    pub data_dir: PathBuf,
    /// First restart back-off (then doubling).
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
    pub resync_interval: Duration,
    /// The Services the proxy sees, for the service variables of new
    /// containers (none: no variables).
    pub services: Option<crate::proxy::ServiceCaches>,
}

/// What a worker is told.
#[derive(Debug, Clone)]
enum Update {
    Pod(Arc<StoredPod>),
    /// The pod is gone from this node; the last version seen.
    Gone(Arc<StoredPod>),
}

struct Handle {
    /// The latest update and a poke counter.
    tx: watch::Sender<(u64, Update)>,
    last: Arc<StoredPod>,
}

struct Supervisor<R> {
    runtime: R,
    registry: Registry,
    config: Arc<PodConfig>,
    pause_image: String,
    shutdown: CancellationToken,
    done: mpsc::Sender<String>,
    /// By pod uid.
    workers: HashMap<String, Handle>,
    /// Pod key → uid of the pods bound here.
    keys: HashMap<String, String>,
}

fn decode(key: &str, value: &serde_json::Value) -> Option<Pod> {
    match serde_json::from_value::<Pod>(value.clone()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(key, error = %e, "skipping a pod that does not decode");
            None
        }
    }
}

impl<R: ContainerRuntimeClone> Supervisor<R> {
    fn bound_here(&self, pod: &Pod) -> bool {
        pod.spec.node_name.as_deref() == Some(self.config.node_name.as_str())
            && !pod.metadata.uid.is_empty()
    }

    /// A pod bound here, new or changed.
    fn upsert(&mut self, key: String, pod: Pod) {
        let uid = pod.metadata.uid.clone();
        if let Some(old) = self.keys.get(&key)
            && *old != uid
        {
            // Same name, new pod: the old one is gone.
            self.gone(&key);
        }
        self.keys.insert(key.clone(), uid.clone());
        let sp = Arc::new(StoredPod { key, pod });
        if let Some(h) = self.workers.get_mut(&uid) {
            h.last = sp.clone();
            h.tx.send_modify(|(n, u)| {
                *n += 1;
                *u = Update::Pod(sp);
            });
            return;
        }
        let (tx, rx) = watch::channel((0, Update::Pod(sp.clone())));
        let worker = Worker::new(
            self.runtime.clone(),
            self.registry.clone(),
            self.config.clone(),
            self.pause_image.clone(),
        );
        let span = tracing::info_span!(
            "pod",
            namespace = %sp.pod.metadata.namespace,
            pod = %sp.pod.metadata.name,
            uid = %uid
        );
        tokio::spawn(
            work(
                worker,
                rx,
                self.shutdown.clone(),
                self.done.clone(),
                uid.clone(),
            )
            .instrument(span),
        );
        self.workers.insert(uid, Handle { tx, last: sp });
    }

    /// The pod at `key` is no longer bound here.
    fn gone(&mut self, key: &str) {
        let Some(uid) = self.keys.remove(key) else {
            return;
        };
        if let Some(h) = self.workers.get(&uid) {
            let last = h.last.clone();
            h.tx.send_modify(|(n, u)| {
                *n += 1;
                *u = Update::Gone(last);
            });
        }
    }

    fn apply(&mut self, key: &str, object: Option<&serde_json::Value>) {
        match object.and_then(|v| decode(key, v)) {
            Some(pod) if self.bound_here(&pod) => self.upsert(key.to_string(), pod),
            _ => self.gone(key),
        }
    }

    fn poke(&self, uid: &str) {
        if let Some(h) = self.workers.get(uid) {
            h.tx.send_modify(|(n, _)| *n += 1);
        }
    }

    fn poke_all(&self) {
        for h in self.workers.values() {
            h.tx.send_modify(|(n, _)| *n += 1);
        }
    }

    /// Removes the containers of this node whose pod has no worker, and
    /// the volume dirs of such pods.
    async fn remove_orphans(&self) {
        let label = format!("{LABEL_NODE}={}", self.config.node_name);
        let containers = match self.runtime.list(&label).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "listing containers failed");
                return;
            }
        };
        for c in containers {
            let uid = c.labels.get(LABEL_UID).cloned().unwrap_or_default();
            if self.workers.contains_key(&uid) {
                continue;
            }
            tracing::info!(container = %c.name, uid = %uid, "removing a container of a pod not bound here");
            if c.is_running() {
                let _ = self.runtime.stop(&c.id, Duration::from_secs(2)).await;
            }
            if let Err(e) = self.runtime.remove(&c.id).await {
                tracing::warn!(container = %c.name, error = %e, "removing an orphan container failed");
            }
        }
        let pods_dir = self.config.data_dir.join("pods");
        if let Ok(entries) = std::fs::read_dir(&pods_dir) {
            for entry in entries.flatten() {
                let uid = entry.file_name().to_string_lossy().into_owned();
                if !self.workers.contains_key(&uid) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Lists the pods and brings the workers in line; returns the
    /// revision the list was read at.
    async fn relist(&mut self) -> Result<i64, RegistryError> {
        let mut start_after: Option<String> = None;
        let mut revision = None;
        let mut seen = HashMap::new();
        loop {
            let page = self
                .registry
                .list_page(
                    PODS_PREFIX,
                    start_after.as_deref(),
                    revision,
                    LIST_PAGE_SIZE,
                )
                .await?;
            revision = Some(page.revision);
            for item in &page.items {
                if let Some(pod) = decode(&item.key, &item.value)
                    && self.bound_here(&pod)
                {
                    seen.insert(item.key.clone(), pod);
                }
            }
            start_after = page.items.last().map(|i| i.key.clone());
            if !page.more || start_after.is_none() {
                break;
            }
        }
        let stale: Vec<String> = self
            .keys
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            self.gone(&key);
        }
        for (key, pod) in seen {
            self.upsert(key, pod);
        }
        Ok(revision.unwrap_or(0))
    }
}

/// A worker's life: reconcile on every update or poke, and when a
/// back-off ends; stop and remove everything once the pod is gone.
async fn work<R: ContainerRuntimeClone>(
    mut worker: Worker<R>,
    mut rx: watch::Receiver<(u64, Update)>,
    shutdown: CancellationToken,
    done: mpsc::Sender<String>,
    uid: String,
) {
    loop {
        let update = rx.borrow_and_update().1.clone();
        let next = match update {
            Update::Gone(sp) => match worker.terminate(&sp.pod).await {
                Ok(()) => {
                    let _ = done.send(uid).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stopping the pod's containers failed");
                    Some(WORKER_RETRY)
                }
            },
            Update::Pod(sp) if sp.pod.metadata.deletion_timestamp.is_some() => {
                let result = match worker.terminate(&sp.pod).await {
                    Ok(()) => worker.finalize(&sp).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        let _ = done.send(uid).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting the pod failed");
                        Some(WORKER_RETRY)
                    }
                }
            }
            Update::Pod(sp) => match worker.reconcile(&sp).await {
                Ok(requeue) => requeue,
                Err(e) => {
                    tracing::warn!(error = %e, "pod sync failed");
                    Some(WORKER_RETRY)
                }
            },
        };
        let sleep = tokio::time::sleep(next.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            _ = sleep => {}
        }
    }
}

/// Follows Docker's events of this node's containers and sends the pod
/// uid of each that matters to pod sync.
async fn follow_events<R: ContainerRuntimeClone>(
    runtime: R,
    label: String,
    tx: mpsc::Sender<String>,
    shutdown: CancellationToken,
) {
    loop {
        let mut events = runtime.events(&label);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(ev)) => {
                    if matches!(ev.action.as_str(), "die" | "oom" | "destroy" | "start")
                        && let Some(uid) = ev.labels.get(LABEL_UID)
                    {
                        let _ = tx.try_send(uid.clone());
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker event stream failed");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

/// Runs pod sync until `shutdown`.
pub async fn run<R: ContainerRuntimeClone>(
    client: Client,
    runtime: R,
    config: PodConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Registry::new(client);
    let pause_image = loop {
        match crate::pause::ensure_pause_image(&runtime).await {
            Ok(image) => break image,
            Err(e) => tracing::warn!(error = %e, "the pause image is not available yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    };
    let (done_tx, mut done_rx) = mpsc::channel(DONE_QUEUE);
    let (event_tx, mut event_rx) = mpsc::channel(EVENT_QUEUE);
    let label = format!("{LABEL_NODE}={}", config.node_name);
    tokio::spawn(follow_events(
        runtime.clone(),
        label,
        event_tx,
        shutdown.clone(),
    ));
    let resync_interval = config.resync_interval;
    let mut sup = Supervisor {
        runtime,
        registry: registry.clone(),
        config: Arc::new(config),
        pause_image,
        shutdown: shutdown.clone(),
        done: done_tx,
        workers: HashMap::new(),
        keys: HashMap::new(),
    };
    let mut resync = tokio::time::interval(resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let revision = match sup.relist().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "listing pods failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RETRY_PAUSE) => continue,
                }
            }
        };
        tracing::info!(revision, pods = sup.keys.len(), "pods listed");
        sup.remove_orphans().await;
        let mut watch = match registry.watch(PODS_PREFIX, revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RETRY_PAUSE) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                batch = watch.next() => match batch {
                    Ok(Some(batch)) => {
                        let mut lost = false;
                        for Change { object, prev, .. } in &batch.changes {
                            let key = object.as_ref().or(prev.as_ref()).and_then(key_of);
                            match key {
                                Some(key) => sup.apply(&key, object.as_ref()),
                                None => lost = true,
                            }
                        }
                        if lost {
                            tracing::warn!("a pod change came without its object; relisting");
                            break;
                        }
                    }
                    Ok(None) => {
                        tracing::info!("the pod watch ended; relisting");
                        break;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "the pod watch failed; relisting");
                        break;
                    }
                },
                Some(uid) = event_rx.recv() => sup.poke(&uid),
                Some(uid) = done_rx.recv() => { sup.workers.remove(&uid); }
                _ = resync.tick() => {
                    sup.poke_all();
                    sup.remove_orphans().await;
                }
            }
        }
    }
}

/// The store key of a pod object.
fn key_of(v: &serde_json::Value) -> Option<String> {
    let meta = v.get("metadata")?;
    let ns = meta.get("namespace")?.as_str()?;
    let name = meta.get("name")?.as_str()?;
    skiff_model::resources::lookup("pods")?.key(ns, name).ok()
}
