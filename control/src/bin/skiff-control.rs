//! `skiff-control`: the API server, and the scheduler and the controllers
//! while this instance holds the leadership. Stateless: it keeps everything
//! in the store given by `--store`, so any number of instances may run.
//!
//! SIGTERM or SIGINT stop it cleanly: the listener closes, open watches end,
//! requests in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use skiff_client::{Client, ClientOptions};
use skiff_control::api::{self, ApiServer};
use skiff_control::manager;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// skiff's API server.
#[derive(Debug, Parser)]
#[command(name = "skiff-control", version)]
struct Args {
    /// Store endpoints, comma-separated (`host:port` or `http://host:port`).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    store: Vec<String>,
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Run the scheduler and the controllers while this instance holds the
    /// leadership (`--leader-elect=false` serves the API only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The leader lease TTL (`5s`, `1500ms`): how soon another instance
    /// takes over from a leader that died.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How this instance shows in the election key (default: host name and
    /// process id).
    #[arg(long)]
    identity: Option<String>,
}

/// `5s`, `1500ms` or `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected a number and ms, s or m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("invalid duration {s:?}: the unit is ms, s or m")),
    };
    if d < Duration::from_secs(1) {
        return Err(format!("invalid duration {s:?}: at least 1s"));
    }
    Ok(d)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    skiff_runtime::process::init_tracing(&args.log_format);
    let client = Client::connect(&args.store, ClientOptions::default())
        .await
        .with_context(|| format!("store endpoints {:?}", args.store))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let shutdown = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
            _ = sigint.recv() => tracing::info!(signal = "SIGINT", "stopping"),
        }
        on_signal.cancel();
    });
    let loops = args.leader_elect.then(|| {
        let settings = manager::Settings {
            identity: args
                .identity
                .clone()
                .unwrap_or_else(|| format!("{}-{}", skiff_runtime::process::host_name(), std::process::id())),
            lease_ttl: args.leader_elect_lease_duration,
            ..manager::Settings::default()
        };
        tracing::info!(identity = %settings.identity, lease_ttl = ?settings.lease_ttl, "campaigning for the leadership");
        tokio::spawn(manager::run(client.clone(), settings, shutdown.clone()))
    });
    tracing::info!(listen = %listener.local_addr()?, store = ?args.store, "serving the API");
    api::serve(listener, ApiServer::new(client, shutdown.clone()))
        .await
        .context("serve the API")?;
    if let Some(loops) = loops {
        shutdown.cancel();
        loops.await.context("the control loops")?;
    }
    tracing::info!("stopped");
    Ok(())
}
