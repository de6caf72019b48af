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
