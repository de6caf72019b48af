//! The Pod (`v1`) and the pieces of a pod spec shared by every workload kind:
//! containers, ports, resources, volumes, and the pod template.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::quantity::Quantity;
use crate::serde_util::{is_zero, nullable};
use crate::time::Time;

/// A pod: one or more containers sharing a network namespace and volumes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

/// `spec.template` of the workload kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpec,
}

/// `Pod.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub containers: Vec<Container>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub init_containers: Vec<Container>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub volumes: Vec<Volume>,
    /// `Always` (default), `OnFailure` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub node_selector: BTreeMap<String, String>,
    /// Set by the scheduler when it binds the pod to a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Accepted and kept so that manifests written by `kubectl run
    /// --dry-run -o yaml` apply; skiff's pods use the node's resolver.
    /// `ClusterFirst` (default), `ClusterFirstWithHostNet`, `Default`, `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
}

impl PodSpec {
    /// What the pod asks the scheduler to reserve, per resource: the larger
    /// of the sum of its containers' requests and the largest request of one
    /// init container (init containers run one at a time, before the others).
    pub fn total_requests(&self) -> BTreeMap<String, Quantity> {
        let mut total: BTreeMap<String, Quantity> = BTreeMap::new();
        for c in &self.containers {
            for (name, q) in c.requests() {
                *total.entry(name.clone()).or_default() += *q;
            }
        }
        for c in &self.init_containers {
            for (name, q) in c.requests() {
                let slot = total.entry(name.clone()).or_default();
                if *q > *slot {
                    *slot = *q;
                }
            }
        }
        total
    }
}

impl Pod {
    /// Whether the pod's `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.condition("Ready"))
            .is_some_and(|c| c.status == "True")
    }
}

impl Container {
    /// The container's resource requests (empty when it has none).
    pub fn requests(&self) -> impl Iterator<Item = (&String, &Quantity)> {
        self.resources.iter().flat_map(|r| r.requests.iter())
    }
}

/// One container of a pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<EnvVar>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub volume_mounts: Vec<VolumeMount>,
}

/// An environment variable with a literal value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A port a container listens on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub container_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// `resources` of a container: what the scheduler reserves (`requests`) and
/// what the runtime enforces (`limits`), by resource name (`cpu`, `memory`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub limits: BTreeMap<String, Quantity>,
}

/// Where a volume appears inside a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// A pod volume: exactly one of the sources is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
}

/// A scratch directory that lives as long as the pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDirVolumeSource {
    /// `""` (node disk) or `Memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// A directory of the node, mounted into the pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathVolumeSource {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub path: String,
    /// `""`, `DirectoryOrCreate`, `Directory`, `FileOrCreate`, `File`,
    /// `Socket`, `CharDevice`, `BlockDevice`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// `Pod.status`, written by the node agent only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<PodCondition>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(
        default,
        rename = "podIPs",
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pod_ips: Vec<PodIp>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(
        default,
        rename = "hostIPs",
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub host_ips: Vec<PodIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// `Guaranteed`, `Burstable` or `BestEffort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub container_statuses: Vec<ContainerStatus>,
}

impl PodStatus {
    /// The condition of the given type (`Ready`, `PodScheduled`, ...).
    pub fn condition(&self, type_: &str) -> Option<&PodCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// One entry of `status.podIPs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIp {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ip: String,
}

/// A pod condition (`PodScheduled`, `Initialized`, `ContainersReady`, `Ready`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
}

/// The observed state of one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerStatus {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ready: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub restart_count: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub image: String,
    #[serde(
        default,
        rename = "imageID",
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub image_id: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
}

/// The state of a container: at most one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

/// A container not running yet (`ContainerCreating`, `CrashLoopBackOff`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerStateWaiting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A running container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerStateRunning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

/// A container that has exited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerStateTerminated {
    #[serde(default, deserialize_with = "nullable")]
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "busybox:1.36",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c"],
                    "args": ["httpd -f -p 8080"],
                    "workingDir": "/srv",
                    "env": [{"name": "MODE", "value": "prod"}],
                    "ports": [{"containerPort": 8080, "hostPort": 30080, "protocol": "TCP",
                               "name": "http", "hostIP": "0.0.0.0"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                  "limits": {"cpu": "1", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]
                }],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "volumes": [
                    {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}}
                ],
                "restartPolicy": "Always",
                "nodeSelector": {"disk": "ssd"},
                "nodeName": "node-1",
                "terminationGracePeriodSeconds": 30,
                "hostname": "web-0"
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True",
                                "lastTransitionTime": "2024-05-01T12:00:00Z",
                                "lastProbeTime": "2024-05-01T12:00:00Z",
                                "reason": "r", "message": "m"}],
                "podIP": "10.0.0.5",
                "podIPs": [{"ip": "10.0.0.5"}],
                "hostIP": "192.168.1.10",
                "startTime": "2024-05-01T11:59:00Z",
                "message": "ok",
                "reason": "Fine",
                "containerStatuses": [{
                    "name": "app", "ready": true, "restartCount": 2,
                    "image": "busybox:1.36", "imageID": "sha256:abc",
                    "containerID": "docker://123", "started": true,
                    "state": {"running": {"startedAt": "2024-05-01T12:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                        "message": "killed", "startedAt": "2024-05-01T11:59:00Z",
                        "finishedAt": "2024-05-01T11:59:30Z"}}
                }, {
                    "name": "side", "ready": false, "restartCount": 0, "image": "x",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
                }]
            }
        })
    }

    #[test]
    fn pod_round_trips_unchanged() {
        let v = full_pod();
        let pod: Pod = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            pod.spec.containers[0].resources.as_ref().unwrap().requests["cpu"].milli_value(),
            250
        );
        assert_eq!(
            pod.status
                .as_ref()
                .unwrap()
                .condition("Ready")
                .unwrap()
                .status,
            "True"
        );
        assert_eq!(serde_json::to_value(&pod).unwrap(), v);
    }

    #[test]
    fn unknown_fields_are_refused_everywhere() {
        for pointer in [
            "/spec",
            "/spec/containers/0",
            "/spec/containers/0/ports/0",
            "/spec/containers/0/resources",
            "/spec/volumes/0/emptyDir",
            "/status",
            "/status/containerStatuses/0/state",
        ] {
            let mut v = full_pod();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("bogus".into(), json!(1));
            assert!(serde_json::from_value::<Pod>(v).is_err(), "{pointer}");
        }
    }

    #[test]
    fn minimal_pod_and_nulls() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "args": null, "env": null}],
                     "nodeSelector": null}
        }))
        .unwrap();
        assert!(pod.spec.containers[0].args.is_empty());
        assert!(pod.status.is_none());
        let back = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            back["spec"],
            json!({"containers": [{"name": "c", "image": "i"}]})
        );
    }

    #[test]
    fn total_requests_and_readiness() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "c"}
                ],
                "initContainers": [
                    {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}},
                    {"name": "i2", "resources": {"requests": {"example.com/gpu": "1"}}}
                ]
            },
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "qosClass": "Burstable",
                       "hostIPs": [{"ip": "192.168.1.10"}]}
        }))
        .unwrap();
        let total = pod.spec.total_requests();
        assert_eq!(total["cpu"].to_string(), "1");
        assert_eq!(total["memory"].to_string(), "64Mi");
        assert_eq!(total["example.com/gpu"].to_string(), "1");
        assert!(pod.is_ready());
        assert!(!Pod::default().is_ready());
    }

    /// What `kubectl run web --image=nginx --dry-run=client -o yaml` prints.
    #[test]
    fn kubectl_generated_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"creationTimestamp": null, "labels": {"run": "web"}, "name": "web"},
            "spec": {"containers": [{"image": "nginx", "name": "web", "resources": {}}],
                     "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"},
            "status": {}
        }))
        .unwrap();
        assert_eq!(pod.spec.dns_policy.as_deref(), Some("ClusterFirst"));
    }
}
