//! Wire types and gRPC stubs, generated from the `.proto` files in `proto/`.
//!
//! - [`etcdserverpb`] and [`mvccpb`]: etcd's v3 client API with etcd's exact
//!   package, service, message and field names and numbers.
//! - [`skiffraftpb`]: the raft peer service spoken between store members.
//!
//! This crate holds generated code only and depends on nothing of skiff's.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `etcdserverpb` package: the KV, Watch, Lease, Cluster and
/// Maintenance services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The raft peer service between skiff-store members.
pub mod skiffraftpb {
    tonic::include_proto!("skiffraftpb");
}
