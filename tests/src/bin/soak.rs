//! `soak`: many randomized fault runs, one after another, and a summary.
//!
//! ```text
//! soak [--runs N] [--seconds S] [--nemesis kill,pause,partition,all] [--seed SEED]
//! ```
//!
//! Run `i` uses the i-th nemesis of the list (cycling) and seed `SEED + i`
//! (SEED from the clock unless given), so any run can be replayed alone with
//! `SKIFF_FAULT_SEED`. A failing run saves its history and prints where;
//! `check-history FILE` checks it again. Exits 1 if any run failed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use skiff_tests::faults::schedule::Nemesis;
use skiff_tests::faults::{self, RunConfig};

struct Options {
    runs: usize,
    seconds: u64,
    nemeses: Vec<Nemesis>,
    seed: u64,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        runs: 10,
        seconds: 20,
        nemeses: Nemesis::EVERY.to_vec(),
        seed: faults::random_seed(),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            value.parse().map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--runs" => options.runs = number("--runs")? as usize,
            "--seconds" => options.seconds = number("--seconds")?,
            "--seed" => options.seed = number("--seed")?,
            "--nemesis" => {
                let list = args.next().ok_or("--nemesis needs a value")?;
                options.nemeses = list
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--nemesis: {e}"))?;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: soak [--runs N] [--seconds S] [--nemesis kill,pause,partition,all] [--seed SEED]"
                        .to_string(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if options.runs == 0 || options.seconds == 0 || options.nemeses.is_empty() {
        return Err("--runs, --seconds and --nemesis must not be zero or empty".to_string());
    }
    Ok(options)
}

#[derive(Default)]
struct Totals {
    runs: usize,
    passed: usize,
    ok: usize,
    failed: usize,
    unknown: usize,
    faults: BTreeMap<String, usize>,
    violations: usize,
    undecided: usize,
    watch_events: usize,
    watch_problems: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    let began = std::time::Instant::now();
    for i in 0..options.runs {
        let nemesis = options.nemeses[i % options.nemeses.len()];
        let seed = options.seed.wrapping_add(i as u64);
        let config = RunConfig::new(nemesis, seed, Duration::from_secs(options.seconds));
        let report = faults::run(config).await;
        println!("run {}/{}:\n{report}", i + 1, options.runs);
        let (ok, failed_ops, unknown) = report.outcomes();
        totals.runs += 1;
        totals.ok += ok;
        totals.failed += failed_ops;
        totals.unknown += unknown;
        for fault in &report.injected {
            *totals.faults.entry(fault.kind.to_string()).or_default() += 1;
        }
        totals.violations += report.check.violations().count();
        totals.undecided += report.check.undecided().count();
        totals.watch_events += report.watch.stream_events;
        totals.watch_problems += report.watch.problems.len();
        if report.passed() {
            totals.passed += 1;
        } else {
            failed.push((nemesis, seed, report.saved.clone()));
        }
    }
    let faults: usize = totals.faults.values().sum();
    let by_kind: Vec<String> = totals
        .faults
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    println!(
        "soak summary: {} s of faults per run, seeds {}..={}, {:.0} s in all",
        options.seconds,
        options.seed,
        options.seed.wrapping_add(options.runs as u64 - 1),
        began.elapsed().as_secs_f64()
    );
    println!(
        "  runs:                {} ({} passed)",
        totals.runs, totals.passed
    );
    println!(
        "  operations checked:  {} ({} ok, {} unknown; {} more failed before proposal)",
        totals.ok + totals.unknown,
        totals.ok,
        totals.unknown,
        totals.failed
    );
    println!("  faults injected:     {faults} ({})", by_kind.join(", "));
    println!("  watch events:        {}", totals.watch_events);
    println!("  violations:          {}", totals.violations);
    println!("  undecided keys:      {}", totals.undecided);
    println!("  watch problems:      {}", totals.watch_problems);
    for (nemesis, seed, saved) in &failed {
        println!(
            "  FAILED: nemesis {nemesis}, seed {seed}{}",
            saved
                .as_ref()
                .map(|p| format!(", saved to {}", p.display()))
                .unwrap_or_default()
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
