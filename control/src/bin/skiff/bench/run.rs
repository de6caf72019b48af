//! The closed loop every request benchmark shares: `--clients` workers take
//! request numbers from one counter until `--total` are taken, each timing
//! its own requests; the tallies are merged into a [`Report`]. Also the
//! progress bar.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::report::Report;

/// Distinct error texts kept; later ones are counted together.
const MAX_ERROR_KINDS: usize = 32;
/// The text failures beyond [`MAX_ERROR_KINDS`] are counted under.
const OTHER_ERRORS: &str = "(other errors)";
/// How often the progress bar is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Width of the progress bar, in characters.
const PROGRESS_WIDTH: u64 = 40;

/// One worker's request: `call(i)` makes request number `i`.
pub trait Op: Send + 'static {
    fn call(&mut self, i: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// Request numbers handed out and requests finished, shared by the workers.
#[derive(Debug)]
pub struct Work {
    total: u64,
    taken: AtomicU64,
    done: AtomicU64,
}

impl Work {
    pub fn new(total: u64) -> Work {
        Work {
            total,
            taken: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    /// The next request number, or `None` once `total` are taken.
    pub fn take(&self) -> Option<u64> {
        let i = self.taken.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }

    pub fn finish(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// What one worker saw: latencies of successes, failures by text.
#[derive(Debug, Default)]
pub struct Tally {
    pub latencies: Vec<Duration>,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn with_capacity(n: usize) -> Tally {
        Tally {
            latencies: Vec::with_capacity(n),
            errors: BTreeMap::new(),
        }
    }

    pub fn ok(&mut self, latency: Duration) {
        self.latencies.push(latency);
    }

    pub fn failed(&mut self, text: String, n: u64) {
        let text = if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&text) {
            OTHER_ERRORS.to_string()
        } else {
            text
        };
        *self.errors.entry(text).or_default() += n;
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (text, n) in other.errors {
            self.failed(text, n);
        }
    }

    pub fn into_report(self, elapsed: Duration) -> Report {
        Report::new(elapsed, self.latencies, self.errors)
    }
}

/// How a run paces its requests.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Requests to make in all.
    pub total: u64,
    /// Time each request has to answer.
    pub timeout: Duration,
    /// At most this many requests start per second (`None`: no limit).
    pub rate: Option<f64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Pace {
    /// When request `i` may start, for a run that started at `started`:
    /// request i waits for its slot `i / rate` seconds in, so a run never
    /// goes faster than the rate, and a late request does not make later
    /// ones bunch up beyond what the clients can carry.
    fn slot(&self, started: Instant, i: u64) -> Option<Instant> {
        self.rate
            .map(|rate| started + Duration::from_secs_f64(i as f64 / rate))
    }
}

/// Runs `ops` (one per worker) until `pace.total` requests are made, each
/// allowed `pace.timeout`, starting at most `pace.rate` per second.
pub async fn closed_loop<O: Op>(ops: Vec<O>, pace: Pace) -> anyhow::Result<Report> {
    let Pace {
        total,
        timeout,
        progress,
        ..
    } = pace;
    let work = Arc::new(Work::new(total));
    let share = usize::try_from(total.div_ceil(ops.len().max(1) as u64)).unwrap_or(0);
    let bar = Progress::start(progress, Arc::clone(&work));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for mut op in ops {
        let work = Arc::clone(&work);
        workers.spawn(async move {
            let mut tally = Tally::with_capacity(share);
            while let Some(i) = work.take() {
                if let Some(slot) = pace.slot(started, i) {
                    tokio::time::sleep_until(slot).await;
                }
                let at = Instant::now();
                match tokio::time::timeout(timeout, op.call(i)).await {
                    Ok(Ok(())) => tally.ok(at.elapsed()),
                    Ok(Err(text)) => tally.failed(text, 1),
                    Err(_) => tally.failed(format!("no answer within {timeout:?}"), 1),
                }
                work.finish(1);
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(joined) = workers.join_next().await {
        tally.merge(joined?);
    }
    let elapsed = started.elapsed();
    bar.stop();
    Ok(tally.into_report(elapsed))
}

/// A gRPC failure as the report shows it.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// A one-line progress bar on stderr, redrawn in place by its own task.
#[derive(Debug)]
pub struct Progress {
    task: Option<(tokio::task::JoinHandle<()>, Arc<Work>)>,
}

impl Progress {
    /// Starts drawing `work`'s progress if `enabled`.
    pub fn start(enabled: bool, work: Arc<Work>) -> Progress {
        if !enabled {
            return Progress { task: None };
        }
        let drawn = Arc::clone(&work);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tick.tick().await;
                eprint!("\r{}", bar(drawn.done(), drawn.total()));
            }
        });
        Progress {
            task: Some((task, work)),
        }
    }

    /// Draws the final state and ends the line.
    pub fn stop(self) {
        if let Some((task, work)) = self.task {
            task.abort();
            eprintln!("\r{}", bar(work.done(), work.total()));
        }
    }
}

/// `[=========>          ]  450/1000  45%`.
fn bar(done: u64, total: u64) -> String {
    let total = total.max(1);
    let done = done.min(total);
    let filled = done * PROGRESS_WIDTH / total;
    let mut s = String::with_capacity(PROGRESS_WIDTH as usize + 32);
    s.push('[');
    for i in 0..PROGRESS_WIDTH {
        s.push(if i < filled {
            '='
        } else if i == filled && done < total {
            '>'
        } else {
            ' '
        });
    }
    s.push_str(&format!("] {done}/{total} {:3}%", done * 100 / total));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_hands_out_each_number_once() {
        let work = Work::new(3);
        let taken: Vec<_> = std::iter::from_fn(|| work.take()).collect();
        assert_eq!(taken, [0, 1, 2]);
        assert_eq!(work.take(), None);
        work.finish(2);
        assert_eq!(work.done(), 2);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut tally = Tally::default();
        for i in 0..(MAX_ERROR_KINDS as u64 + 5) {
            tally.failed(format!("e{i}"), 1);
        }
        tally.failed("e0".to_string(), 1);
        assert_eq!(tally.errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(tally.errors[OTHER_ERRORS], 5);
        assert_eq!(tally.errors["e0"], 2);
        assert_eq!(
            tally.errors.values().sum::<u64>(),
            MAX_ERROR_KINDS as u64 + 6
        );
    }

    #[test]
    fn progress_bar_text() {
        assert_eq!(bar(0, 4), format!("[>{}] 0/4   0%", " ".repeat(39)));
        assert_eq!(
            bar(2, 4),
            format!("[{}>{}] 2/4  50%", "=".repeat(20), " ".repeat(19))
        );
        assert_eq!(bar(4, 4), format!("[{}] 4/4 100%", "=".repeat(40)));
    }

    fn pace(total: u64, timeout_ms: u64, rate: Option<f64>) -> Pace {
        Pace {
            total,
            timeout: Duration::from_millis(timeout_ms),
            rate,
            progress: false,
        }
    }

    struct Flaky;

    impl Op for Flaky {
        async fn call(&mut self, i: u64) -> Result<(), String> {
            if i.is_multiple_of(4) {
                Err("odd".to_string())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn closed_loop_makes_exactly_total_requests() {
        let report = closed_loop(vec![Flaky, Flaky, Flaky], pace(10, 5_000, None))
            .await
            .unwrap();
        assert_eq!(report.requests, 10);
        assert_eq!(report.failed(), 3);
        assert_eq!(report.latency.unwrap().count, 7);
    }

    struct HangsOnce;

    impl Op for HangsOnce {
        async fn call(&mut self, i: u64) -> Result<(), String> {
            if i == 0 {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_request_without_answer_counts_as_failed() {
        let report = closed_loop(vec![HangsOnce], pace(3, 20, None))
            .await
            .unwrap();
        assert_eq!(report.requests, 3);
        assert_eq!(report.errors["no answer within 20ms"], 1);
        assert_eq!(report.latency.unwrap().count, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_spaces_the_requests_out() {
        // 20 requests at 10 per second over 4 clients: the last one may
        // start only 1.9 s in, however fast the server answers.
        let report = closed_loop(
            vec![Flaky, Flaky, Flaky, Flaky],
            pace(20, 5_000, Some(10.0)),
        )
        .await
        .unwrap();
        assert_eq!(report.requests, 20);
        assert!(
            report.elapsed >= Duration::from_millis(1900)
                && report.elapsed < Duration::from_secs(2),
            "{:?}",
            report.elapsed
        );
        let unpaced = closed_loop(vec![Flaky], pace(20, 5_000, None))
            .await
            .unwrap();
        assert!(
            unpaced.elapsed < Duration::from_millis(100),
            "{:?}",
            unpaced.elapsed
        );
    }
}
