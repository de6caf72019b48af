//! The gRPC services of a member and its wiring: [`run`] opens the storage,
//! starts raft, bootstraps a new cluster, serves clients and peers, and stops
//! everything when the shutdown token fires.

pub mod cluster;
pub mod compactor;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod membership;
pub mod peer;
pub mod status;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use openraft::async_runtime::WatchReceiver;
use openraft::{Config, SnapshotPolicy};
use skiff_proto::etcdserverpb::cluster_server::ClusterServer;
use skiff_proto::etcdserverpb::kv_server::KvServer;
use skiff_proto::etcdserverpb::lease_server::LeaseServer;
use skiff_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use skiff_proto::etcdserverpb::watch_server::WatchServer;
use skiff_proto::skiffraftpb::raft_peer_server::RaftPeerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::{Cf, Durability, Engine, RocksEngine, WriteBatch};
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PEER_MESSAGE_LIMIT_BYTES, Peers};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Command, MemberId, MemberNode, Raft};
use member::{Member, Timing};

/// gRPC's own framing on top of the largest request etcd accepts.
const CLIENT_MESSAGE_LIMIT_BYTES: usize = kv::MAX_REQUEST_BYTES + 512 * 1024;
/// How long a member started with `--initial-cluster-state existing` tries
/// to learn its identity from the running cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between those attempts.
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// Pause between attempts to publish this member's name and client URLs.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// The RocksDB directory inside a data dir.
pub const DB_DIR: &str = "db";
/// Scratch space of Maintenance.Snapshot inside a data dir.
const SNAPSHOT_EXPORT_DIR: &str = "snapshot-export";

const KEY_MEMBER_ID: &[u8] = b"member_id";
const KEY_CLUSTER_ID: &[u8] = b"cluster_id";

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// Everything a member needs to start, from its flags.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: SocketAddr,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `(name, peer URLs)` of every initial member.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub timing: Timing,
    pub auto_compaction: compactor::AutoCompaction,
    /// `--quota-backend-bytes`.
    pub quota_backend_bytes: u64,
    /// How often the revision compactor checks (etcd: 5 minutes).
    pub auto_compaction_check_interval: Duration,
    /// `--snapshot-count`: entries applied between two snapshots.
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`: entries kept behind a snapshot.
    pub snapshot_catchup_entries: u64,
    /// `--unsafe-skip-read-index`: linearizable reads answered from local
    /// state. Only for showing that the fault checker catches stale reads.
    pub unsafe_skip_read_index: bool,
}

/// Accepted connections with `TCP_NODELAY`. tonic's `Server::tcp_nodelay`
/// is ignored when the server is given its listener, and with Nagle's
/// algorithm on, a small response written while an earlier one is unacked
/// waits for the peer's delayed ACK (40 ms on Linux): watch events, raft
/// replies and write acknowledgements all paid it.
fn no_delay(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// FNV-1a, 64 bits: a stable hash for member and cluster ids.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

/// A member's id, from its peer URLs and the cluster token (as etcd derives
/// it), so that every member computes the same ids from `--initial-cluster`.
pub fn member_id(peer_urls: &[String], token: &str) -> MemberId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv1a(&[joined.as_bytes(), token.as_bytes()])
}

fn cluster_id(member_ids: &[MemberId], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    fnv1a(&[&bytes, token.as_bytes()])
}

fn read_u64(engine: &dyn Engine, key: &[u8]) -> anyhow::Result<Option<u64>> {
    engine
        .get(Cf::RaftMeta, key)?
        .map(|v| v.as_slice().try_into().map(u64::from_be_bytes))
        .transpose()
        .map_err(|_| anyhow::anyhow!("corrupt {} in raft metadata", String::from_utf8_lossy(key)))
}

/// This member's peer URLs in `--initial-cluster`, checked against
/// `--initial-advertise-peer-urls`.
fn own_peer_urls(config: &MemberConfig) -> anyhow::Result<Vec<String>> {
    let Some((_, my_urls)) = config
        .initial_cluster
        .iter()
        .find(|(name, _)| *name == config.name)
    else {
        bail!(
            "--initial-cluster has no member named {:?} (the --name of this member)",
            config.name
        );
    };
    let mut mine = my_urls.clone();
    let mut advertised = config.initial_advertise_peer_urls.clone();
    mine.sort();
    advertised.sort();
    if mine != advertised {
        bail!(
            "--initial-cluster gives {}={} but --initial-advertise-peer-urls is {}",
            config.name,
            my_urls.join(","),
            config.initial_advertise_peer_urls.join(",")
        );
    }
    Ok(mine)
}

/// The ids of a member of a new cluster, from `--initial-cluster`.
fn new_identity(config: &MemberConfig) -> anyhow::Result<(MemberId, u64)> {
    let my_urls = own_peer_urls(config)?;
    let ids: Vec<MemberId> = config
        .initial_cluster
        .iter()
        .map(|(_, urls)| member_id(urls, &config.initial_cluster_token))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != ids.len() {
        bail!("--initial-cluster lists the same peer URLs twice");
    }
    let id = member_id(&my_urls, &config.initial_cluster_token);
    Ok((id, cluster_id(&ids, &config.initial_cluster_token)))
}

/// The ids of a member joining a running cluster, which must have added it
/// (`skiff member add`): asked of the other members of `--initial-cluster`,
/// which know it by its peer URLs.
async fn join_identity(config: &MemberConfig) -> anyhow::Result<(MemberId, u64)> {
    let my_urls = own_peer_urls(config)?;
    let others: Vec<&String> = config
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name != config.name)
        .flat_map(|(_, urls)| urls)
        .collect();
    if others.is_empty() {
        bail!("--initial-cluster-state existing needs the running members in --initial-cluster");
    }
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut last_error = String::new();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        for url in &others {
            match ask_cluster_info(url).await {
                Ok(info) => {
                    let found = info.members.iter().find(|(_, node)| {
                        let mut urls = node.peer_urls.clone();
                        urls.sort();
                        urls == my_urls
                    });
                    if let Some((id, _)) = found {
                        tracing::info!(
                            member = %format_args!("{id:x}"),
                            cluster = %format_args!("{:x}", info.cluster_id),
                            peer = %url,
                            "joining a running cluster"
                        );
                        return Ok((*id, info.cluster_id));
                    }
                    last_error = format!(
                        "{url} does not list a member with peer URLs {}; add it first with `skiff member add {} --peer-urls {}`",
                        my_urls.join(","),
                        config.name,
                        my_urls.join(",")
                    );
                }
                Err(e) => last_error = format!("{url}: {e:#}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("cannot join the running cluster: {last_error}");
        }
        tracing::info!(attempt, error = %last_error, "waiting to join the running cluster");
        tokio::time::sleep(JOIN_RETRY).await;
    }
}

async fn ask_cluster_info(url: &str) -> anyhow::Result<membership::ClusterInfo> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("bad peer URL {url}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.context("connect")?;
    let mut client = skiff_proto::skiffraftpb::raft_peer_client::RaftPeerClient::new(channel);
    let reply = client
        .cluster_info(skiff_proto::skiffraftpb::RaftMessage::default())
        .await
        .context("ClusterInfo")?;
    crate::raft::codec::decode(&reply.into_inner().payload).context("decode ClusterInfo")
}

/// The member and cluster ids: found on first start (from the flags, or
/// from the running cluster when joining it) and persisted, read back after.
async fn identity(
    config: &MemberConfig,
    engine: &dyn Engine,
) -> anyhow::Result<(MemberId, u64, bool)> {
    if let (Some(id), Some(cluster)) = (
        read_u64(engine, KEY_MEMBER_ID)?,
        read_u64(engine, KEY_CLUSTER_ID)?,
    ) {
        return Ok((id, cluster, false));
    }
    let (id, cluster) = match config.initial_cluster_state {
        ClusterState::New => new_identity(config)?,
        ClusterState::Existing => join_identity(config).await?,
    };
    let mut batch = WriteBatch::new();
    batch.put(Cf::RaftMeta, KEY_MEMBER_ID, id.to_be_bytes().to_vec());
    batch.put(Cf::RaftMeta, KEY_CLUSTER_ID, cluster.to_be_bytes().to_vec());
    engine.write(batch, Durability::Sync)?;
    Ok((id, cluster, true))
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for {what} on {addr}"))
}

/// Runs one member until `shutdown` fires.
pub async fn run(config: MemberConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join(DB_DIR);
    let engine: Arc<dyn Engine> = Arc::new(
        RocksEngine::open(&db_path)
            .with_context(|| format!("open rocksdb at {}", db_path.display()))?,
    );
    let (id, cluster_id, first_start) = identity(&config, engine.as_ref()).await?;

    // Bind before starting raft, so that a taken port fails the start at once.
    let peer_listener = bind(config.listen_peer, "peers").await?;
    let mut client_listeners = Vec::new();
    for addr in &config.listen_client {
        client_listeners.push(bind(*addr, "clients").await?);
    }

    let snapshot_dir = config.data_dir.join("snapshots");
    let log_store = LogStore::new(engine.clone()).context("start the raft log store")?;
    let state_machine = StateMachine::open(engine.clone(), snapshot_dir.clone())
        .context("open the state machine")?;
    let shared = state_machine.shared();
    let peers = Arc::new(Peers::default());
    let timing = config.timing.clone();
    let election_ms = timing.election_timeout.as_millis() as u64;
    let raft_config = Config {
        cluster_name: format!("skiff-{cluster_id:016x}"),
        heartbeat_interval: timing.heartbeat_interval.as_millis() as u64,
        // openraft lets a follower campaign only after a leader lease (the
        // maximum below) AND its own randomised timeout have passed since the
        // last heartbeat. These values make that 1.25 to 1.5 election
        // timeouts, close to etcd's 1 to 2.
        election_timeout_min: election_ms / 2,
        election_timeout_max: election_ms * 3 / 4,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
        ..Default::default()
    };
    let raft_config = Arc::new(raft_config.validate().context("raft configuration")?);
    let raft: Raft = openraft::Raft::new(
        id,
        raft_config,
        NetworkFactory::new(peers.clone()),
        log_store,
        state_machine,
    )
    .await
    .context("start raft")?;

    if first_start && config.initial_cluster_state == ClusterState::New {
        let members: BTreeMap<MemberId, MemberNode> = config
            .initial_cluster
            .iter()
            .map(|(name, urls)| {
                (
                    member_id(urls, &config.initial_cluster_token),
                    MemberNode {
                        name: name.clone(),
                        peer_urls: urls.clone(),
                    },
                )
            })
            .collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(
                members = config.initial_cluster.len(),
                "initialized a new cluster"
            ),
            // Another member's initialization reached us first: fine.
            Err(e) => tracing::info!(error = %e, "cluster already initialized"),
        }
    } else if first_start {
        tracing::info!("waiting for the leader to replicate the cluster's log or a snapshot");
    }

    if config.unsafe_skip_read_index {
        tracing::warn!(
            "--unsafe-skip-read-index: linearizable reads are answered from local state and may be stale"
        );
    }
    let member = Arc::new(Member {
        id,
        cluster_id,
        name: config.name.clone(),
        raft: raft.clone(),
        shared,
        peers,
        timing,
        quota_bytes: config.quota_backend_bytes,
        membership_lock: tokio::sync::Mutex::new(()),
        skip_read_index: config.unsafe_skip_read_index,
        cluster_reads: Default::default(),
        local_reads: Default::default(),
        db_size: Default::default(),
    });
    tracing::info!(
        member = %format_args!("{id:x}"),
        cluster = %format_args!("{cluster_id:x}"),
        name = %config.name,
        peer = %config.listen_peer,
        clients = ?config.listen_client,
        "member started"
    );

    let mut tasks = tokio::task::JoinSet::new();
    let peer_service = RaftPeerServer::new(peer::PeerService::new(member.clone(), snapshot_dir))
        .max_decoding_message_size(PEER_MESSAGE_LIMIT_BYTES)
        .max_encoding_message_size(PEER_MESSAGE_LIMIT_BYTES);
    let token = shutdown.clone();
    tasks.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(peer_service)
            .serve_with_incoming_shutdown(no_delay(peer_listener), token.cancelled_owned())
            .await
            .context("peer server")
    });
    for listener in client_listeners {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<KvServer<kv::KvService>>()
            .await;
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(
                KvServer::new(kv::KvService::new(member.clone()))
                    .max_decoding_message_size(CLIENT_MESSAGE_LIMIT_BYTES),
            )
            .add_service(ClusterServer::new(cluster::ClusterService::new(
                member.clone(),
            )))
            .add_service(MaintenanceServer::new(
                maintenance::MaintenanceService::new(
                    member.clone(),
                    config.data_dir.join(SNAPSHOT_EXPORT_DIR),
                ),
            ))
            .add_service(WatchServer::new(watch::WatchService::new(member.clone())))
            .add_service(LeaseServer::new(lease::LeaseService::new(member.clone())));
        let token = shutdown.clone();
        tasks.spawn(async move {
            router
                .serve_with_incoming_shutdown(no_delay(listener), token.cancelled_owned())
                .await
                .context("client server")
        });
    }
    let published_urls = config
        .advertise_client_urls
        .iter()
        .map(|u| published_client_url(u))
        .collect();
    tasks.spawn(lease::expire_leases(member.clone(), shutdown.clone()));
    tasks.spawn(compactor::run(
        member.clone(),
        config.auto_compaction,
        config.auto_compaction_check_interval,
        shutdown.clone(),
    ));
    tasks.spawn(track_peer_urls(member.clone(), shutdown.clone()));
    tasks.spawn(publish_attributes(
        member.clone(),
        published_urls,
        shutdown.clone(),
    ));

    let mut result = Ok(());
    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        Some(joined) = tasks.join_next() => {
            result = joined.context("server task panicked").and_then(|r| r);
            // A server that ends before shutdown was asked for has failed.
            if result.is_ok() && !shutdown.is_cancelled() {
                result = Err(anyhow::anyhow!("a server stopped unexpectedly"));
            }
            shutdown.cancel();
        }
    }
    tracing::info!("shutting down");
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.context("server task panicked").and_then(|r| r)
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not stop cleanly");
    }
    engine
        .sync_wal()
        .context("final sync of the write-ahead log")?;
    tracing::info!("stopped");
    result
}

/// A client URL as the member list carries it: `http://host:port` becomes
/// `host:port`. etcdctl 3.4 dials a member-list URL verbatim with grpc-go's
/// passthrough resolver, which then sends the whole URL as the HTTP/2
/// `:authority`; the h2 server under tonic refuses such a request as
/// malformed (etcd's grpc-go server does not look). Every etcd client accepts
/// `host:port` endpoints.
pub fn published_client_url(url: &str) -> String {
    url.strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

/// Keeps the peer network's URLs those of the latest membership, so that a
/// MemberUpdate redirects traffic to a member's new address.
async fn track_peer_urls(member: Arc<Member>, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Server metrics change with the vote, the leader or the membership,
    // not with every write.
    let mut metrics = member.raft.server_metrics();
    let mut seen = None;
    loop {
        let membership = metrics.borrow_watched().membership_config.clone();
        if seen != Some(*membership.log_id()) {
            member.peers.set_urls(membership.membership().nodes());
            seen = Some(*membership.log_id());
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            changed = metrics.changed() => if changed.is_err() {
                // Raft stopped: nothing more to track.
                shutdown.cancelled().await;
                return Ok(());
            },
        }
    }
}

/// Announces this member's name and client URLs through raft, once they
/// differ from what the cluster has recorded (etcd's "publish").
async fn publish_attributes(
    member: Arc<Member>,
    client_urls: Vec<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let recorded = member
            .shared
            .member_attrs()
            .ok()
            .and_then(|attrs| attrs.get(&member.id).cloned());
        if recorded.is_some_and(|a| a.name == member.name && a.client_urls == client_urls) {
            tracing::info!("published name and client URLs");
            // Keep the task alive until shutdown, like the servers.
            shutdown.cancelled().await;
            return Ok(());
        }
        let command = Command::PublishMember {
            id: member.id,
            name: member.name.clone(),
            client_urls: client_urls.clone(),
        };
        if let Err(status) = member.propose(command).await {
            tracing::debug!(%status, "publishing member attributes failed, retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(PUBLISH_RETRY) => {}
        }
    }
}
