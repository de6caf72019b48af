//! What the proxy should do, decided from the Services and Endpoints
//! objects without IO: which node ports to listen on, and where each one
//! forwards (the ready endpoints of its service port, in the order the
//! Endpoints object lists them); and in which order a connection tries the
//! endpoints (round robin, then the next ones after a failed connect).
//!
//! An endpoint is its node address and host port, which every node can
//! reach. A pod on the proxy's own node is reached at its own IP and
//! container port instead (when the service port's `targetPort` is a
//! number and the Endpoints object names the pod's IP): the same pod
//! without a second proxy (Docker's) in between.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use skiff_model::POD_IPS_ANNOTATION;
use skiff_model::{Endpoints, IntOrString, Service};

/// One node port and where it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `namespace/name` of the service, for logs.
    pub service: String,
    /// The service port's name (empty when it has none).
    pub port_name: String,
    /// Ready endpoints of the port: node address and host port.
    pub backends: Vec<SocketAddr>,
}

fn namespaced_name(meta: &skiff_model::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace, meta.name)
}

/// The routes by node port, from every Service and Endpoints object (as
/// JSON, the informers' copies), for the proxy of node `local_node`.
/// Headless Services, ports that are not TCP and ports without a node port
/// get none; objects that do not decode are skipped.
pub fn routes<'a>(
    services: impl IntoIterator<Item = &'a Value>,
    endpoints: impl IntoIterator<Item = &'a Value>,
    local_node: &str,
) -> BTreeMap<u16, Route> {
    let endpoints: BTreeMap<String, Endpoints> = endpoints
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Endpoints>(v.clone()).ok())
        .map(|e| (namespaced_name(&e.metadata), e))
        .collect();
    let mut out = BTreeMap::new();
    for v in services {
        let Ok(svc) = serde_json::from_value::<Service>(v.clone()) else {
            continue;
        };
        if svc.spec.cluster_ip.as_deref() == Some("None") {
            continue;
        }
        let name = namespaced_name(&svc.metadata);
        let ep = endpoints.get(&name);
        for port in &svc.spec.ports {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Some(node_port) = port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let local = match &port.target_port {
                None => Some(port.port),
                Some(IntOrString::Int(p)) => Some(*p),
                Some(IntOrString::String(_)) => None,
            }
            .and_then(|p| u16::try_from(p).ok())
            .map(|container_port| (local_node, container_port));
            out.insert(
                node_port,
                Route {
                    service: name.clone(),
                    backends: ep
                        .map(|e| backends(e, &port_name, local))
                        .unwrap_or_default(),
                    port_name,
                },
            );
        }
    }
    out
}

/// The pod IPs an Endpoints object names (its `skiff.io/pod-ips`
/// annotation: pod name → IP).
fn pod_ips(ep: &Endpoints) -> BTreeMap<String, IpAddr> {
    ep.metadata
        .annotations
        .get(POD_IPS_ANNOTATION)
        .and_then(|a| serde_json::from_str::<BTreeMap<String, String>>(a).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(pod, ip)| Some((pod, ip.parse().ok()?)))
        .collect()
}

/// The ready addresses of `ep` with the port named `port_name` (TCP). With
/// `local` (node name, container port), a pod on that node whose IP `ep`
/// names is reached at its IP and the container port.
pub fn backends(ep: &Endpoints, port_name: &str, local: Option<(&str, u16)>) -> Vec<SocketAddr> {
    let ips = pod_ips(ep);
    let mut out = Vec::new();
    for subset in &ep.subsets {
        let Some(port) = subset.ports.iter().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        }) else {
            continue;
        };
        let Ok(port) = u16::try_from(port.port) else {
            continue;
        };
        for address in &subset.addresses {
            let pod_ip = address
                .target_ref
                .as_ref()
                .and_then(|pod| ips.get(&pod.name));
            match (local, pod_ip) {
                (Some((node, container_port)), Some(ip))
                    if address.node_name.as_deref() == Some(node) =>
                {
                    out.push(SocketAddr::new(*ip, container_port));
                }
                _ => {
                    if let Ok(ip) = address.ip.parse::<IpAddr>() {
                        out.push(SocketAddr::new(ip, port));
                    }
                }
            }
        }
    }
    out
}

/// The order in which a connection tries `n` endpoints when the round
/// robin counter stands at `counter`: its turn first, then the following
/// ones, each once.
pub fn try_order(n: usize, counter: usize) -> impl Iterator<Item = usize> {
    let start = if n == 0 { 0 } else { counter % n };
    (start..n).chain(0..start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"selector": {"app": name}, "ports": ports}})
    }

    fn endpoints(name: &str, subsets: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": name, "namespace": "default"}, "subsets": subsets})
    }

    #[test]
    fn routes_follow_node_ports_and_ready_addresses() {
        let services = [
            service(
                "web",
                json!([{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                       {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"},
                       {"name": "admin", "port": 81, "protocol": "TCP"}]),
            ),
            service("db", json!([{"port": 5432, "nodePort": 30432}])),
        ];
        let eps = [endpoints(
            "web",
            json!([
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": 32768}]},
                {"notReadyAddresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": 32769}]},
                {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "http", "port": 32770}]}
            ]),
        )];
        let r = routes(&services, &eps, "n1");
        assert_eq!(r.len(), 2);
        assert_eq!(r[&30080].service, "default/web");
        assert_eq!(r[&30080].port_name, "http");
        assert_eq!(
            r[&30080].backends,
            vec![
                "127.0.0.1:32768".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:32770".parse().unwrap()
            ]
        );
        // No Endpoints object yet: a route with no backends.
        assert!(r[&30432].backends.is_empty());
    }

    /// A pod on the proxy's own node is reached at its IP and container
    /// port; one elsewhere, or with a named target port, at its node
    /// address and host port.
    #[test]
    fn pods_on_this_node_are_reached_at_their_own_ip() {
        let services = [
            service(
                "web",
                json!([{"port": 80, "targetPort": 8080, "nodePort": 30080}]),
            ),
            service(
                "named",
                json!([{"port": 80, "targetPort": "http", "nodePort": 30081}]),
            ),
        ];
        let subsets = json!([
            {"addresses": [{"ip": "127.0.0.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "a"}}],
             "ports": [{"port": 32768}]},
            {"addresses": [{"ip": "127.0.0.2", "nodeName": "n2", "targetRef": {"kind": "Pod", "name": "b"}}],
             "ports": [{"port": 32769}]},
            {"addresses": [{"ip": "127.0.0.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "c"}}],
             "ports": [{"port": 32770}]}
        ]);
        let mut eps = [
            endpoints("web", subsets.clone()),
            endpoints("named", subsets),
        ];
        for e in &mut eps {
            e["metadata"]["annotations"] = json!({
                POD_IPS_ANNOTATION: r#"{"a":"172.17.0.2","b":"172.17.0.3"}"#
            });
        }
        let r = routes(&services, &eps, "n1");
        let addrs =
            |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|a| a.parse().unwrap()).collect() };
        // c's IP is not named: its host port.
        assert_eq!(
            r[&30080].backends,
            addrs(&["172.17.0.2:8080", "127.0.0.2:32769", "127.0.0.1:32770"])
        );
        assert_eq!(
            r[&30081].backends,
            addrs(&["127.0.0.1:32768", "127.0.0.2:32769", "127.0.0.1:32770"])
        );
        // From node n2, b is the local one.
        let r = routes(&services, &eps, "n2");
        assert_eq!(
            r[&30080].backends,
            addrs(&["127.0.0.1:32768", "172.17.0.3:8080", "127.0.0.1:32770"])
        );
    }

    #[test]
    fn headless_services_are_not_proxied() {
        let mut s = service("web", json!([{"port": 80, "nodePort": 30080}]));
        s["spec"]["clusterIP"] = json!("None");
        assert!(routes(&[s], &[], "n1").is_empty());
    }

    #[test]
    fn round_robin_then_the_next_ones() {
        assert_eq!(try_order(3, 0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(try_order(3, 4).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(try_order(0, 7).count(), 0);
        // Successive counters spread the first choices evenly.
        let mut firsts = [0; 3];
        for c in 0..300 {
            firsts[try_order(3, c).next().unwrap()] += 1;
        }
        assert_eq!(firsts, [100, 100, 100]);
    }
}
