//! Metadata shared by every kind: [`ObjectMeta`], [`OwnerReference`], list
//! wrappers ([`List`]), [`IntOrString`], and the `Status` object with its
//! field causes that the API server returns on errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::serde_util::nullable;
use crate::time::Time;

/// `metadata` of every object.
///
/// `managedFields` is accepted (so objects read back from a Kubernetes
/// server decode) and kept verbatim; skiff does not interpret it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub generate_name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub uid: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub owner_references: Vec<OwnerReference>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub finalizers: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub managed_fields: Vec<serde_json::Value>,
}

impl ObjectMeta {
    /// The owner reference marked `controller: true`, if any.
    pub fn controller_ref(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|r| r.controller == Some(true))
    }
}

/// `metadata.ownerReferences[]`: a link to the object that owns this one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// `metadata` of a list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListMeta {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    #[serde(
        default,
        rename = "continue",
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub continue_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
}

/// A list of objects of one kind (`PodList`, `DeploymentList`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "T: Deserialize<'de>")
)]
pub struct List<T> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub items: Vec<T>,
}

impl<T> List<T> {
    /// A list with the given `apiVersion` and list kind (`"PodList"`).
    pub fn new(api_version: &str, kind: &str, resource_version: String, items: Vec<T>) -> Self {
        List {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            metadata: ListMeta {
                resource_version,
                ..ListMeta::default()
            },
            items,
        }
    }
}

impl<T> List<T> {
    /// A list for a row of the resource table (`PodList`, `apps/v1`).
    pub fn for_resource(
        info: &crate::resources::ResourceInfo,
        resource_version: String,
        items: Vec<T>,
    ) -> Self {
        List::new(info.api_version, info.list_kind, resource_version, items)
    }
}

/// One event of a watch stream: `{"type": "ADDED", "object": {...}}`.
/// `type` is `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR` (then the
/// object is a [`Status`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEvent<T> {
    #[serde(rename = "type")]
    pub type_: String,
    pub object: T,
}

/// An integer or a string, as in `targetPort: 8080` / `targetPort: http`
/// and `maxSurge: 1` / `maxSurge: "25%"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

/// Why an [`IntOrString`] could not be turned into a count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntOrStringError {
    #[error("invalid value {0:?}: must be an integer or a percentage")]
    NotPercent(String),
    #[error("invalid value {0}: must not be negative")]
    Negative(i64),
}

impl IntOrString {
    /// The percentage, if this is a string of the form `"25%"`.
    pub fn percent(&self) -> Option<i32> {
        match self {
            IntOrString::Int(_) => None,
            IntOrString::String(s) => {
                let digits = s.strip_suffix('%')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok()
            }
        }
    }

    /// The absolute value of an int-or-percent against `total`, rounding a
    /// percentage up or down as Kubernetes does (`maxSurge` rounds up,
    /// `maxUnavailable` down).
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Result<i32, IntOrStringError> {
        match self {
            IntOrString::Int(v) if *v < 0 => Err(IntOrStringError::Negative(i64::from(*v))),
            IntOrString::Int(v) => Ok(*v),
            IntOrString::String(s) => {
                let p = self
                    .percent()
                    .ok_or_else(|| IntOrStringError::NotPercent(s.clone()))?;
                let num = i64::from(p) * i64::from(total);
                let v = if round_up {
                    (num + 99) / 100
                } else {
                    num / 100
                };
                Ok(i32::try_from(v).unwrap_or(i32::MAX))
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(v) => write!(f, "{v}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl From<i32> for IntOrString {
    fn from(v: i32) -> Self {
        IntOrString::Int(v)
    }
}

impl From<&str> for IntOrString {
    fn from(v: &str) -> Self {
        IntOrString::String(v.to_string())
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(v) => serializer.serialize_i32(*v),
            IntOrString::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("integer {v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("integer {v} out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The reason of a [`StatusCause`], as Kubernetes names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CauseType {
    FieldValueNotFound,
    FieldValueRequired,
    FieldValueDuplicate,
    FieldValueInvalid,
    FieldValueNotSupported,
    FieldValueForbidden,
    FieldValueTooLong,
    FieldValueTooMany,
    FieldValueTypeInvalid,
    /// Any other reason a Kubernetes server may send
    /// (`FieldManagerConflict`, ...).
    #[serde(other)]
    Other,
}

impl CauseType {
    /// The short text Kubernetes puts before the detail of a cause
    /// (`Required value`, `Invalid value`, ...).
    pub fn summary(self) -> &'static str {
        match self {
            CauseType::FieldValueNotFound => "Not found",
            CauseType::FieldValueRequired => "Required value",
            CauseType::FieldValueDuplicate => "Duplicate value",
            CauseType::FieldValueInvalid => "Invalid value",
            CauseType::FieldValueNotSupported => "Unsupported value",
            CauseType::FieldValueForbidden => "Forbidden",
            CauseType::FieldValueTooLong => "Too long",
            CauseType::FieldValueTooMany => "Too many",
            CauseType::FieldValueTypeInvalid => "Invalid value",
            CauseType::Other => "Error",
        }
    }
}

/// One cause of an `Invalid` error: which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCause {
    pub reason: CauseType,
    #[serde(default, deserialize_with = "nullable")]
    pub message: String,
    #[serde(default, deserialize_with = "nullable")]
    pub field: String,
}

impl fmt::Display for StatusCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// `details` of a [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusDetails {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub group: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub uid: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub causes: Vec<StatusCause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<i32>,
}

/// The `Status` object (`kind: Status`, `apiVersion: v1`) returned for errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Status {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    /// `Success` or `Failure`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub status: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub message: String,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default)]
    pub code: u16,
}

impl Status {
    /// A `Failure` status with the given HTTP code, reason and message.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            api_version: "v1".to_string(),
            kind: "Status".to_string(),
            metadata: ListMeta::default(),
            status: "Failure".to_string(),
            message: message.into(),
            reason: reason.to_string(),
            details: None,
            code,
        }
    }

    /// The 422 `Invalid` status Kubernetes returns when validation fails:
    /// `Pod "web" is invalid: spec.containers[0].image: Required value`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let list = causes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let message = if causes.len() == 1 {
            format!("{kind} {name:?} is invalid: {list}")
        } else {
            format!("{kind} {name:?} is invalid: [{list}]")
        };
        let mut status = Status::failure(422, "Invalid", message);
        status.details = Some(StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes,
            ..StatusDetails::default()
        });
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_meta_round_trip() {
        let v = json!({
            "name": "web",
            "namespace": "default",
            "uid": "u1",
            "labels": {"app": "web"},
            "annotations": {"a": "b"},
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "resourceVersion": "42",
            "generation": 3,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                 "uid": "u0", "controller": true, "blockOwnerDeletion": true}],
            "finalizers": ["foregroundDeletion"],
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "deletionGracePeriodSeconds": 30,
            "deletionTimestamp": "2024-05-01T12:01:00Z"
        });
        let meta: ObjectMeta = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(meta.controller_ref().unwrap().name, "rs");
        assert_eq!(serde_json::to_value(&meta).unwrap(), v);
    }

    #[test]
    fn object_meta_refuses_unknown_fields_and_accepts_nulls() {
        assert!(serde_json::from_value::<ObjectMeta>(json!({"nmae": "x"})).is_err());
        let meta: ObjectMeta =
            serde_json::from_value(json!({"name": "x", "labels": null, "creationTimestamp": null}))
                .unwrap();
        assert!(meta.labels.is_empty());
        assert_eq!(meta.creation_timestamp, None);
    }

    #[test]
    fn int_or_string() {
        let i: IntOrString = serde_json::from_value(json!(8080)).unwrap();
        assert_eq!(i, IntOrString::Int(8080));
        let s: IntOrString = serde_json::from_value(json!("http")).unwrap();
        assert_eq!(s, IntOrString::from("http"));
        assert_eq!(serde_json::to_value(&i).unwrap(), json!(8080));
        assert_eq!(serde_json::to_value(&s).unwrap(), json!("http"));
        assert!(serde_json::from_value::<IntOrString>(json!(1.5)).is_err());
        assert!(serde_json::from_value::<IntOrString>(json!(5_000_000_000u64)).is_err());
        assert!(serde_json::from_value::<IntOrString>(json!(true)).is_err());
    }

    #[test]
    fn int_or_percent_scaling() {
        let p = IntOrString::from("25%");
        assert_eq!(p.percent(), Some(25));
        assert_eq!(p.scaled_value(10, true), Ok(3));
        assert_eq!(p.scaled_value(10, false), Ok(2));
        assert_eq!(p.scaled_value(0, true), Ok(0));
        assert_eq!(IntOrString::Int(2).scaled_value(10, true), Ok(2));
        assert!(IntOrString::Int(-1).scaled_value(10, true).is_err());
        assert!(IntOrString::from("abc").scaled_value(10, true).is_err());
        assert!(IntOrString::from("%").scaled_value(10, true).is_err());
        assert!(IntOrString::from("-5%").scaled_value(10, true).is_err());
        assert_eq!(IntOrString::from("100%").scaled_value(7, false), Ok(7));
    }

    #[test]
    fn invalid_status_message() {
        let causes = vec![StatusCause {
            reason: CauseType::FieldValueRequired,
            message: "Required value".into(),
            field: "spec.containers[0].image".into(),
        }];
        let st = Status::invalid("Pod", "", "web", causes);
        assert_eq!(st.code, 422);
        assert_eq!(
            st.message,
            "Pod \"web\" is invalid: spec.containers[0].image: Required value"
        );
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueRequired");
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, st);
    }

    #[test]
    fn list_wrapper() {
        let l: List<String> = List::new("v1", "StringList", "7".into(), vec!["a".into()]);
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "StringList",
                   "metadata": {"resourceVersion": "7"}, "items": ["a"]})
        );
        let back: List<String> = serde_json::from_value(v).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn watch_event_and_list_for_resource() {
        let ev = WatchEvent {
            type_: "ADDED".to_string(),
            object: json!({"kind": "Pod"}),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v, json!({"type": "ADDED", "object": {"kind": "Pod"}}));
        assert_eq!(
            serde_json::from_value::<WatchEvent<serde_json::Value>>(v).unwrap(),
            ev
        );
        let pods = crate::resources::lookup("deploy").unwrap();
        let l: List<u8> = List::for_resource(pods, "3".into(), vec![]);
        assert_eq!(
            (l.api_version.as_str(), l.kind.as_str()),
            ("apps/v1", "DeploymentList")
        );
    }

    #[test]
    fn foreign_status_causes_decode() {
        let c: StatusCause =
            serde_json::from_value(json!({"reason": "FieldManagerConflict", "message": "m"}))
                .unwrap();
        assert_eq!(c.reason, CauseType::Other);
        assert_eq!(c.field, "");
        assert_eq!(CauseType::FieldValueRequired.summary(), "Required value");
    }
}
