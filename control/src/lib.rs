//! skiff-control: skiff's control plane (API server, scheduler and
//! controllers, to come) and the `skiff` command-line tool, whose code lives
//! in `src/bin/skiff/`.
//!
//! The control plane reaches state only through the store's etcd v3 API, via
//! `skiff-client`; it never links RocksDB.
