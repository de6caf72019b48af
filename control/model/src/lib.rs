//! skiff-model: skiff's resource model, shared by the API server
//! (skiff-control) and the node agent (skiff-agent).
//!
//! - Objects in Kubernetes' JSON shape, so that a Kubernetes manifest of a
//!   supported kind decodes unchanged and an unsupported field is refused by
//!   name: [`pod`], [`core`] (Namespace, Node, Service, Endpoints, Event,
//!   ReplicationController), [`apps`] (ReplicaSet, Deployment, Scale) and
//!   [`meta`] (ObjectMeta, lists, watch events, Status).
//! - [`object`]: [`Object`], any supported kind, and [`decode_object`],
//!   which names a bad field by its path
//!   (`spec.containers[0].imagePullPolicyy: unknown field`).
//! - [`defaults`] and [`validation`]: what the API server does to an object
//!   before storing it (decode, default, validate), as Kubernetes does.
//! - [`apply`](mod@apply): server-side apply as a pure merge of JSON values.
//! - [`resources`]: the resource table (names, short names, scope) and the
//!   store key layout (`/registry/pods/<namespace>/<name>`).
//! - [`labels`] and [`fields`]: label and field selectors.
//! - [`quantity`]: exact resource quantities; [`time`]: RFC 3339 timestamps;
//!   [`names`]: DNS names, label keys and values, port names.
//!
//! Everything here is pure: no IO, and no clock except [`time::Time::now`].
//! Only this crate and `skiff-proto` derive serialization.

pub mod apply;
pub mod apps;
pub mod core;
pub mod defaults;
pub mod fields;
pub mod labels;
pub mod meta;
pub mod names;
pub mod object;
pub mod pod;
pub mod quantity;
pub mod resources;
mod serde_util;
pub mod time;
pub mod validation;

pub use apply::{ApplyResult, LAST_APPLIED_ANNOTATION, apply, apply_with_annotation};
pub use apps::{Deployment, ReplicaSet, Scale};
pub use core::{Endpoints, Event, Namespace, Node, ReplicationController, Service};

/// The annotation of a pod listing the ports its node's agent published
/// for it (JSON: `[{"container","name","containerPort","protocol","hostIP","hostPort"}]`).
pub const HOST_PORTS_ANNOTATION: &str = "skiff.io/host-ports";

/// The annotation of an Endpoints object naming the IP of each listed pod
/// (JSON: pod name → pod IP), written by the Endpoints controller.
pub const POD_IPS_ANNOTATION: &str = "skiff.io/pod-ips";
pub use defaults::default_object;
pub use fields::FieldSelector;
pub use labels::{LabelSelector, Selector};
pub use meta::{CauseType, IntOrString, List, ObjectMeta, Status, StatusCause, WatchEvent};
pub use object::{DecodeError, Object, decode, decode_object};
pub use pod::Pod;
pub use quantity::Quantity;
pub use resources::{RESOURCES, ResourceInfo};
pub use time::Time;
pub use validation::{validate_object, validate_object_update};

/// `PodList` and the other list kinds.
pub type PodList = List<Pod>;
pub type NodeList = List<Node>;
pub type NamespaceList = List<Namespace>;
pub type ServiceList = List<Service>;
pub type EndpointsList = List<Endpoints>;
pub type EventList = List<Event>;
pub type ReplicationControllerList = List<ReplicationController>;
pub type ReplicaSetList = List<ReplicaSet>;
pub type DeploymentList = List<Deployment>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The API server's pipeline end to end: apply a Kubernetes manifest,
    /// decode, default, validate, key.
    #[test]
    fn manifest_to_stored_object() {
        let manifest = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "busybox:1.36",
                        "command": ["httpd", "-f", "-p", "8080"],
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}}]}
                }
            }
        });
        let applied = apply_with_annotation(None, &manifest);
        let mut obj = decode_object(&applied.object).unwrap();
        default_object(&mut obj);
        assert!(validate_object(&obj).is_empty());
        assert_eq!(obj.key().unwrap(), "/registry/deployments/default/web");
        let stored = obj.to_value();
        // Re-applying the same manifest to what was stored changes nothing.
        let again = apply_with_annotation(Some(&stored), &manifest);
        assert!(!again.changed);
        let list: DeploymentList = List::for_resource(obj.resource(), "10".into(), vec![]);
        assert_eq!(list.kind, "DeploymentList");
    }
}
