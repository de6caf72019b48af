//! What the API server does to an object before it is stored, decided
//! without IO: decode a request body (refusing unknown fields by path), stamp
//! the server's metadata on a create, carry it over on an update, keep
//! `status` apart from the main resource, bump `generation` when the spec
//! changes, default, validate.
//!
//! The clock and the random parts (uid, generated name) come in as a
//! [`Stamp`], so every function here is pure.

use serde_json::{Map, Value};
use skiff_model::{
    DecodeError, Object, ResourceInfo, StatusCause, decode_object, default_object, validate_object,
    validate_object_update,
};

use super::status::{ApiError, invalid};

pub use skiff_runtime::stamp::{GENERATED_SUFFIX_LEN, Stamp, uuid_v4};

/// Which part of an object a write changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status`.
    Main,
    /// The `status` subresource: only `status`.
    Status,
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    let obj = v.as_object_mut().expect("objects are JSON objects");
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("metadata is an object")
}

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Decodes a request body as an object of `resource`. A missing
/// `apiVersion` or `kind` is taken from the path; a different one is
/// refused. Unknown fields and type errors are 400 BadRequest naming the
/// field, missing required fields 422 Invalid.
pub fn decode_body(resource: &'static ResourceInfo, body: &Value) -> Result<Object, ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::BadRequest(
            "the request body is not a JSON object".to_string(),
        ));
    };
    let mut map = map.clone();
    for (field, expected) in [
        ("apiVersion", resource.api_version),
        ("kind", resource.kind),
    ] {
        match map.get(field).and_then(Value::as_str) {
            None | Some("") => {
                map.insert(field.to_string(), Value::String(expected.to_string()));
            }
            Some(v) if v == expected => {}
            Some(v) => {
                return Err(ApiError::BadRequest(format!(
                    "the {field} in the data ({v}) does not match the expected {field} ({expected})"
                )));
            }
        }
    }
    let value = Value::Object(map);
    decode_object(&value).map_err(|e| decode_error(resource, &value, e))
}

fn decode_error(resource: &'static ResourceInfo, body: &Value, e: DecodeError) -> ApiError {
    let prefix = format!(
        "{} in version {:?} cannot be handled as a {}",
        resource.kind, resource.version, resource.kind
    );
    match e {
        DecodeError::Field { path, message } if message == "unknown field" => ApiError::BadRequest(
            format!("{prefix}: strict decoding error: unknown field {path:?}"),
        ),
        DecodeError::Field { path, message } if message == "Required value" => invalid(
            resource,
            meta_str(body, "name"),
            vec![StatusCause {
                reason: skiff_model::CauseType::FieldValueRequired,
                message: "Required value".to_string(),
                field: path,
            }],
        ),
        other => ApiError::BadRequest(format!("{prefix}: {other}")),
    }
}

/// Defaults and validates; the object as JSON when valid.
fn finish(
    resource: &'static ResourceInfo,
    value: &Value,
    old: Option<&Object>,
) -> Result<Value, ApiError> {
    let mut obj = decode_object(value)
        .map_err(|e| ApiError::Internal(format!("re-decoding a prepared object: {e}")))?;
    default_object(&mut obj);
    let causes = match old {
        None => validate_object(&obj),
        Some(old) => validate_object_update(old, &obj),
    };
    if !causes.is_empty() {
        return Err(invalid(resource, &obj.metadata().name, causes));
    }
    Ok(obj.to_value())
}

/// The status an object starts with, as Kubernetes' create strategies set
/// it: a pod is `Pending`, a namespace `Active`, workloads and services start
/// without one; nodes, endpoints and events keep what was sent.
fn initial_status(kind: &str, sent: Option<Value>) -> Option<Value> {
    match kind {
        "Pod" => Some(serde_json::json!({"phase": "Pending"})),
        "Namespace" => Some(serde_json::json!({"phase": "Active"})),
        "ReplicationController" | "ReplicaSet" | "Deployment" | "Service" => None,
        _ => sent,
    }
}

/// Prepares an object to create under `namespace` (the path's; `""` for a
/// cluster-scoped kind): checks the body's namespace, names it from
/// `generateName` when it has no name, stamps uid, creationTimestamp and
/// generation 1, sets the initial status, defaults and validates.
pub fn prepare_create(
    resource: &'static ResourceInfo,
    namespace: &str,
    body: &Value,
    stamp: &Stamp,
) -> Result<Value, ApiError> {
    let obj = decode_body(resource, body)?;
    let mut v = obj.to_value();
    let meta = meta_mut(&mut v);
    if resource.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .to_string(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), Value::String(namespace.to_string()));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if generate.is_empty() {
            return Err(invalid(
                resource,
                "",
                vec![StatusCause {
                    reason: skiff_model::CauseType::FieldValueRequired,
                    message: "name or generateName is required".to_string(),
                    field: "metadata.name".to_string(),
                }],
            ));
        }
        let name = format!("{generate}{}", stamp.suffix);
        meta.insert("name".into(), Value::String(name));
    }
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(field);
    }
    meta.insert("uid".into(), Value::String(stamp.uid.clone()));
    meta.insert("creationTimestamp".into(), Value::String(stamp.now.clone()));
    meta.insert("generation".into(), Value::from(1));
    let map = v.as_object_mut().expect("objects are JSON objects");
    let sent = map.remove("status");
    if let Some(status) = initial_status(resource.kind, sent) {
        map.insert("status".into(), status);
    }
    finish(resource, &v, None)
}

/// The fields whose change bumps `generation`: everything but metadata and
/// status.
fn spec_part(v: &Value) -> Value {
    let mut m = v.as_object().cloned().unwrap_or_default();
    for f in ["metadata", "status", "apiVersion", "kind"] {
        m.remove(f);
    }
    Value::Object(m)
}

/// Prepares an update of `old` (as stored, with its resourceVersion) to
/// `new` (decoded from a request): on the main resource the stored status
/// is kept, on the status subresource only the status changes. The server's
/// metadata is carried over, `generation` bumped when the spec changed;
/// then defaulting and update validation.
pub fn prepare_update(
    resource: &'static ResourceInfo,
    old: &Value,
    new: &Object,
    part: Part,
) -> Result<Value, ApiError> {
    let old_obj = decode_object(old)
        .map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
    let new_value = new.to_value();
    let mut v = match part {
        Part::Main => {
            let mut v = new_value;
            let map = v.as_object_mut().expect("objects are JSON objects");
            map.remove("status");
            if let Some(status) = old.get("status") {
                map.insert("status".into(), status.clone());
            }
            v
        }
        Part::Status => {
            let mut v = old.clone();
            let map = v.as_object_mut().expect("objects are JSON objects");
            map.remove("status");
            if let Some(status) = new_value.get("status") {
                map.insert("status".into(), status.clone());
            }
            v
        }
    };
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let meta = meta_mut(&mut v);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.and_then(|m| m.get(field)) {
            Some(value) => meta.insert(field.to_string(), value.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("resourceVersion");
    let mut prepared = finish(resource, &v, Some(&old_obj))?;
    if spec_part(&prepared) != spec_part(old) {
        let generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut prepared).insert("generation".into(), Value::from(generation + 1));
    }
    Ok(prepared)
}

/// Whether a prepared object equals the stored one, resourceVersion aside:
/// then a write would change nothing.
pub fn unchanged(stored: &Value, prepared: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(stored) == strip(prepared)
}

/// Whether an object is being deleted and no finalizer holds it back: then
/// the write that removed its last finalizer deletes it.
pub fn ready_to_delete(v: &Value) -> bool {
    let meta = v.get("metadata");
    let deleting = meta.and_then(|m| m.get("deletionTimestamp")).is_some();
    let finalizers = meta
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    deleting && !finalizers
}

/// The object marked for deletion at `now` (for an object with
/// finalizers): `None` when it already is.
pub fn mark_deleted(v: &Value, now: &str) -> Option<Value> {
    if v.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some()
    {
        return None;
    }
    let mut v = v.clone();
    let meta = meta_mut(&mut v);
    meta.insert("deletionTimestamp".into(), Value::String(now.to_string()));
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
    Some(v)
}

/// Whether a pod is stopping on its node: bound, with a deletion
/// timestamp.
pub fn is_terminating_pod(pod: &Value) -> bool {
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    bound && !pod["metadata"]["deletionTimestamp"].is_null()
}

/// A pod bound to a node, marked for a graceful delete: `deletionTimestamp`
/// is now plus the grace period (`grace`, else the pod's
/// `terminationGracePeriodSeconds`, else 30 s), as in Kubernetes. `None`
/// when the pod is to go at once: unbound, finished (Succeeded or Failed),
/// a grace period of 0, or already marked with a grace period no longer
/// than this one.
pub fn mark_terminating_pod(
    pod: &Value,
    grace: Option<i64>,
    now: skiff_model::Time,
) -> Option<Value> {
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let grace = grace
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished || grace == 0 {
        return None;
    }
    let current = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if current.is_some_and(|c| c <= grace) {
        return None;
    }
    let mut v = pod.clone();
    let meta = meta_mut(&mut v);
    let deadline = skiff_model::Time::from_unix(now.unix_seconds().saturating_add(grace));
    meta.insert(
        "deletionTimestamp".into(),
        Value::String(deadline.to_string()),
    );
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
    Some(v)
}

/// The finalizer of a foreground deletion: the garbage collector removes
/// it once the object's dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The object marked for a foreground deletion (`deletionTimestamp` and
/// the `foregroundDeletion` finalizer); `None` when it already is.
pub fn mark_foreground(v: &Value, now: &str) -> Option<Value> {
    if v["metadata"]["deletionTimestamp"].is_string() {
        return None;
    }
    let mut v = v.clone();
    let meta = meta_mut(&mut v);
    meta.insert("deletionTimestamp".into(), Value::String(now.to_string()));
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
    let finalizers = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == FOREGROUND_FINALIZER)
    {
        list.push(Value::String(FOREGROUND_FINALIZER.to_string()));
    }
    Some(v)
}

/// Whether `v` has an owner reference to `uid`.
pub fn owned_by(v: &Value, uid: &str) -> bool {
    v["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|o| o["uid"] == uid))
}

/// `v` without its owner reference to `uid`; `None` when it has none.
pub fn without_owner(v: &Value, uid: &str) -> Option<Value> {
    if !owned_by(v, uid) {
        return None;
    }
    let mut v = v.clone();
    let meta = meta_mut(&mut v);
    let refs: Vec<Value> = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter(|o| o["uid"] != uid).cloned().collect())
        .unwrap_or_default();
    if refs.is_empty() {
        meta.remove("ownerReferences");
    } else {
        meta.insert("ownerReferences".into(), Value::Array(refs));
    }
    Some(v)
}

/// Whether a namespace is being deleted (`status.phase: Terminating`).
pub fn is_terminating(namespace: &Value) -> bool {
    namespace
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        == Some("Terminating")
}

/// The namespace with `status.phase: Terminating`; `None` when it already
/// is.
pub fn mark_terminating(namespace: &Value) -> Option<Value> {
    if is_terminating(namespace) {
        return None;
    }
    let mut v = namespace.clone();
    v.as_object_mut()
        .expect("objects are JSON objects")
        .insert("status".into(), serde_json::json!({"phase": "Terminating"}));
    Some(v)
}

/// The name of an object (JSON).
pub fn name_of(v: &Value) -> &str {
    meta_str(v, "name")
}

/// Checks that the body's name, if any, is the one in the path.
pub fn check_name(body: &Value, path_name: &str) -> Result<(), ApiError> {
    let name = meta_str(body, "name");
    if !name.is_empty() && name != path_name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({name}) does not match the name on the URL ({path_name})"
        )));
    }
    Ok(())
}

/// Fills `metadata.name` (and `namespace` for a namespaced kind) from the
/// path when the body leaves them out; refuses a different namespace.
pub fn fill_identity(
    resource: &ResourceInfo,
    body: &mut Value,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    check_name(body, name)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the request body is not a JSON object".to_string(),
        ));
    }
    let meta = meta_mut(body);
    meta.insert("name".into(), Value::String(name.to_string()));
    if resource.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .to_string(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), Value::String(namespace.to_string()));
            }
        }
    }
    Ok(())
}

/// The `metadata.resourceVersion` of a body, as a precondition.
pub fn body_resource_version(body: &Value) -> Result<Option<i64>, ApiError> {
    super::request::parse_resource_version(Some(meta_str(body, "resourceVersion")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_pods_stop_gracefully() {
        let now = skiff_model::Time::from_unix(1_000);
        let unbound = serde_json::json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(mark_terminating_pod(&unbound, None, now), None);
        let bound = serde_json::json!({"metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}});
        let marked = mark_terminating_pod(&bound, None, now).unwrap();
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 10);
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            skiff_model::Time::from_unix(1_010).to_string()
        );
        assert!(is_terminating_pod(&marked));
        assert_eq!(
            mark_terminating_pod(&marked, None, now),
            None,
            "already stopping"
        );
        let shorter = mark_terminating_pod(&marked, Some(2), now).unwrap();
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 2);
        assert_eq!(
            mark_terminating_pod(&bound, Some(0), now),
            None,
            "forced: at once"
        );
    }
    use serde_json::json;
    use skiff_model::resources;

    fn stamp() -> Stamp {
        Stamp {
            uid: "11111111-2222-4333-8444-555555555555".into(),
            now: "2026-12-01T10:00:00Z".into(),
            suffix: "x7k2p".into(),
        }
    }

    fn pods() -> &'static ResourceInfo {
        resources::lookup("pods").unwrap()
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": "web", "image": "nginx:1.14.2"}]}})
    }

    #[test]
    fn create_stamps_defaults_and_validates() {
        let v = prepare_create(pods(), "default", &pod(), &stamp()).unwrap();
        assert_eq!(v["metadata"]["uid"], stamp().uid);
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["metadata"]["generation"], 1);
        assert_eq!(v["metadata"]["creationTimestamp"], "2026-12-01T10:00:00Z");
        assert_eq!(v["status"]["phase"], "Pending");
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        let mut gen_name = pod();
        gen_name["metadata"] = json!({"generateName": "web-"});
        let v = prepare_create(pods(), "default", &gen_name, &stamp()).unwrap();
        assert_eq!(v["metadata"]["name"], "web-x7k2p");
        let mut other_ns = pod();
        other_ns["metadata"]["namespace"] = json!("prod");
        let e = prepare_create(pods(), "default", &other_ns, &stamp()).unwrap_err();
        assert_eq!(e.code().as_u16(), 400);
    }

    #[test]
    fn create_errors_name_the_field() {
        let mut unknown = pod();
        unknown["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
        let e = prepare_create(pods(), "default", &unknown, &stamp()).unwrap_err();
        assert_eq!(e.code().as_u16(), 400);
        assert_eq!(
            e.to_string(),
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagePullPolicyy\""
        );
        let mut no_image = pod();
        no_image["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("image");
        let e = prepare_create(pods(), "default", &no_image, &stamp()).unwrap_err();
        let s = e.to_status();
        assert_eq!(s.code, 422);
        assert_eq!(
            s.details.unwrap().causes[0].field,
            "spec.containers[0].image"
        );
        let wrong_kind = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}});
        assert_eq!(
            prepare_create(pods(), "default", &wrong_kind, &stamp())
                .unwrap_err()
                .code()
                .as_u16(),
            400
        );
    }

    #[test]
    fn update_keeps_status_and_bumps_generation() {
        let mut stored = prepare_create(pods(), "default", &pod(), &stamp()).unwrap();
        stored["metadata"]["resourceVersion"] = json!("5");
        stored["status"] = json!({"phase": "Running"});
        // Labels only: generation stays, status kept.
        let mut new = stored.clone();
        new["metadata"]["labels"] = json!({"a": "b"});
        new["status"] = json!({"phase": "Failed"});
        let obj = decode_body(pods(), &new).unwrap();
        let v = prepare_update(pods(), &stored, &obj, Part::Main).unwrap();
        assert_eq!(v["status"]["phase"], "Running");
        assert_eq!(v["metadata"]["generation"], 1);
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        // The image: generation 2.
        let mut new = stored.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.16");
        let obj = decode_body(pods(), &new).unwrap();
        let v = prepare_update(pods(), &stored, &obj, Part::Main).unwrap();
        assert_eq!(v["metadata"]["generation"], 2);
        // The status subresource changes only the status.
        let mut new = stored.clone();
        new["status"] = json!({"phase": "Succeeded"});
        new["metadata"]["labels"] = json!({"ignored": "yes"});
        let obj = decode_body(pods(), &new).unwrap();
        let v = prepare_update(pods(), &stored, &obj, Part::Status).unwrap();
        assert_eq!(v["status"]["phase"], "Succeeded");
        assert!(v["metadata"].get("labels").is_none());
        assert!(!unchanged(&stored, &v));
        assert!(unchanged(&stored, &{
            let mut s = stored.clone();
            s["metadata"]["resourceVersion"] = json!("99");
            s
        }));
    }

    #[test]
    fn terminating_namespaces() {
        let ns = json!({"metadata": {"name": "prod"}, "status": {"phase": "Active"}});
        assert!(!is_terminating(&ns));
        let t = mark_terminating(&ns).unwrap();
        assert!(is_terminating(&t));
        assert!(mark_terminating(&t).is_none());
    }

    #[test]
    fn deletion_marks() {
        let v = json!({"metadata": {"name": "a", "finalizers": ["x"]}});
        let marked = mark_deleted(&v, "2026-12-01T10:00:00Z").unwrap();
        assert!(!ready_to_delete(&marked));
        assert!(mark_deleted(&marked, "later").is_none());
        let mut released = marked.clone();
        released["metadata"]["finalizers"] = json!([]);
        assert!(ready_to_delete(&released));
        assert!(!ready_to_delete(&v));
    }
}
