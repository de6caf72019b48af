//! The scheduler: binds each pod that has no node to the node that suits
//! it best ([`fit`]), with a compare-and-swap on the pod.
//!
//! It reconciles pod keys one at a time (as Kubernetes' scheduling cycle is
//! serial), from informer copies of the pods and the nodes. What each
//! node's pods take is kept in a [`Placement`] that the informers' handlers
//! update as pods and nodes change, so a decision reads per-node totals
//! instead of adding up every pod. A pod it has just decided counts on its
//! node at once ("assumed"), before the pod's own watch event arrives, so
//! that two pods scheduled back to back do not both take the last of a
//! node's memory; the [`bind::Binder`] writes the decisions in batches
//! while the next pods are decided. A pod that fits nowhere gets the
//! condition PodScheduled=False (reason Unschedulable, with the message of
//! [`fit::choose`]) and a FailedScheduling event, and is tried again when a
//! node or a pod changes, and at least every [`UNSCHEDULABLE_RETRY`].

pub mod bind;
pub mod fit;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_model::core::ObjectReference;
use skiff_model::{Node, Pod, Time};
use skiff_runtime::{
    Action, Cache, EventRecorder, EventType, Informer, Notice, Reconcile, Registry, RegistryError,
    WorkQueue,
};

use bind::{Binder, Binding};
use fit::{NodeState, Placed, Usage};
use tokio::sync::mpsc;

/// How often a pod that fits nowhere is tried again without a change.
pub const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(30);

/// The scheduler's name, in events and `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Whether a pod waits for a node.
pub fn is_pending(pod: &Value) -> bool {
    let spec = &pod["spec"];
    spec["nodeName"].as_str().is_none_or(str::is_empty)
        && pod["metadata"]["deletionTimestamp"].is_null()
        && spec["schedulerName"]
            .as_str()
            .is_none_or(|s| s == SCHEDULER_NAME)
}

/// Sets condition `type_` of a JSON object's `status.conditions`; returns
/// whether anything changed. The transition time moves only when the
/// status does.
pub fn set_condition(
    object: &mut Value,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &Time,
) -> bool {
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    if !object["status"]["conditions"].is_array() {
        object["status"]["conditions"] = json!([]);
    }
    let conditions = object["status"]["conditions"]
        .as_array_mut()
        .expect("just made an array");
    let position = conditions.iter().position(|c| c["type"] == type_);
    let old = position.map(|i| conditions[i].clone());
    // Keep the fields this write does not own (a node's lastHeartbeatTime,
    // a deployment's lastUpdateTime); add none the kind does not have.
    let mut next = old.clone().unwrap_or_else(|| json!({"type": type_}));
    let transition = match &old {
        Some(c) if c["status"] == status && c.get("lastTransitionTime").is_some() => {
            c["lastTransitionTime"].clone()
        }
        _ => Value::String(now.to_string()),
    };
    let map = next.as_object_mut().expect("a condition is an object");
    map.insert("status".into(), status.into());
    map.insert("lastTransitionTime".into(), transition);
    for (field, value) in [("reason", reason), ("message", message)] {
        match value {
            Some(v) => map.insert(field.into(), v.into()),
            None => map.remove(field),
        };
    }
    if old.as_ref() == Some(&next) {
        return false;
    }
    match position {
        Some(i) => conditions[i] = next,
        None => conditions.push(next),
    }
    true
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: "Pod".into(),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        api_version: "v1".into(),
        ..ObjectReference::default()
    }
}

/// The scheduler's state; run it with [`skiff_runtime::run_workers`] and
/// one worker.
pub struct Scheduler {
    registry: Registry,
    pods: Cache,
    events: EventRecorder,
    /// The nodes and what their pods take, kept by the informers' handlers.
    placement: Arc<Mutex<Placement>>,
    /// Decisions, to the [`Binder`] that writes them.
    bindings: mpsc::Sender<Binding>,
}

/// The nodes, and what the pods bound to each take, kept as pods and nodes
/// change, so that a decision reads totals instead of adding up every pod.
///
/// A pod is counted at most once, under its key: from its copy once the
/// copy shows it bound, or "assumed" from the moment this scheduler
/// decides until then, so that two pods scheduled back to back do not both
/// take the last of a node's memory.
#[derive(Debug, Default)]
pub struct Placement {
    nodes: BTreeMap<String, NodeState>,
    /// What pods bound to nodes not (or no longer) known take, by node
    /// name; a node that appears takes its share.
    stray: HashMap<String, Usage>,
    counted: HashMap<String, Counted>,
}

#[derive(Debug)]
struct Counted {
    placed: Placed,
    assumed: bool,
}

impl Placement {
    fn usage(&mut self, node: &str) -> &mut Usage {
        match self.nodes.get_mut(node) {
            Some(state) => &mut state.usage,
            None => self.stray.entry(node.to_string()).or_default(),
        }
    }

    /// Counts `placed` for the pod at `key`, instead of what was counted.
    fn count(&mut self, key: &str, placed: Placed, assumed: bool) {
        self.uncount(key);
        if let Some(node) = &placed.node {
            self.usage(node).add(&placed);
            self.counted
                .insert(key.to_string(), Counted { placed, assumed });
        }
    }

    /// Stops counting the pod at `key`.
    fn uncount(&mut self, key: &str) {
        let Some(Counted { placed, .. }) = self.counted.remove(key) else {
            return;
        };
        let Some(node) = &placed.node else { return };
        let usage = self.usage(node);
        usage.remove(&placed);
        if usage.is_empty() {
            self.stray.remove(node);
        }
    }

    fn is_assumed(&self, key: &str) -> bool {
        self.counted.get(key).is_some_and(|c| c.assumed)
    }

    /// A pod's copy appeared or changed; returns whether a pod counted on
    /// a node stopped taking its share (it finished).
    fn pod_changed(&mut self, key: &str, value: &Value) -> bool {
        let was_counted = self.counted.contains_key(key);
        match Pod::deserialize(value) {
            Ok(pod) => {
                let placed = Placed::of(&pod);
                // A copy that does not show the binding yet leaves the
                // assumption in place.
                if placed.node.is_none() && is_pending(value) && self.is_assumed(key) {
                    return false;
                }
                self.count(key, placed, false);
            }
            Err(e) => {
                tracing::warn!(pod = %key, error = %e, "a pod that does not decode");
                self.uncount(key);
            }
        }
        was_counted && !self.counted.contains_key(key)
    }

    /// A node's copy appeared or changed.
    fn node_changed(&mut self, value: &Value) {
        match Node::deserialize(value) {
            Ok(node) => {
                let name = node.metadata.name.clone();
                match self.nodes.get_mut(&name) {
                    Some(state) => state.node = node,
                    None => {
                        let mut state = NodeState::new(node);
                        state.usage = self.stray.remove(&name).unwrap_or_default();
                        self.nodes.insert(name, state);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "a node that does not decode"),
        }
    }

    /// A node went away; what its pods take stays counted under its name.
    fn node_deleted(&mut self, value: &Value) {
        let name = value["metadata"]["name"].as_str().unwrap_or("");
        if let Some(state) = self.nodes.remove(name)
            && !state.usage.is_empty()
        {
            self.stray.insert(name.to_string(), state.usage);
        }
    }

    /// Picks the node for `pod`; see [`fit::choose`].
    fn choose(&self, pod: &Pod) -> Result<String, String> {
        fit::choose(pod, self.nodes.values())
    }
}

fn lock(placement: &Mutex<Placement>) -> std::sync::MutexGuard<'_, Placement> {
    placement.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler writing through `registry` (fenced by the leader's
    /// election), reading `pods` and `nodes`, whose handlers it connects to
    /// its placement and to `queue`: a pending pod is queued when it
    /// appears or changes; every pending pod is queued again when a node
    /// changes or a bound pod goes or stops (room may have been made).
    pub fn new(
        registry: Registry,
        pods: &mut Informer,
        nodes: &mut Informer,
        events: EventRecorder,
        queue: Arc<WorkQueue<String>>,
    ) -> Self {
        let placement = Arc::new(Mutex::new(Placement::default()));
        let pods_cache = pods.cache();
        let (q, cache, p) = (queue.clone(), pods_cache.clone(), placement.clone());
        pods.on_change(move |notice| match notice {
            Notice::Upsert { key, new, .. } | Notice::Resync { key, object: new } => {
                let freed = lock(&p).pod_changed(key, new);
                if is_pending(new) {
                    q.add(key.to_string());
                }
                if freed {
                    requeue_pending(&cache, &q);
                }
            }
            Notice::Delete { key, old } => {
                lock(&p).uncount(key);
                if !is_pending(old) {
                    requeue_pending(&cache, &q);
                }
            }
        });
        let (q, p) = (queue.clone(), placement.clone());
        nodes.on_change(move |notice| match notice {
            Notice::Upsert { new, .. } => {
                lock(&p).node_changed(new);
                requeue_pending(&pods_cache, &q);
            }
            // The pods' own resync queues the pending ones.
            Notice::Resync { object, .. } => lock(&p).node_changed(object),
            Notice::Delete { old, .. } => {
                lock(&p).node_deleted(old);
                requeue_pending(&pods_cache, &q);
            }
        });
        let bindings = Binder {
            registry: registry.clone(),
            events: events.clone(),
            placement: placement.clone(),
            queue,
        }
        .start();
        Scheduler {
            registry,
            pods: pods.cache(),
            events,
            placement,
            bindings,
        }
    }

    async fn mark_unschedulable(&self, key: &str, message: &str) -> Result<(), RegistryError> {
        let now = Time::now();
        self.registry
            .update_with::<RegistryError>(key, |current| {
                if !is_pending(&current.value) {
                    return Ok(None);
                }
                let mut next = current.value.clone();
                let changed = set_condition(
                    &mut next,
                    "PodScheduled",
                    "False",
                    Some("Unschedulable"),
                    Some(message),
                    &now,
                );
                Ok(changed.then_some(next))
            })
            .await?;
        Ok(())
    }
}

/// `current` bound to `node` (`spec.nodeName`, `PodScheduled=True`), or
/// `None` when it no longer waits for a node.
fn bound_value(current: &Value, node: &str, now: &Time) -> Option<Value> {
    if !is_pending(current) {
        return None;
    }
    let mut next = current.clone();
    next["spec"]["nodeName"] = node.into();
    set_condition(&mut next, "PodScheduled", "True", None, None, now);
    Some(next)
}

fn requeue_pending(pods: &Cache, queue: &WorkQueue<String>) {
    for v in pods.filter(is_pending) {
        let ns = v["metadata"]["namespace"].as_str().unwrap_or("");
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        if let Ok(key) = skiff_model::resources::lookup("pods")
            .expect("pods are a resource")
            .key(ns, name)
        {
            queue.add(key);
        }
    }
}

impl Reconcile for Scheduler {
    fn name(&self) -> &str {
        "scheduler"
    }

    async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
        let Some(value) = self.pods.get(key) else {
            return Ok(Action::Done);
        };
        if !is_pending(&value) || lock(&self.placement).is_assumed(key) {
            return Ok(Action::Done);
        }
        let pod = Pod::deserialize(&*value).context("decoding the pod")?;
        let chosen = {
            let mut placement = lock(&self.placement);
            let chosen = placement.choose(&pod);
            if let Ok(node) = &chosen {
                // Counted on its node at once; the write goes on while the
                // next pods are decided.
                let mut placed = Placed::of(&pod);
                placed.node = Some(node.clone());
                placement.count(key, placed, true);
            }
            chosen
        };
        match chosen {
            Ok(node) => {
                let binding = Binding {
                    key: key.to_string(),
                    copy: value,
                    node,
                    pod: reference(&pod),
                };
                if self.bindings.send(binding).await.is_err() {
                    anyhow::bail!("the binder has stopped");
                }
                Ok(Action::Done)
            }
            Err(message) => {
                tracing::info!(pod = %key, %message, "unschedulable");
                self.mark_unschedulable(key, &message).await?;
                if let Err(e) = self
                    .events
                    .record(
                        &reference(&pod),
                        EventType::Warning,
                        "FailedScheduling",
                        &message,
                    )
                    .await
                {
                    tracing::warn!(pod = %key, error = %e, "recording the FailedScheduling event failed");
                }
                Ok(Action::RequeueAfter(UNSCHEDULABLE_RETRY))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_move_their_transition_time_only_on_a_change() {
        let t1: Time = "2026-12-01T10:00:00Z".parse().unwrap();
        let t2: Time = "2026-12-01T10:00:05Z".parse().unwrap();
        let mut pod = json!({"spec": {}});
        assert!(set_condition(
            &mut pod,
            "PodScheduled",
            "False",
            Some("Unschedulable"),
            Some("a"),
            &t1
        ));
        assert!(!set_condition(
            &mut pod,
            "PodScheduled",
            "False",
            Some("Unschedulable"),
            Some("a"),
            &t2
        ));
        assert!(set_condition(
            &mut pod,
            "PodScheduled",
            "False",
            Some("Unschedulable"),
            Some("b"),
            &t2
        ));
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2026-12-01T10:00:00Z"
        );
        assert!(set_condition(
            &mut pod,
            "PodScheduled",
            "True",
            None,
            None,
            &t2
        ));
        let c = &pod["status"]["conditions"][0];
        assert_eq!(c["lastTransitionTime"], "2026-12-01T10:00:05Z");
        assert!(c.get("reason").is_none());
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn conditions_set_decode_strictly_in_every_kind() {
        let now: Time = "2026-12-01T10:00:00Z".parse().unwrap();
        for mut object in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "a", "image": "i"}]}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                "status": {"conditions": [{"type": "Ready", "status": "True",
                    "lastHeartbeatTime": "2026-12-01T09:00:00Z"}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "a", "image": "i"}]}}}}),
        ] {
            assert!(set_condition(
                &mut object,
                "Ready",
                "Unknown",
                Some("R"),
                Some("m"),
                &now
            ));
            skiff_model::decode_object(&object).unwrap_or_else(|e| panic!("{e}: {object}"));
        }
        let mut node = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "lastHeartbeatTime": "2026-12-01T09:00:00Z"}]}});
        set_condition(&mut node, "Ready", "Unknown", None, None, &now);
        assert_eq!(
            node["status"]["conditions"][0]["lastHeartbeatTime"],
            "2026-12-01T09:00:00Z"
        );
    }

    fn node_json(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn pod_json(name: &str, node: Option<&str>, memory: &str) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"memory": memory}}}]}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = node.into();
        }
        pod
    }

    fn memory_on(placement: &Placement, node: &str) -> Option<i128> {
        placement
            .nodes
            .get(node)
            .map(|n| n.usage.requested.memory)
            .or_else(|| placement.stray.get(node).map(|u| u.requested.memory))
    }

    const MI: i128 = 1024 * 1024;

    /// Totals follow pods as they are bound, assumed, moved, finished and
    /// deleted, and nodes as they come and go: each pod counted once.
    #[test]
    fn placement_counts_each_pod_once() {
        let mut p = Placement::default();
        p.node_changed(&node_json("a"));
        assert!(!p.pod_changed("pods/x", &pod_json("x", Some("a"), "100Mi")));
        assert!(!p.pod_changed("pods/x", &pod_json("x", Some("a"), "100Mi")));
        assert_eq!(memory_on(&p, "a"), Some(100 * MI));

        // Assumed: counted at once; a copy still pending keeps it; the
        // copy showing the binding replaces it.
        let y = Pod::deserialize(&pod_json("y", None, "200Mi")).unwrap();
        let mut placed = Placed::of(&y);
        placed.node = Some("a".into());
        p.count("pods/y", placed, true);
        assert_eq!(memory_on(&p, "a"), Some(300 * MI));
        p.pod_changed("pods/y", &pod_json("y", None, "200Mi"));
        assert!(p.is_assumed("pods/y"));
        assert_eq!(memory_on(&p, "a"), Some(300 * MI));
        p.pod_changed("pods/y", &pod_json("y", Some("a"), "200Mi"));
        assert!(!p.is_assumed("pods/y"));
        assert_eq!(memory_on(&p, "a"), Some(300 * MI));

        // A pod that finishes frees its share and says so.
        let mut done = pod_json("x", Some("a"), "100Mi");
        done["status"] = json!({"phase": "Succeeded"});
        assert!(p.pod_changed("pods/x", &done));
        assert_eq!(memory_on(&p, "a"), Some(200 * MI));

        // A pod bound to a node not known yet is kept for it.
        p.pod_changed("pods/z", &pod_json("z", Some("b"), "50Mi"));
        assert_eq!(memory_on(&p, "b"), Some(50 * MI));
        p.node_changed(&node_json("b"));
        assert_eq!(p.nodes["b"].usage.requested.memory, 50 * MI);
        p.node_deleted(&node_json("b"));
        assert_eq!(memory_on(&p, "b"), Some(50 * MI));
        p.uncount("pods/z");
        assert_eq!(memory_on(&p, "b"), None);

        p.uncount("pods/y");
        assert_eq!(memory_on(&p, "a"), Some(0));
        assert_eq!(p.nodes["a"].usage, Usage::default());
        assert!(p.counted.is_empty());
    }

    #[test]
    fn pending_means_no_node_not_deleted_and_ours() {
        assert!(is_pending(&json!({"spec": {}, "metadata": {}})));
        assert!(!is_pending(
            &json!({"spec": {"nodeName": "n"}, "metadata": {}})
        ));
        assert!(!is_pending(
            &json!({"spec": {}, "metadata": {"deletionTimestamp": "2026-12-01T10:00:00Z"}})
        ));
        assert!(!is_pending(
            &json!({"spec": {"schedulerName": "other"}, "metadata": {}})
        ));
    }
}
