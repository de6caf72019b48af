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

/// The web pods not being deleted: (name, node, Running and ready).
async fn web_pods(control: &Control) -> Vec<(String, String, bool)> {
    let list = control
        .api()
        .get(&format!("{PODS}?labelSelector=app%3Dweb"))
        .await
        .expect(200);
    let mut pods: Vec<(String, String, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["phase"] == "Running"
                && p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                ready,
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
    let pods = web_pods(&control).await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.iter().all(|p| p.2), "{pods:?}");
    let mut nodes: Vec<&str> = pods.iter().map(|p| p.1.as_str()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [a.node(), b.node()],
        "replicas spread over the nodes"
    );

    // A new template rolls forward with no pod unavailable.
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
    let on_a: Vec<String> = web_pods(&control)
        .await
        .into_iter()
        .filter(|p| p.1 == a.node())
        .map(|p| p.0)
        .collect();
    assert_eq!(on_a.len(), 1);
    a.kill().await;
    let died = Instant::now();
    let pods = wait_for("two ready web pods on node b", WAIT, async || {
        let pods = web_pods(&control).await;
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
