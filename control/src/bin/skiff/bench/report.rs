//! The figures of a benchmark run and their two renderings, with no IO:
//! latencies and errors in, a [`Report`] out, printed as etcd's benchmark
//! tool prints it (`simple`) or as one JSON object (`json`).
//!
//! Percentiles are exact, by the nearest-rank rule: the p-th percentile is
//! the smallest sample such that at least p% of the samples are at or below
//! it. The histogram has etcd's shape: eleven marks evenly spaced from the
//! fastest to the slowest sample, each counting the samples above the
//! previous mark and at or below its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

/// The percentiles reported, in tenths of a percent (so 99.9% is exact).
pub const PERCENTILES_PER_MILLE: [u32; 8] = [100, 250, 500, 750, 900, 950, 990, 999];
/// Intervals of the histogram; it has one mark more.
pub const HISTOGRAM_INTERVALS: u32 = 10;
/// The widest histogram bar, in characters.
const BAR_WIDTH: u64 = 40;

/// The summary of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Requests made: successes and failures.
    pub requests: u64,
    /// Failed requests, by error text.
    pub errors: BTreeMap<String, u64>,
    /// Latency figures; `None` when no request succeeded.
    pub latency: Option<Latency>,
}

/// Latency figures of the successful requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub fastest: Duration,
    pub slowest: Duration,
    pub average: Duration,
    /// Population standard deviation.
    pub stddev: Duration,
    /// `(mark, samples)`: samples above the previous mark, up to this one.
    pub histogram: Vec<(Duration, u64)>,
    /// `(tenths of a percent, latency)`, for each of [`PERCENTILES_PER_MILLE`].
    pub percentiles: Vec<(u32, Duration)>,
}

impl Report {
    /// Summarises a run that took `elapsed`: the latencies of its successful
    /// requests (in any order) and its failures by error text.
    pub fn new(
        elapsed: Duration,
        mut latencies: Vec<Duration>,
        errors: BTreeMap<String, u64>,
    ) -> Report {
        latencies.sort_unstable();
        let failed: u64 = errors.values().sum();
        Report {
            elapsed,
            requests: latencies.len() as u64 + failed,
            errors,
            latency: Latency::of_sorted(&latencies),
        }
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful requests per second of wall time.
    pub fn requests_per_second(&self) -> f64 {
        let ok = self.latency.as_ref().map_or(0, |l| l.count);
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { ok as f64 / secs } else { 0.0 }
    }

    /// The report as etcd's benchmark prints it.
    pub fn to_simple(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_simple(&mut s);
        s
    }

    fn write_simple(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s)?;
        writeln!(s, "Summary:")?;
        writeln!(s, "  Total:\t{:.4} secs.", self.elapsed.as_secs_f64())?;
        if let Some(l) = &self.latency {
            writeln!(s, "  Slowest:\t{:.4} secs.", l.slowest.as_secs_f64())?;
            writeln!(s, "  Fastest:\t{:.4} secs.", l.fastest.as_secs_f64())?;
            writeln!(s, "  Average:\t{:.4} secs.", l.average.as_secs_f64())?;
            writeln!(s, "  Stddev:\t{:.4} secs.", l.stddev.as_secs_f64())?;
        }
        writeln!(s, "  Requests/sec:\t{:.4}", self.requests_per_second())?;
        match &self.latency {
            None => {
                writeln!(s)?;
                writeln!(s, "No request succeeded.")?;
            }
            Some(l) => {
                writeln!(s)?;
                writeln!(s, "Response time histogram:")?;
                let max = l.histogram.iter().map(|&(_, n)| n).max().unwrap_or(0);
                for &(mark, n) in &l.histogram {
                    let bar = (n * BAR_WIDTH).checked_div(max).unwrap_or(0);
                    writeln!(
                        s,
                        "  {:.4} [{n}]\t|{}",
                        mark.as_secs_f64(),
                        "∎".repeat(bar as usize)
                    )?;
                }
                writeln!(s)?;
                writeln!(s, "Latency distribution:")?;
                for &(per_mille, at) in &l.percentiles {
                    writeln!(
                        s,
                        "  {}% in {:.4} secs.",
                        percent_label(per_mille),
                        at.as_secs_f64()
                    )?;
                }
            }
        }
        if !self.errors.is_empty() {
            writeln!(s)?;
            writeln!(s, "Error distribution:")?;
            for (text, n) in &self.errors {
                writeln!(s, "  [{n}]\t{text}")?;
            }
        }
        Ok(())
    }

    /// The report as one JSON object; durations are seconds (floats), and
    /// latency fields are `null` when no request succeeded.
    pub fn to_json(&self) -> Value {
        let secs = |f: fn(&Latency) -> Duration| {
            self.latency
                .as_ref()
                .map(|l| json!(f(l).as_secs_f64()))
                .unwrap_or(Value::Null)
        };
        let percentile = |per_mille: u32| {
            self.latency
                .as_ref()
                .and_then(|l| l.percentile(per_mille))
                .map(|d| json!(d.as_secs_f64()))
                .unwrap_or(Value::Null)
        };
        let histogram: Vec<Value> = self
            .latency
            .iter()
            .flat_map(|l| &l.histogram)
            .map(|&(mark, n)| json!({ "le_s": mark.as_secs_f64(), "count": n }))
            .collect();
        let percentiles: Vec<Value> = self
            .latency
            .iter()
            .flat_map(|l| &l.percentiles)
            .map(|&(per_mille, at)| {
                json!({ "percent": f64::from(per_mille) / 10.0, "latency_s": at.as_secs_f64() })
            })
            .collect();
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(text, n)| json!({ "error": text, "count": n }))
            .collect();
        json!({
            "total_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "succeeded": self.latency.as_ref().map_or(0, |l| l.count),
            "failed": self.failed(),
            "requests_per_s": self.requests_per_second(),
            "slowest_s": secs(|l| l.slowest),
            "fastest_s": secs(|l| l.fastest),
            "average_s": secs(|l| l.average),
            "stddev_s": secs(|l| l.stddev),
            "p50_s": percentile(500),
            "p90_s": percentile(900),
            "p99_s": percentile(990),
            "p99_9_s": percentile(999),
            "histogram": histogram,
            "percentiles": percentiles,
            "errors": errors,
        })
    }
}

impl Latency {
    /// The figures of `sorted` (ascending); `None` if it is empty.
    pub fn of_sorted(sorted: &[Duration]) -> Option<Latency> {
        let (&fastest, &slowest) = (sorted.first()?, sorted.last()?);
        let count = sorted.len() as u64;
        let nanos: Vec<u128> = sorted.iter().map(Duration::as_nanos).collect();
        let sum: u128 = nanos.iter().sum();
        let mean = sum as f64 / count as f64;
        let variance = nanos
            .iter()
            .map(|&n| {
                let d = n as f64 - mean;
                d * d
            })
            .sum::<f64>()
            / count as f64;
        Some(Latency {
            count,
            fastest,
            slowest,
            average: nanos_to_duration(sum / u128::from(count)),
            stddev: Duration::from_secs_f64(variance.sqrt() / 1e9),
            histogram: histogram(sorted),
            percentiles: PERCENTILES_PER_MILLE
                .iter()
                .map(|&p| (p, nearest_rank(sorted, p)))
                .collect(),
        })
    }

    /// The reported percentile `per_mille` (tenths of a percent), if it is
    /// one of [`PERCENTILES_PER_MILLE`].
    pub fn percentile(&self, per_mille: u32) -> Option<Duration> {
        self.percentiles
            .iter()
            .find(|&&(p, _)| p == per_mille)
            .map(|&(_, d)| d)
    }
}

/// The smallest sample with at least `per_mille`/1000 of `sorted` at or
/// below it. `sorted` must not be empty.
pub fn nearest_rank(sorted: &[Duration], per_mille: u32) -> Duration {
    assert!(!sorted.is_empty(), "percentile of no samples");
    assert!(per_mille <= 1000, "percentile above 100%");
    let n = sorted.len() as u64;
    let rank = (u64::from(per_mille) * n).div_ceil(1000).max(1);
    sorted[(rank - 1) as usize]
}

/// etcd's histogram of `sorted` (ascending, not empty): marks
/// `fastest + i * (slowest - fastest) / 10` for i in 0..=10.
pub fn histogram(sorted: &[Duration]) -> Vec<(Duration, u64)> {
    let (Some(&fastest), Some(&slowest)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let (low, span) = (fastest.as_nanos(), slowest.as_nanos() - fastest.as_nanos());
    let intervals = u128::from(HISTOGRAM_INTERVALS);
    let marks: Vec<u128> = (0..=intervals)
        .map(|i| low + span * i / intervals)
        .collect();
    let mut counts = vec![0u64; marks.len()];
    let mut bucket = 0;
    for sample in sorted {
        let n = sample.as_nanos();
        while n > marks[bucket] {
            bucket += 1;
        }
        counts[bucket] += 1;
    }
    marks
        .into_iter()
        .map(nanos_to_duration)
        .zip(counts)
        .collect()
}

/// "10", "99.9": a percentile in tenths of a percent as etcd labels it.
fn percent_label(per_mille: u32) -> String {
    if per_mille.is_multiple_of(10) {
        (per_mille / 10).to_string()
    } else {
        format!("{}.{}", per_mille / 10, per_mille % 10)
    }
}

fn nanos_to_duration(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 1 ms, 2 ms, ..., n ms, shuffled so that sorting matters.
    fn one_to(n: u64) -> Vec<Duration> {
        let mut v: Vec<Duration> = (1..=n).map(ms).collect();
        v.reverse();
        v.swap(0, (n / 2) as usize);
        v
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_thousand() {
        let mut samples = one_to(1000);
        samples.sort();
        for (per_mille, expected) in [
            (100, 100),
            (250, 250),
            (500, 500),
            (750, 750),
            (900, 900),
            (950, 950),
            (990, 990),
            (999, 999),
            (1000, 1000),
            (0, 1),
        ] {
            assert_eq!(
                nearest_rank(&samples, per_mille),
                ms(expected),
                "{per_mille}"
            );
        }
    }

    #[test]
    fn nearest_rank_rounds_up_on_few_samples() {
        let samples = [ms(10), ms(20), ms(30), ms(40)];
        assert_eq!(nearest_rank(&samples, 100), ms(10));
        assert_eq!(nearest_rank(&samples, 250), ms(10));
        assert_eq!(nearest_rank(&samples, 251), ms(20));
        assert_eq!(nearest_rank(&samples, 500), ms(20));
        assert_eq!(nearest_rank(&samples, 990), ms(40));
        assert_eq!(nearest_rank(&[ms(7)], 999), ms(7));
    }

    #[test]
    fn summary_figures() {
        let report = Report::new(Duration::from_secs(2), one_to(10), BTreeMap::new());
        assert_eq!(report.requests, 10);
        assert_eq!(report.failed(), 0);
        let l = report.latency.as_ref().unwrap();
        assert_eq!((l.fastest, l.slowest, l.count), (ms(1), ms(10), 10));
        assert_eq!(l.average, Duration::from_micros(5500));
        // Population stddev of 1..=10 is sqrt(8.25).
        let expected = 8.25f64.sqrt() / 1000.0;
        assert!((l.stddev.as_secs_f64() - expected).abs() < 1e-9, "{l:?}");
        assert_eq!(l.percentile(500), Some(ms(5)));
        assert_eq!(l.percentile(999), Some(ms(10)));
        assert_eq!(report.requests_per_second(), 5.0);
    }

    #[test]
    fn histogram_buckets() {
        let mut samples = one_to(11);
        samples.sort();
        // Marks 1, 2, ..., 11 ms: one sample each.
        let h = histogram(&samples);
        assert_eq!(h.len(), 11);
        for (i, &(mark, n)) in h.iter().enumerate() {
            assert_eq!(mark, ms(i as u64 + 1));
            assert_eq!(n, 1, "{h:?}");
        }

        // Marks 0, 10, ..., 100 ms; samples fall in (previous, mark].
        let samples = [ms(0), ms(0), ms(5), ms(10), ms(11), ms(55), ms(100)];
        let h = histogram(&samples);
        let counts: Vec<u64> = h.iter().map(|&(_, n)| n).collect();
        assert_eq!(counts, [2, 2, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(h[10].0, ms(100));
        assert_eq!(counts.iter().sum::<u64>(), samples.len() as u64);

        // All samples equal: every one counts at the first mark.
        let h = histogram(&[ms(3); 5]);
        assert_eq!(h[0], (ms(3), 5));
        assert!(h[1..].iter().all(|&(mark, n)| mark == ms(3) && n == 0));
    }

    #[test]
    fn simple_output_has_etcds_sections() {
        let mut errors = BTreeMap::new();
        errors.insert("Unavailable: no leader".to_string(), 2);
        let report = Report::new(Duration::from_secs(1), one_to(100), errors);
        let text = report.to_simple();
        for line in [
            "Summary:",
            "  Total:\t1.0000 secs.",
            "  Slowest:\t0.1000 secs.",
            "  Fastest:\t0.0010 secs.",
            "  Average:\t0.0505 secs.",
            "  Requests/sec:\t100.0000",
            "Response time histogram:",
            "  0.0010 [1]\t|∎∎∎∎",
            "  0.1000 [10]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎",
            "Latency distribution:",
            "  10% in 0.0100 secs.",
            "  99.9% in 0.1000 secs.",
            "Error distribution:",
            "  [2]\tUnavailable: no leader",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        let bars: Vec<&str> = text.lines().filter(|l| l.contains("\t|")).collect();
        assert_eq!(bars.len(), 11, "{text}");
        // The fullest bucket has the widest bar.
        let widest = bars.iter().map(|l| l.matches('∎').count()).max();
        assert_eq!(widest, Some(BAR_WIDTH as usize));
        assert_eq!(report.requests, 102);
    }

    #[test]
    fn json_shape() {
        let mut errors = BTreeMap::new();
        errors.insert("timed out".to_string(), 1);
        let report = Report::new(Duration::from_millis(500), one_to(1000), errors);
        let v = report.to_json();
        assert_eq!(v["requests"], 1001);
        assert_eq!(v["succeeded"], 1000);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["total_s"], 0.5);
        assert_eq!(v["fastest_s"], 0.001);
        assert_eq!(v["slowest_s"], 1.0);
        assert_eq!(v["p50_s"], 0.5);
        assert_eq!(v["p90_s"], 0.9);
        assert_eq!(v["p99_s"], 0.99);
        assert_eq!(v["p99_9_s"], 0.999);
        assert_eq!(v["requests_per_s"], 2000.0);
        assert_eq!(v["histogram"].as_array().unwrap().len(), 11);
        assert_eq!(v["histogram"][10]["le_s"], 1.0);
        let percentiles = v["percentiles"].as_array().unwrap();
        assert_eq!(percentiles.len(), PERCENTILES_PER_MILLE.len());
        assert_eq!(percentiles[7]["percent"], 99.9);
        assert_eq!(percentiles[7]["latency_s"], 0.999);
        assert_eq!(v["errors"][0]["error"], "timed out");
        assert_eq!(v["errors"][0]["count"], 1);
        // One line when printed.
        assert!(!v.to_string().contains('\n'));
    }

    #[test]
    fn no_successful_request() {
        let mut errors = BTreeMap::new();
        errors.insert("refused".to_string(), 3);
        let report = Report::new(Duration::from_secs(1), Vec::new(), errors);
        assert_eq!(report.requests, 3);
        assert!(report.latency.is_none());
        let v = report.to_json();
        assert_eq!(v["succeeded"], 0);
        assert!(v["p50_s"].is_null() && v["slowest_s"].is_null());
        assert_eq!(v["histogram"], json!([]));
        let text = report.to_simple();
        assert!(text.contains("No request succeeded."), "{text}");
        assert!(text.contains("  [3]\trefused"), "{text}");
    }
}
