//! Histories of client operations and a linearizability checker for them.
//!
//! Clients record each operation's invoke and return time ([`History`]);
//! [`check_registers`] then decides whether some order of the operations,
//! consistent with real time, explains every result when each key is a
//! register that starts absent (puts set it, deletes clear it, gets read it,
//! a compare-and-swap sets it only when it holds the expected value). Keys
//! are independent: each key's history is checked on its own, keys in
//! parallel.
//!
//! Each operation has an [`Outcome`]. An [`Outcome::Ok`] one took effect
//! between its invocation and its return. An [`Outcome::Failed`] one was
//! refused before it was proposed: it did not happen, and the checker ignores
//! it (it stays in the history for the record). An [`Outcome::Unknown`] one
//! (a timeout, a lost connection) may take effect at any time after its
//! invocation, or never: its return time only says when the client gave up.
//! A get of unknown outcome tells nothing.
//!
//! The verdict per key is three-valued ([`Verdict`]): linearizable, a
//! violation (with the longest linear order found, to show where it broke),
//! or undecided when the search spent its [`Budget`]. Only the first is a
//! pass ([`Report::is_linearizable`]).
//!
//! A saved history (`{"operations": [...]}`, read by [`load_operations`]) is
//! re-checked with `check-history FILE [--budget STEPS]`.
//!
//! # The search
//!
//! Wing & Gong's depth-first search with memoisation, as in Knossos and
//! porcupine: the next operation to take effect can be any pending one
//! invoked before the frontier, the earliest return among the pending
//! operations of known outcome. The pending ones sit in porcupine's
//! time-ordered list of invocations and returns, so the candidates are the
//! invocations before the first return, and an operation that takes effect
//! is lifted out of the list (put back on backtracking). The path is an
//! explicit stack: thousands of operations do not recurse.
//!
//! What keeps it small:
//!
//! - Only values some result depends on (a get returned it, a
//!   compare-and-swap expected it) are told apart; any other value is one
//!   opaque value, which no get returns and no compare-and-swap expects.
//! - The search is done when every operation of known outcome took effect.
//!   An unknown one never has to, and never bounds the frontier (its return
//!   is "never").
//! - Unknown operations with the same effect are interchangeable but for
//!   their invocation times: puts of a value nobody read (the register becomes
//!   opaque), deletes, and per expected value compare-and-swaps of a value
//!   nobody read. Each such class is a counter: the next one to take effect
//!   is the earliest-invoked unused one (an earlier-invoked one can go
//!   wherever a later one can). Unknown writes of a value that was read are
//!   few, and are placed one by one.
//! - A read of known outcome (a get, a refused compare-and-swap) that can go
//!   now goes now, and nothing else is tried in its place: if any order from
//!   here succeeds, the same order with that read moved to the front does.
//! - An unknown operation takes effect only where it changes the register
//!   and the very next operation needs that: one that depends on the register
//!   (a get, a compare-and-swap) and, if it only reads, could not have gone
//!   before. Any order that explains the history can be rearranged into one
//!   of that shape: an unknown write whose effect nobody looks at before the
//!   next write can be dropped, and one followed by a read that works either
//!   way can move after it. Operations of known outcome are tried first.
//! - A node (operations of known outcome done, register, unknown operations
//!   used) from which the search failed is remembered by a 128-bit Zobrist
//!   hash of the first two, with the least usage its failure depends on:
//!   what moves it could not try because the unknown operations they needed
//!   were used up, and what its children's failures depended on. A node
//!   reached again with at least that usage is not explored again; one that
//!   failed whatever it used covers every usage. A hash collision could only
//!   prune a branch (a false violation), never pass a history, and at 2^-128
//!   per pair of nodes it does not happen.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;
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

/// Reads the operations of a saved history: a JSON object whose
/// `operations` array holds [`Operation`]s. Other fields (a seed, a fault
/// schedule) are ignored.
pub fn load_operations(path: impl AsRef<Path>) -> anyhow::Result<Vec<Operation>> {
    #[derive(Deserialize)]
    struct Saved {
        operations: Vec<Operation>,
    }
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let saved: Saved = serde_json::from_str(&text).with_context(|| {
        format!(
            "parse {} as a history (an object with an \"operations\" array)",
            path.display()
        )
    })?;
    Ok(saved.operations)
}

/// How much searching a check may do before it gives up as undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (operations tried at some point of a candidate order)
    /// spent on one key at most.
    pub steps_per_key: u64,
}

impl Budget {
    /// Far more than histories of thousands of operations per key need, with
    /// hundreds of unknown outcomes: about one step per operation when they
    /// are linearizable, tens of thousands to prove a violation. Spending it
    /// all takes tens of seconds in an optimised build and a few hundred
    /// megabytes.
    pub const DEFAULT: Budget = Budget {
        steps_per_key: 20_000_000,
    };
}

impl Default for Budget {
    fn default() -> Self {
        Budget::DEFAULT
    }
}

/// The checker's finding for every key of a history.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per key, by key.
    pub keys: Vec<KeyReport>,
}

impl Report {
    /// Whether every key's history was found linearizable: false when a key
    /// is a violation or undecided.
    pub fn is_linearizable(&self) -> bool {
        self.keys
            .iter()
            .all(|key| matches!(key.verdict, Verdict::Linearizable))
    }

    /// The keys whose history is not linearizable.
    pub fn violations(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys
            .iter()
            .filter(|key| matches!(key.verdict, Verdict::Violation { .. }))
    }

    /// The keys the search gave up on.
    pub fn undecided(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys
            .iter()
            .filter(|key| matches!(key.verdict, Verdict::Undecided { .. }))
    }

    /// The finding for `key`, if the history has operations on it.
    pub fn key(&self, key: &str) -> Option<&KeyReport> {
        self.keys.iter().find(|k| k.key == key)
    }
}

impl fmt::Display for Report {
    /// A line per key, then what went wrong on each key that is a violation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for key in &self.keys {
            writeln!(f, "{key}")?;
        }
        for key in self.violations() {
            write!(f, "\n{}", key.details())?;
        }
        Ok(())
    }
}

/// The checker's finding for one key.
#[derive(Debug, Clone)]
pub struct KeyReport {
    pub key: String,
    /// Operations on the key, of every outcome.
    pub operations: usize,
    /// Of those, operations of unknown outcome.
    pub unknown: usize,
    /// Of those, failed operations (ignored).
    pub failed: usize,
    /// Search steps spent.
    pub steps: u64,
    pub verdict: Verdict,
}

/// Whether one key's history is linearizable.
#[derive(Debug, Clone)]
pub enum Verdict {
    Linearizable,
    /// No order explains every result.
    Violation {
        /// The linear order that explained the most operations of known
        /// outcome before it got stuck, in order, with the operations of
        /// unknown outcome it made take effect.
        longest_prefix: Vec<Operation>,
        /// The operations of known outcome that order left out, by
        /// invocation.
        left_out: Vec<Operation>,
    },
    /// The search ran out of budget after `steps`: not a pass.
    Undecided {
        steps: u64,
    },
}

impl fmt::Display for KeyReport {
    /// One line: key, counts, steps, verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::Violation { .. } => "NOT LINEARIZABLE".to_string(),
            Verdict::Undecided { steps } => {
                format!("UNDECIDED (the search gave up after {steps} steps)")
            }
        };
        write!(
            f,
            "key {:?}: {} operations ({} of unknown outcome, {} failed), {} steps: {verdict}",
            self.key, self.operations, self.unknown, self.failed, self.steps
        )
    }
}

impl KeyReport {
    /// Where to look in a violation: the end of the longest linear prefix and
    /// the first operations it could not take.
    fn details(&self) -> String {
        const SHOWN: usize = 12;
        let Verdict::Violation {
            longest_prefix,
            left_out,
        } = &self.verdict
        else {
            return String::new();
        };
        let mut out = format!(
            "key {:?} is not linearizable.\nlongest linear order found: {} operations, \
             {} of known outcome left out; its last {}:\n",
            self.key,
            longest_prefix.len(),
            left_out.len(),
            longest_prefix.len().min(SHOWN)
        );
        for op in &longest_prefix[longest_prefix.len().saturating_sub(SHOWN)..] {
            out += &format!("  {op}\n");
        }
        out += "first operations of known outcome left out of it, by invocation:\n";
        for op in left_out.iter().take(SHOWN) {
            out += &format!("  {op}\n");
        }
        out
    }
}

/// Checks every key's history against a register that starts absent, keys in
/// parallel, each within `budget`.
pub fn check_registers(operations: &[Operation], budget: Budget) -> Report {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in operations {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let keys: Vec<(&str, Vec<Operation>)> = by_key.into_iter().collect();
    let next = AtomicUsize::new(0);
    let workers = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(keys.len());
    let mut found: Vec<(usize, KeyReport)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((key, ops)) = keys.get(i) else {
                            return found;
                        };
                        found.push((i, check_register(key, ops, budget)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a key's check panicked"))
            .collect()
    });
    found.sort_by_key(|(i, _)| *i);
    Report {
        keys: found.into_iter().map(|(_, report)| report).collect(),
    }
}

/// Checks one key's operations against a register that starts absent.
fn check_register(key: &str, operations: &[Operation], budget: Budget) -> KeyReport {
    let mut operations = operations.to_vec();
    operations.sort_by_key(|op| op.invoked);
    let count = |outcome| operations.iter().filter(|op| op.outcome == outcome).count();
    let (unknown, failed) = (count(Outcome::Unknown), count(Outcome::Failed));
    let register = Register::new(&operations);
    let mut search = Search::new(&register);
    let found = search.run(budget.steps_per_key);
    let verdict = match found {
        Found::Linearizable => Verdict::Linearizable,
        Found::Undecided => Verdict::Undecided {
            steps: search.steps,
        },
        Found::Violation(path) => {
            let mut used = vec![0; register.classes.len()];
            let prefix: Vec<usize> = path
                .iter()
                .map(|&step| match step {
                    Move::Call(call) => register.calls[call].op,
                    Move::Class(class) => {
                        used[class] += 1;
                        register.classes[class].ops[used[class] - 1]
                    }
                })
                .collect();
            let mut in_prefix = vec![false; operations.len()];
            for &i in &prefix {
                in_prefix[i] = true;
            }
            let left_out = operations
                .iter()
                .zip(in_prefix)
                .filter(|(op, taken)| op.outcome == Outcome::Ok && !taken)
                .map(|(op, _)| op.clone())
                .collect();
            Verdict::Violation {
                longest_prefix: prefix.iter().map(|&i| operations[i].clone()).collect(),
                left_out,
            }
        }
    };
    KeyReport {
        key: key.to_string(),
        operations: operations.len(),
        unknown,
        failed,
        steps: search.steps,
        verdict,
    }
}

/// A register value as the search sees it. Only values that some result
/// depends on (returned by a get, expected by a compare-and-swap) are told
/// apart; every other value is [`OPAQUE`]: no get returns it and no
/// compare-and-swap expects it, so which one the register holds never
/// matters.
type Value = u32;
const ABSENT: Value = 0;
const OPAQUE: Value = 1;

/// What an operation does to the register, its result included.
#[derive(Debug, Clone, Copy)]
enum Effect {
    Write(Value),
    Read(Value),
    Swap { expected: Value, value: Value },
    Refuse { expected: Value },
}

impl Effect {
    /// The register after this effect on `state`; `None` when the result is
    /// impossible from `state`.
    fn apply(self, state: Value) -> Option<Value> {
        match self {
            Effect::Write(value) => Some(value),
            Effect::Read(value) => (value == state).then_some(state),
            Effect::Swap { expected, value } => (expected == state).then_some(value),
            Effect::Refuse { expected } => (expected != state).then_some(state),
        }
    }

    /// Whether this effect, right after an unknown operation changed the
    /// register from `before`, makes that operation worth having taken
    /// effect: it depends on the register, and a read-only one was not
    /// possible from `before` (else it can go first).
    fn exploits(self, before: Value) -> bool {
        match self {
            Effect::Write(_) => false,
            Effect::Read(_) | Effect::Refuse { .. } => self.apply(before).is_none(),
            Effect::Swap { .. } => true,
        }
    }
}

/// An operation the search places on its own.
#[derive(Debug)]
struct Call {
    /// Index in the key's operations.
    op: usize,
    effect: Effect,
    invoked: Duration,
    /// Meaningful for operations of known outcome only.
    returned: Duration,
}

/// Operations of unknown outcome that are interchangeable but for their
/// invocation times, by invocation.
#[derive(Debug)]
struct Class {
    effect: Effect,
    invoked: Vec<Duration>,
    ops: Vec<usize>,
}

/// Unknown puts of a value nobody read.
const OPAQUE_PUTS: usize = 0;
/// Unknown deletes.
const DELETES: usize = 1;

/// One key's history, compiled for the search.
#[derive(Debug)]
struct Register {
    /// The operations of known outcome (`..required`), then the unknown ones
    /// whose written value some result depends on, each by invocation.
    calls: Vec<Call>,
    required: usize,
    /// [`OPAQUE_PUTS`], [`DELETES`], then the unknown compare-and-swaps of a
    /// value nobody read, a class per expected value.
    classes: Vec<Class>,
    /// The class of unknown compare-and-swaps expecting a value.
    swaps_by_expected: HashMap<Value, usize>,
}

impl Register {
    /// `operations` of one key, by invocation.
    fn new(operations: &[Operation]) -> Register {
        let mut observed: HashMap<&str, Value> = HashMap::new();
        for op in operations {
            let value = match (&op.action, op.outcome) {
                (_, Outcome::Failed) => continue,
                (Action::Get { value }, Outcome::Ok)
                | (
                    Action::Cas {
                        expected: value, ..
                    },
                    _,
                ) => value,
                _ => continue,
            };
            if let Some(value) = value.as_deref() {
                let next = Value::try_from(observed.len()).expect("fewer values than u32") + 2;
                observed.entry(value).or_insert(next);
            }
        }
        let id = |value: Option<&str>| match value {
            None => ABSENT,
            Some(value) => observed.get(value).copied().unwrap_or(OPAQUE),
        };
        let mut required = Vec::new();
        let mut unknown = Vec::new();
        let mut classes = vec![
            Class {
                effect: Effect::Write(OPAQUE),
                invoked: Vec::new(),
                ops: Vec::new(),
            },
            Class {
                effect: Effect::Write(ABSENT),
                invoked: Vec::new(),
                ops: Vec::new(),
            },
        ];
        let mut swaps_by_expected = HashMap::new();
        for (i, op) in operations.iter().enumerate() {
            let effect = match &op.action {
                Action::Put { value } => Effect::Write(id(Some(value))),
                Action::Delete => Effect::Write(ABSENT),
                Action::Get { value } => Effect::Read(id(value.as_deref())),
                Action::Cas {
                    expected,
                    succeeded: false,
                    ..
                } if op.outcome == Outcome::Ok => Effect::Refuse {
                    expected: id(expected.as_deref()),
                },
                Action::Cas {
                    expected, value, ..
                } => Effect::Swap {
                    expected: id(expected.as_deref()),
                    value: id(Some(value)),
                },
            };
            let call = Call {
                op: i,
                effect,
                invoked: op.invoked,
                returned: op.returned.max(op.invoked),
            };
            let class = match (op.outcome, effect) {
                (Outcome::Failed, _) | (Outcome::Unknown, Effect::Read(_)) => continue,
                (Outcome::Ok, _) => {
                    required.push(call);
                    continue;
                }
                (Outcome::Unknown, Effect::Write(OPAQUE)) => OPAQUE_PUTS,
                (Outcome::Unknown, Effect::Write(ABSENT)) => DELETES,
                (
                    Outcome::Unknown,
                    Effect::Swap {
                        expected,
                        value: OPAQUE,
                    },
                ) => *swaps_by_expected.entry(expected).or_insert_with(|| {
                    classes.push(Class {
                        effect,
                        invoked: Vec::new(),
                        ops: Vec::new(),
                    });
                    classes.len() - 1
                }),
                (Outcome::Unknown, _) => {
                    unknown.push(call);
                    continue;
                }
            };
            classes[class].invoked.push(op.invoked);
            classes[class].ops.push(i);
        }
        let required_len = required.len();
        required.extend(unknown);
        Register {
            calls: required,
            required: required_len,
            classes,
            swaps_by_expected,
        }
    }
}

/// A step of a candidate order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Take effect: a call.
    Call(usize),
    /// The next unused operation of a class takes effect.
    Class(usize),
}

/// What a search found.
#[derive(Debug)]
enum Found {
    Linearizable,
    /// The longest order found.
    Violation(Vec<Move>),
    Undecided,
}

/// Where a node of the search is in trying its moves: first a read that can
/// go now (then nothing else), else calls of known outcome by the entry
/// list, then calls of unknown outcome by index, then the classes.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    Read,
    /// A read went and failed: so does the node.
    Done,
    Entry(usize),
    Unknown(usize),
    Class(u8),
}

/// A node on the search path.
#[derive(Debug)]
struct Frame {
    /// The move that led here (`None` at the root) and what it replaced.
    via: Option<Move>,
    prev_state: Value,
    prev_used: u32,
    cursor: Cursor,
    /// The earliest return among the pending operations of known outcome:
    /// known once the entry list is walked.
    frontier: Duration,
}

/// The end of a linked list.
const NIL: usize = usize::MAX;

/// A call's invocation or return, in the time-ordered list of the pending
/// operations of known outcome.
#[derive(Debug)]
struct Entry {
    call: usize,
    time: Duration,
    is_return: bool,
}

/// The depth-first search, its path held in an explicit stack.
struct Search<'a> {
    register: &'a Register,
    /// Invocations and returns of the pending calls of known outcome, by
    /// time (invocations first on a tie), as a doubly linked list: a call
    /// that takes effect is lifted out and put back on backtracking.
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Entry index of each call's invocation and return.
    entry_of: Vec<(usize, usize)>,
    head: usize,
    /// How many calls of known outcome are pending.
    pending: usize,
    state: Value,
    /// The operations of unknown outcome that took effect: per class how
    /// many (the first ones), and which calls (a bitset); `used` numbers
    /// the pair in `usages`.
    counters: Vec<u32>,
    unknown_done: Vec<u64>,
    used: u32,
    usages: Usages,
    /// Zobrist hash of the calls of known outcome done: the xor of their
    /// codes.
    codes: Vec<u128>,
    hash: u128,
    memo: Memo,
    steps: u64,
    /// The longest path found, by calls of known outcome done.
    longest: Vec<Move>,
    longest_done: usize,
}

impl<'a> Search<'a> {
    fn new(register: &'a Register) -> Search<'a> {
        let mut entries = Vec::new();
        for (call, c) in register.calls[..register.required].iter().enumerate() {
            entries.push(Entry {
                call,
                time: c.invoked,
                is_return: false,
            });
            entries.push(Entry {
                call,
                time: c.returned,
                is_return: true,
            });
        }
        entries.sort_by_key(|e| (e.time, e.is_return, e.call));
        let head = entries.len();
        let mut entry_of = vec![(NIL, NIL); register.required];
        let mut next = vec![NIL; entries.len() + 1];
        let mut prev = vec![NIL; entries.len() + 1];
        let mut last = head;
        for (i, entry) in entries.iter().enumerate() {
            if entry.is_return {
                entry_of[entry.call].1 = i;
            } else {
                entry_of[entry.call].0 = i;
            }
            next[last] = i;
            prev[i] = last;
            last = i;
        }
        let mut seed = 0x5eed_u64;
        let codes = (0..register.required)
            .map(|_| (u128::from(splitmix(&mut seed)) << 64) | u128::from(splitmix(&mut seed)))
            .collect();
        let counters = vec![0; register.classes.len()];
        let unknown_done = vec![0; (register.calls.len() - register.required).div_ceil(64)];
        let mut usages = Usages::default();
        let used = usages.id(&counters, &unknown_done);
        Search {
            register,
            entries,
            next,
            prev,
            entry_of,
            head,
            pending: register.required,
            state: ABSENT,
            counters,
            unknown_done,
            used,
            usages,
            codes,
            hash: 0,
            memo: Memo::default(),
            steps: 0,
            longest: Vec::new(),
            longest_done: 0,
        }
    }

    /// Searches for an order of the operations, consistent with real time,
    /// that explains every result, within `budget` steps.
    fn run(&mut self, budget: u64) -> Found {
        if self.pending == 0 {
            return Found::Linearizable;
        }
        let mut path = vec![Frame {
            via: None,
            prev_state: self.state,
            prev_used: self.used,
            cursor: Cursor::Read,
            frontier: Duration::MAX,
        }];
        // Per frame on the path, what its failure so far depends on having
        // been used: a usage such that the node fails whenever it used at
        // least that much. All zero: it fails whatever it used.
        let width = self.counters.len() + self.unknown_done.len();
        let mut requires = vec![0; width];
        loop {
            let depth = path.len() - 1;
            let frame = path.last_mut().expect("the root is popped last");
            let Some((step, state)) = self.next_move(frame, &mut requires[depth * width..]) else {
                // Every move from this node failed: remember it, backtrack.
                let frame = path.pop().expect("the root is popped last");
                let Some(via) = frame.via else {
                    return Found::Violation(std::mem::take(&mut self.longest));
                };
                let required = requires.split_off(depth * width);
                // A node entered by an unknown operation tried only some
                // moves: its failure says nothing of the node itself.
                if !self.is_unknown(via) {
                    let required = self.usages.intern(required.clone());
                    self.memo.insert(self.node(), required, &self.usages);
                }
                self.undo(via, frame.prev_state, frame.prev_used);
                self.require_back(&mut requires[(depth - 1) * width..], &required, via);
                continue;
            };
            if self.steps == budget {
                return Found::Undecided;
            }
            self.steps += 1;
            let (prev_state, prev_used) = (self.state, self.used);
            self.enter(step, state);
            if self.pending == 0 {
                return Found::Linearizable;
            }
            if let Some(failed) = self.memo.covers(self.node(), self.used, &self.usages) {
                self.undo(step, prev_state, prev_used);
                let failed = &self.usages.seen[failed as usize];
                self.require_back(&mut requires[depth * width..], failed, step);
                continue;
            }
            let done = self.register.required - self.pending;
            if done > self.longest_done {
                self.longest_done = done;
                self.longest = path.iter().filter_map(|f| f.via).chain([step]).collect();
            }
            path.push(Frame {
                via: Some(step),
                prev_state,
                prev_used,
                cursor: Cursor::Read,
                frontier: Duration::MAX,
            });
            requires.resize(requires.len() + width, 0);
        }
    }

    /// Adds to a node's requirement `parent` what its child by `step` needed
    /// (`child`): the usage the parent needs for `step` to lead there.
    fn require_back(&self, parent: &mut [u64], child: &[u64], step: Move) {
        let classes = self.counters.len();
        for (i, (parent, &child)) in parent.iter_mut().zip(child).enumerate() {
            let child = match step {
                Move::Class(class) if class == i => child.saturating_sub(1),
                Move::Call(call) if call >= self.register.required => {
                    let bit = call - self.register.required;
                    if i == classes + bit / 64 {
                        child & !(1 << (bit % 64))
                    } else {
                        child
                    }
                }
                _ => child,
            };
            if i < classes {
                *parent = (*parent).max(child);
            } else {
                *parent |= child;
            }
        }
    }

    /// The next move to try from the node `frame` (the current one), with the
    /// register it leaves.
    ///
    /// Operations of known outcome come first, in invocation order: any
    /// pending one invoked before the frontier may go next. Then the unknown
    /// ones, only when their invocation is before the frontier too (their own
    /// return does not bound anything) and only when they change the
    /// register (one that changes nothing is as good as never taking effect).
    /// A class offers its first unused operation: an earlier-invoked one can
    /// go wherever a later one can, with the same effect.
    ///
    /// A move not tried for want of unknown operations (used already) adds
    /// what it wanted to `requires`.
    fn next_move(&self, frame: &mut Frame, requires: &mut [u64]) -> Option<(Move, Value)> {
        let calls = &self.register.calls;
        let after_unknown = frame.via.is_some_and(|via| self.is_unknown(via));
        let allowed = |effect: Effect| !after_unknown || effect.exploits(frame.prev_state);
        loop {
            match frame.cursor {
                Cursor::Read => {
                    frame.cursor = Cursor::Entry(self.next[self.head]);
                    if let Some(read) = self.read_now(allowed) {
                        frame.cursor = Cursor::Done;
                        return Some((Move::Call(read), self.state));
                    }
                }
                Cursor::Done => return None,
                Cursor::Entry(e) => {
                    let Some(entry) = self.entries.get(e) else {
                        frame.cursor = Cursor::Unknown(self.register.required);
                        continue;
                    };
                    if entry.is_return {
                        frame.frontier = entry.time;
                        frame.cursor = Cursor::Unknown(self.register.required);
                        continue;
                    }
                    frame.cursor = Cursor::Entry(self.next[e]);
                    let effect = calls[entry.call].effect;
                    if let Some(state) = effect.apply(self.state)
                        && allowed(effect)
                    {
                        return Some((Move::Call(entry.call), state));
                    }
                }
                Cursor::Unknown(i) => {
                    let Some(call) = calls.get(i).filter(|c| c.invoked <= frame.frontier) else {
                        frame.cursor = Cursor::Class(0);
                        continue;
                    };
                    frame.cursor = Cursor::Unknown(i + 1);
                    if let Some(state) = call.effect.apply(self.state)
                        && state != self.state
                        && allowed(call.effect)
                    {
                        if !self.is_unknown_done(i) {
                            return Some((Move::Call(i), state));
                        }
                        // Had it not been used already, it could go here.
                        let bit = i - self.register.required;
                        requires[self.counters.len() + bit / 64] |= 1 << (bit % 64);
                    }
                }
                Cursor::Class(stage) => {
                    frame.cursor = Cursor::Class(stage + 1);
                    let class = match stage {
                        0 => OPAQUE_PUTS,
                        1 => DELETES,
                        2 => match self.register.swaps_by_expected.get(&self.state) {
                            Some(&class) => class,
                            None => continue,
                        },
                        _ => return None,
                    };
                    let used = self.counters[class] as usize;
                    let class_ops = &self.register.classes[class];
                    if let Some(state) = class_ops.effect.apply(self.state)
                        && state != self.state
                        && allowed(class_ops.effect)
                    {
                        if class_ops
                            .invoked
                            .get(used)
                            .is_some_and(|&invoked| invoked <= frame.frontier)
                        {
                            return Some((Move::Class(class), state));
                        }
                        // Had fewer than all those invoked been used, one
                        // could go here.
                        let invoked = class_ops
                            .invoked
                            .partition_point(|&invoked| invoked <= frame.frontier);
                        requires[class] = requires[class].max(invoked as u64);
                    }
                }
            }
        }
    }

    /// A pending read of known outcome (a get, a refused compare-and-swap)
    /// that can go now. If any order from here succeeds, one that starts with
    /// it does: moved to the front, it sees the same register, and every
    /// operation it passes finds the frontier no earlier.
    fn read_now(&self, allowed: impl Fn(Effect) -> bool) -> Option<usize> {
        let mut e = self.next[self.head];
        while let Some(entry) = self.entries.get(e)
            && !entry.is_return
        {
            let effect = self.register.calls[entry.call].effect;
            if matches!(effect, Effect::Read(_) | Effect::Refuse { .. })
                && effect.apply(self.state).is_some()
                && allowed(effect)
            {
                return Some(entry.call);
            }
            e = self.next[e];
        }
        None
    }

    /// Makes `step` take effect, leaving `state`.
    fn enter(&mut self, step: Move, state: Value) {
        match step {
            Move::Call(call) if call < self.register.required => {
                self.hash ^= self.codes[call];
                self.lift(call);
                self.pending -= 1;
            }
            Move::Call(call) => {
                let i = call - self.register.required;
                self.unknown_done[i / 64] |= 1 << (i % 64);
                self.used = self.usages.id(&self.counters, &self.unknown_done);
            }
            Move::Class(class) => {
                self.counters[class] += 1;
                self.used = self.usages.id(&self.counters, &self.unknown_done);
            }
        }
        self.state = state;
    }

    /// Takes `step` back.
    fn undo(&mut self, step: Move, state: Value, used: u32) {
        match step {
            Move::Call(call) if call < self.register.required => {
                self.hash ^= self.codes[call];
                self.unlift(call);
                self.pending += 1;
            }
            Move::Call(call) => {
                let i = call - self.register.required;
                self.unknown_done[i / 64] &= !(1 << (i % 64));
                self.used = used;
            }
            Move::Class(class) => {
                self.counters[class] -= 1;
                self.used = used;
            }
        }
        self.state = state;
    }

    fn is_unknown(&self, step: Move) -> bool {
        match step {
            Move::Call(call) => call >= self.register.required,
            Move::Class(_) => true,
        }
    }

    fn is_unknown_done(&self, call: usize) -> bool {
        let i = call - self.register.required;
        self.unknown_done[i / 64] & (1 << (i % 64)) != 0
    }

    fn lift(&mut self, call: usize) {
        let (invoked, returned) = self.entry_of[call];
        for e in [invoked, returned] {
            let (prev, next) = (self.prev[e], self.next[e]);
            self.next[prev] = next;
            if next != NIL {
                self.prev[next] = prev;
            }
        }
    }

    /// Puts a lifted call back: the reverse of [`Search::lift`], so the
    /// removed entries' own links are still right.
    fn unlift(&mut self, call: usize) {
        let (invoked, returned) = self.entry_of[call];
        for e in [returned, invoked] {
            let (prev, next) = (self.prev[e], self.next[e]);
            self.next[prev] = e;
            if next != NIL {
                self.prev[next] = e;
            }
        }
    }

    /// The current node but for the unknown operations used: the calls of
    /// known outcome done and the register.
    fn node(&self) -> NodeKey {
        let node = self.hash ^ state_code(self.state);
        NodeKey((node >> 64) as u64, node as u64)
    }
}

/// splitmix64: fixed pseudo-random codes for the Zobrist hash.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn state_code(state: Value) -> u128 {
    let mut seed = u64::from(state) ^ 0x57a7_e000_0000_0000;
    (u128::from(splitmix(&mut seed)) << 64) | u128::from(splitmix(&mut seed))
}

/// The usage of nothing: the first one numbered.
const NOTHING_USED: u32 = 0;

/// The usages of unknown operations seen so far, each numbered once: the
/// class counters, then the bitset of calls of unknown outcome done.
#[derive(Debug, Default)]
struct Usages {
    ids: HashMap<Vec<u64>, u32>,
    seen: Vec<Vec<u64>>,
    classes: usize,
}

impl Usages {
    fn id(&mut self, counters: &[u32], unknown_done: &[u64]) -> u32 {
        self.classes = counters.len();
        let usage: Vec<u64> = counters
            .iter()
            .map(|&c| u64::from(c))
            .chain(unknown_done.iter().copied())
            .collect();
        self.intern(usage)
    }

    fn intern(&mut self, usage: Vec<u64>) -> u32 {
        if let Some(&id) = self.ids.get(&usage) {
            return id;
        }
        let id = u32::try_from(self.seen.len()).expect("fewer usages than u32");
        self.seen.push(usage.clone());
        self.ids.insert(usage, id);
        id
    }

    /// Whether usage `a` uses no more than usage `b`: no more of each class,
    /// no call that `b` did not.
    fn within(&self, a: u32, b: u32) -> bool {
        if a == b || a == NOTHING_USED {
            return true;
        }
        let (a, b) = (&self.seen[a as usize], &self.seen[b as usize]);
        let (a_classes, a_calls) = a.split_at(self.classes);
        let (b_classes, b_calls) = b.split_at(self.classes);
        a_classes.iter().zip(b_classes).all(|(a, b)| a <= b)
            && a_calls.iter().zip(b_calls).all(|(a, b)| a & !b == 0)
    }
}

/// A 128-bit hash of a node's calls done and register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeKey(u64, u64);

impl Hash for NodeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// Keys that are hashes already.
#[derive(Debug, Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The nodes from which no move succeeded, each with the usage its failure
/// depends on: the node fails whenever it used at least that much (as many
/// operations of each class, at least the same calls of unknown outcome).
/// A node that used less may still succeed, with the unknown operations it
/// has left; with earlier-invoked operations of a class, it can do whatever
/// a node that used more can.
#[derive(Debug, Default)]
struct Memo {
    /// The first usage remembered per node, then any others.
    first: HashMap<NodeKey, u32, BuildHasherDefault<PreHashed>>,
    more: HashMap<NodeKey, Vec<u32>, BuildHasherDefault<PreHashed>>,
}

impl Memo {
    /// Remembers that `node` fails when it used `failed` or more.
    fn insert(&mut self, node: NodeKey, failed: u32, usages: &Usages) {
        if failed == NOTHING_USED {
            self.first.insert(node, failed);
            self.more.remove(&node);
            return;
        }
        let Some(first) = self.first.get_mut(&node) else {
            self.first.insert(node, failed);
            return;
        };
        if usages.within(*first, failed) {
            return;
        }
        if usages.within(failed, *first) {
            *first = failed;
            return;
        }
        let more = self.more.entry(node).or_default();
        if !more.iter().any(|&seen| usages.within(seen, failed)) {
            more.push(failed);
        }
    }

    /// The usage of a remembered failure of `node` that this one, having
    /// used `used`, reaches.
    fn covers(&self, node: NodeKey, used: u32, usages: &Usages) -> Option<u32> {
        let &first = self.first.get(&node)?;
        let covered = |seen: &u32| usages.within(*seen, used);
        if covered(&first) {
            return Some(first);
        }
        self.more.get(&node)?.iter().copied().find(covered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation on key "k"; `returned_ms` `None`: of unknown outcome.
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

    fn failed(op: Operation) -> Operation {
        Operation {
            outcome: Outcome::Failed,
            ..op
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

    fn cas(expected: Option<&str>, value: &str, succeeded: bool) -> Action {
        Action::Cas {
            expected: expected.map(str::to_string),
            value: value.to_string(),
            succeeded,
        }
    }

    fn check(ops: &[Operation]) -> Report {
        check_registers(ops, Budget::DEFAULT)
    }

    #[track_caller]
    fn assert_linearizable(ops: &[Operation], why: &str) {
        let report = check(ops);
        assert!(report.is_linearizable(), "{why}:\n{report}");
    }

    /// Asserts that key "k" is a violation; returns the longest prefix found.
    #[track_caller]
    fn assert_violation(ops: &[Operation], why: &str) -> Vec<Operation> {
        let report = check(ops);
        assert!(!report.is_linearizable(), "{why}");
        match &report.key("k").expect("key k is checked").verdict {
            Verdict::Violation { longest_prefix, .. } => longest_prefix.clone(),
            verdict => panic!("{why}: expected a violation, got {verdict:?}"),
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
        let report = check(&ops);
        assert!(report.is_linearizable(), "{report}");
        assert_eq!(report.keys.len(), 1);
        assert_eq!(report.keys[0].steps, 5, "one step per operation");
    }

    #[test]
    fn read_of_a_value_never_written_is_a_violation() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, get(Some("b")), 2, Some(3)),
        ];
        let prefix = assert_violation(&ops, "nobody wrote b");
        assert_eq!(prefix, ops[..1]);
    }

    #[test]
    fn stale_read_after_a_later_write_completed_is_a_violation() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            // Invoked after "b" was acknowledged, yet returns "a".
            op(1, get(Some("a")), 4, Some(5)),
        ];
        let prefix = assert_violation(&ops, "a stale read");
        assert_eq!(prefix, ops[..2]);
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
        assert_violation(&ops, "absent again after a was read");
        let ops = vec![
            op(0, put("a"), 0, Some(10)),
            op(1, get(None), 1, Some(2)),
            op(2, get(Some("a")), 3, Some(4)),
        ];
        assert_linearizable(&ops, "the put takes effect between the two gets");
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            op(1, get(Some("b")), 4, Some(5)),
            op(1, get(Some("a")), 6, Some(7)),
        ];
        assert_violation(&ops, "the register went back to an overwritten value");
    }

    #[test]
    fn unknown_put_may_take_effect_late_or_never() {
        let late = vec![
            op(0, put("a"), 0, None),
            op(1, get(None), 5, Some(6)),
            op(1, get(Some("a")), 7, Some(8)),
        ];
        assert_linearizable(&late, "an unknown put may take effect late");
        let never = vec![op(0, put("a"), 0, None), op(1, get(None), 5, Some(6))];
        assert_linearizable(&never, "an unknown put may never take effect");
        let read_before_invoke = vec![op(1, get(Some("a")), 0, Some(1)), op(0, put("a"), 5, None)];
        assert_violation(&read_before_invoke, "a value read before its put");
        let twice = vec![
            op(0, put("a"), 0, None),
            op(1, get(Some("a")), 1, Some(2)),
            op(1, get(None), 3, Some(4)),
            op(1, get(Some("a")), 5, Some(6)),
        ];
        assert_violation(&twice, "an unknown put takes effect once");
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
        let report = check(&ops);
        let violations: Vec<&str> = report.violations().map(|k| k.key.as_str()).collect();
        assert_eq!(violations, ["other"], "key other never had a put");
        assert!(matches!(
            report.key("k").expect("key k").verdict,
            Verdict::Linearizable
        ));
    }

    #[test]
    fn deletes_clear_the_register() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, Some(3)),
            op(1, get(None), 4, Some(5)),
        ];
        assert_linearizable(&ops, "read absent after the delete");
        let stale = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, Some(3)),
            op(1, get(Some("a")), 4, Some(5)),
        ];
        assert_violation(&stale, "a read of a deleted value");
        let unknown = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, None),
            op(1, get(Some("a")), 4, Some(5)),
            op(1, get(None), 6, Some(7)),
        ];
        assert_linearizable(&unknown, "an unknown delete may take effect late");
        let two_absences = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, Action::Delete, 2, None),
            op(1, get(None), 4, Some(5)),
            op(1, put("b"), 6, Some(7)),
            op(1, get(None), 8, Some(9)),
        ];
        assert_violation(&two_absences, "one unknown delete cannot clear twice");
    }

    #[test]
    fn compare_and_swap_succeeds_only_on_the_expected_value() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", true), 2, Some(3)),
            op(2, cas(Some("a"), "c", false), 4, Some(5)),
            op(0, get(Some("b")), 6, Some(7)),
        ];
        assert_linearizable(&ops, "a then b; the second CAS was refused");
        let wrong = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("x"), "b", true), 2, Some(3)),
        ];
        assert_violation(&wrong, "a CAS swapped although the register held a");
        let wrongly_refused = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", false), 2, Some(3)),
        ];
        assert_violation(&wrongly_refused, "a CAS refused although a was there");
        let on_absent = vec![
            op(1, cas(None, "b", true), 0, Some(1)),
            op(0, get(Some("b")), 2, Some(3)),
        ];
        assert_linearizable(&on_absent, "a CAS on an absent key");
        let unknown_cas = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", true), 2, None),
            op(2, get(Some("a")), 3, Some(4)),
            op(2, get(Some("b")), 5, Some(6)),
        ];
        assert_linearizable(&unknown_cas, "an unknown CAS may take effect late");
        let unknown_cas_on_another_value = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("c"), 2, Some(3)),
            op(1, cas(Some("a"), "b", true), 4, None),
            op(2, get(Some("b")), 5, Some(6)),
        ];
        assert_violation(
            &unknown_cas_on_another_value,
            "an unknown CAS swaps only the expected value",
        );
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
        assert_linearizable(&ops, "the unknown put took effect before the CAS");
        let too_late = vec![
            op(0, put("a"), 0, Some(1)),
            op(2, cas(Some("a"), "c", false), 5, Some(6)),
            op(1, put("b"), 7, None),
        ];
        assert_violation(&too_late, "the unknown put was invoked after the CAS");
        // Same with an unread unknown CAS that did swap "a" away.
        let by_cas = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", false), 2, None),
            op(2, cas(Some("a"), "c", false), 5, Some(6)),
        ];
        assert_linearizable(&by_cas, "the unknown CAS swapped before the refusal");
        let by_cas_on_another_value = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("x"), "b", false), 2, None),
            op(2, cas(Some("a"), "c", false), 5, Some(6)),
        ];
        assert_violation(
            &by_cas_on_another_value,
            "an unknown CAS expecting x cannot swap a",
        );
    }

    #[test]
    fn two_refusals_need_two_unread_unknown_writes() {
        let mut ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, put("x"), 2, None),
            op(2, cas(Some("a"), "b", false), 3, Some(4)),
            op(0, put("a2"), 5, Some(6)),
            op(2, cas(Some("a2"), "c", false), 7, Some(8)),
        ];
        let prefix = assert_violation(&ops, "one unknown put explains one refusal");
        assert_eq!(prefix.len(), 4, "a, x, the first refusal, a2");
        ops.push(op(3, put("y"), 2, None));
        assert_linearizable(&ops, "two unknown puts explain two refusals");
    }

    #[test]
    fn failed_operations_are_ignored() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            failed(op(1, put("b"), 2, Some(3))),
            failed(op(1, Action::Delete, 4, Some(5))),
            failed(op(1, cas(Some("a"), "c", true), 6, Some(7))),
            op(2, get(Some("a")), 8, Some(9)),
        ];
        assert_linearizable(&ops, "failed writes did not happen");
        let report = check(&ops);
        assert_eq!(report.keys[0].failed, 3);
        let read_failed_put = vec![
            failed(op(1, put("b"), 0, Some(1))),
            op(2, get(Some("b")), 2, Some(3)),
        ];
        assert_violation(
            &read_failed_put,
            "a read of a value only a failed put wrote",
        );
    }

    #[test]
    fn a_search_out_of_budget_is_undecided_not_linearizable() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            op(1, get(Some("b")), 4, Some(5)),
        ];
        let report = check_registers(&ops, Budget { steps_per_key: 2 });
        assert!(!report.is_linearizable(), "undecided is no pass");
        assert_eq!(report.violations().count(), 0);
        let undecided: Vec<&KeyReport> = report.undecided().collect();
        assert_eq!(undecided.len(), 1);
        assert!(matches!(
            undecided[0].verdict,
            Verdict::Undecided { steps: 2 }
        ));
        assert!(report.to_string().contains("UNDECIDED"), "{report}");
    }

    #[test]
    fn report_shows_each_key_and_where_a_violation_broke() {
        let mut ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            op(1, get(Some("a")), 4, Some(5)),
        ];
        let mut fine = op(2, put("z"), 0, None);
        fine.key = "fine".to_string();
        ops.push(fine);
        let report = check(&ops).to_string();
        assert!(
            report.contains(
                "key \"fine\": 1 operations (1 of unknown outcome, 0 failed), 0 steps: linearizable"
            ),
            "{report}"
        );
        assert!(
            report.contains(
                "key \"k\": 3 operations (0 of unknown outcome, 0 failed), 2 steps: NOT LINEARIZABLE"
            ),
            "{report}"
        );
        assert!(report.contains("client 1 k get -> a"), "{report}");
    }

    #[test]
    fn operations_round_trip_through_json() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(1, get(None), 2, Some(3)),
            op(2, Action::Delete, 4, None),
            failed(op(3, cas(Some("a"), "b", false), 5, Some(6))),
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

    /// xorshift64*: reproducible randomness for generated histories.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    /// How long a generated client waits before giving up, in microseconds.
    const GIVE_UP_US: u64 = 5_000;

    /// A history of `clients` clients doing `per_client` operations each on
    /// `keys` keys against a real linearizable register per key: each
    /// operation takes effect at one instant (within its interval when its
    /// outcome is known) and its result is the register's then. About 5% of
    /// the operations end unknown (half of them take effect, some after the
    /// client gave up), 1% fail.
    fn simulate(seed: u64, clients: usize, keys: u64, per_client: usize) -> Vec<Operation> {
        let mut rng = Rng(seed);
        // (operation, when it takes effect) with results still to fill in.
        let mut planned: Vec<(Operation, Option<u64>)> = Vec::new();
        for client in 0..clients {
            let mut now_us = rng.below(1_000);
            for seq in 0..per_client {
                let invoked = now_us + rng.below(200);
                let took_us = if rng.percent(1) {
                    10_000 + rng.below(20_000)
                } else {
                    50 + rng.below(2_000)
                };
                let value = format!("c{client}-{seq}");
                let action = match rng.below(100) {
                    0..40 => get(None),
                    40..65 => put(&value),
                    65..75 => Action::Delete,
                    _ => cas(None, &value, false),
                };
                let (outcome, returned, effect) = match rng.below(100) {
                    0..5 => {
                        let effect = rng.percent(50).then(|| invoked + rng.below(3 * GIVE_UP_US));
                        (Outcome::Unknown, invoked + GIVE_UP_US, effect)
                    }
                    5 => (Outcome::Failed, invoked + took_us, None),
                    _ => {
                        let effect = invoked + rng.below(took_us + 1);
                        (Outcome::Ok, invoked + took_us, Some(effect))
                    }
                };
                now_us = returned;
                let op = Operation {
                    client,
                    key: format!("k{}", rng.below(keys)),
                    action,
                    outcome,
                    invoked: Duration::from_micros(invoked),
                    returned: Duration::from_micros(returned),
                };
                planned.push((op, effect));
            }
        }
        // Fill in results in the order operations take effect; one that
        // never does decides its compare-and-swap's expected value at its
        // invocation. A client expects what it last saw of the key.
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| {
            let (op, effect) = &planned[i];
            (effect.map_or(op.invoked, Duration::from_micros), i)
        });
        let mut registers: HashMap<String, Option<String>> = HashMap::new();
        let mut seen: HashMap<(usize, String), Option<String>> = HashMap::new();
        for i in order {
            let (op, effect) = &mut planned[i];
            let register = registers.entry(op.key.clone()).or_default();
            let seen = seen.entry((op.client, op.key.clone())).or_default();
            let takes_effect = effect.is_some();
            let saw = match &mut op.action {
                Action::Get { value } => {
                    *value = register.clone();
                    Some(register.clone())
                }
                Action::Put { value } => {
                    if takes_effect {
                        *register = Some(value.clone());
                    }
                    Some(Some(value.clone()))
                }
                Action::Delete => {
                    if takes_effect {
                        *register = None;
                    }
                    Some(None)
                }
                Action::Cas {
                    expected,
                    value,
                    succeeded,
                } => {
                    expected.clone_from(seen);
                    *succeeded = takes_effect && register == expected;
                    if *succeeded {
                        *register = Some(value.clone());
                    }
                    succeeded.then(|| Some(value.clone()))
                }
            };
            if op.outcome == Outcome::Ok
                && let Some(saw) = saw
            {
                *seen = saw;
            }
        }
        planned.into_iter().map(|(op, _)| op).collect()
    }

    /// Makes the last acknowledged get of `key` return a value overwritten
    /// before it was invoked: an acknowledged write `w1` of that value, then
    /// an acknowledged write `w2` invoked after `w1` returned, returned before
    /// the get.
    fn make_stale(ops: &mut [Operation], key: &str) {
        let of_key = |op: &&Operation| op.key == key && op.outcome == Outcome::Ok;
        let writes = |op: &&Operation| match &op.action {
            Action::Put { .. } | Action::Delete => true,
            Action::Cas { succeeded, .. } => *succeeded,
            Action::Get { .. } => false,
        };
        let read = ops
            .iter()
            .rposition(|op| of_key(&op) && matches!(op.action, Action::Get { .. }))
            .expect("a get");
        let w2 = ops
            .iter()
            .filter(of_key)
            .filter(writes)
            .filter(|op| op.returned < ops[read].invoked)
            .max_by_key(|op| op.returned)
            .expect("a write before the get");
        let stale = ops
            .iter()
            .filter(of_key)
            .filter(|op| op.returned < w2.invoked)
            .filter_map(|op| match &op.action {
                Action::Put { value } => Some((op.returned, value)),
                Action::Cas {
                    value,
                    succeeded: true,
                    ..
                } => Some((op.returned, value)),
                _ => None,
            })
            .max()
            .map(|(_, value)| value.clone())
            .expect("a value written before that");
        ops[read].action = get(Some(&stale));
    }

    #[test]
    fn generated_linearizable_history_passes_and_a_stale_read_fails() {
        let mut ops = simulate(0x5eed_1234, 9, 4, 560);
        let count = |outcome| ops.iter().filter(|op| op.outcome == outcome).count();
        let swapped = ops
            .iter()
            .filter(|op| {
                op.outcome == Outcome::Ok
                    && matches!(
                        op.action,
                        Action::Cas {
                            succeeded: true,
                            ..
                        }
                    )
            })
            .count();
        println!(
            "{} operations: {} unknown, {} failed, {swapped} swaps",
            ops.len(),
            count(Outcome::Unknown),
            count(Outcome::Failed)
        );
        let report = check(&ops);
        print!("{report}");
        assert!(report.is_linearizable(), "{report}");
        assert_eq!(report.keys.len(), 4);
        for key in &report.keys {
            // About one step per operation when nothing needs undoing.
            assert!(
                key.steps < 4 * key.operations as u64,
                "{key}: the search wandered"
            );
        }

        make_stale(&mut ops, "k0");
        let report = check(&ops);
        print!("{report}");
        let violations: Vec<&str> = report.violations().map(|k| k.key.as_str()).collect();
        assert_eq!(violations, ["k0"], "{report}");
        assert_eq!(report.undecided().count(), 0, "{report}");
        let k0 = report.key("k0").expect("key k0");
        // Proving a violation means ruling out every order: far more steps,
        // still far from the budget.
        assert!(k0.steps < 1_000_000, "{k0}");
    }

    /// Whether some order of `ops` explains every result, by trying them
    /// all: any operation may go next unless an operation of known outcome
    /// that is still pending returned before it was invoked; unknown ones may
    /// also never take effect.
    fn brute_force(ops: &[Operation]) -> bool {
        fn explore(ops: &[&Operation], done: &mut Vec<bool>, state: Option<String>) -> bool {
            if (0..ops.len()).all(|i| done[i] || ops[i].outcome == Outcome::Unknown) {
                return true;
            }
            for i in 0..ops.len() {
                let blocked = done[i]
                    || (0..ops.len()).any(|j| {
                        !done[j]
                            && ops[j].outcome == Outcome::Ok
                            && ops[j].returned < ops[i].invoked
                    });
                if blocked {
                    continue;
                }
                let known = ops[i].outcome == Outcome::Ok;
                let next = match &ops[i].action {
                    Action::Put { value } => Some(Some(value.clone())),
                    Action::Delete => Some(None),
                    Action::Get { value } => (*value == state).then(|| state.clone()),
                    Action::Cas {
                        expected,
                        value,
                        succeeded,
                    } => {
                        // An unknown one swaps or not, as the register says.
                        let holds = *expected == state;
                        let after = if holds {
                            Some(value.clone())
                        } else {
                            state.clone()
                        };
                        (!known || holds == *succeeded).then_some(after)
                    }
                };
                if let Some(next) = next {
                    done[i] = true;
                    if explore(ops, done, next) {
                        return true;
                    }
                    done[i] = false;
                }
            }
            false
        }
        let telling: Vec<&Operation> = ops
            .iter()
            .filter(|op| match op.outcome {
                Outcome::Ok => true,
                Outcome::Failed => false,
                Outcome::Unknown => !matches!(op.action, Action::Get { .. }),
            })
            .collect();
        explore(&telling, &mut vec![false; telling.len()], None)
    }

    /// A small history with random intervals, results and outcomes.
    fn random_history(rng: &mut Rng, len: usize) -> Vec<Operation> {
        // Reads name a value of the first half of the operations, or none.
        let read = |rng: &mut Rng| {
            let i = rng.below(len as u64 / 2 + 1);
            (i < len as u64 / 2).then(|| format!("v{i}"))
        };
        (0..len)
            .map(|i| {
                let invoked = rng.below(20);
                let returned = invoked + 1 + rng.below(8);
                let value = format!("v{i}");
                let action = match rng.below(4) {
                    0 => put(&value),
                    1 => Action::Get { value: read(rng) },
                    2 => Action::Delete,
                    _ => Action::Cas {
                        expected: read(rng),
                        value,
                        succeeded: rng.percent(50),
                    },
                };
                let outcome = match rng.below(10) {
                    0..6 => Outcome::Ok,
                    6..9 => Outcome::Unknown,
                    _ => Outcome::Failed,
                };
                Operation {
                    client: i,
                    key: "k".to_string(),
                    action,
                    outcome,
                    invoked: Duration::from_millis(invoked),
                    returned: Duration::from_millis(returned),
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_trying_every_order_on_small_histories() {
        let mut rng = Rng(0x0b5e_55ed);
        let (mut linearizable, mut not) = (0, 0);
        for _ in 0..3000 {
            let len = 3 + rng.below(5) as usize;
            let ops = random_history(&mut rng, len);
            let expected = brute_force(&ops);
            let report = check(&ops);
            assert_eq!(
                report.is_linearizable(),
                expected,
                "{report}\nhistory:\n{}",
                ops.iter().map(|op| format!("  {op}\n")).collect::<String>()
            );
            if expected {
                linearizable += 1;
            } else {
                not += 1;
            }
        }
        println!("{linearizable} linearizable, {not} not");
        assert!(linearizable > 500 && not > 500, "{linearizable} vs {not}");
    }

    #[test]
    fn a_saved_history_is_loaded_and_checked_again() {
        let ops = vec![
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            op(1, get(Some("a")), 4, Some(5)),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.json");
        let saved = serde_json::json!({"seed": 7, "schedule": ["kill s1"], "operations": ops});
        std::fs::write(&path, saved.to_string()).expect("write the history");
        let loaded = load_operations(&path).expect("load the history");
        assert_eq!(loaded, ops);
        let report = check(&loaded);
        assert_eq!(report.violations().count(), 1, "{report}");

        let missing = dir.path().join("missing.json");
        let err = load_operations(&missing).expect_err("no such file");
        assert!(format!("{err:#}").contains("missing.json"), "{err:#}");
        std::fs::write(&path, r#"{"seed": 7}"#).expect("write");
        let err = load_operations(&path).expect_err("no operations");
        let err = format!("{err:#}");
        assert!(
            err.contains("history.json") && err.contains("operations"),
            "{err}"
        );
    }
}
