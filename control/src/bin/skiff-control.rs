//! `skiff-control`: the API server (and, later, the scheduler and the
//! controllers). Stateless: it keeps everything in the store given by
//! `--store`.
//!
//! SIGTERM or SIGINT stop it cleanly: the listener closes, open watches end,
//! requests in flight finish.

use std::io::IsTerminal as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use skiff_client::{Client, ClientOptions};
use skiff_control::api::{self, ApiServer};
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
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args.log_format);
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
    tracing::info!(listen = %listener.local_addr()?, store = ?args.store, "serving the API");
    api::serve(listener, ApiServer::new(client, shutdown))
        .await
        .context("serve the API")?;
    tracing::info!("stopped");
    Ok(())
}
