//! Node ports of Services: every port of a Service that is not headless
//! gets one from [`NODE_PORT_RANGE`], unique in the cluster.
//!
//! The choice is made here, without IO: a port keeps the node port it had
//! (an update whose manifest leaves `nodePort` out keeps the allocated one,
//! as kube-apiserver does); a port without one takes the first free port
//! from a random start, wrapping around the range. Uniqueness is the
//! store's: the registry writes the Service with one claim key per node
//! port ([`skiff_runtime::claims`]) on the condition that the claim does not
//! exist, so of two concurrent creates that chose one port, one fails; the
//! handler then chooses again if it chose that port, and answers 422 if the
//! request asked for it.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use skiff_model::validation::NODE_PORT_RANGE;
use skiff_model::{CauseType, ResourceInfo, StatusCause};

use super::status::{ApiError, invalid};

/// Whether `resource` is the Service resource.
pub fn is_service(resource: &ResourceInfo) -> bool {
    resource.kind == "Service" && resource.group.is_empty()
}

fn headless(svc: &Value) -> bool {
    svc["spec"]["clusterIP"] == "None"
}

fn protocol(port: &Value) -> &str {
    port["protocol"].as_str().unwrap_or("TCP")
}

fn has_node_port(port: &Value) -> bool {
    port["nodePort"].as_i64().is_some_and(|p| p != 0)
}

/// Gives each port of `new` that has no node port the one the same port
/// (same port number and protocol, else same name) has in `old`, unless
/// another port of `new` already uses it.
pub fn keep_allocated(old: &Value, new: &mut Value) {
    if headless(new) {
        return;
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let Some(ports) = new["spec"]["ports"].as_array_mut() else {
        return;
    };
    let mut used: BTreeSet<i64> = ports
        .iter()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    for port in ports.iter_mut().filter(|p| !has_node_port(p)) {
        let same_port = old_ports
            .iter()
            .find(|o| o["port"] == port["port"] && protocol(o) == protocol(port));
        let same_name = || {
            old_ports
                .iter()
                .find(|o| port["name"].is_string() && o["name"] == port["name"])
        };
        if let Some(np) = same_port
            .or_else(same_name)
            .and_then(|o| o["nodePort"].as_i64())
            .filter(|np| *np != 0 && !used.contains(np))
        {
            port["nodePort"] = json!(np);
            used.insert(np);
        }
    }
}

/// The indexes of the ports of `svc` that need a node port.
pub fn unallocated(svc: &Value) -> Vec<usize> {
    if headless(svc) {
        return Vec::new();
    }
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| !has_node_port(p))
        .map(|(i, _)| i)
        .collect()
}

/// `n` free node ports: the first ones not in `taken` from `start`,
/// wrapping around the range; `None` if fewer than `n` are free.
pub fn choose(taken: &BTreeSet<i32>, n: usize, start: i32) -> Option<Vec<i32>> {
    let (lo, hi) = (*NODE_PORT_RANGE.start(), *NODE_PORT_RANGE.end());
    let start = start.clamp(lo, hi);
    let chosen: Vec<i32> = (start..=hi)
        .chain(lo..start)
        .filter(|p| !taken.contains(p))
        .take(n)
        .collect();
    (chosen.len() == n).then_some(chosen)
}

/// Sets node port `ports[i]` on port `indexes[i]` of `svc`.
pub fn assign(svc: &mut Value, indexes: &[usize], ports: &[i32]) {
    for (&i, &np) in indexes.iter().zip(ports) {
        svc["spec"]["ports"][i]["nodePort"] = json!(np);
    }
}

/// The node ports `svc` asks for.
pub fn requested(svc: &Value) -> BTreeSet<i32> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter_map(|p| i32::try_from(p).ok())
        .collect()
}

/// The 422 for a Service asking for node port `port`, which another
/// Service holds: names the field of each port asking for it.
pub fn already_allocated(
    resource: &'static ResourceInfo,
    name: &str,
    svc: &Value,
    port: i32,
) -> ApiError {
    let causes = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| p["nodePort"].as_i64() == Some(i64::from(port)))
        .map(|(i, _)| StatusCause {
            reason: CauseType::FieldValueInvalid,
            message: format!("Invalid value: {port}: provided port is already allocated"),
            field: format!("spec.ports[{i}].nodePort"),
        })
        .collect();
    invalid(resource, name, causes)
}

/// The error when the range has no free port left.
pub fn range_full() -> ApiError {
    ApiError::Internal(format!(
        "failed to allocate a nodePort: range {}-{} is full",
        NODE_PORT_RANGE.start(),
        NODE_PORT_RANGE.end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ports: Value) -> Value {
        json!({"kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": ports}})
    }

    #[test]
    fn choose_skips_taken_ports_and_wraps() {
        let taken = BTreeSet::from([30000, 30001, 32767]);
        assert_eq!(choose(&taken, 2, 30000), Some(vec![30002, 30003]));
        assert_eq!(choose(&taken, 2, 32766), Some(vec![32766, 30002]));
        assert_eq!(choose(&BTreeSet::new(), 1, 5), Some(vec![30000]));
        let all: BTreeSet<i32> = NODE_PORT_RANGE.collect();
        assert_eq!(choose(&all, 1, 31000), None);
        let mut almost = all.clone();
        almost.remove(&31234);
        assert_eq!(choose(&almost, 1, 32000), Some(vec![31234]));
        assert_eq!(choose(&almost, 2, 32000), None);
    }

    #[test]
    fn unallocated_ports_and_assignment() {
        let mut s = svc(
            json!([{"port": 80, "nodePort": 30080}, {"port": 81}, {"port": 82, "nodePort": 0}]),
        );
        assert_eq!(unallocated(&s), vec![1, 2]);
        assign(&mut s, &[1, 2], &[30100, 30101]);
        assert_eq!(unallocated(&s), Vec::<usize>::new());
        assert_eq!(requested(&s), BTreeSet::from([30080, 30100, 30101]));
        let mut headless = svc(json!([{"port": 80}]));
        headless["spec"]["clusterIP"] = json!("None");
        assert!(unallocated(&headless).is_empty());
    }

    #[test]
    fn an_update_keeps_allocated_ports() {
        let old = svc(json!([
            {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30443}
        ]));
        // Same port: kept. Renumbered port with the same name: kept. A new
        // port: left for allocation.
        let mut new = svc(json!([
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "https", "port": 8443, "protocol": "TCP"},
            {"name": "admin", "port": 9000, "protocol": "TCP"}
        ]));
        keep_allocated(&old, &mut new);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30443);
        assert!(new["spec"]["ports"][2].get("nodePort").is_none());
        // A node port given explicitly wins, and is not handed out twice.
        let mut new = svc(json!([
            {"name": "a", "port": 81, "nodePort": 30080},
            {"name": "http", "port": 80, "protocol": "TCP"}
        ]));
        keep_allocated(&old, &mut new);
        assert!(new["spec"]["ports"][1].get("nodePort").is_none());
    }

    #[test]
    fn a_taken_port_names_its_field() {
        let resource = skiff_model::resources::lookup("services").unwrap();
        assert!(is_service(resource));
        let s =
            svc(json!([{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}]));
        let ApiError::Invalid { causes, .. } = already_allocated(resource, "web", &s, 30080) else {
            panic!("not a 422");
        };
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.ports[1].nodePort");
        assert!(
            causes[0]
                .message
                .contains("provided port is already allocated")
        );
    }
}
