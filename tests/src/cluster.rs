//! A cluster of real `skiff-store` processes on loopback ports.
//!
//! [`Cluster::start`] picks free ports (binding `127.0.0.1:0`), starts every
//! member with etcd's flags, a data dir and a log file of its own in one
//! temporary directory, and returns once every member serves, all agree on a
//! leader and every member's MemberList shows every member's client URLs. A
//! start that loses a port to another process is retried whole.
//!
//! Member control: [`Cluster::kill`] (SIGKILL), [`Cluster::stop`] (SIGTERM,
//! asserting a clean exit), [`Cluster::restart`] (same flags, same data dir),
//! [`Cluster::pause`] / [`Cluster::resume`] (SIGSTOP / SIGCONT). Dropping the
//! cluster kills what is left; if the test is panicking it first prints the
//! tail of every member's log and keeps the directory for a post-mortem.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use skiff_proto::etcdserverpb::cluster_client::ClusterClient;
use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use skiff_proto::etcdserverpb::{
    MemberListRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, StatusRequest,
    StatusResponse,
};
use skiff_proto::mvccpb::KeyValue;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::cmd::{self, CmdOutput};
use crate::netns::Network;
use crate::wait::{try_wait_for, wait_for};
use crate::{EXIT_TIMEOUT, LEADER_TIMEOUT, LOG_TAIL_LINES, RPC_TIMEOUT, START_TIMEOUT, bins};

/// Whole-cluster start attempts when a picked port was taken meanwhile.
const START_ATTEMPTS: u32 = 3;
/// Bound on the gRPC calls the fixture makes to look at a member's state.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on establishing a connection to a member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest gRPC message the test clients accept.
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Heartbeat and election timeout given to every member, in milliseconds (etcd's defaults).
const HEARTBEAT_INTERVAL_MS: u64 = 100;
const ELECTION_TIMEOUT_MS: u64 = 1000;

/// A running cluster of store members; see the module docs.
pub struct Cluster {
    /// Holds the members' data dirs and logs; `None` once kept for a post-mortem.
    dir: Option<tempfile::TempDir>,
    store_bin: PathBuf,
    members: Vec<Member>,
    /// Flags given to every member, those added later included.
    extra_args: Vec<String>,
    /// The namespaces members run in, if not on loopback; dropped after the
    /// members are killed.
    network: Option<Network>,
}

struct Member {
    name: String,
    /// The address the member listens on: 127.0.0.1, or its own in a network.
    host: String,
    /// The network namespace it runs in, if any.
    netns: Option<String>,
    client_port: u16,
    peer_port: u16,
    log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    starts: u32,
    /// The raft member id, learned from Maintenance.Status once the cluster is up.
    id: u64,
}

/// Why a start failed.
enum StartError {
    /// A member could not bind a port picked for it: try again with others.
    PortTaken(String),
    Other(String),
}

impl Cluster {
    /// Starts `n` members named `s1..sN` on free loopback ports and waits until
    /// every one serves clients, all agree on a leader and all have published
    /// their client URLs.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], with `extra_args` added to every member's flags.
    pub async fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_prepared(n, extra_args, |_, _| {}).await
    }

    /// Like [`Cluster::start_with`]; `prepare(i, data_dir)` runs before
    /// member `i` first starts, e.g. to seed its data dir with a restored
    /// snapshot. A start retried on other ports prepares new data dirs.
    pub async fn start_prepared(
        n: usize,
        extra_args: &[&str],
        prepare: impl Fn(usize, &Path),
    ) -> Cluster {
        assert!(n > 0, "a cluster needs at least one member");
        let store_bin = bins::store_bin();
        for attempt in 1..=START_ATTEMPTS {
            let cluster = Cluster::spawn_all(n, &store_bin, extra_args, &prepare, None);
            if let Some(cluster) = cluster.wait_started(attempt).await {
                return cluster;
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    /// Like [`Cluster::start_with`], but each member runs in a network
    /// namespace of its own with an address of its own (see [`crate::netns`]),
    /// so that [`Cluster::isolate`] can cut it off from its peers.
    pub async fn start_in_network(n: usize, extra_args: &[&str]) -> Cluster {
        let store_bin = bins::store_bin();
        let network = Network::create(n);
        let cluster = Cluster::spawn_all(n, &store_bin, extra_args, &|_, _| {}, Some(network));
        match cluster.wait_started(START_ATTEMPTS).await {
            Some(cluster) => cluster,
            None => unreachable!("the last start attempt returns or panics"),
        }
    }

    /// Waits for a cluster just spawned to serve, with a leader and its
    /// members published; `None` when a port was taken and another attempt
    /// may follow (`attempt` < [`START_ATTEMPTS`]).
    async fn wait_started(mut self, attempt: u32) -> Option<Cluster> {
        let mut outcome = Ok(());
        for i in 0..self.len() {
            outcome = self.wait_serving(i).await;
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Ok(()) => {
                self.wait_for_leader(LEADER_TIMEOUT).await;
                self.learn_member_ids().await;
                self.wait_for_published_members().await;
                Some(self)
            }
            Err(StartError::PortTaken(why)) if attempt < START_ATTEMPTS => {
                eprintln!("cluster start attempt {attempt}: {why}; retrying on other ports");
                None
            }
            Err(StartError::PortTaken(why) | StartError::Other(why)) => {
                panic!("cluster start failed: {why}")
            }
        }
    }

    fn spawn_all(
        n: usize,
        store_bin: &Path,
        extra_args: &[&str],
        prepare: &dyn Fn(usize, &Path),
        network: Option<Network>,
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("skiff-cluster-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        // (host, client port, peer port, namespace) of every member.
        let places: Vec<(String, u16, u16, Option<String>)> = match &network {
            Some(network) => (0..n)
                .map(|i| {
                    let ns = Some(network.namespace(i));
                    (network.member_ip(i), 2379, 2380, ns)
                })
                .collect(),
            None => {
                let ports = free_ports(2 * n);
                (0..n)
                    .map(|i| ("127.0.0.1".to_string(), ports[i], ports[n + i], None))
                    .collect()
            }
        };
        let initial_cluster = places
            .iter()
            .enumerate()
            .map(|(i, (host, _, peer, _))| format!("s{}=http://{host}:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let members = places
            .into_iter()
            .enumerate()
            .map(|(i, (host, client_port, peer_port, netns))| {
                let name = format!("s{}", i + 1);
                prepare(i, &dir.path().join(&name).join("data"));
                let mut member = member_spec(
                    dir.path(),
                    &name,
                    &host,
                    client_port,
                    peer_port,
                    &initial_cluster,
                    "new",
                    extra_args,
                );
                member.netns = netns;
                member
            })
            .collect();
        let mut cluster = Cluster {
            dir: Some(dir),
            store_bin: store_bin.to_path_buf(),
            members,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            network,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        assert!(member.child.is_none(), "{} is already running", member.name);
        member.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", member.log_path.display()));
        writeln!(
            log,
            "===== skiff-tests: start #{} of {}: {} {}",
            member.starts,
            member.name,
            self.store_bin.display(),
            member.args.join(" ")
        )
        .expect("write the member log");
        let stderr = log.try_clone().expect("clone the log file handle");
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
        let mut command = match &member.netns {
            // `ip netns exec` execs the member: the child is the member itself.
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(&self.store_bin);
                command
            }
            None => Command::new(&self.store_bin),
        };
        let child = command
            .args(&member.args)
            .env("RUST_LOG", rust_log)
            // Plain text in the log files: no terminal colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {} ({}): {e}", member.name, self.store_bin.display())
            });
        member.child = Some(child);
        member.paused = false;
    }

    /// Waits until member `i` accepts connections on its client port, or fails
    /// if it exits first.
    async fn wait_serving(&mut self, i: usize) -> Result<(), StartError> {
        let addr = format!("{}:{}", self.members[i].host, self.members[i].client_port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.exited(i) {
                let log = std::fs::read_to_string(&self.members[i].log_path).unwrap_or_default();
                let start_log = log
                    .rsplit("===== skiff-tests: start #")
                    .next()
                    .unwrap_or_default();
                let why = format!(
                    "{} exited with {status} while starting",
                    self.members[i].name
                );
                let lower = start_log.to_lowercase();
                return Err(
                    if lower.contains("address already in use") || lower.contains("os error 98") {
                        StartError::PortTaken(why)
                    } else {
                        StartError::Other(why)
                    },
                );
            }
            let connect = tokio::net::TcpStream::connect(&addr);
            let connected = matches!(
                tokio::time::timeout(Duration::from_millis(200), connect).await,
                Ok(Ok(_))
            );
            if connected {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Other(format!(
                    "{} does not accept connections on {addr} after {START_TIMEOUT:?}",
                    self.members[i].name
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status of member `i` if its process has ended (it is reaped).
    fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        let member = &mut self.members[i];
        let child = member.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                member.child = None;
                member.paused = false;
                Some(status)
            }
            Ok(None) => None,
            Err(e) => panic!("wait for {}: {e}", member.name),
        }
    }

    async fn learn_member_ids(&mut self) {
        for i in 0..self.members.len() {
            let status = wait_for(
                format!("Maintenance.Status of {}", self.members[i].name),
                LEADER_TIMEOUT,
                async || self.status(i).await,
            )
            .await;
            let id = status.header.map(|h| h.member_id).unwrap_or_default();
            assert_ne!(
                id, 0,
                "{} reports member id 0 in its Status header",
                self.members[i].name
            );
            self.members[i].id = id;
        }
    }

    /// Waits until every member's MemberList shows every member with its name
    /// and client URLs. A member publishes those through raft once it runs
    /// (etcd's "publish"); etcd serves no client before its own publish has
    /// committed, skiff-store may, so a new cluster is ready only then.
    async fn wait_for_published_members(&self) {
        let n = self.len();
        for i in 0..n {
            wait_for(
                format!(
                    "{}'s member list to show all {n} members with client URLs",
                    self.name(i)
                ),
                LEADER_TIMEOUT,
                async || {
                    let mut client =
                        ClusterClient::new(self.channel_with_timeout(i, PROBE_TIMEOUT));
                    let request = MemberListRequest {
                        linearizable: false,
                    };
                    let response = client
                        .member_list(request)
                        .await
                        .map_err(|e| e.to_string())?;
                    let members = response.into_inner().members;
                    let published = members
                        .iter()
                        .filter(|m| !m.name.is_empty() && !m.client_ur_ls.is_empty())
                        .count();
                    if members.len() == n && published == n {
                        Ok(())
                    } else {
                        Err(format!(
                            "{published} of {} members published: {members:?}",
                            members.len()
                        ))
                    }
                },
            )
            .await;
        }
    }

    // ---- Facts about members -------------------------------------------------

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: `start` refuses 0).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The name of member `i`: `s{i+1}`.
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// The client URL of member `i`, `http://127.0.0.1:PORT` (or its own
    /// address in a network).
    pub fn client_url(&self, i: usize) -> String {
        format!("http://{}", self.client_addr(i))
    }

    /// The client address of member `i`, `127.0.0.1:PORT`: its client URL
    /// without the scheme. Compare what tools print with it through
    /// [`strip_scheme`]: skiff-store publishes `host:port` client URLs in
    /// MemberList where etcd publishes the advertised URL, because etcdctl 3.4
    /// sends a member-list URL with its scheme as the HTTP/2 `:authority`,
    /// which the server's HTTP/2 stack refuses (see `published_client_url` in
    /// store/src/server/mod.rs).
    pub fn client_addr(&self, i: usize) -> String {
        let member = &self.members[i];
        format!("{}:{}", member.host, member.client_port)
    }

    /// The peer URL of member `i`, `http://127.0.0.1:PORT`.
    pub fn peer_url(&self, i: usize) -> String {
        let member = &self.members[i];
        format!("http://{}:{}", member.host, member.peer_port)
    }

    /// Every member's client URL, comma-separated, as `--endpoints` takes them.
    pub fn endpoints(&self) -> String {
        (0..self.len())
            .map(|i| self.client_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The raft member id of member `i` (as in Status headers and MemberList).
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id
    }

    /// The member whose id is `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == id && id != 0)
    }

    /// Whether member `i` runs and is not paused.
    pub fn is_live(&self, i: usize) -> bool {
        self.members[i].child.is_some() && !self.members[i].paused
    }

    /// Indexes of the members that run and are not paused.
    pub fn live(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_live(i)).collect()
    }

    /// Every member index except `i`.
    pub fn others(&self, i: usize) -> Vec<usize> {
        (0..self.len()).filter(|&j| j != i).collect()
    }

    /// The log file of member `i` (all its starts, appended).
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log_path
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.members[i].log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The tails of every member's log, with a heading per member.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.len() {
            let _ = writeln!(
                out,
                "----- {} ({}), last {lines} lines of {} -----\n{}",
                self.name(i),
                self.state(i),
                self.log_path(i).display(),
                self.log_tail(i, lines)
            );
        }
        out
    }

    fn state(&self, i: usize) -> &'static str {
        match (&self.members[i].child, self.members[i].paused) {
            (None, _) => "not running",
            (Some(_), true) => "paused",
            (Some(_), false) => "running",
        }
    }

    // ---- Membership -------------------------------------------------------------

    /// Prepares, without starting it, a member `name` that joins the running
    /// cluster (`--initial-cluster-state existing`; its `--initial-cluster`
    /// lists the running members and itself), with the cluster's extra flags.
    /// Add it (MemberAdd with [`Cluster::peer_url`]) before
    /// [`Cluster::start_joining`] it. Returns its index.
    pub fn prepare_joining(&mut self, name: &str) -> usize {
        let ports = free_ports(2);
        let mut initial: Vec<String> = self
            .live()
            .into_iter()
            .map(|i| format!("{}={}", self.name(i), self.peer_url(i)))
            .collect();
        initial.push(format!("{name}=http://127.0.0.1:{}", ports[1]));
        let dir = self.dir.as_ref().expect("cluster dir").path().to_path_buf();
        let member = member_spec(
            &dir,
            name,
            "127.0.0.1",
            ports[0],
            ports[1],
            &initial.join(","),
            "existing",
            &self.extra_args,
        );
        self.members.push(member);
        self.members.len() - 1
    }

    /// Starts member `i` made by [`Cluster::prepare_joining`], waits until it
    /// serves clients and learns its member id.
    pub async fn start_joining(&mut self, i: usize) {
        self.spawn(i);
        if let Err(StartError::PortTaken(why) | StartError::Other(why)) = self.wait_serving(i).await
        {
            panic!("{why}\n{}", self.log_tail(i, 40));
        }
        let status = wait_for(
            format!("Maintenance.Status of {}", self.members[i].name),
            LEADER_TIMEOUT,
            async || self.status(i).await,
        )
        .await;
        self.members[i].id = status.header.map(|h| h.member_id).unwrap_or_default();
    }

    /// Gives member `i`, which must not be running, a new peer port (its
    /// flags change accordingly) and returns its new peer URL.
    pub fn move_peer_port(&mut self, i: usize) -> String {
        assert!(self.members[i].child.is_none(), "{} runs", self.name(i));
        let old = self.peer_url(i);
        self.members[i].peer_port = free_ports(1)[0];
        let new = self.peer_url(i);
        for arg in &mut self.members[i].args {
            *arg = arg.replace(&old, &new);
        }
        new
    }

    /// The data dir of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir
            .as_ref()
            .expect("cluster dir")
            .path()
            .join(self.name(i))
            .join("data")
    }

    // ---- Member control ---------------------------------------------------------

    /// The network the members run in; panics on a loopback cluster.
    fn network(&self) -> &Network {
        self.network
            .as_ref()
            .expect("partitions need a cluster made by Cluster::start_in_network")
    }

    /// Cuts member `i` off from every other member, both ways; clients still
    /// reach it.
    pub fn isolate(&self, i: usize) {
        self.network().isolate(i);
    }

    /// Reconnects member `i` to its peers after [`Cluster::isolate`].
    pub fn heal(&self, i: usize) {
        self.network().heal(i);
    }

    /// Whether member `i` is cut off from its peers now.
    pub fn is_isolated(&self, i: usize) -> bool {
        self.network.as_ref().is_some_and(|n| n.is_isolated(i))
    }

    /// SIGKILL member `i` and wait for it to exit.
    pub async fn kill(&mut self, i: usize) {
        let name = self.members[i].name.clone();
        let mut child = self.take_running(i, "kill");
        child
            .start_kill()
            .unwrap_or_else(|e| panic!("SIGKILL {name}: {e}"));
        match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("wait for {name} after SIGKILL: {e}"),
            Err(_) => panic!("{name} did not exit within {EXIT_TIMEOUT:?} of SIGKILL"),
        }
    }

    /// SIGTERM member `i` and assert that it exits with status 0 within
    /// [`EXIT_TIMEOUT`].
    pub async fn stop(&mut self, i: usize) {
        self.signal_and_expect_clean_exit(i, libc::SIGTERM, "SIGTERM")
            .await;
    }

    /// SIGINT member `i` (Ctrl-C) and assert that it exits with status 0
    /// within [`EXIT_TIMEOUT`].
    pub async fn interrupt(&mut self, i: usize) {
        self.signal_and_expect_clean_exit(i, libc::SIGINT, "SIGINT")
            .await;
    }

    async fn signal_and_expect_clean_exit(
        &mut self,
        i: usize,
        signal: libc::c_int,
        signal_name: &str,
    ) {
        let name = self.members[i].name.clone();
        assert!(
            !self.members[i].paused,
            "{signal_name} {name}: it is paused; resume it first"
        );
        let mut child = self.take_running(i, signal_name);
        let pid = child.id().expect("an unreaped child has a pid");
        send_signal(pid, signal).unwrap_or_else(|e| panic!("{signal_name} {name}: {e}"));
        let status = match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("wait for {name} after {signal_name}: {e}"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                panic!("{name} did not exit within {EXIT_TIMEOUT:?} of {signal_name}; killed it")
            }
        };
        assert!(
            status.success(),
            "{name} exited with {status} after {signal_name}, expected a clean exit with status 0"
        );
    }

    /// The child of running member `i`; panics if it is not running or has
    /// exited on its own (which no test expects).
    fn take_running(&mut self, i: usize, action: &str) -> Child {
        if let Some(status) = self.exited(i) {
            panic!(
                "{action} {}: it had already exited on its own with {status}",
                self.members[i].name
            );
        }
        let member = &mut self.members[i];
        member.paused = false;
        member
            .child
            .take()
            .unwrap_or_else(|| panic!("{action} {}: it is not running", member.name))
    }

    /// Starts member `i` again with the same flags and data dir, and waits
    /// until it accepts client connections.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        if let Err(StartError::PortTaken(why) | StartError::Other(why)) = self.wait_serving(i).await
        {
            panic!("restart of {}: {why}", self.members[i].name);
        }
    }

    /// Starts every member that is not running, all at once (a member may
    /// need a quorum before it serves), and waits until each accepts clients.
    pub async fn restart_all(&mut self) {
        let stopped: Vec<usize> = (0..self.len())
            .filter(|&i| self.members[i].child.is_none())
            .collect();
        for &i in &stopped {
            self.spawn(i);
        }
        for &i in &stopped {
            if let Err(StartError::PortTaken(why) | StartError::Other(why)) =
                self.wait_serving(i).await
            {
                panic!("restart of {}: {why}", self.members[i].name);
            }
        }
    }

    /// SIGSTOP member `i`: it stays in memory but does nothing.
    pub fn pause(&mut self, i: usize) {
        self.signal_running(i, libc::SIGSTOP, "SIGSTOP");
        self.members[i].paused = true;
    }

    /// SIGCONT member `i` after [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) {
        assert!(
            self.members[i].paused,
            "resume {}: it is not paused",
            self.members[i].name
        );
        self.signal_running(i, libc::SIGCONT, "SIGCONT");
        self.members[i].paused = false;
    }

    fn signal_running(&mut self, i: usize, signal: libc::c_int, signal_name: &str) {
        if let Some(status) = self.exited(i) {
            panic!(
                "{signal_name} {}: it had already exited on its own with {status}",
                self.members[i].name
            );
        }
        let member = &self.members[i];
        let child = member
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{signal_name} {}: it is not running", member.name));
        let pid = child.id().expect("an unreaped child has a pid");
        send_signal(pid, signal).unwrap_or_else(|e| panic!("{signal_name} {}: {e}", member.name));
    }

    // ---- Talking to members ------------------------------------------------------

    /// Checks an `endpoint status --cluster -w table` of this cluster: one row
    /// per member, their client addresses, and `leader` alone marked leader.
    pub fn assert_status_table(
        &self,
        table: &crate::Table,
        leader: usize,
        out: &impl std::fmt::Display,
    ) {
        assert_eq!(table.rows.len(), self.len(), "one row per member: {out}");
        let endpoints: std::collections::BTreeSet<&str> = table
            .column("ENDPOINT")
            .into_iter()
            .map(strip_scheme)
            .collect();
        let expected: std::collections::BTreeSet<String> =
            (0..self.len()).map(|i| self.client_addr(i)).collect();
        assert_eq!(
            endpoints,
            expected.iter().map(String::as_str).collect(),
            "{out}"
        );
        let leaders: Vec<usize> = (0..table.rows.len())
            .filter(|&r| table.cell(r, "IS LEADER") == "true")
            .collect();
        assert_eq!(leaders.len(), 1, "exactly one leader: {out}");
        assert_eq!(
            strip_scheme(table.cell(leaders[0], "ENDPOINT")),
            self.client_addr(leader),
            "{out}"
        );
    }

    /// A lazily connecting channel to member `i` whose calls time out after `timeout`.
    pub fn channel_with_timeout(&self, i: usize, timeout: Duration) -> Channel {
        Endpoint::from_shared(self.client_url(i))
            .expect("a valid endpoint URL")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .connect_lazy()
    }

    /// A lazily connecting channel to member `i`; calls time out after [`RPC_TIMEOUT`].
    pub fn channel(&self, i: usize) -> Channel {
        self.channel_with_timeout(i, RPC_TIMEOUT)
    }

    /// A KV client of member `i`.
    pub fn client(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A Maintenance client of member `i`.
    pub fn maintenance(&self, i: usize) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel(i))
    }

    /// A Cluster (membership) client of member `i`.
    pub fn cluster_client(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel(i))
    }

    /// Maintenance.Status of member `i`, bounded by a short timeout.
    pub async fn status(&self, i: usize) -> Result<StatusResponse, tonic::Status> {
        let mut client = MaintenanceClient::new(self.channel_with_timeout(i, PROBE_TIMEOUT));
        Ok(client.status(StatusRequest {}).await?.into_inner())
    }

    /// The live member that says it leads (its Status `leader` is its own
    /// `header.member_id`); the one with the highest term if several do.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in self.live() {
            let Ok(status) = self.status(i).await else {
                continue;
            };
            let Some(header) = status.header else {
                continue;
            };
            if status.leader != 0
                && status.leader == header.member_id
                && best.is_none_or(|(term, _)| status.raft_term > term)
            {
                best = Some((status.raft_term, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Waits until every live member reports the same leader and that leader
    /// is a live member that says it leads; returns its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        wait_for("a leader known to every live member", timeout, async || {
            self.agreed_leader().await
        })
        .await
    }

    /// Like [`Cluster::wait_for_leader`], but `Err` with the reason on timeout.
    pub async fn try_wait_for_leader(&self, timeout: Duration) -> Result<usize, String> {
        try_wait_for(timeout, async || self.agreed_leader().await).await
    }

    async fn agreed_leader(&self) -> Result<usize, String> {
        let live = self.live();
        if live.is_empty() {
            return Err("no member is live".to_string());
        }
        let mut leader_id = None;
        let mut ids = Vec::new();
        for &i in &live {
            let status = self
                .status(i)
                .await
                .map_err(|e| format!("Status of {}: {e}", self.name(i)))?;
            let member_id = status
                .header
                .as_ref()
                .map(|h| h.member_id)
                .unwrap_or_default();
            ids.push((i, member_id));
            if status.leader == 0 {
                return Err(format!(
                    "{} reports no leader (term {})",
                    self.name(i),
                    status.raft_term
                ));
            }
            match leader_id {
                None => leader_id = Some(status.leader),
                Some(id) if id != status.leader => {
                    return Err(format!(
                        "members disagree on the leader: {:x} vs {:x} (from {})",
                        id,
                        status.leader,
                        self.name(i)
                    ));
                }
                Some(_) => {}
            }
        }
        let leader_id = leader_id.expect("at least one live member answered");
        ids.iter()
            .find(|&&(_, id)| id == leader_id)
            .map(|&(i, _)| i)
            .ok_or_else(|| format!("the leader {leader_id:x} that live members report is not live"))
    }

    /// Puts `key` = `value` through member `i`; panics unless acknowledged.
    pub async fn must_put(
        &self,
        i: usize,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> PutResponse {
        let (key, value) = (key.as_ref(), value.as_ref());
        let request = PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        match self.client(i).put(request).await {
            Ok(response) => response.into_inner(),
            Err(e) => panic!(
                "put {:?} through {}: {e:?}",
                String::from_utf8_lossy(key),
                self.name(i)
            ),
        }
    }

    /// Range on member `i`; panics on error.
    pub async fn must_range(&self, i: usize, request: RangeRequest) -> RangeResponse {
        let key = String::from_utf8_lossy(&request.key).into_owned();
        match self.client(i).range(request).await {
            Ok(response) => response.into_inner(),
            Err(e) => panic!("range {key:?} on {}: {e:?}", self.name(i)),
        }
    }

    /// Linearizable read of `key` on member `i`; panics on error.
    pub async fn must_get(&self, i: usize, key: impl AsRef<[u8]>) -> Option<KeyValue> {
        let request = RangeRequest {
            key: key.as_ref().to_vec(),
            ..Default::default()
        };
        self.must_range(i, request).await.kvs.into_iter().next()
    }

    /// Serializable (local) read of `key` on member `i`; panics on error.
    pub async fn must_get_serializable(&self, i: usize, key: impl AsRef<[u8]>) -> Option<KeyValue> {
        let request = RangeRequest {
            key: key.as_ref().to_vec(),
            serializable: true,
            ..Default::default()
        };
        self.must_range(i, request).await.kvs.into_iter().next()
    }

    /// Every key under `prefix` on member `i`, linearizable or serializable.
    pub async fn must_get_prefix(
        &self,
        i: usize,
        prefix: impl AsRef<[u8]>,
        serializable: bool,
    ) -> Vec<KeyValue> {
        let prefix = prefix.as_ref();
        let request = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            serializable,
            ..Default::default()
        };
        self.must_range(i, request).await.kvs
    }

    /// The store revision as member `i` sees it (from a linearizable read).
    pub async fn must_revision(&self, i: usize) -> i64 {
        let request = RangeRequest {
            key: b"skiff-tests/revision-probe".to_vec(),
            ..Default::default()
        };
        let response = self.must_range(i, request).await;
        response
            .header
            .unwrap_or_else(|| panic!("range on {} has no header", self.name(i)))
            .revision
    }

    // ---- Command-line tools ---------------------------------------------------------

    /// `ETCDCTL_API=3 etcdctl --endpoints=<every member> ARGS`.
    pub async fn etcdctl(&self, args: &[&str]) -> CmdOutput {
        cmd::etcdctl(&self.endpoints(), args, None).await
    }

    /// `etcdctl` with `stdin` as standard input.
    pub async fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        cmd::etcdctl(&self.endpoints(), args, Some(stdin)).await
    }

    /// `skiff --endpoints=<every member> ARGS`.
    pub async fn skiff(&self, args: &[&str]) -> CmdOutput {
        cmd::skiff(&self.endpoints(), args, None).await
    }

    /// `skiff` with `stdin` as standard input.
    pub async fn skiff_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        cmd::skiff(&self.endpoints(), args, Some(stdin)).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            let _ = child.start_kill();
            let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
            while std::time::Instant::now() < deadline {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Ok(Some(_)) | Err(_) => break,
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("\n{}", self.logs_tail(LOG_TAIL_LINES));
            if let Some(dir) = self.dir.take() {
                eprintln!("member logs and data dirs kept in {}", dir.keep().display());
            }
        }
    }
}

/// A member named `name` with its data dir and log under `dir`, not started.
#[allow(clippy::too_many_arguments)]
fn member_spec(
    dir: &Path,
    name: &str,
    host: &str,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    state: &str,
    extra_args: &[impl AsRef<str>],
) -> Member {
    let client_url = format!("http://{host}:{client_port}");
    let peer_url = format!("http://{host}:{peer_port}");
    let data_dir = dir.join(name).join("data");
    let mut args = vec![
        "--name".to_string(),
        name.to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
        "--listen-client-urls".to_string(),
        client_url.clone(),
        "--advertise-client-urls".to_string(),
        client_url,
        "--listen-peer-urls".to_string(),
        peer_url.clone(),
        "--initial-advertise-peer-urls".to_string(),
        peer_url,
        "--initial-cluster".to_string(),
        initial_cluster.to_string(),
        "--initial-cluster-state".to_string(),
        state.to_string(),
        "--heartbeat-interval".to_string(),
        HEARTBEAT_INTERVAL_MS.to_string(),
        "--election-timeout".to_string(),
        ELECTION_TIMEOUT_MS.to_string(),
    ];
    args.extend(extra_args.iter().map(|a| a.as_ref().to_string()));
    Member {
        log_path: dir.join(format!("{name}.log")),
        name: name.to_string(),
        host: host.to_string(),
        netns: None,
        client_port,
        peer_port,
        args,
        child: None,
        paused: false,
        starts: 0,
        id: 0,
    }
}

/// `url` without an `http://` scheme and a trailing `/`: how to compare a
/// client URL a tool printed with [`Cluster::client_addr`].
pub fn strip_scheme(url: &str) -> &str {
    url.strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/')
}

/// The `range_end` that selects every key starting with `prefix`: the prefix
/// with its last byte incremented after dropping trailing 0xff bytes; `"\0"`
/// (every key) when nothing is left.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `n` distinct free TCP ports on 127.0.0.1: all bound at once so none repeats,
/// then released for the members to bind.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("local address of a bound socket")
                .port()
        })
        .collect()
}

/// kill(2) on a child of ours.
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) reads no memory of ours. `pid` is a child we have not
    // reaped yet (tokio gives its id only until then), so it cannot name a
    // process that reused the id.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b"k/"), b"k0");
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(6);
        let unique: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 6);
    }
}
