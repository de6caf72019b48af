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
//!   reference.
//!
//! A revision may carry several events (a txn); they keep the order in which
//! they were delivered. An event is named by its revision and key: etcd
//! refuses a txn that writes one key twice.

use std::collections::HashMap;
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
}
