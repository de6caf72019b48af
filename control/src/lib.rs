//! skiff-control: skiff's control plane and the `skiff` command-line tool,
//! whose code lives in `src/bin/skiff/`.
//!
//! - [`api`]: the API server (Kubernetes' REST API over the store), run by
//!   the `skiff-control` binary (`src/bin/skiff-control.rs`);
//! - [`table`]: the columns `kubectl get` prints for each kind, shared by
//!   the API server's Table responses and the CLI;
//! - [`manager`]: leader election, and the control loops of the leader;
//! - [`scheduler`]: binds pods to nodes;
//! - [`controllers`]: ReplicaSets, ReplicationControllers, Deployments and
//!   the garbage collector.
//!
//! The control plane reaches state only through the store's etcd v3 API,
//! via `skiff-client` and `skiff-runtime`; it never links RocksDB.

pub mod api;
pub mod controllers;
pub mod manager;
pub mod scheduler;
pub mod table;
