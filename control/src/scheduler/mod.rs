//! The scheduler: binds each pod that has no node to the node that suits
//! it best ([`fit`]), with a compare-and-swap on the pod.
//!
//! It reconciles pod keys one at a time (as Kubernetes' scheduling cycle is
//! serial), from informer copies of the pods and the nodes. A pod it has
//! just bound counts on its node at once ("assumed"), before the pod's own
//! watch event arrives, so that two pods scheduled back to back do not both
//! take the last of a node's memory. A pod that fits nowhere gets the
//! condition PodScheduled=False (reason Unschedulable, with the message of
//! [`fit::choose`]) and a FailedScheduling event, and is tried again when a
//! node or a pod changes, and at least every [`UNSCHEDULABLE_RETRY`].

pub mod fit;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use skiff_model::core::ObjectReference;
use skiff_model::{Node, Pod, Time};
use skiff_runtime::{
    Action, Cache, EventRecorder, EventType, Informer, Notice, Reconcile, Registry, RegistryError,
    WorkQueue,
};

use fit::{NodeState, Placed};

/// Bindings written at once: the decisions are made one at a time, and
/// their writes to the store go on while the next pods are decided.
pub const MAX_BINDS_IN_FLIGHT: usize = 128;

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
    nodes: Cache,
    events: EventRecorder,
    /// Pods bound by this scheduler whose binding the pod copy may not show
    /// yet: key → the pod as bound.
    assumed: Arc<Mutex<HashMap<String, Pod>>>,
    /// Bindings in flight, at most [`MAX_BINDS_IN_FLIGHT`].
    binds: Arc<tokio::sync::Semaphore>,
    /// The scheduler's own queue, to try a pod again whose binding failed.
    queue: Arc<WorkQueue<String>>,
    /// Nodes and bound pods decoded from the copies, by uid, kept while
    /// their resourceVersion stays: each version is decoded once, not once
    /// per decision.
    decoded: Mutex<Decoded>,
}

#[derive(Debug, Default)]
struct Decoded {
    nodes: HashMap<String, (String, Arc<Node>)>,
    pods: HashMap<String, (String, Arc<Placed>)>,
}

/// The decoded form of `v` from `cache` if its resourceVersion is the one
/// decoded; else decodes it and keeps it. Marks its uid as `seen`.
fn cached<T, E>(
    cache: &mut HashMap<String, (String, Arc<T>)>,
    v: &Value,
    seen: &mut HashSet<String>,
    decode: impl FnOnce(&Value) -> Result<T, E>,
) -> Result<Arc<T>, E> {
    let uid = v["metadata"]["uid"].as_str().unwrap_or("");
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or("");
    seen.insert(uid.to_string());
    if let Some((cached_rv, t)) = cache.get(uid)
        && cached_rv == rv
        && !rv.is_empty()
    {
        return Ok(t.clone());
    }
    let t = Arc::new(decode(v)?);
    cache.insert(uid.to_string(), (rv.to_string(), t.clone()));
    Ok(t)
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler writing through `registry` (fenced by the leader's
    /// election), reading `pods` and `nodes`.
    pub fn new(
        registry: Registry,
        pods: Cache,
        nodes: Cache,
        events: EventRecorder,
        queue: Arc<WorkQueue<String>>,
    ) -> Self {
        Scheduler {
            registry,
            pods,
            nodes,
            events,
            assumed: Arc::default(),
            binds: Arc::new(tokio::sync::Semaphore::new(MAX_BINDS_IN_FLIGHT)),
            queue,
            decoded: Mutex::default(),
        }
    }

    /// Connects the informers to the queue: a pending pod is queued when it
    /// appears or changes; every pending pod is queued again when a node
    /// changes or a bound pod goes (room may have been made).
    pub fn wire(pods: &mut Informer, nodes: &mut Informer, queue: &Arc<WorkQueue<String>>) {
        let pods_cache = pods.cache();
        let q = queue.clone();
        let cache = pods_cache.clone();
        pods.on_change(move |notice| match notice {
            Notice::Upsert { key, new, .. } | Notice::Resync { key, object: new } => {
                if is_pending(new) {
                    q.add(key.to_string());
                }
            }
            Notice::Delete { old, .. } => {
                if !is_pending(old) {
                    requeue_pending(&cache, &q);
                }
            }
        });
        let q = queue.clone();
        nodes.on_change(move |_| requeue_pending(&pods_cache, &q));
    }

    fn node_states(&self) -> anyhow::Result<Vec<NodeState>> {
        let mut decoded = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        let Decoded { nodes, pods } = &mut *decoded;
        let mut states: Vec<NodeState> = Vec::new();
        let mut index = HashMap::new();
        let mut seen = HashSet::new();
        for v in self.nodes.list() {
            let node = cached(nodes, &v, &mut seen, |v| {
                serde_json::from_value::<Node>(v.clone()).context("a node")
            })?;
            index.insert(node.metadata.name.clone(), states.len());
            states.push(NodeState::new((*node).clone()));
        }
        nodes.retain(|uid, _| seen.contains(uid));
        seen.clear();
        let mut assumed = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        // An assumed pod is forgotten once its copy shows the binding, or
        // once it is gone.
        assumed.retain(|key, _| {
            self.pods
                .get(key)
                .is_some_and(|v| v["spec"]["nodeName"].as_str().is_none_or(str::is_empty))
        });
        let mut count = |placed: &Placed| {
            if let Some(&i) = placed.node.as_ref().and_then(|n| index.get(n)) {
                states[i].add(placed);
            }
        };
        for v in self.pods.list() {
            if v["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                match cached(pods, &v, &mut seen, |v| {
                    serde_json::from_value::<Pod>(v.clone()).map(|p| Placed::of(&p))
                }) {
                    Ok(placed) => count(&placed),
                    Err(e) => tracing::warn!(error = %e, "a pod that does not decode"),
                }
            }
        }
        pods.retain(|uid, _| seen.contains(uid));
        for pod in assumed.values() {
            count(&Placed::of(pod));
        }
        Ok(states)
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

/// Binds the pod at `key` to `node` with a compare-and-swap: `true` when
/// this write bound it, `false` when it was bound already or is gone.
async fn bind(registry: &Registry, key: &str, node: &str) -> Result<bool, RegistryError> {
    let now = Time::now();
    let stored = registry
        .update_with::<RegistryError>(key, |current| {
            if !is_pending(&current.value) {
                return Ok(None);
            }
            let mut next = current.value.clone();
            next["spec"]["nodeName"] = node.into();
            set_condition(&mut next, "PodScheduled", "True", None, None, &now);
            Ok(Some(next))
        })
        .await;
    match stored {
        Ok(stored) => Ok(stored.value["spec"]["nodeName"] == node),
        Err(RegistryError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
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
        if !is_pending(&value)
            || self
                .assumed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(key)
        {
            return Ok(Action::Done);
        }
        let pod: Pod = serde_json::from_value((*value).clone()).context("decoding the pod")?;
        let nodes = self.node_states()?;
        match fit::choose(&pod, &nodes) {
            Ok(node) => {
                // Counted on its node at once; the write goes on while the
                // next pods are decided.
                let mut as_bound = pod.clone();
                as_bound.spec.node_name = Some(node.clone());
                self.assumed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.to_string(), as_bound);
                let permit = self
                    .binds
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let registry = self.registry.clone();
                let events = self.events.clone();
                let assumed = self.assumed.clone();
                let queue = self.queue.clone();
                let key = key.to_string();
                let involved = reference(&pod);
                let message = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.metadata.namespace, pod.metadata.name
                );
                tokio::spawn(async move {
                    let _permit = permit;
                    let forget = || {
                        assumed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                    };
                    match bind(&registry, &key, &node).await {
                        Ok(true) => {
                            tracing::info!(pod = %key, %node, "bound");
                            if let Err(e) = events
                                .record(&involved, EventType::Normal, "Scheduled", &message)
                                .await
                            {
                                tracing::warn!(pod = %key, error = %e, "recording the Scheduled event failed");
                            }
                        }
                        // Bound by someone else, or gone: nothing to do.
                        Ok(false) => forget(),
                        Err(e) => {
                            tracing::warn!(pod = %key, %node, error = %e, "binding failed; trying again");
                            forget();
                            queue.add_failed(key);
                        }
                    }
                });
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
