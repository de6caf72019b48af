//! skiff-agent against a real store, a real API server and the machine's
//! Docker daemon: node registration and liveness, pods run as pause + app
//! containers, restart policies, bad images, deletion, and adoption of
//! running containers by a restarted agent. Every test's containers carry
//! its own node label and are removed when its [`Agent`] is dropped.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_tests::agent::{busybox_image, docker, phase};
use skiff_tests::{Agent, Cluster, Control, wait_for};

const PODS: &str = "/api/v1/namespaces/default/pods";
/// Bound on a pod reaching a state (the first pod also imports the pause
/// image).
const POD_TIMEOUT: Duration = Duration::from_secs(60);

async fn create_pod(control: &Control, pod: Value) -> Value {
    control.api().post(PODS, &pod).await.expect(201)
}

/// Waits until the pod `name` satisfies `check`; returns it.
async fn wait_pod(
    control: &Control,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let api = control.api();
    wait_for(format!("pod {name}: {what}"), POD_TIMEOUT, async || {
        let reply = api.get(&format!("{PODS}/{name}")).await;
        if check(&reply.body) {
            Ok(reply.body)
        } else {
            Err(format!("pod is {}", reply.body["status"]))
        }
    })
    .await
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn agent_registers_its_node_with_capacity_and_a_lease() {
    let cluster = Cluster::start(1).await;
    let agent = Agent::start(&cluster, "agent-register", &["--labels", "zone=a,disk=ssd"]).await;
    let key = format!("/registry/nodes/{}", agent.node());
    let node = wait_for("the node to be Ready", POD_TIMEOUT, async || {
        let node = agent
            .registry()
            .get(&key)
            .await
            .map_err(|e| e.to_string())?;
        let ready = node.value["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"] == "True");
        if ready == Some(true) {
            Ok(node.value)
        } else {
            Err(format!("node status {}", node.value["status"]))
        }
    })
    .await;
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], agent.node());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert_eq!(labels["zone"], "a");
    assert_eq!(labels["disk"], "ssd");
    let status = &node["status"];
    let cpus: usize = status["capacity"]["cpu"].as_str().unwrap().parse().unwrap();
    assert!(cpus >= 1, "{status}");
    let memory = status["capacity"]["memory"].as_str().unwrap();
    assert!(memory.ends_with("Ki") && memory.len() > 4, "{memory}");
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["allocatable"], status["capacity"]);
    for (type_, want) in [("MemoryPressure", "False"), ("DiskPressure", "False")] {
        let c = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition: {status}"));
        assert_eq!(c["status"], want, "{c}");
    }
    let info = &status["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("docker://"),
        "{info}"
    );
    assert!(!info["kernelVersion"].as_str().unwrap().is_empty());
    assert!(!info["osImage"].as_str().unwrap().is_empty());
    assert_eq!(status["addresses"][0]["type"], "InternalIP");
    assert_eq!(status["addresses"][0]["address"], "127.0.0.1");
    let lease = agent
        .registry()
        .get(&format!(
            "/registry/leases/kube-node-lease/{}",
            agent.node()
        ))
        .await
        .expect("the node lease key exists");
    assert_eq!(lease.value["spec"]["holderIdentity"], agent.node());

    // A status someone else changed (the node lifecycle controller marks
    // a node whose lease lapsed Unknown) is put right while the agent lives.
    agent
        .registry()
        .update_with::<skiff_runtime::RegistryError>(&key, |current| {
            let mut v = current.value.clone();
            for c in v["status"]["conditions"].as_array_mut().unwrap() {
                if c["type"] == "Ready" {
                    c["status"] = json!("Unknown");
                }
            }
            Ok(Some(v))
        })
        .await
        .expect("mark the node Unknown");
    wait_for("the node to be Ready again", POD_TIMEOUT, async || {
        let node = agent
            .registry()
            .get(&key)
            .await
            .map_err(|e| e.to_string())?;
        let ready = node.value["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone());
        (ready == Some(json!("True")))
            .then_some(())
            .ok_or(format!("Ready is {ready:?}"))
    })
    .await;
}

/// A pod of two containers sharing localhost and an emptyDir: `web` serves
/// a page naming its env on a declared port, published on the node
/// address; `client` fetches it over localhost into the shared volume.
#[tokio::test]
async fn agent_runs_a_pod_and_publishes_its_port() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    let agent = Agent::start(&cluster, "agent-run", &[]).await;
    let created = Instant::now();
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "nodeName": agent.node(),
                "volumes": [{"name": "shared", "emptyDir": {}}],
                "containers": [
                    {"name": "web", "image": image,
                     "command": ["sh", "-c"],
                     "args": ["mkdir -p /srv && echo hello-$GREETING > /srv/index.html && exec httpd -f -p 8080 -h /srv"],
                     "env": [{"name": "GREETING", "value": "skiff"}],
                     "ports": [{"containerPort": 8080, "name": "http"}]},
                    {"name": "client", "image": image,
                     "command": ["sh", "-c", "while true; do wget -q -O /shared/page.tmp http://127.0.0.1:8080/ && mv /shared/page.tmp /shared/page; sleep 1; done"],
                     "workingDir": "/shared",
                     "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                     "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}
                ]
            }
        }),
    )
    .await;
    let pod = wait_pod(&control, "web", "Running with both containers ready", |p| {
        phase(p) == "Running"
            && container_status(p, "web")["ready"] == true
            && container_status(p, "client")["ready"] == true
    })
    .await;
    eprintln!("pod web Running {:?} after its creation", created.elapsed());
    let status = &pod["status"];
    assert!(
        status["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "{status}"
    );
    assert_eq!(status["hostIP"], "127.0.0.1");
    assert!(container_status(&pod, "web")["state"]["running"]["startedAt"].is_string());
    assert_eq!(container_status(&pod, "web")["restartCount"], 0);
    let conditions = status["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );

    // Every container carries the pod's labels.
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let containers = agent.containers(&format!("skiff.pod.uid={uid}")).await;
    assert_eq!(containers.len(), 3, "pause, web, client: {containers:?}");
    for (id, _, state) in &containers {
        assert_eq!(state, "running");
        let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", id]).await;
        labels.success();
        let labels: Value = serde_json::from_str(labels.stdout.trim()).unwrap();
        assert_eq!(labels["skiff.pod.namespace"], "default");
        assert_eq!(labels["skiff.pod.name"], "web");
        assert_eq!(labels["skiff.pod.uid"], uid);
        assert!(labels["skiff.container.name"].is_string());
    }
    // Limits reach Docker.
    let client = containers
        .iter()
        .find(|(_, name, _)| name.starts_with("skiff_client_"))
        .expect("the client container");
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        &client.0,
    ])
    .await;
    assert_eq!(limits.stdout.trim(), format!("{} 500000000", 64 << 20));

    // The declared port answers on the node address.
    let ports: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["skiff.io/host-ports"]
            .as_str()
            .expect("the host ports annotation"),
    )
    .unwrap();
    assert_eq!(ports[0]["containerPort"], 8080);
    assert_eq!(ports[0]["container"], "web");
    let host_port = ports[0]["hostPort"].as_u64().unwrap();
    let url = format!("http://127.0.0.1:{host_port}/");
    let body = wait_for(format!("{url} to answer"), POD_TIMEOUT, async || {
        let resp = reqwest::get(&url).await.map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(body.trim(), "hello-skiff");

    // The other container reached it over localhost, into the emptyDir.
    let page = agent
        .data_dir()
        .join("pods")
        .join(uid)
        .join("volumes/shared/page");
    let got = wait_for("the client's copy of the page", POD_TIMEOUT, async || {
        std::fs::read_to_string(&page).map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(got.trim(), "hello-skiff");
}

#[tokio::test]
async fn agent_restart_policies_and_exit_codes() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    let agent = Agent::start(&cluster, "agent-exit", &["--restart-backoff", "1s"]).await;
    let pod = |name: &str, policy: &str, script: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": agent.node(),
                "restartPolicy": policy,
                "containers": [{"name": "main", "image": image, "command": ["sh", "-c", script]}]
            }
        })
    };
    create_pod(&control, pod("done", "Never", "exit 0")).await;
    create_pod(&control, pod("failed", "Never", "exit 3")).await;
    create_pod(&control, pod("crash", "OnFailure", "exit 1")).await;
    // `tail` keeps every byte of a file without newlines: past its memory
    // limit the kernel kills it.
    let mut oom = pod("oom", "Never", "tail /dev/zero");
    oom["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "16Mi"}});
    create_pod(&control, oom).await;

    let done = wait_pod(&control, "done", "Succeeded", |p| phase(p) == "Succeeded").await;
    let t = &container_status(&done, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 0, "{t}");
    assert_eq!(t["reason"], "Completed", "{t}");

    let failed = wait_pod(&control, "failed", "Failed", |p| phase(p) == "Failed").await;
    let t = &container_status(&failed, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{t}");
    assert_eq!(t["reason"], "Error", "{t}");
    assert_eq!(container_status(&failed, "main")["restartCount"], 0);

    let oom = wait_pod(&control, "oom", "Failed", |p| phase(p) == "Failed").await;
    let t = &container_status(&oom, "main")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");

    // OnFailure: restarted with back-off, the count growing, the pod
    // Running meanwhile.
    let crash = wait_pod(&control, "crash", "restarted at least 3 times", |p| {
        container_status(p, "main")["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 3)
    })
    .await;
    assert_eq!(phase(&crash), "Running");
    let c = container_status(&crash, "main");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1, "{c}");
    wait_pod(&control, "crash", "waiting in CrashLoopBackOff", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    // Events tell the story, one per reason with a count.
    let api = control.api();
    wait_for("the crash pod's events", POD_TIMEOUT, async || {
        let events = api.get("/api/v1/namespaces/default/events").await.body;
        let of = |reason: &str| {
            events["items"].as_array().and_then(|items| {
                items
                    .iter()
                    .find(|e| e["involvedObject"]["name"] == "crash" && e["reason"] == reason)
                    .cloned()
            })
        };
        match (of("Started"), of("BackOff")) {
            (Some(started), Some(backoff))
                if started["count"].as_i64() >= Some(3) && backoff["type"] == "Warning" =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // At most the current and the previous attempt are kept.
    let uid = crash["metadata"]["uid"].as_str().unwrap();
    let mine = agent.containers(&format!("skiff.pod.uid={uid}")).await;
    assert!(mine.len() <= 3, "pause + two attempts: {mine:?}");
}

#[tokio::test]
async fn agent_bad_images_and_commands_leave_the_pod_waiting() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    let agent = Agent::start(&cluster, "agent-bad", &[]).await;
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "missing"},
            "spec": {"nodeName": agent.node(), "containers": [
                {"name": "main", "image": "skiff-test/does-not-exist:1", "imagePullPolicy": "Never"}]}
        }),
    )
    .await;
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nocommand"},
            "spec": {"nodeName": agent.node(), "restartPolicy": "Never", "containers": [
                {"name": "main", "image": image, "command": ["/no/such/command"]}]}
        }),
    )
    .await;
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "good"},
            "spec": {"nodeName": agent.node(), "containers": [
                {"name": "main", "image": image, "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    let missing = wait_pod(&control, "missing", "waiting with ErrImageNeverPull", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    })
    .await;
    assert_eq!(phase(&missing), "Pending");
    let message = container_status(&missing, "main")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("skiff-test/does-not-exist:1"), "{message}");

    let nocommand = wait_pod(&control, "nocommand", "Failed", |p| phase(p) == "Failed").await;
    let t = &container_status(&nocommand, "main")["state"]["terminated"];
    assert_ne!(t["exitCode"], 0, "{t}");
    assert!(
        t["message"]
            .as_str()
            .is_some_and(|m| m.contains("/no/such/command")),
        "{t}"
    );
    // The agent keeps serving its other pods.
    wait_pod(&control, "good", "Running", |p| phase(p) == "Running").await;

    // A host port someone else holds: the pod cannot start, and says why.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port();
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "clash"},
            "spec": {"nodeName": agent.node(), "containers": [
                {"name": "main", "image": image, "command": ["sleep", "3600"],
                 "ports": [{"containerPort": 80, "hostPort": port}]}]}
        }),
    )
    .await;
    let clash = wait_pod(&control, "clash", "waiting for its sandbox", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CreatePodSandboxError"
    })
    .await;
    assert_eq!(phase(&clash), "Pending");
    drop(taken);
}

#[tokio::test]
async fn agent_deleting_a_pod_removes_its_containers() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    let agent = Agent::start(&cluster, "agent-delete", &[]).await;
    let pod = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": agent.node(),
                "terminationGracePeriodSeconds": 5,
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{"name": "main", "image": image,
                    "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]
            }
        })
    };
    create_pod(&control, pod("gone")).await;
    create_pod(&control, pod("graceful")).await;
    let gone = wait_pod(&control, "gone", "Running", |p| phase(p) == "Running").await;
    let graceful = wait_pod(&control, "graceful", "Running", |p| phase(p) == "Running").await;
    let uid_of = |p: &Value| p["metadata"]["uid"].as_str().unwrap().to_string();
    let (gone_uid, graceful_uid) = (uid_of(&gone), uid_of(&graceful));
    assert_eq!(
        agent
            .containers(&format!("skiff.pod.uid={gone_uid}"))
            .await
            .len(),
        2
    );
    let volume = agent.data_dir().join("pods").join(&gone_uid);
    assert!(volume.is_dir(), "{}", volume.display());

    // Deleted with a grace period of 0 (forced): the object goes at once,
    // the agent removes what ran.
    control
        .api()
        .delete(&format!("{PODS}/gone?gracePeriodSeconds=0"))
        .await
        .expect(200);
    control.api().get(&format!("{PODS}/gone")).await.expect(404);
    wait_for(
        "the deleted pod's containers to go",
        POD_TIMEOUT,
        async || {
            agent
                .containers(&format!("skiff.pod.uid={gone_uid}"))
                .await
                .is_empty()
        },
    )
    .await;
    assert!(!volume.exists(), "the emptyDir is removed");

    // Deleted gracefully, as kube-apiserver does for a pod on a node: the
    // API server marks it (deletionTimestamp), the agent stops its
    // containers (SIGTERM; this one exits at once), removes them, then
    // deletes the object.
    let marked = control
        .api()
        .delete(&format!("{PODS}/graceful"))
        .await
        .expect(200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 5);
    wait_for("the marked pod to be finalized", POD_TIMEOUT, async || {
        control
            .api()
            .get(&format!("{PODS}/graceful"))
            .await
            .status
            .as_u16()
            == 404
    })
    .await;
    assert!(
        agent
            .containers(&format!("skiff.pod.uid={graceful_uid}"))
            .await
            .is_empty()
    );
    assert!(!agent.data_dir().join("pods").join(&graceful_uid).exists());

    // A pod on a node whose agent is gone stays Terminating until it is
    // deleted by force.
    let mut stranded = pod("stranded");
    stranded["spec"]["nodeName"] = json!("a-node-without-agent");
    create_pod(&control, stranded).await;
    let out = control.skiff(&["delete", "pod", "stranded"], None).await;
    assert_eq!(out.success().stdout, "pod \"stranded\" deleted\n");
    let left = control
        .api()
        .get(&format!("{PODS}/stranded"))
        .await
        .expect(200);
    assert!(left["metadata"]["deletionTimestamp"].is_string(), "{left}");
    control
        .skiff(&["delete", "pod", "stranded", "--grace-period=0"], None)
        .await
        .code(1);
    control
        .skiff(&["delete", "pod", "stranded", "--force"], None)
        .await
        .success();
    control
        .api()
        .get(&format!("{PODS}/stranded"))
        .await
        .expect(404);
}

#[tokio::test]
async fn agent_lease_lapses_when_the_agent_is_killed() {
    let cluster = Cluster::start(1).await;
    let mut agent = Agent::start(&cluster, "agent-lease", &[]).await;
    let key = format!("/registry/leases/kube-node-lease/{}", agent.node());
    wait_for("the node lease", POD_TIMEOUT, async || {
        agent.registry().get(&key).await.map_err(|e| e.to_string())
    })
    .await;
    agent.kill().await;
    let killed = Instant::now();
    // TTL 4 s, plus the store's expiry check and margin.
    wait_for("the lease key to go", Duration::from_secs(15), async || {
        matches!(
            agent.registry().get(&key).await,
            Err(skiff_runtime::RegistryError::NotFound)
        )
    })
    .await;
    eprintln!("lease key gone {:?} after SIGKILL", killed.elapsed());
    // Back again, it takes a new lease.
    agent.restart().await;
    wait_for("a new node lease", POD_TIMEOUT, async || {
        agent.registry().get(&key).await.map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn agent_restart_adopts_running_containers() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    let mut agent = Agent::start(&cluster, "agent-adopt", &["--restart-backoff", "1s"]).await;
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "steady"},
            "spec": {"nodeName": agent.node(), "containers": [
                {"name": "main", "image": image, "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    let pod = wait_pod(&control, "steady", "Running", |p| phase(p) == "Running").await;
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let filter = format!("skiff.pod.uid={uid}");
    let mut before = agent.containers(&filter).await;
    before.sort();
    assert_eq!(before.len(), 2, "{before:?}");

    agent.kill().await;
    agent.restart().await;
    wait_for(
        "the restarted agent to list its pods",
        POD_TIMEOUT,
        async || agent.log().matches("pods listed").count() >= 2,
    )
    .await;
    // Killing the app container shows the new agent is at work; what it
    // found running it left alone.
    let main = before
        .iter()
        .find(|(_, name, _)| name.starts_with("skiff_main_"))
        .expect("the main container")
        .clone();
    docker(&["kill", &main.0]).await.success();
    let pod = wait_pod(&control, "steady", "restarted once", |p| {
        container_status(p, "main")["restartCount"] == 1
            && container_status(p, "main")["state"]["running"].is_object()
    })
    .await;
    assert_eq!(phase(&pod), "Running");
    let after = agent.containers(&filter).await;
    assert_eq!(
        after.len(),
        3,
        "pause, the killed attempt, the new one: {after:?}"
    );
    for (id, name, _) in &before {
        assert!(
            after.iter().any(|(a, _, _)| a == id),
            "{name} ({id}) was replaced: {after:?}"
        );
    }
    let pause = before
        .iter()
        .find(|(_, name, _)| name.starts_with("skiff_POD_"))
        .unwrap();
    assert!(
        after
            .iter()
            .any(|(id, _, state)| *id == pause.0 && state == "running"),
        "{after:?}"
    );
}

#[tokio::test]
async fn agent_serves_container_logs() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    let agent = Agent::start(&cluster, "agent-logs", &[]).await;
    create_pod(
        &control,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "talker"},
            "spec": {"nodeName": agent.node(), "containers": [
                {"name": "main", "image": image,
                 "command": ["sh", "-c", "echo first; sleep 0.3; echo second >&2; sleep 0.3; echo third; exec sleep 3600"]}]}
        }),
    )
    .await;
    let pod = wait_pod(&control, "talker", "Running", |p| phase(p) == "Running").await;
    let node = agent
        .registry()
        .get(&format!("/registry/nodes/{}", agent.node()))
        .await
        .expect("the node");
    let port = node.value["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("the agent's port in the node status");
    let base = format!("http://127.0.0.1:{port}/containerLogs/default/talker/main");
    let fetch = async |query: &str| {
        let resp = reqwest::get(format!("{base}{query}"))
            .await
            .expect("GET logs");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    };
    let all = wait_for("the container's three lines", POD_TIMEOUT, async || {
        let (code, text) = fetch("").await;
        (code == 200 && text.lines().count() == 3).then_some(text)
    })
    .await;
    // stdout and stderr both, in the order written.
    assert_eq!(all, "first\nsecond\nthird\n");
    assert_eq!(fetch("?tailLines=1").await, (200, "third\n".to_string()));
    assert_eq!(fetch("?previous=true").await.0, 404);
    // Through the API server and the CLI, as kubectl logs.
    let out = control.skiff(&["logs", "talker"], None).await;
    out.success();
    assert_eq!(out.stdout, "first\nsecond\nthird\n");
    let out = control
        .skiff(&["logs", "pod/talker", "-c", "main", "--tail", "1"], None)
        .await;
    assert_eq!(out.stdout, "third\n");
    let out = control.skiff(&["logs", "talker", "--previous"], None).await;
    out.code(1);
    assert!(
        out.stderr
            .contains("previous terminated container \"main\" in pod \"talker\" not found"),
        "{out}"
    );

    // After a restart, the previous attempt's output is still there.
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let main = agent
        .containers(&format!("skiff.pod.uid={uid}"))
        .await
        .into_iter()
        .find(|(_, name, _)| name.starts_with("skiff_main_"))
        .expect("the main container");
    docker(&["kill", &main.0]).await.success();
    wait_pod(&control, "talker", "restarted", |p| {
        container_status(p, "main")["restartCount"] == 1
    })
    .await;
    assert_eq!(
        fetch("?previous=true").await,
        (200, "first\nsecond\nthird\n".to_string())
    );
    let out = control.skiff(&["logs", "talker", "-p"], None).await;
    out.success();
    assert_eq!(out.stdout, "first\nsecond\nthird\n");
    let missing = reqwest::get(format!(
        "http://127.0.0.1:{port}/containerLogs/default/talker/nope"
    ))
    .await
    .expect("GET logs");
    assert_eq!(missing.status().as_u16(), 404);
}
