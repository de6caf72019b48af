//! The `cluster` integration tests: three real `skiff-store` members (RocksDB,
//! raft over loopback) driven through etcd's gRPC API, Debian's `etcdctl` and
//! the `skiff` CLI, while members are killed, stopped and restarted.
//!
//! `api` runs the API server (`skiff-control`) against a store, over HTTP
//! and with kubectl; with `SKIFF_STORE_BIN=/usr/bin/etcd` every `api` test
//! passes against etcd 3.4.23 too.
//!
//! Run them with `tests/run`, which installs the prerequisites and builds the
//! binaries first. `SKIFF_STORE_BIN=/usr/bin/etcd` runs the same tests against
//! etcd itself, to check the tests' expectations against the reference.
//! Against Debian's etcd 3.4.23 every store test passes except three, where
//! skiff is held to a stricter promise than etcd 3.4 keeps: it accepts an
//! out-of-range sort option (etcd 3.5+ refuses it), it exits by re-raising
//! SIGTERM rather than with status 0, and it answers a second write without
//! quorum with Unknown "context deadline exceeded" instead of Unavailable.

mod agent;
mod api;
mod bad_input;
mod bench;
mod cli;
mod cli_maintenance;
mod cli_resources;
mod cli_watch_lease;
mod compaction;
mod controllers;
mod e2e;
mod etcdctl;
mod etcdctl_watch_lease;
mod failover;
mod faults;
mod kv;
mod lease;
mod maintenance;
mod membership;
mod mvcc;
mod runtime;
mod scheduler;
mod services;
mod snapshot;
mod watch;
mod watch_faults;
