//! `skiff up`: a local store cluster in the foreground.
//!
//! Spawns one `skiff-store` per member (`s1`, `s2`, ... with data in
//! `DIR/sN` and output in `DIR/sN.log`), waits until every member reports
//! the same leader, then starts one `skiff-control` (the API server, on
//! `--api-port`, output in `DIR/control.log`) against them and waits for
//! its `/readyz`, then one `skiff-agent` (the node agent, endpoint on
//! `--agent-port`, output in `DIR/agent.log`) unless `--no-agent`; when the
//! agent cannot start (no Docker daemon) it says so plainly and goes on
//! without it. It prints how to use it all, and on Ctrl-C or SIGTERM stops
//! the agent and the API server, then every member, with SIGTERM (SIGKILL after
//! [`STOP_TIMEOUT`]). If a process exits on its own, the tail of its log is
//! shown and the others are stopped.
//!
//! Ports follow etcd's local Procfile: s1 listens for clients on `BASE`,
//! member N ≥ 2 on `BASE + N*10000` (2379, 22379, 32379), and each member
//! for peers on the next port (2380, 22380, 32380).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use skiff_client::{Client, ClientOptions};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::duration;

/// How long a member may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often members are polled while starting and running.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Log lines shown when a member exits early.
const LOG_TAIL_LINES: usize = 20;
/// etcd's limit: more members make a slower cluster, not a safer one.
const MAX_MEMBERS: u16 = 7;
/// Member N ≥ 2 listens on `BASE + N * PORT_STRIDE` (2379, 22379, 32379).
const PORT_STRIDE: u32 = 10_000;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the members' data (DIR/s1, ...) and logs (DIR/s1.log, ...).
    #[arg(long, value_name = "DIR", default_value = "./.skiff")]
    pub data_dir: PathBuf,
    /// Number of members.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_MEMBERS)))]
    pub members: u16,
    /// Client port of s1; member N ≥ 2 uses BASE + N*10000; peer ports are one more.
    #[arg(long, value_name = "PORT", default_value_t = 2379)]
    pub base_port: u16,
    /// How long to wait for the members to elect a leader.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    pub wait_timeout: Duration,
    /// The skiff-store binary (default: next to skiff, else in PATH).
    #[arg(long, value_name = "PATH", env = "SKIFF_STORE_BIN")]
    pub store_bin: Option<PathBuf>,
    /// Port of the API server (skiff-control) on 127.0.0.1.
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub api_port: u16,
    /// The skiff-control binary (default: next to skiff, else in PATH).
    #[arg(long, value_name = "PATH", env = "SKIFF_CONTROL_BIN")]
    pub control_bin: Option<PathBuf>,
    /// Port of the node agent's endpoint (container logs) on 127.0.0.1.
    #[arg(long, value_name = "PORT", default_value_t = 10250)]
    pub agent_port: u16,
    /// The skiff-agent binary (default: next to skiff, else in PATH).
    #[arg(long, value_name = "PATH", env = "SKIFF_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
    /// Node agents to start, each a node of its own sharing this machine's
    /// Docker daemon (endpoints on --agent-port, --agent-port + 1, ...).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub agents: u16,
    /// Start no node agent (as --agents 0).
    #[arg(long)]
    pub no_agent: bool,
}

/// One node agent to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    /// `--node-name`; `None` for the agent's default (the host name).
    pub node: Option<String>,
    /// Its directory under the data dir, and its log's name.
    pub dir: String,
    pub port: u16,
    /// `--proxy-address`: several agents of one machine each take a
    /// loopback address of their own (`127.0.0.<i>`), so that each one's
    /// node ports can be reached apart; `None` for the default.
    pub proxy_address: Option<String>,
}

impl AgentPlan {
    /// The agents of `skiff up --agents n`: one keeps the agent's defaults
    /// (the host name, `agent/`, `agent.log`); several are
    /// `<host>-1`, `<host>-2`, ... in `agent-1/`, `agent-2/`, ...
    pub fn all(n: u16, host: &str, first_port: u16) -> Vec<AgentPlan> {
        if n == 1 {
            return vec![AgentPlan {
                node: None,
                dir: "agent".into(),
                port: first_port,
                proxy_address: None,
            }];
        }
        (1..=n)
            .map(|i| AgentPlan {
                node: Some(format!("{host}-{i}")),
                dir: format!("agent-{i}"),
                port: first_port.saturating_add(i - 1),
                proxy_address: Some(format!("127.0.0.{}", i.min(254))),
            })
            .collect()
    }

    pub fn log(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(format!("{}.log", self.dir))
    }
}

/// How long the agent may take to reach Docker and serve.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `skiff-agent` flags: every member as a store endpoint.
pub fn agent_args(plan: &[MemberPlan], data_dir: &Path, agent: &AgentPlan) -> Vec<String> {
    let store: Vec<String> = plan.iter().map(MemberPlan::endpoint).collect();
    let mut args = vec![
        "--store".into(),
        store.join(","),
        "--data-dir".into(),
        data_dir.join(&agent.dir).display().to_string(),
        "--port".into(),
        agent.port.to_string(),
    ];
    if let Some(address) = &agent.proxy_address {
        args.extend(["--proxy-address".to_string(), address.clone()]);
    }
    if let Some(node) = &agent.node {
        args.extend(["--node-name".to_string(), node.clone()]);
    }
    args
}

/// The API server to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlan {
    pub port: u16,
    pub log: PathBuf,
}

impl ControlPlan {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The `skiff-control` flags: every member as a store endpoint.
pub fn control_args(plan: &[MemberPlan], control: &ControlPlan) -> Vec<String> {
    let store: Vec<String> = plan.iter().map(MemberPlan::endpoint).collect();
    vec![
        "--store".into(),
        store.join(","),
        "--listen".into(),
        format!("127.0.0.1:{}", control.port),
    ]
}

/// One member to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlan {
    pub name: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
}

impl MemberPlan {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// The members, their ports and paths.
pub fn plan(data_dir: &Path, members: u16, base_port: u16) -> anyhow::Result<Vec<MemberPlan>> {
    if members == 0 || members > MAX_MEMBERS {
        bail!("--members must be from 1 to {MAX_MEMBERS}");
    }
    (0..u32::from(members))
        .map(|i| {
            // Member numbers start at 1; s1 sits on the base port itself.
            let offset = if i == 0 { 0 } else { (i + 1) * PORT_STRIDE };
            let client = u32::from(base_port) + offset;
            let (Ok(client_port), Ok(peer_port)) =
                (u16::try_from(client), u16::try_from(client + 1))
            else {
                bail!(
                    "--base-port {base_port} with {members} members needs port {}, above 65535; \
                     choose a lower --base-port or fewer members",
                    client + 1
                );
            };
            let name = format!("s{}", i + 1);
            Ok(MemberPlan {
                data_dir: data_dir.join(&name),
                log: data_dir.join(format!("{name}.log")),
                name,
                client_port,
                peer_port,
            })
        })
        .collect()
}

/// The `skiff-store` flags for member `i` (etcd's flags).
pub fn store_args(plan: &[MemberPlan], i: usize) -> Vec<String> {
    let m = &plan[i];
    let initial_cluster = plan
        .iter()
        .map(|p| format!("{}={}", p.name, p.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "--name".into(),
        m.name.clone(),
        "--data-dir".into(),
        m.data_dir.display().to_string(),
        "--listen-client-urls".into(),
        m.client_url(),
        "--advertise-client-urls".into(),
        m.client_url(),
        "--listen-peer-urls".into(),
        m.peer_url(),
        "--initial-advertise-peer-urls".into(),
        m.peer_url(),
        "--initial-cluster".into(),
        initial_cluster,
        // skiff-store ignores the initial-cluster flags when its data dir
        // already holds a cluster, so a restart reuses the data.
        "--initial-cluster-state".into(),
        "new".into(),
    ]
}

/// A binary (`skiff-store`, `skiff-control`) next to the running `skiff`,
/// else in PATH.
fn find_binary(name: &str, flag: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("find the running skiff executable")?;
    if let Some(dir) = exe.parent() {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "cannot find {name} next to {} or in PATH; build it with `cargo build --workspace --bins` \
         or pass {flag}",
        exe.display()
    )
}

/// A started process: a member, or the API server.
struct Running {
    name: String,
    log: PathBuf,
    child: Child,
    /// Where this run's output starts in the (appended) log.
    log_start: u64,
    exited: Option<ExitStatus>,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let plan = plan(&args.data_dir, args.members, args.base_port)?;
    let bin = match &args.store_bin {
        Some(bin) => bin.clone(),
        None => find_binary("skiff-store", "--store-bin")?,
    };
    let control_bin = match &args.control_bin {
        Some(bin) => bin.clone(),
        None => find_binary("skiff-control", "--control-bin")?,
    };
    let control = ControlPlan {
        port: args.api_port,
        log: args.data_dir.join("control.log"),
    };
    if let Err(e) = TcpListener::bind(("127.0.0.1", control.port)) {
        bail!(
            "the API server's port {} is not free ({e}); is a cluster already running? \
             Stop it or choose another port with --api-port",
            control.port
        );
    }
    for m in &plan {
        for (port, what) in [(m.client_port, "client"), (m.peer_port, "peer")] {
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                bail!(
                    "{}'s {what} port {port} is not free ({e}); is a cluster already running? \
                     Stop it or choose other ports with --base-port",
                    m.name
                );
            }
        }
    }
    fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;

    // Listen before spawning, so a signal during startup stops the members.
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;

    let mut members = Vec::new();
    for i in 0..plan.len() {
        match spawn(&bin, &plan, i) {
            Ok(m) => members.push(m),
            Err(e) => {
                stop_all(&mut members).await;
                return Err(e);
            }
        }
    }
    eprintln!(
        "started {} member(s) of {}; waiting up to {} for a leader",
        members.len(),
        bin.display(),
        duration::format_go(args.wait_timeout)
    );

    let ready = tokio::select! {
        r = wait_until_ready(&mut members, &plan, args.wait_timeout) => Some(r),
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
    };
    let leader = match ready {
        Some(Ok(leader)) => leader,
        Some(Err(e)) => {
            stop_all(&mut members).await;
            return Err(e);
        }
        None => {
            eprintln!("interrupted while starting");
            stop_all(&mut members).await;
            return Ok(());
        }
    };
    match spawn_process(
        "skiff-control",
        &control.log,
        &control_bin,
        &control_args(&plan, &control),
    ) {
        Ok(c) => members.push(c),
        Err(e) => {
            stop_all(&mut members).await;
            return Err(e);
        }
    }
    let ready = tokio::select! {
        r = wait_for_control(&mut members, &control, args.wait_timeout) => Some(r),
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
    };
    match ready {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            stop_all(&mut members).await;
            return Err(e);
        }
        None => {
            eprintln!("interrupted while starting");
            stop_all(&mut members).await;
            return Ok(());
        }
    }
    let count = if args.no_agent { 0 } else { args.agents };
    let mut agents: Vec<Result<PathBuf, String>> = Vec::new();
    if count == 0 {
        agents.push(Err("not started (--no-agent or --agents 0)".to_string()));
    }
    for agent_plan in AgentPlan::all(count, &skiff_runtime::process::host_name(), args.agent_port) {
        let started = tokio::select! {
            r = start_agent(&args, &plan, &agent_plan) => Some(r),
            _ = interrupt.recv() => None,
            _ = terminate.recv() => None,
        };
        match started {
            Some(Ok(running)) => {
                members.push(running);
                agents.push(Ok(agent_plan.log(&args.data_dir)));
            }
            Some(Err(why)) => {
                // One agent that cannot start (no Docker) means none can.
                agents.push(Err(why));
                break;
            }
            None => {
                eprintln!("interrupted while starting");
                stop_all(&mut members).await;
                return Ok(());
            }
        }
    }
    print_ready(&plan, &leader, &args.data_dir, &control, &agents);

    let mut poll = tokio::time::interval(POLL_INTERVAL);
    let outcome = loop {
        tokio::select! {
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
            _ = poll.tick() => {
                if let Some(i) = first_exited(&mut members) {
                    break Err(report_exit(&members[i]));
                }
            }
        }
    };
    stop_all(&mut members).await;
    outcome
}

fn spawn(bin: &Path, plan: &[MemberPlan], i: usize) -> anyhow::Result<Running> {
    let m = &plan[i];
    spawn_process(&m.name, &m.log, bin, &store_args(plan, i))
}

/// Starts `bin args` with its output appended to `log`.
fn spawn_process(
    name: &str,
    log_path: &Path,
    bin: &Path,
    args: &[String],
) -> anyhow::Result<Running> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let log_start = log.metadata().map(|md| md.len()).unwrap_or(0);
    let mut command = Command::new(bin);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicate the log file handle")?)
        .stderr(log)
        // Its own process group: Ctrl-C reaches `skiff up`, which stops the
        // members in order, not every member at once.
        .process_group(0)
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let child = command
        .spawn()
        .with_context(|| format!("start {name} ({})", bin.display()))?;
    Ok(Running {
        name: name.to_string(),
        log: log_path.to_path_buf(),
        child,
        log_start,
        exited: None,
    })
}

/// Asks Linux to send SIGTERM to the member if `skiff up` dies without
/// stopping it (e.g. SIGKILL), so no orphan keeps the ports.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the async-signal-safe prctl system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Sends `signal` to a process.
#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a child
    // this process spawned and has not reaped yet.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The index of a member that has exited, recording its status.
fn first_exited(members: &mut [Running]) -> Option<usize> {
    for (i, m) in members.iter_mut().enumerate() {
        if m.exited.is_none()
            && let Ok(Some(status)) = m.child.try_wait()
        {
            m.exited = Some(status);
            return Some(i);
        }
    }
    None
}

/// Prints the tail of an exited member's log; returns the error to exit with.
fn report_exit(m: &Running) -> anyhow::Error {
    let status = m
        .exited
        .map_or_else(|| "unknown status".to_string(), |s| s.to_string());
    eprintln!(
        "member {} exited early ({status}); last lines of {}:",
        m.name,
        m.log.display()
    );
    match log_tail(&m.log, m.log_start, LOG_TAIL_LINES) {
        Ok(lines) if lines.is_empty() => eprintln!("  (the log is empty)"),
        Ok(lines) => lines.iter().for_each(|l| eprintln!("  {l}")),
        Err(e) => eprintln!("  (cannot read the log: {e})"),
    }
    anyhow::anyhow!(
        "member {} exited ({status}); stopped the other members",
        m.name
    )
}

/// The last `n` lines written to `path` since offset `start`.
fn log_tail(path: &Path, start: u64, n: usize) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(tail_lines(&String::from_utf8_lossy(&bytes), n))
}

fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// What one member said the last time it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Starting,
    NoLeader,
    Leader(u64),
}

/// Polls Maintenance.Status on every member until all report one leader;
/// returns the leader's name.
async fn wait_until_ready(
    members: &mut [Running],
    plan: &[MemberPlan],
    timeout: Duration,
) -> anyhow::Result<String> {
    let probe_options = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
    };
    let endpoints: Vec<String> = plan.iter().map(MemberPlan::endpoint).collect();
    let client = Client::connect(&endpoints, probe_options).await?;
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    let tty = io::stderr().is_terminal();
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut last_line = String::new();
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    loop {
        poll.tick().await;
        if let Some(i) = first_exited(members) {
            if tty {
                eprintln!();
            }
            return Err(report_exit(&members[i]));
        }
        let answers =
            futures_util::future::join_all(endpoints.iter().map(|ep| client.status(ep))).await;
        let probes: Vec<Probe> = answers
            .into_iter()
            .zip(members.iter())
            .map(|(answer, m)| match answer {
                Ok(status) => {
                    if let Some(h) = &status.header {
                        names.insert(h.member_id, m.name.clone());
                    }
                    if status.leader == 0 {
                        Probe::NoLeader
                    } else {
                        Probe::Leader(status.leader)
                    }
                }
                Err(_) => Probe::Starting,
            })
            .collect();
        let leader_name = |id: &u64| names.get(id).cloned().unwrap_or_else(|| format!("{id:x}"));
        if let Some(Probe::Leader(id)) = probes.first()
            && probes.iter().all(|p| *p == Probe::Leader(*id))
        {
            if tty {
                eprintln!();
            }
            return Ok(leader_name(id));
        }
        let line = members
            .iter()
            .zip(&probes)
            .map(|(m, p)| {
                let state = match p {
                    Probe::Starting => "starting".to_string(),
                    Probe::NoLeader => "no leader".to_string(),
                    Probe::Leader(id) => format!("leader {}", leader_name(id)),
                };
                format!("{}: {state}", m.name)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let elapsed = started.elapsed().as_secs();
        if tty {
            eprint!("\r\x1b[2K  [{elapsed:>2}s] {line}");
        } else if line != last_line {
            eprintln!("  [{elapsed:>2}s] {line}");
        }
        last_line = line;
        if Instant::now() >= deadline {
            if tty {
                eprintln!();
            }
            let logs = members
                .iter()
                .map(|m| m.log.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            bail!(
                "the members did not agree on a leader within {} ({last_line}); see {logs}",
                duration::format_go(timeout)
            );
        }
    }
}

/// Polls the API server's `/readyz` until it answers 200.
async fn wait_for_control(
    processes: &mut [Running],
    control: &ControlPlan,
    timeout: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .context("build an HTTP client")?;
    let url = format!("{}/readyz", control.url());
    let deadline = Instant::now() + timeout;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    loop {
        poll.tick().await;
        if let Some(i) = first_exited(processes) {
            return Err(report_exit(&processes[i]));
        }
        let last = match http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => format!("/readyz answered {}", resp.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "the API server at {} was not ready within {} ({last}); see {}",
                control.url(),
                duration::format_go(timeout),
                control.log.display()
            );
        }
    }
}

/// Starts one `skiff-agent` and waits until it serves (it has reached
/// Docker by then); `Err` says plainly why there is no agent.
async fn start_agent(
    args: &UpArgs,
    plan: &[MemberPlan],
    agent_plan: &AgentPlan,
) -> Result<Running, String> {
    let bin = match &args.agent_bin {
        Some(bin) => bin.clone(),
        None => find_binary("skiff-agent", "--agent-bin").map_err(|e| e.to_string())?,
    };
    if let Err(e) = TcpListener::bind(("127.0.0.1", agent_plan.port)) {
        return Err(format!(
            "its port {} is not free ({e}); choose another with --agent-port",
            agent_plan.port
        ));
    }
    let log = agent_plan.log(&args.data_dir);
    let mut agent = spawn_process(
        "skiff-agent",
        &log,
        &bin,
        &agent_args(plan, &args.data_dir, agent_plan),
    )
    .map_err(|e| e.to_string())?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{}/healthz", agent_plan.port);
    let deadline = Instant::now() + AGENT_START_TIMEOUT;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    loop {
        poll.tick().await;
        if let Ok(Some(status)) = agent.child.try_wait() {
            let output = log_tail(&log, agent.log_start, usize::MAX)
                .unwrap_or_default()
                .join("\n");
            let why = if output.contains("connect to Docker") {
                "no Docker daemon is reachable"
            } else {
                "it exited"
            };
            return Err(format!("{why} ({status}); see {}", log.display()));
        }
        if let Ok(resp) = http.get(&url).send().await
            && resp.status().is_success()
        {
            return Ok(agent);
        }
        if Instant::now() >= deadline {
            let _ = agent.child.start_kill();
            let _ = agent.child.wait().await;
            return Err(format!(
                "it did not serve within {}; see {}",
                duration::format_go(AGENT_START_TIMEOUT),
                log.display()
            ));
        }
    }
}

fn print_ready(
    plan: &[MemberPlan],
    leader: &str,
    data_dir: &Path,
    control: &ControlPlan,
    agents: &[Result<PathBuf, String>],
) {
    let members = plan;
    let endpoints: Vec<String> = plan.iter().map(MemberPlan::endpoint).collect();
    let endpoints = endpoints.join(",");
    let mut out = io::stdout().lock();
    let mut text = format!(
        "skiff store is up: {} member(s), leader {leader}\n\n",
        members.len()
    );
    text.push_str("  NAME  CLIENT URL               PEER URL                 LOG\n");
    for m in members {
        text.push_str(&format!(
            "  {:<4}  {:<23}  {:<23}  {}\n",
            m.name,
            m.client_url(),
            m.peer_url(),
            m.log.display()
        ));
    }
    text.push_str(&format!(
        "\nskiff-control (the API server) is up at {} (log: {})\n",
        control.url(),
        control.log.display()
    ));
    for agent in agents {
        match agent {
            Ok(log) => text.push_str(&format!(
                "skiff-agent runs this machine's pods on Docker (log: {})\n",
                log.display()
            )),
            Err(why) => text.push_str(&format!("No node agent: {why}. Pods will stay Pending.\n")),
        }
    }
    text.push_str(&format!(
        "\nData is in {}; the next `skiff up` with the same --data-dir reuses it.\n\n",
        data_dir.display()
    ));
    text.push_str(&format!("Try:\n  export SKIFF_ENDPOINTS={endpoints}\n"));
    text.push_str("  skiff kv put hello world\n  skiff kv get hello\n");
    text.push_str(&format!("  etcdctl --endpoints={endpoints} get hello\n"));
    text.push_str("  skiff endpoint status --cluster -w table\n");
    text.push_str(&format!("  export SKIFF_SERVER={}\n", control.url()));
    text.push_str("  skiff apply -f manifests/\n  skiff get pods,deploy,svc\n\n");
    text.push_str("Press Ctrl-C to stop the API server and every member.\n");
    // Nothing to do if stdout is gone; the cluster keeps running.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// SIGTERM to every running member, then wait; SIGKILL whoever is still
/// running after [`STOP_TIMEOUT`].
async fn stop_all(members: &mut [Running]) {
    let running: Vec<&str> = members
        .iter()
        .filter(|m| m.exited.is_none())
        .map(|m| m.name.as_str())
        .collect();
    if running.is_empty() {
        return;
    }
    eprintln!("stopping {}", running.join(", "));
    for m in members.iter().filter(|m| m.exited.is_none()) {
        if let Some(pid) = m.child.id() {
            send_signal(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for m in members.iter_mut().filter(|m| m.exited.is_none()) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, m.child.wait()).await {
            Ok(Ok(status)) => m.exited = Some(status),
            Ok(Err(e)) => eprintln!("wait for {}: {e}", m.name),
            Err(_) => {
                eprintln!(
                    "{} did not stop within {}; killing it",
                    m.name,
                    duration::format_go(STOP_TIMEOUT)
                );
                let _ = m.child.start_kill();
                m.exited = m.child.wait().await.ok();
            }
        }
    }
    eprintln!("stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_keeps_the_defaults_and_several_are_numbered() {
        let one = AgentPlan::all(1, "box", 10250);
        assert_eq!(
            one,
            [AgentPlan {
                node: None,
                dir: "agent".into(),
                port: 10250,
                proxy_address: None,
            }]
        );
        assert_eq!(one[0].log(Path::new("/d")), Path::new("/d/agent.log"));
        let three = AgentPlan::all(3, "box", 10250);
        let names: Vec<_> = three.iter().map(|a| a.node.clone().unwrap()).collect();
        assert_eq!(names, ["box-1", "box-2", "box-3"]);
        assert_eq!(three[2].port, 10252);
        assert_eq!(three[1].dir, "agent-2");
        let args = agent_args(&[], Path::new("/d"), &three[1]);
        assert_eq!(args[args.len() - 2..], ["--node-name", "box-2"]);
        assert_eq!(
            args[args.len() - 4..args.len() - 2],
            ["--proxy-address", "127.0.0.2"]
        );
        assert!(AgentPlan::all(0, "box", 10250).is_empty());
    }

    #[test]
    fn default_plan_uses_etcds_procfile_ports() {
        let p = plan(Path::new(".skiff"), 3, 2379).unwrap();
        let names: Vec<&str> = p.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s3"]);
        let clients: Vec<u16> = p.iter().map(|m| m.client_port).collect();
        let peers: Vec<u16> = p.iter().map(|m| m.peer_port).collect();
        assert_eq!(clients, [2379, 22379, 32379]);
        assert_eq!(peers, [2380, 22380, 32380]);
        assert_eq!(p[1].data_dir, Path::new(".skiff/s2"));
        assert_eq!(p[2].log, Path::new(".skiff/s3.log"));
        assert_eq!(p[0].endpoint(), "127.0.0.1:2379");
    }

    #[test]
    fn ports_derive_from_base_and_must_fit() {
        let p = plan(Path::new("d"), 5, 3000).unwrap();
        let clients: Vec<u16> = p.iter().map(|m| m.client_port).collect();
        assert_eq!(clients, [3000, 23000, 33000, 43000, 53000]);
        assert_eq!(p[4].peer_port, 53001);
        assert_eq!(plan(Path::new("d"), 6, 2379).unwrap()[5].client_port, 62379);
        let err = plan(Path::new("d"), 7, 2379).unwrap_err().to_string();
        assert!(err.contains("above 65535"), "{err}");
        assert!(plan(Path::new("d"), 0, 2379).is_err());
        assert!(plan(Path::new("d"), 8, 1000).is_err());
        assert!(plan(Path::new("d"), 1, 65535).is_err());
        assert_eq!(plan(Path::new("d"), 1, 65534).unwrap()[0].peer_port, 65535);
    }

    #[test]
    fn store_flags_mirror_etcd() {
        let p = plan(Path::new("/tmp/x"), 3, 2379).unwrap();
        let args = store_args(&p, 1);
        let flag = |name: &str| {
            let i = args
                .iter()
                .position(|a| a == name)
                .unwrap_or_else(|| panic!("{name}"));
            args[i + 1].clone()
        };
        assert_eq!(flag("--name"), "s2");
        assert_eq!(flag("--data-dir"), "/tmp/x/s2");
        assert_eq!(flag("--listen-client-urls"), "http://127.0.0.1:22379");
        assert_eq!(flag("--advertise-client-urls"), "http://127.0.0.1:22379");
        assert_eq!(flag("--listen-peer-urls"), "http://127.0.0.1:22380");
        assert_eq!(
            flag("--initial-advertise-peer-urls"),
            "http://127.0.0.1:22380"
        );
        assert_eq!(
            flag("--initial-cluster"),
            "s1=http://127.0.0.1:2380,s2=http://127.0.0.1:22380,s3=http://127.0.0.1:32380"
        );
        assert_eq!(flag("--initial-cluster-state"), "new");
    }

    #[test]
    fn control_flags_name_every_member() {
        let p = plan(Path::new("/tmp/x"), 3, 2379).unwrap();
        let control = ControlPlan {
            port: 8080,
            log: PathBuf::from("/tmp/x/control.log"),
        };
        assert_eq!(
            control_args(&p, &control),
            [
                "--store",
                "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379",
                "--listen",
                "127.0.0.1:8080"
            ]
        );
        assert_eq!(control.url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(tail_lines("a\nb", 5), ["a", "b"]);
        assert!(tail_lines("", 3).is_empty());
    }

    #[test]
    fn log_tail_reads_only_this_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s1.log");
        fs::write(&path, "old run\n").unwrap();
        let start = fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        writeln!(f, "new 1\nnew 2").unwrap();
        assert_eq!(log_tail(&path, start, 10).unwrap(), ["new 1", "new 2"]);
    }
}
