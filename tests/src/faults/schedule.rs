//! The nemesis: which faults a run injects, planned from its seed.
//!
//! A schedule is a list of [`PlannedFault`]s, each a calm period followed by
//! one fault held for a while and then healed. Only the member it hits is
//! decided when it happens (the leader is known only then); the plan itself
//! follows from the seed alone, so a run is reproducible up to timing.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The faults a run may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    /// SIGKILL a member, restart it on its data dir.
    Kill,
    /// SIGSTOP a member, SIGCONT it.
    Pause,
    /// Cut a member off from its peers, heal.
    Partition,
    /// Any of the three.
    All,
}

impl Nemesis {
    /// Every nemesis, in the order a soak cycles through them.
    pub const EVERY: [Nemesis; 4] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::All,
    ];

    fn kinds(self) -> &'static [FaultKind] {
        match self {
            Nemesis::Kill => &[FaultKind::Kill],
            Nemesis::Pause => &[FaultKind::Pause],
            Nemesis::Partition => &[FaultKind::Partition],
            Nemesis::All => &[FaultKind::Kill, FaultKind::Pause, FaultKind::Partition],
        }
    }
}

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::All => "all",
        })
    }
}

impl FromStr for Nemesis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kill" => Ok(Nemesis::Kill),
            "pause" => Ok(Nemesis::Pause),
            "partition" => Ok(Nemesis::Partition),
            "all" => Ok(Nemesis::All),
            other => Err(format!(
                "unknown nemesis {other:?}: expected kill, pause, partition or all"
            )),
        }
    }
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "isolate",
        })
    }
}

/// Which member a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The member that leads when the fault starts.
    Leader,
    /// A member that does not lead.
    Follower,
    /// Any member.
    Random,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Leader => "the leader",
            Target::Follower => "a follower",
            Target::Random => "a random member",
        })
    }
}

/// A calm period, then a fault held for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    pub calm_ms: u64,
    pub kind: FaultKind,
    pub target: Target,
    pub hold_ms: u64,
    /// Picks the member when `target` leaves a choice.
    pub pick: u64,
}

impl fmt::Display for PlannedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "after {} ms calm, {} {} for {} ms",
            self.calm_ms, self.kind, self.target, self.hold_ms
        )
    }
}

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFault {
    pub kind: FaultKind,
    pub target: Target,
    /// The member's name.
    pub member: String,
    /// On the history's clock.
    pub started_us: u64,
    pub healed_us: u64,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>9.3}ms .. {:>9.3}ms] {} {} ({})",
            self.started_us as f64 / 1000.0,
            self.healed_us as f64 / 1000.0,
            self.kind,
            self.member,
            self.target
        )
    }
}

/// Faults planned to fill `duration`: calm 0.5-1.5 s, then a fault held
/// 1.5-4 s (longer than an election timeout, so that a leader is replaced).
pub fn plan(nemesis: Nemesis, seed: u64, duration: Duration) -> Vec<PlannedFault> {
    let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
    let mut planned = Vec::new();
    let mut total = 0;
    let budget = duration.as_millis() as u64;
    let kinds = nemesis.kinds();
    loop {
        let fault = PlannedFault {
            calm_ms: rng.range(500, 1500),
            kind: kinds[rng.below(kinds.len() as u64) as usize],
            target: [Target::Leader, Target::Follower, Target::Random][rng.below(3) as usize],
            hold_ms: rng.range(1500, 4000),
            pick: rng.next_u64(),
        };
        total += fault.calm_ms + fault.hold_ms;
        if total > budget && !planned.is_empty() {
            return planned;
        }
        planned.push(fault);
    }
}

/// xorshift64*: reproducible from a seed, and enough for a workload.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero, which xorshift would keep forever.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_follows_from_its_seed_and_fills_the_duration() {
        let a = plan(Nemesis::All, 42, Duration::from_secs(20));
        let b = plan(Nemesis::All, 42, Duration::from_secs(20));
        assert_eq!(a, b);
        assert_ne!(a, plan(Nemesis::All, 43, Duration::from_secs(20)));
        let total: u64 = a.iter().map(|f| f.calm_ms + f.hold_ms).sum();
        assert!(total <= 20_000 && total > 20_000 - 5_500, "{total} ms");
        assert!(a.len() >= 3);
    }

    #[test]
    fn a_nemesis_plans_only_its_own_faults() {
        for (nemesis, kind) in [
            (Nemesis::Kill, FaultKind::Kill),
            (Nemesis::Pause, FaultKind::Pause),
            (Nemesis::Partition, FaultKind::Partition),
        ] {
            let planned = plan(nemesis, 7, Duration::from_secs(60));
            assert!(planned.iter().all(|f| f.kind == kind), "{planned:?}");
        }
        let mixed = plan(Nemesis::All, 7, Duration::from_secs(120));
        for kind in [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition] {
            assert!(mixed.iter().any(|f| f.kind == kind), "{kind} in {mixed:?}");
        }
    }

    #[test]
    fn nemesis_names_parse() {
        for nemesis in Nemesis::EVERY {
            assert_eq!(nemesis.to_string().parse::<Nemesis>(), Ok(nemesis));
        }
        let err = "flood".parse::<Nemesis>().unwrap_err();
        assert!(err.contains("\"flood\""), "{err}");
    }
}
