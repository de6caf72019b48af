//! etcdctl 3.4's `watch` and `lease` commands against the store.

use std::process::Stdio;
use std::time::Duration;

use skiff_tests::bins::etcdctl_bin;
use skiff_tests::{Cluster, LEADER_TIMEOUT};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long a test waits for the next line of `etcdctl watch`.
const LINE_TIMEOUT: Duration = Duration::from_secs(15);

struct Watching {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watching {
    fn start(cluster: &Cluster, args: &[&str]) -> Watching {
        let mut child = Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", cluster.endpoints()))
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcdctl watch");
        let stdout = child.stdout.take().expect("piped stdout");
        Watching {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next `n` lines etcdctl prints.
    async fn lines(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(LINE_TIMEOUT, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => out.push(line),
                Ok(Ok(None)) => panic!("etcdctl watch ended after {out:?}"),
                Ok(Err(e)) => panic!("read etcdctl watch: {e}"),
                Err(_) => panic!(
                    "etcdctl watch printed nothing more within {LINE_TIMEOUT:?} after {out:?}"
                ),
            }
        }
        out
    }
}

#[tokio::test]
async fn etcdctl_watch_prefix_from_a_revision_then_live() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let first = cluster
        .must_put(leader, "w/a", "1")
        .await
        .header
        .expect("header")
        .revision;
    cluster.must_put(leader, "w/b", "2").await;
    let first_rev = first.to_string();
    let mut watch = Watching::start(&cluster, &["--prefix", "w/", "--rev", &first_rev]);
    assert_eq!(
        watch.lines(6).await,
        ["PUT", "w/a", "1", "PUT", "w/b", "2"],
        "history from --rev"
    );
    cluster
        .must_put(cluster.others(leader)[0], "w/c", "3")
        .await;
    cluster.must_put(leader, "other", "x").await;
    cluster
        .client(leader)
        .delete_range(skiff_proto::etcdserverpb::DeleteRangeRequest {
            key: "w/a".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    assert_eq!(
        watch.lines(5).await,
        ["PUT", "w/c", "3", "DELETE", "w/a"],
        "live events, only the prefix"
    );
    watch.child.kill().await.expect("stop etcdctl watch");
}

#[tokio::test]
async fn etcdctl_lease_session() {
    let cluster = Cluster::start(3).await;
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let out = cluster.etcdctl(&["lease", "grant", "60"]).await;
    let granted = out.success().stdout.trim().to_string();
    let id = granted
        .strip_prefix("lease ")
        .and_then(|rest| rest.strip_suffix(" granted with TTL(60s)"))
        .unwrap_or_else(|| panic!("unexpected grant output: {out}"))
        .to_string();
    let lease_flag = format!("--lease={id}");
    assert_eq!(
        cluster
            .etcdctl(&["put", &lease_flag, "leased", "v"])
            .await
            .success()
            .stdout
            .trim(),
        "OK"
    );

    let out = cluster
        .etcdctl(&["lease", "timetolive", &id, "--keys"])
        .await;
    let text = out.success().stdout.trim().to_string();
    assert!(
        text.starts_with(&format!("lease {id} granted with TTL(60s), remaining("))
            && text.ends_with("attached keys([leased])"),
        "{out}"
    );
    let out = cluster
        .etcdctl(&["lease", "keep-alive", "--once", &id])
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        format!("lease {id} keepalived with TTL(60)"),
        "{out}"
    );
    let out = cluster.etcdctl(&["lease", "list"]).await;
    assert_eq!(
        out.success().lines(),
        ["found 1 leases", id.as_str()],
        "{out}"
    );
    let out = cluster.etcdctl(&["lease", "revoke", &id]).await;
    assert_eq!(
        out.success().stdout.trim(),
        format!("lease {id} revoked"),
        "{out}"
    );
    assert_eq!(
        cluster
            .etcdctl(&["get", "leased"])
            .await
            .success()
            .stdout
            .trim(),
        "",
        "the leased key is gone"
    );
    let out = cluster.etcdctl(&["lease", "timetolive", &id]).await;
    assert_eq!(
        out.success().stdout.trim(),
        format!("lease {id} already expired"),
        "{out}"
    );
}
