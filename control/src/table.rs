//! The columns `kubectl get` prints for each kind, as pure functions of an
//! object's JSON and the current time. The API server serves them as
//! `meta.k8s.io/v1` Tables; the `skiff` CLI prints the same rows.
//!
//! Column names are Kubernetes' (`Name`, `Ready`, `Status`, ...); kubectl
//! and the CLI print them upper-cased. Columns of priority 1 are the extra
//! ones of `-o wide`.

use serde_json::Value;

/// A column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string` or `integer`, as in Kubernetes' column definitions.
    pub type_: &'static str,
    /// `name` for the column holding the object's name.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default columns, 1 for the `-o wide` ones.
    pub priority: u8,
}

const fn col(name: &'static str, description: &'static str, priority: u8) -> Column {
    Column {
        name,
        type_: "string",
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "The time since the object was created (creationTimestamp).",
    0,
);

const POD: &[Column] = &[
    NAME,
    col("Ready", "The number of containers that are ready.", 0),
    col(
        "Status",
        "The aggregate status of the containers in this pod.",
        0,
    ),
    col(
        "Restarts",
        "The number of times the containers were restarted.",
        0,
    ),
    AGE,
    col("IP", "The IP address of the pod.", 1),
    col("Node", "The node the pod is bound to.", 1),
    col("Nominated Node", "The node nominated by preemption.", 1),
    col("Readiness Gates", "The pod's readiness gates.", 1),
];
const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "Ready replicas of the desired ones.", 0),
    col("Up-to-date", "Replicas running the current template.", 0),
    col("Available", "Replicas available to users.", 0),
    AGE,
    col("Containers", "Names of the containers of the template.", 1),
    col("Images", "Images of the containers of the template.", 1),
    col("Selector", "The label selector of the pods.", 1),
];
const REPLICAS: &[Column] = &[
    NAME,
    col("Desired", "The number of desired replicas.", 0),
    col("Current", "The number of observed replicas.", 0),
    col("Ready", "The number of ready replicas.", 0),
    AGE,
    col("Containers", "Names of the containers of the template.", 1),
    col("Images", "Images of the containers of the template.", 1),
    col("Selector", "The label selector of the pods.", 1),
];
const NODE: &[Column] = &[
    NAME,
    col("Status", "The readiness of the node.", 0),
    col("Roles", "The roles of the node.", 0),
    AGE,
    col("Version", "The agent version the node reports.", 0),
    col("Internal-IP", "The node's internal address.", 1),
    col("External-IP", "The node's external address.", 1),
    col("OS-Image", "The node's operating system image.", 1),
    col("Kernel-Version", "The node's kernel version.", 1),
    col("Container-Runtime", "The node's container runtime.", 1),
];
const SERVICE: &[Column] = &[
    NAME,
    col("Type", "The type of the service.", 0),
    col("Cluster-IP", "The cluster IP of the service.", 0),
    col("External-IP", "External addresses of the service.", 0),
    col("Port(s)", "The ports of the service.", 0),
    AGE,
    col("Selector", "The label selector of the service's pods.", 1),
];
const NAMESPACE: &[Column] = &[NAME, col("Status", "The phase of the namespace.", 0), AGE];
const ENDPOINTS: &[Column] = &[
    NAME,
    col("Endpoints", "The addresses and ports of the endpoints.", 0),
    AGE,
];
const EVENT: &[Column] = &[
    col("Last Seen", "The time the event was last seen.", 0),
    col("Type", "The type of the event (Normal, Warning).", 0),
    col("Reason", "Why the event happened.", 0),
    col("Object", "The object the event is about.", 0),
    col("Subobject", "The part of the object the event is about.", 1),
    col("Source", "The component that reported the event.", 1),
    col("Message", "What happened.", 0),
    col("First Seen", "The time the event was first seen.", 1),
    col("Count", "How often the event happened.", 1),
    col("Name", "The name of the event.", 1),
];
const DEFAULT: &[Column] = &[NAME, AGE];

/// The columns of `kind`.
pub fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => POD,
        "Deployment" => DEPLOYMENT,
        "ReplicaSet" | "ReplicationController" => REPLICAS,
        "Node" => NODE,
        "Service" => SERVICE,
        "Namespace" => NAMESPACE,
        "Endpoints" => ENDPOINTS,
        "Event" => EVENT,
        _ => DEFAULT,
    }
}

/// A cell: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Str(String),
    Int(i64),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Str(s) => f.write_str(s),
            Cell::Int(i) => write!(f, "{i}"),
        }
    }
}

fn s(v: impl Into<String>) -> Cell {
    Cell::Str(v.into())
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn get_str<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn get_i64(v: &Value, path: &str) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}

/// kubectl's short durations: `45s`, `3m20s`, `5h`, `2d3h`, `400d`, `3y12d`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

/// The age of a timestamp (RFC 3339) at `now` (Unix seconds), or
/// `<unknown>`.
pub fn age(timestamp: &str, now: i64) -> String {
    match skiff_model::Time::parse(timestamp) {
        Ok(t) => human_duration(now - t.unix_seconds()),
        Err(_) => "<unknown>".to_string(),
    }
}

fn created_age(obj: &Value, now: i64) -> Cell {
    s(age(get_str(obj, "metadata.creationTimestamp"), now))
}

fn containers_images(spec: Option<&Value>) -> (String, String) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| get_str(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| get_str(c, "image")).collect();
    (names.join(","), images.join(","))
}

/// A label selector of `matchLabels` / a plain map, as kubectl prints it.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".to_string();
    };
    let labels = sel.get("matchLabels").unwrap_or(sel);
    let mut parts: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect()
        })
        .unwrap_or_default();
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key = get_str(e, "key");
            parts.push(match get_str(e, "operator") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                _ => format!("!{key}"),
            });
        }
    }
    if parts.is_empty() {
        "<none>".to_string()
    } else {
        parts.join(",")
    }
}

/// kubectl's pod status: the phase, or the reason a container waits or
/// ended, or `Terminating`.
pub fn pod_status(pod: &Value) -> String {
    let mut reason = get_str(pod, "status.phase").to_string();
    let status_reason = get_str(pod, "status.reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    let statuses = get(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut has_running = false;
    for cs in statuses.iter().rev() {
        let waiting = get_str(cs, "state.waiting.reason");
        let terminated = get(cs, "state.terminated");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if let Some(t) = terminated {
            let r = get_str(t, "reason");
            reason = if !r.is_empty() {
                r.to_string()
            } else if get_i64(t, "signal") != 0 {
                format!("Signal:{}", get_i64(t, "signal"))
            } else {
                format!("ExitCode:{}", get_i64(t, "exitCode"))
            };
        } else if get(cs, "state.running").is_some() && cs.get("ready") == Some(&Value::Bool(true))
        {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".to_string();
    }
    if get(pod, "metadata.deletionTimestamp").is_some() {
        reason = if status_reason == "NodeLost" {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    if reason.is_empty() {
        "Pending".to_string()
    } else {
        reason
    }
}

fn pod_row(pod: &Value, now: i64) -> Vec<Cell> {
    let total = get(pod, "spec.containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = get(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
        .count();
    let restarts: i64 = statuses.iter().map(|c| get_i64(c, "restartCount")).sum();
    vec![
        s(get_str(pod, "metadata.name")),
        s(format!("{ready}/{total}")),
        s(pod_status(pod)),
        s(restarts.to_string()),
        created_age(pod, now),
        s(or_none(get_str(pod, "status.podIP"))),
        s(or_none(get_str(pod, "spec.nodeName"))),
        s("<none>"),
        s("<none>"),
    ]
}

fn replicas(obj: &Value) -> i64 {
    get(obj, "spec.replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn deployment_row(d: &Value, now: i64) -> Vec<Cell> {
    let template = get(d, "spec.template.spec");
    let (names, images) = containers_images(template);
    vec![
        s(get_str(d, "metadata.name")),
        s(format!(
            "{}/{}",
            get_i64(d, "status.readyReplicas"),
            replicas(d)
        )),
        Cell::Int(get_i64(d, "status.updatedReplicas")),
        Cell::Int(get_i64(d, "status.availableReplicas")),
        created_age(d, now),
        s(names),
        s(images),
        s(selector_string(get(d, "spec.selector"))),
    ]
}

fn replicas_row(r: &Value, now: i64) -> Vec<Cell> {
    let (names, images) = containers_images(get(r, "spec.template.spec"));
    vec![
        s(get_str(r, "metadata.name")),
        Cell::Int(replicas(r)),
        Cell::Int(get_i64(r, "status.replicas")),
        Cell::Int(get_i64(r, "status.readyReplicas")),
        created_age(r, now),
        s(names),
        s(images),
        s(selector_string(get(r, "spec.selector"))),
    ]
}

fn node_row(n: &Value, now: i64) -> Vec<Cell> {
    let conditions = get(n, "status.conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .find(|c| get_str(c, "type") == "Ready")
        .map(|c| match get_str(c, "status") {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_string();
    if get(n, "spec.unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = get(n, "metadata.labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let address = |t: &str| {
        get(n, "status.addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| get_str(x, "type") == t))
            .map(|x| get_str(x, "address").to_string())
            .unwrap_or_default()
    };
    vec![
        s(get_str(n, "metadata.name")),
        s(status),
        s(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        created_age(n, now),
        s(get_str(n, "status.nodeInfo.kubeletVersion")),
        s(or_none(&address("InternalIP"))),
        s(or_none(&address("ExternalIP"))),
        s(or_none(get_str(n, "status.nodeInfo.osImage"))),
        s(or_none(get_str(n, "status.nodeInfo.kernelVersion"))),
        s(or_none(get_str(
            n,
            "status.nodeInfo.containerRuntimeVersion",
        ))),
    ]
}

fn service_row(svc: &Value, now: i64) -> Vec<Cell> {
    let type_ = match get_str(svc, "spec.type") {
        "" => "ClusterIP",
        t => t,
    };
    let external: Vec<&str> = get(svc, "spec.externalIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let external = if !external.is_empty() {
        external.join(",")
    } else if type_ == "LoadBalancer" {
        "<pending>".to_string()
    } else {
        "<none>".to_string()
    };
    let ports: Vec<String> = get(svc, "spec.ports")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let protocol = match get_str(p, "protocol") {
                        "" => "TCP",
                        x => x,
                    };
                    match get_i64(p, "nodePort") {
                        0 => format!("{}/{protocol}", get_i64(p, "port")),
                        np => format!("{}:{np}/{protocol}", get_i64(p, "port")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    vec![
        s(get_str(svc, "metadata.name")),
        s(type_),
        s(or_none(get_str(svc, "spec.clusterIP"))),
        s(external),
        s(or_none(&ports.join(","))),
        created_age(svc, now),
        s(selector_string(get(svc, "spec.selector"))),
    ]
}

fn endpoints_row(ep: &Value, now: i64) -> Vec<Cell> {
    const SHOWN: usize = 3;
    let mut all = Vec::new();
    for subset in get(ep, "subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|p| get_i64(p, "port")).collect())
            .unwrap_or_default();
        for addr in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = get_str(addr, "ip");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for p in &ports {
                all.push(format!("{ip}:{p}"));
            }
        }
    }
    let text = if all.is_empty() {
        "<none>".to_string()
    } else if all.len() > SHOWN {
        format!("{} + {} more...", all[..SHOWN].join(","), all.len() - SHOWN)
    } else {
        all.join(",")
    };
    vec![
        s(get_str(ep, "metadata.name")),
        s(text),
        created_age(ep, now),
    ]
}

fn event_row(ev: &Value, now: i64) -> Vec<Cell> {
    let last = [
        "lastTimestamp",
        "eventTime",
        "firstTimestamp",
        "metadata.creationTimestamp",
    ]
    .iter()
    .map(|f| get_str(ev, f))
    .find(|t| !t.is_empty())
    .unwrap_or("");
    let first = match get_str(ev, "firstTimestamp") {
        "" => get_str(ev, "eventTime"),
        t => t,
    };
    let object = format!(
        "{}/{}",
        get_str(ev, "involvedObject.kind").to_ascii_lowercase(),
        get_str(ev, "involvedObject.name")
    );
    vec![
        s(age(last, now)),
        s(get_str(ev, "type")),
        s(get_str(ev, "reason")),
        s(object),
        s(get_str(ev, "involvedObject.fieldPath")),
        s(get_str(ev, "source.component")),
        s(get_str(ev, "message")),
        s(age(first, now)),
        Cell::Int(get(ev, "count").and_then(Value::as_i64).unwrap_or(1)),
        s(get_str(ev, "metadata.name")),
    ]
}

fn namespace_row(ns: &Value, now: i64) -> Vec<Cell> {
    vec![
        s(get_str(ns, "metadata.name")),
        s(match get_str(ns, "status.phase") {
            "" => "Active",
            p => p,
        }),
        created_age(ns, now),
    ]
}

/// The cells of one object, one per column of [`columns`] of its kind.
pub fn row(kind: &str, obj: &Value, now: i64) -> Vec<Cell> {
    match kind {
        "Pod" => pod_row(obj, now),
        "Deployment" => deployment_row(obj, now),
        "ReplicaSet" | "ReplicationController" => replicas_row(obj, now),
        "Node" => node_row(obj, now),
        "Service" => service_row(obj, now),
        "Namespace" => namespace_row(obj, now),
        "Endpoints" => endpoints_row(obj, now),
        "Event" => event_row(obj, now),
        _ => vec![s(get_str(obj, "metadata.name")), created_age(obj, now)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn ts(secs_ago: i64) -> String {
        skiff_model::Time::from_unix(NOW - secs_ago).to_string()
    }

    fn text(cells: &[Cell]) -> Vec<String> {
        cells.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn durations_as_kubectl() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (47 * 3600, "47h"),
            (50 * 3600, "2d2h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 12 * 86400, "3y12d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn every_row_matches_its_columns() {
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "ReplicationController",
            "Node",
            "Service",
            "Namespace",
            "Endpoints",
            "Event",
            "Other",
        ] {
            assert_eq!(
                row(kind, &json!({}), NOW).len(),
                columns(kind).len(),
                "{kind}"
            );
        }
    }

    #[test]
    fn pod_rows() {
        let pod = json!({"metadata": {"name": "web", "creationTimestamp": ts(300)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            text(&row("Pod", &pod, NOW)),
            [
                "web",
                "1/2",
                "CrashLoopBackOff",
                "3",
                "5m",
                "10.0.0.5",
                "n1",
                "<none>",
                "<none>"
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Pending"}});
        assert_eq!(
            text(&row("Pod", &pending, NOW))[..5],
            ["p", "0/1", "Pending", "0", "<unknown>"]
        );
        let mut deleting = pending.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(ts(1));
        assert_eq!(pod_status(&deleting), "Terminating");
    }

    #[test]
    fn workload_node_and_service_rows() {
        let d = json!({"metadata": {"name": "nginx-deployment", "creationTimestamp": ts(30)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            text(&row("Deployment", &d, NOW)),
            [
                "nginx-deployment",
                "2/3",
                "3",
                "2",
                "30s",
                "nginx",
                "nginx:1.14.2",
                "app=nginx"
            ]
        );
        let rc = json!({"metadata": {"name": "nginx"}, "spec": {"replicas": 3, "selector": {"app": "nginx"}},
            "status": {"replicas": 1}});
        assert_eq!(
            text(&row("ReplicationController", &rc, NOW))[..4],
            ["nginx", "3", "1", "0"]
        );
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "skiff-0.1.0"}}});
        assert_eq!(
            text(&row("Node", &node, NOW))[..5],
            [
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "<unknown>",
                "skiff-0.1.0"
            ]
        );
        let svc = json!({"metadata": {"name": "my-service"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web"}}});
        assert_eq!(
            text(&row("Service", &svc, NOW)),
            [
                "my-service",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "<unknown>",
                "app=web"
            ]
        );
    }

    #[test]
    fn endpoints_events_namespaces() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}], "ports": [{"port": 80}, {"port": 81}]}]});
        assert_eq!(
            text(&row("Endpoints", &ep, NOW))[1],
            "1.1.1.1:80,1.1.1.1:81,2.2.2.2:80 + 1 more..."
        );
        let ev = json!({"metadata": {"name": "web.1"}, "lastTimestamp": ts(65), "type": "Normal",
            "reason": "Scheduled", "involvedObject": {"kind": "Pod", "name": "web"},
            "message": "assigned to n1"});
        // kubectl's server-side columns: the wide ones in their places.
        assert_eq!(
            text(&row("Event", &ev, NOW)),
            [
                "65s",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "",
                "assigned to n1",
                "<unknown>",
                "1",
                "web.1"
            ]
        );
        let shown: Vec<&str> = columns("Event")
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name)
            .collect();
        assert_eq!(shown, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(
            text(&row("Namespace", &ns, NOW))[..2],
            ["default", "Active"]
        );
    }
}
