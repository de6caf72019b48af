//! openraft glue: the type configuration, the RocksDB-backed log store, the
//! state machine over [`crate::mvcc`], and the gRPC network between members.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

pub use types::{Command, CommandReply, MemberId, MemberNode, TypeConfig, WireStatus};

/// The openraft handle of a member.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
