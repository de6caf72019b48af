//! [`Object`]: any supported kind, and decoding from JSON with errors that
//! name the field by its Kubernetes path
//! (`spec.containers[0].imagePullPolicyy: unknown field`).

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::apps::{Deployment, ReplicaSet, Scale, ScaleSpec, ScaleStatus};
use crate::core::{Endpoints, Event, Namespace, Node, ReplicationController, Service};
use crate::labels::LabelSelector;
use crate::meta::ObjectMeta;
use crate::pod::Pod;
use crate::resources::{self, KeyError, ResourceInfo};

/// An object of any kind skiff serves.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Node(Node),
    Pod(Pod),
    ReplicationController(ReplicationController),
    ReplicaSet(ReplicaSet),
    Deployment(Deployment),
    Service(Service),
    Endpoints(Endpoints),
    Event(Event),
}

/// Why JSON is not an object of a supported kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the object is not a JSON object")]
    NotAnObject,
    #[error("{0}: Required value")]
    MissingTypeField(&'static str),
    #[error("no matches for kind {kind:?} in version {api_version:?}")]
    UnsupportedKind { api_version: String, kind: String },
    /// A field is unknown, missing or of the wrong type. `path` is empty for
    /// the object itself.
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Field { path: String, message: String },
}

macro_rules! each_kind {
    ($obj:expr, $o:ident => $body:expr) => {
        match $obj {
            Object::Namespace($o) => $body,
            Object::Node($o) => $body,
            Object::Pod($o) => $body,
            Object::ReplicationController($o) => $body,
            Object::ReplicaSet($o) => $body,
            Object::Deployment($o) => $body,
            Object::Service($o) => $body,
            Object::Endpoints($o) => $body,
            Object::Event($o) => $body,
        }
    };
}

impl Object {
    /// The kind: `"Pod"`, `"Deployment"`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Node(_) => "Node",
            Object::Pod(_) => "Pod",
            Object::ReplicationController(_) => "ReplicationController",
            Object::ReplicaSet(_) => "ReplicaSet",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::Endpoints(_) => "Endpoints",
            Object::Event(_) => "Event",
        }
    }

    /// The row of the resource table for this kind.
    pub fn resource(&self) -> &'static ResourceInfo {
        let kind = self.kind();
        resources::RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("every Object kind is in the resource table")
    }

    pub fn metadata(&self) -> &ObjectMeta {
        each_kind!(self, o => &o.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_kind!(self, o => &mut o.metadata)
    }

    /// The store key of the object (`/registry/pods/default/web`).
    pub fn key(&self) -> Result<String, KeyError> {
        let meta = self.metadata();
        self.resource().key(&meta.namespace, &meta.name)
    }

    /// Sets `apiVersion` and `kind` to this kind's.
    pub fn set_type_meta(&mut self) {
        let r = self.resource();
        each_kind!(self, o => {
            o.api_version = r.api_version.to_string();
            o.kind = r.kind.to_string();
        })
    }

    /// The object as JSON.
    pub fn to_value(&self) -> Value {
        each_kind!(self, o => to_value(o))
    }
}

impl Object {
    /// `spec.replicas` of a ReplicationController, ReplicaSet or Deployment
    /// (`None` for other kinds; 1 when unset, the default).
    pub fn replicas(&self) -> Option<i32> {
        let r = match self {
            Object::ReplicationController(o) => o.spec.replicas,
            Object::ReplicaSet(o) => o.spec.replicas,
            Object::Deployment(o) => o.spec.replicas,
            _ => return None,
        };
        Some(r.unwrap_or(1))
    }

    /// Sets `spec.replicas`; false for a kind that has none.
    pub fn set_replicas(&mut self, replicas: i32) -> bool {
        let slot = match self {
            Object::ReplicationController(o) => &mut o.spec.replicas,
            Object::ReplicaSet(o) => &mut o.spec.replicas,
            Object::Deployment(o) => &mut o.spec.replicas,
            _ => return false,
        };
        *slot = Some(replicas);
        true
    }

    /// The `autoscaling/v1` Scale of a ReplicationController, ReplicaSet or
    /// Deployment, as its `/scale` subresource serves it.
    pub fn scale(&self) -> Option<Scale> {
        let (selector, observed) = match self {
            Object::ReplicationController(o) => (
                LabelSelector::from_labels(o.spec.selector.clone()),
                o.status.as_ref().map(|s| s.replicas),
            ),
            Object::ReplicaSet(o) => (
                o.spec.selector.clone().unwrap_or_default(),
                o.status.as_ref().map(|s| s.replicas),
            ),
            Object::Deployment(o) => (
                o.spec.selector.clone().unwrap_or_default(),
                o.status.as_ref().map(|s| s.replicas),
            ),
            _ => return None,
        };
        let meta = self.metadata();
        Some(Scale {
            api_version: "autoscaling/v1".to_string(),
            kind: "Scale".to_string(),
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                creation_timestamp: meta.creation_timestamp,
                ..ObjectMeta::default()
            },
            spec: ScaleSpec {
                replicas: self.replicas().unwrap_or(1),
            },
            status: Some(ScaleStatus {
                replicas: observed.unwrap_or(0),
                selector: selector.to_string(),
            }),
        })
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        each_kind!(self, o => o.serialize(serializer))
    }
}

impl TryFrom<&Value> for Object {
    type Error = DecodeError;
    fn try_from(v: &Value) -> Result<Self, DecodeError> {
        decode_object(v)
    }
}

macro_rules! object_from {
    ($($kind:ident),*) => {
        $(impl From<$kind> for Object {
            fn from(o: $kind) -> Self {
                Object::$kind(o)
            }
        })*
    };
}

object_from!(
    Namespace,
    Node,
    Pod,
    ReplicationController,
    ReplicaSet,
    Deployment,
    Service,
    Endpoints,
    Event
);

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("model types serialize to JSON")
}

/// Decodes JSON into the type `T`, refusing unknown fields and reporting the
/// path of the first bad field.
pub fn decode<T: DeserializeOwned>(json: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(json).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        field_error(path, message)
    })
}

/// Rewrites serde's messages into the shape Kubernetes uses: the unknown or
/// missing field joins the path.
fn field_error(path: String, message: String) -> DecodeError {
    if message.starts_with("unknown field") {
        return DecodeError::Field {
            path,
            message: "unknown field".to_string(),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(field) = rest.strip_suffix('`')
    {
        let path = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return DecodeError::Field {
            path,
            message: "Required value".to_string(),
        };
    }
    DecodeError::Field { path, message }
}

/// Decodes a JSON object of any supported kind, chosen by its `apiVersion`
/// and `kind`.
pub fn decode_object(json: &Value) -> Result<Object, DecodeError> {
    let map = json.as_object().ok_or(DecodeError::NotAnObject)?;
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::MissingTypeField("apiVersion"))?;
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::MissingTypeField("kind"))?;
    let unsupported = || DecodeError::UnsupportedKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    };
    let info = resources::by_kind(api_version, kind).ok_or_else(unsupported)?;
    Ok(match info.kind {
        "Namespace" => Object::Namespace(decode(json)?),
        "Node" => Object::Node(decode(json)?),
        "Pod" => Object::Pod(decode(json)?),
        "ReplicationController" => Object::ReplicationController(decode(json)?),
        "ReplicaSet" => Object::ReplicaSet(decode(json)?),
        "Deployment" => Object::Deployment(decode(json)?),
        "Service" => Object::Service(decode(json)?),
        "Endpoints" => Object::Endpoints(decode(json)?),
        "Event" => Object::Event(decode(json)?),
        _ => return Err(unsupported()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}
        })
    }

    fn err(v: &Value) -> String {
        decode_object(v).unwrap_err().to_string()
    }

    #[test]
    fn decodes_each_kind() {
        let cases = [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}}),
            pod(),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "a"}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "a"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "a"}}),
        ];
        for v in cases {
            let obj = decode_object(&v).unwrap();
            assert_eq!(obj.kind(), v["kind"]);
            assert_eq!(obj.metadata().name, v["metadata"]["name"]);
            assert_eq!(obj.resource().kind, obj.kind());
            let back = obj.to_value();
            assert_eq!(back["kind"], v["kind"]);
        }
    }

    #[test]
    fn unknown_field_path() {
        let mut v = pod();
        v["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
        assert_eq!(
            err(&v),
            "spec.containers[0].imagePullPolicyy: unknown field"
        );
        let mut top = pod();
        top["extra"] = json!(1);
        assert_eq!(err(&top), "extra: unknown field");
        let mut meta = pod();
        meta["metadata"]["lables"] = json!({});
        assert_eq!(err(&meta), "metadata.lables: unknown field");
        let mut deep = pod();
        deep["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {"medium": "", "size": "1Gi"}}]);
        assert_eq!(err(&deep), "spec.volumes[0].emptyDir.size: unknown field");
    }

    #[test]
    fn type_error_paths() {
        let mut v = pod();
        v["spec"]["containers"][0]["ports"] = json!([{"containerPort": "eighty"}]);
        let e = err(&v);
        assert!(
            e.starts_with("spec.containers[0].ports[0].containerPort: invalid type: string"),
            "{e}"
        );
        let mut q = pod();
        q["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "lots"}});
        let e = err(&q);
        assert!(
            e.starts_with("spec.containers[0].resources.limits.cpu: "),
            "{e}"
        );
        let mut t = pod();
        t["metadata"]["creationTimestamp"] = json!("yesterday");
        assert!(err(&t).starts_with("metadata.creationTimestamp: invalid RFC 3339 time"));
        let mut c = pod();
        c["status"] = json!({"conditions": [{"type": "Ready"}]});
        assert_eq!(err(&c), "status.conditions[0].status: Required value");
    }

    #[test]
    fn kind_errors() {
        assert_eq!(decode_object(&json!([])), Err(DecodeError::NotAnObject));
        assert_eq!(err(&json!({"kind": "Pod"})), "apiVersion: Required value");
        assert_eq!(err(&json!({"apiVersion": "v1"})), "kind: Required value");
        assert_eq!(
            err(&json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment"})),
            "no matches for kind \"Deployment\" in version \"extensions/v1beta1\""
        );
        assert_eq!(
            err(&json!({"apiVersion": "v1", "kind": "ConfigMap"})),
            "no matches for kind \"ConfigMap\" in version \"v1\""
        );
    }

    #[test]
    fn typed_decode_and_keys() {
        let p: Pod = decode(&pod()).unwrap();
        assert_eq!(p.spec.containers[0].name, "app");
        let obj = Object::Pod(p);
        assert_eq!(obj.key().unwrap(), "/registry/pods/default/web");
        let mut svc = Object::Service(Service::default());
        svc.metadata_mut().name = "web".into();
        svc.metadata_mut().namespace = "prod".into();
        assert_eq!(svc.key().unwrap(), "/registry/services/specs/prod/web");
        svc.set_type_meta();
        assert_eq!(svc.to_value()["apiVersion"], "v1");
        assert_eq!(svc.to_value()["kind"], "Service");
        let e = decode::<Pod>(&json!("x")).unwrap_err();
        assert!(
            matches!(e, DecodeError::Field { ref path, .. } if path.is_empty()),
            "{e:?}"
        );
    }

    #[test]
    fn scale_and_replicas() {
        let mut d = decode_object(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "4"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2}
        }))
        .unwrap();
        let scale = d.scale().unwrap();
        assert_eq!(
            serde_json::to_value(&scale).unwrap(),
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": "web", "namespace": "default", "resourceVersion": "4"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}})
        );
        assert!(d.set_replicas(5));
        assert_eq!(d.replicas(), Some(5));
        let rc = decode_object(&json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "r"}, "spec": {"selector": {"app": "r"}}}))
        .unwrap();
        assert_eq!(rc.replicas(), Some(1));
        assert_eq!(rc.scale().unwrap().status.unwrap().selector, "app=r");
        let mut p = Object::from(Pod::default());
        assert_eq!(p.replicas(), None);
        assert!(!p.set_replicas(1));
        assert!(p.scale().is_none());
    }

    #[test]
    fn serialize_matches_to_value() {
        let obj = Object::try_from(&pod()).unwrap();
        assert_eq!(serde_json::to_value(&obj).unwrap(), obj.to_value());
        assert_eq!(obj.to_value(), pod());
    }
}
