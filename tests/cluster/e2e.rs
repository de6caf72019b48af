//! The whole orchestrator: a store, a leading skiff-control (scheduler and
//! controllers) and two skiff-agents running pods on the real Docker
//! daemon. A Deployment rolls out and rolls forward; when a node's agent
//! dies, its pods come back Running on the other node within the default
//! budget of 30 s.

use std::time::Duration;

use serde_json::Value;
use skiff_tests::agent::{Agent, busybox_image};
use skiff_tests::wait::wait_for;
use skiff_tests::{Cluster, Control};
use tokio::time::Instant;

const PODS: &str = "/api/v1/namespaces/default/pods";
const WAIT: Duration = Duration::from_secs(90);

fn deployment(image: &str, message: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"echo {message}; exec sleep 3600\"]
        resources:
          requests:
            cpu: 10m
            memory: 8Mi
"
    )
}

/// Whether a pod is Running with its Ready condition True.
fn is_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The pods labelled `app=<app>` not being deleted: (name, node, ready).
async fn app_pods(control: &Control, app: &str) -> Vec<(String, String, bool)> {
    let list = control
        .api()
        .get(&format!("{PODS}?labelSelector=app%3D{app}"))
        .await
        .expect(200);
    let mut pods: Vec<(String, String, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                is_ready(p),
            )
        })
        .collect();
    pods.sort();
    pods
}

#[tokio::test]
async fn e2e_rollout_and_node_failure() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    // The agents' default lease (10 s), as the 30 s budget assumes.
    let mut a = Agent::start(
        &cluster,
        "e2e-a",
        &["--lease-ttl", "10s", "--heartbeat-interval", "2s"],
    )
    .await;
    let b = Agent::start(
        &cluster,
        "e2e-b",
        &["--lease-ttl", "10s", "--heartbeat-interval", "2s"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, deployment(image, "v1")).unwrap();
    let manifest = manifest.to_str().unwrap().to_string();
    control
        .skiff(&["apply", "-f", &manifest], None)
        .await
        .success();

    // The rollout completes: two ready pods, one on each node.
    let out = tokio::time::timeout(
        WAIT,
        control.skiff(
            &["rollout", "status", "deploy/web", "--timeout", "90s"],
            None,
        ),
    )
    .await
    .expect("rollout status returns");
    assert_eq!(
        out.success().lines().last().copied(),
        Some("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let pods = app_pods(&control, "web").await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.iter().all(|p| p.2), "{pods:?}");
    let mut nodes: Vec<&str> = pods.iter().map(|p| p.1.as_str()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [a.node(), b.node()],
        "replicas spread over the nodes"
    );

    // A new template rolls forward with no pod unavailable: a sampler
    // counts the ready pods all along (maxUnavailable 0).
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let api = control.api();
        let sampling = sampling.clone();
        async move {
            let mut least = usize::MAX;
            let mut samples = 0;
            let mut pace = skiff_tests::wait::pace(Duration::from_millis(50));
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                pace.tick().await;
                let list = api
                    .get(&format!("{PODS}?labelSelector=app%3Dweb"))
                    .await
                    .expect(200);
                let ready = list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| is_ready(p))
                    .count();
                least = least.min(ready);
                samples += 1;
            }
            (least, samples)
        }
    });
    std::fs::write(&manifest, deployment(image, "v2")).unwrap();
    control
        .skiff(&["apply", "-f", &manifest], None)
        .await
        .success();
    let out = control
        .skiff(
            &["rollout", "status", "deploy/web", "--timeout", "90s"],
            None,
        )
        .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (least, samples) = sampler.await.unwrap();
    eprintln!("ready pods during the rollout: at least {least} in {samples} samples");
    assert!(samples >= 5, "{samples} samples");
    assert!(
        least >= 2,
        "a rollout with maxUnavailable 0 had {least} ready pods"
    );
    assert_eq!(
        out.success().lines().last().copied(),
        Some("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let rs = control
        .api()
        .get("/apis/apps/v1/namespaces/default/replicasets")
        .await
        .expect(200);
    let mut replicas: Vec<(String, i64)> = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                r["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    replicas.sort();
    assert_eq!(replicas, [("1".to_string(), 0), ("2".to_string(), 2)]);
    let out = control.skiff(&["describe", "deploy", "web"], None).await;
    let text = out.success().stdout.clone();
    assert!(text.contains("ScalingReplicaSet"), "{text}");
    assert!(text.contains("Scaled down replica set web-"), "{text}");

    // Node a's agent dies: its pod comes back on b within 30 s.
    let on_a: Vec<String> = app_pods(&control, "web")
        .await
        .into_iter()
        .filter(|p| p.1 == a.node())
        .map(|p| p.0)
        .collect();
    assert_eq!(on_a.len(), 1);
    a.kill().await;
    let died = Instant::now();
    let pods = wait_for("two ready web pods on node b", WAIT, async || {
        let pods = app_pods(&control, "web").await;
        let moved = pods.len() == 2 && pods.iter().all(|p| p.1 == b.node() && p.2);
        if moved {
            Ok(pods)
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await;
    let took = died.elapsed();
    eprintln!("replacement Running on the other node {took:?} after the agent died");
    assert!(took < Duration::from_secs(30), "took {took:?}: {pods:?}");
    let node: Value = control
        .api()
        .get(&format!("/api/v1/nodes/{}", a.node()))
        .await
        .expect(200);
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "Unknown", "{ready}");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    wait_for("the NodeNotReady event of node a", WAIT, async || {
        has_event(&control, a.node(), "NodeNotReady").await
    })
    .await;
    let api = control.api();
    api.get(&format!("{PODS}/{}", on_a[0])).await.expect(404);

    // Back, node a's agent removes the containers of the pod it lost.
    a.restart().await;
    wait_for("node a's old containers to be removed", WAIT, async || {
        a.containers("skiff.pod.name").await.is_empty()
    })
    .await;
    wait_for("node a to be Ready again", WAIT, async || {
        let node = api
            .get(&format!("/api/v1/nodes/{}", a.node()))
            .await
            .expect(200);
        node["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
    .await;
}

/// Whether an Event with `reason` was recorded about the object `name`.
async fn has_event(control: &Control, name: &str, reason: &str) -> bool {
    control
        .events_for(name)
        .await
        .iter()
        .any(|e| e["reason"] == reason)
}

fn rc(image: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: sleeper
spec:
  replicas: 3
  selector:
    app: sleeper
  template:
    metadata:
      labels:
        app: sleeper
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: [\"sleep\", \"3600\"]
"
    )
}

async fn wait_sleepers(control: &Control, n: usize) -> Vec<(String, String, bool)> {
    wait_for(format!("{n} ready sleeper pods"), WAIT, async || {
        let pods = app_pods(control, "sleeper").await;
        if pods.len() == n && pods.iter().all(|p| p.2) {
            Ok(pods)
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await
}

/// A ReplicationController of 3 over two agents: spread, scaled to 5 and
/// to 1, and a deleted pod replaced, all Running on Docker.
#[tokio::test]
async fn e2e_replication_controller_over_two_agents() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let a = Agent::start(&cluster, "e2e-rc-a", &[]).await;
    let b = Agent::start(&cluster, "e2e-rc-b", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rc.yaml");
    std::fs::write(&manifest, rc(image)).unwrap();
    control
        .skiff(&["apply", "-f", manifest.to_str().unwrap()], None)
        .await
        .success();
    let pods = wait_sleepers(&control, 3).await;
    let on =
        |pods: &[(String, String, bool)], node: &str| pods.iter().filter(|p| p.1 == node).count();
    assert!(
        on(&pods, a.node()) >= 1 && on(&pods, b.node()) >= 1,
        "spread: {pods:?}"
    );

    control
        .skiff(&["scale", "rc", "sleeper", "--replicas", "5"], None)
        .await
        .success();
    let pods = wait_sleepers(&control, 5).await;
    assert!(
        on(&pods, a.node()) >= 2 && on(&pods, b.node()) >= 2,
        "spread: {pods:?}"
    );

    control
        .skiff(&["scale", "rc", "sleeper", "--replicas", "1"], None)
        .await
        .success();
    let five = pods;
    let pods = wait_sleepers(&control, 1).await;
    // Each pod scaled away was deleted by the controller and its
    // containers stopped by its agent.
    for (name, ..) in five.iter().filter(|p| p.0 != pods[0].0) {
        wait_for(
            format!("the events of {name}'s deletion"),
            WAIT,
            async || has_event(&control, name, "Killing").await,
        )
        .await;
    }
    assert!(has_event(&control, "sleeper", "SuccessfulDelete").await);
    // The containers of the pods scaled away are gone from Docker.
    wait_for("4 pods' containers to be removed", WAIT, async || {
        let mut left = a.containers("skiff.pod.name").await;
        left.extend(b.containers("skiff.pod.name").await);
        // The one pod left has its pause and main containers.
        if left.len() == 2 {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;

    // A deleted pod is replaced.
    let gone = pods[0].0.clone();
    control
        .skiff(&["delete", "pod", &gone], None)
        .await
        .success();
    let pods = wait_for("a replacement", WAIT, async || {
        let pods = app_pods(&control, "sleeper").await;
        if pods.len() == 1 && pods[0].0 != gone && pods[0].2 {
            Ok(pods)
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await;
    assert_ne!(pods[0].0, gone);
}

/// This machine's memory in MiB, as the agents measure it.
fn machine_memory_mib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kib / 1024
}

/// A pod that asks for more memory than any node has left is told why,
/// and runs once a node with room joins. The small node keeps three
/// quarters of the machine's memory for the system (`--system-reserved`);
/// the pod asks for half of it.
#[tokio::test]
async fn e2e_unschedulable_until_a_big_enough_node_joins() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let total = machine_memory_mib();
    let reserved = format!("memory={}Mi", total * 3 / 4);
    let small = Agent::start(&cluster, "e2e-small", &["--system-reserved", &reserved]).await;
    let api = control.api();
    let node = api
        .get(&format!("/api/v1/nodes/{}", small.node()))
        .await
        .expect(200);
    let allocatable = node["status"]["allocatable"]["memory"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        allocatable,
        node["status"]["capacity"]["memory"].as_str().unwrap()
    );
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": image,
            "imagePullPolicy": "Never", "command": ["sleep", "3600"],
            "resources": {"requests": {"memory": format!("{}Mi", total / 2)}}}]}});
    api.post(PODS, &pod).await.expect(201);
    let condition = wait_for("big to be unschedulable", WAIT, async || {
        let p = api.get(&format!("{PODS}/big")).await.expect(200);
        let c = p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())?;
        (c["reason"] == "Unschedulable").then_some(c)
    })
    .await;
    assert_eq!(
        condition["message"],
        "0/1 nodes are available: 1 Insufficient memory."
    );

    let big = Agent::start(&cluster, "e2e-big", &[]).await;
    let p = wait_for("big to run on the big node", WAIT, async || {
        let p = api.get(&format!("{PODS}/big")).await.expect(200);
        (p["status"]["phase"] == "Running").then_some(p)
    })
    .await;
    assert_eq!(p["spec"]["nodeName"], big.node());
    drop(small);
}
