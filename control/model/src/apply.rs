//! Server-side apply as a pure function on JSON: merge a manifest into the
//! live object, given the manifest applied before.
//!
//! The rules, modelled on Kubernetes apply:
//! - every field the manifest sets is set (`null` removes the field);
//! - a field the previous manifest set and the new one no longer sets is
//!   removed;
//! - a field nobody applied is kept: `status`, `spec.nodeName` written by the
//!   scheduler, `spec.replicas` set by `scale` while the manifest leaves
//!   replicas out, defaults, and metadata written by the server;
//! - lists with a merge key merge element by element: `containers`,
//!   `initContainers`, `volumes` and `env` by `name`, `volumeMounts` by
//!   `mountPath`, container ports by `containerPort` (with `protocol`,
//!   `TCP` when absent), Service `spec.ports` by `port` (with `protocol`),
//!   `ownerReferences` by `uid`, `conditions` by `type`. An element is removed
//!   when the previous manifest had it and the new one has not; elements
//!   added by others stay, after the applied ones. Every other list is
//!   replaced as a whole, and so is a keyed list whose manifest elements lack
//!   their key or repeat one;
//! - the manifest's top-level `status` and the server's metadata (`uid`,
//!   `resourceVersion`, `generation`, `creationTimestamp`,
//!   `deletionTimestamp`, `deletionGracePeriodSeconds`, `managedFields`,
//!   `selfLink`) are never applied: the caller checks a manifest's
//!   `resourceVersion` as a precondition if it wants one.
//!
//! Applying the same manifest again changes nothing (`changed == false`).
//!
//! **Where the previous manifest lives**: in the object's annotation
//! `kubectl.kubernetes.io/last-applied-configuration` ([`LAST_APPLIED_ANNOTATION`]),
//! the one kubectl's client-side apply uses, as compact JSON without that
//! annotation itself. [`apply_with_annotation`] reads and writes it; [`apply`]
//! is the merge alone. Like kubectl's, the annotation counts towards the
//! 256 KiB limit on annotations.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// The annotation holding the last applied manifest.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata fields only the server writes; a manifest's values are ignored.
pub const SERVER_METADATA_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// What [`apply`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyResult {
    /// The merged object.
    pub object: Value,
    /// Whether `object` differs from the live object (always true when there
    /// was none).
    pub changed: bool,
}

/// The merge key of a list: fields whose values identify an element, each
/// with the value an absent field stands for.
type MergeKey = &'static [(&'static str, Option<&'static str>)];

const BY_NAME: MergeKey = &[("name", None)];
const BY_MOUNT_PATH: MergeKey = &[("mountPath", None)];
const BY_CONTAINER_PORT: MergeKey = &[("containerPort", None), ("protocol", Some("TCP"))];
const BY_SERVICE_PORT: MergeKey = &[("port", None), ("protocol", Some("TCP"))];
const BY_UID: MergeKey = &[("uid", None)];
const BY_TYPE: MergeKey = &[("type", None)];

/// The merge key of the list at `path` (field names from the root, list
/// indexes left out) in an object of `kind`.
fn merge_key(kind: &str, path: &[String]) -> Option<MergeKey> {
    let (last, parent) = match path {
        [.., parent, last] => (last.as_str(), Some(parent.as_str())),
        [last] => (last.as_str(), None),
        [] => return None,
    };
    match last {
        "containers" | "initContainers" | "volumes" | "env" => Some(BY_NAME),
        "volumeMounts" => Some(BY_MOUNT_PATH),
        "ports" if kind == "Service" && path.len() == 2 && path[0] == "spec" => {
            Some(BY_SERVICE_PORT)
        }
        "ports" if matches!(parent, Some("containers" | "initContainers")) => {
            Some(BY_CONTAINER_PORT)
        }
        "ownerReferences" if parent == Some("metadata") => Some(BY_UID),
        "conditions" => Some(BY_TYPE),
        _ => None,
    }
}

/// The key of one list element, or `None` when it lacks the first field.
fn element_key(item: &Value, key: MergeKey) -> Option<Vec<String>> {
    let map = item.as_object()?;
    let mut parts = Vec::with_capacity(key.len());
    for (i, (field, default)) in key.iter().enumerate() {
        match (map.get(*field), default) {
            (Some(v), _) if !v.is_null() => parts.push(v.to_string()),
            (_, Some(d)) if i > 0 => parts.push(Value::from(*d).to_string()),
            _ => return None,
        }
    }
    Some(parts)
}

/// The elements of a list by key, first occurrence first.
fn keyed(list: Option<&Value>, key: MergeKey) -> BTreeMap<Vec<String>, &Value> {
    let mut m = BTreeMap::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(k) = element_key(item, key) {
            m.entry(k).or_insert(item);
        }
    }
    m
}

/// Removes what a manifest may not apply: top-level `status`, server
/// metadata, and the last-applied annotation.
pub fn strip_manifest(manifest: &Value) -> Value {
    let mut m = manifest.clone();
    if let Some(map) = m.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SERVER_METADATA_FIELDS {
                meta.remove(*f);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                ann.remove(LAST_APPLIED_ANNOTATION);
                if ann.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    m
}

struct Merger<'a> {
    kind: &'a str,
    path: Vec<String>,
}

impl Merger<'_> {
    fn value(&mut self, live: Option<&Value>, last: Option<&Value>, new: &Value) -> Value {
        match new {
            Value::Object(new_map) => self.map(
                live.and_then(Value::as_object),
                last.and_then(Value::as_object),
                new_map,
            ),
            Value::Array(new_items) => match merge_key(self.kind, &self.path) {
                Some(key) => self.list(live, last, new_items, key),
                None => new.clone(),
            },
            _ => new.clone(),
        }
    }

    fn map(
        &mut self,
        live: Option<&Map<String, Value>>,
        last: Option<&Map<String, Value>>,
        new: &Map<String, Value>,
    ) -> Value {
        let mut result = live.cloned().unwrap_or_default();
        for (k, v) in new {
            if v.is_null() {
                result.remove(k);
                continue;
            }
            self.path.push(k.clone());
            let merged = self.value(live.and_then(|m| m.get(k)), last.and_then(|m| m.get(k)), v);
            self.path.pop();
            result.insert(k.clone(), merged);
        }
        if let Some(last) = last {
            for k in last.keys() {
                if !new.contains_key(k) {
                    result.remove(k);
                }
            }
        }
        Value::Object(result)
    }

    fn list(
        &mut self,
        live: Option<&Value>,
        last: Option<&Value>,
        new: &[Value],
        key: MergeKey,
    ) -> Value {
        let new_keys: Option<Vec<Vec<String>>> =
            new.iter().map(|item| element_key(item, key)).collect();
        let Some(new_keys) = new_keys else {
            return Value::Array(new.to_vec());
        };
        let unique: BTreeSet<&Vec<String>> = new_keys.iter().collect();
        if unique.len() != new_keys.len() {
            return Value::Array(new.to_vec());
        }
        let live_by_key = keyed(live, key);
        let last_by_key = keyed(last, key);
        let mut result: Vec<Value> = new_keys
            .iter()
            .zip(new)
            .map(|(k, item)| {
                self.value(
                    live_by_key.get(k).copied(),
                    last_by_key.get(k).copied(),
                    item,
                )
            })
            .collect();
        for item in live.and_then(Value::as_array).into_iter().flatten() {
            match element_key(item, key) {
                Some(k) if unique.contains(&k) || last_by_key.contains_key(&k) => {}
                _ => result.push(item.clone()),
            }
        }
        Value::Array(result)
    }
}

/// Merges `manifest` into `live`, removing what `last_applied` (the
/// manifest applied before, if any) set and `manifest` no longer does.
pub fn apply(live: Option<&Value>, last_applied: Option<&Value>, manifest: &Value) -> ApplyResult {
    let manifest = strip_manifest(manifest);
    let last = last_applied.map(strip_manifest);
    let kind = manifest
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut merger = Merger {
        kind: &kind,
        path: Vec::new(),
    };
    let object = merger.value(live, last.as_ref(), &manifest);
    let changed = live != Some(&object);
    ApplyResult { object, changed }
}

/// The last applied manifest recorded in an object's annotation, if any and
/// if it is valid JSON.
pub fn last_applied(object: &Value) -> Option<Value> {
    let text = object
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// [`apply`] with the previous manifest read from, and the new one recorded
/// in, the [`LAST_APPLIED_ANNOTATION`] annotation of the object.
pub fn apply_with_annotation(live: Option<&Value>, manifest: &Value) -> ApplyResult {
    let manifest = strip_manifest(manifest);
    let last = live.and_then(last_applied);
    let mut result = apply(live, last.as_ref(), &manifest);
    if let Some(obj) = result.object.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        let annotations = meta
            .as_object_mut()
            .expect("metadata is an object")
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        annotations
            .as_object_mut()
            .expect("annotations is an object")
            .insert(
                LAST_APPLIED_ANNOTATION.to_string(),
                Value::String(manifest.to_string()),
            );
    }
    result.changed = live != Some(&result.object);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn deployment(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "app", "image": image, "args": ["-p", "80"],
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}]}
                }
            }
        })
    }

    /// Simulates what the server adds after the first apply: defaults,
    /// server metadata and status.
    fn as_stored(mut v: Value) -> Value {
        v["metadata"]["namespace"] = json!("default");
        v["metadata"]["uid"] = json!("u-1");
        v["metadata"]["resourceVersion"] = json!("7");
        v["metadata"]["creationTimestamp"] = json!("2024-05-01T12:00:00Z");
        let c = &mut v["spec"]["template"]["spec"]["containers"][0];
        c["imagePullPolicy"] = json!("IfNotPresent");
        c["ports"][0]["protocol"] = json!("TCP");
        v["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        v["status"] = json!({"replicas": 2, "readyReplicas": 2});
        v
    }

    fn container(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn create_takes_the_manifest() {
        let m = deployment("busybox:1");
        let r = apply(None, None, &m);
        assert!(r.changed);
        assert_eq!(r.object, m);
    }

    #[test]
    fn same_manifest_twice_is_unchanged() {
        let m = deployment("busybox:1");
        let live = as_stored(apply(None, None, &m).object);
        let r = apply(Some(&live), Some(&m), &m);
        assert!(!r.changed);
        assert_eq!(r.object, live);
    }

    #[test]
    fn changed_field_keeps_server_and_default_fields() {
        let m1 = deployment("busybox:1");
        let live = as_stored(apply(None, None, &m1).object);
        let m2 = deployment("busybox:2");
        let r = apply(Some(&live), Some(&m1), &m2);
        assert!(r.changed);
        assert_eq!(container(&r.object)["image"], "busybox:2");
        assert_eq!(container(&r.object)["imagePullPolicy"], "IfNotPresent");
        assert_eq!(container(&r.object)["ports"][0]["protocol"], "TCP");
        assert_eq!(r.object["status"], live["status"]);
        assert_eq!(r.object["metadata"]["uid"], "u-1");
        assert_eq!(r.object["metadata"]["namespace"], "default");
        assert_eq!(
            r.object["spec"]["strategy"],
            json!({"type": "RollingUpdate"})
        );
    }

    #[test]
    fn replicas_set_by_scale_survive_when_never_applied() {
        let mut m = deployment("busybox:1");
        m["spec"].as_object_mut().unwrap().remove("replicas");
        let mut live = as_stored(apply(None, None, &m).object);
        live["spec"]["replicas"] = json!(5); // kubectl scale
        let r = apply(Some(&live), Some(&m), &m);
        assert!(!r.changed);
        assert_eq!(r.object["spec"]["replicas"], 5);
    }

    #[test]
    fn fields_dropped_from_the_manifest_are_removed() {
        let m1 = deployment("busybox:1");
        let live = as_stored(apply(None, None, &m1).object);
        let mut m2 = m1.clone();
        m2["spec"].as_object_mut().unwrap().remove("replicas");
        m2["metadata"].as_object_mut().unwrap().remove("labels");
        let r = apply(Some(&live), Some(&m1), &m2);
        assert!(r.object["spec"].get("replicas").is_none());
        assert!(r.object["metadata"].get("labels").is_none());
        // Without the previous manifest nothing is known to be ours: kept.
        let r = apply(Some(&live), None, &m2);
        assert_eq!(r.object["spec"]["replicas"], 2);
    }

    #[test]
    fn labels_merge_as_a_map() {
        let m1 = deployment("busybox:1");
        let mut live = as_stored(apply(None, None, &m1).object);
        live["metadata"]["labels"]["team"] = json!("a"); // kubectl label
        let mut m2 = m1.clone();
        m2["metadata"]["labels"] = json!({"tier": "fe"});
        let r = apply(Some(&live), Some(&m1), &m2);
        assert_eq!(
            r.object["metadata"]["labels"],
            json!({"tier": "fe", "team": "a"})
        );
    }

    #[test]
    fn scheduler_node_name_is_kept() {
        let m = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "a", "image": "busybox:1"}]}});
        let mut live = apply(None, None, &m).object;
        live["spec"]["nodeName"] = json!("node-1");
        live["status"] = json!({"phase": "Running"});
        let mut m2 = m.clone();
        m2["spec"]["containers"][0]["image"] = json!("busybox:2");
        let r = apply(Some(&live), Some(&m), &m2);
        assert_eq!(r.object["spec"]["nodeName"], "node-1");
        assert_eq!(r.object["status"]["phase"], "Running");
        assert_eq!(r.object["spec"]["containers"][0]["image"], "busybox:2");
    }

    #[test]
    fn manifest_status_and_server_metadata_are_ignored() {
        let m = json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "p", "uid": "other", "resourceVersion": "1",
                                    "annotations": {LAST_APPLIED_ANNOTATION: "{}"}},
                       "spec": {"containers": [{"name": "a", "image": "i"}]},
                       "status": {"phase": "Failed"}});
        let live = json!({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "p", "uid": "u", "resourceVersion": "9"},
                          "spec": {"containers": [{"name": "a", "image": "i"}]},
                          "status": {"phase": "Running"}});
        let r = apply(Some(&live), None, &m);
        assert!(!r.changed, "{:#}", r.object);
        let created = apply(None, None, &m).object;
        assert!(created.get("status").is_none());
        assert!(created["metadata"].get("uid").is_none());
        assert!(created["metadata"].get("annotations").is_none());
    }

    #[test]
    fn containers_merge_by_name() {
        let m1 = json!({"kind": "Pod", "spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let mut live = apply(None, None, &m1).object;
        live["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["containers"][1]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "injected", "image": "sidecar"}));
        // Reorder, change b, drop a.
        let m2 = json!({"kind": "Pod", "spec": {"containers": [
            {"name": "c", "image": "c:1"}, {"name": "b", "image": "b:2"}]}});
        let r = apply(Some(&live), Some(&m1), &m2);
        assert_eq!(
            r.object["spec"]["containers"],
            json!([
                {"name": "c", "image": "c:1"},
                {"name": "b", "image": "b:2", "imagePullPolicy": "IfNotPresent"},
                {"name": "injected", "image": "sidecar"}
            ])
        );
    }

    #[test]
    fn env_mounts_and_ports_merge_by_key() {
        let m1 = deployment("busybox:1");
        let mut live = as_stored(apply(None, None, &m1).object);
        container_mut(&mut live)["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "INJECTED", "value": "x"}));
        let mut m2 = m1.clone();
        let c = container_mut(&mut m2);
        c["env"] = json!([{"name": "B", "value": "20"}]);
        c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data", "readOnly": true}]);
        c["ports"] = json!([{"containerPort": 80, "name": "http"}, {"containerPort": 81}]);
        let r = apply(Some(&live), Some(&m1), &m2);
        let c = container(&r.object);
        assert_eq!(
            c["env"],
            json!([{"name": "B", "value": "20"}, {"name": "INJECTED", "value": "x"}])
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "data", "mountPath": "/data", "readOnly": true}])
        );
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 81}])
        );
    }

    fn container_mut(v: &mut Value) -> &mut Value {
        &mut v["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn same_port_two_protocols() {
        let m = json!({"kind": "Pod", "spec": {"containers": [{"name": "dns", "image": "i", "ports": [
            {"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}]}]}});
        let mut live = apply(None, None, &m).object;
        live["spec"]["containers"][0]["ports"][1]["protocol"] = json!("TCP");
        let r = apply(Some(&live), Some(&m), &m);
        assert!(!r.changed, "{:#}", r.object);
    }

    #[test]
    fn atomic_lists_are_replaced() {
        let m1 = deployment("busybox:1");
        let live = as_stored(apply(None, None, &m1).object);
        let mut m2 = m1.clone();
        container_mut(&mut m2)["args"] = json!(["-v"]);
        let r = apply(Some(&live), Some(&m1), &m2);
        assert_eq!(container(&r.object)["args"], json!(["-v"]));
        // A keyed list whose manifest repeats a key is replaced whole.
        let m3 = json!({"kind": "Pod", "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}});
        let live = json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b"}]}});
        let r = apply(Some(&live), None, &m3);
        assert_eq!(r.object["spec"]["containers"], m3["spec"]["containers"]);
    }

    #[test]
    fn service_ports_merge_by_port() {
        let m1 = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"type": "NodePort", "selector": {"app": "web"},
                                 "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}});
        let mut live = apply(None, None, &m1).object;
        for (i, np) in [30080, 30443].iter().enumerate() {
            live["spec"]["ports"][i]["nodePort"] = json!(np);
            live["spec"]["ports"][i]["protocol"] = json!("TCP");
            live["spec"]["ports"][i]["targetPort"] = live["spec"]["ports"][i]["port"].clone();
        }
        live["spec"]["clusterIP"] = json!("10.96.0.5");
        let r = apply(Some(&live), Some(&m1), &m1);
        assert!(!r.changed);
        let m2 = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"type": "NodePort", "selector": {"app": "web"},
                                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        let r = apply(Some(&live), Some(&m1), &m2);
        assert_eq!(
            r.object["spec"]["ports"],
            json!([{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}])
        );
        assert_eq!(r.object["spec"]["clusterIP"], "10.96.0.5");
    }

    #[test]
    fn null_removes() {
        let live =
            json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}});
        let m = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"a": null}}});
        let r = apply(Some(&live), None, &m);
        assert_eq!(r.object["metadata"]["labels"], json!({"b": "2"}));
        let created = apply(None, None, &m).object;
        assert_eq!(created["metadata"]["labels"], json!({}));
    }

    #[test]
    fn annotation_round_trip() {
        let m1 = deployment("busybox:1");
        let first = apply_with_annotation(None, &m1);
        assert!(first.changed);
        let recorded = last_applied(&first.object).unwrap();
        assert_eq!(recorded, m1);
        let live = as_stored(first.object);
        let again = apply_with_annotation(Some(&live), &m1);
        assert!(!again.changed);
        assert_eq!(again.object, live);
        let m2 = deployment("busybox:2");
        let second = apply_with_annotation(Some(&live), &m2);
        assert!(second.changed);
        assert_eq!(last_applied(&second.object).unwrap(), m2);
        // A manifest carrying an old annotation does not nest it.
        let mut m3 = m2.clone();
        m3["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: "junk", "note": "x"});
        let third = apply_with_annotation(Some(&second.object), &m3);
        let rec = last_applied(&third.object).unwrap();
        assert_eq!(rec["metadata"]["annotations"], json!({"note": "x"}));
        assert_eq!(third.object["metadata"]["annotations"]["note"], "x");
    }

    #[test]
    fn annotation_on_object_created_without_apply() {
        let m = deployment("busybox:1");
        let live = as_stored(m.clone());
        let r = apply_with_annotation(Some(&live), &m);
        assert!(r.changed, "the annotation is new");
        assert!(last_applied(&r.object).is_some());
        assert!(
            last_applied(&json!({"metadata": {"annotations": {LAST_APPLIED_ANNOTATION: "{"}}}))
                .is_none()
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0i64..3).prop_map(Value::from),
            prop::sample::select(vec!["x", "y"]).prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    const KEYS: &[&str] = &[
        "a",
        "b",
        "name",
        "containerPort",
        "protocol",
        "containers",
        "ports",
        "env",
        "spec",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(
                    |m| { Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()) }
                ),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        (
            json_value(),
            prop::sample::select(vec!["Pod", "Service", "Deployment"]),
        )
            .prop_map(|(v, kind)| {
                let mut m = match v {
                    Value::Object(m) => m,
                    other => Map::from_iter([("spec".to_string(), other)]),
                };
                m.insert("kind".into(), Value::from(kind));
                Value::Object(m)
            })
    }

    /// Every non-null scalar the manifest sets outside lists is in the result.
    fn assert_contains(result: &Value, manifest: &Value, path: &str) -> Result<(), TestCaseError> {
        match manifest {
            Value::Object(m) => {
                for (k, v) in m {
                    if v.is_null() || (path.is_empty() && k == "status") {
                        continue;
                    }
                    let r = result
                        .get(k)
                        .ok_or_else(|| TestCaseError::fail(format!("{path}.{k} missing")))?;
                    assert_contains(r, v, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            Value::Array(_) => Ok(()),
            scalar => {
                prop_assert_eq!(result, scalar, "at {}", path);
                Ok(())
            }
        }
    }

    /// Pods whose containers, ports and env often share keys, so keyed lists
    /// merge, drop and keep elements.
    fn pod() -> impl Strategy<Value = Value> {
        let port = (
            0i64..3,
            prop::option::of(prop::sample::select(vec!["TCP", "UDP"])),
        )
            .prop_map(|(p, proto)| match proto {
                Some(proto) => json!({"containerPort": p, "protocol": proto}),
                None => json!({"containerPort": p}),
            });
        let env = (prop::sample::select(vec!["A", "B"]), leaf())
            .prop_map(|(n, v)| json!({"name": n, "value": v}));
        let container = (
            prop::sample::select(vec!["a", "b", "c"]),
            leaf(),
            prop::collection::vec(port, 0..3),
            prop::collection::vec(env, 0..3),
        )
            .prop_map(|(name, image, ports, env)| {
                json!({"name": name, "image": image, "ports": ports, "env": env})
            });
        (
            prop::collection::vec(container, 0..4),
            prop::option::of(leaf()),
        )
            .prop_map(|(cs, node)| {
                let mut p = json!({"kind": "Pod", "spec": {"containers": cs}});
                if let Some(n) = node {
                    p["spec"]["nodeName"] = n;
                }
                p
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn pods_apply_idempotently(live in prop::option::of(pod()), last in prop::option::of(pod()), manifest in pod()) {
            let first = apply(live.as_ref(), last.as_ref(), &manifest);
            let second = apply(Some(&first.object), Some(&manifest), &manifest);
            prop_assert!(!second.changed, "{:#}\nthen\n{:#}", first.object, second.object);
            // Every container the manifest names is there, once.
            let names: Vec<&Value> = manifest["spec"]["containers"].as_array().unwrap().iter().map(|c| &c["name"]).collect();
            let unique: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
            if unique.len() == names.len() {
                let got = first.object["spec"]["containers"].as_array().unwrap();
                for n in names {
                    prop_assert_eq!(got.iter().filter(|c| &c["name"] == n).count(), 1);
                }
            }
        }

        #[test]
        fn applying_twice_changes_nothing(
            live in prop::option::of(object()),
            last in prop::option::of(object()),
            manifest in object(),
        ) {
            let first = apply(live.as_ref(), last.as_ref(), &manifest);
            let second = apply(Some(&first.object), Some(&manifest), &manifest);
            prop_assert!(!second.changed, "{:#}\nthen\n{:#}", first.object, second.object);
            prop_assert_eq!(&second.object, &first.object);
            let with_annotation = apply_with_annotation(live.as_ref(), &manifest);
            let again = apply_with_annotation(Some(&with_annotation.object), &manifest);
            prop_assert!(!again.changed);
        }

        #[test]
        fn manifest_fields_are_set(live in prop::option::of(object()), last in prop::option::of(object()), manifest in object()) {
            let r = apply(live.as_ref(), last.as_ref(), &manifest);
            assert_contains(&r.object, &manifest, "")?;
        }

        #[test]
        fn unapplied_fields_survive_and_dropped_ones_go(
            extra in leaf().prop_filter("non-null", |v| !v.is_null()),
            manifest in object(),
        ) {
            // "mine" was applied before and is gone from the manifest;
            // "theirs" was written by someone else.
            let mut live = apply(None, None, &manifest).object;
            live["theirs"] = extra.clone();
            live["mine"] = extra.clone();
            let mut last = manifest.clone();
            last["mine"] = extra.clone();
            let r = apply(Some(&live), Some(&last), &manifest);
            prop_assert_eq!(r.object.get("theirs"), Some(&extra));
            prop_assert!(r.object.get("mine").is_none());
        }
    }
}
