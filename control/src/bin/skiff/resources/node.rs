//! `skiff cordon NODE`, `skiff uncordon NODE` and `skiff drain NODE`, as
//! kubectl's.
//!
//! `drain` cordons the node, then deletes the pods bound to it so that
//! their controllers create replacements elsewhere, and waits (up to
//! `--timeout`) until they are gone. A pod with no controller would not
//! come back, so drain refuses the node unless `--force`.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::{CliError, ServerArgs, io_error};

#[derive(Debug, Args)]
pub struct CordonArgs {
    /// The node.
    #[arg(value_name = "NODE")]
    pub node: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node.
    #[arg(value_name = "NODE")]
    pub node: String,
    /// Also delete pods that no controller will recreate.
    #[arg(long)]
    pub force: bool,
    /// Seconds each pod gets to stop (default: the pod's own).
    #[arg(long, value_name = "SECONDS")]
    pub grace_period: Option<i64>,
    /// How long to wait for the pods to be gone.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn node_path(node: &str) -> String {
    format!("/api/v1/nodes/{node}")
}

/// Sets `spec.unschedulable`; prints kubectl's line.
async fn set_unschedulable(
    server: &ServerArgs,
    node: &str,
    unschedulable: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let client = server.client()?;
    let current = client.get(&node_path(node)).await?;
    let now = current["spec"]["unschedulable"].as_bool().unwrap_or(false);
    let verb = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    if now == unschedulable {
        return writeln!(out, "node/{node} already {verb}").map_err(io_error);
    }
    let body = serde_json::to_vec(&json!({"spec": {"unschedulable": unschedulable}}))
        .expect("JSON serializes");
    client
        .patch(&node_path(node), "application/merge-patch+json", body)
        .await?;
    writeln!(out, "node/{node} {verb}").map_err(io_error)
}

pub async fn cordon(args: CordonArgs, out: &mut dyn Write) -> Result<(), CliError> {
    set_unschedulable(&args.server, &args.node, true, out).await
}

pub async fn uncordon(args: CordonArgs, out: &mut dyn Write) -> Result<(), CliError> {
    set_unschedulable(&args.server, &args.node, false, out).await
}

fn pod_name(p: &Value) -> (String, String) {
    (
        p["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        p["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// Pause between checks of whether the drained pods are gone.
const DRAIN_POLL: Duration = Duration::from_millis(500);

pub async fn drain(args: DrainArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let node = &args.node;
    set_unschedulable(&args.server, node, true, out).await?;
    let client = args.server.client()?;
    let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}");
    let list = client.get(&path).await?;
    let pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    let unmanaged: Vec<String> = pods
        .iter()
        .filter(|p| {
            !p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["controller"] == true))
        })
        .map(|p| {
            let (ns, name) = pod_name(p);
            format!("{ns}/{name}")
        })
        .collect();
    if !unmanaged.is_empty() && !args.force {
        return Err(CliError::Local(format!(
            "unable to drain node {node:?} due to error: cannot delete Pods that declare no controller (use --force to override): {}",
            unmanaged.join(", ")
        )));
    }
    if !unmanaged.is_empty() {
        writeln!(
            out,
            "Warning: deleting Pods that declare no controller: {}",
            unmanaged.join(", ")
        )
        .map_err(io_error)?;
    }
    let mut options = json!({"apiVersion": "v1", "kind": "DeleteOptions"});
    if let Some(g) = args.grace_period {
        options["gracePeriodSeconds"] = g.into();
    }
    for p in &pods {
        let (ns, name) = pod_name(p);
        match client
            .delete(&format!("/api/v1/namespaces/{ns}/pods/{name}"), &options)
            .await
        {
            Ok(_) => writeln!(out, "pod/{name} evicted").map_err(io_error)?,
            Err(CliError::Server { reason, .. }) if reason == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let left = client.get(&path).await?;
        let uids: Vec<&Value> = pods.iter().map(|p| &p["metadata"]["uid"]).collect();
        let remaining = left["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|p| uids.contains(&&p["metadata"]["uid"]))
                .count()
        });
        if remaining == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Local(format!(
                "drain did not complete within {}s: {remaining} pods are still on node {node:?}",
                args.timeout
            )));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    writeln!(out, "node/{node} drained").map_err(io_error)
}
