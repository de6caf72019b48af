//! The Deployment controller: one ReplicaSet per pod template (named by the
//! template's hash), rolled from the old ones to the new one.
//!
//! - RollingUpdate (the default): the new ReplicaSet grows while the total
//!   stays within `replicas + maxSurge`, and old ones shrink while at least
//!   `replicas - maxUnavailable` pods stay available (both 25% by default;
//!   surge rounds up, unavailable down; both 0 means one unavailable).
//! - Recreate: old ReplicaSets go to zero, and the new one grows once their
//!   pods are gone.
//! - Revisions: each ReplicaSet carries `deployment.kubernetes.io/revision`;
//!   a template that matches an old ReplicaSet (a rollback) brings that
//!   ReplicaSet back with the next revision. At most
//!   `revisionHistoryLimit` (10) old ReplicaSets with no replicas are kept.
//! - Status: replicas, updatedReplicas, readyReplicas, availableReplicas,
//!   unavailableReplicas, observedGeneration, and the conditions Available
//!   and Progressing (NewReplicaSetAvailable when done,
//!   ProgressDeadlineExceeded after `progressDeadlineSeconds` without
//!   progress).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skiff_model::core::ObjectReference;
use skiff_model::{Deployment, IntOrString, Time, resources};
use skiff_runtime::{
    Action, Cache, Informer, Reconcile, Registry, RegistryError, Stamp, WorkQueue,
};
use skiff_runtime::{EventRecorder, EventType};

use super::replicas::{api_version, controller_of};
use crate::api::objects;
use crate::scheduler::set_condition;

/// The label and selector key that tells the ReplicaSets of a Deployment
/// apart.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The annotation with a ReplicaSet's (and its Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// How often a rollout in progress is looked at without a change (to
/// notice the progress deadline).
const PROGRESS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The hash of a pod template, as the ReplicaSet name suffix and label.
pub fn template_hash(template: &Value) -> String {
    let bytes = serde_json::to_vec(template).expect("JSON serializes");
    let digest = Sha256::digest(&bytes);
    // Kubernetes' alphabet for safe names: no vowels, no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    digest[..10]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A template without the hash label, to compare a ReplicaSet's template
/// with the Deployment's.
pub fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    t
}

/// A ReplicaSet as the rollout sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rs {
    pub key: String,
    pub name: String,
    pub replicas: i32,
    pub available: i32,
    pub ready: i32,
    pub status_replicas: i32,
    pub revision: i64,
    pub created: String,
}

impl Rs {
    fn from_value(key: String, v: &Value) -> Rs {
        let int = |v: &Value| v.as_i64().unwrap_or(0) as i32;
        Rs {
            key,
            name: v["metadata"]["name"].as_str().unwrap_or("").to_string(),
            replicas: v["spec"]["replicas"].as_i64().map_or(1, |r| r as i32),
            available: int(&v["status"]["availableReplicas"]),
            ready: int(&v["status"]["readyReplicas"]),
            status_replicas: int(&v["status"]["replicas"]),
            revision: v["metadata"]["annotations"][REVISION]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            created: v["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        }
    }
}

/// maxSurge and maxUnavailable of a RollingUpdate Deployment as counts
/// (25% each by default); `None` for Recreate.
pub fn rolling_limits(d: &Deployment, replicas: i32) -> Option<(i32, i32)> {
    let strategy = d.spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return None;
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    Some(surge_and_unavailable(
        replicas,
        rolling
            .and_then(|r| r.max_surge.as_ref())
            .unwrap_or(&quarter),
        rolling
            .and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter),
    ))
}

/// maxSurge and maxUnavailable as counts.
pub fn surge_and_unavailable(
    replicas: i32,
    surge: &IntOrString,
    unavailable: &IntOrString,
) -> (i32, i32) {
    let surge = surge.scaled_value(replicas, true).unwrap_or(1);
    let mut unavailable = unavailable.scaled_value(replicas, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// The next replica counts of a rolling update: `(key, replicas)` to set.
pub fn rolling_step(
    replicas: i32,
    surge: i32,
    unavailable: i32,
    new: &Rs,
    olds: &[Rs],
) -> Vec<(String, i32)> {
    let total: i32 = new.replicas + olds.iter().map(|r| r.replicas).sum::<i32>();
    if olds.iter().all(|o| o.replicas == 0) {
        // Nothing to roll from: the new ReplicaSet simply has the count.
        return if new.replicas != replicas {
            vec![(new.key.clone(), replicas)]
        } else {
            vec![]
        };
    }
    if new.replicas < replicas {
        let room = replicas + surge - total;
        if room > 0 {
            return vec![(new.key.clone(), replicas.min(new.replicas + room))];
        }
    }
    let min_available = replicas - unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let mut budget = total - min_available - new_unavailable;
    if budget <= 0 {
        return Vec::new();
    }
    let mut steps = Vec::new();
    let mut olds: Vec<&Rs> = olds.iter().filter(|o| o.replicas > 0).collect();
    // Pods that are not available go first: they cost no availability.
    for old in &olds {
        let unhealthy = (old.replicas - old.available).max(0).min(budget);
        if unhealthy > 0 {
            budget -= unhealthy;
            steps.push((old.key.clone(), old.replicas - unhealthy));
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    olds.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    for old in olds {
        if budget <= 0 {
            break;
        }
        let cut = old.replicas.min(budget);
        budget -= cut;
        steps.push((old.key.clone(), old.replicas - cut));
    }
    steps
}

/// The Deployment controller.
pub struct DeploymentController {
    registry: Registry,
    events: EventRecorder,
    deployments: Cache,
    replicasets: Cache,
    pods: Cache,
}

impl std::fmt::Debug for DeploymentController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentController")
            .finish_non_exhaustive()
    }
}

fn rs_resource() -> &'static skiff_model::ResourceInfo {
    resources::lookup("replicasets").expect("a known resource")
}

impl DeploymentController {
    pub fn new(
        registry: Registry,
        events: EventRecorder,
        deployments: Cache,
        replicasets: Cache,
        pods: Cache,
    ) -> Self {
        DeploymentController {
            registry,
            events,
            deployments,
            replicasets,
            pods,
        }
    }

    /// Queues a Deployment when it changes and when one of its
    /// ReplicaSets changes.
    pub fn wire(
        deployments: &mut Informer,
        replicasets: &mut Informer,
        queue: &Arc<WorkQueue<String>>,
    ) {
        let q = queue.clone();
        deployments.on_change(move |n| q.add(n.key().to_string()));
        let q = queue.clone();
        let cache = deployments.cache();
        replicasets.on_change(move |n| {
            let rs = n.object();
            if let Some(("Deployment", uid)) = controller_of(rs) {
                let ns = rs["metadata"]["namespace"].as_str().unwrap_or("");
                for d in cache.filter(|d| d["metadata"]["uid"] == uid) {
                    let name = d["metadata"]["name"].as_str().unwrap_or("");
                    if let Ok(key) = resources::lookup("deployments")
                        .expect("known")
                        .key(ns, name)
                    {
                        q.add(key);
                    }
                }
            }
        });
    }

    async fn set_replicas(
        &self,
        key: &str,
        replicas: i32,
        revision: Option<i64>,
    ) -> Result<(), RegistryError> {
        let written = self
            .registry
            .update_with::<RegistryError>(key, |current| {
                let mut next = current.value.clone();
                let mut changed = false;
                if next["spec"]["replicas"].as_i64() != Some(i64::from(replicas)) {
                    next["spec"]["replicas"] = replicas.into();
                    let generation = next["metadata"]["generation"].as_i64().unwrap_or(0);
                    next["metadata"]["generation"] = (generation + 1).into();
                    changed = true;
                }
                if let Some(r) = revision
                    && next["metadata"]["annotations"][REVISION].as_str() != Some(&r.to_string())
                {
                    if !next["metadata"]["annotations"].is_object() {
                        next["metadata"]["annotations"] = json!({});
                    }
                    next["metadata"]["annotations"][REVISION] = r.to_string().into();
                    changed = true;
                }
                Ok(changed.then_some(next))
            })
            .await;
        match written {
            Ok(_) | Err(RegistryError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets a ReplicaSet's replicas, with Kubernetes' ScalingReplicaSet
    /// event on the Deployment.
    async fn scale(&self, d: &Deployment, rs: &Rs, to: i32) -> Result<(), RegistryError> {
        self.set_replicas(&rs.key, to, None).await?;
        self.scaling_event(d, rs, to).await;
        Ok(())
    }

    /// Kubernetes' ScalingReplicaSet event, when `rs` goes to `to`.
    async fn scaling_event(&self, d: &Deployment, rs: &Rs, to: i32) {
        if rs.replicas != to {
            let direction = if to > rs.replicas { "up" } else { "down" };
            let involved = ObjectReference {
                kind: "Deployment".into(),
                namespace: d.metadata.namespace.clone(),
                name: d.metadata.name.clone(),
                uid: d.metadata.uid.clone(),
                api_version: "apps/v1".into(),
                ..ObjectReference::default()
            };
            let message = format!(
                "Scaled {direction} replica set {} from {} to {to}",
                rs.name, rs.replicas
            );
            if let Err(e) = self
                .events
                .record(&involved, EventType::Normal, "ScalingReplicaSet", &message)
                .await
            {
                tracing::warn!(deployment = %d.metadata.name, error = %e, "recording ScalingReplicaSet failed");
            }
        }
    }

    /// Creates the ReplicaSet of the Deployment's current template.
    async fn create_rs(
        &self,
        d: &Value,
        hash: &str,
        replicas: i32,
        revision: i64,
    ) -> anyhow::Result<String> {
        let meta = &d["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("");
        let name = format!("{}-{hash}", meta["name"].as_str().unwrap_or(""));
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"][HASH_LABEL] = hash.into();
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = hash.into();
        let deployments = resources::lookup("deployments").expect("known");
        let body = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": template["metadata"]["labels"].clone(),
                "annotations": {REVISION: revision.to_string()},
                "ownerReferences": [{"apiVersion": api_version(deployments), "kind": "Deployment",
                    "name": meta["name"], "uid": meta["uid"], "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"replicas": replicas, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                "selector": selector, "template": template},
        });
        let prepared = objects::prepare_create(rs_resource(), ns, &body, &Stamp::now())
            .map_err(|e| anyhow!("the ReplicaSet for the template is invalid: {e}"))?;
        let key = rs_resource().key(ns, &name).map_err(|e| anyhow!("{e}"))?;
        match self.registry.create(&key, &prepared).await {
            Ok(_) => {
                tracing::info!(deployment = %meta["name"], replicaset = %name, revision, "created ReplicaSet");
                Ok(key)
            }
            Err(RegistryError::AlreadyExists) => Ok(key),
            Err(e) => Err(e.into()),
        }
    }

    fn old_pods_active(&self, ns: &str, olds: &[Rs]) -> usize {
        let uids: Vec<String> = olds
            .iter()
            .filter_map(|o| self.replicasets.get(&o.key))
            .filter_map(|v| v["metadata"]["uid"].as_str().map(str::to_string))
            .collect();
        self.pods
            .filter(|p| {
                p["metadata"]["namespace"] == ns
                    && controller_of(p).is_some_and(|(_, uid)| uids.iter().any(|u| u == uid))
            })
            .len()
    }
}

impl Reconcile for DeploymentController {
    fn name(&self) -> &str {
        "deployment"
    }

    async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
        let Some(value) = self.deployments.get(key) else {
            return Ok(Action::Done);
        };
        let d: Deployment = serde_json::from_value((*value).clone()).context("a Deployment")?;
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let ns = d.metadata.namespace.clone();
        let replicas = d.spec.replicas.unwrap_or(1);
        let limits = rolling_limits(&d, replicas);
        let template = value["spec"]["template"].clone();
        let hash = template_hash(&without_hash(&template));
        let owned: Vec<(String, Arc<Value>)> = self
            .replicasets
            .filter(|rs| {
                rs["metadata"]["namespace"] == ns.as_str()
                    && controller_of(rs) == Some(("Deployment", &d.metadata.uid))
            })
            .into_iter()
            .filter_map(|rs| {
                let name = rs["metadata"]["name"].as_str()?;
                Some((rs_resource().key(&ns, name).ok()?, rs))
            })
            .collect();
        let max_revision = owned
            .iter()
            .map(|(k, v)| Rs::from_value(k.clone(), v).revision)
            .max()
            .unwrap_or(0);
        let current = owned
            .iter()
            .find(|(_, rs)| without_hash(&rs["spec"]["template"]) == without_hash(&template));
        let (new, olds): (Rs, Vec<Rs>) = match current {
            Some((k, v)) => {
                let new = Rs::from_value(k.clone(), v);
                let olds = owned
                    .iter()
                    .filter(|(ok, _)| ok != k)
                    .map(|(k, v)| Rs::from_value(k.clone(), v))
                    .collect();
                if new.revision < max_revision {
                    // A rollback to this template: it becomes the newest revision.
                    self.set_replicas(&new.key, new.replicas, Some(max_revision + 1))
                        .await?;
                }
                (new, olds)
            }
            None => {
                let olds: Vec<Rs> = owned
                    .iter()
                    .map(|(k, v)| Rs::from_value(k.clone(), v))
                    .collect();
                let start = if olds.iter().all(|o| o.replicas == 0) && limits.is_some() {
                    replicas
                } else {
                    0
                };
                let key = self
                    .create_rs(&value, &hash, start, max_revision + 1)
                    .await?;
                if start > 0 {
                    let created = Rs {
                        key: key.clone(),
                        name: key.rsplit('/').next().unwrap_or("").to_string(),
                        replicas: 0,
                        available: 0,
                        ready: 0,
                        status_replicas: 0,
                        revision: max_revision + 1,
                        created: String::new(),
                    };
                    self.scaling_event(&d, &created, start).await;
                }
                // The new ReplicaSet's own event brings the Deployment back.
                return Ok(Action::Done);
            }
        };

        if !d.spec.paused {
            if let Some((surge, unavailable)) = limits {
                for (k, n) in rolling_step(replicas, surge, unavailable, &new, &olds) {
                    let rs = std::iter::once(&new)
                        .chain(olds.iter())
                        .find(|r| r.key == k)
                        .expect("a step is for one of the ReplicaSets");
                    self.scale(&d, rs, n).await?;
                }
            } else {
                let running_olds: Vec<&Rs> = olds.iter().filter(|o| o.replicas > 0).collect();
                if !running_olds.is_empty() {
                    for o in running_olds {
                        self.scale(&d, o, 0).await?;
                    }
                } else if self.old_pods_active(&ns, &olds) == 0 && new.replicas != replicas {
                    self.scale(&d, &new, replicas).await?;
                }
            }
        }

        // History: keep the newest revisionHistoryLimit old, empty ReplicaSets.
        let limit = d.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut empty: Vec<&Rs> = olds
            .iter()
            .filter(|o| o.replicas == 0 && o.status_replicas == 0)
            .collect();
        empty.sort_by_key(|o| std::cmp::Reverse(o.revision));
        for o in empty.iter().skip(limit) {
            if let Ok(stored) = self.registry.get(&o.key).await {
                match self.registry.delete(&o.key, stored.mod_revision).await {
                    Ok(_) | Err(RegistryError::NotFound) | Err(RegistryError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        // Status.
        let all: Vec<&Rs> = std::iter::once(&new).chain(olds.iter()).collect();
        let total: i32 = all.iter().map(|r| r.status_replicas).sum();
        let available: i32 = all.iter().map(|r| r.available).sum();
        let ready: i32 = all.iter().map(|r| r.ready).sum();
        let done = new.replicas == replicas
            && new.status_replicas == replicas
            && new.available >= replicas
            && olds
                .iter()
                .all(|o| o.status_replicas == 0 && o.replicas == 0);
        let max_unavailable = limits.map_or(0, |(_, unavailable)| unavailable);
        let now = Time::now();
        let deadline = i64::from(d.spec.progress_deadline_seconds.unwrap_or(600));
        let generation = d.metadata.generation.unwrap_or(0);
        let new_name = new.name.clone();
        let revision = if new.revision < max_revision {
            max_revision + 1
        } else {
            new.revision
        };
        let written = self
            .registry
            .update_with::<RegistryError>(key, |current| {
                let mut next = current.value.clone();
                let mut status = next["status"].clone();
                if !status.is_object() {
                    status = json!({});
                }
                let mut counts = BTreeMap::new();
                counts.insert("observedGeneration", json!(generation));
                counts.insert("replicas", json!(total));
                counts.insert("updatedReplicas", json!(new.status_replicas));
                counts.insert("readyReplicas", json!(ready));
                counts.insert("availableReplicas", json!(available));
                counts.insert("unavailableReplicas", json!((total - available).max(0)));
                for (k, v) in counts {
                    status[k] = v;
                }
                next["status"] = status;
                let available_ok = available >= replicas - max_unavailable;
                set_condition(
                    &mut next,
                    "Available",
                    if available_ok { "True" } else { "False" },
                    Some(if available_ok {
                        "MinimumReplicasAvailable"
                    } else {
                        "MinimumReplicasUnavailable"
                    }),
                    Some(if available_ok {
                        "Deployment has minimum availability."
                    } else {
                        "Deployment does not have minimum availability."
                    }),
                    &now,
                );
                let progressing = next["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned());
                let (status_, reason, message) = if done {
                    (
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    )
                } else {
                    let since = progressing
                        .as_ref()
                        .filter(|c| {
                            c["reason"] == "ReplicaSetUpdated"
                                || c["reason"] == "NewReplicaSetCreated"
                        })
                        .and_then(|c| {
                            c["lastUpdateTime"]
                                .as_str()
                                .or(c["lastTransitionTime"].as_str())
                        })
                        .and_then(|t| t.parse::<Time>().ok());
                    match since {
                        Some(t) if now.unix_seconds() - t.unix_seconds() > deadline => (
                            "False",
                            "ProgressDeadlineExceeded",
                            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        ),
                        _ => (
                            "True",
                            "ReplicaSetUpdated",
                            format!("ReplicaSet \"{new_name}\" is progressing."),
                        ),
                    }
                };
                let was = progressing
                    .as_ref()
                    .map(|c| (c["reason"].clone(), c["message"].clone()));
                set_condition(
                    &mut next,
                    "Progressing",
                    status_,
                    Some(reason),
                    Some(&message),
                    &now,
                );
                if was != Some((json!(reason), json!(message))) {
                    // The progress clock restarts when the rollout moves.
                    if let Some(c) = next["status"]["conditions"]
                        .as_array_mut()
                        .and_then(|cs| cs.iter_mut().find(|c| c["type"] == "Progressing"))
                    {
                        c["lastUpdateTime"] = now.to_string().into();
                    }
                }
                if !next["metadata"]["annotations"].is_object() {
                    next["metadata"]["annotations"] = json!({});
                }
                next["metadata"]["annotations"][REVISION] = revision.to_string().into();
                if next == current.value {
                    return Ok(None);
                }
                Ok(Some(next))
            })
            .await;
        match written {
            Ok(_) | Err(RegistryError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(if done {
            Action::Done
        } else {
            Action::RequeueAfter(PROGRESS_CHECK)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(key: &str, replicas: i32, available: i32, created: &str) -> Rs {
        Rs {
            key: key.into(),
            name: key.into(),
            replicas,
            available,
            ready: available,
            status_replicas: replicas,
            revision: 1,
            created: created.into(),
        }
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        let q = IntOrString::String("25%".into());
        assert_eq!(surge_and_unavailable(3, &q, &q), (1, 0));
        assert_eq!(surge_and_unavailable(10, &q, &q), (3, 2));
        assert_eq!(
            surge_and_unavailable(3, &IntOrString::Int(0), &IntOrString::Int(0)),
            (0, 1)
        );
    }

    #[test]
    fn a_rolling_update_of_three_walks_as_kubernetes_does() {
        // replicas 3, maxSurge 1, maxUnavailable 0.
        let old = rs("old", 3, 3, "1");
        let new = rs("new", 0, 0, "2");
        assert_eq!(
            rolling_step(3, 1, 0, &new, std::slice::from_ref(&old)),
            [("new".to_string(), 1)]
        );
        // The new pod is not available yet: nothing may go.
        let new = rs("new", 1, 0, "2");
        assert_eq!(rolling_step(3, 1, 0, &new, std::slice::from_ref(&old)), []);
        // It is: one old pod goes.
        let new = rs("new", 1, 1, "2");
        assert_eq!(
            rolling_step(3, 1, 0, &new, std::slice::from_ref(&old)),
            [("old".to_string(), 2)]
        );
        let old = rs("old", 2, 2, "1");
        assert_eq!(
            rolling_step(3, 1, 0, &new, std::slice::from_ref(&old)),
            [("new".to_string(), 2)]
        );
        let new = rs("new", 3, 3, "2");
        let old = rs("old", 1, 1, "1");
        assert_eq!(
            rolling_step(3, 1, 0, &new, std::slice::from_ref(&old)),
            [("old".to_string(), 0)]
        );
        let old = rs("old", 0, 0, "1");
        assert_eq!(rolling_step(3, 1, 0, &new, &[old]), []);
    }

    #[test]
    fn unavailable_old_pods_go_first_within_the_budget() {
        // 4 pods, at least 2 available, the new one not yet: 1 may go.
        let old = rs("old", 3, 1, "1");
        let new = rs("new", 1, 0, "2");
        assert_eq!(
            rolling_step(3, 1, 1, &new, std::slice::from_ref(&old)),
            [("old".to_string(), 2)]
        );
        // Nothing available and none may be unavailable: nothing goes.
        let old = rs("old", 2, 0, "1");
        assert_eq!(rolling_step(2, 1, 0, &new, &[old]), []);
    }

    #[test]
    fn the_hash_ignores_the_hash_label() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        let mut labelled = t.clone();
        labelled["metadata"]["labels"][HASH_LABEL] = "x".into();
        assert_eq!(without_hash(&labelled), t);
        assert_eq!(template_hash(&t).len(), 10);
        let mut changed = t.clone();
        changed["spec"]["containers"] = json!([{"name": "a"}]);
        assert_ne!(template_hash(&t), template_hash(&changed));
    }
}
