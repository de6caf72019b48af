//! The service environment variables of a pod's containers, in
//! Kubernetes' forms, pointing at this node's proxy: for a Service `web`
//! with a port `http` 80 on node port 30080, and the proxy reachable from
//! containers at 172.17.0.1:
//!
//! ```text
//! WEB_SERVICE_HOST=172.17.0.1
//! WEB_SERVICE_PORT=30080
//! WEB_SERVICE_PORT_HTTP=30080
//! WEB_PORT=tcp://172.17.0.1:30080
//! WEB_PORT_80_TCP=tcp://172.17.0.1:30080
//! WEB_PORT_80_TCP_PROTO=tcp
//! WEB_PORT_80_TCP_PORT=30080
//! WEB_PORT_80_TCP_ADDR=172.17.0.1
//! ```
//!
//! The variable names carry the service port (as Kubernetes'), the values
//! the address and node port where the proxy answers. Pure.

use serde_json::Value;
use skiff_model::Service;

/// `web-api` → `WEB_API`.
fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The variables for the Services of `namespace` among `services` (the
/// informer's JSON copies), with the proxy at `host`. Headless Services
/// and ports without a node port or not TCP give none. Sorted by service
/// name, then in port order, as kubelet does.
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Value>,
    namespace: &str,
    host: &str,
) -> Vec<(String, String)> {
    let mut services: Vec<Service> = services
        .into_iter()
        .filter(|v| v["metadata"]["namespace"] == namespace)
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .filter(|s: &Service| s.spec.cluster_ip.as_deref() != Some("None"))
        .collect();
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out = Vec::new();
    for svc in &services {
        let ports: Vec<(&skiff_model::core::ServicePort, i32)> = svc
            .spec
            .ports
            .iter()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| Some((p, p.node_port.filter(|n| *n > 0)?)))
            .collect();
        let Some((_, first)) = ports.first() else {
            continue;
        };
        let prefix = env_name(&svc.metadata.name);
        out.push((format!("{prefix}_SERVICE_HOST"), host.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.to_string()));
        for (p, node_port) in &ports {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                    node_port.to_string(),
                ));
            }
        }
        out.push((format!("{prefix}_PORT"), format!("tcp://{host}:{first}")));
        for (p, node_port) in &ports {
            let var = format!("{prefix}_PORT_{}_TCP", p.port);
            out.push((var.clone(), format!("tcp://{host}:{node_port}")));
            out.push((format!("{var}_PROTO"), "tcp".to_string()));
            out.push((format!("{var}_PORT"), node_port.to_string()));
            out.push((format!("{var}_ADDR"), host.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_forms_pointing_at_the_proxy() {
        let services = [
            json!({"metadata": {"name": "web-api", "namespace": "default"},
                   "spec": {"ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                                      {"name": "metrics", "port": 9100, "nodePort": 30100},
                                      {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}]}}),
            json!({"metadata": {"name": "db", "namespace": "default"},
                   "spec": {"ports": [{"port": 5432, "nodePort": 30432}]}}),
            json!({"metadata": {"name": "other", "namespace": "prod"},
                   "spec": {"ports": [{"port": 80, "nodePort": 30001}]}}),
            json!({"metadata": {"name": "headless", "namespace": "default"},
                   "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
        ];
        let env = service_env(&services, "default", "172.17.0.1");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_API_SERVICE_HOST"), Some("172.17.0.1"));
        assert_eq!(get("WEB_API_SERVICE_PORT"), Some("30080"));
        assert_eq!(get("WEB_API_SERVICE_PORT_HTTP"), Some("30080"));
        assert_eq!(get("WEB_API_SERVICE_PORT_METRICS"), Some("30100"));
        assert_eq!(get("WEB_API_PORT"), Some("tcp://172.17.0.1:30080"));
        assert_eq!(get("WEB_API_PORT_80_TCP"), Some("tcp://172.17.0.1:30080"));
        assert_eq!(get("WEB_API_PORT_80_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("WEB_API_PORT_80_TCP_PORT"), Some("30080"));
        assert_eq!(get("WEB_API_PORT_80_TCP_ADDR"), Some("172.17.0.1"));
        assert_eq!(get("WEB_API_PORT_9100_TCP_PORT"), Some("30100"));
        assert_eq!(get("WEB_API_SERVICE_PORT_DNS"), None);
        assert_eq!(get("DB_SERVICE_PORT"), Some("30432"));
        assert_eq!(get("OTHER_SERVICE_HOST"), None);
        assert_eq!(get("HEADLESS_SERVICE_HOST"), None);
        // Sorted by service name: db first.
        assert_eq!(env[0].0, "DB_SERVICE_HOST");
    }
}
