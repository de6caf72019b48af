//! Node lifecycle: a node whose agent stopped keeping its lease becomes
//! `Ready=Unknown`, and after a grace period its pods are deleted so that
//! their controllers create replacements on other nodes.
//!
//! Each agent keeps a store lease on `/registry/leases/kube-node-lease/
//! <node>`; when the agent dies, the lease expires and the store deletes
//! the key, which this controller sees as a delete, without polling.
//!
//! - A node whose lease this controller has seen, and which is gone now, is
//!   lost at once. A node it has never seen a lease for (just registered,
//!   or this instance just became leader) is given [`Settings::startup_grace`]
//!   from its creation or from the controller's start, whichever is later.
//! - A lost node gets `Ready=Unknown` (reason `NodeStatusUnknown`,
//!   Kubernetes' message) and a `NodeNotReady` event.
//! - [`Settings::eviction_timeout`] later, every pod bound to it is deleted
//!   at once (its agent is not there to stop them gracefully), with a
//!   `DeletingAllPods` event. When the agent comes back it removes the
//!   containers of pods that are no longer bound to it.
//!
//! The default budget: a 10 s agent lease, then 5 s, then the replacement
//! is scheduled and started elsewhere, well within 30 s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use skiff_model::core::ObjectReference;
use skiff_model::{Time, resources};
use skiff_runtime::{
    Action, Cache, EventRecorder, EventType, Informer, Notice, Reconcile, Registry, RegistryError,
    WorkQueue,
};
use tokio::time::Instant;

use crate::scheduler::set_condition;

/// Where agents keep their node leases.
pub const LEASE_PREFIX: &str = "/registry/leases/kube-node-lease/";

/// The node lifecycle's timings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a node never seen with a lease may go without one.
    pub startup_grace: Duration,
    /// How long after a node is lost its pods are deleted.
    pub eviction_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            startup_grace: Duration::from_secs(60),
            eviction_timeout: Duration::from_secs(5),
        }
    }
}

/// What to do about a node without a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not lost yet: look again after this long.
    Wait(Duration),
    /// Lost: mark it `Ready=Unknown`, and evict after this long.
    MarkLost(Duration),
    /// Lost long enough: delete its pods.
    Evict,
}

/// The step for a node with no lease. `lost_for` is how long it has been
/// known lost (`None` if it is not yet); `unseen_for` is how long it has
/// gone without a lease since it was created or the controller started,
/// for a node never seen with one.
pub fn step(
    settings: &Settings,
    seen_lease: bool,
    lost_for: Option<Duration>,
    unseen_for: Duration,
) -> Step {
    match lost_for {
        Some(t) if t >= settings.eviction_timeout => Step::Evict,
        Some(t) => Step::MarkLost(settings.eviction_timeout - t),
        None if seen_lease || unseen_for >= settings.startup_grace => {
            Step::MarkLost(settings.eviction_timeout)
        }
        None => Step::Wait(settings.startup_grace - unseen_for),
    }
}

/// The node lifecycle controller.
pub struct NodeLifecycle {
    registry: Registry,
    nodes: Cache,
    leases: Cache,
    pods: Cache,
    events: EventRecorder,
    settings: Settings,
    started: Instant,
    /// Nodes whose lease this instance has seen.
    seen: Mutex<HashSet<String>>,
    /// Nodes found lost, and when.
    lost: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for NodeLifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLifecycle").finish_non_exhaustive()
    }
}

fn node_key(name: &str) -> Option<String> {
    resources::lookup("nodes")?.key("", name).ok()
}

impl NodeLifecycle {
    pub fn new(
        registry: Registry,
        nodes: Cache,
        leases: Cache,
        pods: Cache,
        events: EventRecorder,
        settings: Settings,
    ) -> Self {
        NodeLifecycle {
            registry,
            nodes,
            leases,
            pods,
            events,
            settings,
            started: Instant::now(),
            seen: Mutex::default(),
            lost: Mutex::default(),
        }
    }

    /// Queues a node when it changes and when its lease appears, changes
    /// or goes.
    pub fn wire(nodes: &mut Informer, leases: &mut Informer, queue: &Arc<WorkQueue<String>>) {
        let q = queue.clone();
        nodes.on_change(move |n| q.add(n.key().to_string()));
        let q = queue.clone();
        leases.on_change(move |n: &Notice<'_>| {
            if let Some(name) = n.key().strip_prefix(LEASE_PREFIX)
                && let Some(key) = node_key(name)
            {
                q.add(key);
            }
        });
    }

    async fn mark_lost(&self, key: &str) -> Result<bool, RegistryError> {
        let now = Time::now();
        let mut changed = false;
        let written = self
            .registry
            .update_with::<RegistryError>(key, |current| {
                let mut next = current.value.clone();
                changed = false;
                for type_ in ["Ready", "MemoryPressure", "DiskPressure"] {
                    let exists = next["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_));
                    if type_ == "Ready" || exists {
                        changed |= set_condition(
                            &mut next,
                            type_,
                            "Unknown",
                            Some("NodeStatusUnknown"),
                            Some("Kubelet stopped posting node status."),
                            &now,
                        );
                    }
                }
                Ok(changed.then_some(next))
            })
            .await;
        match written {
            Ok(_) => Ok(changed),
            Err(RegistryError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn evict(&self, name: &str) -> Result<usize, RegistryError> {
        let pods: Vec<Arc<Value>> = self.pods.filter(|p| p["spec"]["nodeName"] == name);
        let pods_resource = resources::lookup("pods").expect("a known resource");
        let mut deleted = 0;
        for p in pods {
            let meta = &p["metadata"];
            let Ok(key) = pods_resource.key(
                meta["namespace"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap_or(""),
            ) else {
                continue;
            };
            let current = match self.registry.get(&key).await {
                Ok(c) => c,
                Err(RegistryError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if current.value["spec"]["nodeName"] != name {
                continue;
            }
            match self.registry.delete(&key, current.mod_revision).await {
                Ok(_) => {
                    tracing::info!(node = name, pod = %key, "deleted the pod of a lost node");
                    deleted += 1;
                }
                Err(RegistryError::NotFound) => {}
                // Changed meanwhile: the next pass looks again.
                Err(RegistryError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            kind: "Node".into(),
            name: name.into(),
            uid: name.into(),
            api_version: "v1".into(),
            ..ObjectReference::default()
        }
    }
}

impl Reconcile for NodeLifecycle {
    fn name(&self) -> &str {
        "nodelifecycle"
    }

    async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
        let Some(node) = self.nodes.get(key) else {
            self.lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            return Ok(Action::Done);
        };
        let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
        if self.leases.get(&format!("{LEASE_PREFIX}{name}")).is_some() {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone());
            if self
                .lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key)
                .is_some()
            {
                tracing::info!(node = %name, "node lease back");
            }
            return Ok(Action::Done);
        }
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&name);
        let lost_at = self
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied();
        let created_ago = node["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<Time>().ok())
            .map(|t| {
                Duration::from_secs((Time::now().unix_seconds() - t.unix_seconds()).max(0) as u64)
            })
            .unwrap_or(Duration::MAX);
        let unseen_for = created_ago.min(self.started.elapsed());
        match step(
            &self.settings,
            seen,
            lost_at.map(|t| t.elapsed()),
            unseen_for,
        ) {
            Step::Wait(d) => Ok(Action::RequeueAfter(d)),
            Step::MarkLost(d) => {
                self.lost
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key.to_string())
                    .or_insert_with(Instant::now);
                if self.mark_lost(key).await? {
                    tracing::warn!(node = %name, "node lease gone: Ready=Unknown");
                    if let Err(e) = self
                        .events
                        .record(
                            &Self::reference(&name),
                            EventType::Normal,
                            "NodeNotReady",
                            &format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await
                    {
                        tracing::warn!(node = %name, error = %e, "recording NodeNotReady failed");
                    }
                }
                Ok(Action::RequeueAfter(d))
            }
            Step::Evict => {
                self.mark_lost(key).await?;
                let deleted = self.evict(&name).await?;
                if deleted > 0
                    && let Err(e) = self
                        .events
                        .record(
                            &Self::reference(&name),
                            EventType::Normal,
                            "DeletingAllPods",
                            &format!("Deleting all Pods from Node {name}."),
                        )
                        .await
                {
                    tracing::warn!(node = %name, error = %e, "recording DeletingAllPods failed");
                }
                // Pods bound to it later (none should be: it is not Ready)
                // are caught by the next pass.
                Ok(Action::RequeueAfter(self.settings.eviction_timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_nodes_are_marked_then_evicted() {
        let s = Settings::default();
        let secs = Duration::from_secs;
        // Seen with a lease, now without: lost at once.
        assert_eq!(step(&s, true, None, secs(0)), Step::MarkLost(secs(5)));
        assert_eq!(
            step(&s, true, Some(secs(2)), secs(0)),
            Step::MarkLost(secs(3))
        );
        assert_eq!(step(&s, true, Some(secs(5)), secs(0)), Step::Evict);
        // Never seen with one: a startup grace first.
        assert_eq!(step(&s, false, None, secs(10)), Step::Wait(secs(50)));
        assert_eq!(step(&s, false, None, secs(60)), Step::MarkLost(secs(5)));
    }
}
