//! skiff-model: skiff's resource model, shared by the API server
//! (skiff-control) and the node agent (skiff-agent).
//!
//! - Objects in Kubernetes' JSON shape, so that a Kubernetes manifest of a
//!   supported kind decodes unchanged and an unsupported field is refused by
//!   name: [`pod`], [`core`] (Namespace, Node, Service, Endpoints, Event,
//!   ReplicationController), [`apps`] (ReplicaSet, Deployment, Scale) and
//!   [`meta`] (ObjectMeta, lists, Status).
//! - [`quantity`]: exact resource quantities; [`time`]: RFC 3339 timestamps.
//! - [`object`]: [`Object`], any supported kind, and [`decode_object`],
//!   which names a bad field by its path.
//! - [`resources`]: the resource table (names, scope) and store key layout.
//! - [`labels`] and [`fields`]: label and field selectors.
//!
//! Everything here is pure: no IO, no clock except [`time::Time::now`].
//! Only this crate and `skiff-proto` derive serialization.

pub mod apply;
pub mod apps;
pub mod core;
pub mod defaults;
pub mod fields;
pub mod labels;
pub mod meta;
pub mod names;
pub mod object;
pub mod pod;
pub mod quantity;
pub mod resources;
mod serde_util;
pub mod time;
pub mod validation;

pub use apps::{Deployment, ReplicaSet, Scale};
pub use core::{Endpoints, Event, Namespace, Node, ReplicationController, Service};
pub use labels::{LabelSelector, Selector};
pub use meta::{IntOrString, List, ObjectMeta, Status, StatusCause};
pub use object::{DecodeError, Object, decode, decode_object};
pub use pod::Pod;
pub use quantity::Quantity;
pub use time::Time;
