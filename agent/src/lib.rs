//! skiff-agent, the node agent: registers its node, heartbeats through a
//! store lease, and runs the pods bound to its node as Docker containers.
//! Only this crate talks to Docker. It reaches the cluster's state only
//! through the store's etcd v3 API (skiff-client, skiff-runtime's
//! registry), and is the only writer of its Node's status and of the status
//! of the pods bound to it.
//!
//! - [`node`]: the Node object, its status from real measurements
//!   ([`host`]), and liveness: a store lease kept alive on
//!   `/registry/leases/kube-node-lease/<node>`, which disappears when the
//!   agent dies.
//! - [`runtime`]: the container-runtime trait and its Docker implementation
//!   (bollard); [`pause`]: the pause image, built from the agent's own
//!   static pause program.
//! - [`pods`]: pod sync: list and watch the pods bound to the node, one
//!   worker per pod making Docker match the pod and writing the pod's
//!   status when it changes.
//!
//! - [`proxy`]: the node proxy: every Service's node ports, forwarded to
//!   its ready endpoints, round robin; and the service variables of new
//!   containers.
//! - [`server`]: the agent's HTTP endpoint (container logs).
//!
//! [`run`] starts the loops and the endpoint and returns when the shutdown
//! token fires.

use std::time::Duration;

use skiff_client::Client;
use tokio_util::sync::CancellationToken;

pub mod host;
pub mod node;
pub mod pause;
pub mod pods;
pub mod proxy;
pub mod runtime;
pub mod server;

pub use node::NodeConfig;
pub use pods::PodConfig;
pub use proxy::ProxyConfig;

/// Everything the agent is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeConfig,
    pub pods: PodConfig,
    pub proxy: ProxyConfig,
}

/// Runs the agent until `shutdown` fires.
pub async fn run<R: ContainerRuntimeClone>(
    client: Client,
    runtime: R,
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let server = tokio::spawn(server::serve(
        listener,
        runtime.clone(),
        config.node.name.clone(),
        shutdown.clone(),
    ));
    let node = tokio::spawn(node::run(
        client.clone(),
        runtime.clone(),
        config.node.clone(),
        shutdown.clone(),
    ));
    let watches = proxy::Watches::new(
        skiff_runtime::Registry::new(client.clone()),
        config.proxy.resync,
    );
    let mut pod_config = config.pods;
    pod_config.services = Some(proxy::ServiceCaches {
        services: watches.services(),
        host: config.proxy.container_address().to_string(),
    });
    let proxy = tokio::spawn(proxy::run(watches, config.proxy, shutdown.clone()));
    let pods = tokio::spawn(pods::run(client, runtime, pod_config, shutdown.clone()));
    let (node, pods, server, proxy) = tokio::join!(node, pods, server, proxy);
    node?;
    proxy?;
    pods??;
    server??;
    Ok(())
}

/// A runtime that can be shared between the agent's loops.
pub trait ContainerRuntimeClone: runtime::ContainerRuntime + Clone {}
impl<T: runtime::ContainerRuntime + Clone> ContainerRuntimeClone for T {}

/// Default `--heartbeat-interval`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// Default `--lease-ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
