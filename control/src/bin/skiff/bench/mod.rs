//! `skiff bench`: etcd's benchmark tool, speaking only etcd's v3 gRPC API so
//! that it measures any etcd-compatible server, etcd itself included.
//!
//! ```text
//! skiff bench [--conns N] [--clients N] [--total N] [--key-size N] [--val-size N]
//!             [--target-leader] [--rate R] [-w simple|json]
//!             <put|range|txn-put|watch-latency|watch-fanout|lease-keepalive>
//! ```
//!
//! `--clients` workers share `--conns` gRPC connections (client i uses
//! connection i mod conns; connection j goes to endpoint j mod endpoints,
//! or every one to the leader with `--target-leader`). Workers take request
//! numbers from one shared counter until `--total` are taken, each keeps its
//! own latencies, and the lists are merged at the end into a
//! [`report::Report`]. Each request has `--command-timeout` to answer.
//!
//! Keys are `--key-size` decimal digits, zero-padded: key number 42 of
//! size 8 is `00000042`, so a run's keys can be listed and counted
//! afterwards. Values are `--val-size` printable bytes, the same for every
//! request.
//!
//! The report goes to stdout; a progress bar goes to stderr when it is a
//! terminal. Exit status 1 when any request failed (after the report).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use skiff_client::Endpoint;
use skiff_proto::etcdserverpb::StatusRequest;
use skiff_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

use crate::output::OutputFormat;

mod ops;
pub mod report;
mod run;
mod watch_fanout;
mod watch_latency;

use report::Report;
use run::Pace;

/// The most requests one run may make: latencies are kept in memory (16
/// bytes each).
const MAX_TOTAL: u64 = 10_000_000;
/// The most workers or connections one run may open.
const MAX_CLIENTS: usize = 100_000;
/// The most operations in one txn (etcd's default `--max-txn-ops`).
const MAX_TXN_OPS: u64 = 128;
/// The longest key or value, in bytes (etcd's default request size limit).
const MAX_KEY_OR_VALUE_BYTES: usize = 1536 * 1024;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// gRPC connections to open.
    #[arg(long, global = true, value_name = "N", default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients, spread over the connections.
    #[arg(long, global = true, value_name = "N", default_value_t = 1)]
    pub clients: usize,
    /// Requests to make in all.
    #[arg(long, global = true, value_name = "N", default_value_t = 10_000)]
    pub total: u64,
    /// Key size in bytes (decimal digits).
    #[arg(long, global = true, value_name = "N", default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, value_name = "N", default_value_t = 8)]
    pub val_size: usize,
    /// Send every request to the leader (found with Maintenance.Status).
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Most requests started per second (0: no limit).
    #[arg(long, global = true, value_name = "R", default_value_t = 0.0)]
    pub rate: f64,
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Puts of one key each.
    Put(PutArgs),
    /// Ranges over [KEY, END), or of KEY alone.
    Range(RangeArgs),
    /// Txns holding --txn-ops puts each.
    TxnPut(TxnPutArgs),
    /// Time from a put's acknowledgement to each watcher seeing its event.
    WatchLatency(WatchLatencyArgs),
    /// Many watchers of one prefix under a steady rate of puts.
    WatchFanout(WatchFanoutArgs),
    /// LeaseKeepAlive round trips, one lease per client.
    LeaseKeepalive,
}

#[derive(Debug, Args)]
pub struct KeySpaceArgs {
    /// Distinct keys written (keys 0 to N-1).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub key_space_size: u64,
}

#[derive(Debug, Args)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub keys: KeySpaceArgs,
    /// Puts in each txn, of distinct keys.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub txn_ops: u64,
    /// Write keys in order (txn i writes keys i × txn-ops and on, mod
    /// key-space-size) rather than from a random start.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeySpaceArgs,
    /// Write keys in order (request i writes key i mod key-space-size)
    /// rather than at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// First key.
    pub key: Option<String>,
    /// End of the range (exclusive); without it only KEY is read.
    pub end: Option<String>,
    /// Instead of KEY, read one key at random per request from keys 0 to
    /// N-1 (the names `put --key-space-size N` writes).
    #[arg(long, value_name = "N", conflicts_with_all = ["key", "end"])]
    pub key_space_size: Option<u64>,
    /// l: linearizable, s: serializable.
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Debug, Args)]
pub struct WatchLatencyArgs {
    /// Watchers of the key, spread over --clients watch streams.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub watchers: u64,
    /// Puts per second.
    #[arg(long, value_name = "R", default_value_t = 100.0)]
    pub put_rate: f64,
    /// Puts in all; the report has one sample per put and watcher.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub put_total: u64,
}

#[derive(Debug, Args)]
pub struct WatchFanoutArgs {
    /// Watchers of the prefix, spread over --clients watch streams.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub watchers: u64,
    /// The prefix watched; puts write keys under it.
    #[arg(long, default_value = "/bench/fanout/")]
    pub prefix: String,
    /// Puts per second, on a fixed schedule.
    #[arg(long, value_name = "R", default_value_t = 1000.0)]
    pub put_rate: f64,
    /// Puts in all; the report has one sample per put and watcher.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub put_total: u64,
    /// Most puts in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub writers: usize,
    /// Distinct keys written under the prefix.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub key_space_size: u64,
}

/// Everything a workload needs to run.
#[derive(Debug)]
pub struct Setup {
    /// One channel per connection.
    pub channels: Vec<Channel>,
    pub clients: usize,
    pub total: u64,
    pub key_size: usize,
    pub value: Vec<u8>,
    /// Time each request has to answer.
    pub request_timeout: Duration,
    /// Most requests started per second.
    pub rate: Option<f64>,
    pub progress: bool,
}

impl Setup {
    /// How the request benchmarks pace themselves.
    pub fn pace(&self) -> Pace {
        Pace {
            total: self.total,
            timeout: self.request_timeout,
            rate: self.rate,
            progress: self.progress,
        }
    }

    /// The channel client `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }
}

/// Checks the flags before anything is dialed.
pub fn validate(args: &BenchArgs, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Table {
        bail!("-w table is not supported by bench; use simple or json");
    }
    at_least_one("--conns", args.conns as u64)?;
    at_least_one("--clients", args.clients as u64)?;
    at_least_one("--total", args.total)?;
    at_least_one("--key-size", args.key_size as u64)?;
    if args.conns > MAX_CLIENTS {
        bail!("--conns must be at most {MAX_CLIENTS}");
    }
    if args.clients > MAX_CLIENTS {
        bail!("--clients must be at most {MAX_CLIENTS}");
    }
    if args.total > MAX_TOTAL {
        bail!("--total must be at most {MAX_TOTAL}");
    }
    if args.key_size > MAX_KEY_OR_VALUE_BYTES {
        bail!("--key-size must be at most {MAX_KEY_OR_VALUE_BYTES}");
    }
    if args.val_size > MAX_KEY_OR_VALUE_BYTES {
        bail!("--val-size must be at most {MAX_KEY_OR_VALUE_BYTES}");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be a number of requests per second, or 0 for no limit");
    }
    match &args.command {
        BenchCommand::Put(PutArgs { keys, .. }) => key_space(args, keys)?,
        BenchCommand::TxnPut(TxnPutArgs { keys, txn_ops, .. }) => {
            key_space(args, keys)?;
            at_least_one("--txn-ops", *txn_ops)?;
            if *txn_ops > MAX_TXN_OPS {
                bail!("--txn-ops must be at most {MAX_TXN_OPS} (the servers' limit per txn)");
            }
            if *txn_ops > keys.key_space_size {
                bail!(
                    "--txn-ops {txn_ops} is more than --key-space-size {}: the keys of one txn must differ",
                    keys.key_space_size
                );
            }
        }
        BenchCommand::WatchLatency(w) => {
            at_least_one("--watchers", w.watchers)?;
            at_least_one("--put-total", w.put_total)?;
            if w.watchers > MAX_CLIENTS as u64 {
                bail!("--watchers must be at most {MAX_CLIENTS}");
            }
            if w.put_total.saturating_mul(w.watchers) > MAX_TOTAL {
                bail!("--put-total times --watchers must be at most {MAX_TOTAL}");
            }
            if !(w.put_rate.is_finite() && w.put_rate > 0.0) {
                bail!("--put-rate must be a positive number of puts per second");
            }
        }
        BenchCommand::WatchFanout(w) => {
            at_least_one("--watchers", w.watchers)?;
            at_least_one("--put-total", w.put_total)?;
            at_least_one("--writers", w.writers as u64)?;
            if w.prefix.is_empty() {
                bail!("--prefix must not be empty");
            }
            if w.watchers > MAX_CLIENTS as u64 {
                bail!("--watchers must be at most {MAX_CLIENTS}");
            }
            if w.writers > MAX_CLIENTS {
                bail!("--writers must be at most {MAX_CLIENTS}");
            }
            if w.put_total.saturating_mul(w.watchers) > MAX_TOTAL {
                bail!("--put-total times --watchers must be at most {MAX_TOTAL}");
            }
            if !(w.put_rate.is_finite() && w.put_rate > 0.0) {
                bail!("--put-rate must be a positive number of puts per second");
            }
            key_space(
                args,
                &KeySpaceArgs {
                    key_space_size: w.key_space_size,
                },
            )?;
        }
        BenchCommand::Range(range) => match range.key_space_size {
            Some(space) => key_space(
                args,
                &KeySpaceArgs {
                    key_space_size: space,
                },
            )?,
            None if range.key.is_none() => {
                bail!("range needs a KEY, or --key-space-size to read keys at random")
            }
            None => {}
        },
        BenchCommand::LeaseKeepalive => {}
    }
    Ok(())
}

/// Checks that `--key-size` digits can number the key space.
fn key_space(args: &BenchArgs, keys: &KeySpaceArgs) -> anyhow::Result<()> {
    at_least_one("--key-space-size", keys.key_space_size)?;
    let needed = digits(keys.key_space_size - 1);
    if needed > args.key_size {
        bail!(
            "--key-size {} is too small for --key-space-size {}: keys need {needed} digits",
            args.key_size,
            keys.key_space_size
        );
    }
    Ok(())
}

fn at_least_one(flag: &str, value: u64) -> anyhow::Result<()> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

/// Decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Key number `n`, zero-padded to `size` digits.
pub fn key(n: u64, size: usize) -> Vec<u8> {
    format!("{n:0size$}").into_bytes()
}

/// `size` printable bytes.
fn value(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size as u64)
        .map(|i| ALPHABET[(mix(i) % ALPHABET.len() as u64) as usize])
        .collect()
}

/// A stateless 64-bit mixer (splitmix64's finaliser): spreads request numbers
/// over the key space.
pub fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs one benchmark and prints its report.
pub async fn run(
    args: BenchArgs,
    endpoints: &[String],
    dial_timeout: Duration,
    request_timeout: Duration,
    format: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    validate(&args, format)?;
    let channels = connect(endpoints, args.conns, args.target_leader, dial_timeout).await?;
    let setup = Setup {
        channels,
        clients: args.clients,
        total: args.total,
        key_size: args.key_size,
        value: value(args.val_size),
        request_timeout,
        rate: (args.rate > 0.0).then_some(args.rate),
        progress: std::io::stderr().is_terminal(),
    };
    let (name, report) = match args.command {
        BenchCommand::Put(put) => ("put", ops::put(&setup, &put).await?),
        BenchCommand::Range(range) => ("range", ops::range(&setup, &range).await?),
        BenchCommand::TxnPut(txn) => ("txn-put", ops::txn_put(&setup, &txn).await?),
        BenchCommand::WatchLatency(w) => ("watch-latency", watch_latency::run(&setup, &w).await?),
        BenchCommand::WatchFanout(w) => ("watch-fanout", watch_fanout::run(&setup, &w).await?),
        BenchCommand::LeaseKeepalive => ("lease-keepalive", ops::lease_keepalive(&setup).await?),
    };
    print(&report, name, format, out)?;
    let failed = report.failed();
    if failed > 0 {
        bail!("{failed} of {} requests failed", report.requests);
    }
    Ok(())
}

fn print(
    report: &Report,
    name: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            let mut json = report.to_json();
            if let Some(object) = json.as_object_mut() {
                object.insert("benchmark".to_string(), name.into());
            }
            writeln!(out, "{json}")?;
        }
        _ => write!(out, "{}", report.to_simple())?,
    }
    Ok(())
}

/// Opens `conns` connections, spread over `endpoints` or all to the
/// leader, and waits until each is established.
async fn connect(
    endpoints: &[String],
    conns: usize,
    target_leader: bool,
    dial_timeout: Duration,
) -> anyhow::Result<Vec<Channel>> {
    let endpoints = endpoints
        .iter()
        .map(|e| Endpoint::parse(e))
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        bail!("--endpoints is empty");
    }
    let endpoints = if target_leader {
        vec![find_leader(&endpoints, dial_timeout).await?]
    } else {
        endpoints
    };
    let mut channels = Vec::with_capacity(conns);
    for i in 0..conns {
        let endpoint = &endpoints[i % endpoints.len()];
        channels.push(dial(endpoint, dial_timeout).await?);
    }
    Ok(channels)
}

async fn dial(endpoint: &Endpoint, dial_timeout: Duration) -> anyhow::Result<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.uri().to_string())
        .with_context(|| format!("endpoint {endpoint}"))?
        .connect_timeout(dial_timeout)
        .tcp_nodelay(true);
    match tokio::time::timeout(dial_timeout, channel.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => {
            // The transport error's innermost cause says what happened
            // ("Connection refused"); the layers above repeat each other.
            let cause = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .last()
                .map_or_else(|| e.to_string(), ToString::to_string);
            bail!("connect to {endpoint}: {cause}")
        }
        Err(_) => bail!("connect to {endpoint}: no connection within {dial_timeout:?}"),
    }
}

/// The endpoint whose member is the leader, by asking each for its status.
async fn find_leader(endpoints: &[Endpoint], dial_timeout: Duration) -> anyhow::Result<Endpoint> {
    let mut failures = Vec::new();
    for endpoint in endpoints {
        let status = async {
            let channel = dial(endpoint, dial_timeout).await?;
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(dial_timeout);
            let status =
                tokio::time::timeout(dial_timeout, MaintenanceClient::new(channel).status(req))
                    .await
                    .map_err(|_| anyhow!("no status within {dial_timeout:?}"))?
                    .map_err(|s| anyhow!("status: {}", s.message()))?
                    .into_inner();
            anyhow::Ok(status)
        };
        match status.await {
            Ok(status) => {
                let member = status.header.as_ref().map_or(0, |h| h.member_id);
                if status.leader != 0 && status.leader == member {
                    return Ok(endpoint.clone());
                }
            }
            Err(e) => failures.push(format!("{endpoint}: {e:#}")),
        }
    }
    let mut message = "--target-leader: no endpoint is the leader".to_string();
    if !failures.is_empty() {
        message.push_str(&format!(" ({})", failures.join("; ")));
    }
    Err(anyhow!(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        let argv = std::iter::once("bench").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().bench
    }

    fn invalid(args: &[&str]) -> String {
        validate(&parse(args), OutputFormat::Simple)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_global_flags_after_the_subcommand() {
        let args = parse(&["put", "--total", "200", "--clients", "4", "--conns", "2"]);
        assert_eq!((args.total, args.clients, args.conns), (200, 4, 2));
        assert_eq!((args.key_size, args.val_size), (8, 8));
        assert!(!args.target_leader);
        match args.command {
            BenchCommand::Put(p) => {
                assert_eq!(p.keys.key_space_size, 1);
                assert!(!p.sequential_keys);
            }
            other => panic!("{other:?}"),
        }
        let args = parse(&["range", "a", "b", "--consistency", "s"]);
        match args.command {
            BenchCommand::Range(r) => {
                assert_eq!((r.key.as_deref(), r.end.as_deref()), (Some("a"), Some("b")));
                assert_eq!(r.consistency, Consistency::S);
            }
            other => panic!("{other:?}"),
        }
        assert!(validate(&parse(&["lease-keepalive"]), OutputFormat::Json).is_ok());
    }

    #[test]
    fn bad_input_names_the_flag() {
        assert_eq!(
            invalid(&["--clients", "0", "put"]),
            "--clients must be at least 1"
        );
        assert_eq!(
            invalid(&["put", "--conns", "0"]),
            "--conns must be at least 1"
        );
        assert_eq!(
            invalid(&["put", "--total", "0"]),
            "--total must be at least 1"
        );
        assert_eq!(
            invalid(&["put", "--key-space-size", "0"]),
            "--key-space-size must be at least 1"
        );
        assert_eq!(
            invalid(&["put", "--key-size", "2", "--key-space-size", "101"]),
            "--key-size 2 is too small for --key-space-size 101: keys need 3 digits"
        );
        assert!(
            validate(
                &parse(&["put", "--key-size", "2", "--key-space-size", "100"]),
                OutputFormat::Simple
            )
            .is_ok()
        );
        assert_eq!(
            invalid(&["watch-latency", "--put-rate", "0"]),
            "--put-rate must be a positive number of puts per second"
        );
        assert_eq!(
            invalid(&["watch-latency", "--watchers", "0"]),
            "--watchers must be at least 1"
        );
        assert_eq!(
            invalid(&["put", "--total", "10000001"]),
            "--total must be at most 10000000"
        );
        assert_eq!(
            invalid(&["range"]),
            "range needs a KEY, or --key-space-size to read keys at random"
        );
        assert!(
            validate(
                &parse(&["range", "--key-space-size", "1000"]),
                OutputFormat::Simple
            )
            .is_ok()
        );
        assert_eq!(
            invalid(&["watch-fanout", "--prefix", ""]),
            "--prefix must not be empty"
        );
        assert_eq!(
            invalid(&["watch-fanout", "--watchers", "1000", "--put-total", "10001"]),
            "--put-total times --watchers must be at most 10000000"
        );
        assert_eq!(
            invalid(&["put", "--rate=-1"]),
            "--rate must be a number of requests per second, or 0 for no limit"
        );
        assert_eq!(
            invalid(&["txn-put", "--txn-ops", "0"]),
            "--txn-ops must be at least 1"
        );
        assert_eq!(
            invalid(&["txn-put", "--txn-ops", "129", "--key-space-size", "1000"]),
            "--txn-ops must be at most 128 (the servers' limit per txn)"
        );
        assert_eq!(
            invalid(&["txn-put", "--txn-ops", "4", "--key-space-size", "3"]),
            "--txn-ops 4 is more than --key-space-size 3: the keys of one txn must differ"
        );
        let table = validate(&parse(&["put"]), OutputFormat::Table).unwrap_err();
        assert!(table.to_string().contains("-w table"), "{table}");
    }

    #[test]
    fn keys_and_values() {
        assert_eq!(key(42, 8), b"00000042");
        assert_eq!(key(0, 1), b"0");
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(u64::MAX), 20);
        let v = value(100);
        assert_eq!(v.len(), 100);
        assert!(v.iter().all(u8::is_ascii_alphanumeric));
        // The mixer spreads consecutive numbers over a small key space.
        let hit: std::collections::BTreeSet<u64> = (0..1000).map(|i| mix(i) % 10).collect();
        assert_eq!(hit.len(), 10);
    }
}
