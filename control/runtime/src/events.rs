//! The event recorder: how every component says what happened to an object.
//!
//! As Kubernetes' event correlator does, the recorder keeps one Event per
//! involved object and reason. The first occurrence creates it with count 1;
//! every later one adds one to its count and moves `lastTimestamp` (and the
//! message) forward, so a pod that fails to schedule a hundred times is one
//! Event with count 100, not a hundred objects.
//!
//! The Event's name is the object's name and a hash of (kind, namespace,
//! name, uid, reason), so that every recorder, in any process, finds the
//! same Event for the same occurrence without a lookup. Events of
//! cluster-scoped objects (nodes) live in namespace `default`, as in
//! Kubernetes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use skiff_model::core::{EventSource, ObjectReference};
use skiff_model::{Event, Time, resources};

use crate::registry::{Expect, Registry, RegistryError, Stored, Write};
use crate::stamp::Stamp;

/// Attempts to create-or-count an event before giving up: a create lost to
/// another recorder becomes an update, an update lost to a delete becomes
/// a create again.
const MAX_RECORD_ATTEMPTS: u32 = 4;

/// Longest message kept; a longer one is cut (Kubernetes keeps 1 KiB).
pub const MAX_MESSAGE_LEN: usize = 1024;

/// `Normal` or `Warning`, as `type` of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Event keys a recorder remembers having written, so that a repeat goes
/// straight to counting; past this many the memory starts again.
const MAX_KNOWN_EVENTS: usize = 4096;

/// Records Events for one component (`source.component`, such as
/// `skiff-scheduler`) on one host; cheap to clone.
///
/// A first occurrence is one write (a create), with no read: the recorder
/// remembers (up to [`MAX_KNOWN_EVENTS`]) which Events it has written and
/// reads before counting only those, or one whose create found it there.
#[derive(Clone, Debug)]
pub struct EventRecorder {
    registry: Registry,
    component: String,
    host: String,
    known: Arc<Mutex<HashSet<String>>>,
}

/// The namespace an object's events live in.
pub fn event_namespace(involved: &ObjectReference) -> &str {
    if involved.namespace.is_empty() {
        "default"
    } else {
        &involved.namespace
    }
}

/// The store key of the one Event for `involved` and `reason`.
fn event_key(involved: &ObjectReference, reason: &str) -> Result<String, RegistryError> {
    resources::lookup("events")
        .expect("events are a resource")
        .key(event_namespace(involved), &event_name(involved, reason))
        .map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// The name of the one Event for `involved` and `reason`.
pub fn event_name(involved: &ObjectReference, reason: &str) -> String {
    let mut hash = Sha256::new();
    for part in [
        &involved.kind,
        &involved.namespace,
        &involved.name,
        &involved.uid,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(reason.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.{hex}", involved.name)
}

fn cut(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_LEN {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

/// A new Event with count 1.
pub fn new_event(
    involved: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
    source: EventSource,
    stamp: &Stamp,
) -> Event {
    let now: Time = stamp.now.parse().unwrap_or_else(|_| Time::now());
    let mut ev = Event {
        api_version: "v1".to_string(),
        kind: "Event".to_string(),
        involved_object: involved.clone(),
        reason: reason.to_string(),
        message: cut(message),
        type_: type_.as_str().to_string(),
        count: 1,
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        source: Some(source),
        ..Event::default()
    };
    ev.metadata.name = event_name(involved, reason);
    ev.metadata.namespace = event_namespace(involved).to_string();
    ev.metadata.uid = stamp.uid.clone();
    ev.metadata.creation_timestamp = ev.first_timestamp;
    ev
}

/// The stored Event counted once more: count + 1, the new message and type,
/// `lastTimestamp` now. `None` when the stored value is not an Event.
pub fn counted(stored: &Value, type_: EventType, message: &str, now: &Time) -> Option<Value> {
    let mut v = stored.clone();
    let map = v.as_object_mut()?;
    let count = map.get("count").and_then(Value::as_i64).unwrap_or(1);
    map.insert("count".into(), Value::from(count.saturating_add(1)));
    map.insert("message".into(), Value::String(cut(message)));
    map.insert("type".into(), Value::String(type_.as_str().to_string()));
    map.insert("lastTimestamp".into(), Value::String(now.to_string()));
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Some(v)
}

impl EventRecorder {
    pub fn new(registry: Registry, component: impl Into<String>, host: impl Into<String>) -> Self {
        EventRecorder {
            registry,
            component: component.into(),
            host: host.into(),
            known: Arc::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, key: &str) {
        let mut known = self.known();
        if known.len() >= MAX_KNOWN_EVENTS {
            known.clear();
        }
        known.insert(key.to_string());
    }

    /// The write that records a first occurrence of `reason` for
    /// `involved` (its Event with count 1, expected absent), for a caller
    /// to commit in one transaction with other writes; should the Event be
    /// there already, [`EventRecorder::record`] counts it instead.
    pub fn first_occurrence(
        &self,
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Write, RegistryError> {
        let key = event_key(involved, reason)?;
        let source = EventSource {
            component: self.component.clone(),
            host: self.host.clone(),
        };
        let ev = new_event(involved, type_, reason, message, source, &Stamp::now());
        let value = serde_json::to_value(&ev).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        Ok(Write {
            key,
            value,
            expect: Expect::Absent,
        })
    }

    /// Records that `reason` happened to `involved`: creates its Event, or
    /// counts it once more. Returns the Event as stored.
    pub async fn record(
        &self,
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Stored, RegistryError> {
        let key = event_key(involved, reason)?;
        let key = key.as_str();
        let mut last = RegistryError::Conflict;
        let mut exists = self.known().contains(key);
        for _ in 0..MAX_RECORD_ATTEMPTS {
            let current = if exists {
                self.registry.get(key).await
            } else {
                Err(RegistryError::NotFound)
            };
            match current {
                Err(RegistryError::NotFound) => {
                    let first = self.first_occurrence(involved, type_, reason, message)?;
                    match self.registry.create(key, &first.value).await {
                        Err(RegistryError::AlreadyExists) => {
                            last = RegistryError::AlreadyExists;
                            exists = true;
                        }
                        other => {
                            if other.is_ok() {
                                self.remember(key);
                            }
                            return other;
                        }
                    }
                }
                Err(e) => return Err(e),
                Ok(current) => {
                    let Some(next) = counted(&current.value, type_, message, &Time::now()) else {
                        return Err(RegistryError::Corrupt(format!("{key} is not an event")));
                    };
                    match self.registry.update(key, &next, current.mod_revision).await {
                        Err(e @ RegistryError::Conflict) => last = e,
                        Err(e @ RegistryError::NotFound) => {
                            last = e;
                            exists = false;
                        }
                        other => {
                            if other.is_ok() {
                                self.remember(key);
                            }
                            return other;
                        }
                    }
                }
            }
        }
        tracing::debug!(%key, reason, "event not recorded after {MAX_RECORD_ATTEMPTS} attempts");
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> ObjectReference {
        ObjectReference {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: uid.into(),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn one_name_per_object_and_reason() {
        let a = event_name(&pod("u1"), "Scheduled");
        assert!(a.starts_with("web."), "{a}");
        assert_eq!(a.len(), "web.".len() + 16);
        assert_eq!(a, event_name(&pod("u1"), "Scheduled"));
        assert_ne!(a, event_name(&pod("u1"), "FailedScheduling"));
        assert_ne!(
            a,
            event_name(&pod("u2"), "Scheduled"),
            "another pod of that name"
        );
    }

    #[test]
    fn cluster_scoped_objects_have_their_events_in_default() {
        let node = ObjectReference {
            kind: "Node".into(),
            name: "n1".into(),
            ..ObjectReference::default()
        };
        assert_eq!(event_namespace(&node), "default");
        assert_eq!(event_namespace(&pod("u")), "default");
    }

    #[test]
    fn a_new_event_validates_and_a_counted_one_moves_on() {
        let stamp = Stamp {
            uid: "11111111-1111-4111-8111-111111111111".into(),
            now: "2026-12-01T10:00:00Z".into(),
            suffix: "abcde".into(),
        };
        let source = EventSource {
            component: "skiff-scheduler".into(),
            host: "h".into(),
        };
        let ev = new_event(
            &pod("u1"),
            EventType::Warning,
            "FailedScheduling",
            "no",
            source,
            &stamp,
        );
        let v = serde_json::to_value(&ev).unwrap();
        let obj = skiff_model::decode_object(&v).unwrap();
        assert_eq!(skiff_model::validate_object(&obj), vec![]);
        assert_eq!(v["count"], 1);
        assert_eq!(v["firstTimestamp"], "2026-12-01T10:00:00Z");
        assert_eq!(v["type"], "Warning");

        let later: Time = "2026-12-01T10:00:05Z".parse().unwrap();
        let mut stored = v.clone();
        stored["metadata"]["resourceVersion"] = "7".into();
        let next = counted(&stored, EventType::Warning, "still no", &later).unwrap();
        assert_eq!(next["count"], 2);
        assert_eq!(next["message"], "still no");
        assert_eq!(next["firstTimestamp"], "2026-12-01T10:00:00Z");
        assert_eq!(next["lastTimestamp"], "2026-12-01T10:00:05Z");
        assert!(next["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let m = "é".repeat(MAX_MESSAGE_LEN);
        let c = cut(&m);
        assert!(c.len() <= MAX_MESSAGE_LEN);
        assert!(m.starts_with(&c));
    }
}
