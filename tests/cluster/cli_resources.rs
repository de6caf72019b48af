//! The `skiff` CLI's resource commands (`apply`, `create`, `get`,
//! `describe`, `delete`, `scale`, `label`, `api-resources`) against a real
//! `skiff-control` over a three-member store: kubectl's messages and
//! tables, exactly (the AGE column aside), and bad input refused with one
//! line before anything is written (the store revision does not move).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::{Cluster, CmdOutput, Control, bins, wait_for};
use tokio::io::{AsyncBufReadExt, BufReader};

const MANIFESTS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  labels: {app: db, tier: backend}
spec:
  containers:
  - name: db
    image: busybox
    resources:
      requests: {cpu: 250m, memory: 64Mi}
";

/// A file with `text` in a fresh temporary directory.
fn manifest_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the manifest");
    path.display().to_string()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("skiff-cli-resources-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Removes the AGE column (header and cells, with their padding) from a
/// kubectl table; returns the table without it and the ages removed.
#[track_caller]
fn strip_age(text: &str) -> (String, Vec<String>) {
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table in {text:?}"));
    let start = header
        .find("AGE")
        .unwrap_or_else(|| panic!("no AGE column in {header:?}"));
    let end = header[start..]
        .find(|c: char| c != ' ' && c != 'A' && c != 'G' && c != 'E')
        .map(|i| start + i);
    let mut out = String::new();
    let mut ages = Vec::new();
    for line in text.lines() {
        let (before, rest) = line.split_at(start.min(line.len()));
        let (age, after) = match end {
            Some(end) => rest.split_at((end - start).min(rest.len())),
            None => (rest, ""),
        };
        ages.push(age.trim().to_string());
        out.push_str(format!("{before}{after}").trim_end());
        out.push('\n');
    }
    ages.remove(0);
    for age in &ages {
        assert!(
            age.ends_with('s') || age.ends_with('m'),
            "{age:?} is not an age in {text}"
        );
    }
    (out, ages)
}

#[track_caller]
fn one_error_line(out: &CmdOutput) -> String {
    out.code(1);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {out}");
    lines[0].to_string()
}

#[tokio::test]
async fn cli_resources_apply_created_unchanged_configured_and_dry_runs() {
    let cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;
    let dir = tempdir();
    let file = manifest_file(&dir, "app.yaml", MANIFESTS);

    let out = control.skiff(&["apply", "-f", &file], None).await;
    assert_eq!(
        out.success().lines(),
        [
            "deployment.apps/web created",
            "service/web created",
            "pod/db created"
        ],
        "{out}"
    );
    let out = control.skiff(&["apply", "-f", &file], None).await;
    assert_eq!(
        out.success().lines(),
        [
            "deployment.apps/web unchanged",
            "service/web unchanged",
            "pod/db unchanged"
        ],
        "{out}"
    );

    let changed = MANIFESTS.replace("replicas: 2", "replicas: 3");
    let changed_file = manifest_file(&dir, "changed.yaml", &changed);
    let before = cluster.must_revision(0).await;
    for (mode, suffix) in [("server", " (server dry run)"), ("client", " (dry run)")] {
        let out = control
            .skiff(
                &["apply", "-f", &changed_file, &format!("--dry-run={mode}")],
                None,
            )
            .await;
        assert_eq!(
            out.success().lines(),
            [
                format!("deployment.apps/web configured{suffix}"),
                format!("service/web unchanged{suffix}"),
                format!("pod/db unchanged{suffix}"),
            ],
            "{out}"
        );
    }
    assert_eq!(cluster.must_revision(0).await, before, "a dry run wrote");
    let api = control.api();
    let d = api
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .expect(200);
    assert_eq!(d["spec"]["replicas"], 2);

    // From stdin, and from a directory.
    let out = control.skiff(&["apply", "-f", "-"], Some(&changed)).await;
    assert_eq!(
        out.success().lines(),
        [
            "deployment.apps/web configured",
            "service/web unchanged",
            "pod/db unchanged"
        ],
        "{out}"
    );
    let d = api
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .expect(200);
    assert_eq!(d["spec"]["replicas"], 3);
    let sub = tempfile::Builder::new().tempdir_in(dir.path()).unwrap();
    manifest_file(
        &sub,
        "ns.json",
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}]})
        .to_string(),
    );
    manifest_file(&sub, "notes.txt", "not a manifest");
    let out = control
        .skiff(&["apply", "-f", &sub.path().display().to_string()], None)
        .await;
    assert_eq!(out.success().lines(), ["namespace/prod created"], "{out}");

    // create: AlreadyExists is kubectl's error line, the rest goes on.
    let pod2 = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: other\nspec:\n  containers:\n  - name: a\n    image: busybox\n";
    let both = format!("{}---\n{pod2}", MANIFESTS.split("---\n").nth(2).unwrap());
    let create_file = manifest_file(&dir, "create.yaml", &both);
    let out = control.skiff(&["create", "-f", &create_file], None).await;
    assert_eq!(out.lines(), ["pod/other created"], "{out}");
    assert_eq!(
        one_error_line(&out),
        format!(
            "Error from server (AlreadyExists): error when creating \"{create_file}\": pods \"db\" already exists"
        )
    );
}

#[tokio::test]
async fn cli_resources_get_tables_names_json_selectors_and_namespaces() {
    let cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;

    let out = control.skiff(&["get", "pods"], None).await;
    assert_eq!(out.success().stdout, "", "{out}");
    assert_eq!(
        out.stderr.trim(),
        "No resources found in default namespace.",
        "{out}"
    );
    let out = control.skiff(&["get", "nodes"], None).await;
    assert_eq!(out.success().stderr.trim(), "No resources found", "{out}");

    control
        .skiff(&["apply", "-f", "-"], Some(MANIFESTS))
        .await
        .success();
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/worker": ""}}});
    let api = control.api();
    api.post("/api/v1/nodes", &node).await.expect(201);
    api.patch(
        "/api/v1/nodes/node-1/status",
        "application/merge-patch+json",
        &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "nodeInfo": {"kubeletVersion": "v0.1.0"}}})
        .to_string(),
    )
    .await
    .expect(200);

    let table = |args: &'static [&'static str]| {
        let control = &control;
        async move {
            let out = control.skiff(args, None).await;
            strip_age(&out.success().stdout).0
        }
    };
    assert_eq!(
        table(&["get", "pods"]).await,
        "NAME   READY   STATUS    RESTARTS\n\
         db     0/1     Pending   0\n"
    );
    assert_eq!(
        table(&["get", "deploy"]).await,
        "NAME   READY   UP-TO-DATE   AVAILABLE\n\
         web    0/2     0            0\n"
    );
    // A ClusterIP Service gets a node port too (skiff proxies it there).
    let node_port = api
        .get("/api/v1/namespaces/default/services/web")
        .await
        .expect(200)["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("an allocated node port");
    assert_eq!(
        table(&["get", "svc"]).await,
        format!(
            "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)\n\
             web    ClusterIP   <none>       <none>        80:{node_port}/TCP\n"
        )
    );
    assert_eq!(
        table(&["get", "no"]).await,
        "NAME     STATUS   ROLES    VERSION\n\
         node-1   Ready    worker   v0.1.0\n"
    );
    assert_eq!(
        table(&["get", "namespaces"]).await,
        "NAME      STATUS\n\
         default   Active\n"
    );
    assert_eq!(
        table(&["get", "pods", "-o", "wide"]).await,
        "NAME   READY   STATUS    RESTARTS   IP       NODE     NOMINATED NODE   READINESS GATES\n\
         db     0/1     Pending   0          <none>   <none>   <none>           <none>\n"
    );
    assert_eq!(
        table(&["get", "pods", "--show-labels"]).await,
        "NAME   READY   STATUS    RESTARTS   LABELS\n\
         db     0/1     Pending   0          app=db,tier=backend\n"
    );

    // Several kinds: kind/name and a blank line between the tables.
    let out = control.skiff(&["get", "deploy,svc"], None).await;
    let text = out.success().stdout.clone();
    let (first, second) = text.split_once("\n\n").expect("two tables");
    assert_eq!(
        strip_age(&format!("{first}\n")).0,
        "NAME                  READY   UP-TO-DATE   AVAILABLE\ndeployment.apps/web   0/2     0            0\n"
    );
    assert!(second.contains("service/web   ClusterIP"), "{out}");

    let out = control
        .skiff(&["get", "pods,deploy,svc", "-o", "name"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["pod/db", "deployment.apps/web", "service/web"],
        "{out}"
    );

    // -o json round trip: the object as the API serves it.
    let out = control
        .skiff(&["get", "deployment", "web", "-o", "json"], None)
        .await;
    let printed: Value = serde_json::from_str(&out.success().stdout).expect("JSON");
    let served = api
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .expect(200);
    assert_eq!(printed, served);
    assert!(out.stdout.starts_with("{\n    \"apiVersion\""), "{out}");
    let out = control.skiff(&["get", "pods", "-o", "json"], None).await;
    let list: Value = serde_json::from_str(&out.success().stdout).expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "db");
    let out = control.skiff(&["get", "pod/db", "-o", "yaml"], None).await;
    let yaml: Value = serde_saphyr_value(&out.success().stdout);
    assert_eq!(yaml["metadata"]["labels"]["tier"], "backend");

    // Label selectors.
    let second_pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: cache\n  labels: {app: cache}\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    control
        .skiff(&["apply", "-f", "-"], Some(second_pod))
        .await
        .success();
    let out = control
        .skiff(&["get", "pods", "-l", "app=cache", "-o", "name"], None)
        .await;
    assert_eq!(out.success().lines(), ["pod/cache"], "{out}");
    let out = control
        .skiff(
            &[
                "get",
                "pods",
                "-l",
                "app in (db,cache),tier!=backend",
                "-o",
                "name",
            ],
            None,
        )
        .await;
    assert_eq!(out.success().lines(), ["pod/cache"], "{out}");
    let out = control
        .skiff(
            &[
                "get",
                "pods",
                "--field-selector",
                "metadata.name=db",
                "-o",
                "name",
            ],
            None,
        )
        .await;
    assert_eq!(out.success().lines(), ["pod/db"], "{out}");
    let out = control
        .skiff(&["get", "pods", "-l", "app=nothing"], None)
        .await;
    assert_eq!(
        out.success().stderr.trim(),
        "No resources found in default namespace."
    );

    // -A: a NAMESPACE column; -n: another namespace.
    control
        .skiff(
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n"),
        )
        .await
        .success();
    control
        .skiff(&["apply", "-n", "prod", "-f", "-"], Some(second_pod))
        .await
        .success();
    assert_eq!(
        table(&["get", "pods", "-A"]).await,
        "NAMESPACE   NAME    READY   STATUS    RESTARTS\n\
         default     cache   0/1     Pending   0\n\
         default     db      0/1     Pending   0\n\
         prod        cache   0/1     Pending   0\n"
    );
    let out = control
        .skiff(&["get", "pods", "-n", "prod", "-o", "name"], None)
        .await;
    assert_eq!(out.success().lines(), ["pod/cache"], "{out}");

    // A missing object is kubectl's error line.
    let out = control.skiff(&["get", "pod", "nope"], None).await;
    assert_eq!(
        one_error_line(&out),
        "Error from server (NotFound): pods \"nope\" not found"
    );

    let out = control.skiff(&["api-resources"], None).await;
    let lines = out.success().lines();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let deploy = lines
        .iter()
        .find(|l| l.starts_with("deployments "))
        .expect("deployments");
    assert_eq!(
        deploy.split_whitespace().collect::<Vec<_>>(),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
}

fn serde_saphyr_value(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

#[tokio::test]
async fn cli_resources_describe_node_and_pod() {
    let cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;
    let api = control.api();
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}});
    let created = api.post("/api/v1/nodes", &node).await.expect(201);
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let now = skiff_model::Time::now().to_string();
    api.patch(
        "/api/v1/nodes/node-1/status",
        "application/merge-patch+json",
        &json!({"status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady",
                            "message": "skiff-agent is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                          {"type": "Hostname", "address": "node-1"}],
            "nodeInfo": {"machineID": "m-1", "systemUUID": "", "bootID": "", "kernelVersion": "6.1.0",
                         "osImage": "Debian GNU/Linux 12", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "docker://24.0.7",
                         "kubeletVersion": "v0.1.0", "kubeProxyVersion": ""}}})
        .to_string(),
    )
    .await
    .expect(200);
    for (name, cpu, mem) in [("web-1", "250m", "64Mi"), ("web-2", "500m", "128Mi")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "busybox",
                "ports": [{"containerPort": 80}],
                "env": [{"name": "MODE", "value": "test"}],
                "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": mem}}}]}});
        api.post("/api/v1/namespaces/default/pods", &pod)
            .await
            .expect(201);
    }
    // A pod elsewhere does not count.
    let other = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "a", "image": "busybox",
                 "resources": {"requests": {"cpu": "1"}}}]}});
    api.post("/api/v1/namespaces/default/pods", &other)
        .await
        .expect(201);
    let event = |name: &str,
                 ns: &str,
                 kind: &str,
                 obj: &str,
                 uid: &str,
                 reason: &str,
                 message: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
               "involvedObject": {"kind": kind, "name": obj, "namespace": if kind == "Node" { "" } else { ns }, "uid": uid},
               "reason": reason, "message": message, "type": "Normal", "count": 1,
               "source": {"component": "skiff-agent", "host": "node-1"},
               "firstTimestamp": now, "lastTimestamp": now})
    };
    let pod_uid = api
        .get("/api/v1/namespaces/default/pods/web-1")
        .await
        .expect(200)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    for e in [
        event(
            "node-1.a",
            "default",
            "Node",
            "node-1",
            &uid,
            "NodeReady",
            "Node node-1 status is now: NodeReady",
        ),
        event(
            "node-1.b",
            "default",
            "Node",
            "node-1",
            "node-1",
            "Starting",
            "Starting skiff-agent.",
        ),
        event(
            "web-1.a",
            "default",
            "Pod",
            "web-1",
            &pod_uid,
            "Scheduled",
            "Successfully assigned default/web-1 to node-1",
        ),
        event(
            "web-2.a",
            "default",
            "Pod",
            "web-2",
            "other-uid",
            "Scheduled",
            "Successfully assigned default/web-2 to node-1",
        ),
    ] {
        api.post("/api/v1/namespaces/default/events", &e)
            .await
            .expect(201);
    }

    let out = control.skiff(&["describe", "node", "node-1"], None).await;
    let text = out.success().stdout.clone();
    for expected in [
        "Name:               node-1\n",
        "Roles:              <none>\n",
        "Labels:             kubernetes.io/hostname=node-1\n",
        "Taints:             <none>\n",
        "Unschedulable:      false\n",
        "Conditions:\n  Type   Status  LastHeartbeatTime ",
        "AgentReady  skiff-agent is posting ready status\n",
        "Addresses:\n  InternalIP:  10.0.0.1\n  Hostname:    node-1\n",
        "Capacity:\n  cpu:     4\n  memory:  8Gi\n  pods:    110\n",
        "Allocatable:\n  cpu:     4\n",
        "  Machine ID:                 m-1\n",
        "  Kernel Version:             6.1.0\n",
        "  OS Image:                   Debian GNU/Linux 12\n",
        "  Operating System:           linux\n",
        "  Architecture:               amd64\n",
        "  Container Runtime Version:  docker://24.0.7\n",
        "  Kubelet Version:            v0.1.0\n",
        "Non-terminated Pods:          (2 in total)\n",
        "  Namespace                   Name   CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age\n",
        "  default                     web-1  250m (6%)     0 (0%)      64Mi (0%)        64Mi (0%) ",
        "  default                     web-2  500m (12%)    0 (0%)      128Mi (1%)       128Mi (1%) ",
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
        "  Resource  Requests    Limits\n",
        "  cpu       750m (18%)  0 (0%)\n",
        "  memory    192Mi (2%)  192Mi (2%)\n",
        "NodeReady",
        "Starting skiff-agent.",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("elsewhere"), "{text}");
    assert!(!text.contains("Successfully assigned"), "{text}");

    let out = control.skiff(&["describe", "pod", "web-1"], None).await;
    let text = out.success().stdout.clone();
    for expected in [
        "Name:             web-1\n",
        "Namespace:        default\n",
        "Node:             node-1\n",
        "Labels:           app=web\n",
        "Status:           Pending\n",
        "Containers:\n  app:\n",
        "    Image:          busybox\n",
        "    Port:           80/TCP\n",
        "    State:          Waiting\n",
        "    Ready:          False\n",
        "    Restart Count:  0\n",
        "    Limits:\n      memory:  64Mi\n",
        "    Requests:\n      cpu:     250m\n      memory:  64Mi\n",
        "    Environment:\n      MODE:      test\n",
        "    Mounts:      <none>\n",
        "QoS Class:       Burstable\n",
        "Events:\n  Type    Reason     Age",
        "Successfully assigned default/web-1 to node-1\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("web-2 to node-1"),
        "another pod's event: {text}"
    );

    let out = control.skiff(&["describe", "ns", "default"], None).await;
    assert!(
        out.success().stdout.starts_with("Name:         default\n"),
        "{out}"
    );
    let out = control.skiff(&["describe", "pod", "nope"], None).await;
    assert_eq!(
        one_error_line(&out),
        "Error from server (NotFound): pods \"nope\" not found"
    );
}

#[tokio::test]
async fn cli_resources_delete_scale_label() {
    let cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;
    let dir = tempdir();
    let file = manifest_file(&dir, "app.yaml", MANIFESTS);
    control.skiff(&["apply", "-f", &file], None).await.success();
    let api = control.api();

    let out = control
        .skiff(&["scale", "deploy", "web", "--replicas", "5"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps/web scaled"],
        "{out}"
    );
    let out = control.skiff(&["get", "deploy", "web"], None).await;
    assert_eq!(
        strip_age(&out.success().stdout).0,
        "NAME   READY   UP-TO-DATE   AVAILABLE\nweb    0/5     0            0\n"
    );
    let out = control
        .skiff(&["scale", "deployment/web", "--replicas=1"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps/web scaled"],
        "{out}"
    );
    let d = api
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .expect(200);
    assert_eq!(d["spec"]["replicas"], 1);
    let out = control
        .skiff(&["scale", "pod", "db", "--replicas", "2"], None)
        .await;
    assert!(
        one_error_line(&out).starts_with("error: pods cannot be scaled"),
        "{out}"
    );

    let out = control
        .skiff(&["label", "pod", "db", "env=prod"], None)
        .await;
    assert_eq!(out.success().lines(), ["pod/db labeled"], "{out}");
    let out = control
        .skiff(&["label", "pod", "db", "tier=frontend"], None)
        .await;
    assert_eq!(
        one_error_line(&out),
        "error: 'tier' already has a value (backend), and --overwrite is false"
    );
    let out = control
        .skiff(
            &["label", "pod/db", "tier=frontend", "env-", "--overwrite"],
            None,
        )
        .await;
    assert_eq!(out.success().lines(), ["pod/db labeled"], "{out}");
    let pod = api
        .get("/api/v1/namespaces/default/pods/db")
        .await
        .expect(200);
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app": "db", "tier": "frontend"})
    );

    let out = control.skiff(&["delete", "pod", "db"], None).await;
    assert_eq!(out.success().lines(), ["pod \"db\" deleted"], "{out}");
    let out = control.skiff(&["delete", "pod", "db"], None).await;
    assert_eq!(
        one_error_line(&out),
        "Error from server (NotFound): pods \"db\" not found"
    );
    let out = control
        .skiff(
            &[
                "delete",
                "-f",
                &file,
                // Foreground waits for the garbage collector, which this
                // API-only server does not run (tests/cluster/controllers.rs
                // has it); orphan deletes at once.
                "--cascade=orphan",
                "--ignore-not-found",
            ],
            None,
        )
        .await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps \"web\" deleted", "service \"web\" deleted"],
        "{out}"
    );
    let out = control.skiff(&["get", "all"], None).await;
    assert_eq!(
        out.success().stderr.trim(),
        "No resources found in default namespace.",
        "{out}"
    );
}

#[tokio::test]
async fn cli_resources_watch_prints_changes() {
    let cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;
    control
        .skiff(&["apply", "-f", "-"], Some(MANIFESTS))
        .await
        .success();
    let mut child = tokio::process::Command::new(bins::skiff_bin())
        .args(["get", "pods", "-w", "-o", "name"])
        .env("SKIFF_SERVER", control.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start skiff get -w");
    let mut rx = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let next = async |rx: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(Duration::from_secs(30), rx.next_line())
            .await
            .expect("a watch line within 30s")
            .expect("read the watch output")
            .expect("the watch is running")
    };
    assert_eq!(next(&mut rx).await, "pod/db");
    control
        .skiff(&["label", "pod", "db", "seen=yes"], None)
        .await
        .success();
    assert_eq!(next(&mut rx).await, "pod/db");
    control
        .skiff(&["delete", "pod", "db"], None)
        .await
        .success();
    assert_eq!(next(&mut rx).await, "pod/db");
    child.start_kill().expect("stop the watch");
}

#[tokio::test]
async fn cli_resources_bad_input_writes_nothing() {
    let cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;
    let dir = tempdir();
    let good_pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: first\nspec:\n  containers:\n  - name: a\n    image: busybox\n";
    // (file name, text, check of the error line given the file's path)
    type Case = (&'static str, String, Box<dyn Fn(&str, &str) -> bool>);
    let cases: Vec<Case> = vec![
        (
            "malformed.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [web\nspec: {}\n".to_string(),
            Box::new(|line: &str, f: &str| {
                line.starts_with(&format!("error: error parsing {f}: "))
                    && line.contains("line ")
                    && line.contains("column ")
            }),
        ),
        (
            "unknown-kind.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n".to_string(),
            Box::new(|line: &str, f: &str| {
                line == format!(
                    "error: resource mapping not found for name: \"c\" namespace: \"\" from \"{f}\": no matches for kind \"ConfigMap\" in version \"v1\""
                )
            }),
        ),
        (
            "unknown-field.yaml",
            good_pod.replace(
                "image: busybox",
                "image: busybox\n    imagePullPolicyy: Always",
            ),
            Box::new(|line: &str, f: &str| {
                line.starts_with(&format!("error: error validating \"{f}\": "))
                    && line.contains("spec.containers[0].imagePullPolicyy")
            }),
        ),
        (
            "bad-quantity.yaml",
            good_pod.replace(
                "image: busybox",
                "image: busybox\n    resources:\n      requests:\n        memory: lots",
            ),
            Box::new(|line: &str, _: &str| {
                line.contains("spec.containers[0].resources.requests.memory")
            }),
        ),
        (
            "second-bad.yaml",
            format!(
                "{good_pod}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\nspec:\n  containers:\n  - name: a\n    image: busybox\n    ports:\n    - containerPort: 99999\n"
            ),
            Box::new(|line: &str, _: &str| {
                line.contains("spec.containers[0].ports[0].containerPort")
            }),
        ),
    ];
    let before = cluster.must_revision(0).await;
    for (name, text, check) in &cases {
        let file = manifest_file(&dir, name, text);
        for verb in ["apply", "create"] {
            let out = control.skiff(&[verb, "-f", &file], None).await;
            let line = one_error_line(&out);
            assert!(
                check(&line, &file),
                "{verb} {name}: unexpected error line {line:?}\n{out}"
            );
            assert_eq!(out.stdout, "", "{out}");
        }
    }
    assert_eq!(
        cluster.must_revision(0).await,
        before,
        "bad input wrote something"
    );
    let out = control.skiff(&["get", "pods"], None).await;
    assert_eq!(
        out.success().stderr.trim(),
        "No resources found in default namespace.",
        "the first document was written: {out}"
    );

    // Kinds the CLI does not know, before any request.
    let out = control.skiff(&["get", "widgets"], None).await;
    assert_eq!(
        one_error_line(&out),
        "error: the server doesn't have a resource type \"widgets\""
    );

    // A server that cannot be reached: one line naming it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let file = manifest_file(&dir, "good.yaml", good_pod);
    for args in [
        vec!["get", "pods"],
        vec!["apply", "-f", file.as_str()],
        vec!["describe", "node", "n1"],
    ] {
        let mut full: Vec<&str> = args.clone();
        full.extend(["--server", url.as_str()]);
        let out = control.skiff(&full, None).await;
        assert_eq!(
            one_error_line(&out),
            format!("error: cannot reach the API server at {url}: connection refused"),
            "{args:?}"
        );
    }
    assert_eq!(cluster.must_revision(0).await, before);
}

#[tokio::test]
async fn cli_resources_skiff_up_starts_the_api_server() {
    let dir = tempdir();
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // One member: its client port and the next one (peer) must be free.
    let base = loop {
        let p = free();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let api_port = free();
    let agent_port = free();
    let mut child = tokio::process::Command::new(bins::skiff_bin())
        .args([
            "up",
            "--members",
            "1",
            "--base-port",
            &base.to_string(),
            "--api-port",
            &api_port.to_string(),
            "--agent-port",
            &agent_port.to_string(),
            "--data-dir",
            &dir.path().join("data").display().to_string(),
        ])
        .env("SKIFF_STORE_BIN", bins::store_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start skiff up");
    let mut rx = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let url = format!("http://127.0.0.1:{api_port}");
    let mut printed = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(90), async {
        while let Ok(Some(line)) = rx.next_line().await {
            let done = line.starts_with("Press Ctrl-C");
            printed.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "skiff up did not get ready: {printed:#?}");
    assert!(
        printed
            .iter()
            .any(|l| l.contains(&format!("API server) is up at {url}"))),
        "{printed:#?}"
    );
    // The machine has a Docker daemon: the node agent runs too.
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("skiff-agent runs this machine's pods on Docker")),
        "{printed:#?}"
    );
    let api = skiff_tests::Api::new(&url);
    wait_for("/readyz", Duration::from_secs(10), async || {
        api.get("/readyz").await.status.is_success()
    })
    .await;
    let out = skiff_tests::cmd::run(
        &bins::skiff_bin(),
        &["get".to_string(), "ns".to_string()],
        &[("SKIFF_SERVER", url.as_str())],
        None,
    )
    .await;
    let (table, _) = strip_age(&out.success().stdout);
    assert_eq!(table, "NAME      STATUS\ndefault   Active\n");

    let pid = child.id().expect("running");
    skiff_tests::cluster::send_signal(pid, libc::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("skiff up stops within 30s")
        .expect("wait");
    assert!(status.success(), "{status}");
    let after = reqwest::Client::new()
        .get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        after.is_err(),
        "the API server still answers after skiff up stopped"
    );
}
