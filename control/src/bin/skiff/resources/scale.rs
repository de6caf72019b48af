//! `skiff scale KIND NAME --replicas N`: a merge patch of the `scale`
//! subresource; prints kubectl's `deployment.apps/web scaled`.

use std::io::Write;

use clap::Args;
use serde_json::json;
use skiff_control::api::discovery::has_scale;

use super::{CliError, ServerArgs, io_error, object_ref, parse_targets};

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// KIND NAME, or KIND/NAME (deployments, replica sets, replication
    /// controllers).
    #[arg(value_name = "KIND", required = true)]
    pub targets: Vec<String>,
    /// The new number of replicas.
    #[arg(long, value_name = "N", required = true)]
    pub replicas: u32,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn scale(args: ScaleArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let pairs = parse_targets(&args.targets)?.pairs();
    if pairs.is_empty() {
        return Err(CliError::Local(
            "resource(s) were provided, but no name was specified".to_string(),
        ));
    }
    if let Some((r, _)) = pairs.iter().find(|(r, _)| !has_scale(r.kind)) {
        return Err(CliError::Local(format!(
            "{} cannot be scaled; only deployments, replica sets and replication controllers can",
            r.plural
        )));
    }
    let client = args.server.client()?;
    let ns = args.server.namespace();
    let body = serde_json::to_vec(&json!({"spec": {"replicas": args.replicas}}))
        .expect("JSON values serialize");
    for (r, name) in pairs {
        let path = format!("{}/scale", r.object_path(ns, &name));
        client
            .patch(&path, "application/merge-patch+json", body.clone())
            .await?;
        writeln!(out, "{} scaled", object_ref(r, &name)).map_err(io_error)?;
    }
    Ok(())
}
