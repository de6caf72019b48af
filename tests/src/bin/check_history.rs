//! `check-history FILE [--budget STEPS]`: checks a saved history again.
//!
//! FILE is a JSON object whose `operations` array holds the history's
//! operations (other fields, such as a seed or a fault schedule, are
//! ignored). Prints a line per key and the details of each violation.
//!
//! Exit status: 0 when every key is linearizable, 1 when some key is not,
//! 2 when no key is a violation but the search gave up on some (undecided),
//! 3 when the file cannot be read or the arguments make no sense.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use skiff_tests::history::{Budget, check_registers, load_operations};

const USAGE: &str = "usage: check-history FILE [--budget STEPS]";

fn main() -> ExitCode {
    let (path, budget) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("check-history: {err:#}\n{USAGE}");
            return ExitCode::from(3);
        }
    };
    let operations = match load_operations(&path) {
        Ok(operations) => operations,
        Err(err) => {
            eprintln!("check-history: {err:#}");
            return ExitCode::from(3);
        }
    };
    println!(
        "{}: {} operations, at most {} search steps per key",
        path.display(),
        operations.len(),
        budget.steps_per_key
    );
    let report = check_registers(&operations, budget);
    print!("{report}");
    if report.violations().next().is_some() {
        ExitCode::from(1)
    } else if report.undecided().next().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// The file and budget; `None` when help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<(PathBuf, Budget)>> {
    let mut path = None;
    let mut budget = Budget::DEFAULT;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--budget" => {
                let steps = args.next().context("--budget needs a number of steps")?;
                budget.steps_per_key = steps
                    .parse()
                    .with_context(|| format!("--budget {steps:?}: not a number of steps"))?;
            }
            _ if arg.starts_with('-') => bail!("unknown option {arg:?}"),
            _ if path.is_some() => bail!("one history file at a time (also got {arg:?})"),
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path.context("which history file?")?;
    Ok(Some((path, budget)))
}
