//! The ReplicaSet and ReplicationController controller: keeps `replicas`
//! pods matching the selector, created from the template and owned by the
//! controller.
//!
//! Per reconcile of one owner, from the informer copies:
//! - matching pods with no controller are adopted (an owner reference is
//!   added), owned pods that no longer match are released;
//! - too few active pods: new ones are created from the template, in
//!   batches of 1, 2, 4, ... that stop at the first error (Kubernetes'
//!   slow start, so that a template the API refuses costs one request, not
//!   a hundred);
//! - too many: the extra ones are deleted, unscheduled first, then pending,
//!   then not ready, then the newest;
//! - the status (replicas, fullyLabeledReplicas, readyReplicas,
//!   availableReplicas, observedGeneration) is written when it changed.
//!
//! The copies lag this controller's own writes, so it remembers what it
//! expects to see (pods created, pods deleted) and decides nothing for an
//! owner until the copies show it, or [`EXPECTATION_TIMEOUT`] has passed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use skiff_model::core::ObjectReference;
use skiff_model::labels::Selector;
use skiff_model::{ReplicaSet, ReplicationController, ResourceInfo, Time, resources};
use skiff_runtime::{
    Action, Cache, Informer, Notice, Reconcile, Registry, RegistryError, Stamp, WorkQueue,
};
use skiff_runtime::{EventRecorder, EventType};
use tokio::time::Instant;

use super::labels_of;
use crate::api::objects;

/// How long unmet expectations hold back decisions about an owner.
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The most pods created or deleted in one reconcile.
pub const MAX_BURST: usize = 500;

/// Which kind of owner a controller keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    ReplicaSet,
    ReplicationController,
}

impl OwnerKind {
    pub fn resource(self) -> &'static ResourceInfo {
        resources::lookup(match self {
            OwnerKind::ReplicaSet => "replicasets",
            OwnerKind::ReplicationController => "replicationcontrollers",
        })
        .expect("a known resource")
    }

    fn kind(self) -> &'static str {
        self.resource().kind
    }
}

/// `group/version`, or `version` for the core group.
pub fn api_version(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        r.version.to_string()
    } else {
        format!("{}/{}", r.group, r.version)
    }
}

/// An owner as this controller needs it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub kind: OwnerKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub replicas: usize,
    pub generation: i64,
    pub selector: Selector,
    /// `spec.template`.
    pub template: Value,
    pub deleting: bool,
}

impl Owner {
    pub fn decode(kind: OwnerKind, v: &Value) -> anyhow::Result<Owner> {
        let (meta, replicas, selector, template) = match kind {
            OwnerKind::ReplicaSet => {
                let rs: ReplicaSet = serde_json::from_value(v.clone()).context("a ReplicaSet")?;
                let selector = rs
                    .spec
                    .selector
                    .as_ref()
                    .map(|s| s.to_selector())
                    .transpose()
                    .map_err(|e| anyhow!("spec.selector: {e}"))?
                    .unwrap_or_else(Selector::everything);
                (
                    rs.metadata,
                    rs.spec.replicas,
                    selector,
                    v["spec"]["template"].clone(),
                )
            }
            OwnerKind::ReplicationController => {
                let rc: ReplicationController =
                    serde_json::from_value(v.clone()).context("a ReplicationController")?;
                let selector = Selector::from_labels(&rc.spec.selector)
                    .map_err(|e| anyhow!("spec.selector: {e}"))?;
                (
                    rc.metadata,
                    rc.spec.replicas,
                    selector,
                    v["spec"]["template"].clone(),
                )
            }
        };
        Ok(Owner {
            kind,
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            replicas: replicas.unwrap_or(1).max(0) as usize,
            generation: meta.generation.unwrap_or(0),
            selector,
            template,
            deleting: meta.deletion_timestamp.is_some(),
        })
    }

    fn owner_reference(&self) -> Value {
        json!({
            "apiVersion": api_version(self.kind.resource()),
            "kind": self.kind.kind(),
            "name": self.name,
            "uid": self.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }
}

/// The uid of a pod's controller.
pub fn controller_of(pod: &Value) -> Option<(&str, &str)> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or(""),
                o["uid"].as_str().unwrap_or(""),
            )
        })
}

fn is_active(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str();
    pod["metadata"]["deletionTimestamp"].is_null() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn condition_true(pod: &Value, type_: &str) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// The order in which extra pods go: unscheduled, then pending, then not
/// ready, then the newest.
pub fn deletion_rank(pod: &Value) -> (bool, bool, bool, std::cmp::Reverse<String>) {
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let running = pod["status"]["phase"] == "Running";
    let ready = condition_true(pod, "Ready");
    let created = pod["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (scheduled, running, ready, std::cmp::Reverse(created))
}

/// The status an owner should show for its active owned pods.
pub fn status_for(owner: &Owner, owned: &[Arc<Value>]) -> Value {
    let replicas = owned.len();
    let fully_labeled = owned
        .iter()
        .filter(|p| owner.selector.matches(&labels_of(p)))
        .count();
    let ready = owned.iter().filter(|p| condition_true(p, "Ready")).count();
    json!({
        "replicas": replicas,
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": owner.generation,
    })
}

/// The pod to create for `owner` (before the API's stamping).
pub fn pod_from_template(owner: &Owner) -> Value {
    let t = &owner.template;
    let mut metadata = json!({
        "generateName": format!("{}-", owner.name),
        "namespace": owner.namespace,
        "ownerReferences": [owner.owner_reference()],
    });
    for field in ["labels", "annotations"] {
        if t["metadata"][field].is_object() {
            metadata[field] = t["metadata"][field].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": t["spec"].clone()})
}

#[derive(Debug)]
struct Expectation {
    /// Pods created that the copy does not show yet.
    adds: HashSet<String>,
    /// Pods deleted that the copy still shows as active.
    deletes: HashSet<String>,
    since: Instant,
}

/// One controller for one [`OwnerKind`].
pub struct ReplicaController {
    kind: OwnerKind,
    registry: Registry,
    owners: Cache,
    pods: Cache,
    events: EventRecorder,
    expectations: Mutex<HashMap<String, Expectation>>,
}

impl std::fmt::Debug for ReplicaController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaController")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn pod_key(pod: &Value) -> Option<String> {
    let meta = &pod["metadata"];
    resources::lookup("pods")?
        .key(meta["namespace"].as_str()?, meta["name"].as_str()?)
        .ok()
}

impl ReplicaController {
    pub fn new(
        kind: OwnerKind,
        registry: Registry,
        owners: Cache,
        pods: Cache,
        events: EventRecorder,
    ) -> Self {
        ReplicaController {
            kind,
            registry,
            owners,
            pods,
            events,
            expectations: Mutex::default(),
        }
    }

    /// Records `reason` on the owner; a failure to record is logged only.
    async fn event(&self, owner: &Owner, type_: EventType, reason: &str, message: &str) {
        let involved = ObjectReference {
            kind: self.kind.kind().to_string(),
            namespace: owner.namespace.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            api_version: api_version(self.kind.resource()),
            ..ObjectReference::default()
        };
        if let Err(e) = self.events.record(&involved, type_, reason, message).await {
            tracing::warn!(owner = %owner.name, reason, error = %e, "recording an event failed");
        }
    }

    /// Queues an owner when it changes, and when one of its pods (or a pod
    /// it might adopt) changes.
    pub fn wire(
        kind: OwnerKind,
        owners: &mut Informer,
        pods: &mut Informer,
        queue: &Arc<WorkQueue<String>>,
    ) {
        let q = queue.clone();
        owners.on_change(move |notice| q.add(notice.key().to_string()));
        let q = queue.clone();
        let owner_cache = owners.cache();
        let resource = kind.resource();
        pods.on_change(move |notice| {
            let pod = notice.object();
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
            match controller_of(pod) {
                Some((k, uid)) if k == resource.kind => {
                    for o in owner_cache.filter(|o| o["metadata"]["uid"] == uid) {
                        if let Ok(key) =
                            resource.key(ns, o["metadata"]["name"].as_str().unwrap_or(""))
                        {
                            q.add(key);
                        }
                    }
                }
                Some(_) => {}
                None if matches!(notice, Notice::Upsert { .. }) => {
                    // An orphan: every owner whose selector matches may adopt it.
                    let labels = labels_of(pod);
                    for o in owner_cache.filter(|o| o["metadata"]["namespace"] == ns) {
                        if Owner::decode(kind, &o)
                            .is_ok_and(|owner| owner.selector.matches(&labels))
                            && let Ok(key) =
                                resource.key(ns, o["metadata"]["name"].as_str().unwrap_or(""))
                        {
                            q.add(key);
                        }
                    }
                }
                None => {}
            }
        });
    }

    /// Whether the copies show what this controller last did to `key`.
    fn satisfied(&self, key: &str) -> bool {
        let mut all = self.expectations.lock().unwrap_or_else(|e| e.into_inner());
        let Some(exp) = all.get_mut(key) else {
            return true;
        };
        exp.adds.retain(|k| self.pods.get(k).is_none());
        exp.deletes
            .retain(|k| self.pods.get(k).is_some_and(|p| is_active(&p)));
        if (exp.adds.is_empty() && exp.deletes.is_empty())
            || exp.since.elapsed() > EXPECTATION_TIMEOUT
        {
            all.remove(key);
            return true;
        }
        false
    }

    fn expect(&self, key: &str, adds: HashSet<String>, deletes: HashSet<String>) {
        if adds.is_empty() && deletes.is_empty() {
            return;
        }
        self.expectations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_string(),
                Expectation {
                    adds,
                    deletes,
                    since: Instant::now(),
                },
            );
    }

    async fn create_pods(
        &self,
        owner: &Owner,
        count: usize,
    ) -> (HashSet<String>, Option<anyhow::Error>) {
        let pods = resources::lookup("pods").expect("pods are a resource");
        let mut created = HashSet::new();
        let mut batch = 1;
        let mut left = count.min(MAX_BURST);
        while left > 0 {
            let n = batch.min(left);
            for _ in 0..n {
                let body = pod_from_template(owner);
                let prepared =
                    match objects::prepare_create(pods, &owner.namespace, &body, &Stamp::now()) {
                        Ok(p) => p,
                        Err(e) => {
                            return (
                                created,
                                Some(anyhow!("the template makes an invalid pod: {e}")),
                            );
                        }
                    };
                let name = prepared["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let key = match pods.key(&owner.namespace, &name) {
                    Ok(k) => k,
                    Err(e) => return (created, Some(anyhow!("pod key: {e}"))),
                };
                match self.registry.create(&key, &prepared).await {
                    Ok(_) => {
                        tracing::info!(owner = %owner.name, pod = %name, "created pod");
                        self.event(
                            owner,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await;
                        created.insert(key);
                    }
                    Err(RegistryError::AlreadyExists) => {}
                    Err(e) => {
                        self.event(
                            owner,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                        return (created, Some(e.into()));
                    }
                }
            }
            left -= n;
            batch *= 2;
        }
        (created, None)
    }

    async fn delete_pod(&self, key: &str) -> Result<(), RegistryError> {
        for _ in 0..skiff_runtime::registry::MAX_UPDATE_ATTEMPTS {
            let current = match self.registry.get(key).await {
                Err(RegistryError::NotFound) => return Ok(()),
                other => other?,
            };
            let result = match objects::mark_terminating_pod(&current.value, None, Time::now()) {
                Some(marked) => self
                    .registry
                    .update(key, &marked, current.mod_revision)
                    .await
                    .map(|_| ()),
                None => self
                    .registry
                    .delete(key, current.mod_revision)
                    .await
                    .map(|_| ()),
            };
            match result {
                Err(RegistryError::Conflict) => continue,
                Err(RegistryError::NotFound) => return Ok(()),
                other => return other,
            }
        }
        Err(RegistryError::Conflict)
    }

    /// Adds or removes this owner's controller reference on a pod.
    async fn set_owner(&self, key: &str, owner: &Owner, adopt: bool) -> Result<(), RegistryError> {
        self.registry
            .update_with::<RegistryError>(key, |current| {
                let mut next = current.value.clone();
                let refs = next["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let has_controller = refs.iter().any(|o| o["controller"] == true);
                let ours = refs.iter().any(|o| o["uid"] == owner.uid.as_str());
                let refs: Vec<Value> = if adopt {
                    if has_controller || !is_active(&next) {
                        return Ok(None);
                    }
                    refs.into_iter().chain([owner.owner_reference()]).collect()
                } else {
                    if !ours {
                        return Ok(None);
                    }
                    refs.into_iter()
                        .filter(|o| o["uid"] != owner.uid.as_str())
                        .collect()
                };
                next["metadata"]["ownerReferences"] = Value::Array(refs);
                Ok(Some(next))
            })
            .await
            .map(|_| ())
    }
}

impl Reconcile for ReplicaController {
    fn name(&self) -> &str {
        match self.kind {
            OwnerKind::ReplicaSet => "replicaset",
            OwnerKind::ReplicationController => "replicationcontroller",
        }
    }

    async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
        let Some(value) = self.owners.get(key) else {
            self.expectations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            return Ok(Action::Done);
        };
        let owner = Owner::decode(self.kind, &value)?;
        if owner.deleting {
            return Ok(Action::Done);
        }
        let in_namespace = self
            .pods
            .filter(|p| p["metadata"]["namespace"] == owner.namespace.as_str());
        let mut owned: Vec<Arc<Value>> = Vec::new();
        for pod in &in_namespace {
            let labels = labels_of(pod);
            let pkey = pod_key(pod).unwrap_or_default();
            match controller_of(pod) {
                Some((_, uid)) if uid == owner.uid => {
                    if owner.selector.matches(&labels) {
                        owned.push(pod.clone());
                    } else if is_active(pod) {
                        self.set_owner(&pkey, &owner, false).await?;
                    }
                }
                None if is_active(pod) && owner.selector.matches(&labels) => {
                    self.set_owner(&pkey, &owner, true).await?;
                    tracing::info!(owner = %owner.name, pod = %pkey, "adopted pod");
                    owned.push(pod.clone());
                }
                _ => {}
            }
        }
        let mut active: Vec<Arc<Value>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
        let mut result = Ok(Action::Done);
        if self.satisfied(key) {
            if active.len() < owner.replicas {
                let (created, error) = self
                    .create_pods(&owner, owner.replicas - active.len())
                    .await;
                self.expect(key, created, HashSet::new());
                if let Some(e) = error {
                    result = Err(e);
                }
            } else if active.len() > owner.replicas {
                active.sort_by_key(|p| deletion_rank(p));
                let extra: Vec<String> = active
                    .iter()
                    .take((active.len() - owner.replicas).min(MAX_BURST))
                    .filter_map(|p| pod_key(p))
                    .collect();
                let mut deleted = HashSet::new();
                for pkey in extra {
                    self.delete_pod(&pkey).await?;
                    tracing::info!(owner = %owner.name, pod = %pkey, "deleted extra pod");
                    let name = pkey.rsplit('/').next().unwrap_or("");
                    self.event(
                        &owner,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await;
                    deleted.insert(pkey);
                }
                self.expect(key, HashSet::new(), deleted);
            }
        } else {
            // The pod events that meet the expectations queue this owner
            // again; the delay is a backstop.
            result = Ok(Action::RequeueAfter(Duration::from_secs(5)));
        }
        let active_now: Vec<Arc<Value>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
        let status = status_for(&owner, &active_now);
        let written = self
            .registry
            .update_with::<RegistryError>(key, |current| {
                let mut next = current.value.clone();
                let mut merged = next["status"].as_object().cloned().unwrap_or_default();
                for (k, v) in status.as_object().expect("an object") {
                    merged.insert(k.clone(), v.clone());
                }
                let merged = Value::Object(merged);
                if next["status"] == merged {
                    return Ok(None);
                }
                next["status"] = merged;
                Ok(Some(next))
            })
            .await;
        match written {
            Ok(_) | Err(RegistryError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 3},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}})
    }

    #[test]
    fn owners_decode_with_their_selector() {
        let o = Owner::decode(OwnerKind::ReplicaSet, &rs(3)).unwrap();
        assert_eq!(o.replicas, 3);
        assert!(
            o.selector
                .matches(&[("app".to_string(), "web".to_string())].into())
        );
        let rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "u"},
            "spec": {"replicas": 2, "selector": {"app": "nginx"},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": []}}}});
        let o = Owner::decode(OwnerKind::ReplicationController, &rc).unwrap();
        assert_eq!(o.replicas, 2);
        assert_eq!(o.owner_reference()["kind"], "ReplicationController");
        assert_eq!(o.owner_reference()["apiVersion"], "v1");
    }

    #[test]
    fn pods_from_the_template_are_owned_and_valid() {
        let o = Owner::decode(OwnerKind::ReplicaSet, &rs(1)).unwrap();
        let body = pod_from_template(&o);
        let pods = resources::lookup("pods").unwrap();
        let stamp = Stamp {
            uid: "11111111-1111-4111-8111-111111111111".into(),
            now: "2026-12-01T10:00:00Z".into(),
            suffix: "abcde".into(),
        };
        let p = objects::prepare_create(pods, "default", &body, &stamp).unwrap();
        assert_eq!(p["metadata"]["name"], "web-abcde");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(controller_of(&p), Some(("ReplicaSet", "rs-uid")));
        assert_eq!(p["metadata"]["ownerReferences"][0]["apiVersion"], "apps/v1");
        assert_eq!(p["spec"]["restartPolicy"], "Always", "defaulted");
        let _: skiff_model::Pod = serde_json::from_value(p).unwrap();
    }

    #[test]
    fn extras_go_unscheduled_then_pending_then_unready_then_newest() {
        let pod = |name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created},
                "spec": {"nodeName": node},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
        };
        let mut pods = [
            pod(
                "old-ready",
                Some("n"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "new-ready",
                Some("n"),
                "Running",
                true,
                "2026-02-01T00:00:00Z",
            ),
            pod(
                "unready",
                Some("n"),
                "Running",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "pending",
                Some("n"),
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
        ];
        pods.sort_by_key(deletion_rank);
        let order: Vec<&str> = pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "unready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn status_counts_ready_pods() {
        let o = Owner::decode(OwnerKind::ReplicaSet, &rs(2)).unwrap();
        let ready = Arc::new(json!({"metadata": {"labels": {"app": "web"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        let starting = Arc::new(json!({"metadata": {"labels": {"app": "web"}}, "status": {}}));
        let s = status_for(&o, &[ready, starting]);
        assert_eq!(
            s,
            json!({"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
            "availableReplicas": 1, "observedGeneration": 3})
        );
    }
}
