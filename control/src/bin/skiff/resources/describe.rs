//! `skiff describe`: an object in kubectl's words, with its events.
//!
//! The text of each kind is a pure function of the object, its events and
//! (for nodes, replica sets and controllers) the pods involved, written
//! through a [`TabWriter`] with kubectl's padding of 2; the command only
//! fetches them. Nodes, pods, deployments, replica sets, replication
//! controllers, services, namespaces and endpoints have their own
//! layouts; other kinds print their metadata and fields.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use serde_json::Value;
use skiff_control::table::age;
use skiff_model::{Quantity, ResourceInfo};

use super::client::query;
use super::tabwriter::TabWriter;
use super::{CliError, Client, ServerArgs, Targets, io_error, meta_str, parse_targets, report};

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// KIND [NAME...], or KIND/NAME...
    #[arg(value_name = "KIND", required = true)]
    pub targets: Vec<String>,
    /// Describe the objects this label selector matches.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Describe objects of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The annotation kubectl leaves out of `describe`.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub async fn describe(args: DescribeArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let targets = parse_targets(&args.targets)?;
    let client = args.server.client()?;
    let ns = args.server.namespace();
    let mut objects: Vec<(&'static ResourceInfo, Value)> = Vec::new();
    let mut failed = false;
    let pairs: Vec<(&'static ResourceInfo, String)> = match &targets {
        Targets::Kinds { kinds, names } if names.is_empty() => {
            for &r in kinds {
                let scope = (!args.all_namespaces).then_some(ns);
                let mut params = Vec::new();
                if let Some(l) = &args.selector {
                    params.push(("labelSelector", l.as_str()));
                }
                let list = client
                    .get(&format!("{}{}", r.collection_path(scope), query(&params)))
                    .await?;
                for item in list["items"].as_array().into_iter().flatten() {
                    objects.push((r, item.clone()));
                }
            }
            if objects.is_empty() {
                let _ = out.flush();
                eprintln!(
                    "{}",
                    super::get::no_resources_message(
                        &targets,
                        (!args.all_namespaces).then_some(ns)
                    )
                );
                return Ok(());
            }
            Vec::new()
        }
        _ => targets.pairs(),
    };
    for (r, name) in pairs {
        match client.get(&r.object_path(ns, &name)).await {
            Ok(obj) => objects.push((r, obj)),
            Err(e @ CliError::Local(_)) => return Err(e),
            Err(e) => {
                report(out, &e);
                failed = true;
            }
        }
    }
    let now = skiff_model::Time::now().unix_seconds();
    for (i, (r, obj)) in objects.iter().enumerate() {
        if i > 0 {
            writeln!(out).map_err(io_error)?;
            writeln!(out).map_err(io_error)?;
        }
        let text = describe_one(&client, r, obj, now).await?;
        out.write_all(text.as_bytes()).map_err(io_error)?;
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// Fetches what the description of `obj` needs and writes it.
async fn describe_one(
    client: &Client,
    r: &'static ResourceInfo,
    obj: &Value,
    now: i64,
) -> Result<String, CliError> {
    let events = events_of(client, r, obj).await?;
    Ok(match r.kind {
        "Node" => {
            let selector = format!(
                "spec.nodeName={},status.phase!=Succeeded,status.phase!=Failed",
                skiff_model::fields::escape_value(meta_str(obj, "name"))
            );
            let pods = client
                .get(&format!(
                    "/api/v1/pods{}",
                    query(&[("fieldSelector", &selector)])
                ))
                .await?;
            let pods = pods["items"].as_array().cloned().unwrap_or_default();
            node_text(obj, &pods, &events, now)
        }
        "Pod" => pod_text(obj, &events, now),
        "Deployment" => deployment_text(obj, &events, now),
        "ReplicaSet" | "ReplicationController" => {
            let selector = selector_of(obj);
            let pods = if selector.is_empty() {
                Vec::new()
            } else {
                let path = format!(
                    "/api/v1/namespaces/{}/pods{}",
                    meta_str(obj, "namespace"),
                    query(&[("labelSelector", &selector)])
                );
                client.get(&path).await?["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            };
            replicas_text(obj, &pods, &events, now)
        }
        "Service" => {
            let path = format!(
                "/api/v1/namespaces/{}/endpoints/{}",
                meta_str(obj, "namespace"),
                meta_str(obj, "name")
            );
            let endpoints = match client.get(&path).await {
                Ok(ep) => Some(ep),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            service_text(obj, endpoints.as_ref(), &events, now)
        }
        "Namespace" => namespace_text(obj),
        "Endpoints" => endpoints_text(obj, &events, now),
        _ => generic_text(obj, &events, now),
    })
}

/// The events about `obj`, found by kubectl's field selector
/// (`involvedObject.name`, `.namespace`, `.kind`, `.uid`); for a node also
/// those whose uid is the node's name (as node agents report them).
async fn events_of(
    client: &Client,
    r: &'static ResourceInfo,
    obj: &Value,
) -> Result<Vec<Value>, CliError> {
    if r.kind == "Event" {
        return Ok(Vec::new());
    }
    let name = meta_str(obj, "name");
    let ns = meta_str(obj, "namespace");
    let uid = meta_str(obj, "uid");
    let mut uids = vec![uid.to_string()];
    if r.kind == "Node" && name != uid {
        uids.push(name.to_string());
    }
    let mut events = Vec::new();
    for uid in uids {
        let esc = skiff_model::fields::escape_value;
        let selector = format!(
            "involvedObject.name={},involvedObject.namespace={},involvedObject.kind={},involvedObject.uid={}",
            esc(name),
            esc(ns),
            r.kind,
            esc(&uid)
        );
        let path = if ns.is_empty() {
            "/api/v1/events".to_string()
        } else {
            format!("/api/v1/namespaces/{ns}/events")
        };
        let list = client
            .get(&format!("{path}{}", query(&[("fieldSelector", &selector)])))
            .await?;
        events.extend(list["items"].as_array().cloned().unwrap_or_default());
    }
    Ok(events)
}

// ------------------------------------------------------------ helpers

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn int(v: &Value, path: &str) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: &str) -> &str {
    if v.is_empty() { "<none>" } else { v }
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

/// `Mon, 02 Jan 2006 15:04:05 +0000` (Go's RFC1123Z, as kubectl prints
/// times), or the input when it is not a time.
pub fn rfc1123z(timestamp: &str) -> String {
    let Ok(t) = skiff_model::Time::parse(timestamp) else {
        return timestamp.to_string();
    };
    let secs = t.unix_seconds();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day number since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A map field as sorted `(key, value)` pairs.
fn string_map(v: &Value, path: &str) -> BTreeMap<String, String> {
    get(v, path)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `Labels:  a=1` then `        b=2` under it, or `<none>`.
fn write_labels(w: &mut TabWriter, level: usize, title: &str, labels: &BTreeMap<String, String>) {
    let pad = indent(level);
    if labels.is_empty() {
        w.write(&format!("{pad}{title}:\t<none>\n"));
        return;
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        if i == 0 {
            w.write(&format!("{pad}{title}:\t{k}={v}\n"));
        } else {
            w.write(&format!("{pad}\t{k}={v}\n"));
        }
    }
}

fn write_annotations(w: &mut TabWriter, level: usize, obj: &Value) {
    let mut annotations = string_map(obj, "metadata.annotations");
    annotations.remove(LAST_APPLIED);
    let pad = indent(level);
    if annotations.is_empty() {
        w.write(&format!("{pad}Annotations:\t<none>\n"));
        return;
    }
    for (i, (k, v)) in annotations.iter().enumerate() {
        let v = v.replace('\n', " ");
        if i == 0 {
            w.write(&format!("{pad}Annotations:\t{k}: {v}\n"));
        } else {
            w.write(&format!("{pad}\t{k}: {v}\n"));
        }
    }
}

/// The `Events:` section: a table, or `<none>`.
fn write_events(w: &mut TabWriter, events: &[Value], now: i64) {
    if events.is_empty() {
        w.write("Events:\t<none>\n");
        return;
    }
    let time = |e: &Value, fields: &[&str]| {
        fields
            .iter()
            .map(|f| s(e, f))
            .find(|t| !t.is_empty())
            .unwrap_or("")
            .to_string()
    };
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| {
        skiff_model::Time::parse(&time(
            e,
            &["lastTimestamp", "eventTime", "metadata.creationTimestamp"],
        ))
        .map(|t| t.unix_seconds())
        .unwrap_or(0)
    });
    w.write("Events:\n");
    w.write("  Type\tReason\tAge\tFrom\tMessage\n");
    w.write("  ----\t------\t----\t----\t-------\n");
    for e in sorted {
        let last = time(
            e,
            &["lastTimestamp", "eventTime", "metadata.creationTimestamp"],
        );
        let first = time(
            e,
            &["firstTimestamp", "eventTime", "metadata.creationTimestamp"],
        );
        let count = get(e, "count").and_then(Value::as_i64).unwrap_or(1);
        let when = if count > 1 {
            format!("{} (x{count} over {})", age(&last, now), age(&first, now))
        } else {
            age(&last, now)
        };
        let mut from = s(e, "source.component").to_string();
        if from.is_empty() {
            from = s(e, "reportingComponent").to_string();
        }
        if !s(e, "source.host").is_empty() {
            from = format!("{from}, {}", s(e, "source.host"));
        }
        w.write(&format!(
            "  {}\t{}\t{when}\t{from}\t{}\n",
            s(e, "type"),
            s(e, "reason"),
            s(e, "message").trim()
        ));
    }
}

fn write_controlled_by(w: &mut TabWriter, obj: &Value) {
    if let Some(owner) = arr(obj, "metadata.ownerReferences")
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)))
    {
        w.write(&format!(
            "Controlled By:\t{}/{}\n",
            s(owner, "kind"),
            s(owner, "name")
        ));
    }
}

fn ports_text(c: &Value, field: &str) -> String {
    let ports: Vec<String> = arr(c, "ports")
        .iter()
        .map(|p| {
            let protocol = or_default(s(p, "protocol"), "TCP");
            format!("{}/{protocol}", int(p, field))
        })
        .collect();
    ports.join(", ")
}

fn or_default<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}

/// A container's `State:` block (`Running`, `Waiting`, `Terminated`).
fn write_state(w: &mut TabWriter, level: usize, title: &str, state: Option<&Value>) {
    let pad = indent(level);
    let inner = indent(level + 1);
    let Some(state) = state.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        w.write(&format!(
            "{pad}{title}:\t{}\n",
            if title == "State" { "Waiting" } else { "" }
        ));
        return;
    };
    if let Some(r) = state.get("running") {
        w.write(&format!("{pad}{title}:\tRunning\n"));
        w.write(&format!(
            "{inner}Started:\t{}\n",
            rfc1123z(s(r, "startedAt"))
        ));
    } else if let Some(t) = state.get("terminated") {
        w.write(&format!("{pad}{title}:\tTerminated\n"));
        w.write(&format!("{inner}Reason:\t{}\n", s(t, "reason")));
        if !s(t, "message").is_empty() {
            w.write(&format!("{inner}Message:\t{}\n", s(t, "message")));
        }
        w.write(&format!("{inner}Exit Code:\t{}\n", int(t, "exitCode")));
        if int(t, "signal") != 0 {
            w.write(&format!("{inner}Signal:\t{}\n", int(t, "signal")));
        }
        w.write(&format!(
            "{inner}Started:\t{}\n",
            rfc1123z(s(t, "startedAt"))
        ));
        w.write(&format!(
            "{inner}Finished:\t{}\n",
            rfc1123z(s(t, "finishedAt"))
        ));
    } else if let Some(wt) = state.get("waiting") {
        w.write(&format!("{pad}{title}:\tWaiting\n"));
        if !s(wt, "reason").is_empty() {
            w.write(&format!("{inner}Reason:\t{}\n", s(wt, "reason")));
        }
    }
}

fn write_resources(w: &mut TabWriter, level: usize, c: &Value) {
    for (title, field) in [
        ("Limits", "resources.limits"),
        ("Requests", "resources.requests"),
    ] {
        let values = string_map(c, field);
        if values.is_empty() {
            continue;
        }
        w.write(&format!("{}{title}:\n", indent(level)));
        for (k, v) in values {
            w.write(&format!("{}{k}:\t{v}\n", indent(level + 1)));
        }
    }
}

fn write_env(w: &mut TabWriter, level: usize, c: &Value) {
    let pad = indent(level);
    let env = arr(c, "env");
    if env.is_empty() {
        w.write(&format!("{pad}Environment:\t<none>\n"));
        return;
    }
    w.write(&format!("{pad}Environment:\n"));
    for e in env {
        let value = if let Some(from) = get(e, "valueFrom.fieldRef") {
            format!(
                " ({}:{})",
                or_default(s(from, "apiVersion"), "v1"),
                s(from, "fieldPath")
            )
        } else if let Some(from) = get(e, "valueFrom.resourceFieldRef") {
            format!(" ({})", s(from, "resource"))
        } else {
            s(e, "value").to_string()
        };
        w.write(&format!(
            "{}{}:\t{value}\n",
            indent(level + 1),
            s(e, "name")
        ));
    }
}

fn write_mounts(w: &mut TabWriter, level: usize, c: &Value) {
    let pad = indent(level);
    let mounts = arr(c, "volumeMounts");
    if mounts.is_empty() {
        w.write(&format!("{pad}Mounts:\t<none>\n"));
        return;
    }
    w.write(&format!("{pad}Mounts:\n"));
    for m in mounts {
        let mode = if m.get("readOnly") == Some(&Value::Bool(true)) {
            "ro"
        } else {
            "rw"
        };
        let sub = s(m, "subPath");
        let sub = if sub.is_empty() {
            String::new()
        } else {
            format!(",path=\"{sub}\"")
        };
        w.write(&format!(
            "{}{} from {} ({mode}{sub})\n",
            indent(level + 1),
            s(m, "mountPath"),
            s(m, "name")
        ));
    }
}

/// The `Containers:` section; `statuses` are the pod's container statuses
/// (none for a template).
fn write_containers(
    w: &mut TabWriter,
    level: usize,
    title: &str,
    containers: &[Value],
    statuses: Option<&[Value]>,
) {
    if containers.is_empty() {
        return;
    }
    w.write(&format!("{}{title}:\n", indent(level)));
    let l = level + 2;
    for c in containers {
        let name = s(c, "name");
        w.write(&format!("{}{name}:\n", indent(level + 1)));
        let status = statuses.and_then(|st| st.iter().find(|x| s(x, "name") == name));
        if statuses.is_some() {
            w.write(&format!(
                "{}Container ID:\t{}\n",
                indent(l),
                status.map(|x| s(x, "containerID")).unwrap_or("")
            ));
        }
        w.write(&format!("{}Image:\t{}\n", indent(l), s(c, "image")));
        if statuses.is_some() {
            w.write(&format!(
                "{}Image ID:\t{}\n",
                indent(l),
                status.map(|x| s(x, "imageID")).unwrap_or("")
            ));
        }
        let ports = arr(c, "ports");
        let (port_title, host_title) = if ports.len() > 1 {
            ("Ports", "Host Ports")
        } else {
            ("Port", "Host Port")
        };
        if ports.is_empty() {
            w.write(&format!("{}Port:\t<none>\n", indent(l)));
            w.write(&format!("{}Host Port:\t<none>\n", indent(l)));
        } else {
            w.write(&format!(
                "{}{port_title}:\t{}\n",
                indent(l),
                ports_text(c, "containerPort")
            ));
            w.write(&format!(
                "{}{host_title}:\t{}\n",
                indent(l),
                ports_text(c, "hostPort")
            ));
        }
        let command = arr(c, "command");
        if !command.is_empty() {
            w.write(&format!("{}Command:\n", indent(l)));
            for part in command {
                w.write(&format!(
                    "{}{}\n",
                    indent(l + 1),
                    part.as_str().unwrap_or("")
                ));
            }
        }
        let args = arr(c, "args");
        if !args.is_empty() {
            w.write(&format!("{}Args:\n", indent(l)));
            for part in args {
                w.write(&format!(
                    "{}{}\n",
                    indent(l + 1),
                    part.as_str().unwrap_or("")
                ));
            }
        }
        if statuses.is_some() {
            write_state(w, l, "State", status.and_then(|x| x.get("state")));
            if let Some(last) = status
                .and_then(|x| x.get("lastState"))
                .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
            {
                write_state(w, l, "Last State", Some(last));
            }
            let ready = status.and_then(|x| x.get("ready")) == Some(&Value::Bool(true));
            w.write(&format!(
                "{}Ready:\t{}\n",
                indent(l),
                if ready { "True" } else { "False" }
            ));
            w.write(&format!(
                "{}Restart Count:\t{}\n",
                indent(l),
                status.map(|x| int(x, "restartCount")).unwrap_or(0)
            ));
        }
        write_resources(w, l, c);
        write_env(w, l, c);
        write_mounts(w, l, c);
    }
}

fn write_volumes(w: &mut TabWriter, level: usize, spec: &Value) {
    let pad = indent(level);
    let volumes = arr(spec, "volumes");
    if volumes.is_empty() {
        w.write(&format!("{pad}Volumes:\t<none>\n"));
        return;
    }
    w.write(&format!("{pad}Volumes:\n"));
    let l = indent(level + 2);
    for v in volumes {
        w.write(&format!("{}{}:\n", indent(level + 1), s(v, "name")));
        if let Some(e) = v.get("emptyDir") {
            w.write(&format!(
                "{l}Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n"
            ));
            w.write(&format!("{l}Medium:\t{}\n", s(e, "medium")));
            w.write(&format!(
                "{l}SizeLimit:\t{}\n",
                or_default(s(e, "sizeLimit"), "<unset>")
            ));
        } else if let Some(h) = v.get("hostPath") {
            w.write(&format!(
                "{l}Type:\tHostPath (bare host directory volume)\n"
            ));
            w.write(&format!("{l}Path:\t{}\n", s(h, "path")));
            w.write(&format!("{l}HostPathType:\t{}\n", s(h, "type")));
        } else {
            let kind = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                .unwrap_or_default();
            w.write(&format!("{l}Type:\t{kind}\n"));
        }
    }
}

/// The sum of the containers' requests or limits of `resource`, with the
/// largest init container's if that is more (as the scheduler counts).
fn pod_resource(pod: &Value, field: &str, resource: &str) -> Quantity {
    let q = |c: &Value| {
        get(c, &format!("resources.{field}"))
            .and_then(|m| m.get(resource))
            .and_then(Value::as_str)
            .and_then(|t| Quantity::parse(t).ok())
            .unwrap_or_else(|| Quantity::from_units(0))
    };
    let sum = arr(pod, "spec.containers")
        .iter()
        .map(q)
        .fold(Quantity::from_units(0), |a, b| {
            a.checked_add(b).unwrap_or(a)
        });
    arr(pod, "spec.initContainers")
        .iter()
        .map(q)
        .fold(sum, |a, b| if b > a { b } else { a })
}

/// `100m (2%)` of `allocatable`.
fn with_percent(q: &Quantity, allocatable: Option<&Quantity>) -> String {
    let percent = match allocatable {
        Some(a) if a.milli_value() > 0 => q.milli_value() * 100 / a.milli_value(),
        _ => 0,
    };
    format!("{q} ({percent}%)")
}

fn quantity_at(v: &Value, path: &str) -> Option<Quantity> {
    get(v, path)
        .and_then(Value::as_str)
        .and_then(|t| Quantity::parse(t).ok())
}

fn qos_class(pod: &Value) -> &'static str {
    let containers = arr(pod, "spec.containers");
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let req = string_map(c, "resources.requests");
        let lim = string_map(c, "resources.limits");
        any |= !req.is_empty() || !lim.is_empty();
        for r in ["cpu", "memory"] {
            let l = lim.get(r);
            let q = req.get(r).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ------------------------------------------------------------ kinds

/// `describe node`.
pub fn node_text(node: &Value, pods: &[Value], events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    let labels = string_map(node, "metadata.labels");
    let mut roles: Vec<&str> = labels
        .keys()
        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    w.write(&format!("Name:\t{}\n", meta_str(node, "name")));
    w.write(&format!(
        "Roles:\t{}\n",
        if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }
    ));
    write_labels(&mut w, 0, "Labels", &labels);
    write_annotations(&mut w, 0, node);
    w.write(&format!(
        "CreationTimestamp:\t{}\n",
        rfc1123z(meta_str(node, "creationTimestamp"))
    ));
    let taints = arr(node, "spec.taints");
    if taints.is_empty() {
        w.write("Taints:\t<none>\n");
    }
    for (i, t) in taints.iter().enumerate() {
        let value = s(t, "value");
        let text = if value.is_empty() {
            format!("{}:{}", s(t, "key"), s(t, "effect"))
        } else {
            format!("{}={value}:{}", s(t, "key"), s(t, "effect"))
        };
        w.write(&format!(
            "{}\t{text}\n",
            if i == 0 { "Taints:" } else { "" }
        ));
    }
    w.write(&format!(
        "Unschedulable:\t{}\n",
        get(node, "spec.unschedulable") == Some(&Value::Bool(true))
    ));
    let conditions = arr(node, "status.conditions");
    if conditions.is_empty() {
        w.write("Conditions:\t<none>\n");
    } else {
        w.write("Conditions:\n");
        w.write("  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n");
        w.write("  ----\t------\t-----------------\t------------------\t------\t-------\n");
        for c in conditions {
            w.write(&format!(
                "  {}\t{}\t{}\t{}\t{}\t{}\n",
                s(c, "type"),
                s(c, "status"),
                rfc1123z(s(c, "lastHeartbeatTime")),
                rfc1123z(s(c, "lastTransitionTime")),
                s(c, "reason"),
                s(c, "message")
            ));
        }
    }
    let addresses = arr(node, "status.addresses");
    if addresses.is_empty() {
        w.write("Addresses:\t<none>\n");
    } else {
        w.write("Addresses:\n");
        for a in addresses {
            w.write(&format!("  {}:\t{}\n", s(a, "type"), s(a, "address")));
        }
    }
    for (title, field) in [
        ("Capacity", "status.capacity"),
        ("Allocatable", "status.allocatable"),
    ] {
        let values = string_map(node, field);
        if values.is_empty() {
            continue;
        }
        w.write(&format!("{title}:\n"));
        for (k, v) in values {
            w.write(&format!("  {k}:\t{v}\n"));
        }
    }
    w.write("System Info:\n");
    for (title, field) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
    ] {
        w.write(&format!(
            "  {title}:\t{}\n",
            s(node, &format!("status.nodeInfo.{field}"))
        ));
    }
    let alloc_cpu = quantity_at(node, "status.allocatable.cpu");
    let alloc_mem = quantity_at(node, "status.allocatable.memory");
    w.write(&format!(
        "Non-terminated Pods:\t({} in total)\n",
        pods.len()
    ));
    w.write("  Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n");
    w.write("  ---------\t----\t------------\t----------\t---------------\t-------------\t---\n");
    let mut totals = [Quantity::from_units(0); 4];
    for p in pods {
        let values = [
            pod_resource(p, "requests", "cpu"),
            pod_resource(p, "limits", "cpu"),
            pod_resource(p, "requests", "memory"),
            pod_resource(p, "limits", "memory"),
        ];
        for (t, v) in totals.iter_mut().zip(&values) {
            *t = t.checked_add(*v).unwrap_or(*t);
        }
        w.write(&format!(
            "  {}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            meta_str(p, "namespace"),
            meta_str(p, "name"),
            with_percent(&values[0], alloc_cpu.as_ref()),
            with_percent(&values[1], alloc_cpu.as_ref()),
            with_percent(&values[2], alloc_mem.as_ref()),
            with_percent(&values[3], alloc_mem.as_ref()),
            age(meta_str(p, "creationTimestamp"), now)
        ));
    }
    w.write("Allocated resources:\n");
    w.write("  (Total limits may be over 100 percent, i.e., overcommitted.)\n");
    w.write("  Resource\tRequests\tLimits\n");
    w.write("  --------\t--------\t------\n");
    w.write(&format!(
        "  cpu\t{}\t{}\n",
        with_percent(&totals[0], alloc_cpu.as_ref()),
        with_percent(&totals[1], alloc_cpu.as_ref())
    ));
    w.write(&format!(
        "  memory\t{}\t{}\n",
        with_percent(&totals[2], alloc_mem.as_ref()),
        with_percent(&totals[3], alloc_mem.as_ref())
    ));
    write_events(&mut w, events, now);
    w.finish()
}

/// `describe pod`.
pub fn pod_text(pod: &Value, events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(pod, "name")));
    w.write(&format!("Namespace:\t{}\n", meta_str(pod, "namespace")));
    w.write(&format!(
        "Service Account:\t{}\n",
        or_default(s(pod, "spec.serviceAccountName"), "default")
    ));
    let node = s(pod, "spec.nodeName");
    let host_ip = s(pod, "status.hostIP");
    let node_text = match (node, host_ip) {
        ("", _) => "<none>".to_string(),
        (n, "") => n.to_string(),
        (n, ip) => format!("{n}/{ip}"),
    };
    w.write(&format!("Node:\t{node_text}\n"));
    let start = s(pod, "status.startTime");
    if !start.is_empty() {
        w.write(&format!("Start Time:\t{}\n", rfc1123z(start)));
    }
    write_labels(&mut w, 0, "Labels", &string_map(pod, "metadata.labels"));
    write_annotations(&mut w, 0, pod);
    let deleting = meta_str(pod, "deletionTimestamp");
    if deleting.is_empty() {
        w.write(&format!(
            "Status:\t{}\n",
            or_default(s(pod, "status.phase"), "Pending")
        ));
    } else {
        w.write(&format!(
            "Status:\tTerminating (lasts {})\n",
            age(deleting, now)
        ));
    }
    if !s(pod, "status.reason").is_empty() {
        w.write(&format!("Reason:\t{}\n", s(pod, "status.reason")));
    }
    if !s(pod, "status.message").is_empty() {
        w.write(&format!("Message:\t{}\n", s(pod, "status.message")));
    }
    w.write(&format!("IP:\t{}\n", s(pod, "status.podIP")));
    let ips = arr(pod, "status.podIPs");
    if ips.is_empty() {
        w.write("IPs:\t<none>\n");
    } else {
        w.write("IPs:\n");
        for ip in ips {
            w.write(&format!("  IP:\t{}\n", s(ip, "ip")));
        }
    }
    write_controlled_by(&mut w, pod);
    let statuses = arr(pod, "status.containerStatuses");
    write_containers(
        &mut w,
        0,
        "Init Containers",
        arr(pod, "spec.initContainers"),
        Some(arr(pod, "status.initContainerStatuses")),
    );
    write_containers(
        &mut w,
        0,
        "Containers",
        arr(pod, "spec.containers"),
        Some(statuses),
    );
    let conditions = arr(pod, "status.conditions");
    if !conditions.is_empty() {
        w.write("Conditions:\n");
        w.write("  Type\tStatus\n");
        for c in conditions {
            w.write(&format!("  {}\t{}\n", s(c, "type"), s(c, "status")));
        }
    }
    write_volumes(&mut w, 0, pod.get("spec").unwrap_or(&Value::Null));
    w.write(&format!("QoS Class:\t{}\n", qos_class(pod)));
    let selectors: Vec<String> = string_map(pod, "spec.nodeSelector")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    w.write(&format!(
        "Node-Selectors:\t{}\n",
        or_none(&selectors.join(","))
    ));
    let tolerations: Vec<String> = arr(pod, "spec.tolerations")
        .iter()
        .map(|t| {
            let mut text = s(t, "key").to_string();
            if !s(t, "value").is_empty() {
                text.push_str(&format!("={}", s(t, "value")));
            }
            if !s(t, "effect").is_empty() {
                text.push_str(&format!(":{}", s(t, "effect")));
            }
            if let Some(secs) = get(t, "tolerationSeconds").and_then(Value::as_i64) {
                text.push_str(&format!(" for {secs}s"));
            }
            if text.is_empty() {
                "op=Exists".to_string()
            } else {
                text
            }
        })
        .collect();
    for (i, t) in tolerations.iter().enumerate() {
        w.write(&format!(
            "{}\t{t}\n",
            if i == 0 { "Tolerations:" } else { "" }
        ));
    }
    if tolerations.is_empty() {
        w.write("Tolerations:\t<none>\n");
    }
    write_events(&mut w, events, now);
    w.finish()
}

/// A label selector (`matchLabels` and `matchExpressions`, or an RC's map)
/// as text.
fn selector_of(obj: &Value) -> String {
    let Some(sel) = get(obj, "spec.selector") else {
        return String::new();
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
    for e in arr(sel, "matchExpressions") {
        let values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
        let key = s(e, "key");
        parts.push(match s(e, "operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn write_pod_template(w: &mut TabWriter, template: &Value) {
    w.write("Pod Template:\n");
    write_labels(w, 1, "Labels", &string_map(template, "metadata.labels"));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    write_containers(w, 1, "Containers", arr(spec, "containers"), None);
    write_volumes(w, 1, spec);
}

/// `describe deployment`.
pub fn deployment_text(d: &Value, events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(d, "name")));
    w.write(&format!("Namespace:\t{}\n", meta_str(d, "namespace")));
    w.write(&format!(
        "CreationTimestamp:\t{}\n",
        rfc1123z(meta_str(d, "creationTimestamp"))
    ));
    write_labels(&mut w, 0, "Labels", &string_map(d, "metadata.labels"));
    write_annotations(&mut w, 0, d);
    w.write(&format!("Selector:\t{}\n", selector_of(d)));
    let desired = get(d, "spec.replicas").and_then(Value::as_i64).unwrap_or(1);
    w.write(&format!(
        "Replicas:\t{desired} desired | {} updated | {} total | {} available | {} unavailable\n",
        int(d, "status.updatedReplicas"),
        int(d, "status.replicas"),
        int(d, "status.availableReplicas"),
        int(d, "status.unavailableReplicas")
    ));
    let strategy = or_default(s(d, "spec.strategy.type"), "RollingUpdate");
    w.write(&format!("StrategyType:\t{strategy}\n"));
    w.write(&format!(
        "MinReadySeconds:\t{}\n",
        int(d, "spec.minReadySeconds")
    ));
    if strategy == "RollingUpdate" {
        let text = |path: &str| match get(d, path) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "25%".to_string(),
        };
        w.write(&format!(
            "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
            text("spec.strategy.rollingUpdate.maxUnavailable"),
            text("spec.strategy.rollingUpdate.maxSurge")
        ));
    }
    write_pod_template(&mut w, get(d, "spec.template").unwrap_or(&Value::Null));
    write_object_conditions(&mut w, d);
    write_events(&mut w, events, now);
    w.finish()
}

fn write_object_conditions(w: &mut TabWriter, obj: &Value) {
    let conditions = arr(obj, "status.conditions");
    if conditions.is_empty() {
        return;
    }
    w.write("Conditions:\n");
    w.write("  Type\tStatus\tReason\n");
    w.write("  ----\t------\t------\n");
    for c in conditions {
        w.write(&format!(
            "  {}\t{}\t{}\n",
            s(c, "type"),
            s(c, "status"),
            s(c, "reason")
        ));
    }
}

/// `describe replicaset` and `describe replicationcontroller`.
pub fn replicas_text(obj: &Value, pods: &[Value], events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(obj, "name")));
    w.write(&format!("Namespace:\t{}\n", meta_str(obj, "namespace")));
    w.write(&format!("Selector:\t{}\n", selector_of(obj)));
    write_labels(&mut w, 0, "Labels", &string_map(obj, "metadata.labels"));
    write_annotations(&mut w, 0, obj);
    write_controlled_by(&mut w, obj);
    let desired = get(obj, "spec.replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    w.write(&format!(
        "Replicas:\t{} current / {desired} desired\n",
        int(obj, "status.replicas")
    ));
    let phase_count = |phase: &str| {
        pods.iter()
            .filter(|p| s(p, "status.phase") == phase)
            .count()
    };
    w.write(&format!(
        "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed\n",
        phase_count("Running"),
        phase_count("Pending"),
        phase_count("Succeeded"),
        phase_count("Failed")
    ));
    write_pod_template(&mut w, get(obj, "spec.template").unwrap_or(&Value::Null));
    write_object_conditions(&mut w, obj);
    write_events(&mut w, events, now);
    w.finish()
}

/// `describe service`.
pub fn service_text(svc: &Value, endpoints: Option<&Value>, events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(svc, "name")));
    w.write(&format!("Namespace:\t{}\n", meta_str(svc, "namespace")));
    write_labels(&mut w, 0, "Labels", &string_map(svc, "metadata.labels"));
    write_annotations(&mut w, 0, svc);
    let selector: Vec<String> = string_map(svc, "spec.selector")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    w.write(&format!("Selector:\t{}\n", selector.join(",")));
    w.write(&format!(
        "Type:\t{}\n",
        or_default(s(svc, "spec.type"), "ClusterIP")
    ));
    w.write(&format!("IP:\t{}\n", or_none(s(svc, "spec.clusterIP"))));
    // The ready addresses with the port of the service port named `name`
    // (kubectl's per-port Endpoints line).
    let addresses = |port_name: &str| -> Vec<String> {
        endpoints
            .map(|ep| {
                arr(ep, "subsets")
                    .iter()
                    .flat_map(|subset| {
                        let ports: Vec<i64> = arr(subset, "ports")
                            .iter()
                            .filter(|p| s(p, "name") == port_name)
                            .map(|p| int(p, "port"))
                            .collect();
                        arr(subset, "addresses")
                            .iter()
                            .flat_map(move |a| {
                                let ip = s(a, "ip").to_string();
                                ports.clone().into_iter().map(move |p| format!("{ip}:{p}"))
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for p in arr(svc, "spec.ports") {
        let name = or_default(s(p, "name"), "<unset>");
        let protocol = or_default(s(p, "protocol"), "TCP");
        w.write(&format!("Port:\t{name}  {}/{protocol}\n", int(p, "port")));
        let target = match p.get("targetPort") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => int(p, "port").to_string(),
        };
        w.write(&format!("TargetPort:\t{target}/{protocol}\n"));
        if int(p, "nodePort") != 0 {
            w.write(&format!(
                "NodePort:\t{name}  {}/{protocol}\n",
                int(p, "nodePort")
            ));
        }
        w.write(&format!(
            "Endpoints:\t{}\n",
            or_none(&addresses(s(p, "name")).join(","))
        ));
    }
    w.write(&format!(
        "Session Affinity:\t{}\n",
        or_default(s(svc, "spec.sessionAffinity"), "None")
    ));
    write_events(&mut w, events, now);
    w.finish()
}

/// `describe namespace`.
pub fn namespace_text(ns: &Value) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(ns, "name")));
    write_labels(&mut w, 0, "Labels", &string_map(ns, "metadata.labels"));
    write_annotations(&mut w, 0, ns);
    w.write(&format!(
        "Status:\t{}\n",
        or_default(s(ns, "status.phase"), "Active")
    ));
    w.write("\nNo resource quota.\n\nNo LimitRange resource.\n");
    w.finish()
}

/// `describe endpoints`.
pub fn endpoints_text(ep: &Value, events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(ep, "name")));
    w.write(&format!("Namespace:\t{}\n", meta_str(ep, "namespace")));
    write_labels(&mut w, 0, "Labels", &string_map(ep, "metadata.labels"));
    write_annotations(&mut w, 0, ep);
    w.write("Subsets:\n");
    for subset in arr(ep, "subsets") {
        let ips = |field: &str| {
            let list: Vec<&str> = arr(subset, field).iter().map(|a| s(a, "ip")).collect();
            or_none(&list.join(",")).to_string()
        };
        w.write(&format!("  Addresses:\t{}\n", ips("addresses")));
        w.write(&format!(
            "  NotReadyAddresses:\t{}\n",
            ips("notReadyAddresses")
        ));
        w.write("  Ports:\n");
        w.write("    Name\tPort\tProtocol\n");
        w.write("    ----\t----\t--------\n");
        for p in arr(subset, "ports") {
            w.write(&format!(
                "    {}\t{}\t{}\n",
                or_default(s(p, "name"), "<unset>"),
                int(p, "port"),
                or_default(s(p, "protocol"), "TCP")
            ));
        }
    }
    w.write("\n");
    write_events(&mut w, events, now);
    w.finish()
}

/// Any other kind: its metadata, then its other fields as YAML.
pub fn generic_text(obj: &Value, events: &[Value], now: i64) -> String {
    let mut w = TabWriter::new(2);
    w.write(&format!("Name:\t{}\n", meta_str(obj, "name")));
    if !meta_str(obj, "namespace").is_empty() {
        w.write(&format!("Namespace:\t{}\n", meta_str(obj, "namespace")));
    }
    write_labels(&mut w, 0, "Labels", &string_map(obj, "metadata.labels"));
    write_annotations(&mut w, 0, obj);
    w.write(&format!(
        "API Version:\t{}\n",
        obj.get("apiVersion").and_then(Value::as_str).unwrap_or("")
    ));
    w.write(&format!(
        "Kind:\t{}\n",
        obj.get("kind").and_then(Value::as_str).unwrap_or("")
    ));
    let mut rest = obj.as_object().cloned().unwrap_or_default();
    for f in ["apiVersion", "kind", "metadata"] {
        rest.remove(f);
    }
    let mut text = w.finish();
    if !rest.is_empty()
        && let Ok(yaml) = serde_saphyr::to_string(&Value::Object(rest))
    {
        text.push_str(&yaml);
    }
    let mut w = TabWriter::new(2);
    write_events(&mut w, events, now);
    text.push_str(&w.finish());
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_733_133_600; // Mon, 02 Dec 2024 10:00:00 +0000

    fn ts(secs_ago: i64) -> String {
        skiff_model::Time::from_unix(NOW - secs_ago).to_string()
    }

    #[test]
    fn times_as_go_rfc1123z() {
        assert_eq!(rfc1123z(&ts(0)), "Mon, 02 Dec 2024 10:00:00 +0000");
        assert_eq!(
            rfc1123z("1970-01-01T00:00:00Z"),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(
            rfc1123z("2000-02-29T23:59:59Z"),
            "Tue, 29 Feb 2000 23:59:59 +0000"
        );
        assert_eq!(rfc1123z("not a time"), "not a time");
    }

    fn node() -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "uid": "u1", "creationTimestamp": ts(600),
                         "labels": {"kubernetes.io/hostname": "node-1", "node-role.kubernetes.io/worker": ""}},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady",
                                "message": "skiff-agent is posting ready status",
                                "lastHeartbeatTime": ts(10), "lastTransitionTime": ts(600)}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": "node-1"}],
                "nodeInfo": {"machineID": "m1", "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12",
                             "operatingSystem": "linux", "architecture": "amd64",
                             "containerRuntimeVersion": "docker://24.0.7", "kubeletVersion": "v0.1.0"}}})
    }

    fn pod(name: &str, cpu: &str, mem: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts(120),
                         "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                              "uid": "r1", "controller": true}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "busybox",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "test"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": mem}}}],
                "volumes": [{"name": "data", "emptyDir": {}}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.5",
                       "podIPs": [{"ip": "10.1.0.5"}], "startTime": ts(100),
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "image": "busybox",
                           "imageID": "", "containerID": "docker://abc",
                           "state": {"running": {"startedAt": ts(50)}},
                           "lastState": {"terminated": {"exitCode": 137, "reason": "Error",
                                          "startedAt": ts(90), "finishedAt": ts(60)}}}]}})
    }

    fn event(reason: &str, message: &str, secs_ago: i64, count: i64) -> Value {
        json!({"type": "Normal", "reason": reason, "message": message, "count": count,
               "source": {"component": "skiff-agent", "host": "node-1"},
               "firstTimestamp": ts(secs_ago * 2), "lastTimestamp": ts(secs_ago)})
    }

    #[test]
    fn node_description() {
        let pods = [pod("web-1", "250m", "64Mi"), pod("web-2", "500m", "128Mi")];
        let text = node_text(
            &node(),
            &pods,
            &[event(
                "NodeReady",
                "Node node-1 status is now: NodeReady",
                60,
                1,
            )],
            NOW,
        );
        let expected_start = "\
Name:               node-1
Roles:              worker
Labels:             kubernetes.io/hostname=node-1
                    node-role.kubernetes.io/worker=
Annotations:        <none>
CreationTimestamp:  Mon, 02 Dec 2024 09:50:00 +0000
Taints:             dedicated=db:NoSchedule
Unschedulable:      false
Conditions:
  Type   Status  LastHeartbeatTime                LastTransitionTime               Reason      Message
  ----   ------  -----------------                ------------------               ------      -------
  Ready  True    Mon, 02 Dec 2024 09:59:50 +0000  Mon, 02 Dec 2024 09:50:00 +0000  AgentReady  skiff-agent is posting ready status
Addresses:
  InternalIP:  10.0.0.1
  Hostname:    node-1
Capacity:
  cpu:     4
  memory:  8Gi
  pods:    110
Allocatable:
  cpu:     4
  memory:  8Gi
  pods:    110
System Info:
  Machine ID:                 m1
";
        assert!(text.starts_with(expected_start), "{text}");
        for line in [
            "  Kernel Version:             6.1.0\n",
            "  Container Runtime Version:  docker://24.0.7\n",
            "Non-terminated Pods:          (2 in total)\n",
            "  Namespace                   Name   CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age\n",
            "  default                     web-1  250m (6%)     0 (0%)      64Mi (0%)        64Mi (0%)      2m\n",
            "  Resource  Requests    Limits\n",
            "  cpu       750m (18%)  0 (0%)\n",
            "  memory    192Mi (2%)  192Mi (2%)\n",
            "  Normal  NodeReady  60s   skiff-agent, node-1  Node node-1 status is now: NodeReady\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn pod_description() {
        let text = pod_text(
            &pod("web-1", "250m", "64Mi"),
            &[event("Started", "Started container app", 30, 3)],
            NOW,
        );
        for line in [
            "Name:             web-1\n",
            "Namespace:        default\n",
            "Node:             node-1/10.0.0.1\n",
            "Start Time:       Mon, 02 Dec 2024 09:58:20 +0000\n",
            "Labels:           app=web\n",
            "Status:           Running\n",
            "IP:               10.1.0.5\n",
            "Controlled By:  ReplicaSet/web-abc\n",
            "Containers:\n  app:\n",
            "    Image:          busybox\n",
            "    Port:           80/TCP\n",
            "    State:          Running\n",
            "    Last State:     Terminated\n",
            "      Reason:       Error\n",
            "      Exit Code:    137\n",
            "    Ready:          True\n",
            "    Restart Count:  2\n",
            "    Limits:\n      memory:  64Mi\n",
            "    Requests:\n      cpu:     250m\n      memory:  64Mi\n",
            "      MODE:  test\n",
            "      /data from data (rw)\n",
            "  Ready  True\n",
            "    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)\n",
            "    SizeLimit:   <unset>\nQoS Class:       Burstable\n",
            "  Normal  Started  30s (x3 over 60s)  skiff-agent, node-1  Started container app\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn other_kinds() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": ts(5)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "busybox"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1}});
        let text = deployment_text(&d, &[], NOW);
        assert!(text.contains("Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable\n"), "{text}");
        assert!(
            text.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge\n"),
            "{text}"
        );
        assert!(text.contains("Pod Template:\n  Labels:  app=web\n  Containers:\n    app:\n      Image:        busybox\n"), "{text}");
        assert!(
            text.ends_with("  Volumes:          <none>\nEvents:             <none>\n"),
            "{text}"
        );

        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}});
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 31000}]},
            {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "http", "port": 31001}]},
            {"notReadyAddresses": [{"ip": "10.0.0.3"}], "ports": [{"name": "http", "port": 31002}]}]});
        let text = service_text(&svc, Some(&ep), &[], NOW);
        for line in [
            "Selector:          app=web\n",
            "Port:              http  80/TCP\n",
            "TargetPort:        8080/TCP\n",
            "NodePort:          http  30080/TCP\n",
            "Endpoints:         10.0.0.1:31000,10.0.0.2:31001\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let ns = json!({"metadata": {"name": "prod"}, "status": {"phase": "Active"}});
        assert_eq!(
            namespace_text(&ns),
            "Name:         prod\nLabels:       <none>\nAnnotations:  <none>\nStatus:       Active\n\nNo resource quota.\n\nNo LimitRange resource.\n"
        );
        let rc = json!({"metadata": {"name": "r", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"app": "r"}, "template": {"metadata": {"labels": {"app": "r"}}}},
            "status": {"replicas": 1}});
        let text = replicas_text(&rc, &[pod("r-1", "1", "1Gi")], &[], NOW);
        assert!(
            text.contains("Replicas:     1 current / 2 desired\n"),
            "{text}"
        );
        assert!(
            text.contains("Pods Status:  1 Running / 0 Waiting / 0 Succeeded / 0 Failed\n"),
            "{text}"
        );
    }

    #[test]
    fn quantities_and_qos() {
        let p = pod("a", "250m", "64Mi");
        assert_eq!(pod_resource(&p, "requests", "cpu").to_string(), "250m");
        assert_eq!(pod_resource(&p, "limits", "cpu").to_string(), "0");
        let four = Quantity::parse("4").unwrap();
        assert_eq!(
            with_percent(&Quantity::parse("1").unwrap(), Some(&four)),
            "1 (25%)"
        );
        assert_eq!(with_percent(&Quantity::parse("1").unwrap(), None), "1 (0%)");
        assert_eq!(qos_class(&p), "Burstable");
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{"name": "a"}]}})),
            "BestEffort"
        );
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
    }
}
