//! Automatic compaction, as etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention`: the leader proposes a Compact through raft.
//!
//! - `revision`: keep the last N revisions; checked every check interval.
//! - `periodic`: keep a window of history of the retention's length; the
//!   current revision is sampled every tenth of the retention, and the store
//!   is compacted to the newest sample at least one retention old.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use skiff_proto::etcdserverpb::CompactionRequest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::member::Member;
use crate::raft::Command;

/// `--auto-compaction-mode` with its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep this many revisions.
    Revision(i64),
    /// Keep this much time of history.
    Periodic(Duration),
}

impl AutoCompaction {
    /// Parses etcd's flag pair. Retention 0 turns compaction off; in
    /// periodic mode a bare number means hours, else a duration like `30m`.
    pub fn parse(mode: &str, retention: &str) -> Result<Self, String> {
        let retention = retention.trim();
        if retention == "0" || retention.is_empty() {
            return Ok(AutoCompaction::Off);
        }
        match mode {
            "revision" => retention
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(AutoCompaction::Revision)
                .ok_or_else(|| format!("--auto-compaction-retention {retention:?}: not a number of revisions")),
            "periodic" => parse_duration(retention)
                .map(AutoCompaction::Periodic)
                .ok_or_else(|| format!("--auto-compaction-retention {retention:?}: not a duration (e.g. 1h, 30m, 10s)")),
            other => Err(format!("--auto-compaction-mode {other:?}: expected periodic or revision")),
        }
    }
}

/// `1h`, `30m`, `10s`, `500ms`, or a bare number of hours.
fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(hours) = text.parse::<u64>() {
        return Some(Duration::from_secs(hours * 3600));
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

/// Samples of the current revision kept by the periodic compactor.
const PERIODIC_SAMPLES: usize = 10;

/// Runs the compactor until shutdown; it acts only while this member leads.
pub async fn run(
    member: Arc<Member>,
    policy: AutoCompaction,
    check_interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tick_every = match policy {
        AutoCompaction::Off => {
            shutdown.cancelled().await;
            return Ok(());
        }
        AutoCompaction::Revision(_) => check_interval,
        AutoCompaction::Periodic(retention) => {
            (retention / PERIODIC_SAMPLES as u32).max(Duration::from_millis(10))
        }
    };
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last_compacted = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let mvcc = &member.shared.mvcc;
        let current = mvcc.current_revision();
        let target = match policy {
            AutoCompaction::Off => None,
            AutoCompaction::Revision(keep) => Some(current - keep),
            AutoCompaction::Periodic(retention) => {
                let now = Instant::now();
                samples.push_back((now, current));
                let mut target = None;
                while let Some(&(at, revision)) = samples.front() {
                    if now.duration_since(at) < retention {
                        break;
                    }
                    target = Some(revision);
                    samples.pop_front();
                }
                // Bounded: at most one retention of samples stays.
                while samples.len() > PERIODIC_SAMPLES + 1 {
                    samples.pop_front();
                }
                target
            }
        };
        let Some(target) = target else { continue };
        if member.current_leader() != Some(member.id)
            || target <= last_compacted.max(mvcc.compact_revision())
            || target < 1
        {
            continue;
        }
        let request = CompactionRequest {
            revision: target,
            physical: false,
        };
        match member
            .propose(Command::Compact(request.encode_to_vec()))
            .await
        {
            Ok(_) => {
                last_compacted = target;
                tracing::info!(revision = target, ?policy, "auto-compacted");
            }
            Err(status) => tracing::warn!(revision = target, %status, "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcds_flags() {
        assert_eq!(
            AutoCompaction::parse("periodic", "0"),
            Ok(AutoCompaction::Off)
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "1"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(1800)))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "500ms"),
            Ok(AutoCompaction::Periodic(Duration::from_millis(500)))
        );
        assert_eq!(
            AutoCompaction::parse("revision", "1000"),
            Ok(AutoCompaction::Revision(1000))
        );
        assert!(AutoCompaction::parse("revision", "1h").is_err());
        assert!(AutoCompaction::parse("periodic", "1x").is_err());
        assert!(AutoCompaction::parse("sometimes", "1").is_err());
    }
}
