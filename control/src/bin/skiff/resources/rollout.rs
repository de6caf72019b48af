//! `skiff rollout status|history|undo deploy/NAME`, as kubectl's.
//!
//! - `status` follows the Deployment (re-reading it at each change, with a
//!   deadline from `--timeout`) and prints kubectl's progress lines until
//!   the rollout is complete (exit 0) or its progress deadline passed
//!   (exit 1).
//! - `history` lists the revisions of the Deployment's ReplicaSets.
//! - `undo` puts the template of the previous revision (or
//!   `--to-revision`) back into the Deployment.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use skiff_control::controllers::deployment::{HASH_LABEL, REVISION, without_hash};

use super::{CliError, ServerArgs, io_error, parse_targets};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait for a rollout to finish: skiff rollout status deploy/NAME
    Status(RolloutArgs),
    /// List a deployment's revisions: skiff rollout history deploy/NAME
    History(RolloutArgs),
    /// Go back to the previous revision (or --to-revision): skiff rollout undo deploy/NAME
    Undo(RolloutArgs),
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// deploy/NAME, or deploy NAME.
    #[arg(value_name = "KIND", required = true)]
    pub targets: Vec<String>,
    /// `undo`: the revision to go back to (0: the previous one).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    /// `status`: how long to wait before giving up (0: no limit).
    #[arg(long, default_value = "0s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What `rollout status` says of a Deployment: `Ok(None)` while it goes
/// on (with the line to print), `Ok(Some(line))` when done, `Err` past
/// the progress deadline. kubectl's words.
pub fn status_line(d: &Value) -> Result<(String, bool), String> {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let status = &d["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation {
        return Ok((
            "Waiting for deployment spec update to be observed...".to_string(),
            false,
        ));
    }
    if let Some(c) = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        return Err(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let int = |f: &str| status[f].as_i64().unwrap_or(0);
    let (updated, replicas, available) = (
        int("updatedReplicas"),
        int("replicas"),
        int("availableReplicas"),
    );
    let line = if updated < want {
        format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
        )
    } else if replicas > updated {
        format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        )
    } else if available < updated {
        format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        )
    } else {
        return Ok((format!("deployment {name:?} successfully rolled out"), true));
    };
    Ok((line, false))
}

fn deployment_name(targets: &[String]) -> Result<String, CliError> {
    let pairs = parse_targets(targets)?.pairs();
    match pairs.as_slice() {
        [(r, name)] if r.kind == "Deployment" => Ok(name.clone()),
        [(r, _)] => Err(CliError::Local(format!(
            "no rollout for {}: only deployments roll out",
            r.plural
        ))),
        _ => Err(CliError::Local(
            "one deployment is required: deploy/NAME".to_string(),
        )),
    }
}

pub async fn rollout(command: RolloutCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        RolloutCommand::Status(args) => status(args, out).await,
        RolloutCommand::History(args) => history(args, out).await,
        RolloutCommand::Undo(args) => undo(args, out).await,
    }
}

fn deployment_path(ns: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}")
}

/// Polls between reads of a rollout in progress.
const STATUS_POLL: Duration = Duration::from_millis(500);

async fn status(args: RolloutArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let name = deployment_name(&args.targets)?;
    let client = args.server.client()?;
    let path = deployment_path(args.server.namespace(), &name);
    let deadline = (!args.timeout.is_zero()).then(|| tokio::time::Instant::now() + args.timeout);
    let mut last = String::new();
    loop {
        let d = client.get(&path).await?;
        match status_line(&d) {
            Err(e) => return Err(CliError::Local(e)),
            Ok((line, done)) => {
                if line != last {
                    writeln!(out, "{line}").map_err(io_error)?;
                    out.flush().map_err(io_error)?;
                    last = line;
                }
                if done {
                    return Ok(());
                }
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(CliError::Local(
                "timed out waiting for the condition".to_string(),
            ));
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

/// The Deployment's ReplicaSets, by revision.
async fn revisions(
    client: &super::client::Client,
    ns: &str,
    d: &Value,
) -> Result<Vec<(i64, Value)>, CliError> {
    let uid = d["metadata"]["uid"].as_str().unwrap_or("");
    let list = client
        .get(&format!("/apis/apps/v1/namespaces/{ns}/replicasets"))
        .await?;
    let mut revs: Vec<(i64, Value)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["uid"] == uid && o["controller"] == true))
        })
        .filter_map(|rs| {
            let rev = rs["metadata"]["annotations"][REVISION]
                .as_str()?
                .parse()
                .ok()?;
            Some((rev, rs.clone()))
        })
        .collect();
    revs.sort_by_key(|(r, _)| *r);
    Ok(revs)
}

async fn history(args: RolloutArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let name = deployment_name(&args.targets)?;
    let client = args.server.client()?;
    let ns = args.server.namespace();
    let d = client.get(&deployment_path(ns, &name)).await?;
    let mut text = format!("deployment.apps/{name} \nREVISION  CHANGE-CAUSE\n");
    for (rev, rs) in revisions(&client, ns, &d).await? {
        let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .unwrap_or("<none>");
        text.push_str(&format!("{rev:<10}{cause}\n"));
    }
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(io_error)
}

async fn undo(args: RolloutArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let name = deployment_name(&args.targets)?;
    let client = args.server.client()?;
    let ns = args.server.namespace();
    let path = deployment_path(ns, &name);
    let d = client.get(&path).await?;
    let revs = revisions(&client, ns, &d).await?;
    let current = d["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse::<i64>().ok())
        .unwrap_or(0);
    let target = if args.to_revision > 0 {
        revs.iter()
            .find(|(r, _)| *r == args.to_revision)
            .ok_or_else(|| {
                CliError::Local(format!(
                    "unable to find specified revision {} in history",
                    args.to_revision
                ))
            })?
    } else {
        revs.iter()
            .rev()
            .find(|(r, _)| *r < current)
            .ok_or_else(|| CliError::Local("no rollout history found for deployment".to_string()))?
    };
    let template = without_hash(&target.1["spec"]["template"]);
    if without_hash(&d["spec"]["template"]) == template {
        writeln!(out, "deployment.apps/{name} skipped rollback (current template already matches revision {})", target.0)
            .map_err(io_error)?;
        return Ok(());
    }
    debug_assert!(template["metadata"]["labels"].get(HASH_LABEL).is_none());
    let body =
        serde_json::to_vec(&json!({"spec": {"template": template}})).expect("JSON serializes");
    client
        .patch(&path, "application/merge-patch+json", body)
        .await?;
    writeln!(out, "deployment.apps/{name} rolled back").map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(generation: i64, observed: i64, updated: i64, replicas: i64, available: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3},
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                "replicas": replicas, "availableReplicas": available}})
    }

    #[test]
    fn status_lines_are_kubectls() {
        assert_eq!(
            status_line(&d(2, 1, 0, 0, 0)).unwrap().0,
            "Waiting for deployment spec update to be observed..."
        );
        assert_eq!(
            status_line(&d(2, 2, 1, 4, 3)).unwrap().0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            status_line(&d(2, 2, 3, 4, 3)).unwrap().0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            status_line(&d(2, 2, 3, 3, 2)).unwrap().0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        assert_eq!(
            status_line(&d(2, 2, 3, 3, 3)).unwrap(),
            (
                "deployment \"web\" successfully rolled out".to_string(),
                true
            )
        );
        let mut late = d(2, 2, 1, 3, 2);
        late["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            status_line(&late),
            Err("deployment \"web\" exceeded its progress deadline".to_string())
        );
    }
}
