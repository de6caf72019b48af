//! skiff-runtime: how skiff's control plane and its agents reach objects in
//! the store. It depends on the store's client and the resource model only,
//! never on RocksDB, so the agent links it as the control plane does.
//!
//! - [`registry`]: objects as JSON at their keys, compare-and-swap writes,
//!   consistent paged lists and watches from a revision; [`claims`]: keys
//!   an object holds exclusively (a Service's node ports), written in the
//!   same transaction as the object;
//! - [`stamp`]: the uid, clock reading and generated-name suffix a create
//!   needs;
//! - [`events`]: the event recorder, one Event per object and reason with a
//!   count;
//! - the machinery of controllers, written once for all of them and the
//!   scheduler: [`informer`] (list, then watch from the listed revision,
//!   into a local copy; list again after "compacted"; periodic resync),
//!   [`queue`] (a de-duplicating, delayed work queue with per-key
//!   back-off), [`controller`] (bounded workers, never two reconciles of
//!   one key at once, "requeue after") and [`election`] (a leader lease,
//!   and a fence on the leader's writes);
//! - [`process`]: logging and the host name, set up alike by every daemon.

pub mod claims;
pub mod controller;
pub mod election;
pub mod events;
pub mod informer;
pub mod process;
pub mod queue;
pub mod registry;
pub mod stamp;

pub use controller::{Action, Reconcile, run_workers};
pub use election::{Election, Leadership};
pub use events::{EventRecorder, EventType};
pub use informer::{Cache, Informer, Notice};
pub use queue::{Backoff, WorkQueue};
pub use registry::{Expect, Fence, Registry, RegistryError, Stored, Write};
pub use stamp::Stamp;
