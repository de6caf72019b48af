//! [`ContainerRuntime`] on Docker Engine through bollard 0.21.
//!
//! Options are built with `bollard::query_parameters::*OptionsBuilder` and
//! bodies are `bollard::models::*`; the API version is negotiated with the
//! daemon at connect time, so older engines (API 1.41 on Docker 20.10)
//! work. A 404 from Docker is [`RuntimeError::NotFound`]; stopping a
//! stopped container (304) or removing a missing one is success.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EventMessage,
    HostConfig, PortBinding as DockerPortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use skiff_model::Time;

use super::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, RuntimeError,
    RuntimeInfo,
};

/// Bound on one Docker request until its response headers (bollard's
/// client timeout); stopping a container adds its grace period.
const REQUEST_TIMEOUT_S: u64 = 120;

/// Docker Engine; cheap to clone.
#[derive(Clone, Debug)]
pub struct Docker {
    docker: bollard::Docker,
}

fn failed(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Failed(message),
        other => RuntimeError::Failed(other.to_string()),
    }
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` →
/// `172.17.0.1`).
fn first_address(subnet: &str) -> Option<std::net::IpAddr> {
    let (net, bits) = subnet.split_once('/')?;
    let net: std::net::Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 30)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(std::net::Ipv4Addr::from((u32::from(net) & mask) + 1).into())
}

/// A Docker timestamp truncated to seconds; `None` for Docker's zero time.
fn docker_time(s: Option<&str>) -> Option<Time> {
    let t = Time::parse(s?).ok()?;
    (t.unix_seconds() > 0).then(|| Time::from_unix(t.unix_seconds()))
}

fn to_btree(m: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
}

fn container_info(c: ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    let started_at = docker_time(state.started_at.as_deref());
    let state = match status {
        ContainerStateStatusEnum::RUNNING
        | ContainerStateStatusEnum::PAUSED
        | ContainerStateStatusEnum::RESTARTING => ContainerState::Running { started_at },
        ContainerStateStatusEnum::CREATED if state.error.as_deref().unwrap_or("").is_empty() => {
            ContainerState::Created
        }
        _ => ContainerState::Exited {
            exit_code: state.exit_code.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            started_at,
            finished_at: docker_time(state.finished_at.as_deref()),
        },
    };
    let net = c.network_settings.unwrap_or_default();
    let ip = net
        .networks
        .unwrap_or_default()
        .into_values()
        .filter_map(|n| n.ip_address)
        .find(|ip| !ip.is_empty());
    let mut published = BTreeMap::new();
    for (key, bindings) in net.ports.unwrap_or_default() {
        let Some((port, proto)) = key.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let host_port = bindings
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| b.host_port?.parse::<u16>().ok())
            .next();
        if let Some(host_port) = host_port {
            published.insert((port, proto.to_string()), host_port);
        }
    }
    let config = c.config.unwrap_or_default();
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        labels: to_btree(config.labels),
        state,
        ip,
        published,
    }
}

impl Docker {
    /// Connects to the daemon at `host` (`unix:///var/run/docker.sock`,
    /// `tcp://...`; `None` for the local default or `DOCKER_HOST`) and
    /// negotiates the API version.
    pub async fn connect(host: Option<&str>) -> Result<Docker, RuntimeError> {
        let docker = match host {
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                bollard::Docker::connect_with_unix(
                    h,
                    REQUEST_TIMEOUT_S,
                    bollard::API_DEFAULT_VERSION,
                )
            }
            Some(h) => bollard::Docker::connect_with_host(h),
            None => bollard::Docker::connect_with_defaults(),
        }
        .map_err(failed)?;
        let docker = docker.negotiate_version().await.map_err(failed)?;
        Ok(Docker { docker })
    }

    /// The gateway address of Docker's default `bridge` network: the
    /// host's address on it, which every container on that network
    /// reaches. `None` when the network has none.
    pub async fn bridge_gateway(&self) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        let network = self
            .docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(failed)?;
        let configs = network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default();
        let gateway = configs
            .iter()
            .filter_map(|c| c.gateway.as_deref()?.parse().ok())
            .next();
        // Docker 20.10 leaves the default bridge's gateway out of its IPAM
        // config; the bridge then has the first address of the subnet.
        Ok(gateway.or_else(|| {
            configs
                .iter()
                .filter_map(|c| first_address(c.subnet.as_deref()?))
                .next()
        }))
    }

    fn label_filter(label: &str) -> HashMap<&'static str, Vec<String>> {
        HashMap::from([("label", vec![label.to_string()])])
    }
}

impl ContainerRuntime for Docker {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker.ping().await.map(|_| ()).map_err(failed)
    }

    async fn info(&self) -> Result<RuntimeInfo, RuntimeError> {
        let info = self.docker.info().await.map_err(failed)?;
        let version = self.docker.version().await.map_err(failed)?;
        Ok(RuntimeInfo {
            version: format!("docker://{}", version.version.unwrap_or_default()),
            cpus: info.ncpu.unwrap_or(0),
            memory_bytes: info.mem_total.unwrap_or(0),
            kernel_version: info.kernel_version.unwrap_or_default(),
            operating_system: info.operating_system.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
        })
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        self.docker
            .create_image(Some(options), None, None)
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
            .map_err(|e| match e {
                BollardError::DockerResponseServerError { message, .. } => {
                    RuntimeError::Pull(message)
                }
                BollardError::DockerStreamError { error } => RuntimeError::Pull(error),
                other => RuntimeError::Pull(other.to_string()),
            })
    }

    async fn import_image(
        &self,
        image: &str,
        rootfs_tar: Vec<u8>,
        entrypoint: &[&str],
    ) -> Result<(), RuntimeError> {
        let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let entrypoint = serde_json::to_string(entrypoint).expect("strings serialize");
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec![format!("ENTRYPOINT {entrypoint}")])
            .build();
        self.docker
            .create_image(
                Some(options),
                Some(bollard::body_full(rootfs_tar.into())),
                None,
            )
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut port_bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for p in &spec.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.push(key.clone());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(DockerPortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
                });
        }
        let host_config = HostConfig {
            network_mode: spec.network_mode.clone(),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            memory: spec.memory_limit_bytes,
            // No swap beyond the memory limit, so the limit is enforced.
            memory_swap: spec.memory_limit_bytes,
            nano_cpus: spec.nano_cpus,
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            working_dir: spec.working_dir.clone(),
            hostname: spec.hostname.clone(),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(failed)?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker.start_container(id, None).await.map_err(failed)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(t).build();
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(REQUEST_TIMEOUT_S) + grace);
        match docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Removal already in progress.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(failed)?;
        Ok(container_info(c))
    }

    async fn list(&self, label: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&Docker::label_filter(label))
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(failed)?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            match self.inspect(&id).await {
                Ok(info) => out.push(info),
                // Removed between the list and the inspect.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>> {
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail)
            .build();
        self.docker
            .logs(id, Some(options))
            .map(|r| r.map(|out| out.into_bytes()).map_err(failed))
            .boxed()
    }

    fn events(&self, label: &str) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>> {
        let mut filters = Docker::label_filter(label);
        filters.insert("type", vec!["container".to_string()]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(options))
            .map(|r| {
                r.map(|m: EventMessage| {
                    let actor = m.actor.unwrap_or_default();
                    ContainerEvent {
                        id: actor.id.unwrap_or_default(),
                        action: m.action.unwrap_or_default(),
                        labels: to_btree(actor.attributes),
                    }
                })
                .map_err(failed)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_zero_time_is_none() {
        assert_eq!(docker_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(
            docker_time(Some("2026-12-01T13:51:17.123456789Z")),
            Some(Time::parse("2026-12-01T13:51:17Z").unwrap())
        );
    }

    #[test]
    fn the_bridge_has_the_first_address_of_its_subnet() {
        assert_eq!(
            first_address("172.17.0.0/16"),
            Some("172.17.0.1".parse().unwrap())
        );
        assert_eq!(
            first_address("10.1.2.128/25"),
            Some("10.1.2.129".parse().unwrap())
        );
        assert_eq!(first_address("fd00::/64"), None);
        assert_eq!(first_address("nonsense"), None);
    }
}
