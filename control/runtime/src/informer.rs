//! The informer: a local copy of every object under one store prefix, kept
//! current by list-then-watch, that tells handlers what changed.
//!
//! It lists the prefix in pages at one revision, then watches from the next
//! revision. A watch that ends or fails is resumed from the last revision
//! seen; a watch whose revision was compacted ("compacted") lists again, and
//! the handlers hear of every difference between the old copy and the new
//! list, deletions included. Every `resync` period the handlers hear of
//! every object again, as a backstop for a missed reaction.
//!
//! Handlers run on the informer's task and must be quick: they put keys on
//! work queues, nothing more.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::queue::Backoff;
use crate::registry::{Change, LIST_PAGE_SIZE, Registry, RegistryError};

/// What a handler hears.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// An object appeared or changed (`old` is `None` for a new one).
    Upsert {
        key: &'a str,
        old: Option<&'a Value>,
        new: &'a Value,
    },
    /// An object went away; `old` is the last copy.
    Delete { key: &'a str, old: &'a Value },
    /// The periodic resync: the object, unchanged.
    Resync { key: &'a str, object: &'a Value },
}

impl Notice<'_> {
    pub fn key(&self) -> &str {
        match self {
            Notice::Upsert { key, .. }
            | Notice::Delete { key, .. }
            | Notice::Resync { key, .. } => key,
        }
    }

    /// The object as it is now (the last copy for a delete).
    pub fn object(&self) -> &Value {
        match self {
            Notice::Upsert { new, .. } => new,
            Notice::Delete { old, .. } => old,
            Notice::Resync { object, .. } => object,
        }
    }
}

type Handler = Box<dyn Fn(&Notice<'_>) + Send + Sync>;

/// A read-only view of an informer's copy; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    objects: Arc<RwLock<BTreeMap<String, Arc<Value>>>>,
    synced: watch::Receiver<i64>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("objects", &self.len())
            .finish()
    }
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Value>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The object at `key`.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.read().get(key).cloned()
    }

    /// Every object, in key order.
    pub fn list(&self) -> Vec<Arc<Value>> {
        self.read().values().cloned().collect()
    }

    /// The objects `keep` accepts, in key order.
    pub fn filter(&self, keep: impl Fn(&Value) -> bool) -> Vec<Arc<Value>> {
        self.read().values().filter(|v| keep(v)).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store revision the copy is current to (0 before the first list).
    pub fn revision(&self) -> i64 {
        *self.synced.borrow()
    }

    /// Waits until the first list is in.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        // The sender lives as long as the informer; if it is gone the copy
        // stays as it is, which is as synced as it will get.
        let _ = rx.wait_for(|rev| *rev > 0).await;
    }
}

/// Keeps a [`Cache`] of one prefix and calls its handlers.
pub struct Informer {
    registry: Registry,
    prefix: String,
    resync: Duration,
    objects: Arc<RwLock<BTreeMap<String, Arc<Value>>>>,
    synced_tx: watch::Sender<i64>,
    synced_rx: watch::Receiver<i64>,
    handlers: Vec<Handler>,
    backoff: Backoff,
}

impl std::fmt::Debug for Informer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("prefix", &self.prefix)
            .field("handlers", &self.handlers.len())
            .finish()
    }
}

impl Informer {
    /// An informer of the objects under `prefix`, resynced every `resync`.
    pub fn new(registry: Registry, prefix: impl Into<String>, resync: Duration) -> Self {
        let (synced_tx, synced_rx) = watch::channel(0);
        Informer {
            registry,
            prefix: prefix.into(),
            resync,
            objects: Arc::default(),
            synced_tx,
            synced_rx,
            handlers: Vec::new(),
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
        }
    }

    /// Calls `handler` for every change from now on.
    pub fn on_change(&mut self, handler: impl Fn(&Notice<'_>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(handler));
    }

    pub fn cache(&self) -> Cache {
        Cache {
            objects: self.objects.clone(),
            synced: self.synced_rx.clone(),
        }
    }

    fn notify(&self, notice: Notice<'_>) {
        for h in &self.handlers {
            h(&notice);
        }
    }

    /// Lists the prefix at one revision and replaces the copy, telling the
    /// handlers of each difference. Returns the revision listed at.
    async fn relist(&self) -> Result<i64, RegistryError> {
        let mut fresh = BTreeMap::new();
        let mut revision = None;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .registry
                .list_page(&self.prefix, after.as_deref(), revision, LIST_PAGE_SIZE)
                .await?;
            revision = Some(page.revision);
            after = page.items.last().map(|s| s.key.clone());
            for item in page.items {
                fresh.insert(item.key, Arc::new(item.value));
            }
            if !page.more {
                break;
            }
        }
        let old = {
            let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *objects, fresh.clone())
        };
        for (key, new) in &fresh {
            match old.get(key) {
                Some(prev) if prev == new => {}
                prev => self.notify(Notice::Upsert {
                    key,
                    old: prev.map(|v| &**v),
                    new,
                }),
            }
        }
        for (key, prev) in &old {
            if !fresh.contains_key(key) {
                self.notify(Notice::Delete { key, old: prev });
            }
        }
        Ok(revision.unwrap_or(0))
    }

    fn apply(&self, change: Change) {
        let previous = {
            let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
            match &change.object {
                Some(new) => objects.insert(change.key.clone(), Arc::new(new.clone())),
                None => objects.remove(&change.key),
            }
        };
        match (&change.object, previous) {
            (Some(new), old) => self.notify(Notice::Upsert {
                key: &change.key,
                old: old.as_deref(),
                new,
            }),
            (None, Some(old)) => self.notify(Notice::Delete {
                key: &change.key,
                old: &old,
            }),
            (None, None) => {}
        }
    }

    fn resync_all(&self) {
        let objects: Vec<(String, Arc<Value>)> = self
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, object) in &objects {
            self.notify(Notice::Resync { key, object });
        }
    }

    /// Keeps the copy current until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut failures = 0u32;
        let mut listed: Option<i64> = None;
        let mut resync = tokio::time::interval(self.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        'outer: while !cancel.is_cancelled() {
            let revision = match listed {
                Some(rev) => rev,
                None => match self.relist().await {
                    Ok(rev) => {
                        tracing::debug!(prefix = %self.prefix, revision = rev, objects = self.objects.read().map(|o| o.len()).unwrap_or(0), "listed");
                        self.synced_tx.send_replace(rev.max(1));
                        failures = 0;
                        listed = Some(rev);
                        rev
                    }
                    Err(e) => {
                        failures += 1;
                        let delay = self.backoff.delay(failures);
                        tracing::warn!(prefix = %self.prefix, error = %e, ?delay, "list failed");
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(delay) => continue,
                        }
                    }
                },
            };
            let mut stream = match self.registry.watch(&self.prefix, revision + 1).await {
                Ok(s) => s,
                Err(RegistryError::Compacted { .. }) => {
                    listed = None;
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    let delay = self.backoff.delay(failures);
                    tracing::warn!(prefix = %self.prefix, error = %e, ?delay, "watch failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    _ = resync.tick() => self.resync_all(),
                    next = stream.next() => match next {
                        Ok(Some(batch)) => {
                            failures = 0;
                            let mut last = batch.revision;
                            for change in batch.changes {
                                last = last.max(change.revision);
                                self.apply(change);
                            }
                            listed = Some(last.max(revision));
                            self.synced_tx.send_replace(last.max(revision).max(1));
                        }
                        Ok(None) => {
                            tracing::debug!(prefix = %self.prefix, "watch ended, resuming");
                            continue 'outer;
                        }
                        Err(RegistryError::Compacted { revision: compacted }) => {
                            tracing::info!(prefix = %self.prefix, compacted, "watch revision compacted, listing again");
                            listed = None;
                            continue 'outer;
                        }
                        Err(e) => {
                            failures += 1;
                            let delay = self.backoff.delay(failures);
                            tracing::warn!(prefix = %self.prefix, error = %e, ?delay, "watch broke, resuming");
                            tokio::select! {
                                _ = cancel.cancelled() => break 'outer,
                                _ = tokio::time::sleep(delay) => continue 'outer,
                            }
                        }
                    }
                }
            }
        }
    }
}
