//! The scheduler in a real skiff-control against a real store: pods are
//! bound where they fit, replicas spread, a pod that fits nowhere is told
//! why in Kubernetes' words and bound once a node that fits appears, and
//! when the leading instance dies another one takes over within the lease
//! TTL without binding any pod twice.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::wait::wait_for;
use skiff_tests::{Cluster, Control};
use tokio::time::Instant;

const PODS: &str = "/api/v1/namespaces/default/pods";
const WAIT: Duration = Duration::from_secs(30);

fn node(name: &str, memory: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
    "metadata": {"name": name, "labels": labels},
    "status": {
        "capacity": {"cpu": "2", "memory": memory, "pods": "110"},
        "allocatable": {"cpu": "2", "memory": memory, "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady"}]
    }})
}

fn pod(name: &str, memory: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": memory}}}]}})
}

async fn node_of(control: &Control, name: &str) -> String {
    let api = control.api();
    wait_for(format!("pod {name} to be bound"), WAIT, async || {
        let p = api.get(&format!("{PODS}/{name}")).await.expect(200);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    })
    .await
}

#[tokio::test]
async fn scheduler_binds_spreads_and_explains() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let api = control.api();
    for (name, memory, zone) in [("n1", "2Gi", "a"), ("n2", "2Gi", "a"), ("n3", "8Gi", "b")] {
        api.post("/api/v1/nodes", &node(name, memory, json!({"zone": zone})))
            .await
            .expect(201);
    }
    // Two replicas of one owner land on two nodes; n3 has the most room,
    // so one of them goes there.
    let web = FRONTEND
        .replace("frontend", "web")
        .replace("replicas: 3", "replicas: 2");
    api.apply("/apis/apps/v1/namespaces/default/replicasets/web", &web)
        .await
        .expect(201);
    let bound = wait_for("both web pods to be bound", WAIT, async || {
        let list = api
            .get(&format!("{PODS}?labelSelector=tier%3Dweb"))
            .await
            .expect(200);
        let items = list["items"].as_array().unwrap().clone();
        let all_bound = items.len() == 2 && items.iter().all(|p| p["spec"]["nodeName"].is_string());
        all_bound.then_some(items)
    })
    .await;
    let mut nodes: Vec<&str> = bound
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_ne!(nodes[0], nodes[1], "replicas of one owner spread");
    assert!(nodes.contains(&"n3"), "{nodes:?}");
    let first = &bound[0];
    let name = first["metadata"]["name"].as_str().unwrap();
    let scheduled = &first["status"]["conditions"][0];
    assert_eq!(
        (scheduled["type"].as_str(), scheduled["status"].as_str()),
        (Some("PodScheduled"), Some("True"))
    );
    let events = wait_for("the Scheduled event", WAIT, async || {
        let events = control.events_for(name).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "Scheduled");
    assert_eq!(
        events[0]["message"],
        format!(
            "Successfully assigned default/{name} to {}",
            first["spec"]["nodeName"].as_str().unwrap()
        )
    );

    // Too big for the zone-a nodes, and n3 is in zone b.
    let mut big = pod("big", "3Gi");
    big["spec"]["nodeSelector"] = json!({"zone": "a"});
    api.post(PODS, &big).await.expect(201);
    let expected = "0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector.";
    let condition = wait_for("big to be marked unschedulable", WAIT, async || {
        let p = api.get(&format!("{PODS}/big")).await.expect(200);
        let c = p["status"]["conditions"][0].clone();
        (c["reason"] == "Unschedulable").then_some(c)
    })
    .await;
    assert_eq!(condition["type"], "PodScheduled");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["message"], expected);
    // The event is recorded after the condition is written.
    let events = wait_for("the FailedScheduling event", WAIT, async || {
        let events = control.events_for("big").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "FailedScheduling");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["message"], expected);
    let out = control.skiff(&["describe", "pod", "big"], None).await;
    out.success();
    assert!(out.stdout.contains("FailedScheduling"), "{}", out.stdout);

    // A node that fits appears: the pod is bound to it without waiting for
    // the periodic retry.
    let added = Instant::now();
    api.post("/api/v1/nodes", &node("n4", "8Gi", json!({"zone": "a"})))
        .await
        .expect(201);
    assert_eq!(node_of(&control, "big").await, "n4");
    assert!(
        added.elapsed() < Duration::from_secs(10),
        "{:?}",
        added.elapsed()
    );
    wait_for("the Scheduled event of big", WAIT, async || {
        let events = control.events_for("big").await;
        events.iter().any(|e| e["reason"] == "Scheduled")
    })
    .await;
}

/// Waits for the pod's Scheduled event, and asserts that it was bound once:
/// one Scheduled event, with count 1.
async fn assert_scheduled_once(control: &Control, name: &str) {
    let events = wait_for(format!("the Scheduled event of {name}"), WAIT, async || {
        let events = control.events_for(name).await;
        events
            .iter()
            .any(|e| e["reason"] == "Scheduled")
            .then_some(events)
    })
    .await;
    let scheduled: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "Scheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{name}: {events:?}");
    assert_eq!(scheduled[0]["count"], 1, "{name} bound once: {events:?}");
}

#[tokio::test]
async fn scheduler_fails_over_to_another_instance() {
    let cluster = Cluster::start(3).await;
    let mut first = Control::start_leading(&cluster).await;
    let api = first.api();
    api.post("/api/v1/nodes", &node("n1", "8Gi", json!({})))
        .await
        .expect(201);
    api.post(PODS, &pod("p1", "10Mi")).await.expect(201);
    assert_eq!(node_of(&first, "p1").await, "n1");
    // The second instance serves the API but waits for the leadership.
    let second = Control::start_leading(&cluster).await;
    let api = second.api();

    first.kill().await;
    let killed = Instant::now();
    for i in 2..=6 {
        api.post(PODS, &pod(&format!("p{i}"), "10Mi"))
            .await
            .expect(201);
    }
    for i in 2..=6 {
        assert_eq!(node_of(&second, &format!("p{i}")).await, "n1");
    }
    let took = killed.elapsed();
    eprintln!("the new leader had bound 5 new pods {took:?} after the old one was killed");
    // The lease TTL is 2 s; the new leader lists, then binds.
    assert!(took < Duration::from_secs(10), "hand-over took {took:?}");
    for i in 1..=6 {
        assert_scheduled_once(&second, &format!("p{i}")).await;
    }

    // The second dies while a ReplicaSet of 30 is being created; a third
    // takes over. The end: exactly 30 pods, each bound once.
    let mut second = second;
    let third = Control::start_leading(&cluster).await;
    // Room for 30 more pods of 100m: two more nodes of 2 cpus.
    for name in ["n2", "n3"] {
        third
            .api()
            .post("/api/v1/nodes", &node(name, "8Gi", json!({})))
            .await
            .expect(201);
    }
    let many = FRONTEND.replace("replicas: 3", "replicas: 30");
    second
        .api()
        .apply(
            "/apis/apps/v1/namespaces/default/replicasets/frontend",
            &many,
        )
        .await
        .expect(201);
    second.kill().await;
    let pods = wait_for("30 frontend pods, all bound", WAIT, async || {
        let list = third
            .api()
            .get(&format!("{PODS}?labelSelector=tier%3Dfrontend"))
            .await
            .expect(200);
        let items = list["items"].as_array().unwrap().clone();
        let bound = items
            .iter()
            .filter(|p| p["spec"]["nodeName"].is_string())
            .count();
        if items.len() == 30 && bound == 30 {
            Ok(items)
        } else {
            Err(format!("{} pods, {bound} bound", items.len()))
        }
    })
    .await;
    for p in &pods {
        assert_scheduled_once(&third, p["metadata"]["name"].as_str().unwrap()).await;
    }
    // No more than 30, a while later: no instance created duplicates.
    let list = third
        .api()
        .get(&format!("{PODS}?labelSelector=tier%3Dfrontend"))
        .await
        .expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 30);
}

const FRONTEND: &str = "\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
spec:
  replicas: 3
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
    spec:
      containers:
      - name: app
        image: busybox
        resources:
          requests:
            cpu: 100m
            memory: 10Mi
";

/// The nodes of the pods of the frontend ReplicaSet that are not being
/// deleted, sorted.
async fn frontend_nodes(control: &Control) -> Vec<String> {
    let list = control
        .api()
        .get(&format!("{PODS}?labelSelector=tier%3Dfrontend"))
        .await
        .expect(200);
    let mut nodes: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

/// cordon keeps new pods off a node; drain moves a node's pods elsewhere
/// through their controller, and refuses pods no controller would bring
/// back unless forced.
#[tokio::test]
async fn scheduler_cordon_and_drain() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let api = control.api();
    for name in ["n1", "n2"] {
        api.post("/api/v1/nodes", &node(name, "4Gi", json!({})))
            .await
            .expect(201);
    }
    api.apply(
        "/apis/apps/v1/namespaces/default/replicasets/frontend",
        FRONTEND,
    )
    .await
    .expect(201);
    wait_for("3 frontend pods on both nodes", WAIT, async || {
        let nodes = frontend_nodes(&control).await;
        nodes.len() == 3 && nodes.contains(&"n1".to_string()) && nodes.contains(&"n2".to_string())
    })
    .await;

    let out = control.skiff(&["cordon", "n1"], None).await;
    assert_eq!(out.success().lines(), ["node/n1 cordoned"], "{out}");
    let out = control.skiff(&["cordon", "n1"], None).await;
    assert_eq!(out.success().lines(), ["node/n1 already cordoned"], "{out}");
    let n1 = api.get("/api/v1/nodes/n1").await.expect(200);
    assert_eq!(n1["spec"]["unschedulable"], true);

    // Draining n1 moves its pods to n2.
    let out = control
        .skiff(&["drain", "n1", "--grace-period", "0"], None)
        .await;
    let lines = out.success().lines();
    assert_eq!(
        lines.first().copied(),
        Some("node/n1 already cordoned"),
        "{out}"
    );
    assert_eq!(lines.last().copied(), Some("node/n1 drained"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pod/frontend-") && l.ends_with(" evicted")),
        "{out}"
    );
    wait_for("the frontend to move to n2", WAIT, async || {
        frontend_nodes(&control).await == ["n2", "n2", "n2"]
    })
    .await;

    // A pod with no controller on n2: drain refuses it, and deletes nothing.
    let mut loner = pod("loner", "10Mi");
    loner["spec"]["nodeName"] = json!("n2");
    api.post(PODS, &loner).await.expect(201);
    let out = control
        .skiff(&["drain", "n2", "--grace-period", "0"], None)
        .await;
    assert!(!out.status.success(), "{out}");
    assert_eq!(
        out.stderr.trim(),
        "error: unable to drain node \"n2\" due to error: cannot delete Pods that declare no controller (use --force to override): default/loner"
    );
    api.get(&format!("{PODS}/loner")).await.expect(200);
    assert_eq!(frontend_nodes(&control).await, ["n2", "n2", "n2"]);

    let out = control.skiff(&["uncordon", "n1"], None).await;
    assert_eq!(out.success().lines(), ["node/n1 uncordoned"], "{out}");
}
