//! The garbage collector: an object whose owners are all gone is deleted
//! (Kubernetes' background propagation), and an owner deleted in the
//! foreground (`propagationPolicy: Foreground`, which leaves it with a
//! deletion timestamp and the `foregroundDeletion` finalizer) goes once its
//! dependents are gone. An orphaning delete is the API server's: it removes
//! the owner references before it deletes the owner.
//!
//! It watches the dependent kinds (pods, ReplicaSets) and the owner kinds.
//! A dependent is looked at when it appears or changes and when one of its
//! owners goes. The copies may lag (an owner created a moment ago may not be
//! in them yet), so before deleting anything the collector reads each owner
//! from the store itself, and deletes only when no owner with the
//! referenced uid exists there.

use std::sync::Arc;

use serde_json::Value;
use skiff_model::{Time, resources};
use skiff_runtime::{
    Action, Cache, Informer, Notice, Reconcile, Registry, RegistryError, WorkQueue,
};

use crate::api::objects;

/// The kinds whose objects may have owners, by resource name.
pub const DEPENDENTS: &[&str] = &["pods", "replicasets"];
/// The kinds that own objects, by resource name.
pub const OWNERS: &[&str] = &["replicasets", "replicationcontrollers", "deployments"];

fn owner_uids(v: &Value) -> Vec<&str> {
    v["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| refs.iter().filter_map(|o| o["uid"].as_str()).collect())
        .unwrap_or_default()
}

/// The garbage collector over the given copies.
pub struct GarbageCollector {
    registry: Registry,
    /// Copies of the dependent kinds, by resource name.
    dependents: Vec<(&'static str, Cache)>,
    /// Copies of the owner kinds.
    owners: Vec<Cache>,
}

impl std::fmt::Debug for GarbageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GarbageCollector").finish_non_exhaustive()
    }
}

impl GarbageCollector {
    pub fn new(
        registry: Registry,
        dependents: Vec<(&'static str, Cache)>,
        owners: Vec<Cache>,
    ) -> Self {
        GarbageCollector {
            registry,
            dependents,
            owners,
        }
    }

    /// Queues a dependent with owners when it appears or changes.
    pub fn watch_dependents(informer: &mut Informer, queue: &Arc<WorkQueue<String>>) {
        let q = queue.clone();
        informer.on_change(move |notice| {
            if let Notice::Upsert { key, new, .. } | Notice::Resync { key, object: new } = notice
                && !owner_uids(new).is_empty()
            {
                q.add(key.to_string());
            }
        });
    }

    /// Queues the dependents (in `dependents`) of an owner that goes, and
    /// an owner marked for a foreground deletion.
    pub fn watch_owners(
        informer: &mut Informer,
        dependents: Vec<Cache>,
        queue: &Arc<WorkQueue<String>>,
    ) {
        let q = queue.clone();
        informer.on_change(move |notice| {
            if let Notice::Upsert { key, new, .. } | Notice::Resync { key, object: new } = notice
                && in_foreground_deletion(new)
            {
                q.add(key.to_string());
            }
            let Notice::Delete { old, .. } = notice else {
                return;
            };
            let Some(uid) = old["metadata"]["uid"].as_str() else {
                return;
            };
            for cache in &dependents {
                for dep in cache.filter(|d| owner_uids(d).contains(&uid)) {
                    if let Some(key) = key_of(&dep) {
                        q.add(key);
                    }
                }
            }
        });
    }

    fn cached(&self, key: &str) -> Option<Arc<Value>> {
        self.dependents.iter().find_map(|(_, c)| c.get(key))
    }

    fn owner_cached(&self, uid: &str) -> bool {
        self.owners
            .iter()
            .any(|c| !c.filter(|o| o["metadata"]["uid"] == uid).is_empty())
    }

    /// Whether the owner `reference` of an object in `namespace` exists in
    /// the store with its uid.
    async fn owner_exists(
        &self,
        namespace: &str,
        reference: &Value,
    ) -> Result<bool, RegistryError> {
        let api_version = reference["apiVersion"].as_str().unwrap_or("");
        let kind = reference["kind"].as_str().unwrap_or("");
        let name = reference["name"].as_str().unwrap_or("");
        let Some(resource) = resources::by_kind(api_version, kind) else {
            // A kind skiff does not serve cannot be checked: keep the object.
            return Ok(true);
        };
        let ns = if resource.namespaced { namespace } else { "" };
        let Ok(key) = resource.key(ns, name) else {
            return Ok(true);
        };
        match self.registry.get(&key).await {
            Ok(owner) => Ok(owner.value["metadata"]["uid"] == reference["uid"]),
            Err(RegistryError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Whether an owner waits for its dependents to go (a foreground delete).
pub fn in_foreground_deletion(v: &Value) -> bool {
    v["metadata"]["deletionTimestamp"].is_string()
        && v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == objects::FOREGROUND_FINALIZER))
}

impl GarbageCollector {
    /// A foreground deletion: the owner's dependents go first (owners among
    /// them in the foreground too), then the owner.
    async fn foreground(&self, key: &str, owner: &Value) -> anyhow::Result<Action> {
        let uid = owner["metadata"]["uid"].as_str().unwrap_or("");
        let dependents: Vec<Arc<Value>> = self
            .dependents
            .iter()
            .flat_map(|(_, c)| c.filter(|d| owner_uids(d).contains(&uid)))
            .collect();
        for dep in &dependents {
            let Some(dkey) = key_of(dep) else { continue };
            let Ok(current) = self.registry.get(&dkey).await else {
                continue;
            };
            let is_owner = self.owners.iter().any(|c| c.get(&dkey).is_some());
            let next = if is_owner {
                objects::mark_foreground(&current.value, &Time::now().to_string())
            } else if current.value["kind"] == "Pod" {
                objects::mark_terminating_pod(&current.value, None, Time::now())
            } else {
                None
            };
            let result = match next {
                Some(marked) => self
                    .registry
                    .update(&dkey, &marked, current.mod_revision)
                    .await
                    .map(|_| ()),
                None if current.value["metadata"]["deletionTimestamp"].is_null() => self
                    .registry
                    .delete(&dkey, current.mod_revision)
                    .await
                    .map(|_| ()),
                None => Ok(()),
            };
            match result {
                Ok(()) | Err(RegistryError::NotFound) | Err(RegistryError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !dependents.is_empty() {
            return Ok(Action::RequeueAfter(std::time::Duration::from_secs(1)));
        }
        // No dependent left: drop the finalizer, and the object with it.
        let current = match self.registry.get(key).await {
            Ok(c) => c,
            Err(RegistryError::NotFound) => return Ok(Action::Done),
            Err(e) => return Err(e.into()),
        };
        let mut next = current.value.clone();
        let left: Vec<Value> = next["metadata"]["finalizers"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter(|f| *f != objects::FOREGROUND_FINALIZER)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let result = if left.is_empty() {
            self.registry
                .delete(key, current.mod_revision)
                .await
                .map(|_| ())
        } else {
            next["metadata"]["finalizers"] = Value::Array(left);
            self.registry
                .update(key, &next, current.mod_revision)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) | Err(RegistryError::NotFound) => {
                tracing::info!(%key, "dependents gone, deleted");
                Ok(Action::Done)
            }
            Err(RegistryError::Conflict) => Ok(Action::RequeueAfter(std::time::Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }
}

fn key_of(v: &Value) -> Option<String> {
    let kind = v["kind"].as_str()?;
    let api_version = v["apiVersion"].as_str()?;
    let resource = resources::by_kind(api_version, kind)?;
    let meta = &v["metadata"];
    resource
        .key(
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str()?,
        )
        .ok()
}

impl Reconcile for GarbageCollector {
    fn name(&self) -> &str {
        "garbagecollector"
    }

    async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
        if let Some(owner) = self.owners.iter().find_map(|c| c.get(key))
            && in_foreground_deletion(&owner)
        {
            return self.foreground(key, &owner).await;
        }
        let Some(cached) = self.cached(key) else {
            return Ok(Action::Done);
        };
        let uids = owner_uids(&cached);
        if uids.is_empty() || uids.iter().any(|u| self.owner_cached(u)) {
            return Ok(Action::Done);
        }
        // Every owner looks gone in the copies: ask the store.
        let current = match self.registry.get(key).await {
            Ok(c) => c,
            Err(RegistryError::NotFound) => return Ok(Action::Done),
            Err(e) => return Err(e.into()),
        };
        let namespace = current.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("");
        let refs = current.value["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for reference in &refs {
            if self.owner_exists(namespace, reference).await? {
                return Ok(Action::Done);
            }
        }
        if refs.is_empty() || !current.value["metadata"]["deletionTimestamp"].is_null() {
            return Ok(Action::Done);
        }
        let result = match objects::mark_terminating_pod(&current.value, None, Time::now()) {
            Some(marked) if current.value["kind"] == "Pod" => self
                .registry
                .update(key, &marked, current.mod_revision)
                .await
                .map(|_| ()),
            _ => self
                .registry
                .delete(key, current.mod_revision)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => {
                tracing::info!(%key, "owners gone, deleted");
                Ok(Action::Done)
            }
            Err(RegistryError::NotFound) => Ok(Action::Done),
            // Changed meanwhile: look again.
            Err(RegistryError::Conflict) => Ok(Action::RequeueAfter(std::time::Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }
}
