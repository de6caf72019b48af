//! The container runtime as the agent sees it: a trait with the few calls
//! pod sync needs, and its Docker implementation ([`docker::Docker`]).
//!
//! The types here are the agent's own, not Docker's, so that the pod sync
//! code and its tests do not depend on bollard's models.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::stream::BoxStream;
use skiff_model::Time;

pub mod docker;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container or image does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Pulling an image failed (no registry, no such image, ...).
    #[error("{0}")]
    Pull(String),
    /// Docker refused or failed the request.
    #[error("{0}")]
    Failed(String),
}

/// One port of the pod published on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The node address it is published on.
    pub host_ip: String,
    /// The node port; `None` lets Docker pick a free one.
    pub host_port: Option<u16>,
}

/// What a container is created from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint (a pod's `command`).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's cmd (a pod's `args`).
    pub cmd: Option<Vec<String>>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `container:<id>` to join another container's network namespace.
    pub network_mode: Option<String>,
    pub hostname: Option<String>,
    pub ports: Vec<PortBinding>,
    /// `host-path:container-path[:ro]`.
    pub binds: Vec<String>,
    pub memory_limit_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
}

/// The state of a container as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    Running {
        started_at: Option<Time>,
    },
    Exited {
        exit_code: i64,
        oom_killed: bool,
        /// Why the runtime could not start it, if it could not.
        error: Option<String>,
        started_at: Option<Time>,
        finished_at: Option<Time>,
    },
}

/// A container of the node.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// The address in the runtime's network (pause containers).
    pub ip: Option<String>,
    /// Published ports: (container port, protocol) → node port.
    pub published: BTreeMap<(u16, String), u16>,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

/// Facts about the runtime and the machine it sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeInfo {
    /// `docker://20.10.24`.
    pub version: String,
    pub cpus: i64,
    pub memory_bytes: i64,
    pub kernel_version: String,
    pub operating_system: String,
    pub architecture: String,
}

/// Something that happened to a container, as the event stream says it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    pub id: String,
    pub action: String,
    pub labels: BTreeMap<String, String>,
}

/// What pod sync needs of a container runtime. Every call is idempotent
/// where it can be: stopping a stopped container or removing a missing one
/// succeeds.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Answers when the runtime is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn info(&self) -> impl Future<Output = Result<RuntimeInfo, RuntimeError>> + Send;
    /// Whether the image is present on the node.
    fn image_present(&self, image: &str)
    -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// Pulls the image from its registry.
    fn pull_image(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Imports an image from a root file system tar with an entrypoint.
    fn import_image(
        &self,
        image: &str,
        rootfs_tar: Vec<u8>,
        entrypoint: &[&str],
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Creates a container; returns its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Removes a container (killing it if it runs) with its anonymous volumes.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn inspect(&self, id: &str)
    -> impl Future<Output = Result<ContainerInfo, RuntimeError>> + Send;
    /// The containers (running or not) carrying `label` (`key` or
    /// `key=value`), inspected.
    fn list(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;
    /// The container's output (stdout and stderr as written): the last
    /// `tail` lines (all when `None`), then, with `follow`, what it writes
    /// until it exits.
    fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>>;
    /// Container events from now on, of containers carrying `label`; the
    /// stream ends when the connection does.
    fn events(&self, label: &str) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>>;
}
