//! A real `skiff-agent` against a [`Cluster`] and the machine's Docker
//! daemon, and the test workload image.
//!
//! [`Agent::start`] starts the binary with a node name of its own (the
//! test's name and the process id, so that tests running at once on one
//! Docker daemon never touch each other's containers), a data dir and a log
//! file in a temporary directory, and returns once its Node is in the
//! store. [`Agent::kill`] and [`Agent::restart`] kill and restart the
//! process (same flags, same data dir). Dropping it kills the process and
//! removes every container labelled with its node, even when the test
//! failed; if the test is panicking the tail of the log is printed first.
//!
//! [`busybox_image`] builds `skiff-test/busybox:1.35` from Debian's
//! busybox-static (`/bin/busybox`, installed with apt-get when missing) as
//! a `FROM scratch` image when Docker lacks it: no registry is needed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use skiff_client::{Client, ClientOptions};
use skiff_runtime::Registry;
use tokio::process::{Child, Command};

use crate::cmd::{self, CmdOutput};
use crate::{Cluster, EXIT_TIMEOUT, LOG_TAIL_LINES, START_TIMEOUT, bins};

/// The test workload image.
pub const BUSYBOX_IMAGE: &str = "skiff-test/busybox:1.35";
/// The label every container of a node carries.
pub const NODE_LABEL: &str = "skiff.node";

/// A running `skiff-agent`; see the module docs.
pub struct Agent {
    dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    node: String,
    registry: Registry,
}

impl Agent {
    /// Starts an agent for node `<name>-<pid>` against `cluster`, with a
    /// 1 s heartbeat and resync and a 4 s lease, plus `extra` flags (which
    /// replace those defaults when they name the same flag).
    pub async fn start(cluster: &Cluster, name: &str, extra: &[&str]) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-")
            .tempdir()
            .expect("create a temporary directory for skiff-agent");
        let node = format!("{name}-{}", std::process::id());
        let data_dir = dir.path().join("data");
        let mut args: Vec<String> = [
            "--store",
            &cluster.endpoints(),
            "--node-name",
            &node,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--heartbeat-interval",
            "1s",
            "--lease-ttl",
            "4s",
            "--resync-interval",
            "1s",
            "--port",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A flag in `extra` replaces the default one (flag and value).
        for flag in extra.iter().filter(|f| f.starts_with("--")) {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args.drain(i..i + 2);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let endpoints: Vec<String> = cluster.endpoints().split(',').map(String::from).collect();
        let client = Client::connect(&endpoints, ClientOptions::default())
            .await
            .expect("connect to the store");
        let mut agent = Agent {
            log_path: dir.path().join("agent.log"),
            dir: Some(dir),
            data_dir,
            args,
            child: None,
            node,
            registry: Registry::new(client),
        };
        agent.spawn().await;
        agent
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the agent log");
        let child = Command::new(bins::bin("skiff-agent"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start skiff-agent");
        self.child = Some(child);
        let key = format!("/registry/nodes/{}", self.node);
        let ready = crate::wait::try_wait_for(START_TIMEOUT, async || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("skiff-agent exited with {status}"));
            }
            self.registry
                .get(&key)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(why) = ready {
            panic!(
                "skiff-agent did not register its node: {why}\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where the agent keeps emptyDir volumes.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The store as the agent sees it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the agent's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- skiff-agent log ({}) ---\n{}\n--- end ---",
            self.log_path.display(),
            all[start..].join("\n")
        )
    }

    /// SIGKILLs the agent and waits for it to exit.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("skiff-agent is running");
        child.start_kill().expect("SIGKILL skiff-agent");
        tokio::time::timeout(EXIT_TIMEOUT, child.wait())
            .await
            .expect("skiff-agent exits after SIGKILL")
            .expect("wait for skiff-agent");
    }

    /// Starts the agent again with the same flags and data dir.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the agent before restarting it");
        self.spawn().await;
    }

    /// `docker ps -a` of this node's containers with `filter` (a label
    /// `k=v`) as `(id, name, state)`.
    pub async fn containers(&self, filter: &str) -> Vec<(String, String, String)> {
        let out = docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label={NODE_LABEL}={}", self.node),
            "--filter",
            &format!("label={filter}"),
            "--format",
            "{{.ID}} {{.Names}} {{.State}}",
        ])
        .await;
        out.success();
        out.stdout
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                Some((
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                ))
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            // Dead before its containers are removed, so that it creates
            // none after.
            let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        if std::thread::panicking() {
            eprintln!("\n{}", self.log_tail(LOG_TAIL_LINES));
        }
        remove_node_containers(&self.node);
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("skiff-agent log kept in {}", dir.keep().display());
        }
    }
}

/// Removes every container labelled with `node`, synchronously (for Drop).
/// A request the agent sent just before it died may still create one, so
/// the removal is repeated until two looks in a row find none.
pub fn remove_node_containers(node: &str) {
    const ROUNDS: usize = 20;
    let mut clean = 0;
    for _ in 0..ROUNDS {
        if remove_node_containers_once(node) {
            clean += 1;
            if clean == 2 {
                return;
            }
        } else {
            clean = 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// One removal pass; whether there was nothing to remove.
fn remove_node_containers_once(node: &str) -> bool {
    let Ok(out) = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={NODE_LABEL}={node}"),
        ])
        .output()
    else {
        return true;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if ids.is_empty() {
        return true;
    }
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", "-v"])
        .args(&ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    false
}

/// Runs the `docker` CLI.
pub async fn docker(args: &[&str]) -> CmdOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    cmd::run(Path::new("docker"), &args, &[], None).await
}

/// Makes sure Docker has [`BUSYBOX_IMAGE`]; builds it when missing.
pub async fn busybox_image() -> &'static str {
    if docker(&["image", "inspect", BUSYBOX_IMAGE])
        .await
        .status
        .success()
    {
        return BUSYBOX_IMAGE;
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        let out = cmd::run(
            Path::new("apt-get"),
            &["install", "-y", "-q", "busybox-static"].map(String::from),
            &[("DEBIAN_FRONTEND", "noninteractive")],
            None,
        )
        .await;
        assert!(
            out.status.success() && busybox.is_file(),
            "install busybox-static (tests/prereqs.sh does): {}",
            out.stderr
        );
    }
    let root = tempfile::tempdir().expect("a directory for the image root");
    for dir in ["bin", "tmp", "www", "etc"] {
        std::fs::create_dir_all(root.path().join(dir)).expect("create the image's dirs");
    }
    std::fs::copy(busybox, root.path().join("bin/busybox")).expect("copy busybox");
    // One link per applet, to /bin/busybox.
    let applets = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
        if applet != "busybox" {
            let _ =
                std::os::unix::fs::symlink("/bin/busybox", root.path().join("bin").join(applet));
        }
    }
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\n",
    )
    .expect("write /etc/passwd");
    let script = format!(
        "tar -C {} -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"sh\"]' - {BUSYBOX_IMAGE}",
        root.path().display()
    );
    let out = cmd::run(Path::new("sh"), &["-c".to_string(), script], &[], None).await;
    out.success();
    BUSYBOX_IMAGE
}

/// `status.phase` of a pod object.
pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}
