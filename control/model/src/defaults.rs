//! Defaulting, as Kubernetes does it on create and update: fields a manifest
//! leaves out get the values Kubernetes would give them, so that what is
//! stored is explicit. Every function is idempotent.
//!
//! - namespaced objects: namespace `default` when empty;
//! - pod specs (also inside templates): `restartPolicy: Always`,
//!   `dnsPolicy: ClusterFirst`, `terminationGracePeriodSeconds: 30`, `protocol: TCP` on ports, and
//!   `imagePullPolicy` `Always` for an image tagged `:latest` or untagged,
//!   `IfNotPresent` otherwise; a resource limit without a request also
//!   becomes the request;
//! - ReplicationController, ReplicaSet, Deployment: `replicas: 1`; an RC's
//!   selector (and its labels, when it has none) default to its template's
//!   labels;
//! - Deployment: strategy `RollingUpdate` with `maxSurge` and
//!   `maxUnavailable` of 25%, `revisionHistoryLimit: 10`,
//!   `progressDeadlineSeconds: 600`;
//! - Service: `type: ClusterIP`, `protocol: TCP`, `targetPort` = `port`;
//! - Endpoints: `protocol: TCP` on ports.

use crate::apps::{Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment};
use crate::core::{Endpoints, ReplicationController, Service};
use crate::meta::{IntOrString, ObjectMeta};
use crate::object::Object;
use crate::pod::{Container, Pod, PodSpec, PodTemplateSpec};

/// The namespace of namespaced objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Default `revisionHistoryLimit` of a Deployment.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Default `progressDeadlineSeconds` of a Deployment.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default `maxSurge` and `maxUnavailable` of a rolling update.
pub const DEFAULT_ROLLING_UPDATE_BOUND: &str = "25%";

/// Fills in the defaults of an object of any kind.
pub fn default_object(obj: &mut Object) {
    if obj.resource().namespaced {
        default_namespace(obj.metadata_mut());
    }
    match obj {
        Object::Pod(p) => default_pod(p),
        Object::ReplicationController(rc) => default_replication_controller(rc),
        Object::ReplicaSet(rs) => default_replica_set(rs),
        Object::Deployment(d) => default_deployment(d),
        Object::Service(s) => default_service(s),
        Object::Endpoints(e) => default_endpoints(e),
        Object::Namespace(_) | Object::Node(_) | Object::Event(_) => {}
    }
}

/// Sets the namespace to `default` when empty.
pub fn default_namespace(meta: &mut ObjectMeta) {
    if meta.namespace.is_empty() {
        meta.namespace = DEFAULT_NAMESPACE.to_string();
    }
}

/// The pull policy Kubernetes gives an image that names none: `Always` for
/// `:latest` or no tag, `IfNotPresent` for any other tag or a digest.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // A ':' after the last '/' starts the tag; one before it is a registry port.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Defaults of a Pod.
pub fn default_pod(pod: &mut Pod) {
    default_pod_spec(&mut pod.spec);
}

/// Defaults of a pod spec.
pub fn default_pod_spec(spec: &mut PodSpec) {
    if spec.restart_policy.is_none() {
        spec.restart_policy = Some("Always".to_string());
    }
    if spec.dns_policy.is_none() {
        spec.dns_policy = Some("ClusterFirst".to_string());
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    }
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        default_container(c);
    }
}

/// Defaults of a container.
pub fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        c.image_pull_policy = Some(default_image_pull_policy(image).to_string());
    }
    for p in &mut c.ports {
        if p.protocol.is_none() {
            p.protocol = Some("TCP".to_string());
        }
    }
    // A limit without a request requests the limit.
    if let Some(r) = &mut c.resources {
        for (name, limit) in &r.limits {
            r.requests.entry(name.clone()).or_insert(*limit);
        }
    }
}

fn default_template(template: &mut Option<PodTemplateSpec>) {
    if let Some(t) = template {
        default_pod_spec(&mut t.spec);
    }
}

/// Defaults of a ReplicationController.
pub fn default_replication_controller(rc: &mut ReplicationController) {
    if rc.spec.replicas.is_none() {
        rc.spec.replicas = Some(1);
    }
    if let Some(t) = &rc.spec.template {
        if rc.spec.selector.is_empty() {
            rc.spec.selector = t.metadata.labels.clone();
        }
        if rc.metadata.labels.is_empty() {
            rc.metadata.labels = t.metadata.labels.clone();
        }
    }
    default_template(&mut rc.spec.template);
}

/// Defaults of a ReplicaSet.
pub fn default_replica_set(rs: &mut ReplicaSet) {
    if rs.spec.replicas.is_none() {
        rs.spec.replicas = Some(1);
    }
    default_template(&mut rs.spec.template);
}

/// Defaults of a Deployment.
pub fn default_deployment(d: &mut Deployment) {
    let spec = &mut d.spec;
    if spec.replicas.is_none() {
        spec.replicas = Some(1);
    }
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    let kind = strategy
        .type_
        .get_or_insert_with(|| "RollingUpdate".to_string());
    if kind == "RollingUpdate" {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        ru.max_surge
            .get_or_insert_with(|| IntOrString::from(DEFAULT_ROLLING_UPDATE_BOUND));
        ru.max_unavailable
            .get_or_insert_with(|| IntOrString::from(DEFAULT_ROLLING_UPDATE_BOUND));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds
        .get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    default_template(&mut spec.template);
}

/// Defaults of a Service.
pub fn default_service(s: &mut Service) {
    s.spec.type_.get_or_insert_with(|| "ClusterIP".to_string());
    for p in &mut s.spec.ports {
        p.protocol.get_or_insert_with(|| "TCP".to_string());
        if p.target_port.is_none() {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
}

/// Defaults of Endpoints.
pub fn default_endpoints(e: &mut Endpoints) {
    for subset in &mut e.subsets {
        for p in &mut subset.ports {
            p.protocol.get_or_insert_with(|| "TCP".to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::decode_object;
    use crate::validation::validate_object;
    use serde_json::{Value, json};

    fn defaulted(v: Value) -> Value {
        let mut obj = decode_object(&v).unwrap();
        default_object(&mut obj);
        let once = obj.to_value();
        default_object(&mut obj);
        assert_eq!(obj.to_value(), once, "defaulting is idempotent");
        assert!(
            validate_object(&obj).is_empty(),
            "{:?}",
            validate_object(&obj)
        );
        once
    }

    #[test]
    fn image_pull_policy() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("registry:5000/busybox", "Always"),
            ("registry:5000/busybox:1.0", "IfNotPresent"),
            ("registry:5000/team/busybox:latest", "Always"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("", "Always"),
        ] {
            assert_eq!(default_image_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn pod_defaults() {
        let v = defaulted(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [
                {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "busybox:1.36", "imagePullPolicy": "Never",
                 "ports": [{"containerPort": 81, "protocol": "UDP"}]}
            ], "initContainers": [{"name": "i", "image": "x:2"}]}
        }));
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        assert_eq!(v["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(v["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(v["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(v["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(v["spec"]["containers"][1]["imagePullPolicy"], "Never");
        assert_eq!(v["spec"]["containers"][1]["ports"][0]["protocol"], "UDP");
        assert_eq!(
            v["spec"]["initContainers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let v = defaulted(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}],
                     "restartPolicy": "Never", "terminationGracePeriodSeconds": 0}
        }));
        assert_eq!(v["metadata"]["namespace"], "prod");
        assert_eq!(v["spec"]["restartPolicy"], "Never");
        assert_eq!(v["spec"]["terminationGracePeriodSeconds"], 0);
    }

    #[test]
    fn deployment_defaults() {
        let v = defaulted(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox:1"}]}}}
        }));
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(
            v["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(v["metadata"]["namespace"], "default");
    }

    #[test]
    fn deployment_partial_strategy() {
        let v = defaulted(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}
        }));
        assert_eq!(v["spec"]["replicas"], 0);
        assert_eq!(
            v["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
        );
        let r = defaulted(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}
        }));
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replication_controller_and_replica_set_defaults() {
        let rc = defaulted(json!({
            "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}
        }));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        let rs = defaulted(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}
        }));
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn service_and_endpoints_defaults() {
        let s = defaulted(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "targetPort": "http"}]}
        }));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"name": "a", "protocol": "TCP", "port": 80, "targetPort": 80})
        );
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "http");
        let e = defaulted(json!({
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 30001}]}]
        }));
        assert_eq!(e["subsets"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn cluster_scoped_get_no_namespace() {
        let n = defaulted(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
        assert!(n["metadata"].get("namespace").is_none());
        let ns = defaulted(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}),
        );
        assert!(ns["metadata"].get("namespace").is_none());
        let ev = defaulted(json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}}));
        assert_eq!(ev["metadata"]["namespace"], "default");
    }

    #[test]
    fn limits_become_requests() {
        let v = defaulted(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "a", "image": "busybox",
                "resources": {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "250m"}}}]}
        }));
        assert_eq!(
            v["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "250m", "memory": "128Mi"})
        );
    }

    /// What `kubectl create deployment web --image=nginx --dry-run=client -o
    /// yaml` and `kubectl create service nodeport web --tcp=80:80 --dry-run=client
    /// -o yaml` print: decoded, defaulted and valid.
    #[test]
    fn kubectl_generated_manifests() {
        let d = defaulted(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"creationTimestamp": null, "labels": {"app": "web"}, "name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                     "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                                  "spec": {"containers": [{"image": "nginx", "name": "nginx", "resources": {}}]}}},
            "status": {}
        }));
        assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
        let s = defaulted(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"creationTimestamp": null, "labels": {"app": "web"}, "name": "web"},
            "spec": {"ports": [{"name": "80-80", "port": 80, "protocol": "TCP", "targetPort": 80}],
                     "selector": {"app": "web"}, "type": "NodePort"},
            "status": {"loadBalancer": {}}
        }));
        assert_eq!(s["spec"]["type"], "NodePort");
    }
}
