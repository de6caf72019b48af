//! The `skiff` CLI's lease commands and `kv watch`, against a real cluster:
//! lease grant → put --lease → timetolive --keys → revoke → key gone; and a
//! watcher that keeps printing events across a leader kill.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_tests::{Cluster, EXIT_TIMEOUT, LEADER_TIMEOUT, bins, wait_for};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// How long a watcher may take to print an event (reconnection included).
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn cli_watch_lease_grant_attach_revoke() {
    let cluster = Cluster::start(3).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;

    let granted = cluster.skiff(&["lease", "grant", "60"]).await;
    granted.success();
    let line = granted.stdout.trim_end();
    let id = line
        .strip_prefix("lease ")
        .and_then(|rest| rest.strip_suffix(" granted with TTL(60s)"))
        .unwrap_or_else(|| panic!("unexpected grant output:\n{granted}"));
    assert_eq!(id.len(), 16, "{line}");

    cluster
        .skiff(&["kv", "put", "--lease", id, "leased", "v"])
        .await
        .success();
    let ttl = cluster.skiff(&["lease", "timetolive", id, "--keys"]).await;
    ttl.success();
    let text = ttl.stdout.trim_end();
    assert!(
        text.starts_with(&format!("lease {id} granted with TTL(60s), remaining("))
            && text.ends_with("s), attached keys([leased])"),
        "{ttl}"
    );

    let listed = cluster.skiff(&["lease", "list"]).await;
    listed.success();
    assert!(listed.lines().contains(&id), "{listed}");

    let once = cluster.skiff(&["lease", "keep-alive", "--once", id]).await;
    once.success();
    assert_eq!(
        once.stdout,
        format!("lease {id} keepalived with TTL(60)\n"),
        "{once}"
    );

    let revoked = cluster.skiff(&["lease", "revoke", id]).await;
    revoked.success();
    assert_eq!(revoked.stdout, format!("lease {id} revoked\n"));
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    assert!(cluster.must_get(leader, "leased").await.is_none());
    let gone = cluster.skiff(&["kv", "get", "leased"]).await;
    gone.success();
    assert_eq!(gone.stdout, "");

    let expired = cluster.skiff(&["lease", "timetolive", id]).await;
    expired.success();
    assert_eq!(expired.stdout, format!("lease {id} already expired\n"));
    let again = cluster.skiff(&["lease", "revoke", id]).await;
    again.code(1);
    assert!(
        again
            .stderr
            .contains("failed to revoke lease (etcdserver: requested lease not found)"),
        "{again}"
    );
}

/// A running `skiff kv watch`, its output collected as it comes.
struct Watcher {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(pipe: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

impl Watcher {
    /// `skiff kv watch --prefix PREFIX --endpoints <all>`, logging (on
    /// stderr) which endpoint each call went to and every reconnection.
    fn spawn(cluster: &Cluster, prefix: &str) -> Watcher {
        let mut child = Command::new(bins::skiff_bin())
            .args(["kv", "watch", "--prefix", prefix])
            .args(["--endpoints", &cluster.endpoints()])
            .env_remove("SKIFF_ENDPOINTS")
            .env("SKIFF_LOG", "skiff=debug,skiff_client=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn skiff kv watch");
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        Watcher {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `Ok` once stdout contains `expected`.
    fn printed(&self, expected: &str) -> Result<(), String> {
        let text = self.stdout();
        if text.contains(expected) {
            Ok(())
        } else {
            Err(format!(
                "watcher printed so far:\n{text}--- stderr ---\n{}",
                self.stderr()
            ))
        }
    }

    /// The member whose endpoint the watch stream was last opened on.
    fn watching(&self, cluster: &Cluster) -> Option<usize> {
        let log = self.stderr();
        let line = log.lines().rev().find(|l| l.contains("rpc=\"Watch\""))?;
        (0..cluster.len()).find(|&i| line.contains(&format!("\"{}\"", cluster.client_url(i))))
    }
}

#[tokio::test]
async fn cli_watch_lease_watch_survives_a_leader_kill() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;

    // The client starts at a random endpoint: start watchers until one
    // streams from the leader, so killing it breaks the stream for sure.
    let mut attempt = 0;
    let mut watcher = loop {
        attempt += 1;
        let watcher = Watcher::spawn(&cluster, "w/");
        let probe = format!("w/probe{attempt}");
        // The watch may be created after a put; keep putting until the
        // first event shows.
        wait_for(
            "the watcher to print a first event",
            EVENT_TIMEOUT,
            async || {
                cluster.must_put(leader, &probe, "p").await;
                watcher.printed(&format!("PUT\n{probe}\np\n"))
            },
        )
        .await;
        let on = watcher.watching(&cluster);
        if on == Some(leader) || attempt == 30 {
            assert_eq!(on, Some(leader), "{}", watcher.stderr());
            break watcher;
        }
        drop(watcher); // kill_on_drop
    };

    cluster.must_put(leader, "w/a", "1").await;
    cluster.must_put(leader, "w/b", "2").await;
    wait_for("both events", EVENT_TIMEOUT, async || {
        watcher.printed("PUT\nw/a\n1\nPUT\nw/b\n2\n")
    })
    .await;

    cluster.kill(leader).await;
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    cluster.must_put(new_leader, "w/c", "3").await;
    wait_for(
        "the event after the leader kill",
        EVENT_TIMEOUT,
        async || watcher.printed("PUT\nw/a\n1\nPUT\nw/b\n2\nPUT\nw/c\n3\n"),
    )
    .await;
    let text = watcher.stdout();
    // Nothing was printed twice across the reconnection, which did happen
    // on another member.
    assert_eq!(text.matches("w/a\n").count(), 1, "{text}");
    assert_eq!(text.matches("w/b\n").count(), 1, "{text}");
    let stderr = watcher.stderr();
    assert!(stderr.contains("reopening"), "{stderr}");
    assert_ne!(watcher.watching(&cluster), Some(leader), "{stderr}");

    // SIGTERM ends the watcher with status 0. (kill(1) rather than an
    // unsafe kill(2): the crate forbids unsafe.)
    let pid = watcher.child.id().expect("watcher pid").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid}: {sent}");
    let status = tokio::time::timeout(EXIT_TIMEOUT, watcher.child.wait())
        .await
        .expect("the watcher exits after SIGTERM")
        .expect("wait for the watcher");
    assert!(status.success(), "watcher exited with {status}");
}
