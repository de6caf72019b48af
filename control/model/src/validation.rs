//! Validation of objects, as Kubernetes does it: each kind has a pure
//! function returning the list of [`StatusCause`]s, each naming the field by
//! its path (`spec.containers[0].image`), and [`validate_object`] is the one
//! entry point. An empty list means valid.
//!
//! Validation runs after defaulting ([`crate::defaults`]): the API server
//! decodes, defaults, then validates. Fields that defaulting fills
//! (`restartPolicy`, `protocol`, ...) are still accepted when absent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::IpAddr;

use crate::apps::{Deployment, DeploymentSpec, ReplicaSet, Scale};
use crate::core::{Endpoints, Event, Namespace, Node, ReplicationController, Service, ServicePort};
use crate::labels::LabelSelector;
use crate::meta::{CauseType, IntOrString, ObjectMeta, StatusCause};
use crate::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_qualified_name,
    is_valid_label_value, is_valid_port_name, is_valid_port_num,
};
use crate::object::Object;
use crate::pod::{Container, Pod, PodSpec, PodTemplateSpec, ResourceRequirements, Volume};
use crate::quantity::Quantity;

/// Largest total size of an object's annotations (keys plus values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;
/// The node ports services may ask for.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

pub const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
pub const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
pub const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
pub const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
pub const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort"];
pub const DEPLOYMENT_STRATEGIES: &[&str] = &["RollingUpdate", "Recreate"];
pub const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
pub const EVENT_TYPES: &[&str] = &["Normal", "Warning"];
pub const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
pub const STORAGE_MEDIUMS: &[&str] = &["", "Memory"];
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];
/// Resource names without a `/` that containers may request.
pub const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Collects causes.
#[derive(Default)]
struct Errs(Vec<StatusCause>);

impl Errs {
    fn push(&mut self, reason: CauseType, field: &str, message: String) {
        self.0.push(StatusCause {
            reason,
            message,
            field: field.to_string(),
        });
    }

    fn required(&mut self, field: &str, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push(CauseType::FieldValueRequired, field, message);
    }

    fn invalid(&mut self, field: &str, value: impl Debug, detail: &str) {
        self.push(
            CauseType::FieldValueInvalid,
            field,
            format!("Invalid value: {value:?}: {detail}"),
        );
    }

    fn duplicate(&mut self, field: &str, value: impl Debug) {
        self.push(
            CauseType::FieldValueDuplicate,
            field,
            format!("Duplicate value: {value:?}"),
        );
    }

    fn not_supported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.push(
            CauseType::FieldValueNotSupported,
            field,
            format!("Unsupported value: {value:?}: supported values: {list}"),
        );
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            CauseType::FieldValueForbidden,
            field,
            format!("Forbidden: {detail}"),
        );
    }

    fn not_found(&mut self, field: &str, value: impl Debug) {
        self.push(
            CauseType::FieldValueNotFound,
            field,
            format!("Not found: {value:?}"),
        );
    }

    fn too_long(&mut self, field: &str, max: usize) {
        self.push(
            CauseType::FieldValueTooLong,
            field,
            format!("Too long: must have at most {max} bytes"),
        );
    }

    /// One `Invalid` cause per problem a name check found.
    fn check(&mut self, field: &str, value: &str, problems: Vec<String>) {
        for p in problems {
            self.invalid(field, value, &p);
        }
    }

    fn one_of(&mut self, field: &str, value: &str, supported: &[&str]) {
        if !supported.contains(&value) {
            self.not_supported(field, value, supported);
        }
    }

    fn non_negative(&mut self, field: &str, value: i64) {
        if value < 0 {
            self.invalid(field, value, "must be greater than or equal to 0");
        }
    }

    fn into_vec(self) -> Vec<StatusCause> {
        self.0
    }
}

/// Which check an object's name gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Pods, Deployments, ...: a DNS-1123 subdomain.
    Subdomain,
    /// Namespaces: a DNS-1123 label.
    Label,
    /// Services: a DNS-1035 label.
    Dns1035Label,
}

fn name_problems(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035Label => is_dns1035_label(name),
    }
}

/// Validates `metadata`: name (or generateName), namespace present exactly
/// for namespaced kinds, labels, annotations and owner references.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(&mut errs, meta, namespaced, rule, "metadata");
    errs.into_vec()
}

fn object_meta(errs: &mut Errs, meta: &ObjectMeta, namespaced: bool, rule: NameRule, path: &str) {
    if meta.name.is_empty() {
        if meta.generate_name.is_empty() {
            errs.required(&format!("{path}.name"), "name or generateName is required");
        }
    } else {
        errs.check(
            &format!("{path}.name"),
            &meta.name,
            name_problems(rule, &meta.name),
        );
    }
    if !meta.generate_name.is_empty() {
        // A prefix may end in '-': check it as if a suffix followed.
        let masked = match meta.generate_name.strip_suffix('-') {
            Some(stem) => format!("{stem}a"),
            None => meta.generate_name.clone(),
        };
        errs.check(
            &format!("{path}.generateName"),
            &meta.generate_name,
            name_problems(rule, &masked),
        );
    }
    if namespaced {
        if meta.namespace.is_empty() {
            errs.required(&format!("{path}.namespace"), "");
        } else {
            errs.check(
                &format!("{path}.namespace"),
                &meta.namespace,
                is_dns1123_label(&meta.namespace),
            );
        }
    } else if !meta.namespace.is_empty() {
        errs.forbidden(&format!("{path}.namespace"), "not allowed on this type");
    }
    labels(errs, &meta.labels, &format!("{path}.labels"));
    let annotations = format!("{path}.annotations");
    let mut total = 0;
    for (k, v) in &meta.annotations {
        errs.check(&annotations, k, is_qualified_name(&k.to_ascii_lowercase()));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.too_long(&annotations, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES);
    }
    for (i, r) in meta.owner_references.iter().enumerate() {
        let p = format!("{path}.ownerReferences[{i}]");
        for (field, value) in [
            ("apiVersion", &r.api_version),
            ("kind", &r.kind),
            ("name", &r.name),
            ("uid", &r.uid),
        ] {
            if value.is_empty() {
                errs.required(&format!("{p}.{field}"), "");
            }
        }
    }
    if meta
        .owner_references
        .iter()
        .filter(|r| r.controller == Some(true))
        .count()
        > 1
    {
        errs.invalid(
            &format!("{path}.ownerReferences"),
            meta.owner_references.len(),
            "Only one reference can have Controller set to true",
        );
    }
    if let Some(g) = meta.deletion_grace_period_seconds {
        errs.non_negative(&format!("{path}.deletionGracePeriodSeconds"), g);
    }
}

/// Label keys must be qualified names and values label values.
fn labels(errs: &mut Errs, labels: &BTreeMap<String, String>, path: &str) {
    for (k, v) in labels {
        errs.check(path, k, is_qualified_name(k));
        errs.check(path, v, is_valid_label_value(v));
    }
}

/// Validates a structured label selector.
fn label_selector(errs: &mut Errs, sel: &LabelSelector, path: &str) {
    labels(errs, &sel.match_labels, &format!("{path}.matchLabels"));
    for (i, e) in sel.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        errs.check(&format!("{p}.key"), &e.key, is_qualified_name(&e.key));
        match e.operator.as_str() {
            "In" | "NotIn" if e.values.is_empty() => errs.required(
                &format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !e.values.is_empty() => errs.forbidden(
                &format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.not_supported(&format!("{p}.operator"), other, SELECTOR_OPERATORS),
        }
        for (j, v) in e.values.iter().enumerate() {
            errs.check(&format!("{p}.values[{j}]"), v, is_valid_label_value(v));
        }
    }
}

/// Validates a Pod.
pub fn validate_pod(pod: &Pod) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &pod.metadata,
        true,
        NameRule::Subdomain,
        "metadata",
    );
    pod_spec(&mut errs, &pod.spec, "spec");
    errs.into_vec()
}

/// Validates a pod spec at `path` (`spec`, `spec.template.spec`).
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    pod_spec(&mut errs, spec, path);
    errs.into_vec()
}

fn pod_spec(errs: &mut Errs, spec: &PodSpec, path: &str) {
    let volume_names = volumes(errs, &spec.volumes, &format!("{path}.volumes"));
    if spec.containers.is_empty() {
        errs.required(&format!("{path}.containers"), "");
    }
    let mut names = BTreeSet::new();
    let mut container_ports = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (list, field) in [
        (&spec.init_containers, "initContainers"),
        (&spec.containers, "containers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = format!("{path}.{field}[{i}]");
            if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                errs.duplicate(&format!("{p}.name"), &c.name);
            }
            container(errs, c, &p, &volume_names);
            for (j, port) in c.ports.iter().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                let protocol = port.protocol.as_deref().unwrap_or("TCP");
                // Init containers run before the others: only app containers
                // share the pod's ports at the same time.
                if field == "containers"
                    && port.container_port != 0
                    && !container_ports.insert((port.container_port, protocol))
                {
                    errs.duplicate(
                        &format!("{pp}.containerPort"),
                        format!("{}/{protocol}", port.container_port),
                    );
                }
                if let Some(hp) = port.host_port.filter(|hp| *hp != 0) {
                    let ip = port.host_ip.as_deref().unwrap_or("");
                    if !host_ports.insert((hp, protocol, ip)) {
                        errs.duplicate(&format!("{pp}.hostPort"), format!("{hp}/{protocol}"));
                    }
                }
            }
        }
    }
    if let Some(rp) = &spec.restart_policy {
        errs.one_of(&format!("{path}.restartPolicy"), rp, RESTART_POLICIES);
    }
    if let Some(dp) = &spec.dns_policy {
        errs.one_of(&format!("{path}.dnsPolicy"), dp, DNS_POLICIES);
    }
    if let Some(g) = spec.termination_grace_period_seconds {
        errs.non_negative(&format!("{path}.terminationGracePeriodSeconds"), g);
    }
    labels(errs, &spec.node_selector, &format!("{path}.nodeSelector"));
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        errs.check(
            &format!("{path}.nodeName"),
            node,
            is_dns1123_subdomain(node),
        );
    }
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        errs.check(&format!("{path}.hostname"), h, is_dns1123_label(h));
    }
}

/// Validates volumes; returns their names.
fn volumes<'a>(errs: &mut Errs, volumes: &'a [Volume], path: &str) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if v.name.is_empty() {
            errs.required(&format!("{p}.name"), "");
        } else {
            errs.check(&format!("{p}.name"), &v.name, is_dns1123_label(&v.name));
            if !names.insert(v.name.as_str()) {
                errs.duplicate(&format!("{p}.name"), &v.name);
            }
        }
        match (&v.empty_dir, &v.host_path) {
            (None, None) => errs.required(&p, "must specify a volume type"),
            (Some(_), Some(_)) => errs.forbidden(
                &format!("{p}.hostPath"),
                "may not specify more than 1 volume type",
            ),
            _ => {}
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(m) = &ed.medium {
                errs.one_of(&format!("{p}.emptyDir.medium"), m, STORAGE_MEDIUMS);
            }
            if let Some(limit) = ed.size_limit.filter(Quantity::is_negative) {
                errs.invalid(
                    &format!("{p}.emptyDir.sizeLimit"),
                    limit.to_string(),
                    "must be greater than or equal to 0",
                );
            }
        }
        if let Some(hp) = &v.host_path {
            if hp.path.is_empty() {
                errs.required(&format!("{p}.hostPath.path"), "");
            } else if !hp.path.starts_with('/') {
                errs.invalid(
                    &format!("{p}.hostPath.path"),
                    &hp.path,
                    "must be an absolute path",
                );
            }
            if let Some(t) = &hp.type_ {
                errs.one_of(&format!("{p}.hostPath.type"), t, HOST_PATH_TYPES);
            }
        }
    }
    names
}

fn container(errs: &mut Errs, c: &Container, path: &str, volume_names: &BTreeSet<&str>) {
    if c.name.is_empty() {
        errs.required(&format!("{path}.name"), "");
    } else {
        errs.check(&format!("{path}.name"), &c.name, is_dns1123_label(&c.name));
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        errs.required(&format!("{path}.image"), "");
    }
    if let Some(p) = &c.image_pull_policy {
        errs.one_of(&format!("{path}.imagePullPolicy"), p, PULL_POLICIES);
    }
    let mut port_names = BTreeSet::new();
    for (j, port) in c.ports.iter().enumerate() {
        let p = format!("{path}.ports[{j}]");
        if port.container_port == 0 {
            errs.required(&format!("{p}.containerPort"), "");
        } else {
            for problem in is_valid_port_num(port.container_port) {
                errs.invalid(&format!("{p}.containerPort"), port.container_port, &problem);
            }
        }
        if let Some(hp) = port.host_port.filter(|hp| *hp != 0) {
            for problem in is_valid_port_num(hp) {
                errs.invalid(&format!("{p}.hostPort"), hp, &problem);
            }
        }
        if let Some(proto) = &port.protocol {
            errs.one_of(&format!("{p}.protocol"), proto, PROTOCOLS);
        }
        if let Some(name) = &port.name {
            errs.check(&format!("{p}.name"), name, is_valid_port_name(name));
            if !port_names.insert(name.as_str()) {
                errs.duplicate(&format!("{p}.name"), name);
            }
        }
        if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty())
            && ip.parse::<IpAddr>().is_err()
        {
            errs.invalid(&format!("{p}.hostIP"), ip, "must be a valid IP address");
        }
    }
    for (j, e) in c.env.iter().enumerate() {
        let p = format!("{path}.env[{j}].name");
        if e.name.is_empty() {
            errs.required(&p, "");
        } else {
            errs.check(&p, &e.name, is_env_var_name(&e.name));
        }
    }
    if let Some(r) = &c.resources {
        resources(errs, r, &format!("{path}.resources"));
    }
    let mut mount_paths = BTreeSet::new();
    for (j, m) in c.volume_mounts.iter().enumerate() {
        let p = format!("{path}.volumeMounts[{j}]");
        if m.name.is_empty() {
            errs.required(&format!("{p}.name"), "");
        } else if !volume_names.contains(m.name.as_str()) {
            errs.not_found(&format!("{p}.name"), &m.name);
        }
        if m.mount_path.is_empty() {
            errs.required(&format!("{p}.mountPath"), "");
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.invalid(&format!("{p}.mountPath"), &m.mount_path, "must be unique");
        }
    }
}

fn resources(errs: &mut Errs, r: &ResourceRequirements, path: &str) {
    for (field, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map {
            let p = format!("{path}.{field}[{name}]");
            if !STANDARD_RESOURCES.contains(&name.as_str()) && !name.contains('/') {
                errs.not_supported(&p, name, STANDARD_RESOURCES);
            } else if name.contains('/') {
                errs.check(&p, name, is_qualified_name(name));
            }
            if q.is_negative() {
                errs.invalid(&p, q.to_string(), "must be greater than or equal to 0");
            }
        }
    }
    for (name, request) in &r.requests {
        if let Some(limit) = r.limits.get(name)
            && request > limit
        {
            errs.invalid(
                &format!("{path}.requests[{name}]"),
                request.to_string(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            );
        }
    }
}

/// Validates a pod template at `path` and, when given, that its labels
/// satisfy `selector`. Workload templates must restart always.
fn pod_template(
    errs: &mut Errs,
    template: Option<&PodTemplateSpec>,
    selector: Option<&LabelSelector>,
    path: &str,
) {
    let Some(t) = template else {
        errs.required(path, "");
        return;
    };
    labels(errs, &t.metadata.labels, &format!("{path}.metadata.labels"));
    if let Some(sel) = selector
        && sel
            .to_selector()
            .is_ok_and(|s| !s.matches(&t.metadata.labels))
    {
        errs.invalid(
            &format!("{path}.metadata.labels"),
            labels_string(&t.metadata.labels),
            "`selector` does not match template `labels`",
        );
    }
    pod_spec(errs, &t.spec, &format!("{path}.spec"));
    if let Some(rp) = t.spec.restart_policy.as_deref()
        && rp != "Always"
    {
        errs.not_supported(&format!("{path}.spec.restartPolicy"), rp, &["Always"]);
    }
}

fn labels_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn replicas(errs: &mut Errs, replicas: Option<i32>, path: &str) {
    if let Some(r) = replicas {
        errs.non_negative(path, i64::from(r));
    }
}

/// Validates a ReplicationController.
pub fn validate_replication_controller(rc: &ReplicationController) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &rc.metadata,
        true,
        NameRule::Subdomain,
        "metadata",
    );
    replicas(&mut errs, rc.spec.replicas, "spec.replicas");
    if let Some(m) = rc.spec.min_ready_seconds {
        errs.non_negative("spec.minReadySeconds", i64::from(m));
    }
    let selector = if rc.spec.selector.is_empty() {
        errs.required("spec.selector", "");
        None
    } else {
        labels(&mut errs, &rc.spec.selector, "spec.selector");
        Some(LabelSelector::from_labels(rc.spec.selector.clone()))
    };
    pod_template(
        &mut errs,
        rc.spec.template.as_ref(),
        selector.as_ref(),
        "spec.template",
    );
    errs.into_vec()
}

/// Checks a selector of a ReplicaSet or Deployment: present, not empty, valid.
fn workload_selector<'a>(
    errs: &mut Errs,
    sel: Option<&'a LabelSelector>,
) -> Option<&'a LabelSelector> {
    match sel {
        None => {
            errs.required("spec.selector", "");
            None
        }
        Some(s) if s.is_empty() => {
            errs.invalid(
                "spec.selector",
                "",
                "empty selector is invalid for deployment",
            );
            None
        }
        Some(s) => {
            let before = errs.0.len();
            label_selector(errs, s, "spec.selector");
            (errs.0.len() == before).then_some(s)
        }
    }
}

/// Validates a ReplicaSet.
pub fn validate_replica_set(rs: &ReplicaSet) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &rs.metadata,
        true,
        NameRule::Subdomain,
        "metadata",
    );
    replicas(&mut errs, rs.spec.replicas, "spec.replicas");
    if let Some(m) = rs.spec.min_ready_seconds {
        errs.non_negative("spec.minReadySeconds", i64::from(m));
    }
    let selector = workload_selector(&mut errs, rs.spec.selector.as_ref());
    pod_template(
        &mut errs,
        rs.spec.template.as_ref(),
        selector,
        "spec.template",
    );
    errs.into_vec()
}

/// Validates a Deployment.
pub fn validate_deployment(d: &Deployment) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &d.metadata,
        true,
        NameRule::Subdomain,
        "metadata",
    );
    deployment_spec(&mut errs, &d.spec);
    errs.into_vec()
}

fn deployment_spec(errs: &mut Errs, spec: &DeploymentSpec) {
    replicas(errs, spec.replicas, "spec.replicas");
    let selector = workload_selector(errs, spec.selector.as_ref());
    pod_template(errs, spec.template.as_ref(), selector, "spec.template");
    if let Some(m) = spec.min_ready_seconds {
        errs.non_negative("spec.minReadySeconds", i64::from(m));
    }
    if let Some(r) = spec.revision_history_limit {
        errs.non_negative("spec.revisionHistoryLimit", i64::from(r));
    }
    if let Some(p) = spec.progress_deadline_seconds {
        errs.non_negative("spec.progressDeadlineSeconds", i64::from(p));
        if p <= spec.min_ready_seconds.unwrap_or(0) {
            errs.invalid(
                "spec.progressDeadlineSeconds",
                p,
                "must be greater than minReadySeconds",
            );
        }
    }
    let Some(strategy) = &spec.strategy else {
        return;
    };
    let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
    errs.one_of("spec.strategy.type", kind, DEPLOYMENT_STRATEGIES);
    let Some(ru) = &strategy.rolling_update else {
        return;
    };
    if kind == "Recreate" {
        errs.forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        );
        return;
    }
    let surge = ru.max_surge.as_ref();
    let unavailable = ru.max_unavailable.as_ref();
    int_or_percent(errs, surge, "spec.strategy.rollingUpdate.maxSurge");
    int_or_percent(
        errs,
        unavailable,
        "spec.strategy.rollingUpdate.maxUnavailable",
    );
    if let Some(p) = unavailable.and_then(IntOrString::percent)
        && p > 100
    {
        errs.invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            format!("{p}%"),
            "must not be greater than 100%",
        );
    }
    let is_zero = |v: Option<&IntOrString>| {
        v.is_some_and(|v| matches!(v, IntOrString::Int(0)) || v.percent() == Some(0))
    };
    if is_zero(surge) && is_zero(unavailable) {
        errs.invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            unavailable.map(ToString::to_string).unwrap_or_default(),
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

fn int_or_percent(errs: &mut Errs, v: Option<&IntOrString>, path: &str) {
    match v {
        Some(IntOrString::Int(i)) => errs.non_negative(path, i64::from(*i)),
        Some(s @ IntOrString::String(text)) if s.percent().is_none() => errs.invalid(
            path,
            text,
            "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        ),
        _ => {}
    }
}

/// Validates a Scale (the body of a `/scale` update).
pub fn validate_scale(scale: &Scale) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    errs.non_negative("spec.replicas", i64::from(scale.spec.replicas));
    errs.into_vec()
}

/// Validates a Namespace.
pub fn validate_namespace(ns: &Namespace) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(&mut errs, &ns.metadata, false, NameRule::Label, "metadata");
    if let Some(spec) = &ns.spec {
        for (i, f) in spec.finalizers.iter().enumerate() {
            errs.check(&format!("spec.finalizers[{i}]"), f, is_qualified_name(f));
        }
    }
    errs.into_vec()
}

/// Validates a Node.
pub fn validate_node(node: &Node) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &node.metadata,
        false,
        NameRule::Subdomain,
        "metadata",
    );
    let mut seen = BTreeSet::new();
    for (i, t) in node.spec.taints.iter().enumerate() {
        let p = format!("spec.taints[{i}]");
        if t.key.is_empty() {
            errs.required(&format!("{p}.key"), "");
        } else {
            errs.check(&format!("{p}.key"), &t.key, is_qualified_name(&t.key));
        }
        if let Some(v) = &t.value {
            errs.check(&format!("{p}.value"), v, is_valid_label_value(v));
        }
        if t.effect.is_empty() {
            errs.required(&format!("{p}.effect"), "");
        } else {
            errs.one_of(&format!("{p}.effect"), &t.effect, TAINT_EFFECTS);
        }
        if !seen.insert((t.key.as_str(), t.effect.as_str())) {
            errs.duplicate(&p, format!("{}:{}", t.key, t.effect));
        }
    }
    if let Some(status) = &node.status {
        for (field, map) in [
            ("capacity", &status.capacity),
            ("allocatable", &status.allocatable),
        ] {
            for (name, q) in map {
                if q.is_negative() {
                    errs.invalid(
                        &format!("status.{field}[{name}]"),
                        q.to_string(),
                        "must be greater than or equal to 0",
                    );
                }
            }
        }
    }
    errs.into_vec()
}

/// Validates a Service.
pub fn validate_service(svc: &Service) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &svc.metadata,
        true,
        NameRule::Dns1035Label,
        "metadata",
    );
    let spec = &svc.spec;
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    errs.one_of("spec.type", kind, SERVICE_TYPES);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if spec.ports.is_empty() && !headless {
        errs.required("spec.ports", "");
    }
    if let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        && ip.parse::<IpAddr>().is_err()
    {
        errs.invalid(
            "spec.clusterIP",
            ip,
            "must be empty, 'None', or a valid IP address",
        );
    }
    if headless && kind == "NodePort" {
        errs.invalid(
            "spec.clusterIP",
            "None",
            "may not be set to 'None' for NodePort services",
        );
    }
    labels(&mut errs, &spec.selector, "spec.selector");
    let mut names = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        // A headless NodePort Service is refused on spec.clusterIP already.
        let no_node_ports = headless && kind != "NodePort";
        service_port(&mut errs, port, &p, spec.ports.len() > 1, no_node_ports);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty())
            && !names.insert(name)
        {
            errs.duplicate(&format!("{p}.name"), name);
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if port.port != 0 && !ports.insert((port.port, protocol)) {
            errs.duplicate(&p, format!("{}/{protocol}", port.port));
        }
        if let Some(np) = port.node_port.filter(|np| *np != 0)
            && !node_ports.insert((np, protocol))
        {
            errs.duplicate(&format!("{p}.nodePort"), np);
        }
    }
    errs.into_vec()
}

/// One port of a Service. skiff proxies every Service that is not headless
/// on its node ports, so `ClusterIP` Services take node ports as `NodePort`
/// ones do; a headless one has none.
fn service_port(errs: &mut Errs, port: &ServicePort, path: &str, several: bool, headless: bool) {
    match port.name.as_deref() {
        None | Some("") if several => errs.required(&format!("{path}.name"), ""),
        Some(name) if !name.is_empty() => {
            errs.check(&format!("{path}.name"), name, is_dns1123_label(name));
        }
        _ => {}
    }
    if port.port == 0 {
        errs.required(&format!("{path}.port"), "");
    } else {
        for problem in is_valid_port_num(port.port) {
            errs.invalid(&format!("{path}.port"), port.port, &problem);
        }
    }
    if let Some(proto) = &port.protocol {
        errs.one_of(&format!("{path}.protocol"), proto, PROTOCOLS);
    }
    match &port.target_port {
        Some(IntOrString::Int(t)) => {
            for problem in is_valid_port_num(*t) {
                errs.invalid(&format!("{path}.targetPort"), t, &problem);
            }
        }
        Some(IntOrString::String(name)) => {
            errs.check(
                &format!("{path}.targetPort"),
                name,
                is_valid_port_name(name),
            );
        }
        None => {}
    }
    if let Some(np) = port.node_port.filter(|np| *np != 0) {
        if headless {
            errs.forbidden(
                &format!("{path}.nodePort"),
                "may not be used when `clusterIP` is 'None'",
            );
        } else if !NODE_PORT_RANGE.contains(&np) {
            errs.invalid(
                &format!("{path}.nodePort"),
                np,
                &format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                ),
            );
        }
    }
}

/// Validates Endpoints.
pub fn validate_endpoints(ep: &Endpoints) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &ep.metadata,
        true,
        NameRule::Subdomain,
        "metadata",
    );
    for (i, subset) in ep.subsets.iter().enumerate() {
        let p = format!("subsets[{i}]");
        for (field, list) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in list.iter().enumerate() {
                let ap = format!("{p}.{field}[{j}]");
                if a.ip.parse::<IpAddr>().is_err() {
                    errs.invalid(&format!("{ap}.ip"), &a.ip, "must be a valid IP address");
                }
                if let Some(n) = a.node_name.as_deref().filter(|n| !n.is_empty()) {
                    errs.check(&format!("{ap}.nodeName"), n, is_dns1123_subdomain(n));
                }
                if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
                    errs.check(&format!("{ap}.hostname"), h, is_dns1123_label(h));
                }
            }
        }
        let mut names = BTreeSet::new();
        for (j, port) in subset.ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            match port.name.as_deref() {
                None | Some("") if subset.ports.len() > 1 => {
                    errs.required(&format!("{pp}.name"), "")
                }
                Some(name) if !name.is_empty() => {
                    errs.check(&format!("{pp}.name"), name, is_dns1123_label(name));
                    if !names.insert(name) {
                        errs.duplicate(&format!("{pp}.name"), name);
                    }
                }
                _ => {}
            }
            for problem in is_valid_port_num(port.port) {
                errs.invalid(&format!("{pp}.port"), port.port, &problem);
            }
            if let Some(proto) = &port.protocol {
                errs.one_of(&format!("{pp}.protocol"), proto, PROTOCOLS);
            }
        }
    }
    errs.into_vec()
}

/// Validates an Event.
pub fn validate_event(ev: &Event) -> Vec<StatusCause> {
    let mut errs = Errs::default();
    object_meta(
        &mut errs,
        &ev.metadata,
        true,
        NameRule::Subdomain,
        "metadata",
    );
    let io = &ev.involved_object;
    if !io.namespace.is_empty() && io.namespace != ev.metadata.namespace {
        errs.invalid(
            "involvedObject.namespace",
            &io.namespace,
            "does not match event.namespace",
        );
    }
    if !ev.type_.is_empty() {
        errs.one_of("type", &ev.type_, EVENT_TYPES);
    }
    errs.non_negative("count", i64::from(ev.count));
    errs.into_vec()
}

/// Validates an object of any kind: the one entry point of the API server.
pub fn validate_object(obj: &Object) -> Vec<StatusCause> {
    match obj {
        Object::Namespace(o) => validate_namespace(o),
        Object::Node(o) => validate_node(o),
        Object::Pod(o) => validate_pod(o),
        Object::ReplicationController(o) => validate_replication_controller(o),
        Object::ReplicaSet(o) => validate_replica_set(o),
        Object::Deployment(o) => validate_deployment(o),
        Object::Service(o) => validate_service(o),
        Object::Endpoints(o) => validate_endpoints(o),
        Object::Event(o) => validate_event(o),
    }
}

/// Validates an update: the new object on its own, plus what may not change
/// (name, namespace, uid; a pod's spec beyond container images and a first
/// `nodeName`; the selector of a ReplicaSet or Deployment; a Service's
/// cluster IP).
pub fn validate_object_update(old: &Object, new: &Object) -> Vec<StatusCause> {
    let mut errs = Errs(validate_object(new));
    if old.kind() != new.kind() {
        errs.invalid("kind", new.kind(), "field is immutable");
        return errs.into_vec();
    }
    let (om, nm) = (old.metadata(), new.metadata());
    immutable(&mut errs, "metadata.name", &om.name, &nm.name);
    immutable(
        &mut errs,
        "metadata.namespace",
        &om.namespace,
        &nm.namespace,
    );
    if !nm.uid.is_empty() {
        immutable(&mut errs, "metadata.uid", &om.uid, &nm.uid);
    }
    match (old, new) {
        (Object::Pod(o), Object::Pod(n)) => pod_update(&mut errs, &o.spec, &n.spec),
        (Object::ReplicaSet(o), Object::ReplicaSet(n)) => {
            immutable_selector(&mut errs, &o.spec.selector, &n.spec.selector);
        }
        (Object::Deployment(o), Object::Deployment(n)) => {
            immutable_selector(&mut errs, &o.spec.selector, &n.spec.selector);
        }
        (Object::Service(o), Object::Service(n)) => {
            let old_ip = o.spec.cluster_ip.as_deref().unwrap_or("");
            let new_ip = n.spec.cluster_ip.as_deref().unwrap_or("");
            if !old_ip.is_empty() && !new_ip.is_empty() {
                immutable(&mut errs, "spec.clusterIP", &old_ip, &new_ip);
            }
        }
        _ => {}
    }
    errs.into_vec()
}

fn immutable<T: PartialEq + Debug>(errs: &mut Errs, field: &str, old: &T, new: &T) {
    if old != new {
        errs.invalid(field, new, "field is immutable");
    }
}

/// A workload's selector may not change; the cause shows it as a string.
fn immutable_selector(errs: &mut Errs, old: &Option<LabelSelector>, new: &Option<LabelSelector>) {
    if old != new {
        let shown = new.as_ref().map(ToString::to_string).unwrap_or_default();
        errs.invalid("spec.selector", shown, "field is immutable");
    }
}

/// A pod's spec may change only in its container images, and `nodeName`
/// only from unset to set.
fn pod_update(errs: &mut Errs, old: &PodSpec, new: &PodSpec) {
    let old_node = old.node_name.as_deref().filter(|n| !n.is_empty());
    let new_node = new.node_name.as_deref().filter(|n| !n.is_empty());
    if old_node.is_some() && old_node != new_node {
        errs.invalid(
            "spec.nodeName",
            new_node.unwrap_or(""),
            "field is immutable",
        );
    }
    let mut comparable = new.clone();
    comparable.node_name = old.node_name.clone();
    for (n, o) in comparable.containers.iter_mut().zip(&old.containers).chain(
        comparable
            .init_containers
            .iter_mut()
            .zip(&old.init_containers),
    ) {
        if n.name == o.name {
            n.image = o.image.clone();
        }
    }
    if comparable != *old {
        errs.forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, \
             `spec.initContainers[*].image` and a first `spec.nodeName`",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::decode_object;
    use serde_json::{Value, json};

    fn causes(v: &Value) -> Vec<StatusCause> {
        validate_object(&decode_object(v).unwrap_or_else(|e| panic!("{e}")))
    }

    fn fields(v: &Value) -> Vec<(String, CauseType)> {
        causes(v).into_iter().map(|c| (c.field, c.reason)).collect()
    }

    #[track_caller]
    fn assert_valid(v: &Value) {
        let c = causes(v);
        assert!(c.is_empty(), "unexpected causes: {c:#?}");
    }

    #[track_caller]
    fn assert_only(v: &Value, field: &str, reason: CauseType) {
        assert_eq!(
            fields(v),
            vec![(field.to_string(), reason)],
            "{:#?}",
            causes(v)
        );
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "app", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                    "env": [{"name": "MODE", "value": "x"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                  "limits": {"cpu": "1", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30
            }
        })
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "app", "image": "busybox"}], "restartPolicy": "Always"}})
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": template(),
                        "strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                        "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}})
    }

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"type": "NodePort", "selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080,
                                   "protocol": "TCP"}]}})
    }

    #[test]
    fn valid_objects_pass() {
        assert_valid(&pod());
        assert_valid(&deployment());
        assert_valid(&service());
        assert_valid(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}),
        );
        assert_valid(
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.local"}}),
        );
        assert_valid(&json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"app": "web"}, "template": template()}}));
        assert_valid(&json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template()}}));
    }

    #[test]
    fn names() {
        let mut v = pod();
        v["metadata"]["name"] = json!("Web_1");
        assert_only(&v, "metadata.name", CauseType::FieldValueInvalid);
        v["metadata"]["name"] = json!("web.example-1");
        assert_valid(&v);
        v["metadata"]["name"] = json!("");
        assert_only(&v, "metadata.name", CauseType::FieldValueRequired);
        v["metadata"]["generateName"] = json!("web-");
        assert_valid(&v);
        v["metadata"]["generateName"] = json!("Web-");
        assert_only(&v, "metadata.generateName", CauseType::FieldValueInvalid);
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
        assert_only(&ns, "metadata.name", CauseType::FieldValueInvalid);
        ns["metadata"]["name"] = json!("a".repeat(64));
        assert_only(&ns, "metadata.name", CauseType::FieldValueInvalid);
        let mut svc = service();
        svc["metadata"]["name"] = json!("1web");
        assert_only(&svc, "metadata.name", CauseType::FieldValueInvalid);
        let msg = &causes(&svc)[0].message;
        assert!(
            msg.starts_with("Invalid value: \"1web\": a DNS-1035 label"),
            "{msg}"
        );
    }

    #[test]
    fn namespaces_and_scope() {
        let mut v = pod();
        v["metadata"]["namespace"] = json!("");
        assert_only(&v, "metadata.namespace", CauseType::FieldValueRequired);
        v["metadata"]["namespace"] = json!("Prod");
        assert_only(&v, "metadata.namespace", CauseType::FieldValueInvalid);
        let node = json!({"apiVersion": "v1", "kind": "Node",
                          "metadata": {"name": "n", "namespace": "default"}});
        assert_only(&node, "metadata.namespace", CauseType::FieldValueForbidden);
    }

    #[test]
    fn labels_and_annotations() {
        let mut v = pod();
        v["metadata"]["labels"] = json!({"bad key": "x"});
        assert_only(&v, "metadata.labels", CauseType::FieldValueInvalid);
        v["metadata"]["labels"] = json!({"app": "-x"});
        assert_only(&v, "metadata.labels", CauseType::FieldValueInvalid);
        v["metadata"]["labels"] = json!({"example.com/app": "x", "a": ""});
        assert_valid(&v);
        v["metadata"]["annotations"] = json!({"a b": "x"});
        assert_only(&v, "metadata.annotations", CauseType::FieldValueInvalid);
        v["metadata"]["annotations"] =
            json!({"big": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES)});
        assert_only(&v, "metadata.annotations", CauseType::FieldValueTooLong);
        v["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
        assert_valid(&v);
    }

    #[test]
    fn owner_references() {
        let mut v = pod();
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                    "name": "", "uid": "u"}]);
        assert_only(
            &v,
            "metadata.ownerReferences[0].name",
            CauseType::FieldValueRequired,
        );
        let r = json!({"apiVersion": "v1", "kind": "ReplicationController", "name": "a", "uid": "u",
                       "controller": true});
        v["metadata"]["ownerReferences"] = json!([r.clone(), r]);
        assert_only(&v, "metadata.ownerReferences", CauseType::FieldValueInvalid);
    }

    #[test]
    fn containers_required() {
        let mut v = pod();
        v["spec"]["containers"] = json!([]);
        assert_only(&v, "spec.containers", CauseType::FieldValueRequired);
        let mut v = pod();
        v["spec"]["containers"][0]["name"] = json!("");
        assert_only(&v, "spec.containers[0].name", CauseType::FieldValueRequired);
        let mut v = pod();
        v["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("image");
        assert_only(
            &v,
            "spec.containers[0].image",
            CauseType::FieldValueRequired,
        );
        assert_eq!(causes(&v)[0].message, "Required value");
        let mut v = pod();
        v["spec"]["containers"][0]["name"] = json!("App");
        assert_only(&v, "spec.containers[0].name", CauseType::FieldValueInvalid);
    }

    #[test]
    fn duplicate_container_names() {
        let mut v = pod();
        v["spec"]["containers"] = json!([{"name": "a", "image": "i"}, {"name": "a", "image": "i"}]);
        assert_only(
            &v,
            "spec.containers[1].name",
            CauseType::FieldValueDuplicate,
        );
        let mut v = pod();
        v["spec"]["initContainers"] = json!([{"name": "app", "image": "i"}]);
        assert_only(
            &v,
            "spec.containers[0].name",
            CauseType::FieldValueDuplicate,
        );
    }

    #[test]
    fn policies() {
        let mut v = pod();
        v["spec"]["restartPolicy"] = json!("Sometimes");
        assert_only(&v, "spec.restartPolicy", CauseType::FieldValueNotSupported);
        assert_eq!(
            causes(&v)[0].message,
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        let mut v = pod();
        v["spec"]["containers"][0]["imagePullPolicy"] = json!("Maybe");
        assert_only(
            &v,
            "spec.containers[0].imagePullPolicy",
            CauseType::FieldValueNotSupported,
        );
        let mut v = pod();
        v["spec"]["dnsPolicy"] = json!("Google");
        assert_only(&v, "spec.dnsPolicy", CauseType::FieldValueNotSupported);
        let mut v = pod();
        v["spec"]["terminationGracePeriodSeconds"] = json!(-1);
        assert_only(
            &v,
            "spec.terminationGracePeriodSeconds",
            CauseType::FieldValueInvalid,
        );
    }

    #[test]
    fn container_ports() {
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP");
        assert_only(
            &v,
            "spec.containers[0].ports[0].protocol",
            CauseType::FieldValueNotSupported,
        );
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000);
        assert_only(
            &v,
            "spec.containers[0].ports[0].containerPort",
            CauseType::FieldValueInvalid,
        );
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(0);
        assert_only(
            &v,
            "spec.containers[0].ports[0].containerPort",
            CauseType::FieldValueRequired,
        );
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(65536);
        assert_only(
            &v,
            "spec.containers[0].ports[0].hostPort",
            CauseType::FieldValueInvalid,
        );
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(0);
        assert_valid(&v);
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["name"] = json!("HTTP_PORT");
        assert!(
            fields(&v)
                .iter()
                .all(|(f, _)| f == "spec.containers[0].ports[0].name")
        );
        let mut v = pod();
        v["spec"]["containers"][0]["ports"][0]["hostIP"] = json!("not-an-ip");
        assert_only(
            &v,
            "spec.containers[0].ports[0].hostIP",
            CauseType::FieldValueInvalid,
        );
    }

    #[test]
    fn duplicate_ports() {
        let mut v = pod();
        v["spec"]["containers"] = json!([
            {"name": "a", "image": "i", "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]},
            {"name": "b", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]);
        v["spec"]["volumes"] = json!([]);
        assert_only(
            &v,
            "spec.containers[1].ports[0].containerPort",
            CauseType::FieldValueDuplicate,
        );
        v["spec"]["containers"] = json!([
            {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080},
                                                  {"containerPort": 81, "hostPort": 8080}]}
        ]);
        assert_only(
            &v,
            "spec.containers[0].ports[1].hostPort",
            CauseType::FieldValueDuplicate,
        );
        v["spec"]["containers"] = json!([
            {"name": "a", "image": "i", "ports": [{"containerPort": 80, "name": "web"},
                                                  {"containerPort": 81, "name": "web"}]}
        ]);
        assert_only(
            &v,
            "spec.containers[0].ports[1].name",
            CauseType::FieldValueDuplicate,
        );
    }

    #[test]
    fn env_and_resources() {
        let mut v = pod();
        v["spec"]["containers"][0]["env"] = json!([{"name": "1BAD"}, {"name": ""}]);
        assert_eq!(
            fields(&v),
            vec![
                (
                    "spec.containers[0].env[0].name".into(),
                    CauseType::FieldValueInvalid
                ),
                (
                    "spec.containers[0].env[1].name".into(),
                    CauseType::FieldValueRequired
                ),
            ]
        );
        let mut v = pod();
        v["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}});
        assert_only(
            &v,
            "spec.containers[0].resources.requests[cpu]",
            CauseType::FieldValueInvalid,
        );
        assert_eq!(
            causes(&v)[0].message,
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
        let mut v = pod();
        v["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "-1Gi"}});
        assert_only(
            &v,
            "spec.containers[0].resources.limits[memory]",
            CauseType::FieldValueInvalid,
        );
        let mut v = pod();
        v["spec"]["containers"][0]["resources"] = json!({"limits": {"gpu": "1"}});
        assert_only(
            &v,
            "spec.containers[0].resources.limits[gpu]",
            CauseType::FieldValueNotSupported,
        );
        v["spec"]["containers"][0]["resources"] = json!({"limits": {"example.com/gpu": "1"}});
        assert_valid(&v);
    }

    #[test]
    fn bad_quantities_are_refused_at_decode() {
        let mut v = pod();
        v["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1.5.5"}});
        let err = decode_object(&v).unwrap_err().to_string();
        assert!(
            err.starts_with("spec.containers[0].resources.limits.cpu: quantities must match"),
            "{err}"
        );
    }

    #[test]
    fn volumes_and_mounts() {
        let mut v = pod();
        v["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("missing");
        assert_only(
            &v,
            "spec.containers[0].volumeMounts[0].name",
            CauseType::FieldValueNotFound,
        );
        let mut v = pod();
        v["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/d"}, {"name": "data", "mountPath": "/d"}]);
        assert_only(
            &v,
            "spec.containers[0].volumeMounts[1].mountPath",
            CauseType::FieldValueInvalid,
        );
        let mut v = pod();
        v["spec"]["volumes"] =
            json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]);
        assert_only(&v, "spec.volumes[1].name", CauseType::FieldValueDuplicate);
        v["spec"]["volumes"] = json!([{"name": "data"}]);
        assert_only(&v, "spec.volumes[0]", CauseType::FieldValueRequired);
        v["spec"]["volumes"] =
            json!([{"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}]);
        assert_only(
            &v,
            "spec.volumes[0].hostPath",
            CauseType::FieldValueForbidden,
        );
        v["spec"]["volumes"] = json!([{"name": "data", "hostPath": {"path": "x", "type": "Dir"}}]);
        assert_eq!(
            fields(&v),
            vec![
                (
                    "spec.volumes[0].hostPath.path".into(),
                    CauseType::FieldValueInvalid
                ),
                (
                    "spec.volumes[0].hostPath.type".into(),
                    CauseType::FieldValueNotSupported
                ),
            ]
        );
        v["spec"]["volumes"] =
            json!([{"name": "data", "emptyDir": {"medium": "Disk", "sizeLimit": "-1"}}]);
        assert_eq!(
            fields(&v),
            vec![
                (
                    "spec.volumes[0].emptyDir.medium".into(),
                    CauseType::FieldValueNotSupported
                ),
                (
                    "spec.volumes[0].emptyDir.sizeLimit".into(),
                    CauseType::FieldValueInvalid
                ),
            ]
        );
    }

    #[test]
    fn node_selector_node_name_hostname() {
        let mut v = pod();
        v["spec"]["nodeSelector"] = json!({"disk type": "ssd"});
        assert_only(&v, "spec.nodeSelector", CauseType::FieldValueInvalid);
        let mut v = pod();
        v["spec"]["nodeName"] = json!("Node_1");
        assert_only(&v, "spec.nodeName", CauseType::FieldValueInvalid);
        let mut v = pod();
        v["spec"]["hostname"] = json!("a.b");
        assert_only(&v, "spec.hostname", CauseType::FieldValueInvalid);
    }

    #[test]
    fn workload_selectors_and_templates() {
        let mut d = deployment();
        d["spec"].as_object_mut().unwrap().remove("selector");
        assert_only(&d, "spec.selector", CauseType::FieldValueRequired);
        let mut d = deployment();
        d["spec"]["selector"] = json!({});
        assert_only(&d, "spec.selector", CauseType::FieldValueInvalid);
        let mut d = deployment();
        d["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        assert_only(
            &d,
            "spec.template.metadata.labels",
            CauseType::FieldValueInvalid,
        );
        assert_eq!(
            causes(&d)[0].message,
            "Invalid value: \"app=web\": `selector` does not match template `labels`"
        );
        let mut d = deployment();
        d["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]});
        assert_only(
            &d,
            "spec.selector.matchExpressions[0].operator",
            CauseType::FieldValueNotSupported,
        );
        d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]});
        assert_only(
            &d,
            "spec.selector.matchExpressions[0].values",
            CauseType::FieldValueRequired,
        );
        d["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]});
        assert_only(
            &d,
            "spec.selector.matchExpressions[0].values",
            CauseType::FieldValueForbidden,
        );
        d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]});
        assert_valid(&d);
        let mut d = deployment();
        d["spec"].as_object_mut().unwrap().remove("template");
        assert_only(&d, "spec.template", CauseType::FieldValueRequired);
        let mut d = deployment();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_only(
            &d,
            "spec.template.spec.restartPolicy",
            CauseType::FieldValueNotSupported,
        );
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_only(
            &d,
            "spec.template.spec.containers[0].image",
            CauseType::FieldValueRequired,
        );
    }

    #[test]
    fn replicas_non_negative() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        assert_only(&d, "spec.replicas", CauseType::FieldValueInvalid);
        d["spec"]["replicas"] = json!(0);
        assert_valid(&d);
        let rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": -3, "selector": {"app": "web"}, "template": template()}});
        assert_only(&rc, "spec.replicas", CauseType::FieldValueInvalid);
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template()}});
        assert_only(&rs, "spec.replicas", CauseType::FieldValueInvalid);
        let scale: Scale = serde_json::from_value(json!({"spec": {"replicas": -1}})).unwrap();
        assert_eq!(validate_scale(&scale).len(), 1);
    }

    #[test]
    fn replication_controller_selector() {
        let mut rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {}, "template": template()}});
        assert_only(&rc, "spec.selector", CauseType::FieldValueRequired);
        rc["spec"]["selector"] = json!({"app": "api"});
        assert_only(
            &rc,
            "spec.template.metadata.labels",
            CauseType::FieldValueInvalid,
        );
    }

    #[test]
    fn deployment_strategy() {
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "BlueGreen"});
        assert_only(&d, "spec.strategy.type", CauseType::FieldValueNotSupported);
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
        assert_only(
            &d,
            "spec.strategy.rollingUpdate",
            CauseType::FieldValueForbidden,
        );
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        assert_valid(&d);
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        assert_only(
            &d,
            "spec.strategy.rollingUpdate.maxUnavailable",
            CauseType::FieldValueInvalid,
        );
        d["spec"]["strategy"] =
            json!({"rollingUpdate": {"maxSurge": "x", "maxUnavailable": "101%"}});
        assert_eq!(
            fields(&d),
            vec![
                (
                    "spec.strategy.rollingUpdate.maxSurge".into(),
                    CauseType::FieldValueInvalid
                ),
                (
                    "spec.strategy.rollingUpdate.maxUnavailable".into(),
                    CauseType::FieldValueInvalid
                ),
            ]
        );
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": -1, "maxUnavailable": 1}});
        assert_only(
            &d,
            "spec.strategy.rollingUpdate.maxSurge",
            CauseType::FieldValueInvalid,
        );
        let mut d = deployment();
        d["spec"]["revisionHistoryLimit"] = json!(-1);
        assert_only(
            &d,
            "spec.revisionHistoryLimit",
            CauseType::FieldValueInvalid,
        );
        let mut d = deployment();
        d["spec"]["minReadySeconds"] = json!(600);
        assert_only(
            &d,
            "spec.progressDeadlineSeconds",
            CauseType::FieldValueInvalid,
        );
    }

    #[test]
    fn service_ports() {
        let mut s = service();
        s["spec"]["ports"][0]["port"] = json!(0);
        assert_only(&s, "spec.ports[0].port", CauseType::FieldValueRequired);
        s["spec"]["ports"][0]["port"] = json!(65536);
        assert_only(&s, "spec.ports[0].port", CauseType::FieldValueInvalid);
        let mut s = service();
        s["spec"]["ports"][0]["nodePort"] = json!(8080);
        assert_only(&s, "spec.ports[0].nodePort", CauseType::FieldValueInvalid);
        assert!(
            causes(&s)[0]
                .message
                .contains("The range of valid ports is 30000-32767")
        );
        s["spec"]["ports"][0]["nodePort"] = json!(32767);
        assert_valid(&s);
        let mut s = service();
        s["spec"]["type"] = json!("ClusterIP");
        assert_valid(&s);
        s["spec"]["clusterIP"] = json!("None");
        assert_only(&s, "spec.ports[0].nodePort", CauseType::FieldValueForbidden);
        let mut s = service();
        s["spec"]["type"] = json!("LoadBalancer");
        assert_only(&s, "spec.type", CauseType::FieldValueNotSupported);
        let mut s = service();
        s["spec"]["ports"] = json!([{"name": "a", "port": 80}, {"name": "a", "port": 81}]);
        assert_only(&s, "spec.ports[1].name", CauseType::FieldValueDuplicate);
        s["spec"]["ports"] = json!([{"name": "a", "port": 80}, {"port": 81}]);
        assert_only(&s, "spec.ports[1].name", CauseType::FieldValueRequired);
        s["spec"]["ports"] = json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]);
        assert_only(&s, "spec.ports[1]", CauseType::FieldValueDuplicate);
        s["spec"]["ports"] =
            json!([{"name": "a", "port": 80}, {"name": "b", "port": 80, "protocol": "UDP"}]);
        assert_valid(&s);
        s["spec"]["ports"] = json!([{"port": 80, "nodePort": 30000}, ]);
        assert_valid(&s);
        s["spec"]["ports"] = json!([{"name": "a", "port": 80, "nodePort": 30000},
                                    {"name": "b", "port": 81, "nodePort": 30000}]);
        assert_only(&s, "spec.ports[1].nodePort", CauseType::FieldValueDuplicate);
        s["spec"]["ports"] = json!([{"port": 80, "targetPort": 0}]);
        assert_only(&s, "spec.ports[0].targetPort", CauseType::FieldValueInvalid);
        s["spec"]["ports"] = json!([{"port": 80, "targetPort": "Web Port"}]);
        assert!(
            fields(&s)
                .iter()
                .all(|(f, _)| f == "spec.ports[0].targetPort")
        );
        s["spec"]["ports"] = json!([{"port": 80, "protocol": "ICMP"}]);
        assert_only(
            &s,
            "spec.ports[0].protocol",
            CauseType::FieldValueNotSupported,
        );
        s["spec"]["ports"] = json!([]);
        assert_only(&s, "spec.ports", CauseType::FieldValueRequired);
    }

    #[test]
    fn service_cluster_ip() {
        let mut s = service();
        s["spec"]["clusterIP"] = json!("10.96.0.300");
        assert_only(&s, "spec.clusterIP", CauseType::FieldValueInvalid);
        s["spec"]["clusterIP"] = json!("None");
        assert_only(&s, "spec.clusterIP", CauseType::FieldValueInvalid);
        s["spec"]["type"] = json!("ClusterIP");
        s["spec"]["ports"] = json!([]);
        assert_valid(&s);
    }

    #[test]
    fn endpoints() {
        let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1", "nodeName": "node-1"}],
                         "notReadyAddresses": [{"ip": "10.0.0.2"}],
                         "ports": [{"name": "http", "port": 30001, "protocol": "TCP"}]}]});
        assert_valid(&ep);
        ep["subsets"][0]["addresses"][0]["ip"] = json!("nope");
        assert_only(
            &ep,
            "subsets[0].addresses[0].ip",
            CauseType::FieldValueInvalid,
        );
        ep["subsets"][0]["addresses"][0]["ip"] = json!("10.0.0.1");
        ep["subsets"][0]["ports"] = json!([{"name": "a", "port": 1}, {"port": 0}]);
        assert_eq!(
            fields(&ep),
            vec![
                (
                    "subsets[0].ports[1].name".into(),
                    CauseType::FieldValueRequired
                ),
                (
                    "subsets[0].ports[1].port".into(),
                    CauseType::FieldValueInvalid
                ),
            ]
        );
    }

    #[test]
    fn events_and_nodes() {
        let mut ev = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "type": "Normal", "reason": "Scheduled", "count": 1});
        assert_valid(&ev);
        ev["type"] = json!("Info");
        assert_only(&ev, "type", CauseType::FieldValueNotSupported);
        ev["type"] = json!("Warning");
        ev["involvedObject"]["namespace"] = json!("other");
        assert_only(
            &ev,
            "involvedObject.namespace",
            CauseType::FieldValueInvalid,
        );
        let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "2"}}});
        assert_valid(&node);
        node["spec"]["taints"][0]["effect"] = json!("Sometimes");
        assert_only(
            &node,
            "spec.taints[0].effect",
            CauseType::FieldValueNotSupported,
        );
        node["spec"]["taints"] =
            json!([{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}]);
        assert_only(&node, "spec.taints[1]", CauseType::FieldValueDuplicate);
        node["spec"]["taints"] = json!([]);
        node["status"]["capacity"]["cpu"] = json!("-1");
        assert_only(&node, "status.capacity[cpu]", CauseType::FieldValueInvalid);
    }

    #[test]
    fn status_message_lists_all_causes() {
        let mut v = pod();
        v["spec"]["containers"][0]["image"] = json!("");
        v["spec"]["restartPolicy"] = json!("Sometimes");
        let st = crate::meta::Status::invalid("Pod", "", "web", causes(&v));
        assert!(st.message.starts_with("Pod \"web\" is invalid: [spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value"), "{}", st.message);
    }

    #[test]
    fn per_kind_functions() {
        let meta = ObjectMeta {
            name: "x".into(),
            ..ObjectMeta::default()
        };
        assert_eq!(
            validate_object_meta(&meta, true, NameRule::Subdomain).len(),
            1
        );
        assert!(validate_object_meta(&meta, false, NameRule::Label).is_empty());
        assert_eq!(
            validate_pod_spec(&PodSpec::default(), "spec.template.spec")[0].field,
            "spec.template.spec.containers"
        );
    }

    #[test]
    fn updates() {
        let decode = |v: &Value| decode_object(v).unwrap();
        let old = decode(&pod());
        let mut v = pod();
        v["spec"]["containers"][0]["image"] = json!("busybox:1.37");
        v["spec"]["nodeName"] = json!("node-1");
        assert!(validate_object_update(&old, &decode(&v)).is_empty());
        let bound = decode(&v);
        v["spec"]["nodeName"] = json!("node-2");
        let moved = validate_object_update(&bound, &decode(&v));
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].field, "spec.nodeName");
        let mut v = pod();
        v["spec"]["restartPolicy"] = json!("Never");
        let c = validate_object_update(&old, &decode(&v));
        assert_eq!(
            (c[0].field.as_str(), c[0].reason),
            ("spec", CauseType::FieldValueForbidden)
        );
        let mut v = pod();
        v["metadata"]["name"] = json!("other");
        assert_eq!(
            validate_object_update(&old, &decode(&v))[0].field,
            "metadata.name"
        );
        let mut v = pod();
        v["metadata"]["labels"] = json!({"app": "web", "new": "x"});
        assert!(validate_object_update(&old, &decode(&v)).is_empty());

        let old_d = decode(&deployment());
        let mut d = deployment();
        d["spec"]["replicas"] = json!(5);
        assert!(validate_object_update(&old_d, &decode(&d)).is_empty());
        d["spec"]["selector"] = json!({"matchLabels": {"app": "web", "x": "y"}});
        d["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let c = validate_object_update(&old_d, &decode(&d));
        assert_eq!(c[0].field, "spec.selector");
        assert_eq!(
            c[0].message,
            "Invalid value: \"app=web,x=y\": field is immutable"
        );

        let mut s = service();
        s["spec"]["clusterIP"] = json!("10.96.0.1");
        let old_s = decode(&s);
        s["spec"]["clusterIP"] = json!("10.96.0.2");
        assert_eq!(
            validate_object_update(&old_s, &decode(&s))[0].field,
            "spec.clusterIP"
        );
        s["spec"].as_object_mut().unwrap().remove("clusterIP");
        assert!(validate_object_update(&old_s, &decode(&s)).is_empty());

        assert_eq!(validate_object_update(&old, &old_s)[0].field, "kind");
    }
}
