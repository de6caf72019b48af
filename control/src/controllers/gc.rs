//! The garbage collector: an object whose owners are all gone is deleted
//! (Kubernetes' background propagation).
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

    /// Queues the dependents (in `dependents`) of an owner that goes.
    pub fn watch_owners(
        informer: &mut Informer,
        dependents: Vec<Cache>,
        queue: &Arc<WorkQueue<String>>,
    ) {
        let q = queue.clone();
        informer.on_change(move |notice| {
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
