//! `skiff member list|add|remove|update|promote`, `skiff endpoint
//! status|health|hashkv`.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::future::join_all;
use skiff_client::{Client, ClientError, ClientOptions};
use skiff_proto::etcdserverpb::RangeRequest;

use crate::output::{self, EndpointHealth, EndpointStatus, OutputFormat};
use crate::{duration, maintenance};

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List the members of the cluster.
    List,
    /// Add a member; then start it with --initial-cluster-state existing
    /// (the lines printed are its settings).
    Add {
        /// The new member's name (its --name).
        name: String,
        /// Its peer URLs, comma separated.
        #[arg(long = "peer-urls", value_delimiter = ',', required = true)]
        peer_urls: Vec<String>,
        /// Add it as a learner: it receives the log but does not vote.
        #[arg(long)]
        learner: bool,
    },
    /// Remove the member with this ID (hex).
    Remove {
        #[arg(value_name = "ID", value_parser = crate::maintenance::parse_member_id)]
        id: u64,
    },
    /// Change the peer URLs of the member with this ID (hex).
    Update {
        #[arg(value_name = "ID", value_parser = crate::maintenance::parse_member_id)]
        id: u64,
        /// Its new peer URLs, comma separated.
        #[arg(long = "peer-urls", value_delimiter = ',', required = true)]
        peer_urls: Vec<String>,
    },
    /// Make the learner with this ID (hex) a voting member.
    Promote {
        #[arg(value_name = "ID", value_parser = crate::maintenance::parse_member_id)]
        id: u64,
    },
}

#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// Use every client URL of the cluster's member list as the endpoints.
    #[arg(long, global = true)]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Print the status of each endpoint (Maintenance.Status).
    Status,
    /// Check each endpoint with a linearizable read of the key "health".
    Health,
    /// Print the hash of each endpoint's keyspace (Maintenance.HashKV).
    #[command(name = "hashkv")]
    HashKv(maintenance::HashKvArgs),
}

pub async fn member(
    client: &Client,
    format: OutputFormat,
    command: MemberCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        MemberCommand::List => {
            let resp = client.member_list().await?;
            output::write_member_list(out, format, &resp)?;
        }
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => {
            let resp = client.member_add(peer_urls, learner).await?;
            output::write_member_added(out, format, &name, &resp)?;
        }
        MemberCommand::Remove { id } => {
            let resp = client.member_remove(id).await?;
            let cluster = resp.header.as_ref().map_or(0, |h| h.cluster_id);
            output::write_member_changed(out, format, "removed from", id, cluster, &resp.members)?;
        }
        MemberCommand::Update { id, peer_urls } => {
            let resp = client.member_update(id, peer_urls).await?;
            let cluster = resp.header.as_ref().map_or(0, |h| h.cluster_id);
            output::write_member_changed(out, format, "updated in", id, cluster, &resp.members)?;
        }
        MemberCommand::Promote { id } => {
            let resp = client.member_promote(id).await?;
            let cluster = resp.header.as_ref().map_or(0, |h| h.cluster_id);
            output::write_member_changed(out, format, "promoted in", id, cluster, &resp.members)?;
        }
    }
    Ok(())
}

/// Runs an endpoint command; `Ok(false)` when some endpoint failed (its
/// error is already on stderr).
pub async fn endpoint(
    client: &Client,
    options: &ClientOptions,
    format: OutputFormat,
    args: EndpointArgs,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let endpoints = target_endpoints(client, args.cluster).await?;
    match args.command {
        EndpointCommand::Status => status(client, format, &endpoints, out).await,
        EndpointCommand::Health => health(options, format, &endpoints, out).await,
        EndpointCommand::HashKv(a) => {
            maintenance::hash_kv(client, format, &endpoints, &a, out).await
        }
    }
}

/// The endpoints a per-member command goes to: with `--cluster` every
/// member's client URLs, else the client's endpoints.
pub async fn target_endpoints(client: &Client, cluster: bool) -> anyhow::Result<Vec<String>> {
    if cluster {
        endpoints_from_cluster(client).await
    } else {
        Ok(client.endpoints().iter().map(|e| e.to_string()).collect())
    }
}

/// Every member's client URLs, in member-list order.
async fn endpoints_from_cluster(client: &Client) -> anyhow::Result<Vec<String>> {
    let resp = client
        .member_list()
        .await
        .context("failed to fetch endpoints from the cluster member list")?;
    let endpoints: Vec<String> = resp
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect();
    if endpoints.is_empty() {
        bail!("the cluster member list has no client URLs");
    }
    Ok(endpoints)
}

async fn status(
    client: &Client,
    format: OutputFormat,
    endpoints: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let (answers, all_ok) = ask_each(endpoints, "status", |ep| client.status(ep)).await;
    let list: Vec<EndpointStatus> = answers
        .into_iter()
        .map(|(endpoint, status)| EndpointStatus { endpoint, status })
        .collect();
    output::write_endpoint_status(out, format, &list)?;
    Ok(all_ok)
}

/// Asks every endpoint at once. Returns the answers in endpoint order and
/// whether every endpoint answered; each failure is on stderr, as etcdctl
/// words it: "Failed to get the WHAT of endpoint EP (reason)".
pub async fn ask_each<'a, T, Fut>(
    endpoints: &'a [String],
    what: &str,
    ask: impl Fn(&'a str) -> Fut,
) -> (Vec<(String, T)>, bool)
where
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let answers = join_all(endpoints.iter().map(|ep| ask(ep))).await;
    let mut list = Vec::new();
    let mut all_ok = true;
    for (endpoint, answer) in endpoints.iter().zip(answers) {
        match answer {
            Ok(value) => list.push((endpoint.clone(), value)),
            Err(e) => {
                all_ok = false;
                eprintln!(
                    "Failed to get the {what} of endpoint {endpoint} ({})",
                    endpoint_error(endpoint, &e)
                );
            }
        }
    }
    (list, all_ok)
}

async fn health(
    options: &ClientOptions,
    format: OutputFormat,
    endpoints: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let checks = join_all(endpoints.iter().map(|ep| check_health(ep, options))).await;
    let all_ok = checks.iter().all(|h| h.healthy);
    if format == OutputFormat::Simple {
        // As etcdctl: healthy endpoints are a result, unhealthy ones an error.
        for h in &checks {
            if h.healthy {
                writeln!(out, "{}", output::health_line(h))?;
            } else {
                eprintln!("{}", output::health_line(h));
            }
        }
    } else {
        output::write_endpoint_health(out, format, &checks)?;
    }
    Ok(all_ok)
}

/// A linearizable Range of the key "health" against exactly this endpoint;
/// "permission denied" still proves the request went through consensus.
async fn check_health(endpoint: &str, options: &ClientOptions) -> EndpointHealth {
    let start = Instant::now();
    let result = match Client::connect(&[endpoint.to_string()], options.clone()).await {
        Ok(client) => client
            .range(RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    let took = duration::format_go(start.elapsed());
    let error = match result {
        Ok(()) => None,
        Err(ClientError::Status(s)) if s.code() == tonic::Code::PermissionDenied => None,
        Err(e) => Some(endpoint_error(endpoint, &e)),
    };
    EndpointHealth {
        endpoint: endpoint.to_string(),
        healthy: error.is_none(),
        took,
        error,
    }
}

/// An error of a call to exactly one endpoint: for an unreachable endpoint
/// just the reason (`connection refused`), since the endpoint is named
/// already.
pub fn endpoint_error(endpoint: &str, err: &ClientError) -> String {
    match err {
        ClientError::Unavailable { message, .. } => message
            .strip_prefix(endpoint)
            .and_then(|rest| rest.strip_prefix(": "))
            .unwrap_or(message)
            .to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_errors_are_short() {
        let e = ClientError::Unavailable {
            endpoint: "127.0.0.1:2379".into(),
            message: "127.0.0.1:2379: connection refused".into(),
        };
        assert_eq!(endpoint_error("127.0.0.1:2379", &e), "connection refused");
        let e = ClientError::Status(tonic::Status::unavailable("etcdserver: no leader"));
        assert_eq!(
            endpoint_error("127.0.0.1:2379", &e),
            "etcdserver: no leader"
        );
        assert_eq!(
            endpoint_error("127.0.0.1:2379", &ClientError::Timeout),
            "context deadline exceeded"
        );
    }
}
