//! skiff-store: one member of skiff's replicated key-value store.
//!
//! A member keeps a raft log (openraft) and a state machine (etcd-style MVCC)
//! in one RocksDB, and serves etcd's v3 gRPC API to clients and skiff's raft
//! peer service to the other members.
//!
//! - [`engine`]: the storage engine trait, RocksDB and in-memory.
//! - [`mvcc`]: revisions, versions, ranges, txns and compaction over the engine.
//! - [`raft`]: openraft glue: type config, log store, state machine, network.
//! - [`server`]: the gRPC services and the member's wiring.
//! - [`snapshot`]: snapshots in etcd's backend format (bbolt), and restore.

pub mod engine;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod snapshot;

mod crc32c;
