//! The agent's Node: registration, status and liveness.
//!
//! - On start the agent creates its Node (`/registry/nodes/<name>`) or
//!   updates the one there: its labels (`kubernetes.io/hostname`,
//!   `kubernetes.io/os`, `kubernetes.io/arch` and `--labels`; other labels
//!   are kept) and its status.
//! - Status (addresses, capacity and allocatable cpu, memory and pods,
//!   nodeInfo, conditions Ready, MemoryPressure and DiskPressure from real
//!   measurements) is computed every heartbeat interval and written only
//!   when it differs from the stored one, heartbeat times aside, or when
//!   [`STATUS_REPORT_INTERVAL`] has passed since the last write.
//! - Liveness: the agent holds a store lease (TTL `--lease-ttl`) that it
//!   keeps alive every `--heartbeat-interval`, attached to the key
//!   `/registry/leases/kube-node-lease/<node>` (where Kubernetes keeps node
//!   leases). The key holds a Kubernetes-shaped `Lease` object whose
//!   `spec.leaseDurationSeconds` is the TTL and whose annotation
//!   `skiff.io/store-lease` is the store lease id. When the agent dies the
//!   lease expires and the store deletes the key: a watch on
//!   `/registry/leases/kube-node-lease/` sees a dead node as a DELETE,
//!   without polling. A lease found expired (the agent was cut off longer
//!   than the TTL) is replaced by a new one and the key written again.
//!
//! Deciding the status is pure ([`node_status`], [`same_status`]); the
//! loops in [`run`] do the IO.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_client::Client;
use skiff_model::core::{
    DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use skiff_model::{Node, Quantity, Time, resources};
use skiff_proto::etcdserverpb::PutRequest;
use skiff_runtime::{Registry, RegistryError, Stamp};
use tokio_util::sync::CancellationToken;

use crate::host::{self, Disk, Memory};
use crate::runtime::{ContainerRuntime, RuntimeInfo};

/// Pods a node accepts (Kubernetes' default `maxPods`).
pub const MAX_PODS: i64 = 110;
/// Status is written at least this often even when nothing changed.
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Below this much available memory the node reports MemoryPressure
/// (kubelet's default eviction threshold `memory.available<100Mi`).
pub const MEMORY_PRESSURE_BYTES: u64 = 100 << 20;
/// Below this share of free disk in the data dir the node reports
/// DiskPressure (kubelet's `nodefs.available<10%`).
pub const DISK_PRESSURE_PERCENT: u64 = 10;
/// Bound on asking the container runtime for its info; past it the node
/// is not Ready.
pub const RUNTIME_INFO_TIMEOUT: Duration = Duration::from_secs(30);
/// Where node leases live.
pub const LEASE_PREFIX: &str = "/registry/leases/kube-node-lease/";
/// The annotation of the Lease object holding the store lease id.
pub const STORE_LEASE_ANNOTATION: &str = "skiff.io/store-lease";

/// What the agent knows about its node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// The node's InternalIP, where pod ports are published.
    pub address: String,
    /// `--labels`.
    pub labels: BTreeMap<String, String>,
    /// `--system-reserved`: what allocatable leaves out of capacity.
    pub reserved: BTreeMap<String, Quantity>,
    pub heartbeat_interval: Duration,
    pub lease_ttl: Duration,
    pub data_dir: PathBuf,
    /// The port of the agent's HTTP endpoint ([`crate::server`]).
    pub port: u16,
}

/// One measurement of the node.
#[derive(Debug, Clone)]
pub struct Facts {
    pub memory: Memory,
    pub disk: Disk,
    /// The runtime's info, or why it could not be had.
    pub runtime: Result<RuntimeInfo, String>,
    pub os_image: String,
    pub kernel_version: String,
    pub machine_id: String,
    pub boot_id: String,
    pub cpus: usize,
}

/// The store key of a node's lease.
pub fn lease_key(node: &str) -> String {
    format!("{LEASE_PREFIX}{node}")
}

/// The labels the agent sets on its Node.
pub fn node_labels(config: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            host::architecture().to_string(),
        ),
    ]);
    labels.extend(config.labels.clone());
    labels
}

fn condition(
    type_: &str,
    on: bool,
    (true_reason, true_message): (&str, &str),
    (false_reason, false_message): (&str, &str),
) -> NodeCondition {
    let (reason, message) = if on {
        (true_reason, true_message)
    } else {
        (false_reason, false_message)
    };
    NodeCondition {
        type_: type_.to_string(),
        status: if on { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: None,
        last_transition_time: None,
    }
}

/// Capacity less what is reserved, never below zero.
pub fn allocatable(
    capacity: &BTreeMap<String, Quantity>,
    reserved: &BTreeMap<String, Quantity>,
) -> BTreeMap<String, Quantity> {
    capacity
        .iter()
        .map(|(k, c)| {
            let left = match reserved.get(k) {
                Some(r) => c
                    .checked_sub(*r)
                    .filter(|q| !q.is_negative())
                    .unwrap_or_else(|| Quantity::from_units(0)),
                None => *c,
            };
            (k.clone(), left)
        })
        .collect()
}

/// The node's status from one measurement. Conditions keep their
/// `lastTransitionTime` from `previous` while their status stays; every
/// heartbeat time is `now`.
pub fn node_status(
    config: &NodeConfig,
    facts: &Facts,
    previous: Option<&NodeStatus>,
    now: Time,
) -> NodeStatus {
    let info = facts.runtime.as_ref().ok();
    let cpus = info.map_or(facts.cpus as i64, |i| i.cpus.max(1));
    let memory_kib = facts.memory.total_bytes / 1024;
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity::from_units(cpus)),
        (
            "memory".to_string(),
            Quantity::parse(&format!("{memory_kib}Ki")).expect("a Ki quantity parses"),
        ),
        ("pods".to_string(), Quantity::from_units(MAX_PODS)),
    ]);
    let memory_pressure = facts.memory.available_bytes < MEMORY_PRESSURE_BYTES;
    let disk_pressure = facts.disk.total_bytes > 0
        && facts.disk.available_bytes * 100 < facts.disk.total_bytes * DISK_PRESSURE_PERCENT;
    let ready = match &facts.runtime {
        Ok(_) => condition(
            "Ready",
            true,
            ("KubeletReady", "skiff-agent is posting ready status"),
            ("", ""),
        ),
        Err(e) => condition(
            "Ready",
            false,
            ("", ""),
            (
                "KubeletNotReady",
                &format!("container runtime is down: {e}"),
            ),
        ),
    };
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            memory_pressure,
            (
                "KubeletHasInsufficientMemory",
                "skiff-agent has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "skiff-agent has sufficient memory available",
            ),
        ),
        condition(
            "DiskPressure",
            disk_pressure,
            ("KubeletHasDiskPressure", "skiff-agent has disk pressure"),
            (
                "KubeletHasNoDiskPressure",
                "skiff-agent has no disk pressure",
            ),
        ),
        ready,
    ];
    for c in &mut conditions {
        c.last_heartbeat_time = Some(now);
        c.last_transition_time = previous
            .and_then(|p| p.condition(&c.type_))
            .filter(|p| p.status == c.status)
            .and_then(|p| p.last_transition_time)
            .or(Some(now));
    }
    NodeStatus {
        addresses: vec![
            NodeAddress {
                type_: "InternalIP".to_string(),
                address: config.address.clone(),
            },
            NodeAddress {
                type_: "Hostname".to_string(),
                address: config.name.clone(),
            },
        ],
        allocatable: allocatable(&capacity, &config.reserved),
        capacity,
        conditions,
        node_info: Some(NodeSystemInfo {
            kernel_version: facts.kernel_version.clone(),
            os_image: facts.os_image.clone(),
            container_runtime_version: info.map(|i| i.version.clone()).unwrap_or_default(),
            kubelet_version: format!("v{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: format!("v{}", env!("CARGO_PKG_VERSION")),
            operating_system: "linux".to_string(),
            architecture: host::architecture().to_string(),
            machine_id: facts.machine_id.clone(),
            boot_id: facts.boot_id.clone(),
            system_uuid: String::new(),
        }),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.port),
            }),
        }),
    }
}

/// Whether two statuses say the same, heartbeat times aside.
pub fn same_status(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// The Lease object kept at [`lease_key`].
pub fn lease_object(node: &str, lease_id: i64, ttl: Duration, now: Time) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": "kube-node-lease",
            "creationTimestamp": now.to_string(),
            "annotations": {STORE_LEASE_ANNOTATION: lease_id.to_string()},
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": ttl.as_secs(),
            "acquireTime": now.to_string(),
            "renewTime": now.to_string(),
        }
    })
}

/// Why node upkeep failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("store: {0}")]
    Registry(#[from] RegistryError),
    #[error("store: {0}")]
    Client(#[from] skiff_client::ClientError),
    #[error("node object: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Measures the node.
pub async fn measure<R: ContainerRuntime>(runtime: &R, config: &NodeConfig) -> Facts {
    Facts {
        memory: host::memory().unwrap_or_default(),
        disk: host::disk(&config.data_dir).unwrap_or_default(),
        runtime: match tokio::time::timeout(RUNTIME_INFO_TIMEOUT, runtime.info()).await {
            Ok(info) => info.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}s",
                RUNTIME_INFO_TIMEOUT.as_secs()
            )),
        },
        os_image: host::os_image(),
        kernel_version: host::kernel_version(),
        machine_id: host::machine_id(),
        boot_id: host::boot_id(),
        cpus: host::cpus(),
    }
}

fn node_key(name: &str) -> String {
    resources::lookup("nodes")
        .expect("nodes are a resource")
        .key("", name)
        .expect("the node name is a valid key")
}

/// Creates the Node or updates its labels and status; returns the status
/// written.
pub async fn register(
    registry: &Registry,
    config: &NodeConfig,
    facts: &Facts,
) -> Result<NodeStatus, NodeError> {
    let key = node_key(&config.name);
    let labels = node_labels(config);
    let now = Time::now();
    match registry.get(&key).await {
        Err(RegistryError::NotFound) => {
            let stamp = Stamp::now();
            let status = node_status(config, facts, None, now);
            let mut node = Node {
                api_version: "v1".to_string(),
                kind: "Node".to_string(),
                status: Some(status.clone()),
                ..Default::default()
            };
            node.metadata.name = config.name.clone();
            node.metadata.uid = stamp.uid;
            node.metadata.creation_timestamp = Some(now);
            node.metadata.labels = labels.clone();
            match registry.create(&key, &serde_json::to_value(&node)?).await {
                Ok(_) => return Ok(status),
                // Created meanwhile: update it below.
                Err(RegistryError::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let mut written = None;
    registry
        .update_with::<NodeError>(&key, |current| {
            let mut node: Node = serde_json::from_value(current.value.clone())?;
            let status = node_status(config, facts, node.status.as_ref(), now);
            node.metadata.labels.extend(labels.clone());
            node.status = Some(status.clone());
            written = Some(status);
            Ok(Some(serde_json::to_value(&node)?))
        })
        .await?;
    Ok(written.expect("update_with ran the change"))
}

/// Writes the status if it changed or is due; returns what is now written.
async fn report(
    registry: &Registry,
    config: &NodeConfig,
    facts: &Facts,
    due: bool,
) -> Result<Option<NodeStatus>, NodeError> {
    let now = Time::now();
    let key = node_key(&config.name);
    let mut written = None;
    // Compared with the stored status, not with what was last written: a
    // status someone else changed (the node lifecycle controller marking
    // the node Unknown) is put right at the next heartbeat.
    let result = registry
        .update_with::<NodeError>(&key, |current| {
            let mut node: Node = serde_json::from_value(current.value.clone())?;
            let status = node_status(config, facts, node.status.as_ref(), now);
            if !due
                && node
                    .status
                    .as_ref()
                    .is_some_and(|s| same_status(s, &status))
            {
                written = None;
                return Ok(None);
            }
            node.status = Some(status.clone());
            written = Some(status);
            Ok(Some(serde_json::to_value(&node)?))
        })
        .await;
    match result {
        Ok(_) => Ok(written),
        // Deleted by someone: register again.
        Err(NodeError::Registry(RegistryError::NotFound)) => {
            register(registry, config, facts).await.map(Some)
        }
        Err(e) => Err(e),
    }
}

/// Grants a store lease and writes the node's lease key under it.
async fn acquire_lease(client: &Client, config: &NodeConfig) -> Result<i64, NodeError> {
    let ttl = config.lease_ttl.as_secs().max(1) as i64;
    let grant = client.lease_grant(ttl, 0).await?;
    let value = lease_object(&config.name, grant.id, config.lease_ttl, Time::now());
    client
        .put(PutRequest {
            key: lease_key(&config.name).into_bytes(),
            value: serde_json::to_vec(&value)?,
            lease: grant.id,
            ..Default::default()
        })
        .await?;
    tracing::info!(node = %config.name, lease = grant.id, ttl_s = ttl, "node lease acquired");
    Ok(grant.id)
}

/// Registers the node, then keeps its lease alive and its status current
/// until `shutdown`. Store errors are logged and retried on the next tick.
pub async fn run<R: ContainerRuntime>(
    client: Client,
    runtime: R,
    config: NodeConfig,
    shutdown: CancellationToken,
) {
    let registry = Registry::new(client.clone());
    // Liveness is kept by a task of its own, so that a slow Docker daemon
    // or store write never delays a keep-alive.
    let lease = tokio::spawn(keep_lease(client, config.clone(), shutdown.clone()));
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the status was last written; `None` until the node is
    // registered.
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let facts = measure(&runtime, &config).await;
        let result = match last_write {
            None => register(&registry, &config, &facts).await.map(Some),
            Some(at) => {
                let due = at.elapsed() >= STATUS_REPORT_INTERVAL;
                report(&registry, &config, &facts, due).await
            }
        };
        match result {
            Ok(Some(_)) => {
                if last_write.is_none() {
                    tracing::info!(node = %config.name, "node registered");
                } else {
                    tracing::debug!(node = %config.name, "node status written");
                }
                last_write = Some(tokio::time::Instant::now());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = %config.name, error = %e, "node status not written"),
        }
    }
    let _ = lease.await;
}

/// Keeps the node's lease alive every heartbeat interval until
/// `shutdown`; a lease found expired is replaced.
async fn keep_lease(client: Client, config: NodeConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        lease = match lease {
            None => match acquire_lease(&client, &config).await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(node = %config.name, error = %e, "node lease not acquired");
                    None
                }
            },
            Some(id) => match client.lease_keep_alive_once(id).await {
                Ok(reply) if reply.ttl > 0 => Some(id),
                Ok(_) => {
                    tracing::warn!(node = %config.name, lease = id, "node lease expired; acquiring a new one");
                    acquire_lease(&client, &config).await.ok()
                }
                Err(e) => {
                    tracing::warn!(node = %config.name, lease = id, error = %e, "node lease keep-alive failed");
                    Some(id)
                }
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_is_capacity_less_the_reserved() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        let capacity = BTreeMap::from([
            ("cpu".to_string(), q("2")),
            ("memory".to_string(), q("8Gi")),
            ("pods".to_string(), q("110")),
        ]);
        let reserved = BTreeMap::from([
            ("cpu".to_string(), q("500m")),
            ("memory".to_string(), q("10Gi")),
        ]);
        let a = allocatable(&capacity, &reserved);
        assert_eq!(a["cpu"].milli_value(), 1500);
        assert!(a["memory"].is_zero(), "never below zero");
        assert_eq!(a["pods"], capacity["pods"]);
    }

    fn config() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            address: "127.0.0.1".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            reserved: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(10),
            data_dir: "/tmp".into(),
            port: 10250,
        }
    }

    fn facts() -> Facts {
        Facts {
            memory: Memory {
                total_bytes: 8 << 30,
                available_bytes: 4 << 30,
            },
            disk: Disk {
                total_bytes: 100 << 30,
                available_bytes: 50 << 30,
            },
            runtime: Ok(RuntimeInfo {
                version: "docker://20.10.24".into(),
                cpus: 2,
                memory_bytes: 8 << 30,
                ..Default::default()
            }),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel_version: "6.1.0".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            cpus: 2,
        }
    }

    #[test]
    fn status_from_measurements() {
        let s = node_status(&config(), &facts(), None, Time::from_unix(100));
        assert_eq!(s.capacity["cpu"].to_string(), "2");
        assert_eq!(s.capacity["memory"].to_string(), "8Gi");
        assert_eq!(s.capacity["pods"].to_string(), "110");
        assert_eq!(s.allocatable, s.capacity);
        assert_eq!(s.condition("Ready").unwrap().status, "True");
        assert_eq!(s.condition("MemoryPressure").unwrap().status, "False");
        assert_eq!(s.condition("DiskPressure").unwrap().status, "False");
        let info = s.node_info.as_ref().unwrap();
        assert_eq!(info.container_runtime_version, "docker://20.10.24");
        assert_eq!(s.addresses[0].address, "127.0.0.1");
    }

    #[test]
    fn pressure_and_runtime_down() {
        let mut f = facts();
        f.memory.available_bytes = 50 << 20;
        f.disk.available_bytes = 5 << 30;
        f.runtime = Err("connection refused".into());
        let s = node_status(&config(), &f, None, Time::from_unix(100));
        assert_eq!(s.condition("MemoryPressure").unwrap().status, "True");
        assert_eq!(s.condition("DiskPressure").unwrap().status, "True");
        let ready = s.condition("Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert!(
            ready
                .message
                .as_ref()
                .unwrap()
                .contains("connection refused")
        );
    }

    #[test]
    fn heartbeats_alone_are_no_change_and_transitions_are_kept() {
        let first = node_status(&config(), &facts(), None, Time::from_unix(100));
        let second = node_status(&config(), &facts(), Some(&first), Time::from_unix(200));
        assert!(same_status(&first, &second));
        assert_eq!(
            second.condition("Ready").unwrap().last_transition_time,
            Some(Time::from_unix(100))
        );
        let mut f = facts();
        f.runtime = Err("down".into());
        let third = node_status(&config(), &f, Some(&second), Time::from_unix(300));
        assert!(!same_status(&second, &third));
        assert_eq!(
            third.condition("Ready").unwrap().last_transition_time,
            Some(Time::from_unix(300))
        );
    }

    #[test]
    fn labels_include_the_kubernetes_ones() {
        let labels = node_labels(&config());
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
    }
}
