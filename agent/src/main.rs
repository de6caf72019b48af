//! `skiff-agent`: the node agent. See the crate docs of skiff_agent.
//!
//! SIGTERM or SIGINT stop it; its containers keep running and a restarted
//! agent adopts them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use skiff_agent::runtime::docker::Docker;
use skiff_agent::{Config, NodeConfig, PodConfig, ProxyConfig};
use skiff_client::{Client, ClientOptions};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// skiff's node agent.
#[derive(Debug, Parser)]
#[command(name = "skiff-agent", version)]
struct Args {
    /// Store endpoints, comma-separated (`host:port` or `http://host:port`).
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    store: Vec<String>,
    /// The node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's address: its InternalIP, where pod ports are published.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Port of the agent's HTTP endpoint (container logs) on --address; 0
    /// picks a free one.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Docker daemon (`unix:///var/run/docker.sock`, `tcp://...`; default:
    /// DOCKER_HOST or the local socket).
    #[arg(long)]
    docker: Option<String>,
    /// Where emptyDir volumes live.
    #[arg(long, default_value = "/var/lib/skiff-agent")]
    data_dir: PathBuf,
    /// Extra node labels, `k=v,...`.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Resources kept for the system, as kubelet's `--system-reserved`:
    /// `cpu=500m,memory=1Gi`. Allocatable is capacity less these.
    #[arg(long, value_delimiter = ',', value_parser = parse_reserved)]
    system_reserved: Vec<(String, skiff_model::Quantity)>,
    /// How often the node lease is kept alive and the status measured.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// TTL of the node lease.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// First delay before restarting a crashed container (doubles each time).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    restart_backoff: Duration,
    /// Longest delay before restarting a crashed container.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    max_restart_backoff: Duration,
    /// How often every pod is checked against Docker without any event.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Where the proxy listens on Services' node ports (default: --address).
    #[arg(long)]
    proxy_address: Option<std::net::IpAddr>,
    /// The most connections in flight per node port listener.
    #[arg(long, default_value_t = 4096)]
    proxy_max_connections: usize,
    /// Bound on the proxy's connect to one endpoint.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    proxy_connect_timeout: Duration,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// One `--system-reserved` entry: `cpu=500m` or `memory=1Gi`.
fn parse_reserved(s: &str) -> Result<(String, skiff_model::Quantity), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--system-reserved {s:?} is not resource=quantity"))?;
    if !matches!(k, "cpu" | "memory") {
        return Err(format!(
            "--system-reserved: {k:?} is not a resource skiff reserves (cpu, memory)"
        ));
    }
    let q =
        skiff_model::Quantity::parse(v).map_err(|e| format!("--system-reserved {k}={v:?}: {e}"))?;
    if q.is_negative() {
        return Err(format!("--system-reserved {k}={v:?}: must not be negative"));
    }
    Ok((k.to_string(), q))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not k=v"))?;
    Ok((k.to_string(), v.to_string()))
}

/// `500ms`, `2s`, `5m`, or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (500ms, 2s, 5m)");
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    if let Some(m) = s.strip_suffix('m') {
        return m
            .parse::<u64>()
            .map(|m| Duration::from_secs(m * 60))
            .map_err(|_| bad());
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    skiff_runtime::process::init_tracing(&args.log_format);
    let node_name = match args.node_name {
        Some(n) => n,
        None => hostname::get()
            .context("read the hostname (or pass --node-name)")?
            .to_string_lossy()
            .to_lowercase(),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create the data dir {}", args.data_dir.display()))?;
    let client = Client::connect(&args.store, ClientOptions::default())
        .await
        .with_context(|| format!("store endpoints {:?}", args.store))?;
    let docker = Docker::connect(args.docker.as_deref())
        .await
        .context("connect to Docker")?;
    let listener = tokio::net::TcpListener::bind((args.address.as_str(), args.port))
        .await
        .with_context(|| format!("listen on {}:{}", args.address, args.port))?;
    let port = listener.local_addr()?.port();
    let proxy_address = match args.proxy_address {
        Some(a) => a,
        None => args.address.parse().with_context(|| {
            format!(
                "--address {:?} is not an IP address: pass --proxy-address",
                args.address
            )
        })?,
    };
    // Containers on Docker's bridge reach the node at the bridge's gateway:
    // the proxy listens there too, for the service variables.
    let shared_address = match docker.bridge_gateway().await {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::warn!(error = %e, "no Docker bridge gateway: containers get the proxy address");
            None
        }
    };
    let config = Config {
        node: NodeConfig {
            name: node_name.clone(),
            address: args.address.clone(),
            labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
            reserved: args.system_reserved.into_iter().collect::<BTreeMap<_, _>>(),
            heartbeat_interval: args.heartbeat_interval,
            lease_ttl: args.lease_ttl,
            data_dir: args.data_dir.clone(),
            port,
        },
        pods: PodConfig {
            node_name: node_name.clone(),
            address: args.address,
            data_dir: args.data_dir,
            restart_backoff: args.restart_backoff,
            max_restart_backoff: args.max_restart_backoff,
            resync_interval: args.resync_interval,
            services: None,
        },
        proxy: ProxyConfig {
            node_name: node_name.clone(),
            address: proxy_address,
            shared_address,
            max_connections: args.proxy_max_connections,
            connect_timeout: args.proxy_connect_timeout,
            resync: Duration::from_secs(300),
        },
    };
    let shutdown = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
            _ = sigint.recv() => tracing::info!(signal = "SIGINT", "stopping"),
        }
        on_signal.cancel();
    });
    tracing::info!(node = %node_name, store = ?args.store, port, "starting");
    skiff_agent::run(client, docker, config, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
    }
}
