//! A checker for recorded watch streams: pure functions from events to
//! problems, no IO.
//!
//! A run watches one key prefix with `prev_kv` from revision 1 of a fresh
//! cluster, so every key starts absent. A watcher whose stream breaks resumes
//! on some member from the revision after the last event it saw
//! ([`WatchStream::resumes`]). Once the cluster is healthy again, a fresh
//! reference watch from revision 1 collects every event up to the store's
//! final revision. Then:
//!
//! - [`check_reference`]: the reference obeys etcd's MVCC rules on its own:
//!   revisions never go back, each event's `prev_kv` is what the key's
//!   previous event left, puts count versions from a creation, no delete of
//!   an absent key.
//! - [`check_stream`]: a watcher saw exactly the reference from its start
//!   revision on, in order, up to the final revision, and resumed each time
//!   right after its last event.
//! - [`check_acknowledged`]: every put a client saw acknowledged is in the
//!   reference: no acknowledged write was lost.
//!
//! [`check_watches`] runs them all and counts what it checked in a
//! [`WatchReport`].
//!
//! A revision may carry several events (a txn); they keep the order in which
//! they were delivered. An event is named by its revision and key: etcd
//! refuses a txn that writes one key twice.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// What an event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Put => "PUT",
            EventKind::Delete => "DELETE",
        })
    }
}

/// One event of a watch response, as far as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The revision that wrote it: the event's `kv.mod_revision`.
    pub revision: i64,
    pub key: String,
    pub kind: EventKind,
    /// The value a put wrote; `None` for a delete.
    pub value: Option<String>,
    /// The value of `prev_kv`; `None` when the key was absent before.
    pub prev_value: Option<String>,
    /// `kv.create_revision`: the revision that created the key, 0 for a
    /// delete (etcd sends a deleted key's name and revision only).
    pub create_revision: i64,
    /// `kv.version`: puts since the key was created, 0 for a delete.
    pub version: i64,
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "revision {} {} {:?}", self.revision, self.kind, self.key)?;
        if let Some(value) = &self.value {
            write!(f, " = {value:?}")?;
        }
        match &self.prev_value {
            Some(prev) => write!(f, " (prev {prev:?}")?,
            None => write!(f, " (no prev")?,
        }
        write!(
            f,
            ", created {}, version {})",
            self.create_revision, self.version
        )
    }
}

impl WatchEvent {
    /// Whether `other` names the same event: same revision and key.
    fn same_event(&self, other: &WatchEvent) -> bool {
        self.revision == other.revision && self.key == other.key
    }

    /// The fields in which `other` differs from this event.
    fn differences(&self, other: &WatchEvent) -> Vec<&'static str> {
        [
            ("kind", self.kind != other.kind),
            ("value", self.value != other.value),
            ("prev value", self.prev_value != other.prev_value),
            (
                "create revision",
                self.create_revision != other.create_revision,
            ),
            ("version", self.version != other.version),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect()
    }
}

/// What one watcher received, over its first watch and every resumed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStream {
    /// Which watcher, for reports.
    pub watcher: usize,
    /// The first watch's start revision.
    pub start_revision: i64,
    /// Every event, in the order received.
    pub events: Vec<WatchEvent>,
    /// The start revision of each resumed watch, in order.
    pub resumes: Vec<i64>,
}

/// Something wrong with the reference, a watch stream or an acknowledged
/// write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchProblem {
    /// The reference went back from `previous_revision` to `revision`.
    ReferenceOutOfOrder {
        revision: i64,
        key: String,
        previous_revision: i64,
    },
    /// A reference event's `prev_kv` is not what the key's previous event
    /// left (`None`: absent).
    ReferencePrevValue {
        revision: i64,
        key: String,
        expected: Option<String>,
        got: Option<String>,
    },
    /// A reference event's creation revision or version breaks etcd's rules:
    /// a put on an absent key creates it at version 1, each later put adds
    /// one, a delete carries 0 for both.
    ReferenceVersion {
        revision: i64,
        key: String,
        expected_create_revision: i64,
        expected_version: i64,
        got_create_revision: i64,
        got_version: i64,
    },
    /// The reference deletes a key that was absent: etcd writes no event
    /// for that.
    ReferenceDeleteOfAbsent { revision: i64, key: String },
    /// The watcher never got the `missing` events of the reference: event
    /// `index` of its stream is `got`, which comes after them.
    Gap {
        watcher: usize,
        index: usize,
        missing: Vec<WatchEvent>,
        got: WatchEvent,
    },
    /// Event `index` of the stream is one the watcher had already got.
    Duplicate {
        watcher: usize,
        index: usize,
        event: WatchEvent,
    },
    /// Event `index` of the stream, `got`, came before `expected`, which
    /// the watcher got later.
    OutOfOrder {
        watcher: usize,
        index: usize,
        expected: WatchEvent,
        got: WatchEvent,
    },
    /// Event `index` of the stream has the revision and key of the
    /// reference's `expected` but not its kind, values or version.
    Content {
        watcher: usize,
        index: usize,
        expected: WatchEvent,
        got: WatchEvent,
    },
    /// Event `index` of the stream is not in the reference at or after the
    /// stream's start revision.
    Unexpected {
        watcher: usize,
        index: usize,
        start_revision: i64,
        got: WatchEvent,
    },
    /// The stream stopped short of the final revision: it never got
    /// `expected_last`, the reference's last event at or below it.
    Incomplete {
        watcher: usize,
        final_revision: i64,
        expected_last: WatchEvent,
        got_last: Option<WatchEvent>,
    },
    /// Resumed watch number `resume` (0 for the first resume) did not start
    /// right after the last event received before it.
    BadResume {
        watcher: usize,
        resume: usize,
        expected: i64,
        got: i64,
    },
    /// An acknowledged put of `key` = `value` is not in the reference.
    LostWrite { key: String, value: String },
}

impl fmt::Display for WatchProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchProblem::ReferenceOutOfOrder {
                revision,
                key,
                previous_revision,
            } => write!(
                f,
                "reference: revision {revision} key {key:?} comes after revision \
                 {previous_revision}"
            ),
            WatchProblem::ReferencePrevValue {
                revision,
                key,
                expected,
                got,
            } => write!(
                f,
                "reference: revision {revision} key {key:?}: expected prev value {expected:?}, \
                 got {got:?}"
            ),
            WatchProblem::ReferenceVersion {
                revision,
                key,
                expected_create_revision,
                expected_version,
                got_create_revision,
                got_version,
            } => write!(
                f,
                "reference: revision {revision} key {key:?}: expected created \
                 {expected_create_revision} version {expected_version}, got created \
                 {got_create_revision} version {got_version}"
            ),
            WatchProblem::ReferenceDeleteOfAbsent { revision, key } => write!(
                f,
                "reference: revision {revision} deletes key {key:?}, which was absent"
            ),
            WatchProblem::Gap {
                watcher,
                index,
                missing,
                got,
            } => {
                write!(
                    f,
                    "watcher {watcher} event {index}: expected {} more event(s) before it, ",
                    missing.len()
                )?;
                match missing.as_slice() {
                    [] => {}
                    [only] => write!(f, "{only}, ")?,
                    [first, .., last] => write!(f, "from {first} to {last}, ")?,
                }
                write!(f, "got {got}")
            }
            WatchProblem::Duplicate {
                watcher,
                index,
                event,
            } => write!(f, "watcher {watcher} event {index}: got {event} again"),
            WatchProblem::OutOfOrder {
                watcher,
                index,
                expected,
                got,
            } => write!(
                f,
                "watcher {watcher} event {index}: expected {expected}, got {got}, which comes \
                 after it"
            ),
            WatchProblem::Content {
                watcher,
                index,
                expected,
                got,
            } => write!(
                f,
                "watcher {watcher} event {index} differs in {}: expected {expected}, got {got}",
                expected.differences(got).join(", ")
            ),
            WatchProblem::Unexpected {
                watcher,
                index,
                start_revision,
                got,
            } => write!(
                f,
                "watcher {watcher} event {index}: got {got}, which the reference does not have \
                 at or after start revision {start_revision}"
            ),
            WatchProblem::Incomplete {
                watcher,
                final_revision,
                expected_last,
                got_last,
            } => {
                write!(
                    f,
                    "watcher {watcher} did not reach final revision {final_revision}: expected \
                     {expected_last}, "
                )?;
                match got_last {
                    Some(last) => write!(f, "got up to {last}"),
                    None => write!(f, "got no event"),
                }
            }
            WatchProblem::BadResume {
                watcher,
                resume,
                expected,
                got,
            } => write!(
                f,
                "watcher {watcher} resume {resume}: expected start revision {expected}, got {got}"
            ),
            WatchProblem::LostWrite { key, value } => write!(
                f,
                "the put of key {key:?} = {value:?} was acknowledged, yet the reference has no \
                 such put"
            ),
        }
    }
}

/// What a key holds after some prefix of the reference.
struct Present {
    value: Option<String>,
    create_revision: i64,
    version: i64,
}

/// Checks the reference against etcd's rules, every key starting absent.
///
/// After an event with a wrong creation revision or version the check goes
/// on from the right ones, so that one fault is reported once.
pub fn check_reference(reference: &[WatchEvent]) -> Vec<WatchProblem> {
    let mut problems = Vec::new();
    let mut keys: HashMap<&str, Present> = HashMap::new();
    let mut previous_revision: Option<i64> = None;
    for event in reference {
        let revision = event.revision;
        let key = event.key.clone();
        if let Some(previous_revision) = previous_revision.filter(|p| revision < *p) {
            problems.push(WatchProblem::ReferenceOutOfOrder {
                revision,
                key: key.clone(),
                previous_revision,
            });
        }
        previous_revision = Some(revision);

        let before = keys.remove(event.key.as_str());
        if event.kind == EventKind::Delete && before.is_none() {
            problems.push(WatchProblem::ReferenceDeleteOfAbsent { revision, key });
            continue;
        }
        let expected_prev = before.as_ref().and_then(|p| p.value.clone());
        if event.prev_value != expected_prev {
            problems.push(WatchProblem::ReferencePrevValue {
                revision,
                key: key.clone(),
                expected: expected_prev,
                got: event.prev_value.clone(),
            });
        }
        let after = match event.kind {
            EventKind::Put => Some(match before {
                Some(p) => Present {
                    value: event.value.clone(),
                    create_revision: p.create_revision,
                    version: p.version + 1,
                },
                None => Present {
                    value: event.value.clone(),
                    create_revision: revision,
                    version: 1,
                },
            }),
            EventKind::Delete => None,
        };
        let (expected_create_revision, expected_version) = after
            .as_ref()
            .map_or((0, 0), |p| (p.create_revision, p.version));
        if (event.create_revision, event.version) != (expected_create_revision, expected_version) {
            problems.push(WatchProblem::ReferenceVersion {
                revision,
                key,
                expected_create_revision,
                expected_version,
                got_create_revision: event.create_revision,
                got_version: event.version,
            });
        }
        if let Some(after) = after {
            keys.insert(event.key.as_str(), after);
        }
    }
    problems
}

/// Checks that `stream` got exactly the events of `reference` from its start
/// revision on, in order, up to `final_revision`, and that each resumed watch
/// started right after the last event before it.
///
/// Only the first divergence from the reference is reported: what follows it
/// is likely its consequence. Whether the stream reached the final revision
/// and whether its resumes were right are reported besides. Events past the
/// final revision are checked when the stream has them, never required.
///
/// Where each resume happened among the events is inferred: a watch resumed
/// from revision `r` delivers only events from `r` on, so the events before
/// the resume are those below `r`. A resume earlier than it should be thus
/// often shows only as the duplicate it causes.
pub fn check_stream(
    stream: &WatchStream,
    reference: &[WatchEvent],
    final_revision: i64,
) -> Vec<WatchProblem> {
    let expected: Vec<&WatchEvent> = reference
        .iter()
        .filter(|e| e.revision >= stream.start_revision)
        .collect();
    let mut problems: Vec<WatchProblem> = first_divergence(stream, &expected).into_iter().collect();
    if let Some(last) = expected.iter().rev().find(|e| e.revision <= final_revision)
        && !stream.events.iter().any(|e| e.same_event(last))
    {
        problems.push(WatchProblem::Incomplete {
            watcher: stream.watcher,
            final_revision,
            expected_last: (*last).clone(),
            got_last: stream.events.last().cloned(),
        });
    }
    problems.extend(check_resumes(stream));
    problems
}

/// The first event of `stream` that is not the next one of `expected`.
/// A stream that stops early does not diverge.
fn first_divergence(stream: &WatchStream, expected: &[&WatchEvent]) -> Option<WatchProblem> {
    let watcher = stream.watcher;
    let events = &stream.events;
    let index = events
        .iter()
        .zip(expected)
        .take_while(|(got, want)| got == *want)
        .count();
    let got = events.get(index)?;
    let (seen, ahead) = expected.split_at(index);
    if let Some(want) = ahead.first()
        && want.same_event(got)
    {
        return Some(WatchProblem::Content {
            watcher,
            index,
            expected: (*want).clone(),
            got: got.clone(),
        });
    }
    if seen.iter().any(|e| e.same_event(got)) {
        return Some(WatchProblem::Duplicate {
            watcher,
            index,
            event: got.clone(),
        });
    }
    let Some(position) = ahead.iter().position(|e| e.same_event(got)) else {
        return Some(WatchProblem::Unexpected {
            watcher,
            index,
            start_revision: stream.start_revision,
            got: got.clone(),
        });
    };
    let skipped = &ahead[..position];
    let later = &events[index + 1..];
    if let Some(late) = skipped
        .iter()
        .find(|e| later.iter().any(|got| got.same_event(e)))
    {
        return Some(WatchProblem::OutOfOrder {
            watcher,
            index,
            expected: (*late).clone(),
            got: got.clone(),
        });
    }
    Some(WatchProblem::Gap {
        watcher,
        index,
        missing: skipped.iter().map(|e| (*e).clone()).collect(),
        got: got.clone(),
    })
}

/// Each resumed watch must start one revision after the last event received
/// before it, or at the stream's start revision when there was none.
fn check_resumes(stream: &WatchStream) -> Vec<WatchProblem> {
    let events = &stream.events;
    let mut before = 0;
    let mut problems = Vec::new();
    for (resume, &got) in stream.resumes.iter().enumerate() {
        while events.get(before).is_some_and(|e| e.revision < got) {
            before += 1;
        }
        let expected = match before.checked_sub(1) {
            Some(last) => events[last].revision + 1,
            None => stream.start_revision,
        };
        if got != expected {
            problems.push(WatchProblem::BadResume {
                watcher: stream.watcher,
                resume,
                expected,
                got,
            });
        }
    }
    problems
}

/// Checks that each acknowledged put of (key, value) is a put event of that
/// key with that value in the reference. When writers never put one value
/// twice on a key, that event is the write's own.
pub fn check_acknowledged(
    reference: &[WatchEvent],
    acknowledged_puts: &[(String, String)],
) -> Vec<WatchProblem> {
    let puts: HashSet<(&str, &str)> = reference
        .iter()
        .filter(|e| e.kind == EventKind::Put)
        .filter_map(|e| Some((e.key.as_str(), e.value.as_deref()?)))
        .collect();
    acknowledged_puts
        .iter()
        .filter(|(key, value)| !puts.contains(&(key.as_str(), value.as_str())))
        .map(|(key, value)| WatchProblem::LostWrite {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// What [`check_watches`] checked and the problems it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchReport {
    pub streams: usize,
    /// Events of every stream, each checked against the reference.
    pub stream_events: usize,
    pub reference_events: usize,
    /// Resumed watches over every stream.
    pub resumes: usize,
    pub acknowledged_puts: usize,
    pub final_revision: i64,
    /// The reference's problems, then each stream's, then lost writes.
    pub problems: Vec<WatchProblem>,
}

impl WatchReport {
    /// Whether no check found a problem.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for WatchReport {
    /// The counts on one line; the problems are in `problems`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "watch check: {} streams with {} events and {} resumes against {} reference events \
             up to revision {}, {} acknowledged puts: {} problems",
            self.streams,
            self.stream_events,
            self.resumes,
            self.reference_events,
            self.final_revision,
            self.acknowledged_puts,
            self.problems.len()
        )
    }
}

/// Runs [`check_reference`], [`check_stream`] on each stream and
/// [`check_acknowledged`].
pub fn check_watches(
    reference: &[WatchEvent],
    streams: &[WatchStream],
    final_revision: i64,
    acknowledged_puts: &[(String, String)],
) -> WatchReport {
    let mut problems = check_reference(reference);
    for stream in streams {
        problems.extend(check_stream(stream, reference, final_revision));
    }
    problems.extend(check_acknowledged(reference, acknowledged_puts));
    WatchReport {
        streams: streams.len(),
        stream_events: streams.iter().map(|s| s.events.len()).sum(),
        reference_events: reference.len(),
        resumes: streams.iter().map(|s| s.resumes.len()).sum(),
        acknowledged_puts: acknowledged_puts.len(),
        final_revision,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: i64, key: &str, value: &str, prev: Option<&str>) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.to_string(),
            kind: EventKind::Put,
            value: Some(value.to_string()),
            prev_value: prev.map(str::to_string),
            create_revision: 0,
            version: 0,
        }
    }

    fn delete(revision: i64, key: &str, prev: &str) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.to_string(),
            kind: EventKind::Delete,
            value: None,
            prev_value: Some(prev.to_string()),
            create_revision: 0,
            version: 0,
        }
    }

    /// A put's event with its creation revision and version set.
    fn created(mut event: WatchEvent, create_revision: i64, version: i64) -> WatchEvent {
        event.create_revision = create_revision;
        event.version = version;
        event
    }

    /// A consistent history of keys "a" and "b": a txn at revision 4 writes
    /// both, "a" is deleted and created again.
    fn reference() -> Vec<WatchEvent> {
        vec![
            created(put(2, "a", "a1", None), 2, 1),
            created(put(3, "b", "b1", None), 3, 1),
            created(put(4, "a", "a2", Some("a1")), 2, 2),
            created(put(4, "b", "b2", Some("b1")), 3, 2),
            delete(5, "a", "a2"),
            created(put(6, "a", "a3", None), 6, 1),
            created(put(7, "b", "b3", Some("b2")), 3, 3),
        ]
    }

    #[test]
    fn consistent_reference_has_no_problems() {
        assert_eq!(check_reference(&reference()), Vec::new());
        assert_eq!(check_reference(&[]), Vec::new());
    }

    #[test]
    fn reference_going_back_is_a_problem() {
        let mut events = reference();
        // Different keys: each key's own history stays consistent.
        events.swap(1, 2);
        assert_eq!(
            check_reference(&events),
            vec![WatchProblem::ReferenceOutOfOrder {
                revision: 3,
                key: "b".to_string(),
                previous_revision: 4,
            }]
        );
    }

    #[test]
    fn reference_prev_value_must_be_the_previous_value() {
        let mut events = reference();
        events[2].prev_value = Some("a0".to_string());
        events[5].prev_value = Some("a2".to_string());
        assert_eq!(
            check_reference(&events),
            vec![
                WatchProblem::ReferencePrevValue {
                    revision: 4,
                    key: "a".to_string(),
                    expected: Some("a1".to_string()),
                    got: Some("a0".to_string()),
                },
                // Deleted at 5: absent before 6.
                WatchProblem::ReferencePrevValue {
                    revision: 6,
                    key: "a".to_string(),
                    expected: None,
                    got: Some("a2".to_string()),
                },
            ]
        );
    }

    #[test]
    fn reference_versions_follow_creation() {
        let mut events = reference();
        // The recreation of "a" keeps counting from the deleted key.
        events[5].create_revision = 2;
        events[5].version = 3;
        // A delete carries no creation revision or version.
        events[4].version = 2;
        let problems = check_reference(&events);
        assert_eq!(
            problems,
            vec![
                WatchProblem::ReferenceVersion {
                    revision: 5,
                    key: "a".to_string(),
                    expected_create_revision: 0,
                    expected_version: 0,
                    got_create_revision: 0,
                    got_version: 2,
                },
                WatchProblem::ReferenceVersion {
                    revision: 6,
                    key: "a".to_string(),
                    expected_create_revision: 6,
                    expected_version: 1,
                    got_create_revision: 2,
                    got_version: 3,
                },
            ]
        );
        assert_eq!(
            problems[1].to_string(),
            "reference: revision 6 key \"a\": expected created 6 version 1, got created 2 \
             version 3"
        );
    }

    #[test]
    fn a_wrong_version_is_reported_once() {
        let mut events = reference();
        // "b"'s put at 4 claims version 3; its put at 7 is right (3).
        events[3].version = 3;
        assert_eq!(check_reference(&events).len(), 1);
    }

    #[test]
    fn reference_never_deletes_an_absent_key() {
        let mut events = reference();
        events.insert(5, delete(5, "a", "a2"));
        events[5].prev_value = None;
        assert_eq!(
            check_reference(&events),
            vec![WatchProblem::ReferenceDeleteOfAbsent {
                revision: 5,
                key: "a".to_string(),
            }]
        );
    }

    fn stream(start_revision: i64, events: Vec<WatchEvent>, resumes: Vec<i64>) -> WatchStream {
        WatchStream {
            watcher: 1,
            start_revision,
            events,
            resumes,
        }
    }

    /// The last revision of [`reference`].
    const FINAL: i64 = 7;

    #[test]
    fn complete_stream_has_no_problems() {
        let reference = reference();
        let whole = stream(1, reference.clone(), Vec::new());
        assert_eq!(check_stream(&whole, &reference, FINAL), Vec::new());
        // Revisions 8 and 9 wrote keys outside the prefix.
        assert_eq!(check_stream(&whole, &reference, 9), Vec::new());
        // Both events of revision 4 on.
        let from_4 = stream(4, reference[2..].to_vec(), Vec::new());
        assert_eq!(check_stream(&from_4, &reference, FINAL), Vec::new());
        let past_the_end = stream(8, Vec::new(), Vec::new());
        assert_eq!(check_stream(&past_the_end, &reference, 9), Vec::new());
    }

    #[test]
    fn stream_resumed_twice_after_its_last_events() {
        let reference = reference();
        // Broken after revision 4 (both its events) and after revision 6.
        let resumed = stream(1, reference.clone(), vec![5, 7]);
        assert_eq!(check_stream(&resumed, &reference, FINAL), Vec::new());
        // Broken before any event, and again before the resumed watch got
        // one.
        let again = stream(1, reference.clone(), vec![1, 5, 5]);
        assert_eq!(check_stream(&again, &reference, FINAL), Vec::new());
    }

    #[test]
    fn a_missing_event_of_a_txn_is_a_gap() {
        let reference = reference();
        let mut events = reference.clone();
        events.remove(3);
        let problems = check_stream(&stream(1, events, Vec::new()), &reference, FINAL);
        assert_eq!(
            problems,
            vec![WatchProblem::Gap {
                watcher: 1,
                index: 3,
                missing: vec![reference[3].clone()],
                got: reference[4].clone(),
            }]
        );
        assert_eq!(
            problems[0].to_string(),
            "watcher 1 event 3: expected 1 more event(s) before it, revision 4 PUT \"b\" = \"b2\" \
             (prev \"b1\", created 3, version 2), got revision 5 DELETE \"a\" (prev \"a2\", \
             created 0, version 0)"
        );
    }

    #[test]
    fn a_resume_that_skips_revisions_is_a_problem() {
        let reference = reference();
        // The last event before the break was at revision 4; the watch
        // resumed from 7 and lost revisions 5 and 6.
        let mut events = reference[..4].to_vec();
        events.push(reference[6].clone());
        let problems = check_stream(&stream(1, events, vec![7]), &reference, FINAL);
        assert_eq!(
            problems,
            vec![
                WatchProblem::Gap {
                    watcher: 1,
                    index: 4,
                    missing: reference[4..6].to_vec(),
                    got: reference[6].clone(),
                },
                WatchProblem::BadResume {
                    watcher: 1,
                    resume: 0,
                    expected: 5,
                    got: 7,
                },
            ]
        );
        assert!(problems[0].to_string().starts_with(
            "watcher 1 event 4: expected 2 more event(s) before it, from revision 5 DELETE"
        ));
        assert_eq!(
            problems[1].to_string(),
            "watcher 1 resume 0: expected start revision 5, got 7"
        );
        // Revision 8 wrote no key of the prefix: resuming from 9 lost
        // nothing, yet it could have.
        let skipped_8 = stream(1, reference.clone(), vec![9]);
        assert_eq!(
            check_stream(&skipped_8, &reference, 9),
            vec![WatchProblem::BadResume {
                watcher: 1,
                resume: 0,
                expected: 8,
                got: 9,
            }]
        );
    }

    #[test]
    fn a_resume_that_goes_back_is_a_problem() {
        let reference = reference();
        // Resumed right at 5, then from 3 before getting anything.
        let mut events = reference.clone();
        events.extend_from_slice(&reference[1..]);
        let problems = check_stream(&stream(1, events, vec![5, 3]), &reference, FINAL);
        assert_eq!(
            problems,
            vec![
                WatchProblem::Duplicate {
                    watcher: 1,
                    index: 7,
                    event: reference[1].clone(),
                },
                WatchProblem::BadResume {
                    watcher: 1,
                    resume: 1,
                    expected: 5,
                    got: 3,
                },
            ]
        );
    }

    #[test]
    fn an_event_received_twice_is_a_duplicate() {
        let reference = reference();
        // A watch resumed at 4 instead of 5 gets revision 4 again; where the
        // resume happened is not recorded, so only the duplicate shows.
        let mut events = reference[..4].to_vec();
        events.extend_from_slice(&reference[2..]);
        let problems = check_stream(&stream(1, events, vec![4]), &reference, FINAL);
        assert_eq!(
            problems,
            vec![WatchProblem::Duplicate {
                watcher: 1,
                index: 4,
                event: reference[2].clone(),
            }]
        );
        assert_eq!(
            problems[0].to_string(),
            "watcher 1 event 4: got revision 4 PUT \"a\" = \"a2\" (prev \"a1\", created 2, \
             version 2) again"
        );
        // The last event again, past the end of the reference.
        let mut events = reference.clone();
        events.push(reference[6].clone());
        assert_eq!(
            check_stream(&stream(1, events, Vec::new()), &reference, FINAL),
            vec![WatchProblem::Duplicate {
                watcher: 1,
                index: 7,
                event: reference[6].clone(),
            }]
        );
    }

    #[test]
    fn events_swapped_are_out_of_order() {
        let reference = reference();
        // Within the txn's revision.
        let mut events = reference.clone();
        events.swap(2, 3);
        let problems = check_stream(&stream(1, events, Vec::new()), &reference, FINAL);
        assert_eq!(
            problems,
            vec![WatchProblem::OutOfOrder {
                watcher: 1,
                index: 2,
                expected: reference[2].clone(),
                got: reference[3].clone(),
            }]
        );
        assert!(
            problems[0]
                .to_string()
                .starts_with("watcher 1 event 2: expected revision 4 PUT \"a\"")
        );
        // Across revisions, with one event lost in between.
        let events = vec![
            reference[0].clone(),
            reference[5].clone(),
            reference[1].clone(),
            reference[6].clone(),
        ];
        assert_eq!(
            check_stream(&stream(1, events, Vec::new()), &reference, FINAL),
            vec![WatchProblem::OutOfOrder {
                watcher: 1,
                index: 1,
                expected: reference[1].clone(),
                got: reference[5].clone(),
            }]
        );
    }

    #[test]
    fn an_event_with_other_content_is_a_problem() {
        let reference = reference();
        let changed = |index: usize, change: fn(&mut WatchEvent)| {
            let mut events = reference.clone();
            change(&mut events[index]);
            let problems = check_stream(&stream(1, events.clone(), Vec::new()), &reference, FINAL);
            assert_eq!(
                problems,
                vec![WatchProblem::Content {
                    watcher: 1,
                    index,
                    expected: reference[index].clone(),
                    got: events[index].clone(),
                }]
            );
            problems[0].to_string()
        };
        assert_eq!(
            changed(5, |e| e.value = Some("x".to_string())),
            "watcher 1 event 5 differs in value: expected revision 6 PUT \"a\" = \"a3\" (no \
             prev, created 6, version 1), got revision 6 PUT \"a\" = \"x\" (no prev, created 6, \
             version 1)"
        );
        assert!(
            changed(6, |e| e.prev_value = None)
                .starts_with("watcher 1 event 6 differs in prev value: ")
        );
        assert!(
            changed(4, |e| {
                e.kind = EventKind::Put;
                e.value = Some(String::new());
            })
            .starts_with("watcher 1 event 4 differs in kind, value: ")
        );
        assert!(
            changed(2, |e| e.version = 1).starts_with("watcher 1 event 2 differs in version: ")
        );
    }

    #[test]
    fn an_event_the_reference_lacks_is_unexpected() {
        let reference = reference();
        // Revision 3 is before the stream's start.
        let early = stream(4, reference[1..].to_vec(), Vec::new());
        let problems = check_stream(&early, &reference, FINAL);
        assert_eq!(
            problems,
            vec![WatchProblem::Unexpected {
                watcher: 1,
                index: 0,
                start_revision: 4,
                got: reference[1].clone(),
            }]
        );
        assert!(
            problems[0]
                .to_string()
                .ends_with("which the reference does not have at or after start revision 4")
        );
        // A key the reference never wrote, in the middle and at the end.
        let mut events = reference.clone();
        events.insert(1, put(2, "c", "c1", None));
        assert!(matches!(
            check_stream(&stream(1, events, Vec::new()), &reference, FINAL).as_slice(),
            [WatchProblem::Unexpected { index: 1, .. }]
        ));
        let mut events = reference.clone();
        events.push(created(put(8, "a", "a4", Some("a3")), 6, 2));
        assert!(matches!(
            check_stream(&stream(1, events, Vec::new()), &reference, FINAL).as_slice(),
            [WatchProblem::Unexpected { index: 7, .. }]
        ));
    }

    #[test]
    fn a_stream_must_reach_the_final_revision() {
        let reference = reference();
        let short = stream(1, reference[..6].to_vec(), Vec::new());
        let problems = check_stream(&short, &reference, FINAL);
        assert_eq!(
            problems,
            vec![WatchProblem::Incomplete {
                watcher: 1,
                final_revision: FINAL,
                expected_last: reference[6].clone(),
                got_last: Some(reference[5].clone()),
            }]
        );
        assert!(
            problems[0]
                .to_string()
                .starts_with("watcher 1 did not reach final revision 7: expected revision 7 PUT")
        );
        // Up to revision 6 it is complete.
        assert_eq!(check_stream(&short, &reference, 6), Vec::new());
        // Half of revision 4 is not revision 4.
        let half = stream(1, reference[..3].to_vec(), Vec::new());
        assert_eq!(
            check_stream(&half, &reference, 4),
            vec![WatchProblem::Incomplete {
                watcher: 1,
                final_revision: 4,
                expected_last: reference[3].clone(),
                got_last: Some(reference[2].clone()),
            }]
        );
        let empty = stream(5, Vec::new(), Vec::new());
        let problems = check_stream(&empty, &reference, FINAL);
        assert_eq!(
            problems,
            vec![WatchProblem::Incomplete {
                watcher: 1,
                final_revision: FINAL,
                expected_last: reference[6].clone(),
                got_last: None,
            }]
        );
        assert!(problems[0].to_string().ends_with(", got no event"));
    }

    fn acknowledged(puts: &[(&str, &str)]) -> Vec<(String, String)> {
        puts.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn acknowledged_puts_are_in_the_reference() {
        let reference = reference();
        // "a2" was deleted later: still written.
        let puts = acknowledged(&[("a", "a1"), ("a", "a2"), ("b", "b3")]);
        assert_eq!(check_acknowledged(&reference, &puts), Vec::new());
    }

    #[test]
    fn an_acknowledged_put_missing_from_the_reference_is_lost() {
        let reference = reference();
        // "b2" is in the reference, but as "b"'s value, not "a"'s.
        let puts = acknowledged(&[("a", "a1"), ("a", "b2"), ("c", "c1")]);
        let problems = check_acknowledged(&reference, &puts);
        assert_eq!(
            problems,
            vec![
                WatchProblem::LostWrite {
                    key: "a".to_string(),
                    value: "b2".to_string(),
                },
                WatchProblem::LostWrite {
                    key: "c".to_string(),
                    value: "c1".to_string(),
                },
            ]
        );
        assert_eq!(
            problems[1].to_string(),
            "the put of key \"c\" = \"c1\" was acknowledged, yet the reference has no such put"
        );
    }

    #[test]
    fn report_counts_what_was_checked() {
        let reference = reference();
        let streams = vec![
            stream(1, reference.clone(), vec![5, 7]),
            WatchStream {
                watcher: 2,
                ..stream(4, reference[2..].to_vec(), vec![6])
            },
        ];
        let puts = acknowledged(&[("a", "a3"), ("b", "b3")]);
        let report = check_watches(&reference, &streams, FINAL, &puts);
        assert!(report.is_clean());
        assert_eq!(
            report.to_string(),
            "watch check: 2 streams with 12 events and 3 resumes against 7 reference events up \
             to revision 7, 2 acknowledged puts: 0 problems"
        );
    }

    #[test]
    fn report_gathers_the_problems_of_every_check() {
        let mut reference = reference();
        let streams = vec![
            stream(1, reference[..6].to_vec(), Vec::new()),
            WatchStream {
                watcher: 2,
                ..stream(1, reference.clone(), Vec::new())
            },
        ];
        reference[6].prev_value = None;
        let puts = acknowledged(&[("b", "b4")]);
        let report = check_watches(&reference, &streams, FINAL, &puts);
        assert!(!report.is_clean());
        assert!(matches!(
            report.problems.as_slice(),
            [
                WatchProblem::ReferencePrevValue { revision: 7, .. },
                WatchProblem::Incomplete { watcher: 1, .. },
                WatchProblem::Content {
                    watcher: 2,
                    index: 6,
                    ..
                },
                WatchProblem::LostWrite { .. },
            ]
        ));
        assert!(report.to_string().ends_with(": 4 problems"));
    }
}
