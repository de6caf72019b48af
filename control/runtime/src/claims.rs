//! Claims: store keys an object holds exclusively, written and released in
//! the same transaction as the object itself.
//!
//! A Service holds one claim per node port, `/registry/ranges/servicenodeports/<port>`,
//! whose value names the Service. The [`Registry`](crate::Registry) writes a
//! Service with the condition that each claim it adds does not exist yet,
//! and releases the claims a write drops (or a delete removes) in the same
//! transaction: two Services can never hold one node port, whatever the
//! interleaving of their writes, and a refused write claims nothing.
//!
//! Pure: which claims an object holds is decided here, the registry does
//! the IO.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use skiff_model::validation::NODE_PORT_RANGE;

/// Where Services live in the store.
pub const SERVICES_PREFIX: &str = "/registry/services/specs/";
/// Where node port claims live: one key per allocated port.
pub const NODE_PORT_CLAIMS_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// The claim key of node port `port`.
pub fn node_port_claim(port: i32) -> String {
    format!("{NODE_PORT_CLAIMS_PREFIX}{port}")
}

/// The node port a claim key stands for.
pub fn claimed_node_port(claim: &str) -> Option<i32> {
    claim.strip_prefix(NODE_PORT_CLAIMS_PREFIX)?.parse().ok()
}

/// Whether objects under `key` (a key or a prefix) may hold claims.
pub fn may_hold_claims(key: &str) -> bool {
    key.starts_with(SERVICES_PREFIX) || SERVICES_PREFIX.starts_with(key)
}

/// The claims the object `value` stored at `key` holds: a Service's node
/// ports (each port once, whatever its protocols), nothing for other kinds.
pub fn claims_of(key: &str, value: &Value) -> BTreeSet<String> {
    if !key.starts_with(SERVICES_PREFIX) {
        return BTreeSet::new();
    }
    value["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter_map(|p| i32::try_from(p).ok())
        .filter(|p| NODE_PORT_RANGE.contains(p))
        .map(node_port_claim)
        .collect()
}

/// The value of a claim: who holds it.
pub fn claim_value(holder_key: &str) -> Value {
    json!({"holder": holder_key})
}

/// What a write of `new` over `old` at one key does to claims: the claims
/// to add (each must not exist yet) and the ones to release.
pub fn claim_changes(
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let before = old.map(|v| claims_of(key, v)).unwrap_or_default();
    let after = new.map(|v| claims_of(key, v)).unwrap_or_default();
    let added = after.difference(&before).cloned().collect();
    let released = before.difference(&after).cloned().collect();
    (added, released)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ports: Value) -> Value {
        json!({"kind": "Service", "spec": {"ports": ports}})
    }

    #[test]
    fn services_claim_their_node_ports() {
        let key = "/registry/services/specs/default/web";
        let v = svc(json!([
            {"port": 80, "nodePort": 30080, "protocol": "TCP"},
            {"port": 80, "nodePort": 30080, "protocol": "UDP"},
            {"port": 81},
            {"port": 82, "nodePort": 8080}
        ]));
        assert_eq!(
            claims_of(key, &v),
            BTreeSet::from(["/registry/ranges/servicenodeports/30080".to_string()])
        );
        assert!(claims_of("/registry/pods/default/web", &v).is_empty());
        assert_eq!(
            claimed_node_port("/registry/ranges/servicenodeports/30080"),
            Some(30080)
        );
        assert_eq!(claimed_node_port("/registry/pods/x"), None);
    }

    #[test]
    fn changes_add_and_release() {
        let key = "/registry/services/specs/default/web";
        let old = svc(json!([{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]));
        let new = svc(json!([{"port": 80, "nodePort": 30080}, {"port": 82, "nodePort": 30082}]));
        let (added, released) = claim_changes(key, Some(&old), Some(&new));
        assert_eq!(added, BTreeSet::from([node_port_claim(30082)]));
        assert_eq!(released, BTreeSet::from([node_port_claim(30081)]));
        let (added, released) = claim_changes(key, Some(&old), None);
        assert!(added.is_empty());
        assert_eq!(released.len(), 2);
        let (added, released) = claim_changes(key, None, Some(&new));
        assert_eq!(added.len(), 2);
        assert!(released.is_empty());
    }

    #[test]
    fn prefixes_that_may_hold_claims() {
        assert!(may_hold_claims("/registry/services/specs/default/"));
        assert!(may_hold_claims("/registry/services/specs/"));
        assert!(!may_hold_claims("/registry/services/endpoints/default/"));
        assert!(!may_hold_claims("/registry/pods/default/"));
    }
}
