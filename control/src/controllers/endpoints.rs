//! The Endpoints controller: for each Service with a selector, an Endpoints
//! object of the same namespace and name that says where the Service's pods
//! can be reached, the ready ones under `addresses` and the others under
//! `notReadyAddresses`.
//!
//! skiff has no overlay network: a pod is reached through the node port
//! its node published for it (the agent's `skiff.io/host-ports`
//! annotation). So an address is what every node can connect to: `ip` is
//! the pod's node address (`status.hostIP`), each port is the host port
//! published for the service port's `targetPort` (a number, or the name of
//! a container port), under the service port's name. Every pod gets a
//! subset of its own, since its host ports are its own. The address also
//! carries `nodeName` and `targetRef` (the pod); the pods' own IPs are in
//! the annotation [`POD_IPS_ANNOTATION`] (pod name → IP).
//!
//! A pod is left out while it has no node address or publishes none of
//! the target ports, and once it is terminating (`deletionTimestamp`) or
//! finished. The Endpoints object is rewritten when what it should list
//! changes (a watch event of a pod, the Service, or the Endpoints object
//! itself), and deleted when the Service goes.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_model::core::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference};
use skiff_model::labels::Selector;
use skiff_model::{IntOrString, Pod, Service, resources};
use skiff_runtime::{
    Action, Cache, Informer, Notice, Reconcile, Registry, RegistryError, Stamp, WorkQueue,
};

use super::labels_of;
use crate::api::objects;

pub use skiff_model::{HOST_PORTS_ANNOTATION, POD_IPS_ANNOTATION};

/// One entry of a pod's [`HOST_PORTS_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: i32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
    pub host_port: i32,
}

/// The host ports a pod's annotation lists (none if it has none or it does
/// not decode).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.metadata
        .annotations
        .get(HOST_PORTS_ANNOTATION)
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default()
}

fn condition_true(pod: &Pod, type_: &str) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

fn finished(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| matches!(p, "Succeeded" | "Failed"))
}

/// The host port `pod` publishes for `target` (a container port number, or
/// a container port's name) over `protocol`.
pub fn resolve_port(
    pod: &Pod,
    published: &[HostPort],
    target: &IntOrString,
    protocol: &str,
) -> Option<i32> {
    let same_protocol = |h: &HostPort| h.protocol.as_deref().unwrap_or("TCP") == protocol;
    match target {
        IntOrString::Int(n) => published
            .iter()
            .find(|h| h.container_port == *n && same_protocol(h))
            .map(|h| h.host_port),
        IntOrString::String(name) => {
            // The name is resolved on the pod's spec, as Kubernetes does, then
            // looked up among the published ports.
            let number = pod
                .spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)?;
            published
                .iter()
                .find(|h| h.container_port == number && same_protocol(h))
                .map(|h| h.host_port)
        }
    }
}

/// What an Endpoints object should hold for `service` given the candidate
/// `pods` (those its selector matches): one subset per reachable pod, in
/// pod name order, and the pods' IPs by name.
pub fn desired_subsets(
    service: &Service,
    pods: &[Pod],
) -> (Vec<EndpointSubset>, BTreeMap<String, String>) {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut subsets = Vec::new();
    let mut pod_ips = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() || finished(pod) {
            continue;
        }
        let status = pod.status.as_ref();
        let Some(host_ip) = status
            .and_then(|s| s.host_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let published = host_ports(pod);
        let ports: Vec<EndpointPort> = service
            .spec
            .ports
            .iter()
            .filter_map(|sp| {
                let protocol = sp.protocol.as_deref().unwrap_or("TCP");
                let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
                let host_port = resolve_port(pod, &published, &target, protocol)?;
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: host_port,
                    protocol: Some(protocol.to_string()),
                })
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        // A host port published on a specific address is reached there.
        let ip = published
            .iter()
            .find_map(|h| h.host_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "0.0.0.0")
            .unwrap_or(host_ip);
        let address = EndpointAddress {
            ip,
            hostname: None,
            node_name: pod.spec.node_name.clone(),
            target_ref: Some(ObjectReference {
                kind: "Pod".to_string(),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
        };
        if let Some(pod_ip) = status.and_then(|s| s.pod_ip.clone()) {
            pod_ips.insert(pod.metadata.name.clone(), pod_ip);
        }
        let (addresses, not_ready_addresses) = if condition_true(pod, "Ready") {
            (vec![address], Vec::new())
        } else {
            (Vec::new(), vec![address])
        };
        subsets.push(EndpointSubset {
            addresses,
            not_ready_addresses,
            ports,
        });
    }
    (subsets, pod_ips)
}

/// The Endpoints object `current` (if any) turned into what it should be:
/// `None` when it already is.
pub fn endpoints_object(
    service: &Service,
    subsets: &[EndpointSubset],
    pod_ips: &BTreeMap<String, String>,
    current: Option<&Value>,
) -> Option<Value> {
    let subsets = serde_json::to_value(subsets).expect("subsets serialize");
    let pod_ips = serde_json::to_string(pod_ips).expect("a map serializes");
    let labels = serde_json::to_value(&service.metadata.labels).expect("labels serialize");
    let mut next = match current {
        Some(v) => v.clone(),
        None => json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": service.metadata.name,
                "namespace": service.metadata.namespace,
            },
        }),
    };
    let meta = &mut next["metadata"];
    if service.metadata.labels.is_empty() {
        if let Some(m) = meta.as_object_mut() {
            m.remove("labels");
        }
    } else {
        meta["labels"] = labels;
    }
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][POD_IPS_ANNOTATION] = Value::String(pod_ips);
    match next.as_object_mut() {
        Some(o) if subsets.as_array().is_some_and(|a| a.is_empty()) => {
            o.remove("subsets");
        }
        Some(o) => {
            o.insert("subsets".to_string(), subsets);
        }
        None => {}
    }
    match current {
        Some(c) if *c == next => None,
        _ => Some(next),
    }
}

fn selector_of(service: &Value) -> Option<Selector> {
    let labels: BTreeMap<String, String> = service["spec"]["selector"]
        .as_object()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    if labels.is_empty() {
        return None;
    }
    Selector::from_labels(&labels).ok()
}

/// The Endpoints controller.
pub struct EndpointsController {
    registry: Registry,
    services: Cache,
    endpoints: Cache,
    pods: Cache,
}

impl std::fmt::Debug for EndpointsController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointsController")
            .finish_non_exhaustive()
    }
}

fn services_resource() -> &'static skiff_model::ResourceInfo {
    resources::lookup("services").expect("services are a resource")
}

fn endpoints_resource() -> &'static skiff_model::ResourceInfo {
    resources::lookup("endpoints").expect("endpoints are a resource")
}

/// The key of the Service an object of the same namespace and name
/// (its Endpoints) belongs to.
fn service_key_of(v: &Value) -> Option<String> {
    let meta = &v["metadata"];
    services_resource()
        .key(meta["namespace"].as_str()?, meta["name"].as_str()?)
        .ok()
}

impl EndpointsController {
    pub fn new(registry: Registry, services: Cache, endpoints: Cache, pods: Cache) -> Self {
        EndpointsController {
            registry,
            services,
            endpoints,
            pods,
        }
    }

    /// Queues a Service when it changes, when its Endpoints object
    /// changes, and when a pod its selector matches (before or after the
    /// change) changes.
    pub fn wire(
        services: &mut Informer,
        endpoints: &mut Informer,
        pods: &mut Informer,
        queue: &Arc<WorkQueue<String>>,
    ) {
        let q = queue.clone();
        services.on_change(move |notice| q.add(notice.key().to_string()));
        let q = queue.clone();
        endpoints.on_change(move |notice| {
            if let Some(key) = service_key_of(notice.object()) {
                q.add(key);
            }
        });
        let q = queue.clone();
        let service_cache = services.cache();
        pods.on_change(move |notice| {
            let (old, new) = match notice {
                Notice::Upsert { old, new, .. } => (*old, Some(*new)),
                Notice::Delete { old, .. } => (Some(*old), None),
                Notice::Resync { .. } => return,
            };
            let pod = notice.object();
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
            let label_sets: Vec<BTreeMap<String, String>> =
                old.into_iter().chain(new).map(labels_of).collect();
            for svc in service_cache.filter(|s| s["metadata"]["namespace"] == ns) {
                let Some(selector) = selector_of(&svc) else {
                    continue;
                };
                if label_sets.iter().any(|l| selector.matches(l))
                    && let Some(key) = service_key_of(&svc)
                {
                    q.add(key);
                }
            }
        });
    }

    /// Deletes the Endpoints object at `key` if there is one.
    async fn delete_endpoints(&self, key: &str) -> anyhow::Result<()> {
        for _ in 0..skiff_runtime::registry::MAX_UPDATE_ATTEMPTS {
            let current = match self.registry.get(key).await {
                Err(RegistryError::NotFound) => return Ok(()),
                other => other?,
            };
            match self.registry.delete(key, current.mod_revision).await {
                Ok(_) => {
                    tracing::info!(endpoints = %key, "deleted the endpoints of a deleted service");
                    return Ok(());
                }
                Err(RegistryError::NotFound) => return Ok(()),
                Err(RegistryError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Conflict.into())
    }
}

impl Reconcile for EndpointsController {
    fn name(&self) -> &str {
        "endpoints"
    }

    async fn reconcile(&self, key: &str) -> anyhow::Result<Action> {
        let Some(rest) = key.strip_prefix(&services_resource().prefix(None)) else {
            return Ok(Action::Done);
        };
        let Some((namespace, name)) = rest.split_once('/') else {
            return Ok(Action::Done);
        };
        let ep_key = endpoints_resource().key(namespace, name)?;
        let Some(svc_value) = self.services.get(key) else {
            if self.endpoints.get(&ep_key).is_some() {
                self.delete_endpoints(&ep_key).await?;
            }
            return Ok(Action::Done);
        };
        let Some(selector) = selector_of(&svc_value) else {
            // No selector: its Endpoints are the user's to write.
            return Ok(Action::Done);
        };
        let service: Service =
            serde_json::from_value((*svc_value).clone()).context("decode the service")?;
        let pods: Vec<Pod> = self
            .pods
            .filter(|p| p["metadata"]["namespace"] == namespace && selector.matches(&labels_of(p)))
            .iter()
            .filter_map(|p| serde_json::from_value((**p).clone()).ok())
            .collect();
        let (subsets, pod_ips) = desired_subsets(&service, &pods);
        let current = self.endpoints.get(&ep_key);
        let Some(next) = endpoints_object(&service, &subsets, &pod_ips, current.as_deref()) else {
            return Ok(Action::Done);
        };
        let ready: usize = subsets.iter().map(|s| s.addresses.len()).sum();
        let not_ready: usize = subsets.iter().map(|s| s.not_ready_addresses.len()).sum();
        match current {
            None => {
                let prepared =
                    objects::prepare_create(endpoints_resource(), namespace, &next, &Stamp::now())
                        .map_err(|e| anyhow::anyhow!("endpoints of {namespace}/{name}: {e}"))?;
                match self.registry.create(&ep_key, &prepared).await {
                    Ok(_) | Err(RegistryError::AlreadyExists) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(cur) => {
                let expected = cur["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse::<i64>().ok())
                    .unwrap_or(0);
                match self.registry.update(&ep_key, &next, expected).await {
                    // The copy is behind: its watch event queues the
                    // service again.
                    Ok(_) | Err(RegistryError::Conflict | RegistryError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tracing::info!(service = %key, ready, not_ready, "endpoints written");
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(target: Value) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": target,
                                "protocol": "TCP", "nodePort": 30080}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, ready: bool, host_port: i32) -> Pod {
        let ports = json!([{"container": "web", "name": "http", "containerPort": 8080,
                            "protocol": "TCP", "hostPort": host_port}]);
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"},
                         "annotations": {HOST_PORTS_ANNOTATION: ports.to_string()}},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "x",
                     "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": format!("172.17.0.{host_port}"),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_pods_are_apart() {
        let svc = service(json!(8080));
        let pods = vec![pod("b", false, 2), pod("a", true, 1)];
        let (subsets, ips) = desired_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 2);
        assert_eq!(subsets[0].addresses.len(), 1);
        assert_eq!(subsets[0].addresses[0].ip, "127.0.0.1");
        assert_eq!(subsets[0].addresses[0].node_name.as_deref(), Some("n1"));
        assert_eq!(
            subsets[0].addresses[0].target_ref.as_ref().unwrap().name,
            "a"
        );
        assert_eq!(subsets[0].ports[0].port, 1);
        assert_eq!(subsets[0].ports[0].name.as_deref(), Some("http"));
        assert!(subsets[1].addresses.is_empty());
        assert_eq!(subsets[1].not_ready_addresses.len(), 1);
        assert_eq!(subsets[1].ports[0].port, 2);
        assert_eq!(ips["a"], "172.17.0.1");
    }

    #[test]
    fn target_ports_by_name_and_number() {
        let p = pod("a", true, 31000);
        assert_eq!(
            resolve_port(
                &p,
                &host_ports(&p),
                &IntOrString::String("http".into()),
                "TCP"
            ),
            Some(31000)
        );
        assert_eq!(
            resolve_port(&p, &host_ports(&p), &IntOrString::Int(8080), "TCP"),
            Some(31000)
        );
        assert_eq!(
            resolve_port(&p, &host_ports(&p), &IntOrString::Int(8080), "UDP"),
            None
        );
        assert_eq!(
            resolve_port(
                &p,
                &host_ports(&p),
                &IntOrString::String("admin".into()),
                "TCP"
            ),
            None
        );
        let (subsets, _) = desired_subsets(&service(json!("http")), &[p]);
        assert_eq!(subsets[0].ports[0].port, 31000);
    }

    #[test]
    fn unreachable_terminating_and_finished_pods_are_left_out() {
        let svc = service(json!(9090));
        assert!(desired_subsets(&svc, &[pod("a", true, 1)]).0.is_empty());
        let svc = service(json!(8080));
        let mut terminating = pod("a", true, 1);
        terminating.metadata.deletion_timestamp = Some("2026-12-01T00:00:00Z".parse().unwrap());
        let mut done = pod("b", false, 2);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut unbound = pod("c", false, 3);
        unbound.status.as_mut().unwrap().host_ip = None;
        unbound.metadata.annotations.clear();
        assert!(
            desired_subsets(&svc, &[terminating, done, unbound])
                .0
                .is_empty()
        );
    }

    #[test]
    fn the_object_is_rewritten_only_when_it_changes() {
        let svc = service(json!(8080));
        let (subsets, ips) = desired_subsets(&svc, &[pod("a", true, 1)]);
        let created = endpoints_object(&svc, &subsets, &ips, None).unwrap();
        assert_eq!(created["metadata"]["name"], "web");
        assert_eq!(created["metadata"]["labels"]["app"], "web");
        assert_eq!(created["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
        assert_eq!(created["subsets"][0]["ports"][0]["port"], 1);
        assert_eq!(
            created["metadata"]["annotations"][POD_IPS_ANNOTATION],
            r#"{"a":"172.17.0.1"}"#
        );
        assert_eq!(endpoints_object(&svc, &subsets, &ips, Some(&created)), None);
        let empty = endpoints_object(&svc, &[], &BTreeMap::new(), Some(&created)).unwrap();
        assert!(empty.get("subsets").is_none());
    }
}
