//! Histories of client operations and a linearizability checker for them.
//!
//! Clients record each operation's invoke and return time ([`History`]);
//! [`check_registers`] then decides whether some order of the operations,
//! consistent with real time, explains every result when each key is a
//! register (puts set it, deletes clear it, gets read it, a compare-and-swap
//! sets it only when it holds the expected value). Keys are independent, so
//! each key's history is checked on its own.
//!
//! Each operation has an [`Outcome`]. An [`Outcome::Ok`] one took effect
//! between its invocation and its return. An [`Outcome::Failed`] one was
//! refused before it was proposed: it did not happen, and the checker ignores
//! it (it stays in the history for the record). An [`Outcome::Unknown`] one
//! (a timeout, a lost connection) may take effect at any time after its
//! invocation, or never: its return time only says when the client gave up.
//! A get of unknown outcome tells nothing.
//!
//! The search is Wing & Gong's with memoisation (as in Knossos and porcupine):
//! the next operation to linearize can be any pending one invoked before the
//! earliest return among the pending ones; a (set of linearized operations,
//! register value) already explored is not explored again.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Put `value`; values are unique per history so that reads identify them.
    Put { value: String },
    /// A read that returned `value` (`None`: the key was absent).
    Get { value: Option<String> },
    /// Delete the key.
    Delete,
    /// Put `value` if the register holds `expected` (`None`: absent);
    /// `succeeded` says whether it did (meaningless unless the outcome is
    /// [`Outcome::Ok`]).
    Cas {
        expected: Option<String>,
        value: String,
        succeeded: bool,
    },
}

impl Action {
    /// The registers this action may leave behind when applied to `state`;
    /// none when its result is impossible from `state`. A write of unknown
    /// outcome (`known` false) may also leave `state` as it was.
    fn apply(&self, state: Option<&str>, known: bool) -> Vec<Option<String>> {
        let unchanged = || state.map(str::to_string);
        let mut next = match self {
            Action::Put { value } => vec![Some(value.clone())],
            Action::Get { value } => {
                return if value.as_deref() == state {
                    vec![unchanged()]
                } else {
                    Vec::new()
                };
            }
            Action::Delete => vec![None],
            Action::Cas {
                expected,
                value,
                succeeded,
            } => {
                let holds = expected.as_deref() == state;
                match (known, *succeeded) {
                    (true, true) if holds => vec![Some(value.clone())],
                    (true, false) if !holds => return vec![unchanged()],
                    (true, _) => return Vec::new(),
                    (false, _) if holds => vec![Some(value.clone())],
                    (false, _) => return vec![unchanged()],
                }
            }
        };
        if !known && !next.contains(&unchanged()) {
            next.push(unchanged());
        }
        next
    }

    /// The value this action writes, if any.
    fn written(&self) -> Option<&str> {
        match self {
            Action::Put { value } | Action::Cas { value, .. } => Some(value),
            Action::Get { .. } | Action::Delete => None,
        }
    }
}

/// How an operation ended, as far as its client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The store answered: the operation took effect, with the recorded result.
    Ok,
    /// The store refused it before proposing it: it did not take effect.
    Failed,
    /// The client got no answer (a timeout, a lost connection): the operation
    /// may take effect at any time after its invocation, or never.
    Unknown,
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub action: Action,
    pub outcome: Outcome,
    /// Since the history began; serialized in whole microseconds.
    #[serde(rename = "invoked_us", with = "micros")]
    pub invoked: Duration,
    /// When the client got the answer or gave up waiting for one. Only an
    /// [`Outcome::Ok`] operation is known to have taken effect by then.
    #[serde(rename = "returned_us", with = "micros")]
    pub returned: Duration,
}

/// Durations as whole microseconds.
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.action {
            Action::Put { value } => format!("put {value}"),
            Action::Get { value: Some(value) } => format!("get -> {value}"),
            Action::Get { value: None } => "get -> (absent)".to_string(),
            Action::Delete => "delete".to_string(),
            Action::Cas {
                expected,
                value,
                succeeded,
            } => {
                let expected = expected.as_deref().unwrap_or("(absent)");
                match (self.outcome, succeeded) {
                    (Outcome::Ok, true) => format!("cas {expected} -> {value}: swapped"),
                    (Outcome::Ok, false) => format!("cas {expected} -> {value}: refused"),
                    _ => format!("cas {expected} -> {value}"),
                }
            }
        };
        let outcome = match self.outcome {
            Outcome::Ok => "",
            Outcome::Failed => " (failed: did not happen)",
            Outcome::Unknown => " (outcome unknown)",
        };
        write!(
            f,
            "[{:>9.3}ms .. {:>9.3}ms] client {} {} {what}{outcome}",
            ms(self.invoked),
            ms(self.returned),
            self.client,
            self.key
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A shared, append-only record of operations.
#[derive(Debug)]
pub struct History {
    began: Instant,
    operations: Mutex<Vec<Operation>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            began: Instant::now(),
            operations: Mutex::default(),
        }
    }
}

impl History {
    /// The current time on this history's clock, in whole microseconds (what
    /// a saved history keeps): take it just before invoking.
    pub fn now(&self) -> Duration {
        let elapsed = self.began.elapsed().as_micros();
        Duration::from_micros(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// Records an operation invoked at `invoked` that returned just now with
    /// the result in `action`.
    pub fn ok(&self, client: usize, key: &str, action: Action, invoked: Duration) {
        self.push(client, key, action, Outcome::Ok, invoked);
    }

    /// Records an operation invoked at `invoked` that the store refused just
    /// now, before proposing it.
    pub fn failed(&self, client: usize, key: &str, action: Action, invoked: Duration) {
        self.push(client, key, action, Outcome::Failed, invoked);
    }

    /// Records an operation invoked at `invoked` whose client gave up on it
    /// just now, not knowing whether it took effect.
    pub fn unknown(&self, client: usize, key: &str, action: Action, invoked: Duration) {
        self.push(client, key, action, Outcome::Unknown, invoked);
    }

    fn push(&self, client: usize, key: &str, action: Action, outcome: Outcome, invoked: Duration) {
        let operation = Operation {
            client,
            key: key.to_string(),
            action,
            outcome,
            invoked,
            returned: self.now(),
        };
        self.operations
            .lock()
            .expect("history lock")
            .push(operation);
    }

    /// Every operation recorded so far.
    pub fn operations(&self) -> Vec<Operation> {
        self.operations.lock().expect("history lock").clone()
    }

    /// Number of operations recorded so far.
    pub fn len(&self) -> usize {
        self.operations.lock().expect("history lock").len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a key's history is not linearizable.
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    /// The key's operations in invocation order.
    pub operations: Vec<Operation>,
    /// The longest prefix of a linear order the search found.
    pub longest_prefix: Vec<Operation>,
    /// The search gave up (too many steps) rather than proving a violation.
    pub inconclusive: bool,
}

impl fmt::Display for Violation {
    /// The end of the longest linear prefix and the operations it could not
    /// extend with: where to look. The whole history is in `operations`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 12;
        if self.inconclusive {
            writeln!(
                f,
                "the check of key {:?} gave up after {SEARCH_BUDGET} steps",
                self.key
            )?;
        } else {
            writeln!(f, "the history of key {:?} is not linearizable", self.key)?;
        }
        let prefix = &self.longest_prefix;
        writeln!(
            f,
            "longest linear order found: {} of {} operations; its last {}:",
            prefix.len(),
            self.operations.len(),
            prefix.len().min(SHOWN)
        )?;
        for op in &prefix[prefix.len().saturating_sub(SHOWN)..] {
            writeln!(f, "  {op}")?;
        }
        let in_prefix = |op: &Operation| {
            prefix
                .iter()
                .any(|p| p.client == op.client && p.invoked == op.invoked)
        };
        writeln!(f, "first operations left out of it, by invocation:")?;
        for op in self
            .operations
            .iter()
            .filter(|op| !in_prefix(op))
            .take(SHOWN)
        {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// Checks every key's history against a register that starts absent.
pub fn check_registers(operations: &[Operation]) -> Result<(), Vec<Violation>> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    let telling = |op: &&Operation| match op.outcome {
        Outcome::Ok => true,
        Outcome::Failed => false,
        Outcome::Unknown => !matches!(op.action, Action::Get { .. }),
    };
    for op in operations.iter().filter(telling) {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let violations: Vec<Violation> = by_key
        .into_iter()
        .filter_map(|(key, ops)| check_register(key, ops).err())
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// Checks one key's history against a register that starts absent.
pub fn check_register(key: &str, mut operations: Vec<Operation>) -> Result<(), Violation> {
    operations.sort_by_key(|op| op.invoked);
    // A write of unknown outcome whose value nobody read may as well never
    // have happened (values are unique): leave it out of the search. Not when
    // a refused compare-and-swap could owe its refusal to that value.
    let read: HashSet<String> = operations
        .iter()
        .filter_map(|op| match &op.action {
            Action::Get { value }
            | Action::Cas {
                expected: value, ..
            } => value.clone(),
            Action::Put { .. } | Action::Delete => None,
        })
        .collect();
    let refused_cas = operations.iter().any(|op| {
        op.outcome == Outcome::Ok
            && matches!(
                op.action,
                Action::Cas {
                    succeeded: false,
                    ..
                }
            )
    });
    let searched: Vec<Operation> = operations
        .iter()
        .filter(|op| match op.action.written() {
            Some(value) => op.outcome == Outcome::Ok || refused_cas || read.contains(value),
            None => true,
        })
        .cloned()
        .collect();
    let mut search = Search {
        ops: &searched,
        linearized: vec![false; searched.len()],
        order: Vec::new(),
        longest: Vec::new(),
        seen: HashSet::new(),
        budget: SEARCH_BUDGET,
    };
    if search.explore(None) {
        Ok(())
    } else {
        Err(Violation {
            key: key.to_string(),
            longest_prefix: search
                .longest
                .iter()
                .map(|&i| searched[i].clone())
                .collect(),
            inconclusive: search.budget == 0,
            operations,
        })
    }
}

/// Most search steps spent on one key before giving up as inconclusive.
const SEARCH_BUDGET: u64 = 10_000_000;

struct Search<'a> {
    ops: &'a [Operation],
    linearized: Vec<bool>,
    order: Vec<usize>,
    longest: Vec<usize>,
    seen: HashSet<(Vec<bool>, Option<String>)>,
    budget: u64,
}

impl Search<'_> {
    /// Whether the pending operations can be linearized from `state`.
    fn explore(&mut self, state: Option<&str>) -> bool {
        if self.order.len() > self.longest.len() {
            self.longest = self.order.clone();
        }
        if self.order.len() == self.ops.len() {
            return true;
        }
        if self.budget == 0
            || !self
                .seen
                .insert((self.linearized.clone(), state.map(str::to_string)))
        {
            return false;
        }
        self.budget -= 1;
        // A pending operation can go next only if it was invoked before every
        // pending operation returned.
        let earliest_return = (0..self.ops.len())
            .filter(|&i| !self.linearized[i])
            .filter(|&i| self.ops[i].outcome == Outcome::Ok)
            .map(|i| self.ops[i].returned)
            .min()
            .unwrap_or(Duration::MAX);
        for i in 0..self.ops.len() {
            if self.linearized[i] {
                continue;
            }
            if self.ops[i].invoked > earliest_return {
                break; // sorted by invocation: no later one qualifies either
            }
            let op = &self.ops[i];
            for next in op.action.apply(state, op.outcome == Outcome::Ok) {
                self.linearized[i] = true;
                self.order.push(i);
                if self.explore(next.as_deref()) {
                    return true;
                }
                self.order.pop();
                self.linearized[i] = false;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, action: Action, invoked_ms: u64, returned_ms: Option<u64>) -> Operation {
        Operation {
            client,
            key: "k".to_string(),
            action,
            outcome: returned_ms.map_or(Outcome::Unknown, |_| Outcome::Ok),
            invoked: Duration::from_millis(invoked_ms),
            returned: Duration::from_millis(returned_ms.unwrap_or(invoked_ms + 1000)),
        }
    }

    fn put(value: &str) -> Action {
        Action::Put {
            value: value.to_string(),
        }
    }

    fn get(value: Option<&str>) -> Action {
        Action::Get {
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let ops = vec![
            op(0, get(None), 0, Some(1)),
            op(0, put("a"), 2, Some(3)),
            op(1, get(Some("a")), 4, Some(5)),
            op(1, put("b"), 6, Some(7)),
            op(0, get(Some("b")), 8, Some(9)),
        ];
        check_registers(&ops).expect("linearizable");
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_a_violation() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            // Invoked after "b" was acknowledged, yet returns "a".
            op(1, get(Some("a")), 4, Some(5)),
        ];
        let violations = check_registers(&ops).expect_err("a stale read");
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].longest_prefix.len(), 2);
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let ops = vec![
            op(0, put("a"), 0, Some(10)),
            op(1, get(Some("a")), 1, Some(2)),
            op(2, get(None), 3, Some(4)),
        ];
        // The get of "a" and the later get of nothing cannot both be right:
        // once "a" was read, the register is never absent again.
        assert!(check_registers(&ops).is_err());
        let ops = vec![
            op(0, put("a"), 0, Some(10)),
            op(1, get(None), 1, Some(2)),
            op(2, get(Some("a")), 3, Some(4)),
        ];
        check_registers(&ops).expect("the put takes effect between the two gets");
    }

    #[test]
    fn unknown_put_may_take_effect_late_or_never() {
        let late = vec![
            op(0, put("a"), 0, None),
            op(1, get(None), 5, Some(6)),
            op(1, get(Some("a")), 7, Some(8)),
        ];
        check_registers(&late).expect("an unknown put may take effect late");
        let never = vec![op(0, put("a"), 0, None), op(1, get(None), 5, Some(6))];
        check_registers(&never).expect("an unknown put may never take effect");
        let read_before_invoke = vec![op(1, get(Some("a")), 0, Some(1)), op(0, put("a"), 5, None)];
        assert!(
            check_registers(&read_before_invoke).is_err(),
            "a value read before its put was invoked"
        );
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            op(1, get(Some("b")), 4, Some(5)),
            op(1, get(Some("a")), 6, Some(7)),
        ];
        assert!(
            check_registers(&ops).is_err(),
            "the register went back to an overwritten value"
        );
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, get(Some("a")), 2, Some(3)),
        ];
        let mut other = op(2, get(Some("a")), 2, Some(3));
        other.key = "other".to_string();
        ops.push(other);
        let violations = check_registers(&ops).expect_err("key other never had a put");
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].key, "other");
    }

    fn cas(expected: Option<&str>, value: &str, succeeded: bool) -> Action {
        Action::Cas {
            expected: expected.map(str::to_string),
            value: value.to_string(),
            succeeded,
        }
    }

    #[test]
    fn deletes_clear_the_register() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, Some(3)),
            op(1, get(None), 4, Some(5)),
        ];
        check_registers(&ops).expect("read absent after the delete");
        let stale = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, Some(3)),
            op(1, get(Some("a")), 4, Some(5)),
        ];
        assert!(
            check_registers(&stale).is_err(),
            "a read of a deleted value"
        );
        let unknown = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, None),
            op(1, get(Some("a")), 4, Some(5)),
            op(1, get(None), 6, Some(7)),
        ];
        check_registers(&unknown).expect("an unknown delete may take effect late");
    }

    #[test]
    fn compare_and_swap_succeeds_only_on_the_expected_value() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", true), 2, Some(3)),
            op(2, cas(Some("a"), "c", false), 4, Some(5)),
            op(0, get(Some("b")), 6, Some(7)),
        ];
        check_registers(&ops).expect("a then b; the second CAS was refused");
        let wrong = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("x"), "b", true), 2, Some(3)),
        ];
        assert!(
            check_registers(&wrong).is_err(),
            "a CAS that swapped although the register held another value"
        );
        let wrongly_refused = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", false), 2, Some(3)),
        ];
        assert!(
            check_registers(&wrongly_refused).is_err(),
            "a CAS refused although the register held the expected value"
        );
        let on_absent = vec![
            op(1, cas(None, "b", true), 0, Some(1)),
            op(0, get(Some("b")), 2, Some(3)),
        ];
        check_registers(&on_absent).expect("a CAS on an absent key");
    }

    #[test]
    fn a_refused_cas_may_owe_its_refusal_to_an_unknown_write() {
        // The unknown put of "b" was never read, but only it explains why
        // the CAS expecting "a" was refused.
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, put("b"), 2, None),
            op(2, cas(Some("a"), "c", false), 5, Some(6)),
        ];
        check_registers(&ops).expect("the unknown put took effect before the CAS");
        let unknown_cas = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", true), 2, None),
            op(2, get(Some("a")), 3, Some(4)),
            op(2, get(Some("b")), 5, Some(6)),
        ];
        check_registers(&unknown_cas).expect("an unknown CAS may take effect late");
    }

    #[test]
    fn operations_round_trip_through_json() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, get(None), 2, Some(3)),
            op(2, Action::Delete, 4, None),
            Operation {
                outcome: Outcome::Failed,
                ..op(3, cas(Some("a"), "b", false), 5, Some(6))
            },
        ];
        let json = serde_json::to_value(&ops).expect("serialize");
        assert_eq!(
            json[0],
            serde_json::json!({
                "client": 0,
                "key": "k",
                "action": {"type": "put", "value": "a"},
                "outcome": "ok",
                "invoked_us": 0,
                "returned_us": 1000,
            })
        );
        assert_eq!(json[2]["outcome"], "unknown");
        assert_eq!(json[3]["action"]["type"], "cas");
        let back: Vec<Operation> = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, ops);
    }
}
