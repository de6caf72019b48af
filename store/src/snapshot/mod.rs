//! Snapshots in etcd's format: the state machine as an etcd backend file.
//!
//! Modules: [`bbolt`] (the file format).

pub mod bbolt;
