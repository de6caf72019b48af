//! skiff-runtime: how skiff's control plane and its agents reach objects in
//! the store. It depends on the store's client and the resource model only,
//! never on RocksDB, so the agent links it as the control plane does.
//!
//! - [`registry`]: objects as JSON at their keys, compare-and-swap writes,
//!   consistent paged lists and watches from a revision;
//! - [`stamp`]: the uid, clock reading and generated-name suffix a create
//!   needs;
//! - [`events`]: the event recorder, one Event per object and reason with a
//!   count.

pub mod events;
pub mod registry;
pub mod stamp;

pub use events::{EventRecorder, EventType};
pub use registry::{Registry, RegistryError, Stored};
pub use stamp::Stamp;
