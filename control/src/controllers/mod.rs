//! The controllers: each reconciles one kind towards its desired state,
//! through skiff-runtime's informers, work queues and workers.
//!
//! - [`replicas`]: ReplicaSets and ReplicationControllers hold their
//!   replica counts;
//! - [`deployment`]: Deployments roll their ReplicaSets;
//! - [`endpoints`]: each Service's Endpoints list where its pods are
//!   reached, ready or not;
//! - [`gc`]: objects whose owners are gone are deleted;
//! - [`nodes`]: nodes whose agent died are marked, and their pods moved.

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod nodes;
pub mod replicas;

use std::collections::BTreeMap;

use serde_json::Value;

/// An object's labels, from its JSON copy (values that are not strings
/// left out).
pub(crate) fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
