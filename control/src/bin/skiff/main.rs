//! `skiff`: the command-line tool.
//!
//! Store commands speak etcd's v3 API through `skiff-client` and print what
//! etcdctl prints: `kv put|get|del|txn|compact|watch`, `lease ...`, `member list`,
//! `endpoint status|health|hashkv`, `defrag`, `alarm list|disarm`,
//! `move-leader`. `up` runs a local store cluster. `bench` is etcd's
//! benchmark tool (put, range, txn-put, watch-latency, lease-keepalive).
//!
//! Resource commands speak to the API server (skiff-control, `--server` or
//! `SKIFF_SERVER`) and print what kubectl prints: `apply`, `create`, `get`,
//! `describe`, `delete`, `scale`, `label`, `api-resources` ([`resources`]).
//!
//! Modules: [`kv`] (key-value commands and their requests), [`txn`] (the txn
//! input grammar), [`watch`] (`kv watch`), [`lease`] (lease commands), [`output`] (simple/json/table printing), [`cluster`]
//! (member and endpoint commands), [`maintenance`] (hashkv, defrag, alarms,
//! move-leader), [`up`] (local cluster), [`duration`] (Go-style durations),
//! [`bench`] (benchmarks of any etcd v3 server).
//!
//! Exit status: 0 on success, 1 on any error (one `Error: ...` line on
//! stderr, the server's text kept intact; resource commands print kubectl's
//! `error: ...` or `Error from server (Reason): ...`), 2 for a command-line
//! usage error.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use skiff_client::{Client, ClientOptions};
use tracing_subscriber::EnvFilter;

mod bench;
mod cluster;
mod duration;
mod kv;
mod lease;
mod maintenance;
mod output;
mod resources;
mod snapshot;
mod txn;
mod up;
mod watch;

use output::OutputFormat;

#[derive(Debug, Parser)]
#[command(name = "skiff", version, about = "skiff's command-line tool", long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Store endpoints (comma separated), as host:port or http://host:port.
    #[arg(
        long,
        global = true,
        env = "SKIFF_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(short = 'w', long = "write-out", global = true, value_enum, default_value_t = OutputFormat::Simple)]
    write_out: OutputFormat,
    /// Time to connect to an endpoint (e.g. 2s, 500ms).
    #[arg(long, global = true, value_name = "DURATION", default_value = "2s", value_parser = duration::parse)]
    dial_timeout: Duration,
    /// Time for a whole request, failover included.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    command_timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Key-value commands: put, get, del, txn, compact.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Lease commands: grant, revoke, keep-alive, timetolive, list.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Cluster membership commands.
    #[command(subcommand)]
    Member(cluster::MemberCommand),
    /// Per-endpoint status, health and keyspace hash.
    Endpoint(cluster::EndpointArgs),
    /// Defragment each endpoint's storage, one after the other.
    Defrag(maintenance::DefragArgs),
    /// Alarm commands: list, disarm.
    #[command(subcommand)]
    Alarm(maintenance::AlarmCommand),
    /// Hand the leadership to another member.
    MoveLeader(maintenance::MoveLeaderArgs),
    /// Run a local store cluster in the foreground (Ctrl-C stops it).
    Up(up::UpArgs),
    /// Snapshots: save (from one endpoint), restore (into a new data dir), status.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Benchmarks of any etcd v3 server, as etcd's benchmark tool runs them.
    Bench(bench::BenchArgs),
    #[command(flatten)]
    Resources(resources::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(resources::rewrite_get_watch(std::env::args_os().collect()));
    init_tracing();
    // A benchmark's clients run on every core; other commands need one.
    let mut builder = if matches!(cli.command, Command::Bench(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = BufWriter::new(io::stdout());
    let result = runtime.block_on(run(cli, &mut out));
    let flushed = out.flush();
    match result.and_then(|code| flushed.map(|()| code).map_err(Into::into)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `SKIFF_LOG` (e.g. `SKIFF_LOG=debug`); off
/// by default; colored only on a terminal.
fn init_tracing() {
    let filter = EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let options = ClientOptions {
        connect_timeout: cli.global.dial_timeout,
        request_timeout: cli.global.command_timeout,
    };
    let format = cli.global.write_out;
    match cli.command {
        Command::Resources(command) => return Ok(resources::run(command, out).await),
        Command::Up(args) => up::run(args).await?,
        Command::Bench(args) => {
            let g = &cli.global;
            bench::run(
                args,
                &g.endpoints,
                g.dial_timeout,
                g.command_timeout,
                format,
                out,
            )
            .await?
        }
        Command::Snapshot(command) => {
            snapshot::run(command, &cli.global.endpoints, options, format, out).await?
        }
        Command::Kv(command) => {
            let client = Client::connect(&cli.global.endpoints, options).await?;
            kv::run(&client, format, command, out).await?;
        }
        Command::Lease(command) => {
            let client = Client::connect(&cli.global.endpoints, options).await?;
            lease::run(&client, command, out).await?;
        }
        Command::Member(command) => {
            let client = Client::connect(&cli.global.endpoints, options).await?;
            cluster::member(&client, format, command, out).await?;
        }
        Command::Endpoint(args) => {
            let health = matches!(args.command, cluster::EndpointCommand::Health);
            let client = Client::connect(&cli.global.endpoints, options.clone()).await?;
            if !cluster::endpoint(&client, &options, format, args, out).await? {
                out.flush()?;
                if health {
                    anyhow::bail!("unhealthy cluster");
                }
                // Each failed endpoint already has its line on stderr.
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Defrag(args) => {
            let client = Client::connect(&cli.global.endpoints, options).await?;
            let endpoints = cluster::target_endpoints(&client, args.cluster).await?;
            if !maintenance::defrag(&client, &endpoints, out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Alarm(command) => {
            let client = Client::connect(&cli.global.endpoints, options).await?;
            maintenance::alarm(&client, format, command, out).await?;
        }
        Command::MoveLeader(args) => {
            let client = Client::connect(&cli.global.endpoints, options).await?;
            maintenance::move_leader(&client, format, &args, out).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = Cli::try_parse_from([
            "skiff",
            "kv",
            "get",
            "k",
            "-w",
            "json",
            "--endpoints",
            "a:1,http://b:2",
            "--command-timeout",
            "500ms",
        ])
        .unwrap();
        assert_eq!(cli.global.write_out, OutputFormat::Json);
        assert_eq!(cli.global.endpoints, ["a:1", "http://b:2"]);
        assert_eq!(cli.global.command_timeout, Duration::from_millis(500));
        assert_eq!(cli.global.dial_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_duration_is_a_usage_error() {
        let err =
            Cli::try_parse_from(["skiff", "--dial-timeout", "2", "kv", "get", "k"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("missing unit"), "{err}");
    }

    #[test]
    fn missing_arguments_are_usage_errors() {
        for args in [
            &["skiff", "kv", "put", "k"][..],
            &["skiff", "kv", "get"],
            &["skiff", "kv", "compact"],
            &["skiff", "member"],
            &["skiff", "alarm"],
            &["skiff", "move-leader"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn endpoint_cluster_flag_before_or_after_the_subcommand() {
        for args in [
            &["skiff", "endpoint", "status", "--cluster"][..],
            &["skiff", "endpoint", "--cluster", "status"],
        ] {
            match Cli::try_parse_from(args).unwrap().command {
                Command::Endpoint(e) => assert!(e.cluster, "{args:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
