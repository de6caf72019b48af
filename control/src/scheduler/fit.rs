//! Where a pod may go, and where it should go, decided without IO.
//!
//! Filters, as Kubernetes' default plugins: the node is Ready and not
//! unschedulable, the pod's requests fit the node's allocatable less what
//! its pods already request, the node has the labels of the pod's
//! nodeSelector, and the pod's host ports are free there. Scores: first
//! spread (fewest pods of the same owner on the node), then least allocated
//! (the most cpu and memory left after placing the pod), then the node's
//! name, so that the choice is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use skiff_model::{Node, Pod, Quantity};

/// What a pod asks for: cpu in millicores, memory in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    pub cpu_milli: i128,
    pub memory: i128,
}

impl std::ops::AddAssign for Requests {
    fn add_assign(&mut self, o: Requests) {
        self.cpu_milli += o.cpu_milli;
        self.memory += o.memory;
    }
}

fn request_of(container: &skiff_model::pod::Container, resource: &str) -> Option<Quantity> {
    let r = container.resources.as_ref()?;
    // As in Kubernetes, a limit without a request is also the request.
    r.requests
        .get(resource)
        .or_else(|| r.limits.get(resource))
        .copied()
}

/// The sum of the requests of a pod's containers.
pub fn pod_requests(pod: &Pod) -> Requests {
    let mut total = Requests::default();
    for c in &pod.spec.containers {
        total.cpu_milli += request_of(c, "cpu").map_or(0, |q| q.milli_value());
        total.memory += request_of(c, "memory").map_or(0, |q| q.value());
    }
    total
}

/// The host ports a pod asks for, as (protocol, port).
pub fn host_ports(pod: &Pod) -> BTreeSet<(String, i32)> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            let port = p.host_port.filter(|&h| h > 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), port))
        })
        .collect()
}

/// Whether a pod still holds its node's resources: bound, and neither
/// Succeeded nor Failed.
pub fn holds_resources(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The uid of the pod's controller (its owner with `controller: true`).
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// What a pod takes on its node, worked out once per version of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// `spec.nodeName`, when the pod holds resources there.
    pub node: Option<String>,
    pub requests: Requests,
    pub ports: BTreeSet<(String, i32)>,
    /// The controller's uid.
    pub owner: Option<String>,
}

impl Placed {
    pub fn of(pod: &Pod) -> Placed {
        Placed {
            node: holds_resources(pod)
                .then(|| pod.spec.node_name.clone())
                .flatten(),
            requests: pod_requests(pod),
            ports: host_ports(pod),
            owner: controller_uid(pod).map(str::to_string),
        }
    }
}

/// What the pods bound to one node take, kept as pods come and go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub requested: Requests,
    pub pods: usize,
    /// Host ports in use, with the number of pods using each.
    pub ports: BTreeMap<(String, i32), usize>,
    /// Pods per controller uid.
    pub owners: BTreeMap<String, usize>,
}

impl Usage {
    /// Counts what a bound pod takes.
    pub fn add(&mut self, placed: &Placed) {
        self.requested += placed.requests;
        self.pods += 1;
        for port in &placed.ports {
            *self.ports.entry(port.clone()).or_default() += 1;
        }
        if let Some(uid) = &placed.owner {
            *self.owners.entry(uid.clone()).or_default() += 1;
        }
    }

    /// Stops counting what [`Usage::add`] counted for a pod.
    pub fn remove(&mut self, placed: &Placed) {
        self.requested.cpu_milli -= placed.requests.cpu_milli;
        self.requested.memory -= placed.requests.memory;
        self.pods = self.pods.saturating_sub(1);
        for port in &placed.ports {
            decrement(&mut self.ports, port);
        }
        if let Some(uid) = &placed.owner {
            decrement(&mut self.owners, uid);
        }
    }

    /// Whether no pod is counted.
    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }
}

/// Takes one off `key`'s count, dropping the key at zero.
fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// A node and what its pods already take.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: Node,
    pub usage: Usage,
}

impl NodeState {
    pub fn new(node: Node) -> Self {
        NodeState {
            node,
            usage: Usage::default(),
        }
    }

    /// Counts a pod bound to this node.
    pub fn add_pod(&mut self, pod: &Pod) {
        self.usage.add(&Placed::of(pod));
    }

    fn allocatable(&self, resource: &str) -> Option<Quantity> {
        let status = self.node.status.as_ref()?;
        status
            .allocatable
            .get(resource)
            .or_else(|| status.capacity.get(resource))
            .copied()
    }

    fn ready(&self) -> bool {
        self.node.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    }
}

/// Why a node cannot take a pod, worded as Kubernetes' scheduler words it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    NotReady,
    Unschedulable,
    Selector,
    Insufficient(&'static str),
    TooManyPods,
    Ports,
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::NotReady => write!(f, "node(s) were not ready"),
            Unfit::Unschedulable => write!(f, "node(s) were unschedulable"),
            Unfit::Selector => write!(f, "node(s) didn't match Pod's node affinity/selector"),
            Unfit::Insufficient(r) => write!(f, "Insufficient {r}"),
            Unfit::TooManyPods => write!(f, "Too many pods"),
            Unfit::Ports => write!(
                f,
                "node(s) didn't have free ports for the requested pod ports"
            ),
        }
    }
}

/// What a pod asks of a node, worked out once per decision.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pod: &'a Pod,
    requests: Requests,
    ports: BTreeSet<(String, i32)>,
    owner: Option<&'a str>,
}

impl<'a> Ask<'a> {
    pub fn of(pod: &'a Pod) -> Self {
        Ask {
            pod,
            requests: pod_requests(pod),
            ports: host_ports(pod),
            owner: controller_uid(pod),
        }
    }
}

/// Every reason `state`'s node cannot take `pod` (empty when it can).
pub fn filter(pod: &Pod, state: &NodeState) -> Vec<Unfit> {
    filter_ask(&Ask::of(pod), state)
}

fn filter_ask(ask: &Ask<'_>, state: &NodeState) -> Vec<Unfit> {
    let pod = ask.pod;
    let usage = &state.usage;
    let mut why = Vec::new();
    if !state.ready() {
        why.push(Unfit::NotReady);
    }
    if state.node.spec.unschedulable {
        why.push(Unfit::Unschedulable);
    }
    let labels = &state.node.metadata.labels;
    if !pod
        .spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        why.push(Unfit::Selector);
    }
    let want = ask.requests;
    let fits = |resource: &str, used: i128, asked: i128, unit: fn(&Quantity) -> i128| {
        asked == 0
            || state
                .allocatable(resource)
                .is_some_and(|a| used + asked <= unit(&a))
    };
    if !fits(
        "cpu",
        usage.requested.cpu_milli,
        want.cpu_milli,
        Quantity::milli_value,
    ) {
        why.push(Unfit::Insufficient("cpu"));
    }
    if !fits(
        "memory",
        usage.requested.memory,
        want.memory,
        Quantity::value,
    ) {
        why.push(Unfit::Insufficient("memory"));
    }
    if let Some(max) = state.allocatable("pods")
        && usage.pods as i128 + 1 > max.value()
    {
        why.push(Unfit::TooManyPods);
    }
    if ask.ports.iter().any(|p| usage.ports.contains_key(p)) {
        why.push(Unfit::Ports);
    }
    why
}

/// The share of a resource left after placing the pod, in basis points
/// (0..=10,000): finer than Kubernetes' 0..=100 scores, so that a bigger
/// node wins over a smaller one even for a small pod.
fn left_share(allocatable: Option<i128>, used: i128) -> i128 {
    match allocatable {
        Some(a) if a > 0 => ((a - used).max(0) * 10_000) / a,
        _ => 0,
    }
}

/// Picks the node for `pod`: `Ok(name)`, or `Err` with Kubernetes'
/// message ("0/3 nodes are available: 2 Insufficient memory, 1 node(s)
/// didn't match Pod's node affinity/selector.").
pub fn choose<'a>(
    pod: &Pod,
    nodes: impl IntoIterator<Item = &'a NodeState>,
) -> Result<String, String> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<((usize, i128, &str), &str)> = None;
    let ask = Ask::of(pod);
    let want = ask.requests;
    let owner = ask.owner;
    let mut count = 0;
    for state in nodes {
        count += 1;
        let why = filter_ask(&ask, state);
        if !why.is_empty() {
            for w in why {
                *reasons.entry(w.to_string()).or_default() += 1;
            }
            continue;
        }
        let usage = &state.usage;
        let same_owner = owner.map_or(0, |uid| usage.owners.get(uid).copied().unwrap_or(0));
        let cpu = left_share(
            state.allocatable("cpu").map(|q| q.milli_value()),
            usage.requested.cpu_milli + want.cpu_milli,
        );
        let memory = left_share(
            state.allocatable("memory").map(|q| q.value()),
            usage.requested.memory + want.memory,
        );
        let name = state.node.metadata.name.as_str();
        // Smaller is better: fewer of the owner's pods, more left, name.
        let rank = (same_owner, -(cpu + memory), name);
        if best.as_ref().is_none_or(|(b, _)| rank < *b) {
            best = Some((rank, name));
        }
    }
    if let Some((_, name)) = best {
        return Ok(name.to_string());
    }
    let mut counted: Vec<(usize, String)> = reasons.into_iter().map(|(r, n)| (n, r)).collect();
    counted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let listed: Vec<String> = counted.iter().map(|(n, r)| format!("{n} {r}")).collect();
    Err(if listed.is_empty() {
        format!("0/{count} nodes are available.")
    } else {
        format!("0/{count} nodes are available: {}.", listed.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, memory: &str, labels: serde_json::Value) -> NodeState {
        NodeState::new(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "status": {
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            }))
            .unwrap(),
        )
    }

    fn pod(cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
        }))
        .unwrap()
    }

    fn owned(mut p: Pod, uid: &str) -> Pod {
        p.metadata.owner_references = vec![
            serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "rs", "uid": uid, "controller": true}))
            .unwrap(),
        ];
        p
    }

    #[test]
    fn requests_sum_and_limits_stand_in() {
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "image": "i", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "c", "image": "i"}
            ]}
        }))
        .unwrap();
        assert_eq!(
            pod_requests(&p),
            Requests {
                cpu_milli: 1250,
                memory: 64 * 1024 * 1024 + 1024 * 1024 * 1024
            }
        );
    }

    #[test]
    fn fits_until_the_node_is_full() {
        let mut n = node("n1", "1", "1Gi", json!({}));
        assert_eq!(filter(&pod("600m", "100Mi"), &n), vec![]);
        n.add_pod(&pod("600m", "100Mi"));
        assert_eq!(
            filter(&pod("600m", "100Mi"), &n),
            vec![Unfit::Insufficient("cpu")]
        );
        assert_eq!(filter(&pod("400m", "100Mi"), &n), vec![]);
    }

    #[test]
    fn unready_cordoned_and_unlabelled_nodes_are_refused() {
        let mut n = node("n1", "4", "4Gi", json!({"disk": "hdd"}));
        let mut p = pod("0", "0");
        p.spec.node_selector.insert("disk".into(), "ssd".into());
        assert_eq!(filter(&p, &n), vec![Unfit::Selector]);
        n.node.spec.unschedulable = true;
        n.node.status.as_mut().unwrap().conditions[0].status = "Unknown".into();
        assert_eq!(
            filter(&p, &n),
            vec![Unfit::NotReady, Unfit::Unschedulable, Unfit::Selector]
        );
    }

    #[test]
    fn host_ports_conflict() {
        let with_port = |port: i32| -> Pod {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i",
                    "ports": [{"containerPort": 80, "hostPort": port}]}]}
            }))
            .unwrap()
        };
        let mut n = node("n1", "4", "4Gi", json!({}));
        n.add_pod(&with_port(8080));
        assert_eq!(filter(&with_port(8080), &n), vec![Unfit::Ports]);
        assert_eq!(filter(&with_port(8081), &n), vec![]);
    }

    #[test]
    fn replicas_spread_then_least_allocated_wins() {
        let mut a = node("a", "4", "4Gi", json!({}));
        let b = node("b", "2", "2Gi", json!({}));
        let p = owned(pod("100m", "100Mi"), "rs-1");
        assert_eq!(
            choose(&p, &[a.clone(), b.clone()]),
            Ok("a".into()),
            "more left on a"
        );
        a.add_pod(&owned(pod("100m", "100Mi"), "rs-1"));
        assert_eq!(
            choose(&p, &[a.clone(), b.clone()]),
            Ok("b".into()),
            "spread first"
        );
        let other = owned(pod("100m", "100Mi"), "rs-2");
        assert_eq!(choose(&other, &[a, b]), Ok("a".into()));
    }

    /// A cluster of 1,000 nodes of four sizes in two zones, some cordoned,
    /// some not ready: every choice passes every filter, and the choice is
    /// the node with the most room among those that pass.
    #[test]
    fn many_nodes_every_choice_fits_and_is_the_roomiest() {
        let mut nodes: Vec<NodeState> = (0..1000)
            .map(|i| {
                let memory = ["1Gi", "2Gi", "4Gi", "8Gi"][i % 4];
                let zone = if i % 2 == 0 { "a" } else { "b" };
                let mut n = node(&format!("n{i:04}"), "4", memory, json!({"zone": zone}));
                if i % 7 == 0 {
                    n.node.spec.unschedulable = true;
                }
                if i % 11 == 0 {
                    n.node.status.as_mut().unwrap().conditions[0].status = "False".into();
                }
                n
            })
            .collect();
        for round in 0..300 {
            let mut p = pod("100m", if round % 3 == 0 { "3Gi" } else { "256Mi" });
            if round % 5 == 0 {
                p.spec.node_selector.insert("zone".into(), "b".into());
            }
            let chosen = choose(&p, &nodes).expect("some node fits");
            let i = nodes
                .iter()
                .position(|n| n.node.metadata.name == chosen)
                .unwrap();
            assert_eq!(
                filter(&p, &nodes[i]),
                vec![],
                "{chosen} passes every filter"
            );
            let room = |n: &NodeState| {
                let a = n.allocatable("memory").unwrap().value();
                (a - n.usage.requested.memory - pod_requests(&p).memory) * 10_000 / a
            };
            let best = nodes
                .iter()
                .filter(|n| filter(&p, n).is_empty())
                .map(room)
                .max()
                .unwrap();
            assert!(
                room(&nodes[i]) >= best - 10_000 / 40,
                "{chosen} is among the roomiest"
            );
            nodes[i].add_pod(&p);
        }
        // Nothing fits a pod bigger than any node.
        let err = choose(&pod("100m", "16Gi"), &nodes).unwrap_err();
        assert!(err.starts_with("0/1000 nodes are available: "), "{err}");
        assert!(err.contains("Insufficient memory"), "{err}");
    }

    /// 100 replicas of one owner over 10 equal nodes: 10 on each.
    #[test]
    fn replicas_spread_evenly_over_many_nodes() {
        let mut nodes: Vec<NodeState> = (0..10)
            .map(|i| node(&format!("n{i}"), "64", "64Gi", json!({})))
            .collect();
        for _ in 0..100 {
            let p = owned(pod("100m", "100Mi"), "rs-1");
            let chosen = choose(&p, &nodes).unwrap();
            let i = nodes
                .iter()
                .position(|n| n.node.metadata.name == chosen)
                .unwrap();
            nodes[i].add_pod(&p);
        }
        let counts: Vec<usize> = nodes.iter().map(|n| n.usage.owners["rs-1"]).collect();
        assert_eq!(counts, vec![10; 10]);
    }

    #[test]
    fn the_message_counts_reasons_as_kubernetes_does() {
        let mut p = pod("0", "3Gi");
        p.spec.node_selector.insert("zone".into(), "a".into());
        let nodes = [
            node("n1", "1", "1Gi", json!({"zone": "a"})),
            node("n2", "1", "1Gi", json!({"zone": "a"})),
            node("n3", "1", "8Gi", json!({"zone": "b"})),
        ];
        assert_eq!(
            choose(&p, &nodes),
            Err("0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector.".into())
        );
        assert_eq!(choose(&p, &[]), Err("0/0 nodes are available.".into()));
    }
}
