//! `skiff-store`: one member of skiff's replicated key-value store. Its flags
//! mirror etcd's, so it drops in where etcd runs.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use skiff_store::server::compactor::AutoCompaction;
use skiff_store::server::member::Timing;
use skiff_store::server::{ClusterState, MemberConfig, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "skiff-store",
    version,
    about = "One member of skiff's replicated, etcd-compatible key-value store"
)]
struct Args {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default", env = "SKIFF_NAME")]
    name: String,

    /// Directory for the member's data (default: <name>.skiff).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// URLs to listen on for client traffic, comma-separated.
    #[arg(
        long,
        default_value = "http://127.0.0.1:2379",
        env = "SKIFF_LISTEN_CLIENT_URLS"
    )]
    listen_client_urls: String,

    /// Client URLs advertised to the cluster and to clients (default: the listen URLs).
    #[arg(long, env = "SKIFF_ADVERTISE_CLIENT_URLS")]
    advertise_client_urls: Option<String>,

    /// URL to listen on for peer (raft) traffic.
    #[arg(
        long,
        default_value = "http://127.0.0.1:2380",
        env = "SKIFF_LISTEN_PEER_URLS"
    )]
    listen_peer_urls: String,

    /// Peer URLs advertised to the other members (default: the listen URL).
    #[arg(long, env = "SKIFF_INITIAL_ADVERTISE_PEER_URLS")]
    initial_advertise_peer_urls: Option<String>,

    /// Every initial member as name=peer-url, comma-separated (default: this
    /// member alone, a one-member cluster).
    #[arg(long, env = "SKIFF_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,

    /// `new` bootstraps a cluster; `existing` joins one. Ignored when the data
    /// dir already holds a member.
    #[arg(
        long,
        value_enum,
        default_value = "new",
        env = "SKIFF_INITIAL_CLUSTER_STATE"
    )]
    initial_cluster_state: ClusterState,

    /// Token that keeps the member ids of different clusters apart.
    #[arg(
        long,
        default_value = "skiff-cluster",
        env = "SKIFF_INITIAL_CLUSTER_TOKEN"
    )]
    initial_cluster_token: String,

    /// Time between leader heartbeats, in milliseconds.
    #[arg(
        long = "heartbeat-interval",
        default_value_t = 100,
        env = "SKIFF_HEARTBEAT_INTERVAL"
    )]
    heartbeat_interval_ms: u64,

    /// Time a follower waits without a heartbeat before it campaigns, in
    /// milliseconds (a follower campaigns after 1.25 to 1.5 times this).
    #[arg(
        long = "election-timeout",
        default_value_t = 1000,
        env = "SKIFF_ELECTION_TIMEOUT"
    )]
    election_timeout_ms: u64,

    /// Time a client request may take before it fails, in milliseconds.
    #[arg(
        long = "request-timeout",
        default_value_t = 5000,
        env = "SKIFF_REQUEST_TIMEOUT"
    )]
    request_timeout_ms: u64,

    /// Idle time after which a watcher that asked for progress
    /// notifications gets one, in milliseconds (etcd: 10 minutes).
    #[arg(
        long = "watch-progress-notify-interval",
        default_value_t = 600_000,
        env = "SKIFF_WATCH_PROGRESS_NOTIFY_INTERVAL"
    )]
    watch_progress_notify_interval_ms: u64,

    /// Automatic compaction: `periodic` (keep a time window of history) or
    /// `revision` (keep a number of revisions).
    #[arg(long, default_value = "periodic", value_parser = ["periodic", "revision"], env = "SKIFF_AUTO_COMPACTION_MODE")]
    auto_compaction_mode: String,

    /// What automatic compaction keeps: a duration (`1h`, `30m`; a bare
    /// number is hours) in periodic mode, a number of revisions in revision
    /// mode. 0 turns it off.
    #[arg(long, default_value = "0", env = "SKIFF_AUTO_COMPACTION_RETENTION")]
    auto_compaction_retention: String,

    /// The store's size quota in bytes: beyond it writes raise the NOSPACE
    /// alarm and are refused until it is disarmed (etcd's default: 2 GiB).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024, env = "SKIFF_QUOTA_BACKEND_BYTES")]
    quota_backend_bytes: u64,

    /// Raft log entries applied between two snapshots of the state machine;
    /// the log before a snapshot is then purged, bounding its size. A
    /// snapshot writes the whole state out, so this is etcd 3.4's default:
    /// at 10,000 a store of a million keys spent most of its time writing
    /// snapshots.
    #[arg(long, default_value_t = 100_000, env = "SKIFF_SNAPSHOT_COUNT")]
    snapshot_count: u64,

    /// Raft log entries kept behind a snapshot, so that a member slightly
    /// behind catches up from the log rather than from a whole snapshot.
    #[arg(long, default_value_t = 5_000, env = "SKIFF_SNAPSHOT_CATCHUP_ENTRIES")]
    snapshot_catchup_entries: u64,

    /// How often revision-mode compaction checks, in milliseconds.
    #[arg(
        long = "auto-compaction-check-interval",
        default_value_t = 300_000,
        env = "SKIFF_AUTO_COMPACTION_CHECK_INTERVAL"
    )]
    auto_compaction_check_interval_ms: u64,

    /// UNSAFE: answer linearizable reads from this member's local state
    /// without a read index, so that a partitioned or lagging member serves
    /// stale reads. Exists only to show that skiff's fault checker catches
    /// them; never use it otherwise.
    #[arg(long, hide = true)]
    unsafe_skip_read_index: bool,

    /// Log format: text or json. Filter with RUST_LOG (default: info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"], env = "SKIFF_LOG_FORMAT")]
    log_format: String,
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `http://host:port` (or `host:port`) to a socket address.
fn listen_addr(url: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if url.starts_with("https://") {
        bail!("{flag}: {url}: TLS is not supported yet; use http://");
    }
    let host_port = rest.trim_end_matches('/');
    host_port
        .to_socket_addrs()
        .with_context(|| format!("{flag}: {url:?} is not host:port"))?
        .next()
        .with_context(|| format!("{flag}: {url:?} resolves to no address"))
}

fn parse_initial_cluster(list: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for item in split(list) {
        let Some((name, url)) = item.split_once('=') else {
            bail!("--initial-cluster: {item:?} is not name=peer-url");
        };
        if name.is_empty() || url.is_empty() {
            bail!("--initial-cluster: {item:?} is not name=peer-url");
        }
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    Ok(members)
}

impl Args {
    fn into_config(self) -> anyhow::Result<(MemberConfig, String)> {
        let listen_client_urls = split(&self.listen_client_urls);
        if listen_client_urls.is_empty() {
            bail!("--listen-client-urls is empty");
        }
        let listen_client = listen_client_urls
            .iter()
            .map(|u| listen_addr(u, "--listen-client-urls"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let listen_peer = listen_addr(&self.listen_peer_urls, "--listen-peer-urls")?;
        let advertise_client_urls = self
            .advertise_client_urls
            .as_deref()
            .map_or(listen_client_urls, split);
        let initial_advertise_peer_urls = split(
            self.initial_advertise_peer_urls
                .as_deref()
                .unwrap_or(&self.listen_peer_urls),
        );
        let initial_cluster = match &self.initial_cluster {
            Some(list) => parse_initial_cluster(list)?,
            None => vec![(self.name.clone(), initial_advertise_peer_urls.clone())],
        };
        if self.heartbeat_interval_ms == 0
            || self.election_timeout_ms < 5 * self.heartbeat_interval_ms
        {
            bail!(
                "--election-timeout ({} ms) must be at least 5 times --heartbeat-interval ({} ms)",
                self.election_timeout_ms,
                self.heartbeat_interval_ms
            );
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{}.skiff", self.name)));
        let auto_compaction =
            AutoCompaction::parse(&self.auto_compaction_mode, &self.auto_compaction_retention)
                .map_err(|e| anyhow::anyhow!(e))?;
        let config = MemberConfig {
            auto_compaction,
            quota_backend_bytes: self.quota_backend_bytes,
            snapshot_count: self.snapshot_count.max(1),
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            unsafe_skip_read_index: self.unsafe_skip_read_index,
            auto_compaction_check_interval: Duration::from_millis(
                self.auto_compaction_check_interval_ms.max(1),
            ),
            name: self.name,
            data_dir,
            listen_client,
            advertise_client_urls,
            listen_peer,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: self.initial_cluster_state,
            initial_cluster_token: self.initial_cluster_token,
            timing: Timing {
                heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
                election_timeout: Duration::from_millis(self.election_timeout_ms),
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                watch_progress_notify_interval: Duration::from_millis(
                    self.watch_progress_notify_interval_ms.max(1),
                ),
            },
        };
        Ok((config, self.log_format))
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (config, log_format) = match args.into_config() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
                _ = sigint.recv() => tracing::info!(signal = "SIGINT", "stopping"),
            }
            token.cancel();
        });
        run(config, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "member failed");
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
